//! Point-in-time restore: captured records replayed onto a full backup's database, offline.
//!
//! The result is the database etcd itself would hold at revision R: every `Put` is written
//! to bucket `key` as etcd's `put` writes it (key `main '_' sub`, value the
//! `mvccpb.KeyValue` with its original create revision, mod revision, version and lease),
//! every `Delete` as etcd's `delete` writes a tombstone (the revision key with a trailing
//! `'t'`, value a `KeyValue` holding only the key: mvcc/kvstore_txn.go), leases in bucket
//! `lease` as the lessor persists them (`leasepb.Lease{ID, TTL}` under the id's 8 big-endian
//! bytes) with grants added and revokes removed as of R, and a compaction as
//! `meta/scheduledCompactRev`: etcd 3.4 to 3.7 resume a scheduled compaction that is ahead of
//! `finishedCompactRev` when they load the db (mvcc/kvstore.go `restore` →
//! `compactLockfree`), so the restored member finishes it itself.
//!
//! Replayed revisions all follow the backup's last revision, so bucket `key` only gains
//! entries after its last key: the copy-on-write writer appends them along the rightmost
//! path, and the cost is the replayed events plus one page per tree level, whatever the
//! size of the database.
//!
//! A [`Replayer`] takes the records one at a time and hands out the edits so far whenever
//! asked, so a long window is written as several transactions of bounded size
//! ([`Replaying`], onto an [`Image`]): memory holds one chunk of records, not the window.

use std::collections::BTreeMap;

use crate::error::InFile;
use crate::format::bolt::write::Edit;
use crate::format::bolt::Db;
use crate::format::capture::Record;
use crate::format::etcd::hashkv::fingerprint;
use crate::format::etcd::{buckets, last_revision, meta_fields, Revision};
use crate::io::ReadAt;
use crate::{Error, Result};

mod compact;
mod encode;
mod image;
mod proof;
mod replaying;

pub use compact::{Concluded, Held, Released, Survey, WindowProof};
use encode::{bad, check_put, encode_tombstone_into, rev_key, RECORDS};
pub use encode::{encode_kv, encode_kv_into, encode_lease};
pub use image::{prepass_of, FileImage, Image, PrePassing};
use proof::mismatch;
pub use proof::{read_twice_differ, Proof};
pub use replaying::{
    commit_kept, replay, replay_compacted, replay_held, replay_held_as, Replayed, Replaying,
    Settled, CHUNK_BYTES,
};

/// The edits that bring a database from its own revision to `to_revision`.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The backup's revision (its last key's main revision).
    pub base_revision: i64,
    pub to_revision: i64,
    /// Edits of buckets `key`, `lease` (when leases changed) and `meta` (a compaction).
    pub edits: Vec<Edit>,
    pub stats: ReplayStats,
    /// The live hashes recorded after the backup up to `to_revision` that the replayed
    /// database can prove (none when the window was compacted: see [`compact`]).
    pub live_hashes: Vec<LiveHash>,
    /// A compacted window's newest live hash, proven on the records as they were replayed
    /// (or, where no key was live, neither proven nor refused).
    pub on_records: Option<Concluded>,
}

/// What a replay wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplayStats {
    pub revisions: u64,
    pub puts: u64,
    pub deletes: u64,
    pub lease_grants: u64,
    pub lease_revokes: u64,
    /// The compaction the restored members finish at start, when the replay added one.
    pub compact_revision: Option<i64>,
    /// Puts and deletes a compacted replay did not write: superseded at or below the
    /// compaction point.
    #[serde(skip_serializing_if = "is_zero")]
    pub compacted_away: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A live `HashKV` capture recorded: what the replayed data must hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LiveHash {
    pub revision: i64,
    pub hash: u32,
    pub compact_revision: i64,
}

