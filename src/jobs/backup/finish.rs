//! After the stream: commit each destination's object, read it back, fill in the facts
//! from the stored database itself and write the manifest, which is the moment the backup
//! exists. Each destination succeeds or fails here on its own.

use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;

use super::spool::{Spool, StreamedDb};
use super::stream::Streamed;
use super::{nothing_stored, now, rfc3339, BackupOptions, BackupOutcome, ReadBack, Target};
use crate::catalog::manifest::{AlarmRecord, EndpointRecord};
use crate::catalog::readback::read_facts;
use crate::catalog::{self, Manifest, ManifestMember, SourceMember, FORMAT_NAME, FORMAT_VERSION};
use crate::format::etcd::{ClusterId, MemberId};
use crate::pipeline::encrypt::{Encryption, ReadBackKey, StoredDigest};
use crate::pipeline::SinkResult;
use crate::source::etcd::{Choice, ClusterView};
use crate::store::Store;
use crate::{Error, Result};

/// What every destination's manifest shares.
pub(super) struct Run {
    pub(super) opts: BackupOptions,
    pub(super) id: crate::catalog::BackupId,
    pub(super) view: ClusterView,
    pub(super) choice: Choice,
    pub(super) attempts: u32,
    pub(super) warns: Vec<String>,
    pub(super) t0: Instant,
    /// The key of this run alone that every encrypted object is also sealed to.
    pub(super) read_back: Arc<ReadBackKey>,
    /// The storage version the source member sent with the snapshot (etcd 3.6+).
    pub(super) storage_version: Option<String>,
}

/// Commit, read back and describe each target's object (blocking). Targets that dropped
/// out before streaming are failures already.
pub(super) fn finish_all(run: &Run, mut targets: Vec<Target>, streamed: Streamed) -> BackupOutcome {
    let Streamed {
        tee,
        result,
        started,
        spool: streamed_db,
        ..
    } = streamed;
    let mut outcome = nothing_stored(&mut targets);
    let targets = targets;
    // Each destination commits, reads back and writes its manifest on its own thread: a
    // hung server fails at its deadline while the others finish.
    let outs: Vec<_> = tee
        .into_outputs()
        .into_iter()
        .map(|o| std::sync::Mutex::new(Some(o)))
        .collect();
    // The manifest's hashkv is a walk of the whole database: one destination computes it
    // for all (they hold the same frames, and each frame's zstd checksum ties what decodes
    // to the bytes streamed), preferably a local one (S3 would be ranged GETs, or a spool:
    // see [`super::spool`]).
    let designated = outs
        .iter()
        .enumerate()
        .filter_map(|(k, o)| {
            let o = o.lock().unwrap_or_else(|p| p.into_inner());
            let o = o.as_ref().filter(|o| o.writer.is_some())?;
            let remote = targets.get(o.index)?.store.location().starts_with("s3://");
            Some((remote, k))
        })
        .min()
        .map(|(remote, k)| (k, remote));
    let shared = SharedHashkv::default();
    let done = super::prepare::each((0..outs.len()).collect(), |k| {
        let computes = designated.is_some_and(|(d, _)| d == k);
        // Whatever becomes of the designated destination, the others stop waiting for it.
        let _publish = computes.then(|| shared.publish_on_drop());
        let streamed_db = streamed_db.as_ref().filter(|_| computes);
        let hashkv = HashkvRole {
            shared: &shared,
            computes,
            spools: computes
                && streamed_db.is_none()
                && designated.is_some_and(|(_, remote)| remote),
            streamed_db,
        };
        let o = outs[k].lock().unwrap_or_else(|p| p.into_inner()).take()?;
        let target = targets.get(o.index)?;
        let (name, store) = (&target.name, &target.store);
        let Some(w) = o.writer else {
            return Some(Err((
                name.clone(),
                Error::store(
                    store.location(),
                    crate::error::StoreErrorKind::Other,
                    o.error.unwrap_or_default(),
                ),
            )));
        };
        // A failed commit left nothing visible (the store contract): nothing to remove.
        if let Err(e) = w.commit() {
            return Some(Err((name.clone(), e)));
        }
        let enc = target.encryption.as_deref();
        let digest = target.digest.as_ref();
        Some(
            match finish_destination(
                run,
                store.as_ref(),
                &result,
                started,
                enc.zip(digest),
                hashkv,
            ) {
                Ok(m) => Ok((name.clone(), m)),
                Err(e) => {
                    let _ = store.remove(&catalog::data_name(&run.id));
                    Err((name.clone(), e))
                }
            },
        )
    });
    for (_, r) in done {
        match r {
            Some(Ok(stored)) => outcome.stored.push(stored),
            Some(Err(failed)) => outcome.failed.push(failed),
            None => {}
        }
    }
    outcome
}

