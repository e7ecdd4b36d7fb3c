//! Zero-copy decoding of the few protobuf messages etcd stores in its buckets.
//!
//! Hand-written over the wire format rather than `prost` structs: the checker decodes every
//! `mvccpb.KeyValue` of a database (a gigabyte of them), and borrowing key and value from
//! the page instead of copying them into fresh `Vec`s keeps that pass cheap. Unknown fields
//! are skipped, as protobuf requires; every length is checked.

use std::fmt;

use crate::wire::{Reader, Value, WireError, WireErrorKind};

/// A protobuf decoding error, with the byte offset inside the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protobuf {what} at byte {at}")]
pub struct ProtoError {
    pub at: usize,
    pub what: &'static str,
}

/// A field value on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates the (field number, value) pairs of a message, over the one wire reader of
/// `format/` ([`crate::wire`]): gogo 1.3.2's rules, as etcd decodes these values.
/// Unknown groups are skipped like any unknown field.
pub struct Fields<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields {
            reader: Reader::new(buf),
            failed: false,
        }
    }
}

/// The wire reader's error in this module's terms (its public API predates the shared
/// reader).
fn proto_error(e: &WireError) -> ProtoError {
    let what = match e.kind {
        WireErrorKind::UnexpectedEof => "length past end of message",
        WireErrorKind::IntOverflow => "varint overflow",
        WireErrorKind::InvalidLength => "negative length",
        WireErrorKind::IllegalTag(_) => "field number 0",
        WireErrorKind::EndGroupOutsideGroup => "end group outside a group",
        WireErrorKind::IllegalWireType(_) => "unsupported wire type",
        WireErrorKind::WrongWireType { .. } => "wrong wire type for field",
    };
    ProtoError { at: e.pos, what }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Wire<'a>), ProtoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let w = match self.reader.next_field() {
                Ok(None) => return None,
                Ok(Some((n, v))) => (n, v),
                Err(e) => {
                    // Stop after the first error.
                    self.failed = true;
                    return Some(Err(proto_error(&e)));
                }
            };
            let value = match w.1 {
                Value::Varint(x) => Wire::Varint(x),
                Value::Fixed64(x) => Wire::Fixed64(x),
                Value::Bytes(b) => Wire::Bytes(b),
                Value::Fixed32(x) => Wire::Fixed32(x),
                Value::Group => continue,
            };
            return Some(Ok((w.0, value)));
        }
    }
}

fn wrong_type(at: usize) -> ProtoError {
    ProtoError {
        at,
        what: "wrong wire type for field",
    }
}

/// `mvccpb.KeyValue`, borrowing key and value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyValueRef<'a> {
    pub key: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: &'a [u8],
    pub lease: i64,
}

impl<'a> KeyValueRef<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self, ProtoError> {
        let mut kv = KeyValueRef::default();
        for f in Fields::new(buf) {
            let (n, w) = f?;
            match (n, w) {
                (1, Wire::Bytes(b)) => kv.key = b,
                (2, Wire::Varint(v)) => kv.create_revision = v as i64,
                (3, Wire::Varint(v)) => kv.mod_revision = v as i64,
                (4, Wire::Varint(v)) => kv.version = v as i64,
                (5, Wire::Bytes(b)) => kv.value = b,
                (6, Wire::Varint(v)) => kv.lease = v as i64,
                (1..=6, _) => return Err(wrong_type(0)),
                _ => {}
            }
        }
        Ok(kv)
    }
}

/// `leasepb.Lease`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    pub id: i64,
    pub ttl: i64,
    pub remaining_ttl: i64,
}

impl Lease {
    pub fn decode(buf: &[u8]) -> Result<Self, ProtoError> {
        let mut l = Lease::default();
        for f in Fields::new(buf) {
            match f? {
                (1, Wire::Varint(v)) => l.id = v as i64,
                (2, Wire::Varint(v)) => l.ttl = v as i64,
                (3, Wire::Varint(v)) => l.remaining_ttl = v as i64,
                (1..=3, _) => return Err(wrong_type(0)),
                _ => {}
            }
        }
        Ok(l)
    }
}

/// `etcdserverpb.AlarmMember`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlarmMember {
    pub member_id: u64,
    /// NONE 0, NOSPACE 1, CORRUPT 2.
    pub alarm: i32,
}

impl AlarmMember {
    pub fn decode(buf: &[u8]) -> Result<Self, ProtoError> {
        let mut a = AlarmMember::default();
        for f in Fields::new(buf) {
            match f? {
                (1, Wire::Varint(v)) => a.member_id = v,
                (2, Wire::Varint(v)) => a.alarm = v as i32,
                (1..=2, _) => return Err(wrong_type(0)),
                _ => {}
            }
        }
        Ok(a)
    }

    /// The alarm type's name as etcd prints it.
    pub fn alarm_name(&self) -> String {
        AlarmType(self.alarm).to_string()
    }
}

/// An alarm type number.
pub struct AlarmType(pub i32);

impl fmt::Display for AlarmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("NONE"),
            1 => f.write_str("NOSPACE"),
            2 => f.write_str("CORRUPT"),
            n => write!(f, "UNKNOWN({n})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_vector() {
        // A lease value as etcd 3.5 stores it: lease 4660 with TTL 3600.
        let l = Lease::decode(&[0x08, 0xb4, 0x24, 0x10, 0x90, 0x1c]).unwrap();
        assert_eq!(
            l,
            Lease {
                id: 4660,
                ttl: 3600,
                remaining_ttl: 0
            }
        );
    }

    #[test]
    fn tombstone_value_vector() {
        let v = hex::decode("0a0c2f7665632f64656c65746564").unwrap();
        let kv = KeyValueRef::decode(&v).unwrap();
        assert_eq!(kv.key, b"/vec/deleted");
        assert_eq!(kv.mod_revision, 0);
    }

    #[test]
    fn keyvalue_roundtrip_fields() {
        // key "a", create 2, mod 3, version 1, value "xy", lease 7
        let v = [
            0x0a, 1, b'a', 0x10, 2, 0x18, 3, 0x20, 1, 0x2a, 2, b'x', b'y', 0x30, 7,
        ];
        let kv = KeyValueRef::decode(&v).unwrap();
        assert_eq!(
            (
                kv.key,
                kv.create_revision,
                kv.mod_revision,
                kv.version,
                kv.value,
                kv.lease
            ),
            (&b"a"[..], 2, 3, 1, &b"xy"[..], 7)
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(KeyValueRef::decode(&[0x0a, 5, b'a']).is_err());
        assert!(KeyValueRef::decode(&[0x80]).is_err());
        assert!(KeyValueRef::decode(&[0x08, 1]).is_err()); // key as varint
        assert!(KeyValueRef::decode(&[0xff; 11]).is_err());
        assert!(AlarmMember::decode(&[0x0b]).is_err());
        assert!(KeyValueRef::decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    /// The same varint rule as the WAL reader (gogo 1.3.2, `format::wire`): a 10-byte
    /// varint whose last byte is above 1 decodes (this reader used to call it overflow); an
    /// 11-byte one overflows.
    #[test]
    fn varints_as_gogo_reads_them() {
        let mut ten = vec![0x30];
        ten.extend([0x80; 9]);
        ten.push(0x7f);
        let kv = KeyValueRef::decode(&ten).unwrap();
        assert_eq!(kv.lease, i64::MIN);
        let mut eleven = vec![0x30];
        eleven.extend([0x80; 10]);
        eleven.push(0x01);
        let e = KeyValueRef::decode(&eleven).unwrap_err();
        assert_eq!(e.what, "varint overflow");
    }
}
