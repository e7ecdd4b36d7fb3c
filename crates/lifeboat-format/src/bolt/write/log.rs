//! A log of the writer's transactions: the [`Edit`]s of each one, in commit order, as bytes
//! that can be kept and committed again onto the same database.
//!
//! `restore plan --compact` replays an hour of captured changes onto a copy of the backup
//! and keeps what that replay committed (a few MiB where the window holds GiB), so that
//! `restore apply` commits the same transactions onto the same backup instead of reading
//! and replaying the whole window again. The plan records the log's SHA-256; the log itself
//! carries no digest. No crate writes this: it is the input of our own writer.
//!
//! Layout, little-endian: the magic `LBEDITLG`, the format version (u16, 1) and flags (u16,
//! 0), then each transaction: the tag byte 1, the number of edits (u32), and each edit: the
//! bucket's name (u16 length, bytes), `clear` (one byte, 0 or 1), the number of puts (u32),
//! and each put: key (u32 length, bytes), value (u32 length, bytes). The file ends after a
//! whole transaction; nothing follows. Every length is checked against the bytes left, so a
//! count never allocates more than the input could hold.

use super::Edit;

/// The first bytes of an edit log.
pub const MAGIC: &[u8; 8] = b"LBEDITLG";
/// The one version this code reads and writes.
pub const VERSION: u16 = 1;
const HEADER_LEN: usize = 12;
const TXN_TAG: u8 = 1;
/// Fewest bytes an edit takes (empty bucket name, no puts), and a put (empty key and value).
const MIN_EDIT: usize = 2 + 1 + 4;
const MIN_PUT: usize = 4 + 4;

/// Why bytes are not an edit log, with the byte offset where it shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("offset {offset}: {what}")]
pub struct LogError {
    pub offset: usize,
    pub what: String,
}

fn err(offset: usize, what: impl Into<String>) -> LogError {
    LogError {
        offset,
        what: what.into(),
    }
}

/// An edit log being written: [`EditLog::push`] each transaction as it is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditLog {
    bytes: Vec<u8>,
    transactions: u64,
}

impl Default for EditLog {
    fn default() -> Self {
        Self::new()
    }
}

