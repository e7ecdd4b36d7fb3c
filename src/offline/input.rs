//! Opening what the operator points at, as a [`ReadAt`] over the database image.

use std::path::Path;

use serde::Serialize;

use crate::error::IoContext;
use crate::format::bolt::{Db, Problem};
use crate::io::{FileReader, ReadAt};
use crate::pipeline::trailer::TRAILER_LEN;
use crate::{Error, Result};

/// The trailer's length as a file offset.
const TRAILER: u64 = TRAILER_LEN as u64;

/// What kind of input it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputKind {
    /// An etcdctl snapshot: database + SHA-256 trailer (`pgid * page_size + 32` bytes).
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
    /// How to open `DEST:ID` and encrypted backups (the default: no S3 settings, no
    /// identity).
    pub access: crate::catalog::Access,
}

/// Where the database's own meta page says it ends, against what the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `pgid * page_size` of the current meta.
    pub db_size: u64,
    pub page_size: u64,
    /// Bytes of the file (trailer included), or of a backup's database image.
    pub file_size: u64,
    /// A lifeboat backup's image holds exactly the database: nothing may follow it.
    pub exact: bool,
}

impl Layout {
    /// What is wrong with the bytes after the last page, if anything. Nothing and a 32-byte
    /// trailer are what etcd writes; whole pages are a member's file that bbolt grew ahead
    /// of use. Anything else is a file cut short or with bytes appended: `etcdutl snapshot
    /// restore` refuses it, so no reader may call it a good database.
    pub fn problem(&self) -> Option<Problem> {
        let extra = self.file_size.checked_sub(self.db_size);
        let what = if self.exact {
            "the backup's database image"
        } else {
            "the file"
        };
        match extra {
            Some(0) => None,
            Some(TRAILER) if !self.exact => None,
            Some(n) if !self.exact && self.page_size > 0 && n % self.page_size == 0 => None,
            Some(n) => Some(Problem::new(
                None,
                Some(self.db_size),
                format!(
                    "truncated or extra bytes after the last page: the meta page says {} bytes \
                     ({} pages of {}), {what} has {} ({n} more, neither nothing nor a \
                     {TRAILER_LEN}-byte trailer)",
                    self.db_size,
                    self.db_size / self.page_size.max(1),
                    self.page_size,
                    self.file_size
                ),
            )),
            None => Some(Problem::new(
                None,
                Some(self.file_size),
                format!(
                    "truncated: the meta page says {} bytes ({} pages of {}), {what} has only {}",
                    self.db_size,
                    self.db_size / self.page_size.max(1),
                    self.page_size,
                    self.file_size
                ),
            )),
        }
    }

    /// Whether the file is longer than the database (the case the strict check cannot see).
    pub fn has_extra_bytes(&self) -> bool {
        self.file_size > self.db_size
    }
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
    /// Where the db's meta says it ends against the file's size (plain files whose meta
    /// page could be read).
    pub layout: Option<Layout>,
    /// The private copy of a live member's db (mode 0600, created exclusively), removed
    /// when the input is dropped, on error paths too.
    _temp: Option<tempfile::NamedTempFile>,
}

