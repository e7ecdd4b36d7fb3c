//! A window compacted as it is replayed (`--compact`): the restored database is what etcd
//! holds after `compact R-1`, without ever writing what that compaction removes.
//!
//! An hour of changes can hold many times the backup's bytes (etcd keeps every revision
//! until it is compacted), and writing all of them makes a restore to R cost what the
//! window weighs. Compacted, each key keeps only its newest change at or below `R-1` plus
//! every change at R: the database holds the state at R, serves reads and watches from R
//! on, and etcd refuses older revisions as compacted. R-1 rather than R, because etcd 3.4
//! and 3.5 refuse `hashkv` at exactly the compaction revision, and because a watch from R
//! then still sees the changes made at R.
//!
//! Which change is a key's newest is only known once the window has been read. The
//! restore reads it once and holds each key's newest change so far in memory ([`Held`],
//! under a budget), writing them in revision order at the end; the window's changes weigh
//! what its distinct keys weigh, not what its history does. When they outgrow the budget
//! the window is read twice instead: [`Survey`] first (a fingerprint per user key and the
//! revisions that matter, never a value), then the replay, which writes a change at or
//! below the compaction point only when [`Survey::keeps`] says it is its key's newest.
//! That first read skips the segments' digests (the costliest check of a read); the second
//! is checked in full, and the replay surveys it again as it goes: it refuses to finish
//! unless that survey equals the first, so nothing learnt from the unverified read is
//! ever used unchecked.
//!
//! The base's own older revisions stay in the file with `meta/scheduledCompactRev` =
//! etcd finishes that compaction when it loads the database (see [`super`]), and
//! everything that predicts its answers ([`crate::format::etcd::hashkv`], the restore prediction)
//! already leaves out what a scheduled compaction removes (and names the answer a member
//! gives while it is still compacting, when no key is live at R).
//!
//! **The proof.** The live hashes capture recorded describe revisions the compaction
//! discards, and the written database no longer holds them. The newest live hash at or
//! below R is still proven, from the records themselves ([`WindowProof`]): it is fed the
//! base's entries and then every change of the window, written or not, in bucket order,
//! with what the survey learnt about each key standing in for the pre-pass over entries
//! that were never written. Read once, the window's changes up to that hash are fed as
//! one CRC-32C block computed as they were read ([`WindowProof::feed_block`]): that holds
//! when the hash was made with a compaction at or below the backup's revision, so every
//! change of the window up to it counts. A hash made with a compaction inside the window
//! counts a change below that compaction only when it is its key's newest, which a read
//! in order cannot know yet: then the window is read a second time, in order, and that
//! read must find the records (count and digest) of the first. That is the hash that
//! covers the state being restored; older ones prove history a compacted restore drops.

use std::collections::hash_map::Entry;

use super::encode::rev_key_into;
use super::LiveHash;
use crate::error::InFile;
use crate::format::bolt::Db;
use crate::format::capture::Record;
use crate::format::etcd::hashkv::{fingerprint, FpMap, HashKv};
use crate::format::etcd::{buckets, meta_fields, Revision};
use crate::io::ReadAt;
use crate::Result;

/// One change: its revision and whether it is a delete.
type Change = (Revision, bool);

/// The [`fingerprint`] of the user key a put or a delete changes; None for other records.
/// A compacted replay computes it once per record for every map that needs it.
pub fn change_fingerprint(r: &Record) -> Option<u128> {
    match r {
        Record::Put(kv) => Some(fingerprint(&kv.key)),
        Record::Delete { key, .. } => Some(fingerprint(key)),
        _ => None,
    }
}

/// What the survey keeps per user key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marks {
    /// The newest change seen.
    cur: Change,
    /// The newest change at or below the newest live hash's revision, saved when a change
    /// after that revision replaced it in `cur`.
    snap: Option<Change>,
    /// The live hash revision `snap` was saved for.
    snap_at: i64,
    /// The newest change at or below the compaction point: the one the replay writes.
    keep: Option<Revision>,
}

/// The first read of a window to be compacted: per user key, its newest change at or
/// below the compaction point, and what the newest live hash's proof needs. Two surveys of
/// the same records are equal.
#[derive(Debug, PartialEq, Eq)]
pub struct Survey {
    to: i64,
    compact_to: i64,
    keys: FpMap<Marks>,
    last_main: i64,
    sub: i64,
    hash: Option<LiveHash>,
    /// `hash`'s revision (i64::MIN before the first).
    hash_at: i64,
    ended: bool,
}

