//! What happens to snapshot bytes in flight, between the source and the store:
//! trailer split and SHA-256 check, framed zstd compression, hashing of what is stored,
//! Everything here is synchronous and runs on one blocking thread
//! (plus the compression workers, and one thread per encrypting destination:
//! [`encrypt`]), fed by the source's async stream through a bounded channel, so memory
//! does not grow with the database.

pub mod encrypt;
pub mod frames;
pub mod trailer;

use std::io::{self, Write};

pub use frames::{FrameOptions, FrameWriter, FramedReader, FramedStats};
pub use trailer::{Split, TrailerSplitter};

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
}

impl<W: Write> SnapshotSink<W> {
    pub fn new(out: W, opts: FrameOptions) -> io::Result<Self> {
        Ok(SnapshotSink {
            splitter: TrailerSplitter::new(),
            frames: FrameWriter::new(out, opts)?,
        })
    }

    /// Accept the next chunk of the stream, as etcd sent it.
    pub fn push(&mut self, chunk: &[u8]) -> io::Result<()> {
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
