//! The one protobuf wire reader of `format/`: decoding that behaves like gogo-protobuf
//! 1.3.2's generated `Unmarshal`, the code etcd 3.4/3.5 runs on every WAL record, snap file
//! and bucket value.
//!
//! etcd decides "torn write or corruption" by whether a record's bytes unmarshal and pass the
//! CRC (formats §5.7). To predict that decision for any damaged byte we need gogo's exact
//! notion of a decoding error, not a lenient parser's: a known field with the wrong wire
//! type fails, a tag whose field number is 0 (as `int32`) fails, unknown fields are skipped
//! with gogo's `skip` rules (groups included), and a length that runs past the buffer is
//! `unexpected EOF`. Everything borrows from the input.
//!
//! **Varints** follow gogo's generated loop, not protobuf-go's `protowire`:
//! `for shift := 0; ; shift += 7 { if shift >= 64 { ErrIntOverflow }; b := next;
//! v |= uint64(b&0x7f) << shift; if b < 0x80 { break } }`. So a varint has at most 10 bytes;
//! the 10th byte may be anything below 0x80 and only its lowest bit lands (bit 63, the rest
//! is shifted out silently); an 11th byte (the 10th with its continuation bit set) is
//! `integer overflow`. protowire would reject a 10th byte above 1: etcd does not, so neither
//! do we (see the `varint_rule` test).

use std::fmt;

/// A decoding failure, with the byte position inside the message where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub pos: usize,
    pub kind: WireErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireErrorKind {
    /// Input ended inside a tag, varint or length-delimited field.
    UnexpectedEof,
    /// A varint ran past 10 bytes (gogo `ErrIntOverflow`).
    IntOverflow,
    /// A negative or overflowing length (gogo `ErrInvalidLength`).
    InvalidLength,
    /// Field number 0 or negative as `int32`.
    IllegalTag(u64),
    /// End-group marker outside a group.
    EndGroupOutsideGroup,
    /// Wire types 6 and 7.
    IllegalWireType(u8),
    /// A known field arrived with a different wire type.
    WrongWireType { field: &'static str, wire_type: u8 },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            WireErrorKind::UnexpectedEof => write!(f, "proto: unexpected EOF")?,
            WireErrorKind::IntOverflow => write!(f, "proto: integer overflow")?,
            WireErrorKind::InvalidLength => write!(f, "proto: negative length found")?,
            WireErrorKind::IllegalTag(w) => write!(f, "proto: illegal tag {} (wire {w})", w >> 3)?,
            WireErrorKind::EndGroupOutsideGroup => {
                write!(f, "proto: wiretype end group for non-group")?
            }
            WireErrorKind::IllegalWireType(t) => write!(f, "proto: illegal wireType {t}")?,
            WireErrorKind::WrongWireType { field, wire_type } => {
                write!(f, "proto: wrong wireType = {wire_type} for field {field}")?
            }
        }
        write!(f, " at message byte {}", self.pos)
    }
}

impl std::error::Error for WireError {}

/// One field's value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
    /// A skipped group (only unknown fields can be groups in the messages we read).
    Group,
}

impl Value<'_> {
    pub fn wire_type(&self) -> u8 {
        match self {
            Value::Varint(_) => 0,
            Value::Fixed64(_) => 1,
            Value::Bytes(_) => 2,
            Value::Group => 3,
            Value::Fixed32(_) => 5,
        }
    }
}

/// Iterates over the fields of one message.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Byte position of the next field (after an error: where it happened).
    pub fn pos(&self) -> usize {
        self.pos
    }

    fn err(&self, kind: WireErrorKind) -> WireError {
        WireError {
            pos: self.pos,
            kind,
        }
    }

    /// gogo's varint loop (see the module doc): at most 10 bytes, bits past 64 dropped.
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut v: u64 = 0;
        let mut shift: u32 = 0;
        loop {
            if shift >= 64 {
                return Err(self.err(WireErrorKind::IntOverflow));
            }
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err(WireErrorKind::UnexpectedEof));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], WireError> {
        // gogo: a length that is negative as int64 is "invalid length"; past the end is EOF.
        if n > i64::MAX as u64 {
            return Err(self.err(WireErrorKind::InvalidLength));
        }
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.err(WireErrorKind::UnexpectedEof))?;
        let s = self.buf.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(s)
    }

    /// Skip a group whose start tag has just been read (gogo's depth-counting skip).
    fn skip_group(&mut self) -> Result<(), WireError> {
        let mut depth = 1u32;
        while depth > 0 {
            if self.pos >= self.buf.len() {
                return Err(self.err(WireErrorKind::UnexpectedEof));
            }
            let wire = self.varint()?;
            match (wire & 7) as u8 {
                0 => {
                    self.varint()?;
                }
                1 => {
                    self.take(8)?;
                }
                2 => {
                    let n = self.varint()?;
                    self.take(n)?;
                }
                3 => depth += 1,
                4 => depth -= 1,
                5 => {
                    self.take(4)?;
                }
                t => return Err(self.err(WireErrorKind::IllegalWireType(t))),
            }
        }
        Ok(())
    }

    /// The next field, or `None` at the end of the message.
    pub fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, WireError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let tag_pos = self.pos;
        let wire = self.varint()?;
        let wire_type = (wire & 7) as u8;
        if wire_type == 4 {
            self.pos = tag_pos;
            return Err(self.err(WireErrorKind::EndGroupOutsideGroup));
        }
        let field = (wire >> 3) as u32 as i32;
        if field <= 0 {
            self.pos = tag_pos;
            return Err(self.err(WireErrorKind::IllegalTag(wire)));
        }
        let value = match wire_type {
            0 => Value::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?)
            }
            3 => {
                self.skip_group()?;
                Value::Group
            }
            5 => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                Value::Fixed32(u32::from_le_bytes(a))
            }
            t => return Err(self.err(WireErrorKind::IllegalWireType(t))),
        };
        Ok(Some((field as u32, value)))
    }

    /// The error gogo returns for a known field with the wrong wire type.
    pub fn wrong_type(&self, field: &'static str, v: &Value<'_>) -> WireError {
        self.err(WireErrorKind::WrongWireType {
            field,
            wire_type: v.wire_type(),
        })
    }
}

