//! Starting and awaiting the write-out of a file's data without syncing it: the one call
//! (`sync_file_range(2)`) that neither rustix nor nix wraps.
//!
//! The stock thread uses it to write the first block of each temporary file ahead, and to
//! wait until it is written, without syncing anything (see `stock`): a record then
//! overwrites an allocated, written block.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Starts writing the file's dirty pages; does not wait.
pub fn start(file: impl AsFd) -> io::Result<()> {
    sync_file_range(file, libc::SYNC_FILE_RANGE_WRITE)
}

/// Returns once every dirty page of the file that existed at the call has been written (and
/// the file system has finished with its completion, e.g. marked the extent written).
/// Nothing is flushed: the data is on its way, not yet durable.
pub fn wait(file: impl AsFd) -> io::Result<()> {
    sync_file_range(
        file,
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
    )
}

#[allow(unsafe_code)]
fn sync_file_range(file: impl AsFd, flags: libc::c_uint) -> io::Result<()> {
    let fd = file.as_fd().as_raw_fd();
    // SAFETY: plain syscall on a descriptor we borrow for the duration of the call; offset 0
    // and length 0 mean "the whole file". No memory is passed.
    let r = unsafe { libc::sync_file_range(fd, 0, 0, flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_written_file_can_be_started_and_awaited() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"some bytes").unwrap();
        start(&f).unwrap();
        wait(&f).unwrap();
        f.sync_data().unwrap();
    }

    #[test]
    fn a_bad_descriptor_is_an_error_not_a_crash() {
        // A socket is not a file: the kernel refuses (ESPIPE), and we say so.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let e = start(&a).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ESPIPE));
    }
}
