//! The cargo-fuzz target `capture` (`fuzz/fuzz_targets/capture.rs`) and its seeds: arbitrary
//! bytes through the segment decoder, with a round-trip oracle.

use super::segment::{decode, decode_unverified, digest, encode_as, Header, SegmentError};
use super::{KeyValue, Record};

/// Decode `bytes` as a segment; whatever decodes must encode again and decode to the same
/// records, header and (re-encoded) digest. Panics only when that oracle fails.
pub fn exercise_segment(bytes: &[u8]) {
    let _ = super::segment::decode_header(bytes);
    round_trip(bytes);
    unverified_agrees(bytes);
    // Mutated bytes almost never carry the right digest: also decode them with the trailer's
    // digest recomputed, so the record decoder is reached.
    // The digest is the one of the version the bytes name (no digest for another version:
    // the decoder refuses it before any digest).
    let n = bytes.len();
    if n >= super::segment::HEADER_LEN + super::segment::TRAILER_LEN {
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if let Some(d) = digest(version, &bytes[..n - super::segment::TRAILER_LEN]) {
            let mut fixed = bytes.to_vec();
            fixed[n - 32..].copy_from_slice(&d);
            round_trip(&fixed);
            unverified_agrees(&fixed);
        }
    }
}

/// [`decode_unverified`] decodes what [`decode`] does, the same way, and differs from it
/// only where the digest is wrong: there it goes on to the records, which may decode or not.
fn unverified_agrees(bytes: &[u8]) {
    match (decode(bytes), decode_unverified(bytes)) {
        (Ok(a), Ok(b)) => {
            assert_eq!(
                (a.header, a.records, a.digest),
                (b.header, b.records, b.digest)
            );
        }
        (Err(SegmentError::Digest { .. }), _) => {}
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("decode {a:?}, unverified {b:?}"),
    }
}

fn round_trip(bytes: &[u8]) {
    let Ok(seg) = decode(bytes) else { return };
    let again =
        encode_as(seg.version, &seg.header, &seg.records).expect("a decoded segment encodes");
    let back = decode(&again).expect("an encoded segment decodes");
    assert_eq!(back.version, seg.version);
    assert_eq!(back.header, seg.header);
    assert_eq!(back.records, seg.records);
    // Encoding is canonical: what it wrote encodes to the same bytes again. (Input bytes
    // may differ: longer varints, a key sharing fewer bytes with the previous one.)
    let third =
        encode_as(back.version, &back.header, &back.records).expect("a decoded segment encodes");
    assert_eq!(third, again, "encoding is not canonical");
    // The other version holds the same header and records under its own digest.
    let other = if seg.version == 1 { 2 } else { 1 };
    let moved = encode_as(other, &seg.header, &seg.records).expect("a decoded segment encodes");
    let back = decode(&moved).expect("an encoded segment decodes");
    assert_eq!(
        (back.version, &back.header, &back.records),
        (other, &seg.header, &seg.records)
    );
}

/// Small segments covering every record kind, for the fuzz corpus and the tests.
pub fn seeds() -> Vec<Vec<u8>> {
    let kv = |key: &str, rev: i64, create: i64, version: i64, lease: i64| {
        Record::Put(KeyValue {
            key: key.as_bytes().to_vec(),
            create_revision: create,
            mod_revision: rev,
            version,
            value: format!("value of {key} at {rev}").into_bytes(),
            lease,
        })
    };
    let all = vec![
        Record::LeaseGrant {
            id: 0x694d_7a5e_1c3b_0a01,
            ttl: 60,
            revision: 10,
        },
        kv("/registry/pods/default/a", 10, 10, 1, 0x694d_7a5e_1c3b_0a01),
        kv("/registry/pods/default/b", 11, 5, 3, 0),
        Record::Delete {
            key: b"/registry/pods/default/a".to_vec(),
            revision: 11,
        },
        Record::LeaseRevoke {
            id: 0x694d_7a5e_1c3b_0a01,
            revision: 12,
        },
        kv("k", 14, 14, 1, 0),
        Record::Compact {
            compact_revision: 9,
            revision: 14,
        },
        Record::LiveHash {
            revision: 14,
            hash: 0xdead_beef,
            compact_revision: 9,
        },
        Record::Clock {
            revision: 14,
            unix_ms: 1_796_000_000_000,
        },
    ];
    let h = |first, last, gap| Header {
        cluster_id: 0xcdf8_18b3_1d2a_5e11,
        first,
        last,
        prev: [7; 32],
        gap,
    };
    let mut out = Vec::new();
    for (header, recs) in [
        (h(10, 14, false), all.clone()),
        (h(10, 14, true), all[..4].to_vec()),
        (h(1, 1, false), Vec::new()),
    ] {
        for version in super::segment::VERSIONS {
            if let Ok(b) = encode_as(version, &header, &recs) {
                out.push(b);
            }
        }
    }
    out
}
