//! Point-in-time restore on real etcd (issue 21 §3, the replay side): a snapshot, then a
//! workload of puts, deletes, multi-operation transactions, a lease with keys (granted,
//! then revoked) and a compaction, watched from the snapshot's revision + 1 as capture
//! would. The test builds the capture records itself (capture is another branch): the
//! watch's events, plus the lease grants/revokes and the compaction it made, plus the live
//! `HashKV` at several revisions. For each of those revisions R: the offline replay's
//! hashkv equals the live one at R, and a member written by the native restore with the
//! replay boots in real etcd (3.5.1 and 3.6.16) with `endpoint hashkv --rev R` equal to the
//! live value, every key with its original revisions, version and lease, and a watch from
//! a revision <= R delivering exactly the recorded events.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::native::{BootMember, Booted};
use crate::common::versions::etcd36;
use crate::common::{assert_exit, etcd35, free_port, run_lifeboat, Bins, Cluster, Opts};
use etcd_client::{Client, EventType, PutOptions, Txn, TxnOp, WatchOptions};
use lifeboat::catalog::Access;
use lifeboat::format::capture::{KeyValue, Record};
use lifeboat::restore::native::{write_member_dirs_styled, MemberSpec, RestoreSpec, RestoreStyle};
use lifeboat::restore::replay::{replay, FileImage, Replaying};

mod compacted;
mod plan;

/// What the live cluster answered at one revision.
struct Measured {
    revision: i64,
    hash: u32,
    /// `get "" --from-key -w json` kvs at that moment.
    kvs: serde_json::Value,
}

/// One version's run: the snapshot, the records, the measurements; the cluster is gone.
struct Run {
    _dir: tempfile::TempDir,
    /// The local destination holding the base backup.
    dest: PathBuf,
    /// The backup's database image and its SHA-256.
    db: Vec<u8>,
    sha: [u8; 32],
    base: i64,
    records: Vec<Record>,
    measured: Vec<Measured>,
    compact: i64,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn kvs_now(c: &Cluster) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&c.ctl_ok(&["get", "", "--from-key", "-w", "json"])).unwrap();
    v["kvs"].clone()
}

fn to_record(kind: EventType, kv: &etcd_client::KeyValue) -> Record {
    match kind {
        EventType::Put => Record::Put(KeyValue {
            key: kv.key().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
            value: kv.value().to_vec(),
            lease: kv.lease(),
        }),
        EventType::Delete => Record::Delete {
            key: kv.key().to_vec(),
            revision: kv.mod_revision(),
        },
    }
}

