//! What happens to snapshot bytes in flight, between the source and the store:
//! trailer split and SHA-256 check, framed zstd compression, hashing of what is stored,
//! rate limiting. Everything here is synchronous and runs on one blocking thread
//! (plus the compression workers), fed by the source's async stream through a bounded
//! channel, so memory does not grow with the database.

pub mod frames;
pub mod trailer;

use std::io::{self, Write};
use std::time::{Duration, Instant};

pub use frames::{FrameOptions, FrameWriter, FramedReader, FramedStats};
pub use trailer::{Split, TrailerSplitter};

/// Sleeps just enough to keep the average rate at or below `bytes_per_sec`.
pub struct RateLimiter {
    bytes_per_sec: u64,
    start: Instant,
    seen: u64,
}

impl RateLimiter {
    pub fn new(bytes_per_sec: u64) -> Self {
        RateLimiter {
            bytes_per_sec: bytes_per_sec.max(1),
            start: Instant::now(),
            seen: 0,
        }
    }
    pub fn consume(&mut self, n: usize) {
        self.seen += n as u64;
        let due = Duration::from_secs_f64(self.seen as f64 / self.bytes_per_sec as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

/// The result of pushing a whole snapshot stream through a [`SnapshotSink`].
#[derive(Debug, Clone)]
pub struct SinkResult {
    pub split: Split,
    pub stored: FramedStats,
}

/// Trailer split → SHA-256 of the database → framed zstd → `W`.
pub struct SnapshotSink<W: Write> {
    splitter: TrailerSplitter,
    frames: FrameWriter<W>,
    limiter: Option<RateLimiter>,
}

impl<W: Write> SnapshotSink<W> {
    pub fn new(out: W, opts: FrameOptions, rate_limit: Option<u64>) -> io::Result<Self> {
        Ok(SnapshotSink {
            splitter: TrailerSplitter::new(),
            frames: FrameWriter::new(out, opts)?,
            limiter: rate_limit.map(RateLimiter::new),
        })
    }

    /// Accept the next chunk of the stream, as etcd sent it.
    pub fn push(&mut self, chunk: &[u8]) -> io::Result<()> {
        if let Some(l) = &mut self.limiter {
            l.consume(chunk.len());
        }
        let frames = &mut self.frames;
        self.splitter.push(chunk, |db| frames.write_all(db))
    }

    /// Database bytes accepted so far (the stream less the held-back trailer).
    pub fn db_len(&self) -> u64 {
        self.splitter.db_len()
    }

    /// End of stream: flush the last frame and the seek table; give back the writer.
    pub fn finish(self) -> io::Result<(W, SinkResult)> {
        let split = self.splitter.finish();
        let (w, stored) = self.frames.finish()?;
        Ok((w, SinkResult { split, stored }))
    }
}
