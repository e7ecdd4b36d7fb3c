//! A restore target exactly at a compaction revision on etcd 3.4.23, 3.5.1 and 3.5.16. etcd
//! 3.4.23 and 3.5.1 refuse `hashkv --rev R` when R is the compaction revision (3.5.16
//! answers it; `restore test` then had no expected hash to compare): a backup
//! taken right after `compact` at the head has exactly that revision. `restore test` (with
//! and without `--to-revision`), `restore plan --to-revision` and `restore check` all
//! succeed there, comparing the hash etcd gives at its current revision (which is R), and a
//! capture whose compaction falls on the target restores it too.

use std::path::Path;

use lifeboat::catalog::capture::load_records;
use lifeboat::format::capture::Record;

use super::{head, repo, spawn_capture, stop, wait_durable};
use crate::common::restore::{apply_all, make_plan, restore_check, start_from_plan};
use crate::common::s3::S3Server;
use crate::common::*;

pub(super) fn topology(bins: &Bins, dir: &Path) -> std::path::PathBuf {
    let p = dir.join("topology.toml");
    std::fs::write(
        &p,
        format!(
            "cluster_token = \"generate\"\netcd_version = \"{}\"\n\n[[member]]\nname = \"r0\"\npeer_urls = [\"http://127.0.0.1:{}\"]\nclient_urls = [\"http://127.0.0.1:{}\"]\ndata_dir = \"{}\"\nhost = \"127.0.0.1\"\n",
            bins.version,
            free_port(),
            free_port(),
            dir.join("r0").display()
        ),
    )
    .unwrap();
    p
}

/// The live cluster's `HashKV` at its current revision, and that revision.
fn hash_now(c: &Cluster) -> (u64, i64) {
    let v: serde_json::Value =
        serde_json::from_str(&c.ctl_ok(&["endpoint", "hashkv", "-w", "json"])).unwrap();
    (
        v[0]["HashKV"]["hash"].as_u64().unwrap(),
        v[0]["HashKV"]["header"]["revision"].as_i64().unwrap(),
    )
}

pub(super) fn backup(c: &Cluster, to: &str) -> (u64, i64) {
    let o = run_lifeboat([
        "-o",
        "json",
        "backup",
        "--to",
        to,
        "--endpoints",
        &c.endpoints(),
    ]);
    assert_exit(&o, 0);
    let m = json(&o);
    let id = u64::from_str_radix(m["cluster_id"].as_str().unwrap(), 16).unwrap();
    (id, m["revision"].as_i64().unwrap())
}

