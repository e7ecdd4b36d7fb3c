//! Opening what the operator points at, as a [`ReadAt`] over the database image.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::IoContext;
use crate::io::{FileReader, ReadAt};
use crate::{Error, Result};

/// The 32-byte SHA-256 trailer of an etcdctl snapshot.
pub const TRAILER_LEN: u64 = 32;

/// What kind of input it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputKind {
    /// An etcdctl snapshot: database + SHA-256 trailer (size % 512 == 32).
    Snapshot,
    /// A raw bbolt file (`member/snap/db` or a snapshot without trailer).
    Db,
    /// A lifeboat backup object (seekable zstd), from a file or `DEST:ID`.
    Backup,
}

/// How to open.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Read a db even when a running etcd holds its lock (through a point-in-time copy).
    pub force: bool,
}

/// An opened input.
pub struct Input {
    /// What the operator gave (path or DEST:ID), for messages.
    pub name: String,
    pub kind: InputKind,
    /// Size of the file or stored object as given.
    pub file_size: u64,
    /// The database image.
    pub db: Box<dyn ReadAt>,
    /// The digest the image must have, and where it is recorded ("trailer", "manifest").
    pub expected_sha256: Option<(String, [u8; 32])>,
    /// A temporary copy to remove when done (`--copy-live` on a live db).
    temp: Option<PathBuf>,
}

impl Drop for Input {
    fn drop(&mut self) {
        if let Some(p) = self.temp.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";

/// Open a file path, a data dir, or `DEST:ID`.
pub fn open_input(spec: &str, opts: &OpenOptions) -> Result<Input> {
    let p = Path::new(spec);
    if p.exists() {
        let file = if p.is_dir() {
            let db = p.join("member/snap/db");
            if db.is_file() {
                db
            } else {
                return Err(Error::Usage(format!(
                    "{spec} is a directory without member/snap/db; give a snapshot file, a db file or DEST:ID"
                )));
            }
        } else {
            p.to_path_buf()
        };
        return open_file(spec, &file, opts);
    }
    if let Some((dest, id)) = spec.rsplit_once(':') {
        if !dest.is_empty() && !id.is_empty() && !id.contains('/') {
            return open_backup(spec, dest, id);
        }
    }
    Err(Error::Io {
        path: p.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
    })
}

fn open_file(spec: &str, path: &Path, opts: &OpenOptions) -> Result<Input> {
    let mut temp = None;
    let mut read_path = path.to_path_buf();
    if let Some(holder) = lock_holder(path) {
        if !opts.force {
            return Err(Error::Usage(format!(
                "{} is locked by a running etcd ({holder}): it is a live member's database. \
                 Take a snapshot instead (`etcdctl snapshot save`, `lifeboat backup`), stop the member, \
                 or pass --copy-live to read a point-in-time copy (which may be inconsistent if etcd writes meanwhile)",
                path.display()
            )));
        }
        let copy = std::env::temp_dir().join(format!(
            "lifeboat-inspect-{}-{}.db",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        tracing::warn!(
            "{} is held by a running etcd ({holder}); reading a copy at {}",
            path.display(),
            copy.display()
        );
        std::fs::copy(path, &copy).at(&copy)?;
        read_path = copy.clone();
        temp = Some(copy);
    }
    let f = FileReader::open(&read_path).at(&read_path)?;
    let size = f.size();
    let mut head = [0u8; 32];
    let n = (size as usize).min(head.len());
    f.read_exact_at(0, &mut head[..n]).at(&read_path)?;
    if head.starts_with(AGE_MAGIC) {
        return Err(Error::Usage(format!(
            "{spec} is age-encrypted; decrypt it first (`age -d -i KEY {spec} > backup.db.zst`)"
        )));
    }
    if head.starts_with(&ZSTD_MAGIC) {
        let fr = crate::pipeline::frames::FramedReader::open(f)
            .map_err(|e| Error::integrity(spec, e.to_string()))?;
        return Ok(Input {
            name: spec.to_string(),
            kind: InputKind::Backup,
            file_size: size,
            db: Box::new(fr),
            expected_sha256: None,
            temp,
        });
    }
    if size % 512 == TRAILER_LEN {
        let mut t = [0u8; 32];
        f.read_exact_at(size - TRAILER_LEN, &mut t).at(&read_path)?;
        return Ok(Input {
            name: spec.to_string(),
            kind: InputKind::Snapshot,
            file_size: size,
            db: Box::new(f.with_size(size - TRAILER_LEN)),
            expected_sha256: Some(("trailer".into(), t)),
            temp,
        });
    }
    Ok(Input {
        name: spec.to_string(),
        kind: InputKind::Db,
        file_size: size,
        db: Box::new(f),
        expected_sha256: None,
        temp,
    })
}

fn open_backup(spec: &str, dest: &str, id: &str) -> Result<Input> {
    let store = crate::store::open_destination(dest, false)?;
    let m = crate::catalog::resolve(store.as_ref(), id)?;
    let object = m.object.clone();
    let size = store.stat(&object)?.unwrap_or(0);
    let fr = crate::jobs::open_backup_db(store.as_ref(), &m)?;
    let expected = hex::decode(&m.db_sha256)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(|d| ("manifest".to_string(), d));
    Ok(Input {
        name: format!("{spec} ({object})"),
        kind: InputKind::Backup,
        file_size: size,
        db: Box::new(fr),
        expected_sha256: expected,
        temp: None,
    })
}

/// Who holds a lock on `path`, from `/proc/locks` (no lock is taken to find out). Falls
/// back to a non-blocking shared `flock` released at once where `/proc/locks` is missing.
pub fn lock_holder(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).ok()?;
    let (dev, ino) = (md.dev(), md.ino());
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    match std::fs::read_to_string("/proc/locks") {
        Ok(locks) => {
            for line in locks.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (waiters have "->").
                let f: Vec<&str> = f.into_iter().filter(|s| *s != "->").collect();
                let (Some(kind), Some(mode), Some(pid), Some(id)) =
                    (f.get(1), f.get(3), f.get(4), f.get(5))
                else {
                    continue;
                };
                let mut parts = id.split(':');
                let (Some(ma), Some(mi), Some(i)) = (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let same = u64::from_str_radix(ma, 16).ok() == Some(major)
                    && u64::from_str_radix(mi, 16).ok() == Some(minor)
                    && i.parse::<u64>().ok() == Some(ino);
                // bbolt takes an exclusive (WRITE) flock for a read-write open: a running
                // member. Read-only opens (etcdutl, bbolt tools) share a READ lock.
                if same && *mode == "WRITE" {
                    return Some(format!("{kind} {mode} lock held by pid {pid}"));
                }
            }
            None
        }
        Err(_) => {
            let f = std::fs::File::open(path).ok()?;
            match f.try_lock_shared() {
                Ok(()) => {
                    let _ = f.unlock();
                    None
                }
                Err(std::fs::TryLockError::WouldBlock) => Some("exclusive lock".into()),
                Err(_) => None,
            }
        }
    }
}
