//! A local directory as a store.
//!
//! Objects are plain files. A new object is written as `<name>.partial` (mode 0600, created
//! exclusively), fsynced, renamed to `<name>`, and the directory is fsynced, so after a
//! crash a name either holds the whole object or does not exist. A lock file
//! (`.lifeboat.lock`, `flock`) serialises backup runs. Not every writer takes it (a scrub's
//! verdict, a capture segment are written while a backup runs), so a writer also holds an
//! `flock` on its own `.partial` until the rename: cleaning removes only the partials no
//! live process holds, which are the ones dead runs left ([`atomic`]). The directory is canonicalised when opened, so two
//! spellings of one destination (`/d`, `/d/`, a symlink to it) are recognised as one store.
//!
//! OS errors become [`Error::Store`] with a [`StoreErrorKind`](crate::error::StoreErrorKind)
//! ([`super::kind_of_io`]): not-found, already-exists, permission, transient (EINTR,
//! timeouts), other.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{kind_of_io, ObjectInfo, ObjectWriter, Store, StoreLock};
use crate::error::{IoContext, StoreErrorKind};
use crate::io::{wait_for_flock, FileReader, FlockError, ReadAt};
use crate::{Error, Result};

pub const PARTIAL_SUFFIX: &str = ".partial";
const LOCK_FILE: &str = ".lifeboat.lock";

mod atomic;
use atomic::unheld_partial;
pub use atomic::AtomicFile;

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
        let shown = dir.display().to_string();
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Usage(format!(
                    "destination {shown} is not a directory"
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(not_a_dir_below(&shown));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| {
                        if e.kind() == io::ErrorKind::NotADirectory {
                            not_a_dir_below(&shown)
                        } else {
                            Error::io(&dir, e)
                        }
                    })?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound(format!(
                    "destination {shown} does not exist"
                )))
            }
            Err(e) => return Err(Error::io(dir, e)),
        }
        let dir = fs::canonicalize(&dir).at(&dir)?;
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

fn not_a_dir_below(shown: &str) -> Error {
    Error::Usage(format!(
        "destination {shown}: a part of that path is a regular file, not a directory"
    ))
}

struct LocalLock {
    _file: File,
}
impl StoreLock for LocalLock {}

/// Who holds a lock, as written into the lock file by the holder once it has the lock.
fn holder_of(file: &mut File) -> String {
    let mut s = String::new();
    let read = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.take(4096).read_to_string(&mut s));
    let fields: Vec<String> = s
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if read.is_err() || fields.is_empty() {
        "another lifeboat (holder unknown)".to_string()
    } else {
        format!("lifeboat {}", fields.join(", "))
    }
}

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Poll interval while waiting for a busy lock.
const LOCK_POLL: Duration = Duration::from_millis(100);

impl LocalStore {
    fn err(&self, what: &str, e: io::Error) -> Error {
        Error::store(
            self.location(),
            kind_of_io(&e),
            format!("{what}: {}", crate::error::io_words(&e)),
        )
    }

    /// The committed objects whose names `wanted` accepts, by name; the others cost no
    /// `stat`.
    fn list_where(&self, wanted: impl Fn(&str) -> bool) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|e| self.err("list", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| self.err("list", e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !wanted(&name) || check_name(&name).is_err() {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Removed between readdir and stat: not there any more.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err(&format!("stat {name}"), e)),
            };
            if meta.is_file() {
                out.push(ObjectInfo {
                    name,
                    size: meta.len(),
                    modified: meta.modified().ok(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn missing(&self, name: &str) -> Error {
        Error::NotFound(format!("{}: object {name} does not exist", self.location()))
    }
}

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
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.missing(name)),
            Err(e) => Err(self.err(&format!("open {name}"), e)),
        }
    }

    fn load(&self, name: &str, offset: u64, len: Option<u64>) -> Result<Box<dyn Read + Send>> {
        let path = self.path(name)?;
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.missing(name)),
            Err(e) => return Err(self.err(&format!("open {name}"), e)),
        };
        let size = f
            .metadata()
            .map_err(|e| self.err(&format!("stat {name}"), e))?
            .len();
        let end = match len {
            Some(l) => offset.checked_add(l),
            None => Some(size),
        };
        if offset > size || end.is_none_or(|end| end > size) {
            return Err(Error::store(
                self.location(),
                StoreErrorKind::Other,
                format!(
                    "read of {name} at {offset}, {} bytes, runs past its end ({size} bytes)",
                    len.map_or("all".to_string(), |l| l.to_string())
                ),
            ));
        }
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| self.err(&format!("seek {name}"), e))?;
        let take = end.unwrap_or(size) - offset;
        Ok(Box::new(io::BufReader::with_capacity(
            1 << 20,
            f.take(take),
        )))
    }

    fn stat(&self, name: &str) -> Result<Option<u64>> {
        let path = self.path(name)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(&format!("stat {name}"), e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.list_where(|n| n.starts_with(prefix))
    }

    fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<ObjectInfo>> {
        self.list_where(|n| n.starts_with(prefix) && n > after)
    }

    fn list_skipping(&self, skip: &str) -> Result<Vec<ObjectInfo>> {
        self.list_where(|n| !n.starts_with(skip))
    }

    fn remove(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.err(&format!("remove {name}"), e)),
        }
        sync_dir(&self.dir)
    }

    fn lock(&self, wait: Duration) -> Result<Box<dyn StoreLock>> {
        let path = self.dir.join(LOCK_FILE);
        let started = crate::timestamp::Timestamp::now();
        let me = format!(
            "pid={}\nhost={}\nsince={started}\n",
            std::process::id(),
            host_name()
        );
        let location = self.location();
        let on_wait = &mut |holder: &str| {
            tracing::warn!(
                "{location} is locked by {holder}; waiting up to {}s for it to finish",
                wait.as_secs()
            );
        };
        let file = match wait_for_flock(&path, wait, LOCK_POLL, &holder_of, on_wait, &me) {
            Ok(file) => file,
            Err(FlockError::Open(e)) => return Err(self.err("open the lock file", e)),
            Err(FlockError::Lock(e)) => return Err(self.err("lock", e)),
            Err(FlockError::Busy(holder)) => {
                return Err(Error::store(
                    location,
                    StoreErrorKind::Other,
                    format!(
                        "locked by {holder}; gave up after {}s (is it still running? if not, the lock frees itself when that process exits)",
                        wait.as_secs()
                    ),
                ))
            }
        };
        Ok(Box::new(LocalLock { _file: file }))
    }

    fn partials(&self) -> Result<Vec<String>> {
        let mut found = self.unheld_partials(|_| Ok(true))?;
        found.sort();
        Ok(found)
    }

    fn clean_partials(&self) -> Result<Vec<String>> {
        let removed = self.unheld_partials(|path| match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        })?;
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }
}