/// Snapshot, workload, watch, measurements.
fn run(bins: &Bins) -> Run {
    let dir = tempfile::TempDir::new().unwrap();
    let c = Cluster::single(bins, Opts::default());
    // Enough keys that bucket `key` spans pages: the replay appends along its rightmost path.
    c.fill("/fill/", 300, 100);
    // The base: a lifeboat backup in a local destination.
    let dest = dir.path().join("dest");
    let o = run_lifeboat([
        "backup",
        "--to",
        dest.to_str().unwrap(),
        "--endpoints",
        &c.endpoints(),
    ]);
    assert_exit(&o, 0);
    let repo = Access::default()
        .repository(dest.to_str().unwrap(), false)
        .unwrap();
    let m = repo.resolve("latest").unwrap();
    let r = repo.open_db(&m).unwrap();
    let size = lifeboat::io::ReadAt::size(&r);
    let mut db = lifeboat::io::ReadAt::read_vec_at(&r, 0, size as usize).unwrap();
    if size % 512 == 32 {
        db.truncate(db.len() - 32);
    }
    let base = m.revision;
    assert_eq!(
        lifeboat::format::etcd::summary(&db[..]).unwrap().revision,
        base
    );
    let mut extra: Vec<Record> = Vec::new();
    let mut measured: Vec<Measured> = Vec::new();
    let rt = rt();
    let (events, compact) = rt.block_on(async {
        let mut cl = Client::connect([c.endpoints()], None).await.unwrap();
        let mut w = cl
            .watch(
                "",
                Some(
                    WatchOptions::new()
                        .with_all_keys()
                        .with_start_revision(base + 1),
                ),
            )
            .await
            .unwrap();
        let rev = |h: Option<&etcd_client::ResponseHeader>| h.unwrap().revision();
        let measure =
            async |cl: &mut Client, measured: &mut Vec<Measured>, extra: &mut Vec<Record>| {
                let r = rev(cl.get("x", None).await.unwrap().header());
                let h = cl.hash_kv(r).await.unwrap();
                extra.push(Record::LiveHash {
                    revision: r,
                    hash: h.hash(),
                    compact_revision: h.compact_version(),
                });
                measured.push(Measured {
                    revision: r,
                    hash: h.hash(),
                    kvs: kvs_now(&c),
                });
            };
        cl.put("/p/a", "1", None).await.unwrap();
        // Three changes in one revision: sub revisions 0, 1, 2 (the delete a tombstone).
        let t = Txn::new().and_then([
            TxnOp::put("/t/1", "one", None),
            TxnOp::put("/t/2", "two", None),
            TxnOp::delete("/fill/00000001", None),
        ]);
        let tr = cl.txn(t).await.unwrap();
        let lease = cl.lease_grant(600, None).await.unwrap();
        extra.push(Record::LeaseGrant {
            id: lease.id(),
            ttl: lease.ttl(),
            revision: rev(tr.header()),
        });
        let with_lease = || Some(PutOptions::new().with_lease(lease.id()));
        cl.put("/l/1", "leased", with_lease()).await.unwrap();
        cl.put("/l/2", "leased", with_lease()).await.unwrap();
        measure(&mut cl, &mut measured, &mut extra).await;
        cl.put("/p/a", "2", None).await.unwrap();
        cl.lease_revoke(lease.id()).await.unwrap();
        let r = rev(cl.get("x", None).await.unwrap().header());
        extra.push(Record::LeaseRevoke {
            id: lease.id(),
            revision: r,
        });
        measure(&mut cl, &mut measured, &mut extra).await;
        let d = cl.delete("/p/a", None).await.unwrap();
        let compact = rev(d.header()) - 2;
        cl.compact(compact, None).await.unwrap();
        extra.push(Record::Compact {
            compact_revision: compact,
            revision: rev(d.header()),
        });
        measure(&mut cl, &mut measured, &mut extra).await;
        cl.put("/p/a", "3", None).await.unwrap();
        let t = Txn::new().and_then([
            TxnOp::put("/t/3", "three", None),
            TxnOp::delete("/t/1", None),
            TxnOp::put("/t/4", "four", None),
        ]);
        cl.txn(t).await.unwrap();
        measure(&mut cl, &mut measured, &mut extra).await;
        let last = measured.last().unwrap().revision;
        let mut events = Vec::new();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(20), w.message())
                .await
                .expect("watch delivers the workload")
                .unwrap()
                .unwrap();
            for e in m.events() {
                events.push(to_record(e.event_type(), e.kv().unwrap()));
            }
            if events.last().is_some_and(|e| e.revision() >= last) {
                break;
            }
        }
        (events, compact)
    });
    drop(c);
    // Changes first, then what the test knows at the same revision; stable by revision.
    let mut records = events;
    records.extend(extra);
    records.sort_by_key(Record::revision);
    let mut sha = [0u8; 32];
    hex::decode_to_slice(&m.db_sha256, &mut sha).unwrap();
    Run {
        db,
        sha,
        dest,
        _dir: dir,
        base,
        records,
        measured,
        compact,
    }
}

