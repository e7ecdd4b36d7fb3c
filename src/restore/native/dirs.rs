//! The filesystem side of a native restore: empty-target checks, temporary directories
//! beside the targets, the one copy of the snapshot into every member's db, fsyncs, and
//! the renames that put finished data dirs in place.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::InFile;
use crate::format::bolt::write::Patch;
use crate::format::bolt::FormatError;
use crate::format::wal::write::{FIRST_SEGMENT, SEGMENT_SIZE};
use crate::io::{ReadAt, DIGEST_CHUNK};
use crate::{Error, Result};

/// One member dir to write.
pub(super) struct Target {
    pub name: String,
    pub member_id: u64,
    pub data_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
}

/// The per-member files besides the db.
pub(super) struct MemberFiles {
    /// The WAL's first segment, unpadded.
    pub wal: Vec<u8>,
    /// Snap file name and bytes.
    pub snap: (String, Vec<u8>),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A directory a restore may write: missing, or an empty directory.
fn check_empty(dir: &Path, what: &str) -> Result<()> {
    match fs::read_dir(dir) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(Error::Usage(format!(
                    "{what} {} is not empty: a restore writes only into a new or empty directory (move the old one aside first)",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(Error::Usage(format!(
            "{what} {} is a file, not a directory",
            dir.display()
        ))),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Every target names distinct, empty (or missing) directories.
pub(super) fn check_targets(plan: &[Target]) -> Result<()> {
    let mut seen: Vec<&Path> = Vec::new();
    for t in plan {
        check_empty(&t.data_dir, "data dir")?;
        if let Some(w) = &t.wal_dir {
            check_empty(w, "WAL dir")?;
            if w.starts_with(&t.data_dir) {
                return Err(Error::Usage(format!(
                    "WAL dir {} is inside data dir {}: leave --wal-dir out for the default member/wal",
                    w.display(),
                    t.data_dir.display()
                )));
            }
        }
        for d in std::iter::once(&t.data_dir).chain(t.wal_dir.as_ref()) {
            if seen.contains(&d.as_path()) {
                return Err(Error::Usage(format!(
                    "directory {} is given to two members",
                    d.display()
                )));
            }
            seen.push(d);
        }
    }
    Ok(())
}

/// `.<name>.lifeboat-restore-<pid>` beside `dir`.
fn staging_path(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    let tmp = format!(".{name}.lifeboat-restore-{}", std::process::id());
    match parent {
        Some(p) => p.join(tmp),
        None => PathBuf::from(tmp),
    }
}

fn mkdir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

fn create(path: &Path, mode: u32) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

/// Extend a WAL segment to etcd's segment size with real blocks (`fallocate`, as etcd's
/// `fileutil.Preallocate`), falling back to a sparse extension where the filesystem has
/// no fallocate (etcd falls back the same way).
#[cfg(target_os = "linux")]
fn preallocate(f: &File, path: &Path, len: u64) -> Result<()> {
    use std::os::fd::AsRawFd;
    let len_arg = libc::off_t::try_from(len).map_err(|_| {
        io_err(path)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{len} bytes is too large to preallocate"),
        ))
    })?;
    // One of the crate's few unsafe blocks (DESIGN.md, "Unsafe code"): the crate denies
    // unsafe code and allows it only here and in daemon/memory.rs, on Linux.
    // SAFETY: fallocate(2) on a descriptor `f` keeps open for the whole call, with mode 0
    // and an in-range offset and length; it reads and writes no memory of this process.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len_arg) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(io_err(path)(e));
        }
        f.set_len(len).map_err(io_err(path))?;
    }
    Ok(())
}

/// Elsewhere: a sparse extension (etcd's fallback where there is no fallocate).
#[cfg(not(target_os = "linux"))]
fn preallocate(f: &File, path: &Path, len: u64) -> Result<()> {
    f.set_len(len).map_err(io_err(path))
}

/// Where a member's db comes from.
#[derive(Clone, Copy)]
pub(super) enum DbSource<'a> {
    /// Copy the image into every target's db, checking its SHA-256 (when given) on the way.
    Copy(Option<[u8; 32]>),
    /// Move this file (on the targets' filesystem, already checked against the digest by
    /// whoever wrote it) into the one target as its db: no copy, no second read. Anything
    /// beyond the image's size (a snapshot's SHA-256 trailer) is cut off.
    Adopt(&'a Path),
}

/// Where one member is being written.
struct Staged {
    data: PathBuf,
    /// Separate WAL dir staging (with `--wal-dir`).
    wal: Option<PathBuf>,
}

impl Staged {
    fn remove(&self) {
        let _ = fs::remove_dir_all(&self.data);
        if let Some(w) = &self.wal {
            let _ = fs::remove_dir_all(w);
        }
    }
}

/// Write every target: stage, copy and check the digest, patch, WAL, snap, sync, rename.
/// On failure nothing is left behind but what was already renamed into place.
pub(super) fn write_all(
    db: &dyn ReadAt,
    source: DbSource<'_>,
    patch: &Patch,
    plan: &[Target],
    files: impl Fn(&Target) -> MemberFiles,
) -> Result<()> {
    let mut staged: Vec<Staged> = Vec::new();
    let r = stage_all(db, source, patch, plan, &files, &mut staged);
    if r.is_err() {
        for s in &staged {
            s.remove();
        }
        return r;
    }
    for (t, s) in plan.iter().zip(&staged) {
        place(&s.data, &t.data_dir)?;
        if let (Some(w), Some(dest)) = (&s.wal, &t.wal_dir) {
            place(w, dest)?;
        }
    }
    Ok(())
}

fn stage_all(
    db: &dyn ReadAt,
    source: DbSource<'_>,
    patch: &Patch,
    plan: &[Target],
    files: &dyn Fn(&Target) -> MemberFiles,
    staged: &mut Vec<Staged>,
) -> Result<()> {
    if matches!(source, DbSource::Adopt(_)) && plan.len() != 1 {
        return Err(Error::Internal(format!(
            "a db file can become the db of one member, not {}",
            plan.len()
        )));
    }
    let mut dbs: Vec<(File, PathBuf)> = Vec::new();
    for t in plan {
        if let Some(p) = t.data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            mkdir(p)?;
        }
        let s = Staged {
            data: staging_path(&t.data_dir),
            wal: t.wal_dir.as_deref().map(staging_path),
        };
        s.remove(); // a leftover of a crashed run with the same pid
        let snap_dir = s.data.join("member/snap");
        let wal_dir = s.wal.clone().unwrap_or_else(|| s.data.join("member/wal"));
        staged.push(s);
        mkdir(&snap_dir)?;
        if let Some(p) = wal_dir.parent() {
            mkdir(p)?;
        }
        mkdir(&wal_dir)?;
        let path = snap_dir.join("db");
        match source {
            DbSource::Copy(_) => dbs.push((create(&path, 0o600)?, path)),
            DbSource::Adopt(from) => dbs.push((adopt(from, &path, db.size())?, path)),
        }
    }
    if let DbSource::Copy(expected_sha256) = source {
        copy_checked(db, expected_sha256, &mut dbs)?;
    }
    for ((f, path), (t, s)) in dbs.iter().zip(plan.iter().zip(staged.iter())) {
        // bbolt's commit order: the new pages reach the disk before the meta that points
        // at them.
        f.write_all_at(&patch.pages.1, patch.pages.0)
            .and_then(|_| f.sync_data())
            .and_then(|_| f.write_all_at(&patch.meta.1, patch.meta.0))
            .and_then(|_| f.sync_all())
            .map_err(io_err(path))?;
        let mf = files(t);
        let wal_dir = s.wal.clone().unwrap_or_else(|| s.data.join("member/wal"));
        let wal_path = wal_dir.join(FIRST_SEGMENT);
        let mut w = create(&wal_path, 0o600)?;
        w.write_all(&mf.wal).map_err(io_err(&wal_path))?;
        preallocate(&w, &wal_path, SEGMENT_SIZE.max(mf.wal.len() as u64))?;
        w.sync_all().map_err(io_err(&wal_path))?;
        let snap_dir = s.data.join("member/snap");
        let snap_path = snap_dir.join(&mf.snap.0);
        let mut sf = create(&snap_path, 0o644)?;
        sf.write_all(&mf.snap.1)
            .and_then(|_| sf.sync_all())
            .map_err(io_err(&snap_path))?;
        for d in [
            snap_dir.clone(),
            wal_dir,
            s.data.join("member"),
            s.data.clone(),
        ] {
            sync_dir(&d)?;
        }
        if let Some(w) = &s.wal {
            sync_dir(w)?;
        }
    }
    Ok(())
}