impl Survey {
    /// A window replayed up to `to`, compacted at `to - 1`.
    pub fn new(to: i64) -> Survey {
        Survey {
            to,
            compact_to: to - 1,
            keys: FpMap::default(),
            last_main: i64::MIN,
            sub: 0,
            hash: None,
            hash_at: i64::MIN,
            ended: false,
        }
    }

    /// The compaction the replay schedules: `to - 1`.
    pub fn compact_to(&self) -> i64 {
        self.compact_to
    }

    /// One record, in stream order. Nothing is checked here: the replay that follows
    /// refuses what is wrong, and the survey's view of a wrong stream is never used. As
    /// in the replay, the first record after `to` ends the window.
    pub fn feed(&mut self, r: &Record) {
        self.feed_fingerprinted(r, None);
    }

    /// [`Survey::feed`] with the fingerprint of the record's key where the caller has it
    /// already (a put or a delete: [`change_fingerprint`]); None: computed here.
    pub fn feed_fingerprinted(&mut self, r: &Record, fp: Option<u128>) {
        let rev = r.revision();
        if self.ended || rev > self.to {
            self.ended = true;
            return;
        }
        let (key, tomb) = match r {
            Record::Put(kv) => (&kv.key, false),
            Record::Delete { key, .. } => (key, true),
            Record::LiveHash {
                revision,
                hash,
                compact_revision,
            } => {
                self.hash = Some(LiveHash {
                    revision: *revision,
                    hash: *hash,
                    compact_revision: *compact_revision,
                });
                self.hash_at = *revision;
                return;
            }
            _ => return,
        };
        if rev != self.last_main {
            self.last_main = rev;
            self.sub = 0;
        }
        let this = Revision {
            main: rev,
            sub: self.sub,
        };
        self.sub += 1;
        let (hash_at, compact_to) = (self.hash_at, self.compact_to);
        let fp = fp.unwrap_or_else(|| fingerprint(key));
        let m = self.keys.entry(fp).or_insert(Marks {
            cur: (
                Revision {
                    main: i64::MIN,
                    sub: 0,
                },
                true,
            ),
            snap: None,
            snap_at: i64::MIN,
            keep: None,
        });
        if m.cur.0.main <= hash_at && rev > hash_at {
            m.snap = (m.cur.0.main != i64::MIN).then_some(m.cur);
            m.snap_at = hash_at;
        }
        m.cur = (this, tomb);
        if rev <= compact_to {
            m.keep = Some(this);
        }
    }

    /// Whether the replay writes the change at `rev` of `user_key` (fingerprint `fp`):
    /// every change after the compaction point, and at or below it only a key's newest.
    pub fn keeps(&self, fp: u128, rev: Revision) -> bool {
        rev.main > self.compact_to || self.keys.get(&fp).and_then(|m| m.keep) == Some(rev)
    }

    /// The newest live hash at or below `to`, if any.
    pub fn last_hash(&self) -> Option<LiveHash> {
        self.hash
    }

    /// Whether the window's entries prove the newest live hash after the base's revision
    /// `base` as one block ([`WindowProof::feed_block`]): that hash was made with a
    /// compaction at or below `base`, so every entry of the window up to it counts,
    /// whatever follows (true too when there is no such hash: nothing to prove).
    pub fn proves_in_block(&self, base: i64) -> bool {
        self.hash
            .filter(|h| h.revision > base)
            .is_none_or(|h| h.compact_revision <= base)
    }

    /// The key's newest change at or below the newest live hash's revision.
    fn at_hash(m: &Marks, at: i64) -> Option<Change> {
        if m.cur.0.main <= at {
            Some(m.cur)
        } else if m.snap_at == at {
            m.snap
        } else {
            None
        }
    }
}

/// The newest live hash of a compacted window, proven from the records: a [`HashKv`] at
/// its revision fed the base's bucket `key` and then every change of the window.
#[derive(Debug)]
pub struct WindowProof {
    hk: HashKv,
    want: LiveHash,
}

