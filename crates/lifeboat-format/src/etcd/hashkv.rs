//! `HashKV(rev)` offline: the CRC-32C `etcdctl endpoint hashkv` prints.
//!
//! etcd hashes bucket `key` in order, leaving out revisions above `rev`, and, below the
//! compaction point, every revision that is not in `keep` (each key's newest revision
//! `<= rev`, unless that is a tombstone). Deciding `keep` for an old entry needs to know
//! whether the same user key shows up again later, so this runs in two parts:
//!
//! 1. [`HashKv::prepare`] reads only the entries after the *finished* compaction point
//!    (after a finished compaction each key has at most one entry below it), up to `rev`,
//!    and remembers each user key's newest revision there (a 128-bit fingerprint of the key,
//!    not the key: bounded memory; a collision needs ~2^64 keys).
//! 2. [`HashKv::feed`] is then called with every entry in order, during the one full pass
//!    that also checks the file and computes etcdutl's hash.
//!
//! etcd skips nothing when `keep` is empty; whether it is empty is only known at the end, so
//! the variants of the CRC are carried and the right one is picked in [`HashKv::answers`].
//! With `keep` empty, etcd's answer also depends on whether the compaction scheduled in the
//! database has run: before, every entry still in the bucket counts; after, only what it
//! left (each key's newest revision at or below it that is a put, and every later one). A
//! member resumes that compaction when it loads the database, so the second is the
//! *settled* answer, and the first is what a member answers while it is compacting.

use std::collections::HashMap;
use std::hash::Hasher;

use super::{buckets, KeyValueRef, RevKey, Revision};
use crate::bolt::{Db, FormatError};
use crate::io::ReadAt;

/// A map keyed by [`fingerprint`]s. The key is already a hash, so SipHash over it again
/// (std's default) only costs time: foldhash's seeded hasher mixes it in a few cycles, and
/// its per-map random seed keeps keys chosen to collide (a fingerprint's halves are
/// unkeyed hashes) from lining up in one bucket.
pub type FpMap<V> = HashMap<u128, V, foldhash::fast::RandomState>;

/// A 128-bit fingerprint of a user key.
pub fn fingerprint(k: &[u8]) -> u128 {
    let mut a = fnv::FnvHasher::default();
    a.write(k);
    // SipHash with fixed keys: stable within a process, which is all a fingerprint needs.
    let mut b = std::hash::DefaultHasher::new();
    b.write(k);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// What the pre-pass learnt about one user key from its revisions after the finished
/// compaction point.
#[derive(Debug, Clone, Copy, Default)]
struct Newest {
    /// Newest revision `<= rev` and whether it is a tombstone.
    at_rev: Option<(Revision, bool)>,
    /// Whether the key's newest revision of all is a put.
    live_now: bool,
    /// Newest revision `<= compact` and whether it is a tombstone: the one a compaction
    /// there keeps, when it is a put.
    at_compact: Option<(Revision, bool)>,
    /// The key's newest entry a [`PrePass`] counted ([`Singles`]), 0 for none.
    ord: u32,
}

/// What etcd may answer for one hashkv. They differ only when no key is live at the
/// revision (etcd's `keep` is empty): see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answers {
    /// Once the compaction scheduled in the database has finished: what a member answers
    /// after loading it. None when the revisions a caller noted ([`HashKv::note_later`])
    /// cannot tell (see [`HashKv::settled_unknown`]).
    pub settled: Option<u32>,
    /// While that compaction has not run: every entry at or below the revision.
    pub as_is: u32,
    /// With one more key live at the revision than the entries fed show (a key etcd
    /// indexes that the offline reader leaves out, such as a restore's bump entry): every
    /// entry that `keep` would hold, and everything after the compaction.
    pub with_live_key: u32,
}

impl Answers {
    /// The one answer there is when `keep` is not empty (or nothing is compacted).
    fn one(h: u32) -> Answers {
        Answers {
            settled: Some(h),
            as_is: h,
            with_live_key: h,
        }
    }

