//! The one place where a core error becomes the integer C sees.

use std::ffi::c_int;

use crate::error::Error;

/// `0` for success, the negative errno of the error otherwise.
pub fn to_c(r: Result<(), Error>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => -e.errno(),
    }
}
