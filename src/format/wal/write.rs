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

/// `raftpb.ConfChange{ID 0, AddNode, node, context}` as gogo encodes it.
pub fn conf_change_add(node: u64, context: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode::field_varint(&mut out, 1, 0);
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
    let n = members.len() as u64;
    let mut w = SegmentWriter::new(0);
    w.record(METADATA, &encode::metadata(node, cluster));
    w.record(SNAPSHOT, &encode::snapshot(0, 0, &[]));
    for (i, (id, json)) in members.iter().enumerate() {
        let cc = conf_change_add(*id, json);
        w.record(ENTRY, &encode::entry(1, 1, i as u64 + 1, Some(&cc)));
    }
    let lowest = members.first().map(|m| m.0).unwrap_or(0);
    w.record(STATE, &encode::hard_state(1, lowest, n));
    let voters: Vec<u64> = members.iter().map(|m| m.0).collect();
    w.record(SNAPSHOT, &encode::snapshot(n, 1, &voters));
    w.into_bytes()
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
        let scan = crate::format::wal::record::Record::decode(&one[8..12]);
        assert!(scan.is_ok());
    }
}
