//! The database spooled to a local temporary file for the run's hashkv walk, so that the
//! walk reads plain local pages instead of decoding the stored object a second time.
//!
//! Two writers fill it. While the snapshot streams ([`Spool::for_stream`]), the stream
//! itself appends the database bytes as they pass, when the database fits well within the
//! memory available (the file then lives in the page cache and is gone before it would be
//! written out): the walk then needs neither decoding (a local destination) nor a second
//! read of a remote one, and the read-back is the stored digest, as for a local
//! destination. The bytes are the ones whose SHA-256 the stream checks against etcd's
//! trailer and records as `db_sha256`; the walk runs beside the stream ([`StreamedDb`]),
//! and its answer is used only once that check has passed. Otherwise a
//! remote (S3) destination's read-back spools the database it decodes (below), so that
//! the walk does not make a second pass of ranged GETs: one read of the object per run.
//!
//! The read-back decodes the object's frames in order and appends them here; the walk
//! reads the database through [`Spool`]'s [`ReadAt`], each read waiting until the bytes
//! it asks for are written (the walk runs beside the read-back and never waits on more
//! than the read-back will write). The file is created already unlinked
//! ([`tempfile::tempfile_in`]): it is gone when the spool is dropped, on every path,
//! even when the process is killed.
//!
//! It is only made when its directory has room for the whole database and a margin;
//! without room (or when a write fails on the way: a full disk) the walk falls back to
//! ranged reads of the stored object, as without a spool.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::catalog::{self, Manifest};
use crate::io::ReadAt;
use crate::pipeline::encrypt::Keyring;
use crate::pipeline::frames::{cpu_count, FrameError};
use crate::pipeline::FramedReader;
use crate::store::Store;
use crate::{Error, Result};

/// Why the spool stopped before it held the whole database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stopped {
    /// A write to the temporary file failed (no room after all): the walk should fall
    /// back to ranged reads of the stored object.
    NoRoom,
    /// The read-back stopped (the object did not read or decode): there is nothing
    /// trustworthy to walk, and the read-back reports why.
    ReadBack,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes of the database written so far, from offset 0.
    written: u64,
    /// Set once: the whole database is written (`Ok`), or why it never will be.
    end: Option<Result<(), Stopped>>,
}

/// A temporary file the read-back fills with the database, in order.
pub(super) struct Spool {
    file: File,
    len: u64,
    state: Mutex<State>,
    filled: Condvar,
}

/// Frame decoders of the spooling read-back, at most (each holds up to 4 frames).
const DECODERS: usize = 4;

/// Bytes kept free beside the spool, at least: the file must not be what fills a disk.
const MARGIN: u64 = 64 << 20;

impl Spool {
    /// A spool for a database of `len` bytes in `dir`, or `None` (with the reason logged)
    /// when `dir` has no room for it or the file cannot be made.
    pub(super) fn create(dir: &Path, len: u64) -> Option<Spool> {
        Spool::create_for("the read-back", dir, len)
    }

    /// [`Spool::create`], `who` filling it (named in the debug log).
    fn create_for(who: &str, dir: &Path, len: u64) -> Option<Spool> {
        let need = len.saturating_add((len / 8).max(MARGIN));
        match free_bytes(dir) {
            Ok(free) if free >= need => {}
            Ok(free) => {
                tracing::debug!(
                    "{}: {free} bytes free, a spool of the database needs {need}: ranged reads instead",
                    dir.display()
                );
                return None;
            }
            Err(e) => {
                tracing::debug!("{}: no spool ({e}): ranged reads instead", dir.display());
                return None;
            }
        }
        match tempfile::tempfile_in(dir) {
            Ok(file) => {
                tracing::debug!(
                    "{who} spools the database ({len} bytes) in {} for the hashkv walk",
                    dir.display()
                );
                Some(Spool {
                    file,
                    len,
                    state: Mutex::new(State::default()),
                    filled: Condvar::new(),
                })
            }
            Err(e) => {
                tracing::debug!("{}: no spool ({e}): ranged reads instead", dir.display());
                None
            }
        }
    }