/// Expect a varint for a known field.
pub fn varint(r: &Reader<'_>, field: &'static str, v: Value<'_>) -> Result<u64, WireError> {
    match v {
        Value::Varint(x) => Ok(x),
        other => Err(r.wrong_type(field, &other)),
    }
}

/// Expect a length-delimited field.
pub fn bytes<'a>(r: &Reader<'_>, field: &'static str, v: Value<'a>) -> Result<&'a [u8], WireError> {
    match v {
        Value::Bytes(b) => Ok(b),
        other => Err(r.wrong_type(field, &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_errors() {
        let mut r = Reader::new(&[0x08, 0x96, 0x01, 0x1a, 0x02, b'h', b'i']);
        assert_eq!(r.next_field().unwrap(), Some((1, Value::Varint(150))));
        assert_eq!(r.next_field().unwrap(), Some((3, Value::Bytes(b"hi"))));
        assert_eq!(r.next_field().unwrap(), None);

        let e = Reader::new(&[0x1a, 0x05, 1]).next_field().unwrap_err();
        assert_eq!(e.kind, WireErrorKind::UnexpectedEof);
        let e = Reader::new(&[0x00]).next_field().unwrap_err();
        assert!(matches!(e.kind, WireErrorKind::IllegalTag(_)));
        let e = Reader::new(&[0x0c]).next_field().unwrap_err();
        assert_eq!(e.kind, WireErrorKind::EndGroupOutsideGroup);
        let e = Reader::new(&[0x0f]).next_field().unwrap_err();
        assert_eq!(e.kind, WireErrorKind::IllegalWireType(7));
        let e = Reader::new(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1,
        ])
        .next_field()
        .unwrap_err();
        assert_eq!(e.kind, WireErrorKind::IntOverflow);
        // A group with a nested field is skipped whole.
        let mut r = Reader::new(&[0x0b, 0x10, 0x01, 0x0c, 0x08, 0x01]);
        assert_eq!(r.next_field().unwrap(), Some((1, Value::Group)));
        assert_eq!(r.next_field().unwrap(), Some((1, Value::Varint(1))));
        // Length that is negative as int64.
        let e = Reader::new(&[
            0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ])
        .next_field()
        .unwrap_err();
        assert_eq!(e.kind, WireErrorKind::InvalidLength);
    }

    /// The varint rule of gogo 1.3.2 (module doc), byte by byte.
    #[test]
    fn varint_rule() {
        let v = |b: &[u8]| Reader::new(b).varint();
        assert_eq!(v(&[0x00]).unwrap(), 0);
        assert_eq!(v(&[0x96, 0x01]).unwrap(), 150);
        // u64::MAX: nine 0xff then 0x01.
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(v(&max).unwrap(), u64::MAX);
        // A 10th byte above 1 is accepted: only its lowest bit lands (protowire would say
        // overflow; gogo, and so etcd, does not).
        let mut big = vec![0x80; 9];
        big.push(0x7f);
        assert_eq!(v(&big).unwrap(), 1 << 63);
        let mut two = vec![0x80; 9];
        two.push(0x02);
        assert_eq!(v(&two).unwrap(), 0);
        // An 11th byte overflows, whatever it holds.
        let mut eleven = vec![0x80; 10];
        eleven.push(0x00);
        assert_eq!(v(&eleven).unwrap_err().kind, WireErrorKind::IntOverflow);
        assert_eq!(v(&[0xff; 11]).unwrap_err().kind, WireErrorKind::IntOverflow);
        // Running out of bytes mid-varint is EOF, not overflow.
        assert_eq!(
            v(&[0x80; 9]).unwrap_err().kind,
            WireErrorKind::UnexpectedEof
        );
        assert_eq!(v(&[]).unwrap_err().kind, WireErrorKind::UnexpectedEof);
    }
}
