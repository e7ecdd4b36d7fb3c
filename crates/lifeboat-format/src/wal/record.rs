//! `walpb.Record` and the small raft messages the WAL carries (formats §5.3, §5.5), decoded
//! without copying and with gogo's error behaviour (see [`crate::wire`]).

use crate::wire::{bytes, varint, Reader, Value, WireError};

/// Record types (formats §5.3).
pub const METADATA: i64 = 1;
pub const ENTRY: i64 = 2;
pub const STATE: i64 = 3;
pub const CRC: i64 = 4;
pub const SNAPSHOT: i64 = 5;

/// A record's name, for reports.
pub fn type_name(t: i64) -> &'static str {
    match t {
        METADATA => "metadata",
        ENTRY => "entry",
        STATE => "state",
        CRC => "crc",
        SNAPSHOT => "snapshot",
        _ => "unknown",
    }
}

/// A decoded `walpb.Record`; `data` borrows from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub rtype: i64,
    pub crc: u32,
    /// `None` when the field is absent (crc records); gogo makes a present-but-empty field
    /// an empty slice, which the CRC treats the same way.
    pub data: Option<&'a [u8]>,
}

impl<'a> Record<'a> {
    /// Unmarshal like gogo's `Record.Unmarshal`: later occurrences of a field win.
    pub fn decode(buf: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let mut rec = Record {
            rtype: 0,
            crc: 0,
            data: None,
        };
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => rec.rtype = varint(&r, "Type", v)? as i64,
                2 => rec.crc = varint(&r, "Crc", v)? as u32,
                3 => rec.data = Some(bytes(&r, "Data", v)?),
                _ => {}
            }
        }
        Ok(rec)
    }

    pub fn data(&self) -> &'a [u8] {
        self.data.unwrap_or_default()
    }
}

/// `raftpb.Entry` types.
pub const ENTRY_NORMAL: i64 = 0;
pub const ENTRY_CONF_CHANGE: i64 = 1;
pub const ENTRY_CONF_CHANGE_V2: i64 = 2;

pub fn entry_type_name(t: i64) -> &'static str {
    match t {
        ENTRY_NORMAL => "normal",
        ENTRY_CONF_CHANGE => "conf-change",
        ENTRY_CONF_CHANGE_V2 => "conf-change-v2",
        _ => "unknown",
    }
}

/// `raftpb.Entry`, data borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Entry<'a> {
    pub etype: i64,
    pub term: u64,
    pub index: u64,
    pub data: &'a [u8],
}

impl<'a> Entry<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let mut e = Entry::default();
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => e.etype = varint(&r, "Type", v)? as i32 as i64,
                2 => e.term = varint(&r, "Term", v)?,
                3 => e.index = varint(&r, "Index", v)?,
                4 => e.data = bytes(&r, "Data", v)?,
                _ => {}
            }
        }
        Ok(e)
    }
}

/// `raftpb.HardState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

impl HardState {
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let mut h = HardState::default();
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => h.term = varint(&r, "Term", v)?,
                2 => h.vote = varint(&r, "Vote", v)?,
                3 => h.commit = varint(&r, "Commit", v)?,
                _ => {}
            }
        }
        Ok(h)
    }
}

/// `raftpb.ConfState`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ConfState {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners_next: Vec<u64>,
    pub auto_leave: bool,
}

/// Repeated u64: gogo accepts both unpacked (one tag per element) and packed forms.
fn push_u64s(
    r: &Reader<'_>,
    name: &'static str,
    v: Value<'_>,
    out: &mut Vec<u64>,
) -> Result<(), WireError> {
    match v {
        Value::Varint(x) => out.push(x),
        Value::Bytes(b) => {
            // Packed form: bare varints back to back.
            let mut pos = 0usize;
            while pos < b.len() {
                let mut x: u64 = 0;
                let mut shift = 0u32;
                loop {
                    if shift >= 64 {
                        return Err(r.wrong_type(name, &v));
                    }
                    let Some(&byte) = b.get(pos) else {
                        return Err(r.wrong_type(name, &v));
                    };
                    pos += 1;
                    x |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
                    if byte < 0x80 {
                        break;
                    }
                    shift += 7;
                }
                out.push(x);
            }
        }
        other => return Err(r.wrong_type(name, &other)),
    }
    Ok(())
}

