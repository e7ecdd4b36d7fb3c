use proptest::prelude::*;

use super::*;
use crate::capture::fuzzing::{exercise_segment, seeds};

fn header(first: i64, last: i64) -> Header {
    Header {
        cluster_id: 42,
        first,
        last,
        prev: [1; 32],
        gap: false,
    }
}

#[test]
fn seeds_round_trip_and_pass_the_oracle() {
    for s in seeds() {
        let seg = decode(&s).unwrap();
        assert_eq!(
            encode_as(seg.version, &seg.header, &seg.records).unwrap(),
            s
        );
        exercise_segment(&s);
    }
}

/// Version 2 is version 1 with a BLAKE3 digest: the same header and body bytes, another
/// trailer; both decode to the same segment, each under its own digest, and a digest of the
/// wrong kind is a mismatch.
#[test]
fn versions_differ_only_in_their_digest() {
    let seg = decode(&seeds()[0]).unwrap();
    let v1 = encode_as(1, &seg.header, &seg.records).unwrap();
    let v2 = encode(&seg.header, &seg.records).unwrap();
    assert_eq!(VERSION, 2);
    let n = v2.len();
    assert_eq!(v1.len(), n);
    assert_eq!((&v1[..8], &v1[10..n - 32]), (&v2[..8], &v2[10..n - 32]));
    assert_eq!((&v1[8..10], &v2[8..10]), (&[1u8, 0][..], &[2u8, 0][..]));
    let a = decode(&v1).unwrap();
    assert_eq!(
        (a.version, &a.header, &a.records),
        (1, &seg.header, &seg.records)
    );
    assert_eq!(
        a.digest,
        <[u8; 32]>::from(sha2::Sha256::digest(&v1[..n - TRAILER_LEN]))
    );
    let b = decode(&v2).unwrap();
    assert_eq!(
        (b.version, &b.header, &b.records),
        (2, &seg.header, &seg.records)
    );
    assert_eq!(b.digest, *blake3::hash(&v2[..n - TRAILER_LEN]).as_bytes());
    // Version 1's bytes carrying a BLAKE3 digest, and the other way round.
    let mut swapped = v1.clone();
    swapped[8] = 2;
    assert!(decode(&swapped)
        .unwrap_err()
        .to_string()
        .contains("digest mismatch"));
    swapped = v2.clone();
    swapped[8] = 1;
    assert!(decode(&swapped)
        .unwrap_err()
        .to_string()
        .contains("digest mismatch"));
    assert!(matches!(
        encode_as(3, &seg.header, &seg.records),
        Err(SegmentError::Version(3))
    ));
    assert_eq!(digest(3, &v1), None);
}

#[test]
fn every_truncation_and_flip_is_an_error_never_a_panic() {
    let s = &seeds()[0];
    for n in 0..s.len() {
        assert!(decode(&s[..n]).is_err(), "prefix of {n} bytes decoded");
    }
    for i in 0..s.len() {
        let mut b = s.clone();
        b[i] ^= 0x10;
        assert!(decode(&b).is_err(), "flip at {i} decoded");
    }
}

#[test]
fn errors_name_the_offset() {
    let mut s = seeds()[0].clone();
    let e = decode(&s[..50]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "offset 50: segment ends early (header is 80 bytes)"
    );
    let n = s.len();
    s[n - 1] ^= 1;
    assert!(decode(&s)
        .unwrap_err()
        .to_string()
        .starts_with(&format!("offset {}: digest mismatch", n - 32)));
    let mut v = seeds()[0].clone();
    v[8] = 9;
    assert!(decode(&v).unwrap_err().to_string().contains("version 9"));
}

/// Found by the fuzzer: a header with an empty body and a trailer cut short.
#[test]
fn a_short_trailer_is_truncated() {
    let b = encode(&header(1, 1), &[]).unwrap();
    let e = decode(&b[..b.len() - 6]).unwrap_err();
    assert!(matches!(e, SegmentError::Truncated { .. }), "{e}");
}

