//! `lifeboat diff A B`: which user keys were added, removed or changed between two
//! database images.
//!
//! Both `key` buckets are ordered by revision, so they are merged in one streamed pass:
//! revisions present in both with equal bytes are shared history and cost nothing; the
//! others (written after A, compacted away, or diverging) name the user keys that *may*
//! differ. A second streamed pass over each bucket finds, for those keys only, their latest
//! state in A and in B. Memory grows with the difference, not with the databases.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::get::decode_entry;
use crate::error::InFile;
use crate::format::bolt::{Bucket, Cursor, Db, Entry, FormatError};
use crate::format::etcd::{buckets, last_revision};
use crate::io::ReadAt;
use crate::{Error, Result};

/// What to compare.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Only user keys starting with this.
    pub prefix: Vec<u8>,
}

/// How a key differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// Latest state of a key on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Side {
    pub mod_revision: i64,
    pub version: i64,
    pub value_size: u64,
}

/// One differing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyDiff {
    /// The user key (lossy UTF-8).
    pub key: String,
    pub change: Change,
    /// Latest live state in A (None: absent or deleted).
    pub a: Option<Side>,
    pub b: Option<Side>,
}

/// Counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiffSummary {
    pub revision_a: i64,
    pub revision_b: i64,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    /// Revisions stored only in A (compacted away in B, or diverging history).
    pub revisions_only_in_a: u64,
    /// Revisions stored only in B (written after A, or diverging history).
    pub revisions_only_in_b: u64,
    /// Revisions with the same key but different bytes: the two are not one history.
    pub revisions_differing: u64,
}

/// The result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiffResult {
    pub summary: DiffSummary,
    /// Differing keys in key order.
    pub keys: Vec<KeyDiff>,
}

/// One database and the name it is known by in errors: `diff A B` must say which of the
/// two is damaged.
pub struct Named<'a, R> {
    pub db: &'a Db<R>,
    pub name: &'a str,
}

impl<R> Clone for Named<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R> Copy for Named<'_, R> {}

impl<R> Named<'_, R> {
    fn fe(&self) -> impl Fn(FormatError) -> Error + '_ {
        move |e| e.in_file(self.name)
    }
}

/// The user key of an entry of bucket `key` (None for a compaction marker); an entry that
/// does not decode is damage.
fn user_key(e: &Entry<'_>, name: &str) -> Result<Option<Vec<u8>>> {
    let entry = decode_entry(e).map_err(|err| err.in_file(name))?;
    Ok(entry.map(|(_, kv)| kv.key.to_vec()))
}

/// Latest state of each of `keys` in this database (None if deleted).
fn latest<R: ReadAt>(
    side: Named<'_, R>,
    keys: &HashSet<Vec<u8>>,
) -> Result<BTreeMap<Vec<u8>, Option<Side>>> {
    let fe = side.fe();
    let mut out = BTreeMap::new();
    let Some(b) = side.db.bucket(buckets::KEY).map_err(&fe)? else {
        return Ok(out);
    };
    let mut c = b.cursor();
    while let Some(e) = c.next().map_err(&fe)? {
        let Some((rk, kv)) = decode_entry(&e).map_err(&fe)? else {
            continue;
        };
        if !keys.contains(kv.key) {
            continue;
        }
        let side = (!rk.tombstone).then_some(Side {
            mod_revision: rk.rev.main,
            version: kv.version,
            value_size: kv.value.len() as u64,
        });
        out.insert(kv.key.to_vec(), side);
    }
    Ok(out)
}

/// Where a merge step leaves a revision: in both (same or different bytes), or one side.
enum Step {
    Both,
    OnlyA,
    OnlyB,
}

/// A cursor over bucket `key` of one side, remembering whether it has an entry.
struct Stream<'db, R> {
    cursor: Option<Cursor<'db, R>>,
    more: bool,
    name: &'db str,
}

impl<'db, R: ReadAt> Stream<'db, R> {
    fn new(bucket: Option<&'db Bucket<'db, R>>, name: &'db str) -> Result<Self> {
        let mut s = Stream {
            cursor: bucket.map(|b| b.cursor()),
            more: true,
            name,
        };
        s.step()?;
        Ok(s)
    }

    fn step(&mut self) -> Result<()> {
        self.more = match &mut self.cursor {
            Some(c) => c.next().map_err(|e| e.in_file(self.name))?.is_some(),
            None => false,
        };
        Ok(())
    }

    fn current(&self) -> Result<Option<Entry<'_>>> {
        match (&self.cursor, self.more) {
            (Some(c), true) => c.current().map_err(|e| e.in_file(self.name)),
            _ => Ok(None),
        }
    }
}

