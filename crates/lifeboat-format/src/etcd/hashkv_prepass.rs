//! The pre-pass of [`HashKv::prepare`]: each user key's newest revisions after the
//! finished compaction point ([`scan_later`]), and the part of it made ahead of time on a
//! point-in-time replay's base ([`PrePass`], with [`Singles`]).

use super::{fingerprint, first_after, FpMap, Newest};
use crate::bolt::{Db, FormatError};
use crate::etcd::{buckets, KeyValueRef, RevKey, Revision};
use crate::io::ReadAt;

#[cfg(doc)]
use super::HashKv;

/// Which entries a [`PrePass`] read are their key's only entry from its first revision
/// on: the walk that continues it hashes those without looking their key up in the
/// pre-pass's map, one lookup per entry of the base (a map of every key of a large
/// base does not fit in a cache, and those lookups were most of the walk). Entries are
/// counted in order from 1, the same way by the pre-pass and by the walk
/// ([`HashKv::feed_parsed`]): every entry of main revision `from..=upto` whose key is a
/// revision.
#[derive(Debug, Clone, Default)]
pub(super) struct Singles {
    from: i64,
    upto: i64,
    /// Bit `n - 1`: entry `n` is not known to be its key's only one (its key has another
    /// entry, or it does not decode to a key): the map decides.
    multi: Vec<u64>,
    /// Entries the pre-pass counted.
    count: u32,
    /// Entries the walk has fed so far.
    fed: u32,
}

impl Singles {
    /// Whether entries at main revision `main` are counted.
    fn covers(&self, main: i64) -> bool {
        (self.from..=self.upto).contains(&main)
    }

    fn mark(&mut self, n: u32) {
        let i = (n - 1) as usize;
        if i / 64 >= self.multi.len() {
            self.multi.resize(i / 64 + 1, 0);
        }
        self.multi[i / 64] |= 1 << (i % 64);
    }

    fn unmark(&mut self, n: u32) {
        let i = (n - 1) as usize;
        if let Some(w) = self.multi.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    /// Entry `n` (counted from 1) is its key's only entry.
    fn single(&self, n: u32) -> bool {
        let i = (n as usize).wrapping_sub(1);
        // A count that saturated (never: 2^32 entries) numbers none of them.
        n >= 1
            && n <= self.count
            && self.count < u32::MAX
            && self.multi.get(i / 64).map_or(0, |w| w >> (i % 64)) & 1 == 0
    }

    /// Whether the walk's next entry, at main revision `main`, is its key's only one
    /// (what [`Singles::feed`] will say).
    pub(super) fn next_single(&self, main: i64) -> bool {
        self.covers(main) && self.single(self.fed.saturating_add(1))
    }

    /// The walk's next entry, at main revision `main`: whether it is its key's only one.
    pub(super) fn feed(&mut self, main: i64) -> bool {
        let single = self.next_single(main);
        if self.covers(main) {
            self.fed = self.fed.saturating_add(1);
        }
        single
    }

    /// One more entry read at main revision `main`: its number when it is counted (the
    /// pre-pass's own entries), marked until [`Singles::note`] finds it its key's first.
    fn count(&mut self, main: i64) -> Option<u32> {
        if !self.covers(main) {
            return None;
        }
        self.count = self.count.saturating_add(1);
        self.mark(self.count);
        Some(self.count)
    }

    /// An entry of a key whose newest counted entry is `ord` (0: none): `here`, its
    /// number when counted (a pre-pass continued counts none). A key's first counted
    /// entry is single until another entry of the key comes, counted or not.
    fn note(&mut self, ord: &mut u32, here: Option<u32>) {
        match (*ord, here) {
            (0, None) => {}
            (0, Some(n)) => self.unmark(n),
            (older, _) => self.mark(older),
        }
        if let Some(n) = here {
            *ord = n;
        }
    }
}

/// The pre-pass of [`HashKv::prepare`] over main revisions `from..=upto`: each user key's
/// newest revision at or below `rev` and at or below `compact`, and whether its newest is
/// a put. With `singles`: the entries it covers are counted, and every entry notes
/// whether its key had one counted before ([`Singles::note`]).
pub(super) fn scan_later<R: ReadAt>(
    db: &Db<R>,
    from: i64,
    upto: i64,
    rev: i64,
    compact: i64,
    later: &mut FpMap<Newest>,
    mut singles: Option<&mut Singles>,
) -> Result<(), FormatError> {
    let Some(b) = db.bucket(buckets::KEY)? else {
        return Ok(());
    };
    let mut c = b.cursor();
    let mut e = c.seek(&RevKey::encode(Revision { main: from, sub: 0 }))?;
    while let Some(en) = e {
        let Some(rk) = RevKey::parse(en.key) else {
            e = c.next()?;
            continue;
        };
        if rk.rev.main > upto {
            break;
        }
        let here = singles.as_deref_mut().and_then(|s| s.count(rk.rev.main));
        if let Ok(kv) = KeyValueRef::decode(en.value) {
            if !kv.key.is_empty() {
                let n = later.entry(fingerprint(kv.key)).or_default();
                if let Some(s) = singles.as_deref_mut() {
                    s.note(&mut n.ord, here);
                }
                if rk.rev.main <= rev {
                    n.at_rev = Some((rk.rev, rk.tombstone));
                }
                if rk.rev.main <= compact {
                    n.at_compact = Some((rk.rev, rk.tombstone));
                }
                n.live_now = !rk.tombstone;
            }
        }
        e = c.next()?;
    }
    Ok(())
}

/// Part of [`HashKv::prepare`]'s pre-pass made ahead of time: the entries of bucket `key`
/// from the finished compaction up to main revision `upto`, read from a database whose
/// entries up to `upto` are those of the one hashed later. A point-in-time replay only
/// adds revisions after its base's, so the pre-pass over the base can be read on a thread
/// of its own while the window is, instead of after the replay. It fits a hash at or
/// after `upto` with a compaction at or after it, and the same finished compaction: there
/// every entry it read counts as its key's newest at or below both, as the whole pre-pass
/// would count it.
#[derive(Debug, Clone)]
pub struct PrePass {
    pub(super) from: i64,
    pub(super) upto: i64,
    pub(super) later: FpMap<Newest>,
    pub(super) singles: Singles,
}

impl PrePass {
    /// The pre-pass over `db`'s entries up to main revision `upto`.
    pub fn run<R: ReadAt>(db: &Db<R>, upto: i64) -> Result<PrePass, FormatError> {
        let finished = crate::etcd::meta_fields(db)?.finished_compact;
        // A compaction at or after `upto` (what `fits` asks) leaves unique_upto = finished
        // when the finished one is at or below `upto`; beyond it nothing is read here.
        let from = first_after(finished.unwrap_or(-1));
        let mut later = FpMap::default();
        let mut singles = Singles {
            from,
            upto,
            ..Singles::default()
        };
        scan_later(db, from, upto, upto, upto, &mut later, Some(&mut singles))?;
        Ok(PrePass {
            from,
            upto,
            later,
            singles,
        })
    }

    /// Whether this pre-pass is the start of one from `from` for a hash at `rev` with
    /// compaction `compact`: every entry it read (at or below `upto`) is then at or below
    /// both, as it counted them.
    pub(super) fn fits(&self, from: i64, rev: i64, compact: i64) -> bool {
        self.from == from && from <= self.upto && rev >= self.upto && compact >= self.upto
    }
}
