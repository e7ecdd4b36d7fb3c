//! Reading objects: `load` as one streamed GET, `open` as ranged GETs of whole blocks
//! through a small cache.
//!
//! A B+tree walk (`inspect DEST:ID`, `get`) asks for a few pages at scattered offsets and
//! often for neighbours of what it just read; fetching 1 MiB blocks and keeping the last
//! few turns that into a handful of requests without downloading the whole object, and
//! memory stays at `CACHE_BLOCKS` × `BLOCK` whatever the object's size.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{classify, Inner};
use crate::error::StoreErrorKind;
use crate::io::ReadAt;
use crate::Result;

const BLOCK: u64 = 1 << 20;
const CACHE_BLOCKS: usize = 32;
/// Chunks buffered between the download task and the reader of `load`.
const LOAD_CHUNKS: usize = 16;

/// GET `bytes=first-last` (inclusive) of an object, or all of it.
fn range_header(offset: u64, len: Option<u64>) -> Option<String> {
    match len {
        Some(0) => None,
        Some(n) => Some(format!("bytes={offset}-{}", offset + n - 1)),
        None if offset == 0 => None,
        None => Some(format!("bytes={offset}-")),
    }
}

/// One streamed GET: the body is pumped by a task on the store's runtime through a
/// bounded channel, so a slow reader holds back the download instead of buffering it.
pub(super) fn load(
    i: &Arc<Inner>,
    name: &str,
    offset: u64,
    len: Option<u64>,
) -> Result<Box<dyn Read + Send>> {
    if len == Some(0) {
        return Ok(Box::new(io::empty()));
    }
    let out = i
        .block_on(
            i.client
                .get_object()
                .bucket(&i.bucket)
                .key(i.key(name))
                .set_range(range_header(offset, len))
                .send(),
        )?
        .map_err(|e| {
            let f = classify(&e);
            let what = if f.kind == StoreErrorKind::NotFound && !f.missing_bucket() {
                format!("{name} does not exist")
            } else {
                format!("GET {name}: {f}")
            };
            i.error(f.kind, what)
        })?;
    let (tx, rx) = mpsc::channel::<io::Result<bytes::Bytes>>(LOAD_CHUNKS);
    let mut body = out.body;
    let shown = format!("{}/{name}", i.location);
    i.handle.spawn(async move {
        while let Some(chunk) = body.next().await {
            let item = chunk.map_err(|e| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{shown}: download broke: {e}"),
                )
            });
            let stop = item.is_err();
            // A dropped reader ends the download.
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    Ok(Box::new(ChannelReader {
        rx,
        cur: bytes::Bytes::new(),
        expect: len,
        got: 0,
    }))
}

struct ChannelReader {
    rx: mpsc::Receiver<io::Result<bytes::Bytes>>,
    cur: bytes::Bytes,
    expect: Option<u64>,
    got: u64,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            // `blocking_recv` panics on an async task: refuse with one line instead.
            crate::store::blocking::check("reading an S3 object")
                .map_err(|e| io::Error::other(e.to_string()))?;
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => {
                    if let Some(n) = self.expect {
                        if self.got < n {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!("object ended after {} of {n} bytes", self.got),
                            ));
                        }
                    }
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        self.got += n as u64;
        Ok(n)
    }
}

/// Positional reads of one object through a cache of whole blocks.
pub(super) struct S3ReadAt {
    inner: Arc<Inner>,
    name: String,
    size: u64,
    cache: Mutex<Cache>,
}

/// The cached blocks, most recent first, and the read-ahead state.
///
/// A scattered walk (`get` of one key) misses on blocks far apart and fetches them one at
/// a time. A pass over the object (the backup's read-back of its facts and hashkv,
/// `verify`, `inspect`) misses on consecutive blocks: each such miss doubles the blocks
/// fetched by the next GET of that pass, up to [`MAX_WINDOW`], so a pass costs one request
/// per 8 MiB instead of one per MiB (each request is a round trip: ~20 ms on a loopback
/// server, more to a remote region). Checking a database runs two passes at once (the
/// pages in file order and the B+tree in key order), so up to [`STREAMS`] passes are
/// followed side by side. Memory stays at `CACHE_BLOCKS` × `BLOCK`.
struct Cache {
    blocks: VecDeque<(u64, Arc<Vec<u8>>)>,
    /// Sequential passes, most recent first: the block after each one's last window, and
    /// the blocks its next GET fetches.
    streams: VecDeque<(u64, u64)>,
}