impl EditLog {
    pub fn new() -> EditLog {
        let mut bytes = Vec::with_capacity(HEADER_LEN);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&0u16.to_le_bytes());
        EditLog {
            bytes,
            transactions: 0,
        }
    }

    /// Append one transaction. Refuses (offset: where it would start) a bucket name longer
    /// than 65,535 bytes, a key or value over 4 GiB, or more than 2^32 edits or puts: none
    /// is a bbolt transaction the writer makes.
    pub fn push(&mut self, edits: &[Edit]) -> Result<(), LogError> {
        let at = self.bytes.len();
        let mut b = std::mem::take(&mut self.bytes);
        let r = encode_txn(&mut b, edits);
        if r.is_err() {
            b.truncate(at);
        }
        self.bytes = b;
        r.map_err(|what| err(at, what))?;
        self.transactions += 1;
        Ok(())
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when no transaction has been pushed.
    pub fn is_empty(&self) -> bool {
        self.transactions == 0
    }

    pub fn transactions(&self) -> u64 {
        self.transactions
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn len_u32(n: usize, what: &str) -> Result<[u8; 4], String> {
    u32::try_from(n)
        .map(u32::to_le_bytes)
        .map_err(|_| format!("{what} of {n} does not fit an edit log (at most 2^32 - 1)"))
}

fn encode_txn(b: &mut Vec<u8>, edits: &[Edit]) -> Result<(), String> {
    b.push(TXN_TAG);
    b.extend_from_slice(&len_u32(edits.len(), "a transaction of edits")?);
    for e in edits {
        let name = u16::try_from(e.bucket.len())
            .map_err(|_| format!("a bucket name of {} bytes", e.bucket.len()))?;
        b.extend_from_slice(&name.to_le_bytes());
        b.extend_from_slice(&e.bucket);
        b.push(u8::from(e.clear));
        b.extend_from_slice(&len_u32(e.puts.len(), "an edit of puts")?);
        for (k, v) in &e.puts {
            b.extend_from_slice(&len_u32(k.len(), "a key of bytes")?);
            b.extend_from_slice(k);
            b.extend_from_slice(&len_u32(v.len(), "a value of bytes")?);
            b.extend_from_slice(v);
        }
    }
    Ok(())
}

/// Reads fields off the front of the log, never past its end.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], LogError> {
        if n > self.left() {
            return Err(err(
                self.at,
                format!(
                    "log ends early: {what} needs {n} bytes, {} left",
                    self.left()
                ),
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8, LogError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, LogError> {
        let s = self.take(2, what)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<usize, LogError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
    }

    /// A count of items of at least `min` bytes each, refused when the bytes left cannot
    /// hold that many (so it never sizes an allocation beyond the input).
    fn count(&mut self, min: usize, what: &str) -> Result<usize, LogError> {
        let at = self.at;
        let n = self.u32(what)?;
        if n.saturating_mul(min) > self.left() {
            return Err(err(
                at,
                format!(
                    "{n} {what} cannot fit in the {} bytes left of the log",
                    self.left()
                ),
            ));
        }
        Ok(n)
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<Vec<u8>, LogError> {
        self.take(n, what).map(<[u8]>::to_vec)
    }
}

/// Decode an edit log: its transactions in commit order.
pub fn decode(b: &[u8]) -> Result<Vec<Vec<Edit>>, LogError> {
    let mut c = Cursor { b, at: 0 };
    let magic = c.take(8, "the magic")?;
    if magic != MAGIC {
        return Err(err(
            0,
            format!("not a lifeboat edit log (magic {magic:02x?})"),
        ));
    }
    let version = c.u16("the version")?;
    if version != VERSION {
        return Err(err(
            8,
            format!("edit log version {version} is not one this lifeboat reads ({VERSION})"),
        ));
    }
    let flags = c.u16("the flags")?;
    if flags != 0 {
        return Err(err(10, format!("unknown flags {flags:#06x}")));
    }
    let mut txns = Vec::new();
    while c.left() > 0 {
        let at = c.at;
        let tag = c.u8("a transaction's tag")?;
        if tag != TXN_TAG {
            return Err(err(
                at,
                format!("{tag:#04x} is not a transaction tag ({TXN_TAG})"),
            ));
        }
        let n = c.count(MIN_EDIT, "edits")?;
        let mut edits = Vec::with_capacity(n);
        for _ in 0..n {
            edits.push(decode_edit(&mut c)?);
        }
        txns.push(edits);
    }
    Ok(txns)
}

fn decode_edit(c: &mut Cursor<'_>) -> Result<Edit, LogError> {
    let name = usize::from(c.u16("a bucket name's length")?);
    let bucket = c.bytes(name, "a bucket name")?;
    let at = c.at;
    let clear = match c.u8("an edit's clear flag")? {
        0 => false,
        1 => true,
        v => return Err(err(at, format!("clear flag {v} is neither 0 nor 1"))),
    };
    let n = c.count(MIN_PUT, "puts")?;
    let mut puts = Vec::with_capacity(n);
    for _ in 0..n {
        let k = c.u32("a key's length")?;
        let k = c.bytes(k, "a key")?;
        let v = c.u32("a value's length")?;
        let v = c.bytes(v, "a value")?;
        puts.push((k, v));
    }
    Ok(Edit {
        bucket,
        clear,
        puts,
    })
}

/// The cargo-fuzz target `edit_log`: whatever decodes encodes to the same bytes (the
/// encoding is canonical) and decodes again to the same transactions.
#[cfg(any(test, feature = "testkit"))]
pub fn exercise_log(bytes: &[u8]) {
    let Ok(txns) = decode(bytes) else { return };
    let mut log = EditLog::new();
    for t in &txns {
        log.push(t).expect("a decoded transaction encodes");
    }
    assert_eq!(log.transactions(), txns.len() as u64);
    let again = log.into_bytes();
    assert_eq!(again, bytes, "decoded and encoded again, the log differs");
    assert_eq!(decode(&again).expect("an encoded log decodes"), txns);
}

/// Small logs for the fuzz corpus and the tests.
#[cfg(any(test, feature = "testkit"))]
pub fn seeds() -> Vec<Vec<u8>> {
    let edit = |bucket: &[u8], clear: bool, puts: &[(&[u8], &[u8])]| Edit {
        bucket: bucket.to_vec(),
        clear,
        puts: puts.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect(),
    };
    let mut out = vec![EditLog::new().into_bytes()];
    let mut log = EditLog::new();
    log.push(&[edit(
        b"key",
        false,
        &[(b"\0\0\0\0\0\0\0\x02_\0\0\0\0\0\0\0\0", b"\x0a\x03foo")],
    )])
    .expect("encodes");
    out.push(log.clone().into_bytes());
    log.push(&[
        edit(
            b"lease",
            true,
            &[(b"\0\0\0\0\0\0\0\x07", b"\x08\x07\x10\x3c")],
        ),
        edit(
            b"meta",
            false,
            &[(
                b"scheduledCompactRev",
                b"\0\0\0\0\0\0\0\x02_\0\0\0\0\0\0\0\0",
            )],
        ),
        edit(b"empty", true, &[]),
    ])
    .expect("encodes");
    out.push(log.into_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_round_trip() {
        for s in seeds() {
            exercise_log(&s);
        }
        let txns = decode(&seeds()[2]).unwrap();
        assert_eq!(txns.len(), 2);
        assert_eq!(txns[1][0].bucket, b"lease");
        assert!(txns[1][0].clear);
        assert_eq!(txns[1][2].puts.len(), 0);
    }

    #[test]
    fn damage_names_its_offset() {
        let good = seeds()[2].clone();
        // Every truncation is refused (a cut at a transaction's end is a shorter log).
        let whole: Vec<usize> = {
            let first = seeds()[1].len();
            vec![HEADER_LEN, first, good.len()]
        };
        for n in 0..good.len() {
            let r = decode(&good[..n]);
            if whole.contains(&n) {
                assert!(r.is_ok(), "{n}");
            } else {
                assert!(r.is_err(), "a cut at {n} decoded");
            }
        }
        let mut bad = good.clone();
        bad[8] = 2;
        assert_eq!(decode(&bad).unwrap_err().offset, 8);
        let mut bad = good.clone();
        bad[HEADER_LEN] = 9;
        let e = decode(&bad).unwrap_err();
        assert_eq!(e.offset, HEADER_LEN);
        assert!(e.to_string().contains("not a transaction tag"), "{e}");
        // A count far beyond the bytes left is refused before anything is allocated.
        let mut bad = good.clone();
        bad[HEADER_LEN + 1..HEADER_LEN + 5].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = decode(&bad).unwrap_err();
        assert_eq!(e.offset, HEADER_LEN + 1);
        assert!(e.to_string().contains("cannot fit"), "{e}");
        let mut bad = good;
        bad.push(0);
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn a_refused_transaction_leaves_the_log_as_it_was() {
        let mut log = EditLog::new();
        let huge = Edit {
            bucket: vec![b'b'; 70_000],
            clear: false,
            puts: vec![],
        };
        let before = log.clone();
        assert!(log.push(&[huge]).is_err());
        assert_eq!(log, before);
    }
}