#[test]
fn encode_refuses_records_out_of_order_or_range() {
    let r = |rev| Record::Clock {
        revision: rev,
        unix_ms: 1,
    };
    assert!(encode(&header(5, 9), &[r(6), r(5)]).is_err());
    assert!(encode(&header(5, 9), &[r(10)]).is_err());
    assert!(encode(&header(5, 9), &[r(4)]).is_err());
    assert!(encode(&header(5, 4), &[]).is_err());
    assert!(encode(&header(0, 4), &[]).is_err());
}

/// A length that claims more than the body holds is refused before any allocation.
#[test]
fn huge_lengths_are_refused() {
    let mut b = encode(&header(1, 1), &[]).unwrap();
    b[68..72].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode(&b).is_err());
    b[72..80].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(decode(&b).is_err());
}

/// Gardener's delta snapshots: a JSON array of `{"etcdEvent": clientv3.Event, "time": …}`,
/// keys and values base64 (Go's encoding/json of []byte), as etcd-backup-restore writes it.
fn gardener_json_len(records: &[Record]) -> usize {
    // Base64 has no character JSON escapes: a string of its length weighs the same.
    let b64 = |b: &[u8]| "A".repeat(b.len().div_ceil(3) * 4);
    let mut events = Vec::new();
    for r in records {
        let ev = match r {
            Record::Put(kv) => serde_json::json!({"kv": {
                "key": b64(&kv.key), "create_revision": kv.create_revision,
                "mod_revision": kv.mod_revision, "version": kv.version,
                "value": b64(&kv.value), "lease": kv.lease }}),
            Record::Delete { key, revision } => serde_json::json!({"type": 1, "kv": {
                "key": b64(key), "mod_revision": revision }}),
            _ => continue,
        };
        events.push(serde_json::json!({"etcdEvent": ev, "time": "2026-12-06T01:39:25.123456789Z"}));
    }
    serde_json::to_vec(&events).unwrap().len()
}

/// A value like a Kubernetes object's: field names and words from a small vocabulary, a
/// random uid, resource version and timestamp (xorshift, deterministic).
fn k8s_like_value(seed: &mut u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "\"metadata\":{",
        "\"name\":\"",
        "\"namespace\":\"",
        "\"labels\":{",
        "app",
        "kube-system",
        "\"resourceVersion\":\"",
        "\"creationTimestamp\":\"",
        "\"}",
        "\"data\":{",
        "nginx",
        "\"uid\":\"",
        "frontend",
        "\"managedFields\":[",
        "v1",
        "\"ownerReferences\":[",
    ];
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let mut v = Vec::with_capacity(len + 40);
    while v.len() < len {
        let r = next();
        if r % 4 == 0 {
            v.extend_from_slice(format!("{:016x}", next()).as_bytes());
        } else {
            v.extend_from_slice(WORDS[(r >> 8) as usize % WORDS.len()].as_bytes());
        }
    }
    v.truncate(len);
    v
}

/// The storage target: bytes per event at most half of Gardener's JSON deltas, on a
/// Kubernetes-like stream (keys under /registry, small and 1 KiB values); zstd as stored.
#[test]
fn bytes_per_event_are_at_most_half_of_gardener_json() {
    for value_len in [100usize, 1024] {
        let mut recs = Vec::new();
        let mut rev = 100;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..2000u32 {
            rev += 1;
            let key = format!("/registry/configmaps/ns-{}/cm-{:05}", i % 7, i % 500).into_bytes();
            let value = k8s_like_value(&mut seed, value_len);
            if i % 10 == 9 {
                recs.push(Record::Delete { key, revision: rev });
            } else {
                recs.push(Record::Put(KeyValue {
                    key,
                    create_revision: rev - i64::from(i % 3),
                    mod_revision: rev,
                    version: i64::from(i % 3) + 1,
                    value,
                    lease: 0,
                }));
            }
        }
        let seg = encode(&header(101, rev), &recs).unwrap();
        let stored = zstd::encode_all(&seg[..], 3).unwrap().len();
        let gardener = gardener_json_len(&recs);
        eprintln!(
            "value {value_len} B: segment {} B/event raw, {} B/event zstd; gardener json {} B/event",
            seg.len() / recs.len(),
            stored / recs.len(),
            gardener / recs.len()
        );
        assert!(stored * 2 <= gardener, "{stored} vs {gardener}");
        assert!(seg.len() < gardener);
    }
}

