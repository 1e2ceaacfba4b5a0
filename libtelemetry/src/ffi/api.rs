//! The exported functions. Each checks its pointers, runs the safe core inside the panic
//! boundary and returns 0 or a negative errno. Out-pointers are written only on success.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, CString};
use std::path::PathBuf;

use super::boundary::{c_bytes, c_str, guard, guard_void};
use super::errno::to_c;
use super::state;
use crate::client;
use crate::error::libc_errno::EINVAL;
use crate::optin;
use crate::record::{Record, HEADER_COUNT};
use crate::sysinfo::SysInfo;

/// A record as the original library laid it out. Probes may read `headers[i]` (each
/// `"name: value\n"`), `payload`, `header_size` and `payload_size`; nothing may write them.
#[repr(C)]
pub struct telem_record {
    /// The 15 header lines, NUL-terminated, in wire order.
    pub headers: [*mut c_char; 15],
    /// The payload, NUL-terminated (empty until `tm_set_payload`).
    pub payload: *mut c_char,
    /// Total length of the 15 header lines.
    pub header_size: usize,
    /// Length of the payload.
    pub payload_size: usize,
}

/// Handle returned by `tm_create_record`; free it with `tm_free_record`.
#[repr(C)]
pub struct telem_ref {
    /// The record.
    pub record: *mut telem_record,
}

/// What a `telem_record` pointer really points at: the C view first, so the pointer casts both
/// ways, then the strings it borrows and the Rust record they are made from.
#[repr(C)]
struct Owned {
    c: telem_record,
    header_lines: [CString; HEADER_COUNT],
    payload: CString,
    record: Record,
}

impl Owned {
    fn new(record: Record) -> Box<Owned> {
        let mut o = Box::new(Owned {
            c: telem_record {
                headers: [std::ptr::null_mut(); 15],
                payload: std::ptr::null_mut(),
                header_size: 0,
                payload_size: 0,
            },
            header_lines: Default::default(),
            payload: CString::default(),
            record,
        });
        o.refresh();
        o
    }

    /// Rebuilds the C view from the Rust record. Header values and payloads never hold NUL
    /// (validated), so the CString conversions cannot fail; an empty string is the fallback.
    fn refresh(&mut self) {
        for i in 0..HEADER_COUNT {
            self.header_lines[i] = CString::new(self.record.header_line(i)).unwrap_or_default();
            self.c.headers[i] = self.header_lines[i].as_ptr().cast_mut();
        }
        self.payload = CString::new(self.record.payload()).unwrap_or_default();
        self.c.payload = self.payload.as_ptr().cast_mut();
        self.c.header_size = self.record.header_block_len();
        self.c.payload_size = self.record.payload().len();
    }
}

/// The `Owned` behind a handle, or `-EINVAL`.
///
/// # Safety
/// `t_ref` must be NULL or a handle from `tm_create_record` not yet freed.
unsafe fn owned<'a>(t_ref: *mut telem_ref) -> Result<&'a mut Owned, c_int> {
    if t_ref.is_null() {
        return Err(-EINVAL);
    }
    // SAFETY: a live handle per the caller's contract.
    let rec = unsafe { (*t_ref).record };
    if rec.is_null() {
        return Err(-EINVAL);
    }
    // SAFETY: `record` was made by `tm_create_record` from a Box<Owned> whose first field (repr(C))
    // is the telem_record.
    Ok(unsafe { &mut *rec.cast::<Owned>() })
}

/// Use `c_file` as the configuration for this process and embed its path in every record sent
/// (the daemons then use it for those records). It must be an absolute path to a regular file,
/// valid UTF-8 of at most 4096 bytes without control characters (a newline, a tab, ...).
/// Returns 0, or -EINVAL (any of that not met, not a regular file, NULL) or -errno from stat.
///
/// # Safety
/// `c_file` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tm_set_config_file(c_file: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: per this function's contract.
        let path = match unsafe { c_bytes(c_file) } {
            // The check every frame's CFG: path passes (absolute, bounded, no control
            // character): refused here, where the caller can still hear about it.
            Ok(b) => match crate::frame::check_cfg_path(b) {
                Ok(p) => PathBuf::from(p),
                Err(_) => return -EINVAL,
            },
            Err(e) => return e,
        };
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {
                state::set_config_file(path);
                0
            }
            Ok(_) => -EINVAL,
            Err(e) => -e.raw_os_error().unwrap_or(EINVAL),
        }
    })
}