/// Records one at a time: the edits they make, handed out in chunks.
///
/// Every revision after the database's own up to `to` must have its changes in the
/// records (revisions are dense in etcd: each one is a transaction with at least one
/// change); records after `to` are ignored. Errors name the revision: a gap or records out
/// of order is an integrity error (exit 3), `to` before the backup or after the last
/// recorded change a usage error (exit 2).
#[derive(Debug)]
pub struct Replayer {
    base: i64,
    to: i64,
    /// The compaction the database already has (finished or scheduled).
    base_compact: Option<i64>,
    /// The revision of the last change fed, and the next sub revision inside it.
    last: i64,
    sub: i64,
    prev: i64,
    stats: ReplayStats,
    live_hashes: Vec<LiveHash>,
    /// Bucket `lease` as of the last record fed; written when it changed.
    leases: BTreeMap<i64, Vec<u8>>,
    /// A replay started before its database was at hand ([`Replayer::before_base`]): the
    /// leases granted (Some) and revoked (None) since, laid over the database's own once
    /// it is ([`Replayer::attach_base`]).
    lease_overlay: Option<BTreeMap<i64, Option<Vec<u8>>>>,
    leases_changed: bool,
    compact: Option<i64>,
    compact_written: Option<i64>,
    /// Bucket `key` entries not yet handed out, and their bytes.
    keys: Vec<(Vec<u8>, Vec<u8>)>,
    pending: usize,
    /// A compacted replay: which changes are written, and the newest live hash's proof;
    /// `shadow` surveys the records fed, which must end equal to `survey` (made from an
    /// earlier, unverified read of them).
    survey: Option<Survey>,
    shadow: Option<Survey>,
    window_proof: Option<WindowProof>,
    /// A compacted replay read once ([`Held`]): its changes, until the window is read.
    held: Option<Held>,
    /// The held changes outgrew their budget: the replay stopped.
    outgrown: bool,
    /// The window is compacted (read twice or held).
    compacted: bool,
    /// The proof of the newest live hash of a held window, made on its records.
    proven: Option<Concluded>,
}

impl Replayer {
    /// Start at the database's revision, replaying up to `to`.
    pub fn new<R: ReadAt>(db: &Db<R>, to: i64) -> Result<Self> {
        let base = last_revision(db).map_err(|e| e.in_file("snapshot"))?;
        let mut rp = Self::before_base(base, to)?;
        rp.read_base(db)?;
        Ok(rp)
    }

    /// A replay from revision `base` (the base backup's, from its manifest) up to `to`,
    /// started before the database is at hand: the records can be fed (a held replay's,
    /// [`Replayer::holding`]) while the backup is still being verified. Nothing is handed
    /// out until [`Replayer::attach_base`] has read the database.
    pub fn before_base(base: i64, to: i64) -> Result<Self> {
        if to < base {
            return Err(Error::Usage(format!(
                "revision {to} is before the backup's revision {base}: restore it from an older backup"
            )));
        }
        Ok(Replayer {
            base,
            to,
            base_compact: None,
            last: base,
            sub: 0,
            prev: i64::MIN,
            stats: ReplayStats::default(),
            live_hashes: Vec::new(),
            leases: BTreeMap::new(),
            lease_overlay: Some(BTreeMap::new()),
            leases_changed: false,
            compact: None,
            compact_written: None,
            keys: Vec::new(),
            pending: 0,
            survey: None,
            shadow: None,
            window_proof: None,
            held: None,
            outgrown: false,
            compacted: false,
            proven: None,
        })
    }

    /// The database a replay [`Replayer::before_base`] was fed for: false, and nothing
    /// read, when its revision is not the one the records were fed after (that replay
    /// cannot go on: start again with [`Replayer::new`]).
    pub fn attach_base<R: ReadAt>(&mut self, db: &Db<R>) -> Result<bool> {
        if self.lease_overlay.is_none() {
            return Ok(true);
        }
        if last_revision(db).map_err(|e| e.in_file("snapshot"))? != self.base {
            return Ok(false);
        }
        self.read_base(db)?;
        Ok(true)
    }

