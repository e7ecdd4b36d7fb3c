//! Where a replay writes: a database image it commits transactions to one after another.
//!
//! A long capture window is replayed in chunks, each committed as its own copy-on-write
//! transaction ([`crate::format::bolt::write::cow_patch`]), so what is held in memory is one
//! chunk of records and its pages, whatever the window's length. The image is a copy of the
//! backup's database: in memory for small images (tests, fuzzing), or an unlinked temporary
//! file next to where the restore works ([`FileImage`]), which the restore then reads as
//! its snapshot.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::format::bolt::write::Patch;
use crate::format::etcd::hashkv::PrePass;
use crate::io::ReadAt;
use crate::{Error, Result};

/// A database image a replay commits transactions to.
pub trait Image: ReadAt {
    /// Write `patch` (computed on this image as it is now): its pages, then its meta.
    fn commit(&mut self, patch: &Patch) -> Result<()>;
}

impl Image for Vec<u8> {
    fn commit(&mut self, patch: &Patch) -> Result<()> {
        patch.apply_to(self);
        Ok(())
    }
}

/// A database image in a file: a copy in an unlinked temporary file ([`FileImage::copy_of`]:
/// gone when dropped or when the process dies, so a failed restore leaves nothing behind),
/// or a private file the caller made, replayed in place ([`FileImage::in_place`]). Not
/// synced here: the restore that writes a member from it syncs what it keeps.
pub struct FileImage {
    file: std::fs::File,
    size: u64,
    /// Named in errors: the temporary file's directory, or the file replayed in place.
    dir: PathBuf,
}

/// Copy buffer: large enough for sequential throughput, small next to a chunk.
const COPY_BUF: usize = 1 << 20;

impl FileImage {
    /// Copy `db` into a new temporary file in `dir`. With `expect` (SHA-256, object), the
    /// bytes copied must have that digest: an integrity error (exit 3) naming the object
    /// otherwise, so the copy is also the check that the restore reads what the plan was
    /// made for.
    pub fn copy_of(dir: &Path, db: &dyn ReadAt, expect: Option<([u8; 32], &str)>) -> Result<Self> {
        let here = |e: io::Error| not_here(dir, e);
        let file = tempfile::tempfile_in(dir).map_err(here)?;
        let size = db.size();
        let mut buf = vec![0u8; COPY_BUF];
        let mut sha = Sha256::new();
        let mut off = 0u64;
        while off < size {
            let n = (size - off).min(COPY_BUF as u64) as usize;
            db.read_exact_at(off, &mut buf[..n])
                .map_err(|e| Error::io("snapshot", e))?;
            sha.update(&buf[..n]);
            file.write_all_at(&buf[..n], off).map_err(here)?;
            off += n as u64;
        }
        if let Some((want, object)) = expect {
            let got: [u8; 32] = sha.finalize().into();
            if got != want {
                return Err(Error::integrity(
                    object,
                    format!(
                        "database SHA-256 is {}, the plan was made for {}: the backup changed since; make a new plan",
                        hex::encode(got),
                        hex::encode(want)
                    ),
                ));
            }
        }
        Ok(FileImage {
            file,
            size,
            dir: dir.to_path_buf(),
        })
    }

    /// An empty temporary file in `dir`, filled by [`DbCopy::append`] (the database a
    /// verify decodes: [`crate::catalog::Repository::verify_copying`]).
    pub fn empty_in(dir: &Path) -> Result<Self> {
        let file = tempfile::tempfile_in(dir).map_err(|e| not_here(dir, e))?;
        Ok(FileImage {
            file,
            size: 0,
            dir: dir.to_path_buf(),
        })
    }
}

impl crate::jobs::verify::DbCopy for FileImage {
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all_at(bytes, self.size)
            .map_err(|e| not_here(&self.dir, e))?;
        self.size += bytes.len() as u64;
        Ok(())
    }
}

/// A write to the replay's copy in `dir` failed: say what it needs.
fn not_here(dir: &Path, e: io::Error) -> Error {
    Error::io(
        dir,
        io::Error::new(
            e.kind(),
            format!(
                "{} (the replayed database is built here, as large as the backup's database plus the replayed changes: free space or restore elsewhere)",
                crate::error::io_words(&e)
            ),
        ),
    )
}

