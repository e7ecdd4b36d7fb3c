//! Random access to a seekable zstd object, and the sequential walks of `verify` and
//! `fetch`.

use std::collections::BTreeMap;
use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::seek_table::{self, FrameEntry};
use crate::io::ReadAt;

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

impl<R: ReadAt> FramedReader<R> {
    /// Read and check the seek table.
    pub fn open(inner: R) -> Result<Self, FrameError> {
        let t = seek_table::read(&inner)?;
        Ok(FramedReader {
            inner,
            frames: t.frames,
            raw_size: t.raw_size,
            table_offset: t.table_offset,
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
        on_frame: impl FnMut(usize, &[u8], Result<Vec<u8>, FrameError>) -> Result<(), FrameError>,
    ) -> Result<Vec<u8>, FrameError> {
        self.walk_parallel(1, on_frame)
    }

    /// [`walk`](Self::walk) with frames decoded by `threads` worker threads; `on_frame`
    /// still sees every frame in order, on the calling thread. Memory stays bounded: at most
    /// `2 × threads` frames wait in each direction. Frames are read with positional reads.
    pub fn walk_parallel(
        &self,
        threads: usize,
        on_frame: impl FnMut(usize, &[u8], Result<Vec<u8>, FrameError>) -> Result<(), FrameError>,
    ) -> Result<Vec<u8>, FrameError> {
        self.walk_source(threads, &mut Positional(self), on_frame)
    }

    /// [`walk_parallel`](Self::walk_parallel) reading the object's bytes from `object`, a
    /// sequential reader of the whole object from offset 0 (a store's `load`): one large
    /// request instead of one positional read per frame. The frames' sizes still come
    /// from the seek table read at [`open`](Self::open).
    pub fn walk_stream(
        &self,
        threads: usize,
        object: &mut (dyn io::Read + Send),
        on_frame: impl FnMut(usize, &[u8], Result<Vec<u8>, FrameError>) -> Result<(), FrameError>,
    ) -> Result<Vec<u8>, FrameError> {
        self.walk_source(threads, &mut Sequential { src: object, at: 0 }, on_frame)
    }

    fn walk_source(
        &self,
        threads: usize,
        src: &mut dyn FrameSource,
        mut on_frame: impl FnMut(usize, &[u8], Result<Vec<u8>, FrameError>) -> Result<(), FrameError>,
    ) -> Result<Vec<u8>, FrameError> {
        if threads <= 1 || self.frames.len() < 2 {
            for (i, f) in self.frames.iter().enumerate() {
                let stored = src.next(f)?;
                let raw = self.decode_frame(i, &stored);
                on_frame(i, &stored, raw)?;
            }
            return src.rest(self.table_offset, self.table_len());
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
            let reader = s.spawn(move || -> Result<Vec<u8>, FrameError> {
                for (i, f) in self.frames.iter().enumerate() {
                    let stored = src.next(f)?;
                    if job_tx.send((i, stored)).is_err() {
                        return Err(FrameError::Io {
                            offset: f.stored_offset,
                            source: io::Error::other("frame decoding stopped early"),
                        });
                    }
                }
                drop(job_tx);
                src.rest(self.table_offset, self.table_len())
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
            let table = match reader.join() {
                Ok(r) => r?,
                Err(_) => {
                    return Err(FrameError::Io {
                        offset: 0,
                        source: io::Error::other("frame reader thread panicked"),
                    })
                }
            };
            if next != self.frames.len() {
                return Err(FrameError::Io {
                    offset: 0,
                    source: io::Error::other("frame decoding stopped early"),
                });
            }
            Ok(table)
        })
    }

    fn table_len(&self) -> u64 {
        self.inner.size().saturating_sub(self.table_offset)
    }

    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, FrameError> {
        self.inner
            .read_vec_at(offset, len as usize)
            .map_err(|source| FrameError::Io { offset, source })
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
            // InvalidData: a frame that does not decode is damage to whoever reads through
            // this (format readers tell damage from failure by the kind alone).
            let data = self
                .frame(idx)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
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

/// Where a walk gets each frame's stored bytes, in order, and then the seek table's.
trait FrameSource: Send {
    fn next(&mut self, f: &FrameEntry) -> Result<Vec<u8>, FrameError>;
    fn rest(&mut self, table_offset: u64, len: u64) -> Result<Vec<u8>, FrameError>;
}

struct Positional<'a, R>(&'a FramedReader<R>);

impl<R: ReadAt> FrameSource for Positional<'_, R> {
    fn next(&mut self, f: &FrameEntry) -> Result<Vec<u8>, FrameError> {
        self.0.read_at(f.stored_offset, f.stored_len as u64)
    }
    fn rest(&mut self, table_offset: u64, len: u64) -> Result<Vec<u8>, FrameError> {
        self.0.read_at(table_offset, len)
    }
}

struct Sequential<'a> {
    src: &'a mut (dyn io::Read + Send),
    at: u64,
}

impl Sequential<'_> {
    fn take(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, FrameError> {
        if offset != self.at {
            return Err(FrameError::Io {
                offset,
                source: io::Error::other(format!(
                    "sequential read is at offset {}, the seek table expects {offset}",
                    self.at
                )),
            });
        }
        // `len` comes from a seek table whose sizes were checked against the object's.
        let mut buf = vec![0u8; len as usize];
        self.src
            .read_exact(&mut buf)
            .map_err(|source| FrameError::Io { offset, source })?;
        self.at += len;
        Ok(buf)
    }
}

impl FrameSource for Sequential<'_> {
    fn next(&mut self, f: &FrameEntry) -> Result<Vec<u8>, FrameError> {
        self.take(f.stored_offset, f.stored_len as u64)
    }
    fn rest(&mut self, table_offset: u64, len: u64) -> Result<Vec<u8>, FrameError> {
        self.take(table_offset, len)
    }
}