impl ConfState {
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let mut c = ConfState::default();
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => push_u64s(&r, "Voters", v, &mut c.voters)?,
                2 => push_u64s(&r, "Learners", v, &mut c.learners)?,
                3 => push_u64s(&r, "VotersOutgoing", v, &mut c.voters_outgoing)?,
                4 => push_u64s(&r, "LearnersNext", v, &mut c.learners_next)?,
                5 => c.auto_leave = varint(&r, "AutoLeave", v)? != 0,
                _ => {}
            }
        }
        Ok(c)
    }
}

/// `walpb.Snapshot`: a snapshot marker in the WAL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WalSnapshot {
    pub index: u64,
    pub term: u64,
    pub conf_state: Option<ConfState>,
}

impl WalSnapshot {
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let mut s = WalSnapshot::default();
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => s.index = varint(&r, "Index", v)?,
                2 => s.term = varint(&r, "Term", v)?,
                3 => s.conf_state = Some(ConfState::decode(bytes(&r, "ConfState", v)?)?),
                _ => {}
            }
        }
        Ok(s)
    }
}

/// `etcdserverpb.Metadata`: which member and cluster the WAL belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metadata {
    pub node_id: u64,
    pub cluster_id: u64,
}

impl Metadata {
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let mut m = Metadata::default();
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => m.node_id = varint(&r, "NodeID", v)?,
                2 => m.cluster_id = varint(&r, "ClusterID", v)?,
                _ => {}
            }
        }
        Ok(m)
    }
}

/// `raftpb.ConfChange` (v1): the member JSON rides in `context`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConfChange<'a> {
    pub id: u64,
    pub change_type: i64,
    pub node_id: u64,
    pub context: &'a [u8],
}

pub fn conf_change_type_name(t: i64) -> &'static str {
    match t {
        0 => "add-node",
        1 => "remove-node",
        2 => "update-node",
        3 => "add-learner-node",
        _ => "unknown",
    }
}

impl<'a> ConfChange<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let mut c = ConfChange::default();
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => c.id = varint(&r, "ID", v)?,
                2 => c.change_type = varint(&r, "Type", v)? as i32 as i64,
                3 => c.node_id = varint(&r, "NodeID", v)?,
                4 => c.context = bytes(&r, "Context", v)?,
                _ => {}
            }
        }
        Ok(c)
    }
}

/// `raftpb.ConfChangeV2`: joint-consensus changes (learners, several changes at once).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfChangeV2<'a> {
    pub transition: i64,
    /// (type, node id) pairs.
    pub changes: Vec<(i64, u64)>,
    pub context: &'a [u8],
}

impl<'a> ConfChangeV2<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let mut c = ConfChangeV2::default();
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => c.transition = varint(&r, "Transition", v)? as i32 as i64,
                2 => {
                    let b = bytes(&r, "Changes", v)?;
                    let mut rr = Reader::new(b);
                    let (mut t, mut id) = (0i64, 0u64);
                    while let Some((f, v)) = rr.next_field()? {
                        match f {
                            1 => t = varint(&rr, "Type", v)? as i32 as i64,
                            2 => id = varint(&rr, "NodeID", v)?,
                            _ => {}
                        }
                    }
                    c.changes.push((t, id));
                }
                3 => c.context = bytes(&r, "Context", v)?,
                _ => {}
            }
        }
        Ok(c)
    }
}

