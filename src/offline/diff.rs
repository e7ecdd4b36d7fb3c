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

use crate::format::bolt::{Db, FormatError};
use crate::format::etcd::{buckets, last_revision, KeyValueRef, RevKey};
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

fn fe(e: FormatError) -> Error {
    e.into()
}

fn user_key(v: &[u8]) -> Option<Vec<u8>> {
    KeyValueRef::decode(v)
        .ok()
        .filter(|kv| !kv.key.is_empty())
        .map(|kv| kv.key.to_vec())
}

/// Latest state of each of `keys` in this database (None if deleted).
fn latest<R: ReadAt>(
    db: &Db<R>,
    keys: &HashSet<Vec<u8>>,
) -> Result<BTreeMap<Vec<u8>, Option<Side>>> {
    let mut out = BTreeMap::new();
    let Some(b) = db.bucket(buckets::KEY).map_err(fe)? else {
        return Ok(out);
    };
    let mut c = b.cursor();
    while let Some(e) = c.next().map_err(fe)? {
        let Some(rk) = RevKey::parse(e.key) else {
            continue;
        };
        let Ok(kv) = KeyValueRef::decode(e.value) else {
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

/// Compare two databases.
pub fn diff<A: ReadAt, B: ReadAt>(a: &Db<A>, b: &Db<B>, opts: &DiffOptions) -> Result<DiffResult> {
    let mut s = DiffSummary {
        revision_a: last_revision(a).map_err(fe)?,
        revision_b: last_revision(b).map_err(fe)?,
        ..DiffSummary::default()
    };
    let ba = a.bucket(buckets::KEY).map_err(fe)?;
    let bb = b.bucket(buckets::KEY).map_err(fe)?;
    let mut touched: HashSet<Vec<u8>> = HashSet::new();
    let wanted = |k: &Option<Vec<u8>>| k.as_ref().is_some_and(|k| k.starts_with(&opts.prefix));
    let mut ca = ba.as_ref().map(|b| b.cursor());
    let mut cb = bb.as_ref().map(|b| b.cursor());
    let mut more_a = match &mut ca {
        Some(c) => c.next().map_err(fe)?.is_some(),
        None => false,
    };
    let mut more_b = match &mut cb {
        Some(c) => c.next().map_err(fe)?.is_some(),
        None => false,
    };
    while more_a || more_b {
        let ea = match (&ca, more_a) {
            (Some(c), true) => c.current().map_err(fe)?,
            _ => None,
        };
        let eb = match (&cb, more_b) {
            (Some(c), true) => c.current().map_err(fe)?,
            _ => None,
        };
        let (step_a, step_b) = match (ea, eb) {
            (Some(x), Some(y)) => match x.key.cmp(y.key) {
                std::cmp::Ordering::Equal => {
                    if x.value != y.value {
                        s.revisions_differing += 1;
                        for k in [user_key(x.value), user_key(y.value)] {
                            if wanted(&k) {
                                touched.extend(k);
                            }
                        }
                    }
                    (true, true)
                }
                std::cmp::Ordering::Less => {
                    let k = user_key(x.value);
                    if wanted(&k) {
                        s.revisions_only_in_a += 1;
                        touched.extend(k);
                    }
                    (true, false)
                }
                std::cmp::Ordering::Greater => {
                    let k = user_key(y.value);
                    if wanted(&k) {
                        s.revisions_only_in_b += 1;
                        touched.extend(k);
                    }
                    (false, true)
                }
            },
            (Some(x), None) => {
                let k = user_key(x.value);
                if wanted(&k) {
                    s.revisions_only_in_a += 1;
                    touched.extend(k);
                }
                (true, false)
            }
            (None, Some(y)) => {
                let k = user_key(y.value);
                if wanted(&k) {
                    s.revisions_only_in_b += 1;
                    touched.extend(k);
                }
                (false, true)
            }
            (None, None) => break,
        };
        if step_a {
            more_a = match &mut ca {
                Some(c) => c.next().map_err(fe)?.is_some(),
                None => false,
            };
        }
        if step_b {
            more_b = match &mut cb {
                Some(c) => c.next().map_err(fe)?.is_some(),
                None => false,
            };
        }
    }
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
        let r = diff(&da, &db, &DiffOptions::default()).unwrap();
        assert_eq!(r.summary.added, 20);
        assert_eq!(r.summary.removed, 0);
        assert_eq!(r.summary.revisions_only_in_b, 20);
        assert_eq!(r.keys[0].key, "/k/000040");
        let r = diff(&db, &da, &DiffOptions::default()).unwrap();
        assert_eq!(r.summary.removed, 20);
        let r = diff(
            &da,
            &db,
            &DiffOptions {
                prefix: b"/k/00005".to_vec(),
            },
        )
        .unwrap();
        assert_eq!(r.summary.added, 10);
        let r = diff(&da, &da, &DiffOptions::default()).unwrap();
        assert_eq!(r.keys.len(), 0);
    }
}