    /// The answer to predict: the settled one when known.
    pub fn best(&self) -> u32 {
        self.settled.unwrap_or(self.as_is)
    }

    /// The other answer etcd may give (while it compacts), when it differs from
    /// [`Answers::best`].
    pub fn while_compacting(&self) -> Option<u32> {
        (self.as_is != self.best()).then_some(self.as_is)
    }

    /// Whether etcd may answer `h`.
    pub fn accepts(&self, h: u32) -> bool {
        self.settled == Some(h) || self.as_is == h
    }
}

/// Whether etcd answers a hashkv at exactly the compaction revision for this db: 3.6 and
/// later do (`hashByRev` refuses only revisions below it, and serve the hash they kept at
/// the compaction); 3.4 and 3.5 refuse it. A db that carries `meta/storageVersion` was
/// written by 3.6+ and is served by 3.6+ (etcd refuses to downgrade it).
fn hashes_at_compaction<R: ReadAt>(db: &Db<R>) -> Result<bool, FormatError> {
    Ok(super::meta_fields(db)?.storage_version.is_some())
}

/// Why a hashkv cannot be computed at the asked revision (what etcd would answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashKvRefused {
    #[error("revision {rev} has been compacted (compact revision {compact})")]
    Compacted { rev: i64, compact: i64 },
    #[error("revision {rev} is a future revision (current {current})")]
    Future { rev: i64, current: i64 },
}

/// The incremental hashkv computation.
#[derive(Debug, Clone)]
pub struct HashKv {
    /// The revision hashed at.
    pub rev: i64,
    /// etcd's compaction main revision (max of finished and scheduled), -1 if none.
    pub compact: i64,
    /// Entries with main <= this are unique per key (finished compaction), -1 if none.
    unique_upto: i64,
    later: FpMap<Newest>,
    /// The entries a pre-pass made ahead found to be their key's only one.
    singles: Option<Singles>,
    later_has_live: bool,
    kept_any: bool,
    h_skip: u32,
    h_all: u32,
    /// `h_all` once the scheduled compaction has run.
    h_settled: u32,
    /// Whether `h_settled` is exact (see [`HashKv::settled_unknown`]).
    settled_known: bool,
    /// Entries of bucket `key` whose key is not a revision (etcd would choke on them).
    pub bad_keys: u64,
    /// Nothing can be skipped (no compaction, `rev` is the latest): the hash is the CRC of
    /// "key" and all of the bucket's content, which the caller already has (see
    /// [`HashKv::enable_passthrough`]).
    passthrough: bool,
    /// The largest revision in the bucket.
    current: i64,
}

impl HashKv {
    /// Plan a hashkv at `rev` (0: the current revision) for a database whose bucket `key`
    /// ends at `current`, with these compaction marks. Reads the entries after the finished
    /// compaction point, continuing `prepass` where that fits
    /// ([`HashKv::prepare_continuing`]).
    pub fn prepare<R: ReadAt>(
        db: &Db<R>,
        rev: i64,
        current: i64,
        finished: Option<i64>,
        scheduled: Option<i64>,
        prepass: Option<PrePass>,
    ) -> Result<Result<HashKv, HashKvRefused>, FormatError> {
        let compact = finished.max(scheduled).unwrap_or(-1);
        Self::prepare_continuing(db, rev, current, finished, compact, prepass)
    }

    /// [`HashKv::prepare`] with etcd's compaction revision given: a live member that has
    /// compacted further than the snapshot hashes with its own compaction revision, and
    /// `--compare-live` must do the same to compare like with like.
    pub fn prepare_with_compact<R: ReadAt>(
        db: &Db<R>,
        rev: i64,
        current: i64,
        finished: Option<i64>,
        compact: i64,
    ) -> Result<Result<HashKv, HashKvRefused>, FormatError> {
        Self::prepare_continuing(db, rev, current, finished, compact, None)
    }

