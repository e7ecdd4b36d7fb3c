//! Seekable zstd: the compressed form of every stored backup.
//!
//! The database is cut into frames of a fixed decompressed size (a multiple of every bbolt
//! page size), each compressed independently with a content checksum, then a seek table is
//! appended as a zstd *skippable frame* in the layout of zstd's "seekable format"
//! (contrib/seekable_format). Plain `zstd -d` decodes the object (it skips the table);
//! lifeboat uses the table to read any page of a stored backup by decompressing only the
//! frame that holds it, which is what lets `verify`, `inspect` and the manifest read the
//! database out of a compressed object without a temporary file.
//!
//! Written here rather than taken from a crate: the `zstd` crate does not expose the
//! seekable format, and the format is small (a table of sizes and a 9-byte footer).
//! Independent frames also give parallel compression for free: each worker thread owns one
//! `zstd::bulk::Compressor`, and frames are written back in order.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::io::ReadAt;

const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
const FOOTER_LEN: u64 = 9;
/// Skippable-frame header: magic + frame size.
const SKIPPABLE_HEADER_LEN: u64 = 8;

/// Upper bound on frames in one object (4 TiB at the default frame size); a footer that
/// claims more is damage, and is not allowed to make the reader allocate for it.
const MAX_FRAMES: u64 = 1 << 22;