    /// What the replay needs of its database: its compaction and leases (the records'
    /// grants and revokes so far laid over the latter).
    fn read_base<R: ReadAt>(&mut self, db: &Db<R>) -> Result<()> {
        let meta = meta_fields(db).map_err(|e| e.in_file("snapshot"))?;
        self.base_compact = meta.finished_compact.max(meta.scheduled_compact);
        self.leases = read_leases(db)?;
        for (id, lease) in self.lease_overlay.take().unwrap_or_default() {
            self.set_lease(id, lease);
        }
        Ok(())
    }

    /// Lease `id` granted (its bucket value) or revoked (None): in bucket `lease` as
    /// replayed, or in the overlay while the database is not read yet.
    fn set_lease(&mut self, id: i64, lease: Option<Vec<u8>>) {
        match (&mut self.lease_overlay, lease) {
            (Some(o), lease) => {
                o.insert(id, lease);
            }
            (None, Some(l)) => {
                self.leases.insert(id, l);
            }
            (None, None) => {
                self.leases.remove(&id);
            }
        }
        self.leases_changed = true;
    }

    /// Compact the window as it is replayed ([`compact`]): write only what `survey` keeps,
    /// schedule the compaction at its point, and prove the newest live hash on the records
    /// (`proof`, prepared on the same database) instead of on the written data.
    pub fn compacting(&mut self, survey: Survey, proof: Option<WindowProof>) {
        let c = survey.compact_to();
        if c >= 1 {
            self.compact = self.compact.max(Some(c));
        }
        self.shadow = Some(Survey::new(self.to));
        self.survey = Some(survey);
        self.window_proof = proof;
        self.compacted = true;
    }

    /// Compact the window as it is replayed, reading it once: every change is held
    /// ([`Held`]) until [`Replayer::release_held`]; a change that outgrows `budget` bytes
    /// stops the replay ([`Replayer::outgrown`]).
    /// `prove`: survey the window for the newest live hash's proof.
    pub fn holding(&mut self, budget: usize, prove: bool) {
        let c = self.to - 1;
        if c >= 1 {
            self.compact = self.compact.max(Some(c));
        }
        self.held = Some(Held::new(self.to, budget, prove));
        self.compacted = true;
    }

    /// Whether a held replay stopped because its changes outgrew the budget: read the
    /// window twice instead ([`Replayer::compacting`]) onto the same, untouched, database.
    pub fn outgrown(&self) -> bool {
        self.outgrown
    }

    /// The end of a held window's read: every record fed, none written yet. The caller
    /// proves the newest live hash with what comes back, then hands the entries to
    /// [`Replayer::push_released`].
    pub fn release_held(&mut self) -> Result<Option<Released>> {
        self.complete()?;
        Ok(self.held.take().map(Held::release))
    }

    /// One entry of a released held window (in order), handed out like any other.
    pub fn push_released(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.pending += k.len() + v.len();
        self.keys.push((k, v));
    }

    /// What the proof of the live hash a held window's records made came to.
    pub fn proven_by_records(&mut self, c: Option<Concluded>) {
        self.proven = c;
    }

    /// The database's revision: the replayed records follow it.
    pub fn base_revision(&self) -> i64 {
        self.base
    }