/// The run's hashkv, computed once by one destination's thread and waited for by the
/// others. Unset until that thread has a value or has given up (then `None`: each other
/// destination computes its own).
#[derive(Default)]
pub(super) struct SharedHashkv {
    cell: std::sync::OnceLock<Option<u32>>,
}

impl SharedHashkv {
    /// Publishes `None` when dropped if nothing was published (an early error, a panic),
    /// so no waiting thread waits forever.
    fn publish_on_drop(&self) -> impl Drop + '_ {
        struct Guard<'a>(&'a SharedHashkv);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                let _ = self.0.cell.set(None);
            }
        }
        Guard(self)
    }
}

/// What a destination's thread does about the hashkv: the designated one computes it
/// beside its read-back and publishes it; the others take the published value after their
/// own read-back, and compute their own only if none was published. (A destination's
/// thread only gets here when some destination has a stream, so one is designated.)
#[derive(Clone, Copy)]
pub(super) struct HashkvRole<'a> {
    shared: &'a SharedHashkv,
    computes: bool,
    /// The designated destination is remote and the stream kept no copy: its read-back
    /// spools the database for the walk, so the object is read once ([`super::spool`]).
    spools: bool,
    /// The database as streamed (the designated destination's walk reads it).
    streamed_db: Option<&'a StreamedDb>,
}

impl HashkvRole<'_> {
    /// Run `read_back`, and give the hashkv `walk` computes, as the role says.
    fn run(
        self,
        read_back: impl FnOnce() -> Result<()>,
        walk: impl FnOnce() -> Option<u32> + Send,
    ) -> (Result<()>, Option<u32>) {
        if self.computes {
            let (checked, h) = std::thread::scope(|sc| {
                let walking = sc.spawn(walk);
                let checked = read_back();
                (checked, walking.join().ok().flatten())
            });
            let _ = self.shared.cell.set(h);
            return (checked, h);
        }
        let checked = read_back();
        let h = match checked {
            Ok(()) => self.shared.cell.wait().or_else(walk),
            Err(_) => None,
        };
        (checked, h)
    }
}

/// The read-back `run.opts.read_back` asks for: the stored object's digest and size, or
/// a full decode of it.
fn read_back<R: crate::io::ReadAt>(
    run: &Run,
    store: &dyn Store,
    reader: &crate::pipeline::FramedReader<R>,
    m: &Manifest,
    keys: Option<&crate::pipeline::encrypt::Keyring>,
    where_: &str,
) -> Result<()> {
    match run.opts.read_back {
        ReadBack::Facts => {}
        ReadBack::Digest => {
            let (got, size) = crate::catalog::readback::digest_object(store, &m.object)?;
            check_digest(m, got, size, where_)?;
        }
        ReadBack::Full => {
            let problems = crate::catalog::readback::check_stream(
                store,
                reader,
                m,
                keys,
                &|_| {},
                false,
                &mut |_| {},
            );
            if !problems.is_empty() {
                return Err(Error::integrity(where_, problems.join("; ")));
            }
        }
    }
    Ok(())
}