impl WindowProof {
    /// Prepared on the base database `db` (revision `base`, before anything is replayed
    /// onto it), fed its entries; None when the window has no live hash to prove or etcd
    /// would refuse it.
    pub fn prepare<R: ReadAt>(
        db: &Db<R>,
        base: i64,
        survey: &Survey,
    ) -> Result<Option<WindowProof>> {
        let file = "snapshot";
        let Some(want) = survey.last_hash().filter(|h| h.revision > base) else {
            return Ok(None);
        };
        let m = meta_fields(db).map_err(|e| e.in_file(file))?;
        let prepared = HashKv::prepare_with_compact(
            db,
            want.revision,
            survey.to,
            m.finished_compact,
            want.compact_revision,
        )
        .map_err(|e| e.in_file(file))?;
        let Ok(mut hk) = prepared else {
            return Ok(None);
        };
        // The window's changes are all after the base: when the hash was made with a
        // compaction at or below it, none is old enough to change what that compaction
        // keeps. When it was made with one inside the window, a read in order cannot tell
        // each key's newest change at or below it, so its settled answer is unknown.
        if want.compact_revision > base {
            hk.settled_unknown();
        }
        for (fp, marks) in &survey.keys {
            hk.note_later(*fp, Survey::at_hash(marks, want.revision), !marks.cur.1);
        }
        hk.notes_done();
        if let Some(b) = db.bucket(buckets::KEY).map_err(|e| e.in_file(file))? {
            let mut c = b.cursor();
            while let Some(e) = c.next().map_err(|e| e.in_file(file))? {
                hk.feed(e.key, e.value);
            }
        }
        Ok(Some(WindowProof { hk, want }))
    }

    /// One entry of the window as the replay makes it, written or not.
    pub fn feed(&mut self, k: &[u8], v: &[u8]) {
        self.hk.feed(k, v);
    }

    /// Every entry of the window up to the live hash's revision, as one block: their
    /// CRC-32C and length (see [`Held`]). Only when [`Survey::proves_in_block`].
    pub fn feed_block(&mut self, (crc, len): (u32, u64)) {
        self.hk.feed_block(crc, len);
    }

    /// The revision proven, or an integrity error (exit 3) when the hash differs;
    /// [`Concluded::Unknowable`] when it cannot be told: no key was live at the hash's
    /// revision (etcd's answer then depends on whether its compaction inside the window had
    /// finished) and the hash is not the one etcd gives while it compacts (see
    /// [`HashKv::settled_unknown`]).
    pub fn conclude(self) -> Result<Concluded> {
        let answers = self.hk.answers();
        let (rev, want) = (self.want.revision, self.want.hash);
        if answers.accepts(want) {
            return Ok(Concluded::Proven(rev));
        }
        if answers.settled.is_none() {
            tracing::warn!(
                "the live hash at revision {rev} is not proven: no key was live there, and the compaction at {} it was made with is inside the window, so a restore compacted as it replays cannot tell what that compaction left (a restore without --compact proves it)",
                self.want.compact_revision
            );
            return Ok(Concluded::Unknowable(rev));
        }
        Err(super::mismatch(rev, answers.best(), want))
    }
}

/// What the proof of a compacted window's newest live hash came to (at its revision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concluded {
    Proven(i64),
    /// Neither proven nor refused: see [`WindowProof::conclude`].
    Unknowable(i64),
}

/// Bytes a held change costs beside its key and value (map slot, vectors).
const HELD_OVERHEAD: usize = 96;

/// A compacted window read once: each key's newest change at or below the compaction point
/// held in memory until the window has been read (it is only then known to be the newest),
/// then written in revision order, with what the replay needs to prove the newest live hash
/// ([`Survey`], and the CRC of the window's entries up to it). A second read is only
/// needed when the changes outgrow `budget` ([`Held::hold`]) or when the newest live hash
/// was made with a compaction inside the window (its entries at or below that compaction
/// count only when they are their key's newest, which a read in order cannot know yet).
#[derive(Debug)]
pub struct Held {
    compact_to: i64,
    budget: usize,
    bytes: usize,
    /// Per user key fingerprint, its newest change at or below `compact_to`.
    newest: FpMap<(Revision, Vec<u8>, Vec<u8>)>,
    /// Changes after `compact_to` (at `to`), in stream order.
    after: Vec<(Vec<u8>, Vec<u8>)>,
    /// For the proof of the newest live hash (None: no proof to make).
    survey: Option<Survey>,
    tail: Tail,
}