    /// Bytes of bucket `key` entries fed and not yet handed out.
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// One record, in stream order.
    pub fn feed(&mut self, r: &Record) -> Result<()> {
        if self.outgrown {
            return Err(outgrown());
        }
        // Computed once for the survey, the shadow survey and the held changes.
        let fp = match self.shadow.is_some() || self.held.is_some() || self.survey.is_some() {
            true => compact::change_fingerprint(r),
            false => None,
        };
        if let Some(s) = &mut self.shadow {
            s.feed_fingerprinted(r, fp);
        }
        if let Some(h) = &mut self.held {
            h.record(r, fp);
        }
        let rev = r.revision();
        if self.prev > self.to {
            return Ok(());
        }
        if rev < self.prev {
            return Err(bad(
                rev,
                format!(
                    "recorded after revision {}: the records are out of order",
                    self.prev
                ),
            ));
        }
        self.prev = rev;
        if rev > self.to {
            return Ok(());
        }
        match r {
            Record::Put(_) | Record::Delete { .. } => self.change(r, rev, fp)?,
            Record::LeaseGrant { id, ttl, .. } => {
                if *id <= 0 {
                    return Err(bad(rev, format!("lease grant with id {id}")));
                }
                self.set_lease(*id, Some(encode_lease(*id, *ttl)));
                self.stats.lease_grants += 1;
            }
            Record::LeaseRevoke { id, .. } => {
                self.set_lease(*id, None);
                self.stats.lease_revokes += 1;
            }
            Record::Compact {
                compact_revision, ..
            } => {
                if *compact_revision > rev || *compact_revision < 1 {
                    return Err(bad(
                        rev,
                        format!("compaction at revision {compact_revision} seen at revision {rev}"),
                    ));
                }
                self.compact = self.compact.max(Some(*compact_revision));
            }
            Record::LiveHash {
                hash,
                compact_revision,
                ..
            } => {
                if let Some(h) = &mut self.held {
                    h.live_hash(rev);
                }
                if rev > self.base {
                    self.live_hashes.push(LiveHash {
                        revision: rev,
                        hash: *hash,
                        compact_revision: *compact_revision,
                    });
                }
            }
            Record::Clock { .. } => {}
        }
        Ok(())
    }

    /// A put or a delete at `rev`.
    fn change(&mut self, r: &Record, rev: i64, fp: Option<u128>) -> Result<()> {
        let base = self.base;
        if rev <= base {
            return Err(bad(
                rev,
                format!("a change at or before the backup's revision {base}"),
            ));
        }
        if rev != self.last {
            let last = self.last;
            if rev != last + 1 {
                return Err(bad(
                    last + 1,
                    format!(
                        "no change recorded (the next one is at revision {rev}): the capture has a gap; restore to revision {last} at most"
                    ),
                ));
            }
            self.last = rev;
            self.sub = 0;
            self.stats.revisions += 1;
        }
        let (user_key, tomb) = match r {
            Record::Put(kv) => {
                check_put(kv)?;
                self.stats.puts += 1;
                (&kv.key, false)
            }
            Record::Delete { key, .. } => {
                if key.is_empty() {
                    return Err(bad(rev, "a delete with an empty key"));
                }
                self.stats.deletes += 1;
                (key, true)
            }
            _ => return Ok(()),
        };
        let at = Revision {
            main: rev,
            sub: self.sub,
        };
        self.sub += 1;
        let encode = |out: &mut Vec<u8>| match r {
            Record::Put(kv) => encode_kv_into(out, kv),
            _ => encode_tombstone_into(out, user_key),
        };
        if let Some(h) = &mut self.held {
            let fp = fp.unwrap_or_else(|| fingerprint(user_key));
            return match h.hold(fp, at, tomb, encode) {
                Some(away) => {
                    self.stats.compacted_away += away;
                    Ok(())
                }
                None => {
                    self.held = None;
                    self.outgrown = true;
                    Err(outgrown())
                }
            };
        }
        let k = rev_key(rev, at.sub, tomb);
        let mut v = Vec::new();
        encode(&mut v);
        if let Some(p) = &mut self.window_proof {
            p.feed(&k, &v);
        }
        if let Some(s) = &self.survey {
            if !s.keeps(fp.unwrap_or_else(|| fingerprint(user_key)), at) {
                self.stats.compacted_away += 1;
                return Ok(());
            }
        }
        self.pending += k.len() + v.len();
        self.keys.push((k, v));
        Ok(())
    }

