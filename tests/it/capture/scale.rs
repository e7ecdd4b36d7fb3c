//! Segment listings at scale, in S3: a restore of today's revisions lists the segment names
//! from its backup on (ListObjectsV2 `start-after`), not the whole capture history.

use std::sync::atomic::Ordering;

use super::{config, head, live_hash, one_member_topology, spawn_capture, stop, wait_durable};
use crate::common::s3::{Proxy, S3Server};
use crate::common::*;

/// 10,000 segment objects before the backup (a long capture history), a few captured after
/// it: `restore plan --to-revision` of the newest revision reads about as many bytes of S3
/// listings as the segments it needs, a small fraction of what a full listing (`list
/// --capture`) reads, and plans the right revision and hash.
#[test]
fn restore_lists_only_the_segments_after_its_backup_in_s3() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::single(&native::etcd3516(), Opts::default());
    let s3 = S3Server::start(&["cap"]);
    for i in 0..20 {
        c.put(&format!("/k/{i}"), "v");
    }
    let o = s3.lifeboat([
        "-o",
        "json",
        "backup",
        "--to",
        "s3://cap/etcd",
        "--endpoints",
        &c.endpoints(),
    ]);
    assert_exit(&o, 0);
    let m = json(&o);
    let cluster = u64::from_str_radix(m["cluster_id"].as_str().unwrap(), 16).unwrap();
    let b = m["revision"].as_i64().unwrap();
    let log = tmp.path().join("capture.log");
    let cap = spawn_capture(&s3, &config(tmp.path()), &c, &["s3://cap/etcd"], &log);
    for i in 0..5 {
        c.put(&format!("/k/{i}"), "w");
    }
    let end = head(&c);
    let dir = s3.root.path().join("cap/etcd");
    wait_durable(&dir, cluster, end, &log);
    stop(cap, &log);
    // The history before the backup: names only (never read by a restore after it).
    for i in 0..10_000i64 {
        let r = 1 + i % (b - 1);
        let name = format!(
            "capture-{cluster:016x}-{r:020}-{r:020}-{:013}.seg",
            1_700_000_000_000 + i
        );
        std::fs::write(dir.join(name), b"").unwrap();
    }
    let proxy = Proxy::start(s3.port);
    let down = &proxy.down;
    let via = [proxy.env()];
    let via: Vec<(&str, &str)> = via.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let topo = one_member_topology(c.bins.version, tmp.path());
    let o = s3.lifeboat_with(
        [
            "-o",
            "json",
            "restore",
            "plan",
            "--from",
            "s3://cap/etcd",
            "--topology",
            topo.to_str().unwrap(),
            "--out",
            tmp.path().join("plan").to_str().unwrap(),
            "--to-revision",
            &end.to_string(),
        ],
        &via,
    );
    assert_exit(&o, 0);
    let p = json(&o);
    assert_eq!(p["to_revision"].as_i64(), Some(end), "{p}");
    assert_eq!(
        p["expected_hashkv"].as_u64(),
        Some(live_hash(&c, end)),
        "{p}"
    );
    let plan_bytes = down.swap(0, Ordering::Relaxed);
    let o = s3.lifeboat_with(["list", "--capture", "--from", "s3://cap/etcd"], &via);
    assert_exit(&o, 0);
    let list_bytes = down.swap(0, Ordering::Relaxed);
    // 10,000 names are about 2 MB of listing XML; the plan reads its backup and a few
    // segments and lists a few names.
    eprintln!("S3 bytes read: restore plan {plan_bytes}, list --capture {list_bytes}");
    assert!(list_bytes > 1_000_000, "{list_bytes}");
    assert!(
        plan_bytes * 10 < list_bytes,
        "restore plan read {plan_bytes} bytes from S3, a full listing {list_bytes}"
    );
}
