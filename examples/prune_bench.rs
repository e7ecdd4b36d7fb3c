//! Benchmark: retention planning over many backups in one local destination.
//!
//! `cargo run --release --example prune_bench -- [COUNT]` (default 10000)
//!
//! Builds a temporary destination holding COUNT backups (copies of the committed golden
//! v1 manifest, one every 15 minutes, with tiny data objects), then times the pure policy
//! over COUNT synthetic candidates and a whole `prune --dry-run` (listing and reading every
//! manifest and verification record, then planning).

use std::time::Instant;

use lifeboat::catalog::retention::{plan, Candidate, Policy, VerifyState};
use lifeboat::catalog::{data_name, manifest_name, new_backup_id};
use lifeboat::jobs::prune::prune;
use lifeboat::store::local::LocalStore;
use lifeboat::store::Store;

const GOLDEN: &str =
    include_str!("../tests/golden/v1/20261129T053645.864Z-650b5d21591bfd0.manifest.json");

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let policy = Policy {
        keep_last: Some(24),
        keep_hourly: Some(48),
        keep_daily: Some(7),
        keep_weekly: Some(4),
        keep_monthly: Some(12),
        keep_yearly: Some(3),
        keep_within: Some(std::time::Duration::from_secs(72 * 3600)),
    };
    let start = time::macros::datetime!(2026-01-01 00:00 UTC);
    let times: Vec<_> = (0..count)
        .map(|i| start + time::Duration::minutes(15 * i as i64))
        .collect();
    let candidates: Vec<Candidate> = times
        .iter()
        .map(|&t| Candidate {
            id: new_backup_id(t, 0x650b5d21591bfd0),
            time: t,
            verify: VerifyState::Unchecked,
        })
        .collect();
    let t0 = Instant::now();
    let d = plan(&policy, &candidates).expect("plan");
    let pure = t0.elapsed();
    let kept = d.iter().filter(|d| d.keep).count();
    println!("policy over {count} backups: {pure:?} ({kept} kept)");

    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path(), false).expect("store");
    let base: serde_json::Value = serde_json::from_str(GOLDEN).expect("golden");
    for c in &candidates {
        let mut m = base.clone();
        m["id"] = c.id.clone().into();
        m["object"] = data_name(&c.id).into();
        store
            .put_bytes(&data_name(&c.id), b"x")
            .expect("write data");
        store
            .put_bytes(
                &manifest_name(&c.id),
                &serde_json::to_vec(&m).expect("json"),
            )
            .expect("write manifest");
    }
    let t0 = Instant::now();
    let r = prune(&store, &policy, true, std::time::Duration::from_secs(1)).expect("prune");
    println!(
        "prune --dry-run over {count} backups in a local destination: {:?} ({} kept, {} to remove)",
        t0.elapsed(),
        r.kept,
        r.removed
    );
}
