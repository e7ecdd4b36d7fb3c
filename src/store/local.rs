//! A local directory as a store.
//!
//! Objects are plain files. A new object is written as `<name>.partial` (mode 0600, created
//! exclusively), fsynced, renamed to `<name>`, and the directory is fsynced, so after a
//! crash a name either holds the whole object or does not exist. A lock file
//! (`.lifeboat.lock`, `flock`) serialises writers; with it held, leftover `.partial` files
//! belong to dead runs and are removed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{ObjectInfo, ObjectWriter, Store, StoreLock};
use crate::error::IoContext;
use crate::io::{FileReader, ReadAt};
use crate::{Error, Result};

pub const PARTIAL_SUFFIX: &str = ".partial";
const LOCK_FILE: &str = ".lifeboat.lock";

pub struct LocalStore {
    dir: PathBuf,
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.starts_with('.')
        || name.contains('/')
        || name.contains('\0')
        || name.ends_with(PARTIAL_SUFFIX)
    {
        return Err(Error::Usage(format!("invalid object name {name:?}")));
    }
    Ok(())
}

/// fsync a directory so that a rename or unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

impl LocalStore {
    pub fn open(dir: impl Into<PathBuf>, create: bool) -> Result<Self> {
        let dir = dir.into();
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Usage(format!(
                    "destination {} is not a directory",
                    dir.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .at(&dir)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound(format!(
                    "destination {} does not exist",
                    dir.display()
                )))
            }
            Err(e) => return Err(Error::io(dir, e)),
        }
        Ok(LocalStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.dir.join(name))
    }
}

use std::os::unix::fs::DirBuilderExt;

/// A file that appears under its name only when complete: written as `<name>.partial`
/// (mode 0600, created exclusively), then fsynced, renamed and the directory fsynced.
/// Dropped or failed before [`commit`](Self::commit), it leaves nothing behind.
pub struct AtomicFile {
    partial: PathBuf,
    target: PathBuf,
    overwrite: bool,
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Start writing `target`. Unless `overwrite`, an existing `target` is an error, now and
    /// at commit.
    pub fn create(target: PathBuf, overwrite: bool) -> Result<AtomicFile> {
        if !overwrite && target.exists() {
            return Err(Error::Store {
                location: target.display().to_string(),
                kind: crate::error::StoreErrorKind::AlreadyExists,
                message: "already exists; not overwriting it".into(),
            });
        }
        let mut partial = target.as_os_str().to_owned();
        partial.push(PARTIAL_SUFFIX);
        let partial = PathBuf::from(partial);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .at(&partial)?;
        Ok(AtomicFile {
            partial,
            target,
            overwrite,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Make the file durable and visible under its name.
    pub fn commit(mut self) -> Result<()> {
        let Some(buf) = self.file.take() else {
            return Err(Error::Failed("file already closed".into()));
        };
        let done = self.finish(buf);
        if done.is_err() {
            // Flushing or syncing failed (a full disk shows up here): leave nothing behind.
            let _ = fs::remove_file(&self.partial);
        }
        done
    }

    fn finish(&self, buf: BufWriter<File>) -> Result<()> {
        let file = buf
            .into_inner()
            .map_err(|e| Error::io(&self.partial, e.into_error()))?;
        file.sync_all().at(&self.partial)?;
        drop(file);
        if !self.overwrite && self.target.exists() {
            return Err(Error::Store {
                location: self.target.display().to_string(),
                kind: crate::error::StoreErrorKind::AlreadyExists,
                message: "a file of that name appeared while writing; not replacing it".into(),
            });
        }
        fs::rename(&self.partial, &self.target).at(&self.target)?;
        let dir = match self.target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(dir)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("object already closed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl ObjectWriter for AtomicFile {
    fn commit(self: Box<Self>) -> Result<()> {
        AtomicFile::commit(*self)
    }

    fn abort(self: Box<Self>) {
        drop(self);
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.partial);
        }
    }
}

struct LocalLock {
    _file: File,
}
impl StoreLock for LocalLock {}

impl Store for LocalStore {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        let target = self.path(name)?;
        Ok(Box::new(AtomicFile::create(target, false)?))
    }

    fn open(&self, name: &str) -> Result<Box<dyn ReadAt>> {
        let path = self.path(name)?;
        match FileReader::open(&path) {
            Ok(r) => Ok(Box::new(r)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(format!(
                "{}: object {name} does not exist",
                self.location()
            ))),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn stat(&self, name: &str) -> Result<Option<u64>> {
        let path = self.path(name)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn list(&self) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).at(&self.dir)? {
            let entry = entry.at(&self.dir)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if check_name(&name).is_err() {
                continue;
            }
            let meta = entry.metadata().at(entry.path())?;
            if meta.is_file() {
                out.push(ObjectInfo {
                    name,
                    size: meta.len(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn remove(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        fs::remove_file(&path).at(&path)?;
        sync_dir(&self.dir)
    }

    fn lock(&self) -> Result<Box<dyn StoreLock>> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .at(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                tracing::warn!(
                    "another lifeboat is writing to {}; waiting for it to finish",
                    self.location()
                );
                file.lock().at(&path)?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
        Ok(Box::new(LocalLock { _file: file }))
    }

    fn clean_partials(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for entry in fs::read_dir(&self.dir).at(&self.dir)? {
            let entry = entry.at(&self.dir)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.ends_with(PARTIAL_SUFFIX) && !name.starts_with('.') {
                fs::remove_file(entry.path()).at(entry.path())?;
                removed.push(name);
            }
        }
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_is_invisible_until_commit() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::open(d.path(), false).unwrap();
        let mut w = s.create("a.bin").unwrap();
        w.write_all(b"hello").unwrap();
        assert!(s.list().unwrap().is_empty());
        assert_eq!(s.stat("a.bin").unwrap(), None);
        w.commit().unwrap();
        assert_eq!(
            s.list().unwrap(),
            vec![ObjectInfo {
                name: "a.bin".into(),
                size: 5
            }]
        );
        assert_eq!(s.get_bytes("a.bin").unwrap(), b"hello");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(d.path().join("a.bin"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(s.create("a.bin").is_err(), "never overwrites");
    }

    #[test]
    fn dropped_writer_leaves_nothing_and_partials_are_cleaned() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::open(d.path(), false).unwrap();
        {
            let mut w = s.create("b.bin").unwrap();
            w.write_all(b"x").unwrap();
        }
        assert!(fs::read_dir(d.path()).unwrap().next().is_none());
        fs::write(d.path().join("c.bin.partial"), b"junk").unwrap();
        assert!(s.list().unwrap().is_empty());
        let _l = s.lock().unwrap();
        assert_eq!(
            s.clean_partials().unwrap(),
            vec!["c.bin.partial".to_string()]
        );
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::open(d.path(), false).unwrap();
        for bad in ["../x", "a/b", ".hidden", "", "x.partial"] {
            assert!(s.create(bad).is_err(), "{bad}");
        }
    }
}