impl Input {
    /// The file's layout problem as a library error naming the input.
    pub fn check_layout(&self) -> Result<()> {
        match self.layout.as_ref().and_then(Layout::problem) {
            None => Ok(()),
            Some(p) => Err(Error::Corrupt {
                file: self.name.clone(),
                page: p.page,
                offset: p.offset,
                what: p.message,
            }),
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
            return open_backup(spec, dest, id, opts);
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
    if let Some(holder) = crate::io::lock_holder(path) {
        if !opts.force {
            return Err(Error::Usage(format!(
                "{} is locked by a running etcd ({holder}): it is a live member's database. \
                 Take a snapshot instead (`etcdctl snapshot save`, `lifeboat backup`), stop the member, \
                 or pass --copy-live to read a point-in-time copy (which may be inconsistent if etcd writes meanwhile)",
                path.display()
            )));
        }
        let copy = live_copy(path)?;
        tracing::warn!(
            "{} is held by a running etcd ({holder}); reading a private copy at {}",
            path.display(),
            copy.path().display()
        );
        read_path = copy.path().to_path_buf();
        temp = Some(copy);
    }
    let f = FileReader::open(&read_path).at(&read_path)?;
    let size = f.size();
    let mut head = [0u8; 32];
    let n = (size as usize).min(head.len());
    f.read_exact_at(0, &mut head[..n]).at(&read_path)?;
    if head.starts_with(AGE_MAGIC) {
        // An encrypted backup object copied out of a destination: with an identity, read
        // it as the seekable object it encrypts.
        let Some(keys) = opts.access.keys().get()? else {
            return Err(Error::Usage(format!(
                "{spec} is age-encrypted; give --identity FILE (or LIFEBOAT_IDENTITY), or decrypt it first (`age -d -i KEY {spec} > backup.db.zst`)"
            )));
        };
        let sealed = crate::pipeline::encrypt::read::Sealed {
            object: spec,
            what: spec,
            recipients: &[],
        };
        let plain = crate::pipeline::encrypt::read::decrypt_at(Box::new(f), &keys, &sealed)?;
        let fr = crate::pipeline::frames::FramedReader::open(plain)
            .map_err(|e| Error::integrity(spec, e.to_string()))?;
        let layout = layout_of(&fr, true);
        return Ok(Input {
            name: spec.to_string(),
            kind: InputKind::Backup,
            file_size: size,
            db: Box::new(fr),
            expected_sha256: None,
            layout,
            _temp: temp,
        });
    }
    let (kind, db, expected_sha256, layout): (_, Box<dyn ReadAt>, _, _) =
        if head.starts_with(&ZSTD_MAGIC) {
            let fr = crate::pipeline::frames::FramedReader::open(f)
                .map_err(|e| Error::integrity(spec, e.to_string()))?;
            let layout = layout_of(&fr, true);
            (InputKind::Backup, Box::new(fr), None, layout)
        } else {
            let layout = layout_of(&f, false);
            let trailer = match layout {
                Some(l) => l.file_size.checked_sub(l.db_size) == Some(TRAILER),
                // No readable meta: the reader will say so; guess the kind by size alone.
                None => size % 512 == TRAILER,
            };
            if trailer {
                let mut t = [0u8; TRAILER_LEN];
                f.read_exact_at(size - TRAILER, &mut t).at(&read_path)?;
                let db = Box::new(f.with_size(size - TRAILER));
                (InputKind::Snapshot, db, Some(("trailer".into(), t)), layout)
            } else {
                (InputKind::Db, Box::new(f), None, layout)
            }
        };
    Ok(Input {
        name: spec.to_string(),
        kind,
        file_size: size,
        db,
        expected_sha256,
        layout,
        _temp: temp,
    })
}

/// The database's own idea of its size, from its current meta page.
fn layout_of(f: &dyn ReadAt, exact: bool) -> Option<Layout> {
    let db = Db::open(f).ok()?;
    Some(Layout {
        db_size: db.db_size(),
        page_size: u64::from(db.page_size),
        file_size: f.size(),
        exact,
    })
}

/// A point-in-time copy of a live member's db in a private temporary file: created
/// exclusively with mode 0600 under a random name (a predictable name in a shared /tmp
/// lets another user plant a symlink or read the keyspace), removed when dropped.
fn live_copy(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = std::env::temp_dir();
    let mut copy = tempfile::Builder::new()
        .prefix("lifeboat-live-")
        .suffix(".db")
        .tempfile_in(&dir)
        .at(&dir)?;
    let mut src = std::fs::File::open(path).at(path)?;
    std::io::copy(&mut src, copy.as_file_mut()).at(copy.path())?;
    Ok(copy)
}

fn open_backup(spec: &str, dest: &str, id: &str, opts: &OpenOptions) -> Result<Input> {
    let repo = opts.access.repository(dest, false)?;
    let m = repo.resolve(id)?;
    let object = m.object.clone();
    let size = repo.store().stat(&object)?.unwrap_or(0);
    let fr = repo.open_db(&m)?;
    let layout = layout_of(&fr, true);
    // A manifest without a usable digest cannot vouch for the data: damage, not "unverified".
    let digest = hex::decode(&m.db_sha256)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            Error::integrity(
                format!("{spec} (manifest)"),
                format!("db_sha256 {:?} is not a hex SHA-256", m.db_sha256),
            )
        })?;
    let expected = Some(("manifest".to_string(), digest));
    Ok(Input {
        name: format!("{spec} ({object})"),
        kind: InputKind::Backup,
        file_size: size,
        db: Box::new(fr),
        expected_sha256: expected,
        layout,
        _temp: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn live_copies_are_private_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("db");
        std::fs::write(&src, b"secret keyspace").unwrap();
        let copy = live_copy(&src).unwrap();
        let path = copy.path().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert_eq!(std::fs::read(&path).unwrap(), b"secret keyspace");
        drop(copy);
        assert!(!path.exists());
    }

    #[test]
    fn bytes_after_the_last_page() {
        let l = |file_size| Layout {
            db_size: 8 * 4096,
            page_size: 4096,
            file_size,
            exact: false,
        };
        assert_eq!(l(8 * 4096).problem(), None);
        assert_eq!(l(8 * 4096 + 32).problem(), None);
        assert_eq!(l(16 * 4096).problem(), None, "bbolt grew the file");
        let p = l(8 * 4096 + 16).problem().unwrap();
        assert!(p
            .message
            .contains("truncated or extra bytes after the last page"));
        assert_eq!(p.offset, Some(8 * 4096));
        assert!(l(8 * 4096 + 132).problem().is_some());
        assert!(l(7 * 4096).problem().unwrap().message.contains("truncated"));
        let backup = |image_size| Layout {
            exact: true,
            ..l(image_size)
        };
        assert_eq!(backup(8 * 4096).problem(), None);
        assert!(backup(8 * 4096 + 32).problem().is_some());
        assert!(backup(9 * 4096).problem().is_some());
    }
}
