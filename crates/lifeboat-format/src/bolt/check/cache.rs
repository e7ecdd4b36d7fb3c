//! A read-through cache of large aligned chunks for the strict check's page reads.

use crate::io::ReadAt;

/// Reads through aligned 1 MiB chunks kept in a small LRU: bbolt writes a tree mostly in
/// page order, so the walk is ~98% sequential and this turns ~250 page reads into one
/// large read. If the layout turns out random (a cache that mostly misses), it switches
/// itself off and reads pages directly, so a fragmented file costs no extra I/O.
pub(super) struct ChunkCache {
    slots: Vec<(u64, Vec<u8>)>,
    tick: u64,
    used: Vec<u64>,
    hits: u64,
    misses: u64,
    off: bool,
}

const CHUNK: u64 = 1 << 20;
const CHUNK_SLOTS: usize = 16;

impl ChunkCache {
    pub(super) fn new() -> Self {
        ChunkCache {
            slots: Vec::new(),
            tick: 0,
            used: Vec::new(),
            hits: 0,
            misses: 0,
            off: false,
        }
    }

    pub(super) fn read(
        &mut self,
        src: &dyn ReadAt,
        off: u64,
        buf: &mut [u8],
    ) -> std::io::Result<()> {
        if self.off || buf.len() as u64 > CHUNK / 4 {
            return src.read_exact_at(off, buf);
        }
        let size = src.size();
        let end = off
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= size)
            .ok_or_else(|| crate::io::eof(off, buf.len(), size))?;
        let mut pos = off;
        while pos < end {
            let c = pos / CHUNK;
            let start = c * CHUNK;
            let slot = match self.slots.iter().position(|(i, _)| *i == c) {
                Some(s) => {
                    self.hits += 1;
                    s
                }
                None => {
                    self.misses += 1;
                    if self.misses >= 64 && self.hits < self.misses * 16 {
                        // Under 16 pages used per MiB read: the layout is random.
                        self.off = true;
                        self.slots.clear();
                        let done = (pos - off) as usize;
                        return src.read_exact_at(pos, buf.get_mut(done..).unwrap_or_default());
                    }
                    let len = CHUNK.min(size - start) as usize;
                    // Reuse the evicted slot's buffer: fresh 1 MiB allocations are mapped
                    // and faulted in by the kernel every time, which costs more than the copy.
                    let slot = if self.slots.len() < CHUNK_SLOTS {
                        self.slots.push((u64::MAX, Vec::new()));
                        self.used.push(0);
                        self.slots.len() - 1
                    } else {
                        self.used
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, t)| **t)
                            .map(|(i, _)| i)
                            .unwrap_or(0)
                    };
                    let Some((idx, data)) = self.slots.get_mut(slot) else {
                        return src.read_exact_at(off, buf);
                    };
                    data.resize(len, 0);
                    if let Err(e) = src.read_exact_at(start, data) {
                        *idx = u64::MAX;
                        return Err(e);
                    }
                    *idx = c;
                    slot
                }
            };
            self.tick += 1;
            if let Some(u) = self.used.get_mut(slot) {
                *u = self.tick;
            }
            let data = self
                .slots
                .get(slot)
                .map(|(_, d)| d.as_slice())
                .unwrap_or_default();
            let from = (pos - start) as usize;
            let n = ((end - pos) as usize).min(data.len().saturating_sub(from));
            if n == 0 {
                return Err(crate::io::eof(pos, buf.len(), size));
            }
            let done = (pos - off) as usize;
            if let (Some(dst), Some(srcb)) = (buf.get_mut(done..done + n), data.get(from..from + n))
            {
                dst.copy_from_slice(srcb);
            }
            pos += n as u64;
        }
        Ok(())
    }
}
