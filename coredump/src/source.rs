//! Where core bytes come from: a one-pass stream (a pipe from the kernel) or a seekable file.
//!
//! The core reader asks for byte ranges in increasing offset order, so a stream never needs to
//! go back; everything between two requested ranges is skipped without being stored.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use crate::error::{Error, Result};

/// A byte source addressed by file offset.
pub(crate) trait Source {
    /// Reads exactly `len` bytes at `offset`. Allocation grows with the bytes really read, so a
    /// garbage length on a short input fails with [`Error::Truncated`] instead of a huge buffer.
    fn read_at(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let buf = self.read_upto(offset, len)?;
        if buf.len() as u64 != len {
            return Err(Error::Truncated {
                offset,
                needed: len,
            });
        }
        Ok(buf)
    }
    /// Reads up to `len` bytes at `offset`; fewer only at the end of the input.
    fn read_upto(&mut self, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Called once at the end with the offset where the last segment ends: a stream is drained
    /// to EOF so the writer (the kernel) finishes; an input shorter than `end` is truncated.
    fn finish(&mut self, end: u64) -> Result<()>;
}

fn read_len(reader: &mut impl Read, len: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(usize::try_from(len.min(1 << 20)).unwrap_or(1 << 20));
    reader.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A forward-only stream (stdin pipe).
pub(crate) struct Stream<R> {
    inner: R,
    pos: u64,
    /// Scratch for skipping: large reads make a 300 MiB pipe cost few syscalls.
    scratch: Vec<u8>,
}

const SKIP_CHUNK: usize = 256 << 10;

/// Reads and discards up to `n` bytes; returns how many were there.
fn discard(reader: &mut impl Read, scratch: &mut Vec<u8>, mut n: u64) -> io::Result<u64> {
    scratch.resize(SKIP_CHUNK, 0);
    let mut done = 0;
    while n > 0 {
        let want = usize::try_from(n.min(SKIP_CHUNK as u64)).unwrap_or(SKIP_CHUNK);
        match reader.read(&mut scratch[..want]) {
            Ok(0) => break,
            Ok(got) => {
                done += got as u64;
                n -= got as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl<R: Read> Stream<R> {
    pub(crate) fn new(inner: R) -> Self {
        Stream {
            inner,
            pos: 0,
            scratch: Vec::new(),
        }
    }

    /// Offset of the next byte.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    pub(crate) fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn skip_to(&mut self, offset: u64) -> Result<()> {
        if offset < self.pos {
            return Err(Error::Unsupported(
                "core segments are not in file order; pass the core as a file (-c) instead",
            ));
        }
        let gap = offset - self.pos;
        let skipped = discard(&mut self.inner, &mut self.scratch, gap)?;
        self.pos += skipped;
        if skipped != gap {
            return Err(Error::Truncated {
                offset: self.pos,
                needed: gap - skipped,
            });
        }
        Ok(())
    }
}

impl<R: Read> Source for Stream<R> {
    fn read_upto(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.skip_to(offset)?;
        let buf = read_len(&mut self.inner, len)?;
        self.pos += buf.len() as u64;
        Ok(buf)
    }

    fn finish(&mut self, end: u64) -> Result<()> {
        let drained = discard(&mut self.inner, &mut self.scratch, u64::MAX)?;
        self.pos += drained;
        if self.pos < end {
            return Err(Error::Truncated {
                offset: self.pos,
                needed: end - self.pos,
            });
        }
        Ok(())
    }
}

/// A seekable core file (`-c`, gcore output).
pub(crate) struct Seekable {
    file: File,
}

impl Seekable {
    pub(crate) fn new(file: File) -> Self {
        Seekable { file }
    }
}

impl Source for Seekable {
    fn read_upto(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.file.seek(SeekFrom::Start(offset))?;
        read_len(&mut self.file, len)
    }

    fn finish(&mut self, end: u64) -> Result<()> {
        let size = self.file.metadata()?.len();
        if size < end {
            return Err(Error::Truncated {
                offset: size,
                needed: end - size,
            });
        }
        Ok(())
    }
}