/// Create a record with the given severity (clamped to 1..4), classification (three parts
/// separated by '/', each 1-40 printable ASCII characters, 122 in all) and payload format version.
/// On success stores the new handle in `*t_ref` and returns 0; otherwise returns -EINVAL (bad
/// classification or NULL) or another negative errno, and leaves `*t_ref` unchanged.
///
/// # Safety
/// `t_ref` must be NULL or writable; `classification` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tm_create_record(
    t_ref: *mut *mut telem_ref,
    severity: u32,
    classification: *mut c_char,
    payload_version: u32,
) -> c_int {
    guard(|| {
        if t_ref.is_null() {
            return -EINVAL;
        }
        // SAFETY: per this function's contract.
        let class = match unsafe { c_str(classification) } {
            Ok(c) => c,
            Err(e) => return e,
        };
        match Record::new(severity, class, payload_version, SysInfo::cached()) {
            Ok(record) => {
                let owned = Box::into_raw(Owned::new(record));
                let handle = Box::into_raw(Box::new(telem_ref {
                    record: owned.cast::<telem_record>(),
                }));
                // SAFETY: checked non-NULL above; writable per the contract.
                unsafe { *t_ref = handle };
                0
            }
            Err(e) => to_c(Err(e)),
        }
    })
}

/// Replace the record's event id with `event_id` (32 lowercase hex digits).
/// Returns 0, or -EINVAL (bad id or NULL; the old id is kept).
///
/// # Safety
/// `t_ref` must be NULL or a live handle; `event_id` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tm_set_event_id(t_ref: *mut telem_ref, event_id: *mut c_char) -> c_int {
    guard(|| {
        // SAFETY: per this function's contract.
        let (o, id) = match unsafe { (owned(t_ref), c_str(event_id)) } {
            (Ok(o), Ok(id)) => (o, id),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        let r = o.record.set_event_id(id);
        o.refresh();
        to_c(r)
    })
}

/// Set the payload: UTF-8 text of at most 8192 bytes without control characters other than
/// whitespace. Returns 0, -EINVAL (NULL, not text) or -EMSGSIZE (over 8192 bytes; never cut).
///
/// # Safety
/// `t_ref` must be NULL or a live handle; `payload` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tm_set_payload(t_ref: *mut telem_ref, payload: *mut c_char) -> c_int {
    guard(|| {
        // SAFETY: per this function's contract.
        let (o, bytes) = match unsafe { (owned(t_ref), c_bytes(payload)) } {
            (Ok(o), Ok(b)) => (o, b),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        let r = o.record.set_payload(bytes);
        o.refresh();
        to_c(r)
    })
}

/// Send the record to telemprobd and wait (bounded, `send_timeout_ms`, 5 s by default) for its
/// answer. Returns 0 when the record is stored (or when an older daemon closes without
/// answering), -ECONNREFUSED when not opted in, -errno when the daemon cannot be reached, or the
/// daemon's negative status (-EINVAL, -EMSGSIZE, -ENOSPC, -EBUSY for rate limited), -ETIMEDOUT
/// when no answer came in time, -EIO after an internal error. The record is not freed.
/// -ETIMEDOUT does not say the record was lost: the daemon may have it and store it later.
/// Sending the same record again is safe: telemprobd answers a repeat of a record it stored
/// recently with 0 and keeps one copy.
///
/// # Safety
/// `t_ref` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn tm_send_record(t_ref: *mut telem_ref) -> c_int {
    guard(|| {
        // SAFETY: per this function's contract.
        let o = match unsafe { owned(t_ref) } {
            Ok(o) => o,
            Err(e) => return e,
        };
        to_c(client::send(&o.record, &state::config()))
    })
}

/// 1 when the opt-in file exists, 0 otherwise.
#[no_mangle]
pub extern "C" fn tm_is_opted_in() -> c_int {
    guard(|| c_int::from(optin::is_opted_in(&state::config())))
}

/// Free a record handle and everything it owns. NULL is allowed and does nothing.
///
/// # Safety
/// `t_ref` must be NULL or a live handle, and is dangling afterwards.
#[no_mangle]
pub unsafe extern "C" fn tm_free_record(t_ref: *mut telem_ref) {
    guard_void(|| {
        if t_ref.is_null() {
            return;
        }
        // SAFETY: made by Box::into_raw in tm_create_record, freed exactly once per contract.
        let handle = unsafe { Box::from_raw(t_ref) };
        if !handle.record.is_null() {
            // SAFETY: made by Box::into_raw(Box<Owned>) in tm_create_record.
            drop(unsafe { Box::from_raw(handle.record.cast::<Owned>()) });
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_config_path_with_a_control_character_is_refused() {
        let d = tempfile::tempdir().unwrap();
        // Real regular files: only the name is wrong. A newline in the path would otherwise
        // reach the spool file's CFG: line and forge the record's headers.
        for name in ["x\nmachine_id: forged.conf", "x\r.conf", "x\x1b.conf"] {
            let p = d.path().join(name);
            std::fs::write(&p, "").unwrap();
            let c = CString::new(p.to_str().unwrap()).unwrap();
            // SAFETY: a NUL-terminated string.
            assert_eq!(
                unsafe { tm_set_config_file(c.as_ptr()) },
                -EINVAL,
                "{name:?}"
            );
        }
        let long = CString::new(format!("/{}", "a".repeat(5000))).unwrap();
        // SAFETY: a NUL-terminated string.
        assert_eq!(unsafe { tm_set_config_file(long.as_ptr()) }, -EINVAL);
    }
}
