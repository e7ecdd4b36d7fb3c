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
//! size of the database. The edits here are merged into the native restore's one
//! transaction ([`super::native::write_member_dirs_replayed`]).

use std::collections::BTreeMap;

use crate::error::InFile;
use crate::format::bolt::write::{cow_patch, Edit, Patch};
use crate::format::bolt::Db;
use crate::format::capture::{KeyValue, Record};
use crate::format::etcd::hashkv::HashKv;
use crate::format::etcd::{buckets, last_revision, meta_fields, RevKey, Revision};
use crate::io::ReadAt;
use crate::{Error, Result};

/// The edits that bring a database from its own revision to `to_revision`.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The backup's revision (its last key's main revision).
    pub base_revision: i64,
    pub to_revision: i64,
    /// Edits of buckets `key`, `lease` (when leases changed) and `meta` (a compaction).
    pub edits: Vec<Edit>,
    pub stats: ReplayStats,
    /// The live hashes recorded after the backup up to `to_revision`.
    pub live_hashes: Vec<LiveHash>,
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
}

/// A live `HashKV` capture recorded: what the replayed data must hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LiveHash {
    pub revision: i64,
    pub hash: u32,
    pub compact_revision: i64,
}

const RECORDS: &str = "capture records";

fn varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// A proto3 varint field, left out when zero (gogo's generated marshaller).
fn field_varint(out: &mut Vec<u8>, field: u8, v: i64) {
    if v != 0 {
        out.push(field << 3);
        varint(out, v as u64);
    }
}

