//! Positional reads over anything that holds a database image.
//!
//! The format readers need random access (a B+tree points backwards and forwards), but the
//! bytes may live in a plain file, in memory, or inside a compressed backup object whose
//! frames are decoded on demand. [`ReadAt`] is the one seam between them.

use std::io;
use std::path::PathBuf;

/// An I/O failure on a named path (listing a directory, opening a file in it): what the
/// directory readers ([`crate::wal::list_dir`], [`crate::snap::read_dir`]) fail with.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct PathError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Names the path an `io::Result` was about.
pub trait AtPath<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, PathError>;
}

impl<T> AtPath<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, PathError> {
        self.map_err(|source| PathError {
            path: path.into(),
            source,
        })
    }
}

/// Random-access, read-only byte source of a known size.
///
/// Implementations must return `UnexpectedEof` (not short data) when
/// `offset + buf.len()` runs past [`ReadAt::size`].
pub trait ReadAt: Send + Sync {
    /// Total number of bytes available.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`, entirely, or fail.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Convenience: read `len` bytes at `offset` into a new buffer.
    fn read_vec_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|end| end > self.size()) {
            return Err(eof(offset, len, self.size()));
        }
        let mut buf = vec![0u8; len];
        self.read_exact_at(offset, &mut buf)?;
        Ok(buf)
    }
}

pub fn eof(offset: u64, len: usize, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("read of {len} bytes at offset {offset} runs past the end ({size} bytes)"),
    )
}

impl ReadAt for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof(offset, buf.len(), self.size()))?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| eof(offset, buf.len(), self.size()))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn size(&self) -> u64 {
        self.as_slice().size()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_exact_at(offset, buf)
    }
}

/// A file read with `pread`; the size is taken once, when opened, so a file that grows
/// underneath (a live member's db) is read as the prefix that existed then.
pub struct FileReader {
    file: std::fs::File,
    size: u64,
}

impl FileReader {
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        Ok(FileReader { file, size })
    }

    /// Read only the first `size` bytes of the file (e.g. to leave out a trailer).
    pub fn with_size(mut self, size: u64) -> Self {
        self.size = self.size.min(size);
        self
    }
}

impl ReadAt for FileReader {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.size) {
            return Err(eof(offset, buf.len(), self.size));
        }
        self.file.read_exact_at(buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Box<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }
}

/// Why [`wait_for_flock`] gave no lock.
#[derive(Debug)]
pub enum FlockError {
    /// The lock file could not be opened or created.
    Open(io::Error),
    /// `flock` itself failed.
    Lock(io::Error),
    /// Still held after the wait: who holds it, as the `holder` callback read it.
    Busy(String),
}

/// Open (creating, mode 0600) the lock file at `path` and take an exclusive `flock` on it,
/// polling every `poll` for up to `wait`. The first time the lock is found busy, `on_wait`
/// hears who holds it (read from the file by `holder`). Once taken, `record` replaces the
/// file's text, for whoever waits next: a courtesy, since the `flock` is the lock, so a
/// failed write is only logged. The lock lasts as long as the returned file is open, and
/// frees itself when the process dies.
pub fn wait_for_flock(
    path: &std::path::Path,
    wait: std::time::Duration,
    poll: std::time::Duration,
    holder: &dyn Fn(&mut std::fs::File) -> String,
    on_wait: &mut dyn FnMut(&str),
    record: &str,
) -> Result<std::fs::File, FlockError> {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(FlockError::Open)?;
    let start = std::time::Instant::now();
    let mut warned = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                let who = holder(&mut file);
                if start.elapsed() >= wait {
                    return Err(FlockError::Busy(who));
                }
                if !warned {
                    on_wait(&who);
                    warned = true;
                }
                std::thread::sleep(poll);
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(FlockError::Lock(e)),
        }
    }
    let wrote = file
        .set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(record.as_bytes()));
    if let Err(e) = wrote {
        tracing::debug!(
            "could not record the lock holder in {}: {e}",
            path.display()
        );
    }
    Ok(file)
}