/// `restore test` (with `--to-revision REV` when given, and `extra`) exits 0; its JSON.
pub(super) fn restore_test_json(
    bins: &Bins,
    from: &str,
    rev: Option<i64>,
    extra: &[&str],
) -> serde_json::Value {
    let mut args = vec![
        "-o".to_string(),
        "json".into(),
        "restore".into(),
        "test".into(),
        "--from".into(),
        from.into(),
        "--etcd".into(),
        bins.etcd.display().to_string(),
    ];
    if let Some(r) = rev {
        args.extend(["--to-revision".into(), r.to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = run_lifeboat(&args);
    assert_exit(&o, 0);
    let r = json(&o);
    assert_eq!(r["ok"].as_bool(), Some(true), "{r}");
    r
}

/// `restore test` (with `--to-revision REV` when given) passes with the hash `want`.
fn restore_test(bins: &Bins, from: &str, rev: Option<i64>, want: u64) {
    let r = restore_test_json(bins, from, rev, &[]);
    assert_eq!(r["hashkv"].as_u64(), Some(want), "{r}");
    assert_eq!(r["hashkv_expected"].as_u64(), Some(want), "{r}");
}

/// `restore plan --to-revision REV`, apply, start, `restore check`: all succeed, the plan
/// expecting the hash `want`.
fn plan_apply_check(bins: &Bins, from: &Path, rev: i64, want: u64, tmp: &Path) {
    let topo = topology(bins, tmp);
    let out = tmp.join("plan");
    let p = make_plan(from, &topo, &out, &["--to-revision", &rev.to_string()]);
    assert_eq!(p["to_revision"].as_i64(), Some(rev), "{p}");
    assert_eq!(p["expected_revision"].as_i64(), Some(rev), "{p}");
    assert_eq!(p["expected_hashkv"].as_u64(), Some(want), "{p}");
    apply_all(&out, &p);
    let restored = start_from_plan(bins, &p);
    let o = restore_check(&out, &[]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["ok"], true);
    drop(restored);
}

fn at_the_compaction_revision(bins: Bins) {
    let tmp = tempfile::tempdir().unwrap();
    // A backup taken right after `compact` at the head: its revision is the compaction's.
    let c = Cluster::single(&bins, Opts::default());
    for i in 0..5 {
        c.put(&format!("/k/{i}"), "v");
    }
    let rev = head(&c);
    c.ctl_ok(&["compact", &rev.to_string()]);
    let dest = tmp.path().join("compacted");
    std::fs::create_dir(&dest).unwrap();
    let (_, b) = backup(&c, dest.to_str().unwrap());
    assert_eq!(b, rev);
    let (hash, at) = hash_now(&c);
    assert_eq!(at, rev);
    let d = dest.to_str().unwrap();
    restore_test(&bins, d, None, hash);
    restore_test(&bins, d, Some(rev), hash);
    let p = tmp.path().join("p1");
    std::fs::create_dir(&p).unwrap();
    plan_apply_check(&bins, &dest, rev, hash, &p);
    drop(c);

    // Capture across a compaction at the head: restoring to the compaction revision.
    let at_rev = captured_compaction(&bins, &tmp.path().join("captured"), "100ms");
    eprintln!("capture recorded the compaction at its revision: {at_rev}");
}

/// Capture (sealing every `flush`) across `compact` at the head, then `restore test`,
/// plan, apply and check at the compaction revision, expecting the live hash from before
/// or after the compaction as the records say. Returns whether they hold it at that
/// revision: capture learns of a compaction from its next HashKV mark, usually sealed with
/// the next write (then a restore to `rev` does not replay the compaction); when capture
/// sealed `rev` just after the compaction, the mark is at `rev` and the restore compacts
/// there as the live cluster did (seen under load: the live hash after the compaction).
fn captured_compaction(bins: &Bins, dir: &Path, flush: &str) -> bool {
    std::fs::create_dir(dir).unwrap();
    let c = Cluster::single(bins, Opts::default());
    let s3 = S3Server::start(&["cap"]);
    let dest = dir.join("captured");
    std::fs::create_dir(&dest).unwrap();
    let d = dest.to_str().unwrap();
    c.put("/k/0", "v");
    let (cluster, base) = backup(&c, d);
    let log = dir.join("capture.log");
    let cfg = dir.join("capture.toml");
    std::fs::write(
        &cfg,
        format!("[capture]\nflush = \"{flush}\"\nhash_every = \"{flush}\"\n"),
    )
    .unwrap();
    let cap = spawn_capture(&s3, &cfg, &c, &[d], &log);
    for i in 0..5 {
        c.put(&format!("/k/{i}"), "w");
    }
    let (before, rev) = hash_now(&c);
    c.ctl_ok(&["compact", &rev.to_string()]);
    let (after, at) = hash_now(&c);
    assert_eq!(at, rev);
    // Sealed before the next write (which a later mark would come with).
    wait_durable(&dest, cluster, rev, &log);
    c.put("/after", "1");
    let end = head(&c);
    wait_durable(&dest, cluster, end, &log);
    stop(cap, &log);
    let recs = load_records(&repo(&dest), &format!("{cluster:x}"), base, rev).unwrap();
    let compacted = recs
        .iter()
        .any(|r| matches!(r, Record::Compact { compact_revision, .. } if *compact_revision == rev));
    let hash = if compacted { after } else { before };
    restore_test(bins, d, Some(rev), hash);
    let p = dir.join("plan-dir");
    std::fs::create_dir(&p).unwrap();
    plan_apply_check(bins, &dest, rev, hash, &p);
    compacted
}

#[test]
fn restores_at_the_compaction_revision_351() {
    at_the_compaction_revision(etcd35());
}

#[test]
fn restores_at_the_compaction_revision_3516() {
    at_the_compaction_revision(native::etcd3516());
}

#[test]
fn restores_at_the_compaction_revision_34() {
    at_the_compaction_revision(etcd34());
}
