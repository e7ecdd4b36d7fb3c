//! Writing WAL segments: etcd's encoder (frames padded to 8 bytes, the CRC-32C chain over
//! record data, formats §5.2–§5.4), and the exact first segment `etcdutl snapshot restore`
//! writes for a member of a restored cluster (§7.2), so that a native restore is
//! byte-identical to etcdutl's.

use super::record::encode;

/// Record types (§5.3).
pub const METADATA: i64 = 1;
pub const ENTRY: i64 = 2;
pub const STATE: i64 = 3;
pub const CRC: i64 = 4;
pub const SNAPSHOT: i64 = 5;

/// `SegmentSizeBytes`: etcd preallocates every segment to this size (not 64 MiB).
pub const SEGMENT_SIZE: u64 = 64_000_000;

/// Name of the first segment of a new WAL.
pub const FIRST_SEGMENT: &str = "0000000000000000-0000000000000000.wal";

/// Frames records into a segment, carrying the running CRC like etcd's encoder.
pub struct SegmentWriter {
    bytes: Vec<u8>,
    crc: u32,
}

impl SegmentWriter {
    /// A segment that starts with a crc record holding `seed` (0 for a new WAL).
    pub fn new(seed: u32) -> SegmentWriter {
        let mut w = SegmentWriter {
            bytes: Vec::new(),
            crc: seed,
        };
        w.bytes
            .extend_from_slice(&encode::frame(&encode::record(CRC, seed, None)));
        w
    }

    /// Append a record of `rtype` (not crc) with `data`.
    pub fn record(&mut self, rtype: i64, data: &[u8]) {
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.bytes
            .extend_from_slice(&encode::frame(&encode::record(rtype, self.crc, Some(data))));
    }

    /// The segment's bytes so far (without preallocated space).
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Which release's `etcdutl snapshot restore` a restored member's files follow, byte for
/// byte. Every style boots on every etcd from 3.4 to 3.7 (tests/it/etcd_versions/native.rs); the
/// differences are in how the writing library encodes the same values:
/// * 3.4/3.5: gogo protobuf writes zero-valued fields (`ConfChange.ID 0`, `AutoLeave false`);
/// * 3.6: the same, and the v2 store in the .snap counts one failed Get (`getsFail 1`: 3.6
///   reads its empty store before adding the members);
/// * 3.7: Go protobuf with proto2 presence writes only the fields etcdutl sets (no
///   `ConfChange.ID`, no `ConfState.AutoLeave`), and `getsFail 1` as in 3.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreStyle {
    #[default]
    Etcd35,
    Etcd36,
    Etcd37,
}

impl RestoreStyle {
    /// The style of an etcd version string (`3.6`, `3.6.16`, `v3.7.3`); 3.5 for anything
    /// older or unknown, the newest style for anything newer than 3.7.
    pub fn for_version(version: &str) -> RestoreStyle {
        let v = version.trim().trim_start_matches('v');
        let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
        match (parts.next().flatten(), parts.next().flatten()) {
            (Some(3), Some(minor)) if minor >= 7 => RestoreStyle::Etcd37,
            (Some(3), Some(6)) => RestoreStyle::Etcd36,
            (Some(major), _) if major > 3 => RestoreStyle::Etcd37,
            _ => RestoreStyle::Etcd35,
        }
    }

    /// Whether zero-valued fields are written (gogo protobuf, etcd ≤ 3.6).
    pub fn writes_zero_fields(self) -> bool {
        self != RestoreStyle::Etcd37
    }

    /// `getsFail` in the restored v2 store's stats.
    pub fn v2_gets_fail(self) -> u64 {
        match self {
            RestoreStyle::Etcd35 => 0,
            _ => 1,
        }
    }
}

/// `raftpb.ConfChange{ID 0, AddNode, node, context}` as gogo encodes it.
pub fn conf_change_add(node: u64, context: &[u8]) -> Vec<u8> {
    conf_change_add_styled(node, context, RestoreStyle::Etcd35)
}

/// [`conf_change_add`] as `style`'s etcdutl encodes it (3.7 leaves the unset ID out).
pub fn conf_change_add_styled(node: u64, context: &[u8], style: RestoreStyle) -> Vec<u8> {
    let mut out = Vec::new();
    if style.writes_zero_fields() {
        encode::field_varint(&mut out, 1, 0);
    }
    encode::field_varint(&mut out, 2, 0);
    encode::field_varint(&mut out, 3, node);
    encode::field_bytes(&mut out, 4, context);
    out
}

/// The first segment of member `node`'s WAL after a restore of a cluster whose members
/// are `members` (id, member JSON), in ascending id order (§7.2): crc, metadata, empty
/// snapshot, one AddNode ConfChange per member at term 1, HardState{1, lowest id, N},
/// snapshot{N, 1, all voters}. Unpadded: the caller preallocates to [`SEGMENT_SIZE`].
pub fn restore_segment(node: u64, cluster: u64, members: &[(u64, Vec<u8>)]) -> Vec<u8> {
    restore_segment_styled(node, cluster, members, RestoreStyle::Etcd35)
}

/// [`restore_segment`] as `style`'s etcdutl writes it.
pub fn restore_segment_styled(
    node: u64,
    cluster: u64,
    members: &[(u64, Vec<u8>)],
    style: RestoreStyle,
) -> Vec<u8> {
    let n = members.len() as u64;
    let mut w = SegmentWriter::new(0);
    w.record(METADATA, &encode::metadata(node, cluster));
    w.record(SNAPSHOT, &encode::snapshot(0, 0, &[]));
    for (i, (id, json)) in members.iter().enumerate() {
        let cc = conf_change_add_styled(*id, json, style);
        w.record(ENTRY, &encode::entry(1, 1, i as u64 + 1, Some(&cc)));
    }
    let lowest = members.first().map(|m| m.0).unwrap_or(0);
    w.record(STATE, &encode::hard_state(1, lowest, n));
    let voters: Vec<u64> = members.iter().map(|m| m.0).collect();
    let mut snap = Vec::new();
    encode::field_varint(&mut snap, 1, n);
    encode::field_varint(&mut snap, 2, 1);
    encode::field_bytes(&mut snap, 3, &conf_state(&voters, style));
    w.record(SNAPSHOT, &snap);
    w.into_bytes()
}

/// `raftpb.ConfState{Voters}` as `style`'s etcdutl encodes it (gogo adds `AutoLeave false`).
pub fn conf_state(voters: &[u64], style: RestoreStyle) -> Vec<u8> {
    let mut cs = Vec::new();
    for v in voters {
        encode::field_varint(&mut cs, 1, *v);
    }
    if style.writes_zero_fields() {
        encode::field_varint(&mut cs, 5, 0);
    }
    cs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_record_is_etcds_crc_frame() {
        let b = SegmentWriter::new(0).into_bytes();
        assert_eq!(
            b,
            [4, 0, 0, 0, 0, 0, 0, 0x84, 8, 4, 0x10, 0, 0, 0, 0, 0].to_vec()
        );
    }

    #[test]
    fn restore_segment_is_framed() {
        let m = |id: u64, name: &str| {
            let j = format!(r#"{{"id":{id},"peerURLs":["http://10.0.0.1:2380"],"name":"{name}"}}"#);
            (id, j.into_bytes())
        };
        let one = restore_segment(
            0xc700564f4028b56b,
            0x1648f861f2b6c31c,
            &[m(0xc700564f4028b56b, "s")],
        );
        assert_eq!(one.len() % 8, 0);
        let scan = crate::wal::record::Record::decode(&one[8..12]);
        assert!(scan.is_ok());
    }
}
