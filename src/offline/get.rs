//! `lifeboat get`: read keys out of a database image like `etcdctl get`.
//!
//! Bucket `key` is ordered by revision, not by user key, so a read scans it once up to the
//! asked revision and remembers, for the matching user keys only, their newest revision;
//! the values of the live ones are then fetched by revision, in key order. Memory is the
//! size of the answer's keys, not of the database.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::InFile;
use crate::format::bolt::{Db, Entry, FormatError, Problem};
use crate::format::etcd::{buckets, last_revision, meta_fields, KeyValueRef, RevKey, Revision};
use crate::io::ReadAt;
use crate::{Error, Result};

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    /// Treat the key as a prefix.
    pub prefix: bool,
    /// Read at this revision (0: the latest).
    pub rev: i64,
    /// Stop after this many keys (0: all).
    pub limit: usize,
}

/// One key as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: Vec<u8>,
    pub lease: i64,
}

/// The answer.
#[derive(Debug, Clone, Default)]
pub struct GetResult {
    /// The revision read at.
    pub revision: i64,
    /// The store's current revision (etcdctl's `header.revision`, whatever `--rev` says).
    pub current_revision: i64,
    pub kvs: Vec<Kv>,
    /// Matching keys (before `limit`).
    pub count: u64,
}

/// Read `key` (or everything under it with `prefix`) at `opts.rev`. `file` names the
/// input in errors. Every page read is validated and every entry of bucket `key` must
/// decode: a damaged one is an integrity error, never skipped (skipping would answer with
/// an older value, or none).
pub fn get<R: ReadAt>(db: &Db<R>, file: &str, key: &[u8], opts: &GetOptions) -> Result<GetResult> {
    let fe = |e: FormatError| e.in_file(file);
    let current = last_revision(db).map_err(fe)?;
    let m = meta_fields(db).map_err(fe)?;
    let compact = m.finished_compact.max(m.scheduled_compact).unwrap_or(0);
    let current = current.max(compact);
    if opts.rev > 0 && opts.rev < compact {
        return Err(Error::flag(
            "--rev",
            format!(
                "revision {} has been compacted (compact revision {compact})",
                opts.rev
            ),
        ));
    }
    if opts.rev > current {
        return Err(Error::flag(
            "--rev",
            format!("revision {} is in the future (latest {current})", opts.rev),
        ));
    }
    let rev = if opts.rev == 0 { current } else { opts.rev };
    let matches = |k: &[u8]| {
        if opts.prefix {
            k.starts_with(key)
        } else {
            k == key
        }
    };
    let mut newest: BTreeMap<Vec<u8>, (Revision, bool)> = BTreeMap::new();
    let Some(b) = db.bucket(buckets::KEY).map_err(fe)? else {
        return Ok(GetResult {
            revision: rev,
            current_revision: current,
            ..GetResult::default()
        });
    };
    let mut c = b.cursor();
    while let Some(e) = c.next().map_err(fe)? {
        let Some((rk, kv)) = decode_entry(&e).map_err(fe)? else {
            continue;
        };
        if rk.rev.main > rev {
            break;
        }
        if !matches(kv.key) {
            continue;
        }
        match newest.get_mut(kv.key) {
            Some(slot) => *slot = (rk.rev, rk.tombstone),
            None => {
                newest.insert(kv.key.to_vec(), (rk.rev, rk.tombstone));
            }
        }
    }
    let mut out = GetResult {
        revision: rev,
        current_revision: current,
        ..GetResult::default()
    };
    for (k, (r, tomb)) in newest {
        if tomb {
            continue;
        }
        out.count += 1;
        if opts.limit > 0 && out.kvs.len() >= opts.limit {
            continue;
        }
        let v = b.get(&RevKey::encode(r)).map_err(fe)?.ok_or_else(|| {
            Error::integrity(
                file,
                format!(
                    "bucket key: revision {}/{} vanished between two reads",
                    r.main, r.sub
                ),
            )
        })?;
        let kv = KeyValueRef::decode(&v).map_err(|e| {
            Error::integrity(
                file,
                format!("bucket key: revision {}/{}: {e}", r.main, r.sub),
            )
        })?;
        out.kvs.push(Kv {
            key: k,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            value: kv.value.to_vec(),
            lease: kv.lease,
        });
    }
    Ok(out)
}

