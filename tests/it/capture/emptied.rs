//! A restore to a revision where no key is live, on etcd 3.5.16, 3.6.16 and 3.7.3. etcd's `keep`
//! is then empty and `hashkv` hashes every entry still stored, so the answer depends on
//! whether the compaction a restored member resumes at start has finished. The plan
//! predicts the answer once it has (the live cluster's, whose compaction finished long
//! ago) and names the other one; `restore test`, `restore check` and `--compact` accept
//! the member's answer. A backup of the emptied cluster restored with the revision bump has
//! one answer (etcd indexes the bump's entry like a live key): `restore check` passes, as it
//! does after a point-in-time restore with the bump.

use std::path::Path;

use super::compact_edge::{backup, restore_test_json, topology};
use std::time::Duration;

use lifeboat::catalog::capture::load_records;
use lifeboat::format::capture::Record;

use super::{config, head, live_hash, repo, spawn_capture, stop, wait_durable};
use crate::common::restore::{apply_all, make_plan, restore_check, start_from_plan};
use crate::common::s3::S3Server;
use crate::common::*;

/// `restore test --to-revision REV` (and `extra`) passes with one of its answers; its JSON.
fn restore_test(bins: &Bins, from: &str, rev: i64, extra: &[&str]) -> serde_json::Value {
    let r = restore_test_json(bins, from, Some(rev), extra);
    let got = &r["hashkv"];
    assert!(
        *got == r["hashkv_expected"] || *got == r["hashkv_while_compacting"],
        "{r}"
    );
    r
}

/// Plan with `flags`, apply, start, `restore check`: exit 0, with one of the plan's
/// answers. The plan.
fn plan_apply_check(bins: &Bins, from: &Path, flags: &[&str], tmp: &Path) -> serde_json::Value {
    std::fs::create_dir(tmp).unwrap();
    let topo = topology(bins, tmp);
    let out = tmp.join("plan");
    let p = make_plan(from, &topo, &out, flags);
    apply_all(&out, &p);
    let restored = start_from_plan(bins, &p);
    let o = restore_check(&out, &[]);
    assert_exit(&o, 0);
    let v = json(&o);
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["hashkv"] == p["expected_hashkv"] || v["hashkv"] == p["expected_hashkv_while_compacting"],
        "{v}"
    );
    drop(restored);
    p
}

fn emptied_keyspace(bins: Bins) {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::single(&bins, Opts::default());
    let s3 = S3Server::start(&["cap"]);
    let dest = tmp.path().join("captured");
    std::fs::create_dir(&dest).unwrap();
    let d = dest.to_str().unwrap();
    c.put("/x", "1");
    let (cluster, base) = backup(&c, d);
    let log = tmp.path().join("capture.log");
    let cap = spawn_capture(&s3, &config(tmp.path()), &c, &[d], &log);
    // History the compaction removes (/a's first put), then every key deleted.
    c.put("/a", "1");
    c.put("/b", "1");
    c.put("/a", "2");
    let compact = head(&c);
    c.ctl_ok(&["compact", &compact.to_string()]);
    // Capture learns of a compaction from its next HashKV mark, sealed with later writes:
    // write until one has recorded it, so that a restore to `emptied` replays it.
    for i in 0.. {
        assert!(i < 200, "capture never recorded the compaction");
        c.put(&format!("/c/{i}"), "1");
        let now = head(&c);
        wait_durable(&dest, cluster, now, &log);
        let recs = load_records(&repo(&dest), &format!("{cluster:x}"), base, now).unwrap();
        if recs.iter().any(|r| matches!(r, Record::Compact { .. })) {
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    c.ctl_ok(&["del", "", "--from-key"]);
    let emptied = head(&c);
    assert_eq!(
        c.ctl_ok(&["get", "", "--from-key", "--keys-only"]).trim(),
        ""
    );
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let (_, b) = backup(&c, plain.to_str().unwrap());
    assert_eq!(b, emptied);
    c.put("/after", "1");
    let end = head(&c);
    wait_durable(&dest, cluster, end, &log);
    stop(cap, &log);
    let live = live_hash(&c, emptied);

    // Replayed, the data keep the compaction at `compact` scheduled: once it has run,
    // etcd answers what the live cluster does; before, another hash.
    let r = restore_test(&bins, d, emptied, &[]);
    assert_eq!(r["hashkv_expected"].as_u64(), Some(live), "{r}");
    assert!(r["hashkv_while_compacting"].is_u64(), "{r}");
    let p = plan_apply_check(
        &bins,
        &dest,
        &["--to-revision", &emptied.to_string()],
        &tmp.path().join("pitr"),
    );
    assert_eq!(p["expected_hashkv"].as_u64(), Some(live), "{p}");
    assert_ne!(
        p["expected_hashkv_while_compacting"], p["expected_hashkv"],
        "{p}"
    );
    assert!(p["expected_hashkv_while_compacting"].is_u64(), "{p}");

    // The backup of the emptied cluster, with the bump: one answer, and the check passes.
    let p = plan_apply_check(
        &bins,
        &plain,
        &["--bump-revision"],
        &tmp.path().join("bump"),
    );
    assert!(p["expected_hashkv_while_compacting"].is_null(), "{p}");
    // A point-in-time restore with the bump (a Kubernetes cluster's default), emptied or
    // not: one answer, and the check passes at the bumped revision.
    for (rev, dir) in [(emptied, "pitr-bump"), (compact, "pitr-bump-live")] {
        let p = plan_apply_check(
            &bins,
            &dest,
            &["--to-revision", &rev.to_string(), "--bump-revision"],
            &tmp.path().join(dir),
        );
        assert_eq!(
            p["expected_revision"].as_i64(),
            Some(rev + 1_000_000_000),
            "{p}"
        );
        assert!(p["expected_hashkv_while_compacting"].is_null(), "{p}");
    }

    // --compact: compacted at emptied-1. The live cluster compacted there answers the same.
    let r = restore_test(&bins, d, emptied, &["--compact"]);
    c.ctl_ok(&["compact", &(emptied - 1).to_string()]);
    assert_eq!(
        r["hashkv_expected"].as_u64(),
        Some(live_hash(&c, emptied)),
        "{r}"
    );
}

#[test]
fn restores_an_emptied_keyspace_3516() {
    emptied_keyspace(native::etcd3516());
}

#[test]
fn restores_an_emptied_keyspace_36() {
    emptied_keyspace(crate::common::versions::etcd36());
}

#[test]
fn restores_an_emptied_keyspace_37() {
    emptied_keyspace(crate::common::versions::etcd37());
}