/// Compare etcdctl `get -w json` kvs (the fields that make a key's history).
fn same_kvs(got: &serde_json::Value, want: &serde_json::Value, what: &str) {
    let fields = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|kv| {
                        format!(
                            "{} c{} m{} v{} {} l{}",
                            kv["key"],
                            kv["create_revision"],
                            kv["mod_revision"],
                            kv["version"],
                            kv["value"],
                            kv["lease"]
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(fields(got), fields(want), "{what}");
}

fn restore_and_boot(bins: &Bins, run: &Run, m: &Measured) {
    // The path a restore takes: a checked copy in a temporary file, the records committed
    // in small transactions (several here, to cross their seams).
    let dir = tempfile::TempDir::new().unwrap();
    let mut img = FileImage::copy_of(dir.path(), &run.db, Some((run.sha, "backup"))).unwrap();
    let mut rep = Replaying::new(&mut img, m.revision, 256).unwrap();
    for rec in &run.records {
        rep.feed(rec).unwrap();
    }
    let r = rep.finish().unwrap();
    let whole = replay(&run.db, &run.records, m.revision).unwrap().1;
    assert_eq!(
        (r.hashkv, &r.checked, r.replay.stats),
        (whole.hashkv, &whole.checked, whole.replay.stats)
    );
    assert_eq!(
        r.hashkv,
        Some(m.hash),
        "{}: offline hashkv at {} differs from the live one",
        bins.version,
        m.revision
    );
    let peer = format!("http://127.0.0.1:{}", free_port());
    let spec = RestoreSpec {
        members: vec![MemberSpec {
            name: "r0".into(),
            peer_urls: vec![peer.clone()],
        }],
        token: "pitr".into(),
        bump_revision: None,
        mark_compacted: false,
    };
    let data = dir.path().join("r0");
    write_member_dirs_styled(
        &img,
        None,
        &spec,
        &[("r0".into(), data.clone(), None::<PathBuf>)],
        RestoreStyle::for_version(bins.version),
    )
    .unwrap();
    let b = Booted::start(
        bins,
        bins,
        &[BootMember {
            name: "r0".into(),
            data_dir: data,
            peer_url: peer,
        }],
        Duration::from_secs(30),
    );
    let rev = m.revision.to_string();
    let o = b.ctl(&["endpoint", "hashkv", "--rev", &rev, "-w", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hk: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        hk[0]["HashKV"]["hash"].as_u64(),
        Some(u64::from(m.hash)),
        "{}: restored hashkv at {rev}",
        bins.version
    );
    let o = b.ctl(&["get", "", "--from-key", "-w", "json"]);
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(got["header"]["revision"].as_i64(), Some(m.revision));
    same_kvs(
        &got["kvs"],
        &m.kvs,
        &format!("{} keys at {rev}", bins.version),
    );
    // The lease as of R: granted with its keys attached, or gone after its revoke.
    let (mut lease, mut live) = (0i64, false);
    for r in run.records.iter().filter(|r| r.revision() <= m.revision) {
        match r {
            Record::LeaseGrant { id, .. } => (lease, live) = (*id, true),
            Record::LeaseRevoke { .. } => live = false,
            _ => {}
        }
    }
    let o = b.ctl(&[
        "lease",
        "timetolive",
        &format!("{lease:x}"),
        "--keys",
        "-w",
        "json",
    ]);
    let ttl: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    if live {
        assert!(
            ttl["ttl"].as_i64().unwrap_or(-1) > 0,
            "{rev}: lease {lease:x} {ttl}"
        );
        assert_eq!(
            ttl["keys"].as_array().map(Vec::len),
            Some(2),
            "{rev}: {ttl}"
        );
    } else {
        assert_eq!(
            ttl["ttl"].as_i64(),
            Some(-1),
            "{rev}: lease {lease:x} {ttl}"
        );
    }
    // A watch from the oldest revision the restored member keeps replays the records.
    let from = (run.base + 1).max(if m.revision >= run.compact + 2 {
        run.compact
    } else {
        0
    });
    let want: Vec<Record> = run
        .records
        .iter()
        .filter(|r| matches!(r, Record::Put(_) | Record::Delete { .. }))
        .filter(|r| (from..=m.revision).contains(&r.revision()))
        .cloned()
        .collect();
    let got = rt().block_on(async {
        let mut cl = Client::connect([b.clients[0].clone()], None).await.unwrap();
        let mut w = cl
            .watch(
                "",
                Some(
                    WatchOptions::new()
                        .with_all_keys()
                        .with_start_revision(from),
                ),
            )
            .await
            .unwrap();
        let mut got = Vec::new();
        while got.len() < want.len() {
            let m = tokio::time::timeout(Duration::from_secs(20), w.message())
                .await
                .expect("the restored member serves the watch")
                .unwrap()
                .unwrap();
            assert!(
                !m.canceled(),
                "watch from {from} canceled: {}",
                m.cancel_reason()
            );
            for e in m.events() {
                got.push(to_record(e.event_type(), e.kv().unwrap()));
            }
        }
        got
    });
    assert_eq!(
        got, want,
        "{}: watch from {from} on the restore to {rev}",
        bins.version
    );
}

fn prove(bins: Bins) {
    let run = run(&bins);
    assert_eq!(run.measured.len(), 4);
    for m in &run.measured {
        restore_and_boot(&bins, &run, m);
    }
    plan::plan_apply_check(&bins, &run, &run.measured[2], false);
    // Compacted: after the compaction and lease revoke (2), and at the last revision (3).
    plan::plan_apply_check(&bins, &run, &run.measured[2], true);
    compacted::replays(&run);
    plan::cli_plan(&bins, &run);
    // The newest replay checked every live hash recorded up to it.
    let last = run.measured.last().unwrap().revision;
    let (_, r) = replay(&run.db, &run.records, last).unwrap();
    let all: Vec<i64> = run.measured.iter().map(|m| m.revision).collect();
    assert_eq!(r.checked, all);
    // A live hash that does not match is refused, naming its revision.
    let mut bad = run.records.clone();
    for r in bad.iter_mut() {
        if let Record::LiveHash { revision, hash, .. } = r {
            if *revision == all[1] {
                *hash ^= 1;
            }
        }
    }
    let e = replay(&run.db, &bad, last).unwrap_err();
    assert_eq!(e.exit_code() as i32, 3);
    assert!(
        e.to_string().contains(&format!("revision {}", all[1])),
        "{e}"
    );
}

#[test]
fn restore_to_revisions_on_etcd35() {
    prove(etcd35());
}

#[test]
fn restore_to_revisions_on_etcd36() {
    prove(etcd36());
}
