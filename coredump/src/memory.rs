//! The process memory kept from the core: a few non-overlapping chunks, sorted by address.

/// Sparse memory of the crashed process.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    chunks: Vec<(u64, Vec<u8>)>,
}

impl Memory {
    pub(crate) fn insert(&mut self, vaddr: u64, bytes: Vec<u8>) {
        self.chunks.push((vaddr, bytes));
    }

    /// Sorts the chunks; call once after the last insert.
    pub(crate) fn finish(&mut self) {
        self.chunks.sort_by_key(|c| c.0);
    }

    /// Bytes kept in total.
    pub(crate) fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.1.len()).sum()
    }

    /// The longest kept slice starting at `addr`.
    pub(crate) fn slice_from(&self, addr: u64) -> Option<&[u8]> {
        let i = self
            .chunks
            .partition_point(|c| c.0 <= addr)
            .checked_sub(1)?;
        let (start, bytes) = &self.chunks[i];
        let off = usize::try_from(addr - start).ok()?;
        bytes.get(off..).filter(|s| !s.is_empty())
    }

    /// `n` bytes at `addr`, possibly spanning two adjacent chunks.
    pub(crate) fn read(&self, addr: u64, out: &mut [u8]) -> Option<()> {
        let mut done = 0;
        while done < out.len() {
            let s = self.slice_from(addr.checked_add(done as u64)?)?;
            let n = s.len().min(out.len() - done);
            out[done..done + n].copy_from_slice(&s[..n]);
            done += n;
        }
        Some(())
    }

    pub(crate) fn read_u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Some(u64::from_le_bytes(b))
    }
}