    /// A spool the stream fills with a database of `len` bytes (as announced by the
    /// member), or `None`: the length is unknown, or the database would take more than a
    /// quarter of the memory available (a spool that large would be written out to disk,
    /// beside the backup's own writes), or the temporary directory has no room.
    pub(super) fn for_stream(len: u64) -> Option<Spool> {
        if len == 0 {
            return None;
        }
        let avail = crate::host::mem_available()?;
        if len > avail / 4 {
            tracing::debug!(
                "a {len}-byte database is over a quarter of the {avail} bytes of memory available: the hashkv walk reads the stored object"
            );
            return None;
        }
        Spool::create_for("the stream", &std::env::temp_dir(), len)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn end(&self, how: Result<(), Stopped>) {
        let mut s = self.state();
        if s.end.is_none() {
            s.end = Some(how);
        }
        drop(s);
        self.filled.notify_all();
    }

    /// Append the next bytes of the database. A failed write stops the spool
    /// ([`Stopped::NoRoom`]); later appends are ignored.
    pub(super) fn append(&self, bytes: &[u8]) {
        self.append_all(std::iter::once(bytes))
    }

    /// [`Spool::append`] of several pieces in order, waking the walk once.
    pub(super) fn append_all<'a>(&self, pieces: impl IntoIterator<Item = &'a [u8]>) {
        let start = {
            let s = self.state();
            if s.end.is_some() {
                return;
            }
            s.written
        };
        let mut at = start;
        for bytes in pieces {
            if at.saturating_add(bytes.len() as u64) > self.len {
                return self.end(Err(Stopped::ReadBack));
            }
            if let Err(e) = self.file.write_all_at(bytes, at) {
                tracing::debug!("database spool: write at {at}: {e}: ranged reads instead");
                return self.end(Err(Stopped::NoRoom));
            }
            at += bytes.len() as u64;
        }
        if at != start {
            self.state().written = at;
            self.filled.notify_all();
        }
    }

    /// The read-back is over: `ok` if it read the whole object without a problem. The
    /// spool is complete only then and only if it holds the whole database.
    pub(super) fn finish(&self, ok: bool) {
        let whole = self.state().written == self.len;
        self.end(if ok && whole {
            Ok(())
        } else {
            Err(Stopped::ReadBack)
        });
    }

    /// Ends the spool as stopped when dropped unless it was finished (an early return, a
    /// panic in the read-back): a walk waiting for bytes never waits forever.
    pub(super) fn finish_on_drop(&self) -> EndsOnDrop<&Spool> {
        EndsOnDrop(self)
    }