/// Who holds bbolt's exclusive lock on `path` (a running etcd), from `/proc/locks`: no lock
/// is taken to find out, so asking never disturbs the holder. Falls back to a non-blocking
/// shared `flock`, released at once, where `/proc/locks` is missing. Read-only opens
/// (etcdutl, bbolt tools) share a READ lock and are not reported: they do not write.
pub fn lock_holder(path: &std::path::Path) -> Option<String> {
    write_lock(path).map(|l| match l.pid {
        Some(pid) => format!("{} WRITE lock held by pid {pid}", l.kind),
        None => format!("{} WRITE lock", l.kind),
    })
}

/// A write lock someone holds on a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteLock {
    /// `FLOCK` (bbolt's db), `OFDLCK` (etcd's WAL files on Linux), `POSIX`, or
    /// `exclusive` when only a `flock` probe could tell.
    pub kind: String,
    /// The holder; None for open-file-description locks (`/proc/locks` says -1) and probes.
    pub pid: Option<u32>,
}

/// [`lock_holder`], with the kind and pid apart.
pub fn write_lock(path: &std::path::Path) -> Option<WriteLock> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).ok()?;
    let (dev, ino) = (md.dev(), md.ino());
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    match std::fs::read_to_string("/proc/locks") {
        Ok(locks) => locks
            .lines()
            .find_map(|line| write_lock_in(line, major, minor, ino)),
        Err(_) => {
            let f = std::fs::File::open(path).ok()?;
            match f.try_lock_shared() {
                Ok(()) => {
                    let _ = f.unlock();
                    None
                }
                Err(std::fs::TryLockError::WouldBlock) => Some(WriteLock {
                    kind: "exclusive".into(),
                    pid: None,
                }),
                Err(_) => None,
            }
        }
    }
}

/// One `/proc/locks` line, e.g. `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF` (waiters
/// carry a `->`): the holder when it is a WRITE lock on this device and inode.
fn write_lock_in(line: &str, major: u64, minor: u64, ino: u64) -> Option<WriteLock> {
    let f: Vec<&str> = line.split_whitespace().filter(|s| *s != "->").collect();
    let (kind, mode, pid, id) = (f.get(1)?, f.get(3)?, f.get(4)?, f.get(5)?);
    let mut parts = id.split(':');
    let (ma, mi, i) = (parts.next()?, parts.next()?, parts.next()?);
    let same = u64::from_str_radix(ma, 16).ok() == Some(major)
        && u64::from_str_radix(mi, 16).ok() == Some(minor)
        && i.parse::<u64>().ok() == Some(ino);
    (same && *mode == "WRITE").then(|| WriteLock {
        kind: kind.to_string(),
        pid: pid.parse::<u32>().ok().filter(|p| *p > 0),
    })
}

/// Bytes per read of [`sha256_at`]: few, large requests (one per 4 MiB), so that a
/// remote object is not read in thousands of small ranges.
pub const DIGEST_CHUNK: usize = 4 << 20;

/// SHA-256 of every byte of `src`, read in order: the one whole-object digest over
/// positional reads (a backup's data object, a database file, a snapshot).
pub fn sha256_at(src: &dyn ReadAt) -> io::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut sha = Sha256::new();
    let size = src.size();
    let mut buf = vec![0u8; (size.min(DIGEST_CHUNK as u64)) as usize];
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        src.read_exact_at(off, &mut buf[..n])?;
        sha.update(&buf[..n]);
        off += n as u64;
    }
    Ok(sha.finalize().into())
}

/// SHA-256 and length of everything a sequential reader yields.
pub fn sha256_read(src: &mut dyn io::Read) -> io::Result<([u8; 32], u64)> {
    use sha2::{Digest, Sha256};
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sha.update(&buf[..n]);
        total += n as u64;
    }
    Ok((sha.finalize().into(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_agree() {
        use sha2::{Digest, Sha256};
        let data: Vec<u8> = (0..(DIGEST_CHUNK + 123)).map(|i| (i % 251) as u8).collect();
        let want: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(sha256_at(&data).unwrap(), want);
        let (got, n) = sha256_read(&mut &data[..]).unwrap();
        assert_eq!((got, n), (want, data.len() as u64));
        assert_eq!(
            sha256_at(&Vec::<u8>::new()).unwrap(),
            <[u8; 32]>::from(Sha256::digest(b""))
        );
    }
}