/// Move the checked image `from` to `to` (a new name in a staging dir), owner-only as etcd
/// keeps its db, cut to `len` bytes, and open it for the patch.
fn adopt(from: &Path, to: &Path, len: u64) -> Result<File> {
    use std::os::unix::fs::PermissionsExt;
    fs::rename(from, to).map_err(io_err(from))?;
    let f = OpenOptions::new()
        .write(true)
        .open(to)
        .map_err(io_err(to))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .and_then(|_| f.set_len(len))
        .map_err(io_err(to))?;
    Ok(f)
}

/// One pass over the snapshot: hash it and write every member's copy of the db.
fn copy_checked(
    db: &dyn ReadAt,
    expected_sha256: Option<[u8; 32]>,
    dbs: &mut [(File, PathBuf)],
) -> Result<()> {
    let size = db.size();
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; size.min(DIGEST_CHUNK as u64) as usize];
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        db.read_exact_at(off, &mut buf[..n]).map_err(|source| {
            FormatError::Io {
                offset: off,
                len: n,
                source,
            }
            .in_file("snapshot")
        })?;
        sha.update(&buf[..n]);
        for (f, path) in dbs.iter_mut() {
            f.write_all(&buf[..n]).map_err(io_err(path))?;
        }
        off += n as u64;
    }
    let got: [u8; 32] = sha.finalize().into();
    if let Some(want) = expected_sha256 {
        if got != want {
            return Err(Error::Integrity {
                object: "snapshot".into(),
                what: format!(
                    "SHA-256 of the database is {}, expected {}: the backup is damaged; nothing was restored",
                    hex::encode(got),
                    hex::encode(want)
                ),
            });
        }
    }
    Ok(())
}

/// Rename a finished staging dir onto `dest` (missing or empty) and sync the parent.
fn place(staging: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        fs::remove_dir(dest).map_err(io_err(dest))?;
    }
    fs::rename(staging, dest).map_err(io_err(dest))?;
    if let Some(p) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(p)?;
    }
    Ok(())
}
