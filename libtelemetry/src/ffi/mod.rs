//! The C library: the seven `tm_*` functions of the original `telemetry.h`.
//!
//! - `boundary`: the panic boundary and pointer checks every export goes through.
//! - `errno`: where core errors become negative errno values.
//! - `api`: the exports themselves, each a few lines over the safe core.
//! - `state`: the process-wide config file choice.

mod api;
mod boundary;
mod errno;
mod state;