    /// [`HashKv::prepare_with_compact`] with the part of its pre-pass that `prepass` made
    /// ahead of time (see [`PrePass`]), when it fits this hash: the pre-pass then reads
    /// only the entries after `prepass`'s. One that does not fit is not used (the whole
    /// pre-pass is made here).
    pub fn prepare_continuing<R: ReadAt>(
        db: &Db<R>,
        rev: i64,
        current: i64,
        finished: Option<i64>,
        compact: i64,
        prepass: Option<PrePass>,
    ) -> Result<Result<HashKv, HashKvRefused>, FormatError> {
        // etcd's currentRev after a restart is at least the compaction revision.
        let current = current.max(compact);
        if rev > 0 && (rev < compact || (rev == compact && !hashes_at_compaction(db)?)) {
            return Ok(Err(HashKvRefused::Compacted { rev, compact }));
        }
        if rev > 0 && rev > current {
            return Ok(Err(HashKvRefused::Future { rev, current }));
        }
        let rev = if rev == 0 { current } else { rev };
        let unique_upto = finished.unwrap_or(-1).min(compact);
        let mut hk = HashKv {
            rev,
            compact,
            unique_upto,
            later: FpMap::default(),
            singles: None,
            later_has_live: false,
            kept_any: false,
            h_skip: crc32c::crc32c(buckets::KEY),
            h_all: crc32c::crc32c(buckets::KEY),
            h_settled: crc32c::crc32c(buckets::KEY),
            settled_known: true,
            bad_keys: 0,
            passthrough: false,
            current,
        };
        if compact < 0 {
            return Ok(Ok(hk));
        }
        let mut from = first_after(unique_upto);
        if let Some(pp) = prepass.filter(|pp| pp.fits(from, rev, compact)) {
            hk.later = pp.later;
            hk.singles = Some(pp.singles);
            from = pp.upto.saturating_add(1);
        }
        let singles = hk.singles.as_mut();
        scan_later(db, from, i64::MAX, rev, compact, &mut hk.later, singles)?;
        hk.later_has_live = hk
            .later
            .values()
            .any(|n| n.at_rev.is_some_and(|(_, tomb)| !tomb));
        Ok(Ok(hk))
    }

    /// What [`HashKv::prepare`] would have read about one user key (fingerprint `fp`) from
    /// revisions that are not in the database yet: a point-in-time replay surveys its window
    /// before writing it (and may not write all of it). They follow every revision prepare
    /// read, so they win: `at_rev` is the key's newest revision `<= rev` among them (None:
    /// none), `live_now` whether its newest of all is a put. What a compaction keeps
    /// stays what prepare read: a caller whose revisions may be at or below the compaction
    /// point says [`HashKv::settled_unknown`]. Call [`HashKv::notes_done`] after the last,
    /// before the first [`HashKv::feed`].
    pub fn note_later(&mut self, fp: u128, at_rev: Option<(Revision, bool)>, live_now: bool) {
        if self.compact < 0 {
            // No compaction point: nothing is ever skipped, prepare read nothing either.
            return;
        }
        // A key noted is not one the pre-pass's count knows of.
        self.singles = None;
        let n = self.later.entry(fp).or_default();
        if at_rev.is_some() {
            n.at_rev = at_rev;
        }
        n.live_now = live_now;
    }

    /// A caller whose notes cannot give each key's newest revision at or below the
    /// compaction (it read them in order, before it knew the compaction): the settled
    /// answer is then unknown where it differs ([`Answers::settled`] None).
    pub fn settled_unknown(&mut self) {
        self.settled_known = false;
    }

    /// The end of [`HashKv::note_later`].
    pub fn notes_done(&mut self) {
        self.later_has_live = self
            .later
            .values()
            .any(|n| n.at_rev.is_some_and(|(_, tomb)| !tomb));
    }

    /// Feed one entry of bucket `key` (all of them, in order).
    pub fn feed(&mut self, k: &[u8], v: &[u8]) {
        let Some(rk) = RevKey::parse(k) else {
            self.bad_keys += 1;
            return;
        };
        self.feed_parsed(k, v, rk, None);
    }