    /// How the spool ended, once it has (waits for it).
    pub(super) fn outcome(&self) -> Result<(), Stopped> {
        let mut s = self.state();
        loop {
            if let Some(end) = s.end {
                return end;
            }
            s = self.filled.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl ReadAt for Spool {
    fn size(&self) -> u64 {
        self.len
    }

    /// Waits until the bytes asked for are written, or fails when the spool stopped
    /// before them.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        let Some(end) = end.filter(|e| *e <= self.len) else {
            return Err(crate::io::eof(offset, buf.len(), self.len));
        };
        let mut s = self.state();
        while s.written < end {
            if let Some(Err(why)) = s.end {
                return Err(io::Error::other(format!(
                    "the database spool stopped at {} bytes ({why:?})",
                    s.written
                )));
            }
            s = self.filled.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        drop(s);
        self.file.read_exact_at(buf, offset)
    }
}

/// The read-back of a remote destination with a spool: one sequential read of the stored
/// object (decrypted when it is encrypted) checked against the stored size and SHA-256
/// written, as the `digest` read-back does, whose frames are also decoded (each against
/// its zstd checksum, as the `full` read-back does) into `spool` for the hashkv walk.
/// A store that fails is a store error, bytes that do not decode an integrity error.
pub(super) fn read_back<R: ReadAt>(
    store: &dyn Store,
    reader: &FramedReader<R>,
    m: &Manifest,
    keys: Option<&Keyring>,
    where_: &str,
    spool: &Spool,
) -> Result<()> {
    let _stop = spool.finish_on_drop();
    let failed = |e: &io::Error| {
        if e.kind() == io::ErrorKind::InvalidData {
            return Error::integrity(where_, crate::error::io_words(e));
        }
        Error::store(
            store.location(),
            crate::store::kind_of_io(e),
            format!("read back {}: {}", m.object, crate::error::io_words(e)),
        )
    };
    let (mut object, digest) = catalog::load_backup_object(store, m, keys)?;
    let mut problems = Vec::new();
    // A few decoders outrun any download; more would only hold more frames in memory.
    let threads = cpu_count().min(DECODERS);
    let walked = reader.walk_stream(threads, &mut object, |_, _, raw| {
        match raw {
            Ok(raw) => spool.append(&raw),
            Err(e) => problems.push(e.to_string()),
        }
        Ok(())
    });
    match walked {
        Ok(_) => {}
        Err(FrameError::Io { source, .. }) => return Err(failed(&source)),
        Err(e) => return Err(Error::integrity(where_, e.to_string())),
    }
    // Whatever follows the seek table is damage too, and the stored digest covers it.
    match std::io::copy(&mut object, &mut std::io::sink()) {
        Ok(0) => {}
        Ok(n) => problems.push(format!("{n} unexpected bytes after the seek table")),
        Err(e) => return Err(failed(&e)),
    }
    if !problems.is_empty() {
        return Err(Error::integrity(where_, problems.join("; ")));
    }
    let (got, size) = digest.finish();
    super::finish::check_digest(m, got, size, where_)?;
    spool.finish(true);
    Ok(())
}

/// The database as the stream spooled it, and the hashkv walk started over it while it
/// was being filled ([`StreamedDb::start`]): the walk reads each page as soon as the
/// stream has passed it, so on a database whose key pages lie in file order (one filled
/// by appends) it ends with the stream rather than after it. Its answer is used only for
/// a stream that completed and whose trailer checked, and only at the revision the
/// stored database's own pages give.
pub(super) struct StreamedDb {
    pub(super) spool: std::sync::Arc<Spool>,
    early: Mutex<Option<EarlyWalk>>,
}

/// The early walk's thread: the revision it found the database at, and the hashkv there.
type EarlyWalk = std::thread::JoinHandle<Option<(i64, u32)>>;

impl StreamedDb {
    /// Start the walk over `spool` (on a thread of its own; `None` if no thread could be
    /// made: the walk then runs after the stream, as without it).
    pub(super) fn start(spool: Spool) -> StreamedDb {
        let spool = std::sync::Arc::new(spool);
        let sp = std::sync::Arc::clone(&spool);
        let early = std::thread::Builder::new()
            .name("hashkv-walk".into())
            .spawn(move || {
                crate::host::background();
                let db = crate::format::bolt::Db::open(&*sp).ok()?;
                let rev = crate::format::etcd::last_revision(&db).ok()?;
                Some((rev, super::finish::stored_hashkv(&*sp, rev)?))
            })
            .ok();
        StreamedDb {
            spool,
            early: Mutex::new(early),
        }
    }

    /// The writer's guard: see [`EndsOnDrop`].
    pub(super) fn ends_on_drop(&self) -> EndsOnDrop<std::sync::Arc<Spool>> {
        EndsOnDrop(std::sync::Arc::clone(&self.spool))
    }

    /// The hashkv at `revision`: the early walk's if it reached that revision, else a walk
    /// of the spool now (and of `stored` if the spool ran out of room).
    pub(super) fn hashkv<R: ReadAt>(&self, stored: &R, revision: i64) -> Option<u32> {
        let early = self.early.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(Ok(Some((rev, h)))) = early.map(|t| t.join()) {
            if rev == revision {
                return Some(h);
            }
        }
        hashkv(&self.spool, stored, revision)
    }
}

/// Ends the spool it holds as stopped when dropped, unless it was finished: a walk waiting
/// for bytes never waits forever, whichever way its writer ends (an early return, a
/// panic). Borrowed by the read-back ([`Spool::finish_on_drop`]), shared by the stream
/// ([`StreamedDb::ends_on_drop`]), whose walk runs on a thread of its own.
pub(super) struct EndsOnDrop<S: std::ops::Deref<Target = Spool>>(S);

impl<S: std::ops::Deref<Target = Spool>> Drop for EndsOnDrop<S> {
    fn drop(&mut self) {
        self.0.end(Err(Stopped::ReadBack));
    }
}

/// The run's hashkv walked over the spool; when the spool ran out of room on the way,
/// over `stored` instead (ranged reads of the stored object).
pub(super) fn hashkv<R: ReadAt>(spool: &Spool, stored: &R, revision: i64) -> Option<u32> {
    if let Some(h) = super::finish::stored_hashkv(spool, revision) {
        return Some(h);
    }
    match spool.outcome() {
        Err(Stopped::NoRoom) => super::finish::stored_hashkv(stored, revision),
        _ => None,
    }
}

/// Bytes available to an unprivileged writer in the file system holding `dir`.
fn free_bytes(dir: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wait_for_the_writer_and_the_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(3u32 << 16)).map(|i| (i % 251) as u8).collect();
        let spool = Spool::create(dir.path(), data.len() as u64).expect("room for a spool");
        // Created unlinked: nothing to see in the directory, ever.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        std::thread::scope(|s| {
            let reader = s.spawn(|| spool.read_vec_at(data.len() as u64 - 10, 10).unwrap());
            for chunk in data.chunks(4096) {
                spool.append(chunk);
            }
            spool.finish(true);
            assert_eq!(reader.join().unwrap(), &data[data.len() - 10..]);
        });
        assert_eq!(spool.outcome(), Ok(()));
        assert_eq!(spool.read_vec_at(0, data.len()).unwrap(), data);
        assert!(spool.read_vec_at(data.len() as u64 - 1, 2).is_err());
        drop(spool);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_stopped_read_back_wakes_the_walk_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::create(dir.path(), 1 << 20).expect("room for a spool");
        std::thread::scope(|s| {
            let reader = s.spawn(|| spool.read_vec_at(4096, 4096));
            {
                let _guard = spool.finish_on_drop();
                spool.append(&[1u8; 4096]);
                // The read-back returns early: the guard stops the spool.
            }
            assert!(reader.join().unwrap().is_err());
        });
        assert_eq!(spool.outcome(), Err(Stopped::ReadBack));
        // What was written before the stop still reads.
        assert_eq!(spool.read_vec_at(0, 4096).unwrap(), vec![1u8; 4096]);
        // A read-back that ends without the whole database is not complete either.
        let short = Spool::create(dir.path(), 8192).unwrap();
        short.append(&[0u8; 4096]);
        short.finish(true);
        assert_eq!(short.outcome(), Err(Stopped::ReadBack));
    }

    /// A stored object of `data` in a local store, and its manifest (as far as the
    /// read-back looks), with one byte of the stored object's frame 1 changed if `damage`.
    fn stored(
        dir: &Path,
        data: &[u8],
        damage: bool,
    ) -> (crate::store::local::LocalStore, Manifest) {
        use std::io::Write;
        let opts = crate::pipeline::FrameOptions {
            frame_size: 64 << 10,
            threads: 1,
            ..Default::default()
        };
        let mut w = crate::pipeline::FrameWriter::new(Vec::new(), opts).unwrap();
        w.write_all(data).unwrap();
        let (mut obj, _) = w.finish().unwrap();
        let r = FramedReader::open(obj.clone()).unwrap();
        let f = r.frames()[1];
        if damage {
            obj[(f.stored_offset + f.stored_len as u64 / 2) as usize] ^= 0x55;
        }
        let id = catalog::BackupId::new(time::OffsetDateTime::now_utc(), 1);
        let store = crate::store::local::LocalStore::open(dir, true).unwrap();
        store.put_bytes(&catalog::data_name(&id), &obj).unwrap();
        use sha2::Digest;
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "format": catalog::FORMAT_NAME, "format_version": catalog::FORMAT_VERSION,
            "id": id.to_string(), "created_at": "", "completed_at": "",
            "cluster_id": "1", "revision": 1, "raft_term": 1, "raft_index": 1,
            "source_member": {"id": "1", "name": "m"}, "members": [],
            "etcd_version": "3.5.1", "db_size": data.len(), "page_size": 4096,
            "stored_size": obj.len(), "db_sha256": "",
            "stored_sha256": hex::encode(sha2::Sha256::digest(&obj)),
            "compression": "zstd", "encryption": "none",
            "object": catalog::data_name(&id), "lifeboat_version": "0",
        }))
        .unwrap();
        (store, m)
    }

    #[test]
    fn the_read_back_fills_the_spool_and_a_failed_one_leaves_nothing() {
        let objects = tempfile::tempdir().unwrap();
        let spools = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(300u32 << 10)).map(|i| (i % 241) as u8).collect();
        for damage in [false, true] {
            let (store, m) = stored(objects.path(), &data, damage);
            let reader = catalog::open_backup_db_with(&store, &m, None).unwrap();
            let spool = Spool::create(spools.path(), data.len() as u64).unwrap();
            let got = read_back(&store, &reader, &m, None, "here", &spool);
            if damage {
                let e = got.unwrap_err();
                assert!(matches!(e, Error::Integrity { .. }), "{e}");
                assert!(e.to_string().contains("frame 1"), "{e}");
                assert_eq!(spool.outcome(), Err(Stopped::ReadBack));
                assert!(spool.read_vec_at(0, data.len()).is_err());
            } else {
                got.unwrap();
                assert_eq!(spool.outcome(), Ok(()));
                assert_eq!(spool.read_vec_at(0, data.len()).unwrap(), data);
            }
            drop(spool);
            assert_eq!(std::fs::read_dir(spools.path()).unwrap().count(), 0);
        }
    }

    /// The walk that starts with the stream gives the hashkv of the whole database, at
    /// the revision asked for only; a stream that stops leaves no walk waiting.
    #[test]
    fn the_early_walk_gives_the_hashkv_and_never_waits_forever() {
        let dir = tempfile::tempdir().unwrap();
        let img = crate::format::bolt::build::etcd_like(4096, 300, 40);
        let db = crate::format::bolt::Db::open(&img[..]).unwrap();
        let rev = crate::format::etcd::last_revision(&db).unwrap();
        let want = crate::jobs::backup::finish::stored_hashkv(&img, rev).unwrap();
        let streamed = StreamedDb::start(Spool::create(dir.path(), img.len() as u64).unwrap());
        for chunk in img.chunks(3000) {
            streamed.spool.append(chunk);
        }
        streamed.spool.finish(true);
        assert_eq!(streamed.hashkv(&img, rev), Some(want));
        // Asked at another revision, it walks again (and is refused here: a later one).
        assert_eq!(streamed.hashkv(&img, rev + 1), None);

        // The stream breaks half-way: the walk gives up instead of waiting.
        let broken = StreamedDb::start(Spool::create(dir.path(), img.len() as u64).unwrap());
        {
            let _ends = broken.ends_on_drop();
            broken.spool.append(&img[..img.len() / 2]);
        }
        let early = broken.early.lock().unwrap().take().unwrap();
        assert_eq!(early.join().unwrap(), None);
    }

    #[test]
    fn no_room_means_no_spool() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Spool::create(dir.path(), u64::MAX / 2).is_none());
        assert!(Spool::create(&dir.path().join("missing"), 1).is_none());
    }
}
