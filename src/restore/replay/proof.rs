//! A replay's proof: the live hashes recorded in its window recomputed on the replayed
//! data, and the errors that say they differ.

use super::{Replay, RECORDS};
use crate::error::InFile;
use crate::format::bolt::Db;
use crate::format::etcd::hashkv::{Answers, HashKv};
use crate::format::etcd::{buckets, last_revision, meta_fields};
use crate::io::ReadAt;
use crate::{Error, Result};

/// The hashers of a replay's proof (the hash at `to_revision`, and one per live hash
/// recorded in the window), fed bucket `key` by a walk: a cursor of its own
/// (`Proof::feed_key_bucket`), or (as an [`EntryVisitor`](crate::format::bolt::EntryVisitor))
/// the walk of a caller that reads the whole database anyway.
pub struct Proof {
    hashers: Vec<(Option<HashKv>, Option<u32>)>,
}

impl Proof {
    /// `at_to`: also the hash at `to_revision` (else [`Proof::conclude`] gives None).
    pub(super) fn prepare<R: ReadAt>(db: &Db<R>, replay: &Replay, at_to: bool) -> Result<Proof> {
        let file = "replayed snapshot";
        let m = meta_fields(db).map_err(|e| e.in_file(file))?;
        let current = last_revision(db).map_err(|e| e.in_file(file))?;
        let own = m.finished_compact.max(m.scheduled_compact).unwrap_or(-1);
        let mut wanted = vec![(replay.to_revision, own, None)];
        for l in &replay.live_hashes {
            wanted.push((l.revision, l.compact_revision, Some(l.hash)));
        }
        let mut hashers = Vec::new();
        if !at_to {
            wanted.remove(0);
            hashers.push((None, None));
        }
        for (rev, compact, want) in wanted {
            match HashKv::prepare_with_compact(db, rev, current, m.finished_compact, compact)
                .map_err(|e| e.in_file(file))?
            {
                Ok(h) => hashers.push((Some(h), want)),
                // etcd would refuse it too: nothing to compare.
                Err(_) => hashers.push((None, want)),
            }
        }
        Ok(Proof { hashers })
    }

    /// Every entry of `db`'s bucket `key`, by cursor.
    pub(super) fn feed_key_bucket<R: ReadAt>(&mut self, db: &Db<R>) -> Result<()> {
        let file = "replayed snapshot";
        if let Some(b) = db.bucket(buckets::KEY).map_err(|e| e.in_file(file))? {
            let mut c = b.cursor();
            while let Some(e) = c.next().map_err(|e| e.in_file(file))? {
                self.feed(e.key, e.value);
            }
        }
        Ok(())
    }

    fn feed(&mut self, key: &[u8], value: &[u8]) {
        for h in self.hashers.iter_mut().filter_map(|(h, _)| h.as_mut()) {
            h.feed(key, value);
        }
    }

    /// The hash at `to_revision`, and the revisions whose live hash matched; an
    /// integrity error (exit 3) at the first that does not. A live hash matches either
    /// answer etcd may have given (before or after its compaction finished: they differ
    /// only when no key was live).
    pub(super) fn conclude(self) -> Result<(Option<Answers>, Vec<i64>)> {
        let mut it = self.hashers.into_iter();
        let at_to = it.next().and_then(|(h, _)| h).map(|h| h.answers());
        let mut checked = Vec::new();
        for (h, want) in it {
            let (Some(h), Some(want)) = (h, want) else {
                continue;
            };
            let answers = h.answers();
            if !answers.accepts(want) {
                return Err(mismatch(h.rev, answers.best(), want));
            }
            checked.push(h.rev);
        }
        Ok((at_to, checked))
    }
}

/// A compacted replay's two reads of its window that did not find the same records.
pub fn read_twice_differ() -> Error {
    Error::integrity(
        RECORDS,
        "read twice, they differ: a segment changed while the restore read it (its first read is not digested, its second is); run the restore again",
    )
}

/// A live hash the replayed data does not reproduce: an integrity error (exit 3).
pub(super) fn mismatch(rev: i64, got: u32, want: u32) -> Error {
    Error::integrity(
        RECORDS,
        format!(
            "revision {rev}: the backup with the captured changes hashes to {got:08x}, the live cluster's hashkv at that revision was {want:08x}; the capture does not match the cluster: restore to a revision before {rev} or from another backup"
        ),
    )
}

impl crate::format::bolt::EntryVisitor for Proof {
    fn entry(&mut self, e: &crate::format::bolt::VisitEntry<'_>) {
        if e.bucket == buckets::KEY {
            self.feed(e.key, e.value);
        }
    }
}