/// Default decompressed size of one frame: small enough that reading one page decompresses
/// little, large enough that the compression ratio does not suffer.
pub const DEFAULT_FRAME_SIZE: usize = 1 << 20;

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
    pub fn into_parts(self) -> (W, u64, [u8; 32]) {
        (self.inner, self.written, self.hasher.finalize().into())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Worker threads to use by default: one per CPU.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Compression settings.
#[derive(Debug, Clone, Copy)]
pub struct FrameOptions {
    pub level: i32,
    /// Decompressed bytes per frame.
    pub frame_size: usize,
    /// Compression threads; 0 or 1 compresses on the caller's thread.
    pub threads: usize,
}

impl Default for FrameOptions {
    fn default() -> Self {
        FrameOptions {
            level: 3,
            frame_size: DEFAULT_FRAME_SIZE,
            threads: cpu_count(),
        }
    }
}

/// What [`FrameWriter::finish`] reports.
#[derive(Debug, Clone)]
pub struct FramedStats {
    pub raw_len: u64,
    pub stored_len: u64,
    pub stored_sha256: [u8; 32],
    pub frames: usize,
}

struct Job {
    seq: u64,
    raw: Vec<u8>,
}

struct Done {
    seq: u64,
    raw: Vec<u8>,
    compressed: io::Result<Vec<u8>>,
}

struct Pool {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    handles: Vec<JoinHandle<()>>,
}

fn new_compressor(level: i32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.include_checksum(true)?;
    c.include_contentsize(true)?;
    Ok(c)
}

impl Pool {
    fn new(threads: usize, level: i32) -> Pool {
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let handles = (0..threads)
            .map(|i| {
                let job_rx = Arc::clone(&job_rx);
                let done_tx = done_tx.clone();
                std::thread::Builder::new()
                    .name(format!("zstd-{i}"))
                    .spawn(move || {
                        let mut comp = new_compressor(level);
                        loop {
                            let job = match job_rx.lock() {
                                Ok(rx) => rx.recv(),
                                Err(_) => return,
                            };
                            let Ok(job) = job else { return };
                            let compressed = match &mut comp {
                                Ok(c) => c.compress(&job.raw),
                                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                            };
                            let done = Done {
                                seq: job.seq,
                                raw: job.raw,
                                compressed,
                            };
                            if done_tx.send(done).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawn compression thread")
            })
            .collect();
        Pool {
            jobs: Some(job_tx),
            done: done_rx,
            handles,
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs.take();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Compresses a byte stream into independent zstd frames plus a seek table.
pub struct FrameWriter<W: Write> {
    out: HashingWriter<W>,
    opts: FrameOptions,
    cur: Vec<u8>,
    entries: Vec<(u32, u32)>,
    raw_len: u64,
    pool: Option<Pool>,
    inline: Option<zstd::bulk::Compressor<'static>>,
    next_submit: u64,
    next_write: u64,
    pending: BTreeMap<u64, Done>,
    spare: Vec<Vec<u8>>,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(out: W, opts: FrameOptions) -> io::Result<Self> {
        let frame_size = opts.frame_size.clamp(64 * 1024, u32::MAX as usize / 2);
        let opts = FrameOptions { frame_size, ..opts };
        let (pool, inline) = if opts.threads > 1 {
            (Some(Pool::new(opts.threads, opts.level)), None)
        } else {
            (None, Some(new_compressor(opts.level)?))
        };
        Ok(FrameWriter {
            out: HashingWriter::new(out),
            cur: Vec::with_capacity(frame_size),
            opts,
            entries: Vec::new(),
            raw_len: 0,
            pool,
            inline,
            next_submit: 0,
            next_write: 0,
            pending: BTreeMap::new(),
            spare: Vec::new(),
        })
    }

    /// Frames submitted but not yet written; bounded so memory does not grow with the input.
    fn in_flight(&self) -> u64 {
        self.next_submit - self.next_write
    }

    fn max_in_flight(&self) -> u64 {
        self.opts.threads as u64 + 1
    }

    fn submit(&mut self) -> io::Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        let fresh = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.opts.frame_size));
        let raw = std::mem::replace(&mut self.cur, fresh);
        if let Some(c) = &mut self.inline {
            let compressed = c.compress(&raw)?;
            let raw_len = raw.len();
            self.write_frame(&compressed, raw_len)?;
            let mut raw = raw;
            raw.clear();
            self.spare.push(raw);
            return Ok(());
        }
        while self.in_flight() >= self.max_in_flight() {
            self.receive_one()?;
        }
        let seq = self.next_submit;
        let jobs = self
            .pool
            .as_ref()
            .and_then(|p| p.jobs.as_ref())
            .ok_or_else(|| io::Error::other("compression pool is gone"))?;
        jobs.send(Job { seq, raw })
            .map_err(|_| io::Error::other("compression thread died"))?;
        self.next_submit += 1;
        Ok(())
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| io::Error::other("compression pool is gone"))?;
        let done = pool
            .done
            .recv()
            .map_err(|_| io::Error::other("compression thread died"))?;
        self.pending.insert(done.seq, done);
        while let Some(done) = self.pending.remove(&self.next_write) {
            let compressed = done.compressed?;
            self.write_frame(&compressed, done.raw.len())?;
            self.next_write += 1;
            let mut raw = done.raw;
            raw.clear();
            self.spare.push(raw);
        }
        Ok(())
    }

    fn write_frame(&mut self, compressed: &[u8], raw_len: usize) -> io::Result<()> {
        let c = u32::try_from(compressed.len())
            .map_err(|_| io::Error::other("compressed frame over 4 GiB"))?;
        let r = u32::try_from(raw_len).map_err(|_| io::Error::other("frame over 4 GiB"))?;
        self.out.write_all(compressed)?;
        self.entries.push((c, r));
        if self.inline.is_some() {
            self.next_write += 1;
            self.next_submit += 1;
        }
        Ok(())
    }

    /// Flush the last frame, write the seek table, and return the inner writer.
    pub fn finish(mut self) -> io::Result<(W, FramedStats)> {
        self.submit()?;
        while self.in_flight() > 0 {
            self.receive_one()?;
        }
        self.pool.take();
        let n =
            u32::try_from(self.entries.len()).map_err(|_| io::Error::other("too many frames"))?;
        let mut table = Vec::with_capacity(self.entries.len() * 8 + 17);
        table.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        let body = self.entries.len() * 8 + FOOTER_LEN as usize;
        let body = u32::try_from(body).map_err(|_| io::Error::other("seek table too large"))?;
        table.extend_from_slice(&body.to_le_bytes());
        for (c, r) in &self.entries {
            table.extend_from_slice(&c.to_le_bytes());
            table.extend_from_slice(&r.to_le_bytes());
        }
        table.extend_from_slice(&n.to_le_bytes());
        table.push(0); // descriptor: no per-frame checksums (each frame carries its own)
        table.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
        self.out.write_all(&table)?;
        self.out.flush()?;
        let frames = self.entries.len();
        let raw_len = self.raw_len;
        let (w, stored_len, stored_sha256) = self.out.into_parts();
        Ok((
            w,
            FramedStats {
                raw_len,
                stored_len,
                stored_sha256,
                frames,
            },
        ))
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let total = buf.len();
        while !buf.is_empty() {
            let room = self.opts.frame_size - self.cur.len();
            let take = room.min(buf.len());
            self.cur.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.cur.len() == self.opts.frame_size {
                self.submit()?;
            }
        }
        self.raw_len += total as u64;
        Ok(total)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One frame's place in the object and in the decompressed stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameEntry {
    pub stored_offset: u64,
    pub stored_len: u32,
    pub raw_offset: u64,
    pub raw_len: u32,
}

/// Why an object cannot be read as a seekable zstd object.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("object is {0} bytes, too short to hold a seek table (truncated?)")]
    TooShort(u64),
    #[error("no seek table at the end of the object (bytes at offset {offset}: {found:08x}); truncated or not a lifeboat backup")]
    NoSeekTable { offset: u64, found: u32 },
    #[error("seek table at offset {offset} is damaged: {what}")]
    BadSeekTable { offset: u64, what: String },
    #[error("frame {index} (object offset {offset}): {what}")]
    BadFrame {
        index: usize,
        offset: u64,
        what: String,
    },
    #[error("read at object offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
}

/// Random access to the decompressed bytes of a seekable zstd object.
pub struct FramedReader<R> {
    inner: R,
    frames: Vec<FrameEntry>,
    raw_size: u64,
    table_offset: u64,
    cache: Mutex<Vec<(usize, Arc<Vec<u8>>)>>,
    cache_frames: usize,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

impl<R: ReadAt> FramedReader<R> {
    /// Read and check the seek table.
    pub fn open(inner: R) -> Result<Self, FrameError> {
        let size = inner.size();
        if size < FOOTER_LEN + SKIPPABLE_HEADER_LEN {
            return Err(FrameError::TooShort(size));
        }
        let footer_at = size - FOOTER_LEN;
        let footer = inner
            .read_vec_at(footer_at, FOOTER_LEN as usize)
            .map_err(|source| FrameError::Io {
                offset: footer_at,
                source,
            })?;
        let magic = le_u32(&footer, 5);
        if magic != SEEKABLE_MAGIC {
            return Err(FrameError::NoSeekTable {
                offset: footer_at + 5,
                found: magic,
            });
        }
        let n = u64::from(le_u32(&footer, 0));
        if n > MAX_FRAMES {
            return Err(FrameError::BadSeekTable {
                offset: footer_at,
                what: format!("{n} frames is more than lifeboat ever writes ({MAX_FRAMES})"),
            });
        }
        let descriptor = footer.get(4).copied().unwrap_or(0);
        let entry_len: u64 = if descriptor & 0x80 != 0 { 12 } else { 8 };
        let body = n
            .checked_mul(entry_len)
            .and_then(|v| v.checked_add(FOOTER_LEN))
            .ok_or(FrameError::TooShort(size))?;
        let table_len = body + SKIPPABLE_HEADER_LEN;
        if table_len > size {
            return Err(FrameError::BadSeekTable {
                offset: footer_at,
                what: format!("{n} frames need {table_len} bytes, object has {size}"),
            });
        }
        let table_offset = size - table_len;
        let table = inner
            .read_vec_at(table_offset, table_len as usize)
            .map_err(|source| FrameError::Io {
                offset: table_offset,
                source,
            })?;
        if le_u32(&table, 0) != SKIPPABLE_MAGIC || u64::from(le_u32(&table, 4)) != body {
            return Err(FrameError::BadSeekTable {
                offset: table_offset,
                what: "skippable frame header does not match the footer".into(),
            });
        }
        let mut frames = Vec::with_capacity(n as usize);
        let (mut stored, mut raw) = (0u64, 0u64);
        for i in 0..n as usize {
            let at = 8 + i * entry_len as usize;
            let c = le_u32(&table, at);
            let r = le_u32(&table, at + 4);
            frames.push(FrameEntry {
                stored_offset: stored,
                stored_len: c,
                raw_offset: raw,
                raw_len: r,
            });
            stored += u64::from(c);
            raw += u64::from(r);
        }
        if stored != table_offset {
            return Err(FrameError::BadSeekTable {
                offset: table_offset,
                what: format!(
                    "frames add up to {stored} bytes but the table starts at {table_offset}"
                ),
            });
        }
        Ok(FramedReader {
            inner,
            frames,
            raw_size: raw,
            table_offset,
            cache: Mutex::new(Vec::new()),
            cache_frames: 4,
        })
    }

    /// Keep up to `n` decompressed frames in memory (default 4).
    pub fn with_cache_frames(mut self, n: usize) -> Self {
        self.cache_frames = n.max(1);
        self
    }

    pub fn frames(&self) -> &[FrameEntry] {
        &self.frames
    }

    /// Where the seek table starts in the object.
    pub fn table_offset(&self) -> u64 {
        self.table_offset
    }

    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Read the compressed bytes of frame `index`.
    pub fn read_stored_frame(&self, index: usize) -> Result<Vec<u8>, FrameError> {
        let f = self.frames.get(index).ok_or(FrameError::BadFrame {
            index,
            offset: self.table_offset,
            what: "no such frame".into(),
        })?;
        self.inner
            .read_vec_at(f.stored_offset, f.stored_len as usize)
            .map_err(|source| FrameError::Io {
                offset: f.stored_offset,
                source,
            })
    }

    /// Decompress frame `index` from its compressed bytes, checking its size and checksum.
    pub fn decode_frame(&self, index: usize, stored: &[u8]) -> Result<Vec<u8>, FrameError> {
        let f = self.frames.get(index).ok_or(FrameError::BadFrame {
            index,
            offset: self.table_offset,
            what: "no such frame".into(),
        })?;
        let bad = |what: String| FrameError::BadFrame {
            index,
            offset: f.stored_offset,
            what,
        };
        let mut dec = zstd::bulk::Decompressor::new().map_err(|e| bad(e.to_string()))?;
        let raw = dec
            .decompress(stored, f.raw_len as usize)
            .map_err(|e| bad(format!("zstd cannot decode it: {e}")))?;
        if raw.len() != f.raw_len as usize {
            return Err(bad(format!(
                "decodes to {} bytes, seek table says {}",
                raw.len(),
                f.raw_len
            )));
        }
        Ok(raw)
    }

    /// Read the whole object in order: every frame's stored bytes and its decoded bytes
    /// (or why it would not decode), then the seek table's bytes. This is the sequential
    /// pass of `verify` and `fetch`; damage in one frame does not stop the walk.
    /// Returns the seek table's bytes (the rest of the object).
    pub fn walk(
        &self,
        mut on_frame: impl FnMut(usize, &[u8], Result<Vec<u8>, FrameError>) -> Result<(), FrameError>,
    ) -> Result<Vec<u8>, FrameError> {
        for i in 0..self.frames.len() {
            let stored = self.read_stored_frame(i)?;
            let raw = self.decode_frame(i, &stored);
            on_frame(i, &stored, raw)?;
        }
        self.read_table()
    }

    /// [`walk`](Self::walk) with frames decoded by `threads` worker threads; `on_frame`
    /// still sees every frame in order, on the calling thread. Memory stays bounded: at most
    /// `2 × threads` frames wait in each direction.
    pub fn walk_parallel(
        &self,
        threads: usize,
        mut on_frame: impl FnMut(usize, &[u8], Result<Vec<u8>, FrameError>) -> Result<(), FrameError>,
    ) -> Result<Vec<u8>, FrameError> {
        if threads <= 1 || self.frames.len() < 2 {
            return self.walk(on_frame);
        }
        type Decoded = (usize, Vec<u8>, Result<Vec<u8>, FrameError>);
        std::thread::scope(|s| {
            let (job_tx, job_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(threads * 2);
            let job_rx = Arc::new(Mutex::new(job_rx));
            let (done_tx, done_rx) = mpsc::sync_channel::<Decoded>(threads * 2);
            for _ in 0..threads {
                let job_rx = Arc::clone(&job_rx);
                let done_tx = done_tx.clone();
                s.spawn(move || loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((i, stored)) = job else { return };
                    let raw = self.decode_frame(i, &stored);
                    if done_tx.send((i, stored, raw)).is_err() {
                        return;
                    }
                });
            }
            // Workers own the receiving side now: when they stop, the reader's sends fail.
            drop(job_rx);
            drop(done_tx);
            let reader = s.spawn(move || -> Result<(), FrameError> {
                for i in 0..self.frames.len() {
                    let stored = self.read_stored_frame(i)?;
                    if job_tx.send((i, stored)).is_err() {
                        break;
                    }
                }
                Ok(())
            });
            let mut pending = BTreeMap::new();
            let mut next = 0usize;
            for (i, stored, raw) in done_rx {
                pending.insert(i, (stored, raw));
                while let Some((stored, raw)) = pending.remove(&next) {
                    on_frame(next, &stored, raw)?;
                    next += 1;
                }
            }
            match reader.join() {
                Ok(r) => r?,
                Err(_) => {
                    return Err(FrameError::Io {
                        offset: 0,
                        source: io::Error::other("frame reader thread panicked"),
                    })
                }
            }
            if next != self.frames.len() {
                return Err(FrameError::Io {
                    offset: 0,
                    source: io::Error::other("frame decoding stopped early"),
                });
            }
            self.read_table()
        })
    }

    /// The bytes from the seek table's start to the end of the object.
    fn read_table(&self) -> Result<Vec<u8>, FrameError> {
        let len = self.inner.size().saturating_sub(self.table_offset);
        self.inner
            .read_vec_at(self.table_offset, len as usize)
            .map_err(|source| FrameError::Io {
                offset: self.table_offset,
                source,
            })
    }

    fn frame(&self, index: usize) -> Result<Arc<Vec<u8>>, FrameError> {
        if let Ok(cache) = self.cache.lock() {
            if let Some((_, data)) = cache.iter().find(|(i, _)| *i == index) {
                return Ok(Arc::clone(data));
            }
        }
        let stored = self.read_stored_frame(index)?;
        let data = Arc::new(self.decode_frame(index, &stored)?);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= self.cache_frames {
                cache.remove(0);
            }
            cache.push((index, Arc::clone(&data)));
        }
        Ok(data)
    }

    fn frame_index_of(&self, offset: u64) -> Option<usize> {
        let i = self.frames.partition_point(|f| f.raw_offset <= offset);
        i.checked_sub(1)
    }
}

impl<R: ReadAt> ReadAt for FramedReader<R> {
    fn size(&self) -> u64 {
        self.raw_size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.raw_size) {
            return Err(crate::io::eof(offset, buf.len(), self.raw_size));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let idx = self
                .frame_index_of(pos)
                .ok_or_else(|| crate::io::eof(pos, buf.len() - done, self.raw_size))?;
            let f = self.frames[idx];
            let data = self.frame(idx).map_err(io::Error::other)?;
            let in_frame = (pos - f.raw_offset) as usize;
            let avail = data.get(in_frame..).unwrap_or(&[]);
            let take = avail.len().min(buf.len() - done);
            if take == 0 {
                return Err(crate::io::eof(pos, buf.len() - done, self.raw_size));
            }
            buf[done..done + take].copy_from_slice(&avail[..take]);
            done += take;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7919) % 251) as u8).collect()
    }

    fn compress(data: &[u8], threads: usize, frame_size: usize) -> (Vec<u8>, FramedStats) {
        let mut w = FrameWriter::new(
            Vec::new(),
            FrameOptions {
                level: 3,
                frame_size,
                threads,
            },
        )
        .unwrap();
        for chunk in data.chunks(10_000) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_random_access_and_plain_zstd() {
        let data = sample(1_000_000);
        for threads in [1, 3] {
            let (obj, stats) = compress(&data, threads, 64 * 1024);
            assert_eq!(stats.raw_len, data.len() as u64);
            assert_eq!(stats.stored_len, obj.len() as u64);
            assert_eq!(stats.frames, 16);
            assert_eq!(stats.stored_sha256, <[u8; 32]>::from(Sha256::digest(&obj)));
            // Plain zstd decodes it, skipping the seek table.
            assert_eq!(zstd::decode_all(&obj[..]).unwrap(), data);
            let r = FramedReader::open(obj).unwrap();
            assert_eq!(r.size(), data.len() as u64);
            for (off, len) in [
                (0usize, 10usize),
                (65_530, 20),
                (999_990, 10),
                (300_000, 200_000),
            ] {
                let got = r.read_vec_at(off as u64, len).unwrap();
                assert_eq!(got, data[off..off + len]);
            }
            assert!(r.read_vec_at(999_995, 10).is_err());
            // Parallel walk sees the same frames, in order.
            let mut seen = Vec::new();
            let mut next = 0;
            let table = r
                .walk_parallel(3, |i, _, raw| {
                    assert_eq!(i, next);
                    next += 1;
                    seen.extend_from_slice(&raw.unwrap());
                    Ok(())
                })
                .unwrap();
            assert_eq!(seen, data);
            assert_eq!(table.len() as u64, stats.stored_len - r.table_offset());
        }
    }

    #[test]
    fn empty_input_is_a_valid_object() {
        let (obj, stats) = compress(&[], 1, 64 * 1024);
        assert_eq!(stats.frames, 0);
        let r = FramedReader::open(obj).unwrap();
        assert_eq!(r.size(), 0);
    }

    #[test]
    fn truncation_and_damage_are_reported_not_panicked() {
        let data = sample(300_000);
        let (obj, _) = compress(&data, 1, 64 * 1024);
        for cut in [0, 1, 8, obj.len() / 2, obj.len() - 1] {
            assert!(
                FramedReader::open(obj[..cut].to_vec()).is_err(),
                "cut {cut}"
            );
        }
        let mut bad = obj.clone();
        bad[100] ^= 0xff;
        let r = FramedReader::open(bad).unwrap();
        assert!(r.read_vec_at(0, 100).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(r) = FramedReader::open(data) {
                let _ = r.read_vec_at(0, r.size().min(64) as usize);
            }
        }
    }
}