    /// [`HashKv::feed`] for a caller that already parsed the key and maybe fingerprinted
    /// the user key (`fp`), so the work is not done twice.
    pub fn feed_parsed(&mut self, k: &[u8], v: &[u8], rk: RevKey, fp: Option<u128>) {
        if self.passthrough || rk.rev.main > self.rev {
            return;
        }
        let single = self.singles.as_mut().is_some_and(|s| s.feed(rk.rev.main));
        // The no-skip variants only matter while `keep` may still turn out empty.
        let need_all = self.compact >= 0 && !(self.later_has_live || self.kept_any);
        let below = rk.rev.main <= self.compact;
        // Below the compaction point: only `keep` members count (when keep is non-empty),
        // and only what the compaction keeps once it has run. After it, every entry.
        // A put that is its key's only entry after the finished compaction (a pre-pass
        // counted it: [`Singles`]) is its newest at or below both `rev` and `compact`.
        let (kept, survives) = if below && single && !rk.tombstone {
            (true, true)
        } else if below {
            let fp = if rk.tombstone {
                None
            } else {
                fp.or_else(|| KeyValueRef::decode(v).ok().map(|kv| fingerprint(kv.key)))
            };
            fp.map_or((false, false), |fp| self.decide_old(rk.rev, fp))
        } else {
            (true, true)
        };
        let entry = |h: u32| crc32c::crc32c_append(crc32c::crc32c_append(h, k), v);
        if kept {
            self.kept_any |= below;
            self.h_skip = entry(self.h_skip);
        }
        if need_all {
            if survives {
                self.h_settled = entry(self.h_settled);
            }
            self.h_all = entry(self.h_all);
        }
    }

    /// For a put at `rev <= compact` of the user key `fp`: whether it is in `keep` (its
    /// key's newest revision `<= self.rev`), and whether the compaction keeps it (its
    /// key's newest revision `<= compact`).
    fn decide_old(&self, rev: Revision, fp: u128) -> (bool, bool) {
        let n = self.later.get(&fp);
        if rev.main <= self.unique_upto {
            // The key's only entry this old: newest unless a later one is old enough too.
            (
                n.is_none_or(|n| n.at_rev.is_none()),
                n.is_none_or(|n| n.at_compact.is_none()),
            )
        } else {
            let is = |at: Option<(Revision, bool)>| at.is_some_and(|(r, tomb)| r == rev && !tomb);
            (
                is(n.and_then(|n| n.at_rev)),
                is(n.and_then(|n| n.at_compact)),
            )
        }
    }

    /// Entries fed as one block, by the CRC-32C (`crc32c_append` from 0) and length of
    /// their keys and values in order: a caller that hashed them before it could feed the
    /// entries ahead of them (a point-in-time replay read once). Every entry of the block
    /// must be after the compaction point and at or below `rev`, where [`HashKv::feed`]
    /// hashes each one whatever the rest holds; the caller checks that (the compaction
    /// revision it prepared this hash with).
    pub fn feed_block(&mut self, crc: u32, len: u64) {
        if self.passthrough || len == 0 {
            return;
        }
        let need_all = self.compact >= 0 && !(self.later_has_live || self.kept_any);
        self.h_skip = crc32c::crc32c_combine(self.h_skip, crc, len as usize);
        if need_all {
            self.h_all = crc32c::crc32c_combine(self.h_all, crc, len as usize);
            self.h_settled = crc32c::crc32c_combine(self.h_settled, crc, len as usize);
        }
    }

    /// Whether fingerprints of user keys at this revision are needed by
    /// [`HashKv::feed_parsed`] (so a caller can compute them once).
    /// Asked before that entry is fed.
    pub fn wants_fingerprint(&self, rk: &RevKey) -> bool {
        !rk.tombstone
            && rk.rev.main <= self.compact
            && rk.rev.main <= self.rev
            && !self
                .singles
                .as_ref()
                .is_some_and(|s| s.next_single(rk.rev.main))
    }

