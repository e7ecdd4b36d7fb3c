//! Where backups land: one small trait, one folder per backend, wrappers beside them.
//!
//! Like restic's backend interface, a [`Store`] knows objects by name and nothing about
//! backups: create (invisible until committed), positional reads (`open`), sequential
//! reads (`load`), list with size and age, idempotent remove, plus a writer lock and the
//! clean-up of what a killed run left behind. What a backup is (object + manifest, ids,
//! retention) is the catalog's business.
//!
//! **Every method blocks.** A backend may sleep (lock waits, retry back-off), fsync, or
//! wait on an async client (S3). Async code (the backup job, the daemon) reaches stores
//! only through [`blocking::offload`], the crate's one door to the blocking pool (clippy
//! disallows `spawn_blocking` elsewhere); a store call made on an async task anyway fails
//! with an [`Error::Internal`] naming it ([`blocking::check`], made by the S3 store before
//! every request) instead of stalling or panicking the runtime.
//!
//! **Errors carry a kind** ([`StoreErrorKind`]): wrappers decide from it, never from a
//! message. [`retry::RetryStore`] retries transient errors; [`tee::Tee`] writes one
//! stream into several stores' objects and drops the ones that fail.

pub mod blocking;
pub mod local;
pub mod retry;
#[cfg(feature = "s3")]
pub mod s3;
pub mod s3_settings;
pub mod tee;

use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use crate::error::StoreErrorKind;
use crate::io::ReadAt;
use crate::{Error, Result};
pub use s3_settings::{S3Resolver, S3Settings};

/// A committed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
    /// Last modification, when the backend knows it (prune and stale-upload clean-up
    /// decide by age).
    pub modified: Option<SystemTime>,
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
    /// What identifies the store for locking: two destinations with the same key are the
    /// same store (a backup refuses them), and locks are taken in the order of their keys
    /// so that two runs never wait for each other in a cycle. Local stores use their
    /// canonical path.
    fn lock_key(&self) -> String {
        self.location()
    }
    /// Start writing a new object. Fails (`AlreadyExists`) if an object of that name exists.
    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>>;
    /// [`create`](Self::create), told roughly how many bytes will come (the member's
    /// reported db size), so a backend that uploads in parts can size them to fit its part
    /// limit (S3: 10,000). A hint, never a promise: more or fewer bytes must still work.
    fn create_sized(&self, name: &str, size_hint: Option<u64>) -> Result<Box<dyn ObjectWriter>> {
        let _ = size_hint;
        self.create(name)
    }
    /// Open a committed object for positional reads (`NotFound` if it is missing): for
    /// readers that jump around (a B+tree inside a backup).
    fn open(&self, name: &str) -> Result<Box<dyn ReadAt>>;
    /// Read a committed object sequentially from `offset`, `len` bytes or (`None`) to its
    /// end, as one request (restic's Load): for whole-object passes (verify, fetch, the
    /// read-back digest), which on a remote store would otherwise be thousands of small
    /// ranged reads. Reading past the end is an error of the returned reader.
    fn load(&self, name: &str, offset: u64, len: Option<u64>) -> Result<Box<dyn Read + Send>>;
    /// Size of a committed object, or `None`.
    fn stat(&self, name: &str) -> Result<Option<u64>>;
    /// Committed objects whose names start with `prefix` (never partial ones), by name.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// [`list`](Self::list), only the names that sort after `after` (byte order, exclusive):
    /// what a reader that needs the tail of a sorted series asks for (S3: `start-after`, so
    /// the names before it are never sent; a local directory skips them before any `stat`).
    fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<ObjectInfo>> {
        let mut all = self.list(prefix)?;
        all.retain(|o| o.name.as_str() > after);
        Ok(all)
    }
    /// Every committed object but those whose names start with `skip`, by name: what the
    /// backup catalog lists beside the capture segments (`capture-…`, 86,400 a day at flush
    /// 1s) without listing them (S3: up to them, then from after them; a local directory
    /// skips them before any `stat`).
    fn list_skipping(&self, skip: &str) -> Result<Vec<ObjectInfo>> {
        let mut all = self.list("")?;
        all.retain(|o| !o.name.starts_with(skip));
        Ok(all)
    }
    /// Remove a committed object. Idempotent: a missing object is not an error, so a
    /// retried or repeated clean-up does not fail.
    fn remove(&self, name: &str) -> Result<()>;
    /// Exclusive writer lock: two backups into one store take turns, and clean-up never
    /// removes the partial object of a run that is still going. Waits up to `wait`, then
    /// fails naming the holder when the backend knows it.
    fn lock(&self, wait: Duration) -> Result<Box<dyn StoreLock>>;
    /// Remove partial objects left by runs that were killed, never one a live writer is
    /// still writing (a scrub's verdict or a capture segment, written without the lock).
    /// Call with the lock held.
    fn clean_partials(&self) -> Result<Vec<String>>;
    /// Abort uploads that were started more than `older_than` ago and never completed
    /// (S3 multipart uploads of killed runs: invisible, but stored and billed). Returns
    /// what was aborted, one line each. Stores without such uploads have none.
    fn abort_stale_uploads(&self, older_than: Duration) -> Result<Vec<String>> {
        let _ = older_than;
        Ok(Vec::new())
    }

    /// What [`Store::clean_partials`] would remove, removing nothing (`cleanup --dry-run`).
    fn partials(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// What [`Store::abort_stale_uploads`] would abort, aborting nothing.
    fn stale_uploads(&self, older_than: Duration) -> Result<Vec<String>> {
        let _ = older_than;
        Ok(Vec::new())
    }

    /// Until when object lock forbids deleting `name` (S3 object-lock retention), or `None`
    /// (no lock, or a store without object lock). Prune asks before deleting anything.
    fn retained_until(&self, name: &str) -> Result<Option<SystemTime>> {
        let _ = name;
        Ok(None)
    }

    /// Write a small object in one go.
    fn put_bytes(&self, name: &str, data: &[u8]) -> Result<()> {
        let mut w = self.create(name)?;
        if let Err(e) = w.write_all(data) {
            w.abort();
            return Err(Error::store(
                self.location(),
                kind_of_io(&e),
                format!("write {name}: {}", crate::error::io_words(&e)),
            ));
        }
        w.commit()
    }

    /// Read a small object in one go.
    fn get_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let mut r = self.load(name, 0, None)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|e| {
            Error::store(
                self.location(),
                kind_of_io(&e),
                format!("read {name}: {}", crate::error::io_words(&e)),
            )
        })?;
        Ok(out)
    }
}