/// What a [`Held`] read leaves for the replay to write and prove.
#[derive(Debug)]
pub struct Released {
    /// Bucket `key` entries, in revision order.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// None: the read was not surveyed (no proof to make).
    pub survey: Option<Survey>,
    /// CRC-32C and length of every window entry at or below the newest live hash.
    pub block: (u32, u64),
}

impl Held {
    /// A window replayed up to `to`, compacted at `to - 1`, holding at most about
    /// `budget` bytes; `survey`: for the newest live hash's proof.
    pub fn new(to: i64, budget: usize, survey: bool) -> Held {
        Held {
            compact_to: to - 1,
            budget,
            bytes: 0,
            newest: FpMap::default(),
            after: Vec::new(),
            survey: survey.then(|| Survey::new(to)),
            tail: Tail::default(),
        }
    }

    /// Every record, in stream order, before the replay looks at it (`fp`: as
    /// [`Survey::feed_fingerprinted`]).
    pub fn record(&mut self, r: &Record, fp: Option<u128>) {
        if let Some(s) = &mut self.survey {
            s.feed_fingerprinted(r, fp);
        }
    }

    /// A live hash at `rev` was read (in the window, in order).
    pub fn live_hash(&mut self, rev: i64) {
        self.tail.at = Some(rev);
        self.tail.mark = None;
    }

    /// A change of the window at `at` (a tombstone: `tomb`), its value written by
    /// `encode`: held when it is its key's newest so far at or below the compaction point
    /// (Some(1) when that replaces an older one, which the compaction removes: its buffers
    /// take the new entry), kept in order after it; None when holding it would outgrow the
    /// budget.
    pub fn hold(
        &mut self,
        fp: u128,
        at: Revision,
        tomb: bool,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Option<u64> {
        let (replaced, (k, v)) = if at.main > self.compact_to {
            self.after.push((Vec::new(), Vec::new()));
            let last = self.after.len() - 1;
            let (k, v) = &mut self.after[last];
            (false, (k, v))
        } else {
            match self.newest.entry(fp) {
                Entry::Occupied(e) => {
                    let (old_at, k, v) = e.into_mut();
                    *old_at = at;
                    (true, (k, v))
                }
                Entry::Vacant(e) => {
                    let (_, k, v) = e.insert((at, Vec::new(), Vec::new()));
                    (false, (k, v))
                }
            }
        };
        let old = if replaced { k.len() + v.len() } else { 0 };
        rev_key_into(k, at.main, at.sub, tomb);
        encode(v);
        if self.survey.is_some() {
            self.tail.feed(at.main, k, v);
        }
        self.bytes = self.bytes + k.len() + v.len() + HELD_OVERHEAD * usize::from(!replaced) - old;
        if self.bytes > self.budget {
            return None;
        }
        Some(u64::from(replaced))
    }

    /// The held changes in revision order, and what the proof needs.
    pub fn release(self) -> Released {
        let mut held: Vec<_> = self.newest.into_values().collect();
        held.sort_unstable_by_key(|(at, _, _)| (at.main, at.sub));
        let mut entries: Vec<_> = held.into_iter().map(|(_, k, v)| (k, v)).collect();
        entries.extend(self.after);
        Released {
            entries,
            survey: self.survey,
            block: self.tail.upto_hash(),
        }
    }
}

/// The CRC-32C of a window's entries (every change, written or not, as the replay encodes
/// it) up to the newest live hash read so far: what [`WindowProof::feed_block`] takes.
#[derive(Debug, Default)]
struct Tail {
    crc: u32,
    len: u64,
    /// The newest live hash's revision, and the CRC and length at its end once an entry
    /// after it came.
    at: Option<i64>,
    mark: Option<(u32, u64)>,
}

impl Tail {
    fn feed(&mut self, rev: i64, k: &[u8], v: &[u8]) {
        if self.at.is_some_and(|at| rev > at) && self.mark.is_none() {
            self.mark = Some((self.crc, self.len));
        }
        self.crc = crc32c::crc32c_append(self.crc, k);
        self.crc = crc32c::crc32c_append(self.crc, v);
        self.len += (k.len() + v.len()) as u64;
    }

    fn upto_hash(&self) -> (u32, u64) {
        self.mark.unwrap_or((self.crc, self.len))
    }
}