impl FileImage {
    /// Replay onto the database file at `path` itself (a private copy the caller made, such
    /// as a snapshot fetched for this restore): no second copy. The file's first `size`
    /// bytes are the database.
    pub fn in_place(path: &Path, size: u64) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(FileImage {
            file,
            size,
            dir: path.to_path_buf(),
        })
    }
}

impl ReadAt for FileImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.size) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at offset {offset} past the end ({} bytes)",
                    buf.len(),
                    self.size
                ),
            ));
        }
        self.file.read_exact_at(buf, offset)
    }
}

impl Image for FileImage {
    fn commit(&mut self, patch: &Patch) -> Result<()> {
        let len = patch.len_after(self.size);
        for (off, bytes) in [&patch.pages, &patch.meta] {
            self.file
                .write_all_at(bytes, *off)
                .map_err(|e| Error::io(&self.dir, e))?;
        }
        self.size = len;
        Ok(())
    }
}

/// A replay's [`FileImage`] whose base a thread reads meanwhile: the part of the hashkv
/// pre-pass over the base's revisions ([`PrePass`]), made while the window is read rather
/// than after the replay (a compacted replay writes nothing until the window has been
/// read). The first commit waits for that thread, so no page it may read is written
/// before it has finished; the thread reads through a handle of its own.
pub struct PrePassing<'a> {
    img: &'a mut FileImage,
    pass: std::sync::Mutex<Pass>,
}

enum Pass {
    Running(std::thread::JoinHandle<Option<PrePass>>),
    Done(Option<PrePass>),
}

impl<'a> PrePassing<'a> {
    /// Start the pre-pass over `img`'s entries up to main revision `upto` (the base
    /// backup's revision: the replay adds only later ones).
    pub fn start(img: &'a mut FileImage, upto: i64) -> Result<Self> {
        // The same bytes through a handle of its own, only read.
        let base = FileImage {
            file: img.file.try_clone().map_err(|e| Error::io(&img.dir, e))?,
            size: img.size,
            dir: img.dir.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("lifeboat-prepass".into())
            .spawn(move || prepass_of(&base, upto))
            .map_err(|e| Error::io(&img.dir, e))?;
        Ok(PrePassing {
            img,
            pass: std::sync::Mutex::new(Pass::Running(thread)),
        })
    }

    /// `img` with its pre-pass already made ([`prepass_of`], by whoever made the copy).
    pub fn finished(img: &'a mut FileImage, pass: Option<PrePass>) -> Self {
        PrePassing {
            img,
            pass: std::sync::Mutex::new(Pass::Done(pass)),
        }
    }

    /// The pre-pass, once finished (None: it failed; then the walk makes it whole).
    pub fn take(&self) -> Option<PrePass> {
        self.wait();
        match &mut *self.lock() {
            Pass::Done(p) => p.take(),
            Pass::Running(_) => None,
        }
    }

    /// The state, whatever a panicking holder left (never one here: the thread's panic
    /// is caught by its join).
    fn lock(&self) -> std::sync::MutexGuard<'_, Pass> {
        self.pass.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait(&self) {
        let mut pass = self.lock();
        if matches!(*pass, Pass::Running(_)) {
            if let Pass::Running(t) = std::mem::replace(&mut *pass, Pass::Done(None)) {
                *pass = Pass::Done(t.join().ok().flatten());
            }
        }
    }
}

/// The hashkv pre-pass over `base`'s entries up to main revision `upto` (see
/// [`PrePassing`]). None when the base does not read: the walk that follows reports that,
/// and makes the whole pre-pass itself.
pub fn prepass_of(base: &FileImage, upto: i64) -> Option<PrePass> {
    let db = crate::format::bolt::Db::open(base).ok()?;
    PrePass::run(&db, upto).ok()
}

impl ReadAt for PrePassing<'_> {
    fn size(&self) -> u64 {
        self.img.size()
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.img.read_exact_at(offset, buf)
    }
}

impl Image for PrePassing<'_> {
    fn commit(&mut self, patch: &Patch) -> Result<()> {
        self.wait();
        self.img.commit(patch)
    }
}