/// The merge pass: every revision that is not shared history (same key, same bytes in
/// both) names a user key that may differ.
fn touched_keys<A: ReadAt, B: ReadAt>(
    a: Named<'_, A>,
    b: Named<'_, B>,
    opts: &DiffOptions,
    s: &mut DiffSummary,
) -> Result<HashSet<Vec<u8>>> {
    let ba = a.db.bucket(buckets::KEY).map_err(a.fe())?;
    let bb = b.db.bucket(buckets::KEY).map_err(b.fe())?;
    let mut sa = Stream::new(ba.as_ref(), a.name)?;
    let mut sb = Stream::new(bb.as_ref(), b.name)?;
    let mut touched: HashSet<Vec<u8>> = HashSet::new();
    let mut note = |k: Option<Vec<u8>>| match k {
        Some(k) if k.starts_with(&opts.prefix) => {
            touched.insert(k);
            true
        }
        _ => false,
    };
    loop {
        let step = match (sa.current()?, sb.current()?) {
            (Some(x), Some(y)) => match x.key.cmp(y.key) {
                std::cmp::Ordering::Equal => {
                    let (kx, ky) = (user_key(&x, a.name)?, user_key(&y, b.name)?);
                    if x.value != y.value {
                        s.revisions_differing += 1;
                        note(kx);
                        note(ky);
                    }
                    Step::Both
                }
                std::cmp::Ordering::Less => {
                    if note(user_key(&x, a.name)?) {
                        s.revisions_only_in_a += 1;
                    }
                    Step::OnlyA
                }
                std::cmp::Ordering::Greater => {
                    if note(user_key(&y, b.name)?) {
                        s.revisions_only_in_b += 1;
                    }
                    Step::OnlyB
                }
            },
            (Some(x), None) => {
                if note(user_key(&x, a.name)?) {
                    s.revisions_only_in_a += 1;
                }
                Step::OnlyA
            }
            (None, Some(y)) => {
                if note(user_key(&y, b.name)?) {
                    s.revisions_only_in_b += 1;
                }
                Step::OnlyB
            }
            (None, None) => break,
        };
        match step {
            Step::Both => {
                sa.step()?;
                sb.step()?;
            }
            Step::OnlyA => sa.step()?,
            Step::OnlyB => sb.step()?,
        }
    }
    Ok(touched)
}

/// Compare two databases. Every page read on either side is validated and every entry
/// of bucket `key` must decode; damage is an integrity error naming the side's file.
pub fn diff<A: ReadAt, B: ReadAt>(
    a: Named<'_, A>,
    b: Named<'_, B>,
    opts: &DiffOptions,
) -> Result<DiffResult> {
    let mut s = DiffSummary {
        revision_a: last_revision(a.db).map_err(a.fe())?,
        revision_b: last_revision(b.db).map_err(b.fe())?,
        ..DiffSummary::default()
    };
    let touched = touched_keys(a, b, opts, &mut s)?;
    let la = latest(a, &touched)?;
    let lb = latest(b, &touched)?;
    let mut keys: Vec<&Vec<u8>> = touched.iter().collect();
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let sa = la.get(k).copied().flatten();
        let sb = lb.get(k).copied().flatten();
        let change = match (sa, sb) {
            (None, Some(_)) => Change::Added,
            (Some(_), None) => Change::Removed,
            (Some(x), Some(y)) if x != y => Change::Changed,
            _ => continue,
        };
        match change {
            Change::Added => s.added += 1,
            Change::Removed => s.removed += 1,
            Change::Changed => s.changed += 1,
        }
        out.push(KeyDiff {
            key: String::from_utf8_lossy(k).into_owned(),
            change,
            a: sa,
            b: sb,
        });
    }
    Ok(DiffResult {
        summary: s,
        keys: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bolt::build::etcd_like;

    #[test]
    fn diff_of_growing_db() {
        let a = etcd_like(4096, 40, 5);
        let b = etcd_like(4096, 60, 5);
        let (da, db) = (Db::open(&a[..]).unwrap(), Db::open(&b[..]).unwrap());
        let (da, db) = (Named { db: &da, name: "a" }, Named { db: &db, name: "b" });
        let r = diff(da, db, &DiffOptions::default()).unwrap();
        assert_eq!(r.summary.added, 20);
        assert_eq!(r.summary.removed, 0);
        assert_eq!(r.summary.revisions_only_in_b, 20);
        assert_eq!(r.keys[0].key, "/k/000040");
        let r = diff(db, da, &DiffOptions::default()).unwrap();
        assert_eq!(r.summary.removed, 20);
        let r = diff(
            da,
            db,
            &DiffOptions {
                prefix: b"/k/00005".to_vec(),
            },
        )
        .unwrap();
        assert_eq!(r.summary.added, 10);
        let r = diff(da, da, &DiffOptions::default()).unwrap();
        assert_eq!(r.keys.len(), 0);
    }
}