/// The stored object read back as `size` bytes with SHA-256 `got`: what was written?
pub(super) fn check_digest(m: &Manifest, got: [u8; 32], size: u64, where_: &str) -> Result<()> {
    if size != m.stored_size {
        return Err(Error::integrity(
            where_,
            format!("reads back as {size} bytes, {} were written", m.stored_size),
        ));
    }
    if hex::encode(got) != m.stored_sha256 {
        return Err(Error::integrity(
            where_,
            format!(
                "reads back with SHA-256 {}, {} was written",
                hex::encode(got),
                m.stored_sha256
            ),
        ));
    }
    Ok(())
}

/// The hashkv of the stored snapshot at its revision (None if it cannot be computed: the
/// database was already checked above, so this only records a fact for `restore test`).
pub(super) fn stored_hashkv<R: crate::io::ReadAt>(reader: &R, revision: i64) -> Option<u32> {
    let db = crate::format::bolt::Db::open(reader).ok()?;
    match crate::format::etcd::hashkv::hashkv(&db, revision, None) {
        Ok(Ok((h, _))) => Some(h),
        _ => None,
    }
}

/// The manifest before the facts read back from the stored database are filled in.
fn draft_manifest(run: &Run, result: &SinkResult, started: OffsetDateTime) -> Manifest {
    let (opts, view, choice) = (&run.opts, &run.view, &run.choice);
    let source_status = view.status_of(choice.member_id);
    Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        id: run.id.clone(),
        created_at: rfc3339(started),
        completed_at: String::new(),
        cluster_id: ClusterId(view.cluster_id.unwrap_or(0)),
        revision: 0,
        compact_revision: None,
        raft_term: 0,
        raft_index: 0,
        source_member: SourceMember {
            id: MemberId(choice.member_id),
            name: choice.name.clone(),
            endpoint: choice.endpoint.clone(),
            reason: choice.reason.clone(),
            attempts: run.attempts,
        },
        members: view
            .members
            .iter()
            .map(|mm| ManifestMember {
                id: MemberId(mm.id),
                name: mm.name.clone(),
                peer_urls: mm.peer_urls.clone(),
                client_urls: mm.client_urls.clone(),
                is_learner: mm.is_learner,
            })
            .collect(),
        etcd_version: source_status.map(|s| s.version.clone()).unwrap_or_default(),
        db_size: result.split.db_len,
        page_size: 0,
        stored_size: result.stored.stored_len,
        db_sha256: hex::encode(result.split.db_sha256),
        stored_sha256: hex::encode(result.stored.stored_sha256),
        compression: "zstd".into(),
        compression_level: opts.frames.level,
        compression_levels: if opts.frames.adaptive {
            result
                .stored
                .levels
                .iter()
                .map(|(l, n)| (l.to_string(), *n))
                .collect()
        } else {
            Default::default()
        },
        frame_size: opts.frames.frame_size as u64,
        encryption: "none".into(),
        recipients: Vec::new(),
        object: catalog::data_name(&run.id),
        alarms: view
            .alarms
            .iter()
            .map(|a| AlarmRecord {
                member_id: MemberId(a.member_id),
                alarm: a.alarm.clone(),
            })
            .collect(),
        cluster_status: view
            .endpoints
            .iter()
            .map(|s| EndpointRecord {
                endpoint: s.endpoint.clone(),
                reachable: s.reachable,
                error: s.error.clone(),
                member_id: s.reachable.then_some(MemberId(s.member_id)),
                is_leader: s.reachable && s.member_id == s.leader,
                raft_term: s.raft_term,
                raft_index: s.raft_index,
                raft_applied_index: s.raft_applied_index,
                db_size: s.db_size,
                db_size_in_use: s.db_size_in_use,
                version: s.version.clone(),
            })
            .collect(),
        warnings: run.warns.clone(),
        lifeboat_version: env!("CARGO_PKG_VERSION").into(),
        duration_seconds: 0.0,
        hashkv: None,
        storage_version: run.storage_version.clone(),
        retain_until: None,
        manifest_sha256: String::new(),
    }
}