/// `Box<S>` and `Arc<S>` are stores that forward every call (the default methods too, so
/// a store's own `put_bytes`/`get_bytes` are kept): one definition for both pointers.
macro_rules! forward_store {
    ($ptr:ident) => {
        impl<S: Store + ?Sized> Store for $ptr<S> {
            fn location(&self) -> String {
                (**self).location()
            }
            fn lock_key(&self) -> String {
                (**self).lock_key()
            }
            fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
                (**self).create(name)
            }
            fn create_sized(
                &self,
                name: &str,
                size_hint: Option<u64>,
            ) -> Result<Box<dyn ObjectWriter>> {
                (**self).create_sized(name, size_hint)
            }
            fn open(&self, name: &str) -> Result<Box<dyn ReadAt>> {
                (**self).open(name)
            }
            fn load(
                &self,
                name: &str,
                offset: u64,
                len: Option<u64>,
            ) -> Result<Box<dyn Read + Send>> {
                (**self).load(name, offset, len)
            }
            fn stat(&self, name: &str) -> Result<Option<u64>> {
                (**self).stat(name)
            }
            fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
                (**self).list(prefix)
            }
            fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<ObjectInfo>> {
                (**self).list_after(prefix, after)
            }
            fn list_skipping(&self, skip: &str) -> Result<Vec<ObjectInfo>> {
                (**self).list_skipping(skip)
            }
            fn remove(&self, name: &str) -> Result<()> {
                (**self).remove(name)
            }
            fn lock(&self, wait: Duration) -> Result<Box<dyn StoreLock>> {
                (**self).lock(wait)
            }
            fn clean_partials(&self) -> Result<Vec<String>> {
                (**self).clean_partials()
            }
            fn abort_stale_uploads(&self, older_than: Duration) -> Result<Vec<String>> {
                (**self).abort_stale_uploads(older_than)
            }
            fn partials(&self) -> Result<Vec<String>> {
                (**self).partials()
            }
            fn stale_uploads(&self, older_than: Duration) -> Result<Vec<String>> {
                (**self).stale_uploads(older_than)
            }
            fn retained_until(&self, name: &str) -> Result<Option<SystemTime>> {
                (**self).retained_until(name)
            }
            fn put_bytes(&self, name: &str, data: &[u8]) -> Result<()> {
                (**self).put_bytes(name, data)
            }
            fn get_bytes(&self, name: &str) -> Result<Vec<u8>> {
                (**self).get_bytes(name)
            }
        }
    };
}

use std::sync::Arc;
forward_store!(Box);
forward_store!(Arc);

/// The kind of an OS error, for stores: what a retry wrapper needs to know.
pub fn kind_of_io(e: &std::io::Error) -> StoreErrorKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => StoreErrorKind::NotFound,
        K::AlreadyExists => StoreErrorKind::AlreadyExists,
        K::PermissionDenied => StoreErrorKind::Permission,
        K::Interrupted | K::TimedOut | K::WouldBlock => StoreErrorKind::Transient,
        _ if e.raw_os_error() == Some(4) => StoreErrorKind::Transient, // EINTR
        _ => StoreErrorKind::Other,
    }
}

