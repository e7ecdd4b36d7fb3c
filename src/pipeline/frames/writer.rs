//! Parallel compression into independent zstd frames, then the seek table.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use super::seek_table::{self, MAX_FRAME_SIZE};
use super::FrameOptions;

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

/// What [`FrameWriter::finish`] reports.
#[derive(Debug, Clone)]
pub struct FramedStats {
    pub raw_len: u64,
    pub stored_len: u64,
    pub stored_sha256: [u8; 32],
    pub frames: usize,
    /// How many frames each zstd level compressed, by level.
    pub levels: BTreeMap<i32, u64>,
}

/// The adaptive level: one step down after the producer had to wait for a compression
/// worker on `DOWN_AFTER` frames in a row (compression is the bottleneck: a lower level
/// keeps up with the stream), one step up after `UP_AFTER` frames in a row found a worker
/// idle (the stream is the bottleneck: spend the spare time on a better ratio). Never
/// above the configured level, never below 1. Decided per frame from queue depth alone
/// (no clock), so the same sequence of waits gives the same levels.
#[derive(Debug, Clone)]
pub struct LevelPolicy {
    max: i32,
    now: i32,
    busy: u32,
    idle: u32,
}

impl LevelPolicy {
    const DOWN_AFTER: u32 = 2;
    const UP_AFTER: u32 = 8;

    pub fn new(max: i32) -> LevelPolicy {
        LevelPolicy {
            max,
            now: max,
            busy: 0,
            idle: 0,
        }
    }

    /// The level for the next frame, given whether submitting it had to wait for a worker
    /// (`waited`) or found one idle (`idle`).
    pub fn next(&mut self, waited: bool, idle: bool) -> i32 {
        let floor = self.max.min(1);
        if waited {
            self.idle = 0;
            self.busy += 1;
            if self.busy >= Self::DOWN_AFTER && self.now > floor {
                self.now -= 1;
                self.busy = 0;
            }
        } else if idle {
            self.busy = 0;
            self.idle += 1;
            if self.idle >= Self::UP_AFTER && self.now < self.max {
                self.now += 1;
                self.idle = 0;
            }
        }
        self.now
    }
}

struct Job {
    seq: u64,
    level: i32,
    raw: Vec<u8>,
}

struct Done {
    seq: u64,
    level: i32,
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
                        crate::host::background();
                        let mut comp = new_compressor(level);
                        let mut comp_level = level;
                        loop {
                            let job = match job_rx.lock() {
                                Ok(rx) => rx.recv(),
                                Err(_) => return,
                            };
                            let Ok(job) = job else { return };
                            let compressed = match &mut comp {
                                Ok(c) => {
                                    if job.level != comp_level {
                                        // A failed change keeps the old level: still a
                                        // valid frame, recorded as the level it used.
                                        if c.set_compression_level(job.level).is_ok() {
                                            comp_level = job.level;
                                        }
                                    }
                                    c.compress(&job.raw)
                                }
                                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                            };
                            let done = Done {
                                seq: job.seq,
                                level: comp_level,
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
    policy: Option<LevelPolicy>,
    levels: BTreeMap<i32, u64>,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(out: W, opts: FrameOptions) -> io::Result<Self> {
        let frame_size = opts.frame_size.clamp(64 * 1024, MAX_FRAME_SIZE as usize);
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
            policy: (opts.adaptive && opts.threads > 1).then(|| LevelPolicy::new(opts.level)),
            levels: BTreeMap::new(),
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
            *self.levels.entry(self.opts.level).or_default() += 1;
            self.write_frame(&compressed, raw_len)?;
            let mut raw = raw;
            raw.clear();
            self.spare.push(raw);
            return Ok(());
        }
        let waited = self.in_flight() >= self.max_in_flight();
        let idle = self.in_flight() < self.opts.threads as u64;
        while self.in_flight() >= self.max_in_flight() {
            self.receive_one()?;
        }
        let level = match &mut self.policy {
            Some(p) => p.next(waited, idle),
            None => self.opts.level,
        };
        let seq = self.next_submit;
        let jobs = self
            .pool
            .as_ref()
            .and_then(|p| p.jobs.as_ref())
            .ok_or_else(|| io::Error::other("compression pool is gone"))?;
        jobs.send(Job { seq, level, raw })
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
            *self.levels.entry(done.level).or_default() += 1;
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
        let table = seek_table::encode(&self.entries)?;
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
                levels: std::mem::take(&mut self.levels),
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