impl LocalStore {
    /// The names of the partials no live writer holds, for which `each` (called with the
    /// partial's lock held, so no writer can take it meanwhile) says yes.
    fn unheld_partials(
        &self,
        mut each: impl FnMut(&Path) -> io::Result<bool>,
    ) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|e| self.err("list", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| self.err("list", e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.ends_with(PARTIAL_SUFFIX) || name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Some(_held) =
                unheld_partial(&path).map_err(|e| self.err(&format!("check {name}"), e))?
            else {
                continue;
            };
            if each(&path).map_err(|e| self.err(&format!("remove {name}"), e))? {
                names.push(name);
            }
        }
        Ok(names)
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
        assert!(s.list("").unwrap().is_empty());
        assert_eq!(s.stat("a.bin").unwrap(), None);
        w.commit().unwrap();
        let l = s.list("").unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].name.as_str(), l[0].size), ("a.bin", 5));
        assert!(l[0].modified.is_some());
        assert!(s.list("b").unwrap().is_empty());
        assert_eq!(s.get_bytes("a.bin").unwrap(), b"hello");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(d.path().join("a.bin"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(s.create("a.bin").is_err(), "never overwrites");
    }

    /// A scrub's verdict or a capture segment is written while a backup holds the store
    /// lock and cleans partials: the cleaner leaves a live writer's partial alone (the
    /// soak caught `verified.json.partial` removed under a scrub), and removes it once
    /// its writer is gone without committing.
    #[test]
    fn cleaning_spares_a_live_writers_partial() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::open(d.path(), false).unwrap();
        let mut live = s.create("live.bin").unwrap();
        live.write_all(b"segment").unwrap();
        fs::write(d.path().join("dead.bin.partial"), b"junk").unwrap();
        let _l = s.lock(Duration::ZERO).unwrap();
        assert_eq!(s.partials().unwrap(), vec!["dead.bin.partial".to_string()]);
        assert_eq!(
            s.clean_partials().unwrap(),
            vec!["dead.bin.partial".to_string()]
        );
        live.commit().unwrap();
        assert_eq!(s.get_bytes("live.bin").unwrap(), b"segment");
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
        assert!(s.list("").unwrap().is_empty());
        let _l = s.lock(Duration::ZERO).unwrap();
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

    #[test]
    fn load_remove_and_error_kinds() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::open(d.path(), false).unwrap();
        s.put_bytes("x", b"0123456789").unwrap();
        let mut got = String::new();
        s.load("x", 2, Some(5))
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "23456");
        assert!(s.load("x", 8, Some(5)).is_err(), "past the end");
        assert!(matches!(s.load("nope", 0, None), Err(Error::NotFound(_))));
        match s.create("x") {
            Err(Error::Store { kind, .. }) => assert_eq!(kind, StoreErrorKind::AlreadyExists),
            _ => panic!("create over an existing object must fail"),
        }
        s.remove("x").unwrap();
        s.remove("x").unwrap(); // idempotent
        assert_eq!(s.stat("x").unwrap(), None);
    }

    #[test]
    fn spellings_of_one_directory_are_one_store() {
        let d = tempfile::tempdir().unwrap();
        let a = LocalStore::open(d.path(), false).unwrap();
        let b = LocalStore::open(format!("{}/", d.path().display()), false).unwrap();
        let c = LocalStore::open(d.path().join("."), false).unwrap();
        assert_eq!(a.lock_key(), b.lock_key());
        assert_eq!(a.lock_key(), c.lock_key());
        // A path below a regular file is a usage error, like the file itself.
        let f = d.path().join("file");
        fs::write(&f, b"x").unwrap();
        for p in [f.clone(), f.join("sub")] {
            match LocalStore::open(&p, true) {
                Err(Error::Usage(m)) => assert!(m.contains(&p.display().to_string()), "{m}"),
                Err(e) => panic!("{}: {e}", p.display()),
                Ok(_) => panic!("{}: opened", p.display()),
            }
        }
    }

    #[test]
    fn a_busy_lock_names_its_holder_and_times_out() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::open(d.path(), false).unwrap();
        let _held = s.lock(Duration::ZERO).unwrap();
        // flock is per open file: a second open in this process contends like another run.
        let e = match s.lock(Duration::ZERO) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("second lock taken"),
        };
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("host "), "{e}");
    }
}
