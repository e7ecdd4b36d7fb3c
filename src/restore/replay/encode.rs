//! How etcd writes what a replay writes: `mvccpb.KeyValue` and `leasepb.Lease` as gogo's
//! generated marshallers encode them, revision keys, and the checks that a captured put is
//! one etcd could have written.

use crate::format::capture::KeyValue;
use crate::format::etcd::{RevKey, Revision};
use crate::{Error, Result};

pub(super) const RECORDS: &str = "capture records";

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
    encode_kv_into(&mut out, kv);
    out
}

/// [`encode_kv`] into `out` (cleared first): a reader of many keeps one buffer.
pub fn encode_kv_into(out: &mut Vec<u8>, kv: &KeyValue) {
    out.clear();
    field_bytes(out, 1, &kv.key);
    field_varint(out, 2, kv.create_revision);
    field_varint(out, 3, kv.mod_revision);
    field_varint(out, 4, kv.version);
    field_bytes(out, 5, &kv.value);
    field_varint(out, 6, kv.lease);
}

/// The value etcd's `delete` writes for `key`: a `KeyValue` holding only the key (into
/// `out`, cleared first).
pub(super) fn encode_tombstone_into(out: &mut Vec<u8>, key: &[u8]) {
    out.clear();
    field_bytes(out, 1, key);
}

/// `leasepb.Lease{ID, TTL}.Marshal()`, as the lessor persists a grant.
pub fn encode_lease(id: i64, ttl: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(22);
    field_varint(&mut out, 1, id);
    field_varint(&mut out, 2, ttl);
    out
}

/// [`rev_key`] into `out` (cleared first).
pub(super) fn rev_key_into(out: &mut Vec<u8>, main: i64, sub: i64, tombstone: bool) {
    out.clear();
    out.extend_from_slice(&RevKey::encode(Revision { main, sub }));
    if tombstone {
        out.push(b't');
    }
}

pub(super) fn rev_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    rev_key_into(&mut k, main, sub, tombstone);
    k
}

/// A capture that cannot be what etcd did: an integrity error naming the revision, with
/// the way out (every revision before it replays).
pub(super) fn bad(rev: i64, what: impl std::fmt::Display) -> Error {
    let what = what.to_string();
    let advice = if what.contains("restore to revision") {
        String::new()
    } else {
        format!(" (the capture is damaged there: restore to revision {} at most, or from another backup)", rev - 1)
    };
    Error::integrity(RECORDS, format!("revision {rev}: {what}{advice}"))
}

/// A put as a watch delivered it must be one etcd could have written at its revision.
pub(super) fn check_put(kv: &KeyValue) -> Result<()> {
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