/// Encoders used by tests and by the writer of synthetic WALs in the test suite.
pub mod encode {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    pub fn field_varint(out: &mut Vec<u8>, field: u32, v: u64) {
        varint(out, u64::from(field) << 3);
        varint(out, v);
    }
    pub fn field_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
        varint(out, (u64::from(field) << 3) | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
    /// A `walpb.Record` as gogo writes it.
    pub fn record(rtype: i64, crc: u32, data: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        field_varint(&mut out, 1, rtype as u64);
        field_varint(&mut out, 2, u64::from(crc));
        if let Some(d) = data {
            field_bytes(&mut out, 3, d);
        }
        out
    }
    /// A frame: length word, record, padding to 8 bytes.
    pub fn frame(rec: &[u8]) -> Vec<u8> {
        let n = rec.len() as u64;
        let pad = (8 - n % 8) % 8;
        let mut word = n;
        if pad != 0 {
            word |= (0x80 | pad) << 56;
        }
        let mut out = word.to_le_bytes().to_vec();
        out.extend_from_slice(rec);
        out.resize(out.len() + pad as usize, 0);
        out
    }
    pub fn entry(etype: i64, term: u64, index: u64, data: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        field_varint(&mut out, 1, etype as u64);
        field_varint(&mut out, 2, term);
        field_varint(&mut out, 3, index);
        if let Some(d) = data {
            field_bytes(&mut out, 4, d);
        }
        out
    }
    pub fn hard_state(term: u64, vote: u64, commit: u64) -> Vec<u8> {
        let mut out = Vec::new();
        field_varint(&mut out, 1, term);
        field_varint(&mut out, 2, vote);
        field_varint(&mut out, 3, commit);
        out
    }
    pub fn metadata(node: u64, cluster: u64) -> Vec<u8> {
        let mut out = Vec::new();
        field_varint(&mut out, 1, node);
        field_varint(&mut out, 2, cluster);
        out
    }
    pub fn snapshot(index: u64, term: u64, voters: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        field_varint(&mut out, 1, index);
        field_varint(&mut out, 2, term);
        if index > 0 {
            let mut cs = Vec::new();
            for v in voters {
                field_varint(&mut cs, 1, *v);
            }
            field_varint(&mut cs, 5, 0);
            field_bytes(&mut out, 3, &cs);
        }
        out
    }
}

/// Builds WAL segment bytes the way etcd's encoder does, with the running CRC: for the
/// unit tests of the WAL model and of the member verdicts.
#[cfg(any(test, feature = "testkit"))]
pub struct TestLog {
    pub b: Vec<u8>,
    pub crc: u32,
}

#[cfg(any(test, feature = "testkit"))]
impl TestLog {
    /// A segment that starts with a crc record carrying `seed`.
    pub fn new(seed: u32) -> TestLog {
        let mut w = TestLog {
            b: Vec::new(),
            crc: seed,
        };
        w.b.extend(encode::frame(&encode::record(CRC, seed, None)));
        w
    }
    pub fn rec(&mut self, t: i64, data: &[u8]) -> &mut Self {
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.b
            .extend(encode::frame(&encode::record(t, self.crc, Some(data))));
        self
    }
    pub fn head(&mut self) -> &mut Self {
        self.rec(METADATA, &encode::metadata(7, 9))
    }
    pub fn entry(&mut self, term: u64, index: u64) -> &mut Self {
        self.rec(
            ENTRY,
            &encode::entry(0, term, index, Some(b"payload-bytes")),
        )
    }
    pub fn state(&mut self, term: u64, commit: u64) -> &mut Self {
        self.rec(STATE, &encode::hard_state(term, 7, commit))
    }
    pub fn snap(&mut self, index: u64, term: u64) -> &mut Self {
        self.rec(SNAPSHOT, &encode::snapshot(index, term, &[7]))
    }
    /// The bytes with a 4 KiB zero tail, as a preallocated segment has.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = self.b.clone();
        b.resize(b.len() + 4096, 0);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_roundtrip_and_crc_record_bytes() {
        // formats §7.2: the first crc record of a fresh WAL.
        let rec = encode::record(CRC, 0, None);
        assert_eq!(rec, [0x08, 0x04, 0x10, 0x00]);
        assert_eq!(
            encode::frame(&rec),
            [4, 0, 0, 0, 0, 0, 0, 0x84, 8, 4, 0x10, 0, 0, 0, 0, 0]
        );
        let r = Record::decode(&rec).unwrap();
        assert_eq!((r.rtype, r.crc, r.data), (CRC, 0, None));
        // snapshot{0,0} encodes as 08 00 10 00.
        assert_eq!(encode::snapshot(0, 0, &[]), [8, 0, 0x10, 0]);
    }

    #[test]
    fn messages_decode() {
        let e = encode::entry(ENTRY_NORMAL, 3, 42, Some(b"xy"));
        let d = Entry::decode(&e).unwrap();
        assert_eq!((d.etype, d.term, d.index, d.data), (0, 3, 42, &b"xy"[..]));
        let h = HardState::decode(&encode::hard_state(2, 7, 9)).unwrap();
        assert_eq!((h.term, h.vote, h.commit), (2, 7, 9));
        let s = WalSnapshot::decode(&encode::snapshot(10, 2, &[5, 6])).unwrap();
        assert_eq!(s.conf_state.unwrap().voters, vec![5, 6]);
        // Wrong wire type on a known field fails, like gogo.
        assert!(Record::decode(&[0x09, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