/// Most blocks one GET fetches (a quarter of `CACHE_BLOCKS`, so the windows of every
/// followed pass stay cached while they are read).
const MAX_WINDOW: u64 = 8;
/// Sequential passes followed at once.
const STREAMS: usize = 4;

impl Cache {
    fn new() -> Cache {
        Cache {
            blocks: VecDeque::new(),
            streams: VecDeque::new(),
        }
    }

    fn hit(&mut self, index: u64) -> Option<Arc<Vec<u8>>> {
        let pos = self.blocks.iter().position(|(k, _)| *k == index)?;
        let hit = self.blocks.remove(pos)?;
        let data = Arc::clone(&hit.1);
        self.blocks.push_front(hit);
        Some(data)
    }

    /// How many blocks to fetch for a miss on `index`.
    fn plan(&mut self, index: u64) -> u64 {
        let window = match self.streams.iter().position(|&(next, _)| next == index) {
            Some(pos) => {
                let (_, w) = self.streams.remove(pos).unwrap_or((0, 1));
                (w * 2).min(MAX_WINDOW)
            }
            None => 1,
        };
        self.streams.push_front((index + window, window));
        self.streams.truncate(STREAMS);
        window
    }
}

impl S3ReadAt {
    pub(super) fn new(inner: Arc<Inner>, name: &str, size: u64) -> S3ReadAt {
        S3ReadAt {
            inner,
            name: name.to_string(),
            size,
            cache: Mutex::new(Cache::new()),
        }
    }

    fn block(&self, index: u64) -> io::Result<Arc<Vec<u8>>> {
        let window = {
            let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(data) = c.hit(index) {
                return Ok(data);
            }
            c.plan(index)
        };
        let start = index * BLOCK;
        let len = (BLOCK * window).min(self.size - start);
        tracing::trace!(object = %self.name, start, len, "ranged GET");
        let mut r = load(&self.inner, &self.name, start, Some(len))
            .map_err(|e| io::Error::other(e.to_string()))?;
        let mut data = Vec::with_capacity(len as usize);
        r.read_to_end(&mut data)?;
        if data.len() as u64 != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}/{}: asked for {len} bytes at {start}, got {}",
                    self.inner.location,
                    self.name,
                    data.len()
                ),
            ));
        }
        let blocks: Vec<Arc<Vec<u8>>> = data
            .chunks(BLOCK as usize)
            .map(|b| Arc::new(b.to_vec()))
            .collect();
        let Some(first) = blocks.first().map(Arc::clone) else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}/{}: nothing at {start}", self.inner.location, self.name),
            ));
        };
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // The later blocks of the window go in first, so the one asked for is the most
        // recent and the rest follow it out of the cache in order.
        for (i, b) in blocks.into_iter().enumerate().rev() {
            c.blocks.retain(|(k, _)| *k != index + i as u64);
            c.blocks.push_front((index + i as u64, b));
        }
        c.blocks.truncate(CACHE_BLOCKS);
        Ok(first)
    }
}

impl ReadAt for S3ReadAt {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.size) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at {offset} is past the end ({} bytes)",
                    buf.len(),
                    self.size
                ),
            ));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let block = self.block(pos / BLOCK)?;
            let within = (pos % BLOCK) as usize;
            let n = (block.len() - within).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&block[within..within + n]);
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(range_header(0, None), None);
        assert_eq!(range_header(10, None).as_deref(), Some("bytes=10-"));
        assert_eq!(range_header(10, Some(5)).as_deref(), Some("bytes=10-14"));
    }

    #[test]
    fn sequential_misses_grow_the_window_and_a_jump_resets_it() {
        let mut c = Cache::new();
        assert_eq!(c.plan(0), 1);
        assert_eq!(c.plan(1), 2);
        assert_eq!(c.plan(3), 4);
        assert_eq!(c.plan(7), 8);
        assert_eq!(c.plan(15), 8);
        assert_eq!(c.plan(100), 1, "a jump starts a new pass");
        assert_eq!(c.plan(101), 2);
        assert_eq!(c.plan(23), 8, "the first pass goes on beside the second");
        assert_eq!(c.plan(103), 4);
        for i in 0..STREAMS as u64 {
            c.plan(1000 + 10 * i);
        }
        assert_eq!(
            c.plan(31),
            1,
            "passes beyond STREAMS are forgotten, oldest first"
        );
    }
}