/// Open a destination given as a local path or `s3://bucket/prefix`.
///
/// `create` makes a missing local directory (for `backup`); readers want it to exist. An
/// S3 destination's settings come from `s3` (the caller's configuration: the config file,
/// the environment and the flags, `config::Layers::s3_settings`), credentials from the AWS
/// chain; its requests run on `runtime`, the edge's (an S3 destination without one is
/// lifeboat's bug, an `Internal` error).
pub fn open_destination(
    dest: &str,
    create: bool,
    s3: S3Resolver<'_>,
    runtime: Option<&tokio::runtime::Handle>,
) -> Result<Box<dyn Store>> {
    if dest.is_empty() {
        return Err(Error::Usage("empty destination".into()));
    }
    if dest.starts_with("s3://") {
        #[cfg(feature = "s3")]
        {
            let settings = s3(dest)?;
            let Some(runtime) = runtime else {
                return Err(Error::Internal(format!(
                    "{dest}: opened without a runtime for the S3 client (catalog::Access::with_runtime)"
                )));
            };
            return Ok(Box::new(s3::S3Store::open(dest, &settings, runtime)?));
        }
        #[cfg(not(feature = "s3"))]
        let _ = (s3, runtime);
        #[cfg(not(feature = "s3"))]
        return Err(Error::Usage(format!(
            "destination {dest}: this build has no S3 support (built with --no-default-features); build lifeboat with its default features"
        )));
    }
    if dest.contains("://") {
        return Err(Error::Usage(format!(
            "destination {dest}: expected a local directory or s3://bucket/prefix"
        )));
    }
    Ok(Box::new(local::LocalStore::open(dest, create)?))
}

/// Take the writer locks of several stores without ever deadlocking against another run:
/// in one global order (by [`Store::lock_key`]), each waiting at most `wait`. Two runs
/// with `--to A --to B` and `--to B --to A` then queue on the same first lock instead of
/// each holding one and waiting for the other.
///
/// The same store given twice (two spellings of one directory) is refused: a second lock
/// on one store would wait for the first forever. `stores` pairs each store with how the
/// user named it, for that message.
pub fn lock_in_order(
    stores: &[(String, &dyn Store)],
    wait: Duration,
) -> Result<Vec<Box<dyn StoreLock>>> {
    ordered(stores)?
        .into_iter()
        .map(|(_, s)| s.lock(wait))
        .collect()
}

/// [`lock_in_order`] for fan-out, where each store succeeds or fails on its own: the
/// same order and the same refusal of one store given twice (the outer error), then each
/// store's lock or why it could not be taken, by its index in `stores`.
#[allow(clippy::type_complexity)]
pub fn lock_each_in_order(
    stores: &[(String, &dyn Store)],
    wait: Duration,
) -> Result<Vec<(usize, Result<Box<dyn StoreLock>>)>> {
    Ok(ordered(stores)?
        .into_iter()
        .map(|(i, s)| (i, s.lock(wait)))
        .collect())
}

/// The stores (with their indexes) in lock order; an error if one store is given twice.
fn ordered<'a>(stores: &[(String, &'a dyn Store)]) -> Result<Vec<(usize, &'a dyn Store)>> {
    let mut keyed: Vec<(String, &String, &dyn Store, usize)> = stores
        .iter()
        .enumerate()
        .map(|(i, (label, s))| (s.lock_key(), label, *s, i))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    for pair in keyed.windows(2) {
        if pair[0].0 == pair[1].0 {
            let (first, second) = if pair[0].1 <= pair[1].1 {
                (pair[0].1, pair[1].1)
            } else {
                (pair[1].1, pair[0].1)
            };
            return Err(Error::Usage(format!(
                "{first} and {second} are the same destination ({}); give it once",
                pair[0].0
            )));
        }
    }
    Ok(keyed.into_iter().map(|(_, _, s, i)| (i, s)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn the_same_directory_twice_is_refused_naming_both_spellings() {
        let d = tempfile::tempdir().unwrap();
        let a = local::LocalStore::open(d.path(), false).unwrap();
        let b = local::LocalStore::open(format!("{}/", d.path().display()), false).unwrap();
        let labels = [
            format!("--to {}", d.path().display()),
            format!("--to {}/", d.path().display()),
        ];
        let e = lock_in_order(
            &[
                (labels[0].clone(), &a as &dyn Store),
                (labels[1].clone(), &b),
            ],
            Duration::ZERO,
        )
        .err()
        .expect("refused");
        assert_eq!(e.exit_code(), crate::ExitCode::Usage);
        let m = e.to_string();
        assert!(m.contains(&labels[0]) && m.contains(&labels[1]), "{m}");
    }

    /// Two runs locking the same two stores in opposite order both finish: the locks are
    /// taken in one order whatever the command line said.
    #[test]
    fn opposite_orders_do_not_deadlock() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let p1 = d1.path().to_path_buf();
        let p2 = d2.path().to_path_buf();
        let start = Arc::new(Barrier::new(2));
        let runs: Vec<_> = [(p1.clone(), p2.clone()), (p2, p1)]
            .into_iter()
            .map(|(x, y)| {
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    let sx = local::LocalStore::open(&x, false).unwrap();
                    let sy = local::LocalStore::open(&y, false).unwrap();
                    start.wait();
                    for _ in 0..20 {
                        let held = lock_in_order(
                            &[("x".into(), &sx as &dyn Store), ("y".into(), &sy)],
                            Duration::from_secs(600),
                        )
                        .unwrap();
                        std::thread::yield_now();
                        drop(held);
                    }
                })
            })
            .collect();
        for r in runs {
            r.join().unwrap();
        }
    }
}