    /// Whether this fingerprint has revisions after the finished compaction.
    pub fn seen_after_fp(&self, fp: u128) -> bool {
        self.later.contains_key(&fp)
    }

    /// When nothing can be skipped (never compacted, hashing at the latest revision),
    /// stop hashing in [`HashKv::feed`]: the caller promises to finish with
    /// [`HashKv::answers_with_content`] and the CRC of the whole bucket content it computes
    /// anyway for etcdutl's hash. Returns whether that is the case.
    pub fn enable_passthrough(&mut self) -> bool {
        self.passthrough = self.compact < 0 && self.rev >= self.current;
        self.passthrough
    }

    /// Every answer, given the CRC-32C and length of all keys and values of bucket `key`
    /// (used after [`HashKv::enable_passthrough`] returned true).
    pub fn answers_with_content(&self, content_crc: u32, content_len: u64) -> Answers {
        if self.passthrough {
            Answers::one(crc32c::crc32c_combine(
                crc32c::crc32c(buckets::KEY),
                content_crc,
                content_len as usize,
            ))
        } else {
            self.answers()
        }
    }

    /// Whether a pre-pass ran (there is a compaction point); then [`HashKv::live_after`]
    /// and [`HashKv::seen_after`] describe every key with revisions after it.
    pub fn indexed(&self) -> bool {
        self.compact >= 0
    }

    /// Entries with main revision `<=` this are unique per key (finished compaction).
    pub fn unique_upto(&self) -> i64 {
        self.unique_upto
    }

    /// Keys with revisions after the finished compaction whose newest revision is a put.
    pub fn live_after(&self) -> u64 {
        self.later.values().filter(|n| n.live_now).count() as u64
    }

    /// Whether this user key has revisions after the finished compaction.
    pub fn seen_after(&self, user_key: &[u8]) -> bool {
        self.later.contains_key(&fingerprint(user_key))
    }

    /// The hash etcd returns once it has finished the compaction scheduled in the
    /// database (when that is known: [`Answers::best`]).
    pub fn finish(&self) -> u32 {
        self.answers().best()
    }

    /// Every hash etcd may return (see [`Answers`]).
    pub fn answers(&self) -> Answers {
        if self.compact < 0 || self.kept_any || self.later_has_live {
            return Answers::one(self.h_skip);
        }
        Answers {
            settled: self.settled_known.then_some(self.h_settled),
            as_is: self.h_all,
            with_live_key: self.h_skip,
        }
    }
}

/// The first main revision the pre-pass reads: the one after the finished compaction.
fn first_after(unique_upto: i64) -> i64 {
    unique_upto.saturating_add(1).max(0)
}

/// HashKV of a database at `rev` (0: current), in its own pass over bucket `key`.
///
/// `compact` overrides the compaction revision taken from the database (see
/// [`HashKv::prepare_with_compact`]).
pub fn hashkv<R: ReadAt>(
    db: &Db<R>,
    rev: i64,
    compact: Option<i64>,
) -> Result<Result<(u32, HashKv), HashKvRefused>, FormatError> {
    let m = super::meta_fields(db)?;
    let current = super::last_revision(db)?;
    let compact =
        compact.unwrap_or_else(|| m.finished_compact.max(m.scheduled_compact).unwrap_or(-1));
    let mut hk = match HashKv::prepare_with_compact(db, rev, current, m.finished_compact, compact)?
    {
        Ok(h) => h,
        Err(r) => return Ok(Err(r)),
    };
    if let Some(b) = db.bucket(buckets::KEY)? {
        let mut c = b.cursor();
        while let Some(e) = c.next()? {
            hk.feed(e.key, e.value);
        }
    }
    Ok(Ok((hk.finish(), hk)))
}

#[path = "hashkv_prepass.rs"]
mod prepass;
pub use prepass::PrePass;
use prepass::{scan_later, Singles};

#[cfg(test)]
#[path = "hashkv_tests.rs"]
mod tests;
