//! Links the unwinder statically: see the `static-unwinder` crate for why.

fn main() {
    static_unwinder::link();
}