/// Fill in the facts read from the stored database itself (a few pages).
fn fill_facts<R: crate::io::ReadAt>(
    run: &Run,
    m: &mut Manifest,
    reader: &R,
    result: &SinkResult,
    where_: &str,
) -> Result<()> {
    let facts = read_facts(reader).map_err(|e| {
        Error::integrity(where_, format!("the streamed database does not open: {e}"))
    })?;
    if facts.db_size != result.split.db_len {
        return Err(Error::integrity(
            where_,
            format!(
                "database meta says {} bytes (high-water mark × page size), {} were streamed",
                facts.db_size, result.split.db_len
            ),
        ));
    }
    tracing::debug!("committed and read back after {:?}", run.t0.elapsed());
    m.revision = facts.revision;
    m.compact_revision = facts.compact_revision;
    m.raft_term = facts.term;
    m.raft_index = facts.consistent_index;
    m.page_size = facts.page_size;
    Ok(())
}

/// Read back what was stored, fill in the facts from the database itself, and write the
/// manifest: from that moment the backup exists.
fn finish_destination(
    run: &Run,
    store: &dyn Store,
    result: &SinkResult,
    started: OffsetDateTime,
    encrypted: Option<(&Encryption, &StoredDigest)>,
    hashkv: HashkvRole<'_>,
) -> Result<Manifest> {
    let mut m = draft_manifest(run, result, started);
    let where_ = format!("{}/{}", store.location(), m.object);
    let keys = match encrypted {
        Some((enc, digest)) => {
            let (size, sha) = digest.get().ok_or_else(|| {
                Error::Internal(format!("{where_}: the encrypted object was not finished"))
            })?;
            m.encryption = crate::pipeline::encrypt::SCHEME.into();
            m.recipients = enc.recipients();
            m.stored_size = size;
            m.stored_sha256 = hex::encode(sha);
            Some(run.read_back.keyring())
        }
        None => None,
    };
    let reader = catalog::open_backup_db_with(store, &m, keys.as_ref())?;
    // The read-back and the hashkv walk both read the whole stored object: side by side.
    // A remote one is read once: the read-back spools the database the walk reads.
    let spool = (hashkv.spools && run.opts.read_back != ReadBack::Facts)
        .then(|| Spool::create(&std::env::temp_dir(), result.split.db_len))
        .flatten();
    let h = std::thread::scope(|sc| -> Result<Option<u32>> {
        // A spooling read-back needs none of the facts: it starts at once, beside them.
        let early = spool.as_ref().map(|s| {
            let (m, reader, keys, where_) = (m.clone(), &reader, keys.as_ref(), &where_);
            sc.spawn(move || super::spool::read_back(store, reader, &m, keys, where_, s))
        });
        fill_facts(run, &mut m, &reader, result, &where_)?;
        let (checked, h) = hashkv.run(
            || match early {
                Some(t) => t.join().unwrap_or_else(|_| {
                    Err(Error::Internal(format!("{where_}: the read-back panicked")))
                }),
                None => read_back(run, store, &reader, &m, keys.as_ref(), &where_),
            },
            || match (hashkv.streamed_db, &spool) {
                (Some(db), _) => db.hashkv(&reader, m.revision),
                (None, Some(s)) => super::spool::hashkv(s, &reader, m.revision),
                (None, None) => stored_hashkv(&reader, m.revision),
            },
        );
        checked?;
        Ok(h)
    });
    drop(spool);
    let hashkv = h?;
    tracing::debug!("stored object checked after {:?}", run.t0.elapsed());
    m.hashkv = hashkv;
    m.retain_until = store.retained_until(&m.object)?.map(|t| rfc3339(t.into()));
    m.completed_at = rfc3339(now());
    m.duration_seconds = (run.t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let json = m.seal()?;
    store.put_bytes(&catalog::manifest_name(&run.id), &json)?;
    Ok(m)
}
