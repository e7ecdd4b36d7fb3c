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

//! The module is split along the format: [`seek_table`] (the on-disk table: layout,
//! limits, parsing and writing), [`writer`] (parallel compression) and [`reader`]
//! (random access and the sequential walks).

pub mod reader;
pub mod seek_table;
pub mod writer;

pub use reader::{FrameError, FramedReader};
pub use seek_table::{FrameEntry, DEFAULT_FRAME_SIZE, MAX_FRAME_SIZE};
pub use writer::{FrameWriter, FramedStats, HashingWriter};

/// Worker threads to use by default: one per CPU.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Compression settings.
#[derive(Debug, Clone, Copy)]
pub struct FrameOptions {
    /// The zstd level; with `adaptive`, the highest one used.
    pub level: i32,
    /// Step the level down (to 1 at the lowest) while the compression workers hold the
    /// stream up, and back up while they wait for data ([`writer::LevelPolicy`]). Every
    /// frame stays an independent zstd frame: readers never care which level made it.
    pub adaptive: bool,
    /// Decompressed bytes per frame.
    pub frame_size: usize,
    /// Compression threads; 0 or 1 compresses on the caller's thread.
    pub threads: usize,
}

impl Default for FrameOptions {
    fn default() -> Self {
        FrameOptions {
            level: 3,
            adaptive: false,
            frame_size: DEFAULT_FRAME_SIZE,
            threads: cpu_count(),
        }
    }
}

#[cfg(test)]
mod tests;
