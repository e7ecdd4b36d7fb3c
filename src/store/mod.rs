//! Where backups land: one small trait, one folder per backend.
//!
//! Like restic's backend interface, a [`Store`] knows objects by name and nothing about
//! backups: create (invisible until committed), open for positional reads, list, remove,
//! plus a writer lock and the clean-up of what a killed run left behind. What a backup is
//! (object + manifest, ids, retention) is the catalog's business.

pub mod local;

use std::io::Write;

use crate::io::ReadAt;
use crate::{Error, Result};

/// A committed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
}

/// An object being written. Nothing is visible under its name until [`commit`](Self::commit)
/// returns; dropping it without committing removes what was written.
pub trait ObjectWriter: Write + Send {
    /// Make the object durable and visible under its name, atomically.
    fn commit(self: Box<Self>) -> Result<()>;
    /// Throw away what was written.
    fn abort(self: Box<Self>);
}

/// Held while a backup writes to a store; released on drop.
pub trait StoreLock: Send {}

pub trait Store: Send + Sync {
    /// Where this store is, for messages (`/var/backups/etcd`, `s3://bucket/prefix`).
    fn location(&self) -> String;
    /// Start writing a new object. Fails if an object of that name exists.
    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>>;
    /// Open a committed object for positional reads. [`Error::NotFound`] if it is missing.
    fn open(&self, name: &str) -> Result<Box<dyn ReadAt>>;
    /// Size of a committed object, or `None`.
    fn stat(&self, name: &str) -> Result<Option<u64>>;
    /// Committed objects (never partial ones).
    fn list(&self) -> Result<Vec<ObjectInfo>>;
    /// Remove a committed object.
    fn remove(&self, name: &str) -> Result<()>;
    /// Exclusive writer lock: two backups into one store take turns, and clean-up never
    /// removes the partial object of a run that is still going.
    fn lock(&self) -> Result<Box<dyn StoreLock>>;
    /// Remove partial objects left by runs that were killed. Call with the lock held.
    fn clean_partials(&self) -> Result<Vec<String>>;

    /// Write a small object in one go.
    fn put_bytes(&self, name: &str, data: &[u8]) -> Result<()> {
        let mut w = self.create(name)?;
        if let Err(e) = w.write_all(data) {
            w.abort();
            return Err(Error::Store {
                location: self.location(),
                kind: crate::error::StoreErrorKind::Other,
                message: format!("write {name}: {e}"),
            });
        }
        w.commit()
    }

    /// Read a small object in one go.
    fn get_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let r = self.open(name)?;
        let len = usize::try_from(r.size()).map_err(|_| Error::Store {
            location: self.location(),
            kind: crate::error::StoreErrorKind::Other,
            message: format!("{name} is too large to read into memory"),
        })?;
        r.read_vec_at(0, len).map_err(|e| Error::Store {
            location: self.location(),
            kind: crate::error::StoreErrorKind::Other,
            message: format!("read {name}: {e}"),
        })
    }
}

/// Open a destination given as a local path or (later) `s3://bucket/prefix`.
///
/// `create` makes a missing local directory (for `backup`); readers want it to exist.
pub fn open_destination(dest: &str, create: bool) -> Result<Box<dyn Store>> {
    if dest.is_empty() {
        return Err(Error::Usage("empty destination".into()));
    }
    if let Some(rest) = dest.strip_prefix("s3://") {
        return Err(Error::Usage(format!(
            "destination s3://{rest}: S3 destinations are not supported by this build yet"
        )));
    }
    if dest.contains("://") {
        return Err(Error::Usage(format!(
            "destination {dest}: expected a local directory or s3://bucket/prefix"
        )));
    }
    Ok(Box::new(local::LocalStore::open(dest, create)?))
}
