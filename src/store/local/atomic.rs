//! The local store's atomic files: an object is written as `<name>.partial` under an
//! `flock` its writer holds until the rename, so a cleaner tells a live writer's partial
//! from one a dead run left ([`unheld_partial`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{sync_dir, PARTIAL_SUFFIX};
use crate::error::{IoContext, StoreErrorKind};
use crate::store::ObjectWriter;
use crate::{Error, Result};

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
        let file = create_held(&partial)?;
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
            return Err(Error::Internal("file already closed".into()));
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
        // `file` stays open (its lock held) until the rename is done: a cleaner must not
        // take a finished partial for a dead run's.
        if !self.overwrite && self.target.exists() {
            return Err(Error::Store {
                location: self.target.display().to_string(),
                kind: crate::error::StoreErrorKind::AlreadyExists,
                message: "a file of that name appeared while writing; not replacing it".into(),
            });
        }
        fs::rename(&self.partial, &self.target).at(&self.target)?;
        drop(file);
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
        if let Some(held) = self.file.take() {
            let _ = fs::remove_file(&self.partial);
            drop(held);
        }
    }
}

/// Create `partial` exclusively and hold an exclusive `flock` on it. A cleaner that took
/// the name for a dead run's in the moment between the create and the lock has removed
/// it by the time the lock is ours (it removes while holding the lock): then the name no
/// longer leads to this file, and it is created again.
fn create_held(partial: &Path) -> Result<File> {
    use std::os::unix::fs::MetadataExt;
    for _ in 0..8 {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(partial)
            .at(partial)?;
        file.lock().at(partial)?;
        let mine = file.metadata().at(partial)?;
        match fs::symlink_metadata(partial) {
            Ok(m) if m.dev() == mine.dev() && m.ino() == mine.ino() => return Ok(file),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(partial, e)),
        }
    }
    Err(Error::Store {
        location: partial.display().to_string(),
        kind: StoreErrorKind::Transient,
        message: "removed again and again while being created (another process cleaning this destination in a loop?)".into(),
    })
}

/// Whether `path` is a partial no live writer holds (a writer holds its partial's `flock`
/// until the rename). `Some(file)` keeps that lock for the caller, which may remove the
/// file while holding it; `None`: a writer holds it, or it is already gone.
pub(super) fn unheld_partial(path: &Path) -> io::Result<Option<File>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}