/// A proto3 bytes field, left out when empty.
fn field_bytes(out: &mut Vec<u8>, field: u8, b: &[u8]) {
    if !b.is_empty() {
        out.push((field << 3) | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

/// `mvccpb.KeyValue.Marshal()`: fields in number order, zero values left out.
pub fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(kv.key.len() + kv.value.len() + 40);
    field_bytes(&mut out, 1, &kv.key);
    field_varint(&mut out, 2, kv.create_revision);
    field_varint(&mut out, 3, kv.mod_revision);
    field_varint(&mut out, 4, kv.version);
    field_bytes(&mut out, 5, &kv.value);
    field_varint(&mut out, 6, kv.lease);
    out
}

/// `leasepb.Lease{ID, TTL}.Marshal()`, as the lessor persists a grant.
pub fn encode_lease(id: i64, ttl: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(22);
    field_varint(&mut out, 1, id);
    field_varint(&mut out, 2, ttl);
    out
}

fn rev_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut k = RevKey::encode(Revision { main, sub }).to_vec();
    if tombstone {
        k.push(b't');
    }
    k
}

/// A capture that cannot be what etcd did: an integrity error naming the revision, with
/// the way out (every revision before it replays).
fn bad(rev: i64, what: impl std::fmt::Display) -> Error {
    let what = what.to_string();
    let advice = if what.contains("restore to revision") {
        String::new()
    } else {
        format!(" (the capture is damaged there: restore to revision {} at most, or from another backup)", rev - 1)
    };
    Error::integrity(RECORDS, format!("revision {rev}: {what}{advice}"))
}

/// A put as a watch delivered it must be one etcd could have written at its revision.
fn check_put(kv: &KeyValue) -> Result<()> {
    let rev = kv.mod_revision;
    if kv.key.is_empty() {
        return Err(bad(rev, "a put with an empty key"));
    }
    if kv.create_revision < 1 || kv.create_revision > rev || kv.version < 1 {
        return Err(bad(
            rev,
            format!(
                "put of {:?} has create revision {} and version {}: not a put etcd writes",
                String::from_utf8_lossy(&kv.key),
                kv.create_revision,
                kv.version
            ),
        ));
    }
    if kv.version == 1 && kv.create_revision != rev {
        return Err(bad(
            rev,
            format!(
                "put of {:?} is version 1 but was created at revision {}",
                String::from_utf8_lossy(&kv.key),
                kv.create_revision
            ),
        ));
    }
    Ok(())
}

/// The edits replaying `records` (stream order) onto `db` up to revision `to`.
///
/// Every revision after the database's own up to `to` must have its changes in the
/// records (revisions are dense in etcd: each one is a transaction with at least one
/// change); records after `to` are ignored. Errors name the revision: a gap or records out
/// of order is an integrity error (exit 3), `to` before the backup or after the last
/// recorded change a usage error (exit 2).
pub fn replay_edits<R: ReadAt>(db: &Db<R>, records: &[Record], to: i64) -> Result<Replay> {
    let base = last_revision(db).map_err(|e| e.in_file("snapshot"))?;
    let meta = meta_fields(db).map_err(|e| e.in_file("snapshot"))?;
    if to < base {
        return Err(Error::Usage(format!(
            "revision {to} is before the backup's revision {base}: restore it from an older backup"
        )));
    }
    let mut keys: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut stats = ReplayStats::default();
    let mut live_hashes = Vec::new();
    let mut leases: Option<BTreeMap<i64, Vec<u8>>> = None;
    let mut compact: Option<i64> = None;
    // The revision of the last change written, and the next sub revision inside it.
    let (mut last, mut sub) = (base, 0i64);
    let mut prev = i64::MIN;
    for r in records {
        let rev = r.revision();
        if rev < prev {
            return Err(bad(
                rev,
                format!("recorded after revision {prev}: the records are out of order"),
            ));
        }
        prev = rev;
        if rev > to {
            break;
        }
        match r {
            Record::Put(_) | Record::Delete { .. } => {
                if rev <= base {
                    return Err(bad(
                        rev,
                        format!("a change at or before the backup's revision {base}"),
                    ));
                }
                if rev != last {
                    if rev != last + 1 {
                        return Err(bad(
                            last + 1,
                            format!(
                                "no change recorded (the next one is at revision {rev}): the capture has a gap; restore to revision {last} at most"
                            ),
                        ));
                    }
                    last = rev;
                    sub = 0;
                    stats.revisions += 1;
                }
                match r {
                    Record::Put(kv) => {
                        check_put(kv)?;
                        keys.push((rev_key(rev, sub, false), encode_kv(kv)));
                        stats.puts += 1;
                    }
                    Record::Delete { key, .. } => {
                        if key.is_empty() {
                            return Err(bad(rev, "a delete with an empty key"));
                        }
                        let tomb = KeyValue {
                            key: key.clone(),
                            ..KeyValue::default()
                        };
                        keys.push((rev_key(rev, sub, true), encode_kv(&tomb)));
                        stats.deletes += 1;
                    }
                    _ => {}
                }
                sub += 1;
            }
            Record::LeaseGrant { id, ttl, .. } => {
                if *id <= 0 {
                    return Err(bad(rev, format!("lease grant with id {id}")));
                }
                let map = match &mut leases {
                    Some(m) => m,
                    None => leases.insert(read_leases(db)?),
                };
                map.insert(*id, encode_lease(*id, *ttl));
                stats.lease_grants += 1;
            }
            Record::LeaseRevoke { id, .. } => {
                let map = match &mut leases {
                    Some(m) => m,
                    None => leases.insert(read_leases(db)?),
                };
                map.remove(id);
                stats.lease_revokes += 1;
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
                compact = compact.max(Some(*compact_revision));
            }
            Record::LiveHash {
                hash,
                compact_revision,
                ..
            } => {
                if rev > base {
                    live_hashes.push(LiveHash {
                        revision: rev,
                        hash: *hash,
                        compact_revision: *compact_revision,
                    });
                }
            }
            Record::Clock { .. } => {}
        }
    }
    if last < to {
        return Err(Error::Usage(format!(
            "revision {to} is beyond the last recorded change (revision {last}): restore to revision {last} at most"
        )));
    }
    let mut edits = Vec::new();
    if !keys.is_empty() {
        edits.push(Edit {
            bucket: buckets::KEY.to_vec(),
            clear: false,
            puts: keys,
        });
    }
    if let Some(map) = leases {
        edits.push(Edit {
            bucket: buckets::LEASE.to_vec(),
            clear: true,
            puts: map
                .into_iter()
                .map(|(id, v)| (id.to_be_bytes().to_vec(), v))
                .collect(),
        });
    }
    let base_compact = meta.finished_compact.max(meta.scheduled_compact);
    if let Some(c) = compact.filter(|c| Some(*c) > base_compact) {
        edits.push(Edit {
            bucket: buckets::META.to_vec(),
            clear: false,
            puts: vec![(b"scheduledCompactRev".to_vec(), rev_key(c, 0, false))],
        });
        stats.compact_revision = Some(c);
    }
    Ok(Replay {
        base_revision: base,
        to_revision: to,
        edits,
        stats,
        live_hashes,
    })
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

/// A replay with its proof: the patch alone (no restore edits), the offline `hashkv` of
/// the replayed data at `to_revision`, and the live hashes it was checked against.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub replay: Replay,
    pub patch: Patch,
    /// `hashkv` at `to_revision` (None when etcd would refuse it: `to_revision` is the
    /// compaction revision on a 3.5 db).
    pub hashkv: Option<u32>,
    /// Revisions of the live hashes that matched.
    pub checked: Vec<i64>,
}

/// Replay `records` onto the database image `db` up to `to`, compute the `hashkv` at `to`
/// offline, and compare every live hash recorded after the backup up to `to` with the
/// replayed data's hash at its revision (one pass over bucket `key` for all of them). A
/// mismatch is an integrity error (exit 3) naming the revision.
pub fn replay(db: &dyn ReadAt, records: &[Record], to: i64) -> Result<Replayed> {
    let (replay, patch) = {
        let bolt = Db::open(db).map_err(|e| e.in_file("snapshot"))?;
        let replay = replay_edits(&bolt, records, to)?;
        let patch = cow_patch(&bolt, &replay.edits).map_err(|e| e.in_file("snapshot"))?;
        (replay, patch)
    };
    let image = super::predict::Patched::new(db, &patch);
    let bolt = Db::open(&image).map_err(|e| e.in_file("replayed snapshot"))?;
    let (hashkv, checked) = hashes(&bolt, &replay)?;
    Ok(Replayed {
        replay,
        patch,
        hashkv,
        checked,
    })
}

/// The hash at `to_revision` and the live hashes' check, in one pass over bucket `key`.
fn hashes<R: ReadAt>(db: &Db<R>, replay: &Replay) -> Result<(Option<u32>, Vec<i64>)> {
    let file = "replayed snapshot";
    let m = meta_fields(db).map_err(|e| e.in_file(file))?;
    let current = last_revision(db).map_err(|e| e.in_file(file))?;
    let own = m.finished_compact.max(m.scheduled_compact).unwrap_or(-1);
    let mut wanted = vec![(replay.to_revision, own, None)];
    for l in &replay.live_hashes {
        wanted.push((l.revision, l.compact_revision, Some(l.hash)));
    }
    let mut hashers = Vec::new();
    for (rev, compact, want) in wanted {
        match HashKv::prepare_with_compact(db, rev, current, m.finished_compact, compact)
            .map_err(|e| e.in_file(file))?
        {
            Ok(h) => hashers.push((Some(h), want)),
            // etcd would refuse it too: nothing to compare.
            Err(_) => hashers.push((None, want)),
        }
    }
    if let Some(b) = db.bucket(buckets::KEY).map_err(|e| e.in_file(file))? {
        let mut c = b.cursor();
        while let Some(e) = c.next().map_err(|e| e.in_file(file))? {
            for (h, _) in hashers
                .iter_mut()
                .filter_map(|(h, w)| Some((h.as_mut()?, w)))
            {
                h.feed(e.key, e.value);
            }
        }
    }
    let mut it = hashers.into_iter();
    let at_to = it.next().and_then(|(h, _)| h).map(|h| h.finish());
    let mut checked = Vec::new();
    for (h, want) in it {
        let (Some(h), Some(want)) = (h, want) else {
            continue;
        };
        let got = h.finish();
        if got != want {
            return Err(Error::integrity(
                RECORDS,
                format!(
                    "revision {}: the backup with the captured changes hashes to {got:08x}, the live cluster's hashkv at that revision was {want:08x}; the capture does not match the cluster: restore to a revision before {} or from another backup",
                    h.rev, h.rev
                ),
            ));
        }
        checked.push(h.rev);
    }
    Ok((at_to, checked))
}

#[cfg(any(test, feature = "testkit"))]
pub mod fuzzing;

#[cfg(test)]
mod tests;
