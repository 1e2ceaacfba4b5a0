//! Nothing unwinds into C: every export runs inside [`guard`], and a panic becomes `-EIO`.

use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::libc_errno::{EINVAL, EIO};

/// Runs `f`, turning a panic into `-EIO` (documented in `telemetry.h`).
pub fn guard(f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(-EIO)
}

/// Runs `f` for a function without a return value; a panic is swallowed.
pub fn guard_void(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// Borrows a C string as UTF-8, or gives `-EINVAL` for NULL or bad UTF-8.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that outlives the borrow.
pub unsafe fn c_str<'a>(p: *const c_char) -> Result<&'a str, c_int> {
    if p.is_null() {
        return Err(-EINVAL);
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| -EINVAL)
}

/// Borrows a C string's bytes, or gives `-EINVAL` for NULL.
///
/// # Safety
/// As [`c_str`].
pub unsafe fn c_bytes<'a>(p: *const c_char) -> Result<&'a [u8], c_int> {
    if p.is_null() {
        return Err(-EINVAL);
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    Ok(unsafe { CStr::from_ptr(p) }.to_bytes())
}