/// The revision and key-value of an entry of bucket `key`: every entry there is one, so
/// one that does not decode is damage (with its page and offset). None for the empty
/// marker that 3.5.10+ `restore --bump-revision --mark-compacted` leaves.
pub(crate) fn decode_entry<'a>(
    e: &Entry<'a>,
) -> Result<Option<(RevKey, KeyValueRef<'a>)>, FormatError> {
    let bad = |what: String| FormatError::Corrupt(Problem::new(e.page, Some(e.offset), what));
    let rk = RevKey::parse(e.key).ok_or_else(|| {
        bad(format!(
            "bucket key: key of {} bytes is not a revision",
            e.key.len()
        ))
    })?;
    if e.value.is_empty() {
        return Ok(None);
    }
    let kv = KeyValueRef::decode(e.value).map_err(|err| {
        bad(format!(
            "bucket key: revision {}/{}: {err}",
            rk.rev.main, rk.rev.sub
        ))
    })?;
    if kv.key.is_empty() {
        return Err(bad(format!(
            "bucket key: revision {}/{} has an empty user key",
            rk.rev.main, rk.rev.sub
        )));
    }
    Ok(Some((rk, kv)))
}

/// Standard base64 (RFC 4648, padded), as etcdctl's JSON uses for keys and values.
pub fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(*c.first().unwrap_or(&0)) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        let idx = |sh: u32| char::from(T[((n >> sh) & 63) as usize]);
        s.push(idx(18));
        s.push(idx(12));
        s.push(if c.len() > 1 { idx(6) } else { '=' });
        s.push(if c.len() > 2 { idx(0) } else { '=' });
    }
    s
}

/// etcdctl-like JSON (`-w json`): keys and values in base64.
#[derive(Debug, Serialize)]
pub struct JsonResult {
    pub header: JsonHeader,
    pub kvs: Vec<JsonKv>,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct JsonHeader {
    /// The store's current revision, as etcdctl reports it (not the `--rev` read at).
    pub revision: i64,
}

#[derive(Debug, Serialize)]
pub struct JsonKv {
    pub key: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub lease: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl GetResult {
    pub fn to_json(&self, keys_only: bool) -> JsonResult {
        JsonResult {
            header: JsonHeader {
                revision: self.current_revision,
            },
            kvs: self
                .kvs
                .iter()
                .map(|kv| JsonKv {
                    key: base64(&kv.key),
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                    version: kv.version,
                    value: (!keys_only).then(|| base64(&kv.value)),
                    lease: kv.lease,
                })
                .collect(),
            count: self.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn get_from_built_db() {
        let img = crate::format::bolt::build::etcd_like(4096, 50, 5);
        let db = Db::open(&img[..]).unwrap();
        let r = get(&db, "t", b"/k/000007", &GetOptions::default()).unwrap();
        assert_eq!(r.kvs.len(), 1);
        assert_eq!(r.kvs[0].value, b"vvvvv");
        assert_eq!(r.kvs[0].mod_revision, 9);
        let r = get(
            &db,
            "t",
            b"/k/00001",
            &GetOptions {
                prefix: true,
                ..GetOptions::default()
            },
        )
        .unwrap();
        assert_eq!(r.kvs.len(), 10);
        let r = get(
            &db,
            "t",
            b"/k/",
            &GetOptions {
                prefix: true,
                rev: 5,
                ..GetOptions::default()
            },
        )
        .unwrap();
        assert_eq!(r.kvs.len(), 4);
        assert!(get(
            &db,
            "t",
            b"/k/",
            &GetOptions {
                rev: 500,
                ..GetOptions::default()
            }
        )
        .is_err());
    }

    /// A value that is not a KeyValue is damage naming the file and page, never skipped.
    #[test]
    fn undecodable_entries_are_damage() {
        let mut img = crate::format::bolt::build::etcd_like(4096, 50, 5);
        let (page, at) = {
            let db = Db::open(&img[..]).unwrap();
            let b = db.bucket(buckets::KEY).unwrap().unwrap();
            let mut c = b.cursor();
            let e = c
                .seek(&RevKey::encode(Revision { main: 9, sub: 0 }))
                .unwrap()
                .unwrap();
            (e.page, e.offset as usize + e.key.len())
        };
        img[at] = 0x0b; // field 1, wire type 3: not a KeyValue
        let db = Db::open(&img[..]).unwrap();
        let opts = GetOptions {
            prefix: true,
            ..GetOptions::default()
        };
        match get(&db, "t.db", b"/k/", &opts) {
            Err(Error::Corrupt { file, page: p, .. }) => {
                assert_eq!(file, "t.db");
                assert_eq!(p, page);
            }
            other => panic!("{other:?}"),
        }
    }
}
