//! A long capture window written straight into a destination, for benchmarking a restore to
//! a revision an hour (or more) after a backup without waiting an hour
//! (`scripts/bench-pitr-restore.sh`):
//!
//!   pitr_synth DEST CLUSTER_ID_HEX AFTER_REVISION SECONDS RATE VALUE_BYTES KEYS
//!
//! writes SECONDS segments of RATE puts each (one put per revision, from AFTER_REVISION + 1,
//! values from `common/value.rs`, keys `/pitr-synth/NNNNNN` cycling over KEYS keys with
//! their create revision and version kept as etcd would), each sealed with a clock mark one
//! simulated second after the last and chained to the one before, exactly as `lifeboat
//! capture` stores them (`catalog::capture::store_segment`, zstd-3). The keys are not in the
//! base (the benchmark's base is filled by `fill`, whose keys differ), so every first put is
//! version 1. Prints `last_revision=N segments=S events=E bytes=B`.

use std::time::{SystemTime, UNIX_EPOCH};

use lifeboat::catalog::capture::store_segment;
use lifeboat::format::capture::segment::{digest_of, encode, Header};
use lifeboat::format::capture::{KeyValue, Record};
use lifeboat::store::local::LocalStore;

#[path = "common/value.rs"]
mod common_value;
use common_value::value;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 8 {
        eprintln!(
            "usage: pitr_synth DEST CLUSTER_ID_HEX AFTER_REVISION SECONDS RATE VALUE_BYTES KEYS"
        );
        std::process::exit(2);
    }
    let num = |i: usize| -> u64 {
        a[i].parse().unwrap_or_else(|_| {
            eprintln!("argument {i} ({:?}) is not a number", a[i]);
            std::process::exit(2)
        })
    };
    let cluster = u64::from_str_radix(&a[2], 16).unwrap_or_else(|_| {
        eprintln!("{:?} is not a hex cluster id", a[2]);
        std::process::exit(2)
    });
    let (after, seconds, rate, size, keys) = (
        num(3) as i64,
        num(4),
        num(5),
        num(6) as usize,
        num(7) as usize,
    );
    let store = LocalStore::open(&a[1], false).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let start_ms = now_ms - seconds as i64 * 1000;
    let mut created = vec![0i64; keys.max(1)];
    let mut version = vec![0i64; keys.max(1)];
    let (mut rev, mut prev, mut bytes, mut events) = (after, [0u8; 32], 0u64, 0u64);
    for s in 0..seconds {
        let first = rev + 1;
        let mut records = Vec::with_capacity(rate as usize + 1);
        for _ in 0..rate {
            rev += 1;
            let k = (events % keys.max(1) as u64) as usize;
            if version[k] == 0 {
                created[k] = rev;
            }
            version[k] += 1;
            records.push(Record::Put(KeyValue {
                key: format!("/pitr-synth/{k:06}").into_bytes(),
                create_revision: created[k],
                mod_revision: rev,
                version: version[k],
                value: value(events, size),
                lease: 0,
            }));
            events += 1;
        }
        let sealed_ms = start_ms + (s as i64 + 1) * 1000;
        records.push(Record::Clock {
            revision: rev,
            unix_ms: sealed_ms,
        });
        let header = Header {
            cluster_id: cluster,
            first,
            last: rev,
            prev,
            gap: false,
        };
        let encoded = encode(&header, &records).unwrap_or_else(|e| {
            eprintln!("encoding segment {first}..{rev}: {e}");
            std::process::exit(1)
        });
        prev = digest_of(&encoded);
        let stored =
            store_segment(&store, &encoded, &header, sealed_ms, None).unwrap_or_else(|e| {
                eprintln!("{e}");
                std::process::exit(1)
            });
        bytes += stored.bytes;
    }
    println!("last_revision={rev} segments={seconds} events={events} bytes={bytes}");
}