fn arb_record() -> impl Strategy<Value = (i64, Record)> {
    let key = proptest::collection::vec(prop_oneof![Just(b'/'), Just(b'a'), any::<u8>()], 0..12);
    let val = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        (key.clone(), val, any::<i64>(), any::<i64>(), any::<i64>()).prop_map(
            |(k, v, c, ver, l)| {
                (
                    0,
                    Record::Put(KeyValue {
                        key: k,
                        create_revision: c,
                        mod_revision: 0,
                        version: ver,
                        value: v,
                        lease: l,
                    }),
                )
            }
        ),
        key.prop_map(|k| (
            0,
            Record::Delete {
                key: k,
                revision: 0
            }
        )),
        (any::<i64>(), any::<i64>()).prop_map(|(id, ttl)| (
            0,
            Record::LeaseGrant {
                id,
                ttl,
                revision: 0
            }
        )),
        any::<i64>().prop_map(|id| (0, Record::LeaseRevoke { id, revision: 0 })),
        any::<i64>().prop_map(|c| (
            0,
            Record::Compact {
                compact_revision: c,
                revision: 0
            }
        )),
        any::<i64>().prop_map(|t| (
            0,
            Record::Clock {
                unix_ms: t,
                revision: 0
            }
        )),
        (any::<u32>(), any::<i64>()).prop_map(|(h, c)| (
            0,
            Record::LiveHash {
                hash: h,
                compact_revision: c,
                revision: 0
            }
        )),
    ]
}

fn at(mut r: Record, rev: i64) -> Record {
    match &mut r {
        Record::Put(kv) => kv.mod_revision = rev,
        Record::Delete { revision, .. }
        | Record::LeaseGrant { revision, .. }
        | Record::LeaseRevoke { revision, .. }
        | Record::Compact { revision, .. }
        | Record::Clock { revision, .. }
        | Record::LiveHash { revision, .. } => *revision = rev,
    }
    r
}

proptest! {
    #[test]
    fn round_trip(
        first in 1i64..i64::MAX / 2,
        steps in proptest::collection::vec((0i64..3, arb_record()), 0..30),
        gap in any::<bool>(),
        prev in any::<[u8; 32]>(),
        cluster_id in any::<u64>(),
        version in 1u16..=2,
    ) {
        let mut rev = first;
        let mut recs = Vec::new();
        for (d, (_, r)) in steps {
            rev += d;
            recs.push(at(r, rev));
        }
        let h = Header { cluster_id, first, last: rev + 1, prev, gap };
        let b = encode_as(version, &h, &recs).unwrap();
        let s = decode(&b).unwrap();
        prop_assert_eq!(s.version, version);
        prop_assert_eq!(&s.header, &h);
        prop_assert_eq!(&s.records, &recs);
        let covered = &b[..b.len() - TRAILER_LEN];
        let digest: [u8; 32] = match version {
            1 => sha2::Sha256::digest(covered).into(),
            _ => *blake3::hash(covered).as_bytes(),
        };
        prop_assert_eq!(s.digest, digest);
        prop_assert_eq!(digest_of(&b), digest);
        exercise_segment(&b);
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut b in proptest::collection::vec(any::<u8>(), 0..300), magic in any::<bool>()) {
        if magic && b.len() >= 12 {
            b[..8].copy_from_slice(MAGIC);
            let version = VERSIONS[usize::from(b[11] & 1)];
            b[8..10].copy_from_slice(&version.to_le_bytes());
        }
        exercise_segment(&b);
    }
}