    /// The edits of the records fed since the last call: bucket `key` gains their entries
    /// (all after its last key), bucket `lease` is rewritten when leases changed, and a
    /// compaction newer than the database's becomes `meta/scheduledCompactRev`.
    pub fn take_edits(&mut self) -> Vec<Edit> {
        debug_assert!(
            self.lease_overlay.is_none(),
            "edits before the base was read"
        );
        let mut edits = Vec::new();
        if !self.keys.is_empty() {
            edits.push(Edit {
                bucket: buckets::KEY.to_vec(),
                clear: false,
                puts: std::mem::take(&mut self.keys),
            });
            self.pending = 0;
        }
        if std::mem::take(&mut self.leases_changed) {
            edits.push(Edit {
                bucket: buckets::LEASE.to_vec(),
                clear: true,
                puts: self
                    .leases
                    .iter()
                    .map(|(id, v)| (id.to_be_bytes().to_vec(), v.clone()))
                    .collect(),
            });
        }
        let written = self.base_compact.max(self.compact_written);
        if let Some(c) = self.compact.filter(|c| Some(*c) > written) {
            edits.push(Edit {
                bucket: buckets::META.to_vec(),
                clear: false,
                puts: vec![(b"scheduledCompactRev".to_vec(), rev_key(c, 0, false))],
            });
            self.compact_written = Some(c);
            self.stats.compact_revision = Some(c);
        }
        edits
    }

    /// The end of the records: every revision up to `to` must have been fed. The edits not
    /// yet handed out are in the result.
    pub fn finish(mut self) -> Result<Replay> {
        self.complete()?;
        if self.held.is_some() {
            return Err(Error::Usage(
                "a held replay finished before its changes were released".into(),
            ));
        }
        if self.shadow != self.survey {
            return Err(read_twice_differ());
        }
        let edits = self.take_edits();
        let on_records = match self.window_proof.take() {
            Some(p) => Some(p.conclude()?),
            None => self.proven,
        };
        let live_hashes = if self.compacted {
            Vec::new()
        } else {
            self.live_hashes
        };
        Ok(Replay {
            base_revision: self.base,
            to_revision: self.to,
            edits,
            stats: self.stats,
            live_hashes,
            on_records,
        })
    }

    /// Every revision up to `to` was fed, else a usage error (exit 2) naming the last one.
    fn complete(&self) -> Result<()> {
        if self.last < self.to {
            let (to, last) = (self.to, self.last);
            return Err(Error::Usage(format!(
                "revision {to} is beyond the last recorded change (revision {last}): restore to revision {last} at most"
            )));
        }
        Ok(())
    }
}

/// A held replay that stopped: its changes outgrew the memory set aside for them.
fn outgrown() -> Error {
    Error::Usage(
        "the window's changes outgrew the memory set aside to hold them: read it twice".into(),
    )
}

/// The edits replaying `records` (stream order) onto `db` up to revision `to`, as one
/// transaction (see [`Replayer`] for what is checked).
pub fn replay_edits<R: ReadAt>(db: &Db<R>, records: &[Record], to: i64) -> Result<Replay> {
    let mut rp = Replayer::new(db, to)?;
    for r in records {
        rp.feed(r)?;
    }
    rp.finish()
}

/// Bucket `lease` of the backup: id → value.
fn read_leases<R: ReadAt>(db: &Db<R>) -> Result<BTreeMap<i64, Vec<u8>>> {
    let mut m = BTreeMap::new();
    let Some(b) = db
        .bucket(buckets::LEASE)
        .map_err(|e| e.in_file("snapshot"))?
    else {
        return Ok(m);
    };
    let mut c = b.cursor();
    while let Some(e) = c.next().map_err(|e| e.in_file("snapshot"))? {
        let id: [u8; 8] = e.key.try_into().map_err(|_| Error::Corrupt {
            file: "snapshot".into(),
            page: None,
            offset: None,
            what: format!(
                "bucket lease: key of {} bytes is not a lease id",
                e.key.len()
            ),
        })?;
        m.insert(i64::from_be_bytes(id), e.value.to_vec());
    }
    Ok(m)
}

#[cfg(any(test, feature = "testkit"))]
pub mod fuzzing;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_compacted;
