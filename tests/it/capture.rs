//! `lifeboat capture` on real etcd (3.5.16 and 3.6): what it stores is exactly the watch
//! history, in a local directory and in S3 (s3s-fs); kill -9 at random points never leaves
//! a torn segment listed, and a restart continues the chain without a duplicate revision.
#![cfg(feature = "s3")]

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat::catalog::capture::{list_segments, load_records};
use lifeboat::catalog::{Keys, Repository};
use lifeboat::format::capture::{KeyValue, Record};
use lifeboat::store::local::LocalStore;

use crate::common::s3::{signal, S3Server};
use crate::common::*;

mod compact_edge;
mod emptied;
mod scale;

fn repo(dir: &Path) -> Repository {
    let store = LocalStore::open(dir, false).unwrap();
    Repository::new(dir.display().to_string(), Arc::new(store), Keys::none())
}

/// The watch history `(after, upto]` of the cluster, as capture should record it.
fn history(c: &Cluster, after: i64, upto: i64) -> Vec<Record> {
    let ep = c.members[0].client_url.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = etcd_client::Client::connect([ep], None).await.unwrap();
        let opts = etcd_client::WatchOptions::new()
            .with_all_keys()
            .with_start_revision(after + 1);
        let mut w = client.watch(vec![0u8], Some(opts)).await.unwrap();
        let mut out = Vec::new();
        let mut last = after;
        while last < upto {
            let m = w.message().await.unwrap().unwrap();
            for ev in m.events() {
                let kv = ev.kv().unwrap();
                last = kv.mod_revision();
                if last > upto {
                    break;
                }
                out.push(match ev.event_type() {
                    etcd_client::EventType::Put => Record::Put(KeyValue {
                        key: kv.key().to_vec(),
                        create_revision: kv.create_revision(),
                        mod_revision: kv.mod_revision(),
                        version: kv.version(),
                        value: kv.value().to_vec(),
                        lease: kv.lease(),
                    }),
                    etcd_client::EventType::Delete => Record::Delete {
                        key: kv.key().to_vec(),
                        revision: kv.mod_revision(),
                    },
                });
            }
        }
        out
    })
}

fn head(c: &Cluster) -> i64 {
    let v: serde_json::Value =
        serde_json::from_str(&c.ctl_ok(&["get", "x", "-w", "json"])).unwrap();
    v["header"]["revision"].as_i64().unwrap()
}

fn events(recs: &[Record]) -> Vec<Record> {
    recs.iter()
        .filter(|r| matches!(r, Record::Put(_) | Record::Delete { .. }))
        .cloned()
        .collect()
}

fn config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("capture.toml");
    std::fs::write(&p, "[capture]\nflush = \"100ms\"\nhash_every = \"100ms\"\n").unwrap();
    p
}

fn spawn_capture(s3: &S3Server, cfg: &Path, c: &Cluster, to: &[&str], log: &Path) -> Child {
    let mut args = vec![
        "--config".to_string(),
        cfg.display().to_string(),
        "capture".into(),
    ];
    for t in to {
        args.push("--to".into());
        args.push(t.to_string());
    }
    args.extend(c.conn_args());
    let started = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("lifeboat: capture of cluster")
            .count()
    };
    let before = started(log);
    let mut child = s3.spawn_lifeboat_logged(args, &[], log);
    // Until capture says it runs: a stop sent before then could meet a process that has
    // not reached its signal handling yet (a bound, not a timing assertion).
    let deadline = Instant::now() + Duration::from_secs(60);
    while started(log) == before {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "capture exited {st} before starting: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "capture did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Wait until `dir` holds every revision up to `rev` (a bound, not a timing assertion).
fn wait_durable(dir: &Path, cluster: u64, rev: i64, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = list_segments(repo(dir).store(), cluster)
            .unwrap()
            .last()
            .map_or(0, |s| s.last);
        if last >= rev {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "capture never stored revision {rev} (at {last}): {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(mut child: Child, log: &Path) {
    signal(child.id(), "TERM");
    let st = child.wait().unwrap();
    assert!(
        st.success(),
        "capture exited {st}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn backup(c: &Cluster, to: &str) -> (u64, i64) {
    let mut args = vec![
        "-o".to_string(),
        "json".into(),
        "backup".into(),
        "--to".into(),
        to.into(),
    ];
    args.extend(c.conn_args());
    let o = run_lifeboat(&args);
    assert_exit(&o, 0);
    let m = json(&o);
    let id = u64::from_str_radix(m["cluster_id"].as_str().unwrap(), 16).unwrap();
    (id, m["revision"].as_i64().unwrap())
}

fn records_match(bins: Bins) {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::single(&bins, Opts::default());
    let s3 = S3Server::start(&["cap"]);
    let local = tmp.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let l = local.to_str().unwrap();
    c.put("/before/a", "1");
    let (cluster, b) = backup(&c, l);
    let o = s3.lifeboat([
        "backup",
        "--to",
        "s3://cap/etcd",
        "--endpoints",
        &c.endpoints(),
    ]);
    assert_exit(&o, 0);
    let log = tmp.path().join("capture.log");
    let cfg = config(tmp.path());
    let cap = spawn_capture(&s3, &cfg, &c, &[l, "s3://cap/etcd"], &log);

    // The workload: puts, an overwrite, deletes, a transaction of several operations in
    // one revision, a lease with two keys that is revoked.
    c.put("/a", "1");
    c.put("/a", "2");
    c.put("/b", "x");
    c.ctl_ok(&["del", "/before/a"]);
    let mut cmd = std::process::Command::new(&c.bins.etcdctl);
    cmd.env_clear()
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", c.endpoints()))
        .args(["txn"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut si = child.stdin.take().unwrap();
        si.write_all(b"\nput /t/1 one\nput /t/2 two\ndel /b\nput /t/3 three\n\n\n")
            .unwrap();
    }
    assert!(child.wait_with_output().unwrap().status.success());
    let granted = c.ctl_ok(&["lease", "grant", "600"]);
    let lease = granted.split_whitespace().nth(1).unwrap().to_string();
    c.ctl_ok(&["put", "/l/1", "v", &format!("--lease={lease}")]);
    c.ctl_ok(&["put", "/l/2", "v", &format!("--lease={lease}")]);
    c.put("/a", "3");
    c.ctl_ok(&["lease", "revoke", &lease]);
    let mid = head(&c);
    let expected_before = history(&c, b, mid);
    wait_durable(&local, cluster, mid, &log);
    let mid_hash = live_hash(&c, mid);
    // A compaction, then more writes: capture records it with the next HashKV mark.
    c.ctl_ok(&["compact", &mid.to_string()]);
    c.put("/after", "1");
    c.put("/after", "2");
    let end = head(&c);
    let expected_after = history(&c, mid, end);
    wait_durable(&local, cluster, end, &log);
    std::thread::sleep(Duration::from_millis(300));
    c.put("/after", "3");
    let end = head(&c);
    wait_durable(&local, cluster, end, &log);
    stop(cap, &log);

    let mut expected = expected_before;
    expected.extend(expected_after);
    expected.extend(history(&c, end - 1, end));
    let s3_dir = s3.root.path().join("cap/etcd");
    for dir in [&local, &s3_dir] {
        let r = repo(dir);
        let got = load_records(&r, &format!("{cluster:x}"), b, end).unwrap();
        assert_eq!(events(&got), expected, "{}", dir.display());
        // The lease: granted before its first put, revoked after.
        let id = i64::from_str_radix(&lease, 16).unwrap();
        // Its TTL is the granted 600 s, or 0 when the lease was granted and revoked between
        // two of capture's polls (it was never seen alive: documented).
        let grant = got.iter().position(
            |r| matches!(r, Record::LeaseGrant { id: g, ttl, .. } if *g == id && (*ttl == 600 || *ttl == 0)),
        );
        let first_put = got
            .iter()
            .position(|r| matches!(r, Record::Put(kv) if kv.lease == id));
        assert!(grant.is_some() && grant < first_put, "{got:?}");
        assert!(
            got.iter()
                .any(|r| matches!(r, Record::LeaseRevoke { id: g, .. } if *g == id)),
            "{got:?}"
        );
        assert!(got.iter().any(|r| matches!(r, Record::Compact { compact_revision, .. } if *compact_revision == mid)), "{got:?}");
        assert!(got.iter().any(|r| matches!(r, Record::LiveHash { .. })));
        assert!(got.iter().any(|r| matches!(r, Record::Clock { .. })));
        // Beyond the last durable revision: refused naming it.
        let e = load_records(&r, &format!("{cluster:x}"), b, end + 5).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("last durable captured revision {end}")),
            "{e}"
        );
    }
    let o = run_lifeboat(["-o", "json", "list", "--capture", "--from", l]);
    assert_exit(&o, 0);
    let w = json(&o);
    assert_eq!(w[0]["from_revision"].as_i64(), Some(b), "{w}");
    assert_eq!(w[0]["to_revision"].as_i64(), Some(end), "{w}");
    restore_from_what_capture_stored(&c, &s3, l, (mid, mid_hash), end, &tmp);
    verify_the_chain(&s3, l, end);
}

/// `verify --capture`: the chain and the live hashes hold, local and S3; a flipped byte in
/// a stored segment is damage (exit 3) naming it.
fn verify_the_chain(s3: &S3Server, local: &str, end: i64) {
    for from in [local, "s3://cap/etcd"] {
        let o = s3.lifeboat(["-o", "json", "verify", "--capture", "--from", from]);
        assert_exit(&o, 0);
        let v = json(&o);
        assert_eq!(v[0]["ok"].as_bool(), Some(true), "{v}");
        assert_eq!(v[0]["to_revision"].as_i64(), Some(end), "{v}");
        let checked = v[0]["live_hashes_checked"].as_array().unwrap();
        assert!(checked.len() >= 2, "{v}");
    }
    let mut segs: Vec<_> = std::fs::read_dir(local)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    let victim = &segs[segs.len() / 2];
    let mut b = std::fs::read(victim).unwrap();
    let n = b.len();
    b[n / 2] ^= 0x20;
    std::fs::write(victim, b).unwrap();
    let o = run_lifeboat(["-o", "json", "verify", "--capture", "--from", local]);
    assert_exit(&o, 3);
    let v = json(&o);
    let problems = v[0]["problems"].to_string();
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(problems.contains(name), "{v}");
}

/// The live cluster's `HashKV` at `rev`.
fn live_hash(c: &Cluster, rev: i64) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&c.ctl_ok(&[
        "endpoint",
        "hashkv",
        "--rev",
        &rev.to_string(),
        "-w",
        "json",
    ]))
    .unwrap();
    v[0]["HashKV"]["hash"].as_u64().unwrap()
}

/// The whole path an operator takes: what `capture` stored, read by `restore test` and
/// `restore plan` through `load_records` (no records collected by the test), local and S3:
/// the restored hashkv at R equals the live cluster's at R.
fn restore_from_what_capture_stored(
    c: &Cluster,
    s3: &S3Server,
    local: &str,
    (mid, mid_hash): (i64, u64),
    end: i64,
    tmp: &tempfile::TempDir,
) {
    let etcd = c.bins.etcd.to_str().unwrap();
    // `mid` was hashed before the compaction that followed it (a hashkv depends on what
    // was compacted): a restore to `mid` has not replayed that compaction yet.
    let end_hash = live_hash(c, end);
    for (from, rev, want) in [(local, end, end_hash), ("s3://cap/etcd", mid, mid_hash)] {
        let o = s3.lifeboat([
            "-o",
            "json",
            "restore",
            "test",
            "--from",
            from,
            "--etcd",
            etcd,
            "--to-revision",
            &rev.to_string(),
        ]);
        assert_exit(&o, 0);
        let r = json(&o);
        assert_eq!(r["ok"].as_bool(), Some(true), "{r}");
        assert_eq!(r["to_revision"].as_i64(), Some(rev), "{r}");
        assert_eq!(r["hashkv"].as_u64(), Some(want), "{from} at {rev}: {r}");
    }
    // --to-time: now is after every clock mark, so the plan restores the last durable
    // revision; a revision past it is refused with the last one named.
    let topo = one_member_topology(c.bins.version, tmp.path());
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let plan = |flag: &str, v: &str, out: &str| {
        run_lifeboat([
            "-o",
            "json",
            "restore",
            "plan",
            "--from",
            local,
            "--topology",
            topo.to_str().unwrap(),
            "--out",
            tmp.path().join(out).to_str().unwrap(),
            flag,
            v,
        ])
    };
    let o = plan("--to-time", &now, "by-time");
    assert_exit(&o, 0);
    let p = json(&o);
    assert_eq!(p["to_revision"].as_i64(), Some(end), "{p}");
    assert_eq!(p["expected_hashkv"].as_u64(), Some(end_hash), "{p}");
    // --to-time at the moment a segment in the middle was sealed (its name says when):
    // the plan restores that segment's last revision, found from the names.
    let mut segs: Vec<(i64, i64)> = std::fs::read_dir(local)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            let f: Vec<&str> = n.strip_suffix(".seg")?.split('-').collect();
            (f.len() == 5 && f[0] == "capture")
                .then(|| (f[3].parse().unwrap(), f[4].parse().unwrap()))
        })
        .collect();
    segs.sort();
    let (_, sealed_ms) = segs[segs.len() / 2];
    let seg_last = segs
        .iter()
        .filter(|s| s.1 <= sealed_ms)
        .map(|s| s.0)
        .max()
        .unwrap();
    let sealed = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(sealed_ms) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let o = plan("--to-time", &sealed, "by-segment-time");
    assert_exit(&o, 0);
    let p = json(&o);
    assert_eq!(p["to_revision"].as_i64(), Some(seg_last), "{sealed}: {p}");
    let o = plan("--to-revision", &(end + 10).to_string(), "too-far");
    assert_exit(&o, 2);
    let e = json(&o);
    assert_eq!(e["flag"].as_str(), Some("--to-revision"), "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains(&format!("restore to revision {end} at most")),
        "{e}"
    );
    // --compact, from S3 through the CLI: the restore's hashkv at `end` is the live
    // cluster's once that is compacted at end-1 too, and the plan records the compaction.
    let o = s3.lifeboat([
        "-o",
        "json",
        "restore",
        "test",
        "--from",
        "s3://cap/etcd",
        "--etcd",
        etcd,
        "--to-revision",
        &end.to_string(),
        "--compact",
    ]);
    assert_exit(&o, 0);
    let r = json(&o);
    assert_eq!(r["ok"].as_bool(), Some(true), "{r}");
    let o = s3.lifeboat([
        "-o",
        "json",
        "restore",
        "plan",
        "--from",
        "s3://cap/etcd",
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        tmp.path().join("compacted").to_str().unwrap(),
        "--to-revision",
        &end.to_string(),
        "--compact",
    ]);
    assert_exit(&o, 0);
    let p = json(&o);
    assert_eq!(p["replay"]["compacted"].as_bool(), Some(true), "{p}");
    assert_eq!(
        p["replay"]["compact_revision"].as_i64(),
        Some(end - 1),
        "{p}"
    );
    assert_eq!(p["expected_hashkv"], r["hashkv"], "{p}");
    // The plan names the records by the segments they were read from.
    assert_eq!(
        p["replay"]["records_sha256_of"].as_str(),
        Some("segments"),
        "{p}"
    );
    // The plan keeps what its replay committed beside plan.json, for `restore apply`.
    let dir = tmp.path().join("compacted");
    let edits = dir.join("replay.edits");
    let kept = std::fs::read(&edits).unwrap();
    assert_eq!(
        p["replay"]["edits"]["bytes"].as_u64(),
        Some(kept.len() as u64),
        "{p}"
    );
    // Without that file, `restore apply` reads the segments again and refuses others than
    // the plan's (a plan whose digest differs), before writing anything.
    std::fs::remove_file(&edits).unwrap();
    let plan_json = dir.join("plan.json");
    let good = std::fs::read_to_string(&plan_json).unwrap();
    let digest = p["replay"]["records_sha256"].as_str().unwrap();
    std::fs::write(&plan_json, good.replace(digest, &"0".repeat(64))).unwrap();
    let apply_with = |extra: &[&str]| {
        let mut args = vec!["restore", "apply", "--plan", dir.to_str().unwrap()];
        args.extend(["--node", "r0"]);
        args.extend(extra);
        s3.lifeboat(args)
    };
    let apply = || apply_with(&[]);
    let o = apply();
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("make a new plan"), "{}", stderr(&o));
    let r0 = tmp.path().join("r0");
    assert!(!r0.join("member").exists());
    std::fs::write(&plan_json, good).unwrap();
    // The plan as written but without its kept file: the segments are read and replayed.
    let o = apply();
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("replay.edits is missing"),
        "{}",
        stderr(&o)
    );
    let db = r0.join("member").join("snap").join("db");
    let replayed = std::fs::read(&db).unwrap();
    std::fs::remove_dir_all(&r0).unwrap();
    // A kept file that is not the plan's is refused, naming it, before anything is
    // written; the plan's own is committed without reading the segments, and writes the
    // same database byte for byte.
    let mut damaged = kept.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    std::fs::write(&edits, &damaged).unwrap();
    let o = apply();
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("replay.edits"), "{}", stderr(&o));
    assert!(!r0.join("member").exists());
    std::fs::write(&edits, &kept).unwrap();
    // --dry-run says which way apply writes the member.
    let o = apply_with(&["--dry-run"]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("replay.edits: its replay of"),
        "{}",
        stdout(&o)
    );
    assert_exit(&apply(), 0);
    assert!(
        std::fs::read(&db).unwrap() == replayed,
        "the kept edits wrote another db"
    );
    c.ctl_ok(&["compact", &(end - 1).to_string()]);
    assert_eq!(r["hashkv"].as_u64(), Some(live_hash(c, end)), "{r}");
    // --compact alone is refused: it compacts a point-in-time window.
    let o = run_lifeboat([
        "-o",
        "json",
        "restore",
        "plan",
        "--from",
        local,
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        tmp.path().join("no-target").to_str().unwrap(),
        "--compact",
    ]);
    assert_exit(&o, 2);
    assert_eq!(json(&o)["flag"].as_str(), Some("--compact"));
    // A point-in-time plan from a damaged backup is refused naming it (the copy the
    // replay would start from is made by that verify), and leaves nothing behind.
    let damaged = tmp.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    for e in std::fs::read_dir(local).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), damaged.join(e.file_name())).unwrap();
    }
    // One byte flipped in the middle of the first file whose name ends so.
    let damage = |suffix: &str| {
        let file = std::fs::read_dir(&damaged)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&file, &bytes).unwrap();
    };
    damage(".db.zst");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let refused = || {
        let o = run_lifeboat([
            "restore",
            "plan",
            "--from",
            damaged.to_str().unwrap(),
            "--topology",
            topo.to_str().unwrap(),
            "--out",
            work.join("plan").to_str().unwrap(),
            "--to-revision",
            &end.to_string(),
            "--compact",
        ]);
        assert_exit(&o, 3);
        assert!(stderr(&o).contains("does not verify"), "{}", stderr(&o));
        assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
    };
    refused();
    // With a damaged segment too, read while the backup is verified, the backup is still
    // what is named: its verdict comes first, as when the two were read in turn.
    damage(".seg");
    refused();
}

#[test]
fn records_equal_the_watch_history_3516() {
    records_match(native::etcd3516());
}

#[test]
fn records_equal_the_watch_history_36() {
    records_match(versions::etcd36());
}

#[test]
fn records_equal_the_watch_history_37() {
    records_match(versions::etcd37());
}

/// kill -9 at random points while writes go on; each restart continues the chain.
#[test]
fn kill_9_and_restart_continue_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Arc::new(Cluster::single(&native::etcd3516(), Opts::default()));
    let s3 = S3Server::start(&["cap"]);
    let local = tmp.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let l = local.to_str().unwrap().to_string();
    let (cluster, b) = backup(&c, &l);
    let log = tmp.path().join("capture.log");
    let cfg = config(tmp.path());
    let writer = {
        let c = Arc::clone(&c);
        std::thread::spawn(move || {
            for i in 0..150 {
                c.put(&format!("/load/{}", i % 40), &format!("value {i}"));
            }
        })
    };
    let mut seed = std::process::id() as u64 | 1;
    for _ in 0..4 {
        let cap = spawn_capture(&s3, &cfg, &c, &[&l], &log);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(300 + seed % 900));
        signal(cap.id(), "KILL");
        let mut cap = cap;
        let _ = cap.wait();
        // Whatever lists is whole and chained.
        if let Some(last) = list_segments(repo(&local).store(), cluster).unwrap().last() {
            load_records(&repo(&local), &format!("{cluster:x}"), b, last.last).unwrap();
        }
    }
    writer.join().unwrap();
    let end = head(&c);
    let cap = spawn_capture(&s3, &cfg, &c, &[&l], &log);
    wait_durable(&local, cluster, end, &log);
    stop(cap, &log);
    let got = load_records(&repo(&local), &format!("{cluster:x}"), b, end).unwrap();
    let got = events(&got);
    // Equal to the watch history: every revision once, none doubled by a restart.
    assert_eq!(got, history(&c, b, end));
    let mut revs: Vec<i64> = got.iter().map(Record::revision).collect();
    revs.dedup();
    assert_eq!(revs.len(), 150, "one revision per put");

    // Writes while capture is down, then a compaction past them: the restart records a gap,
    // logs it once, and restores across it are refused naming the nearest revisions.
    for i in 0..3 {
        c.put("/gap", &i.to_string());
    }
    let compacted = head(&c);
    c.ctl_ok(&["compact", &compacted.to_string()]);
    c.put("/gap", "after");
    let end2 = head(&c);
    let cap = spawn_capture(&s3, &cfg, &c, &[&l], &log);
    wait_durable(&local, cluster, end2, &log);
    stop(cap, &log);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.matches("a gap in the chain").count(), 1, "{logged}");
    let e = load_records(&repo(&local), &format!("{cluster:x}"), b, end2)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("revisions {}..{}", end + 1, compacted - 1)),
        "{e}"
    );
    assert!(e.contains(&format!("up to {end}")), "{e}");
    // Through the CLI, a target across the gap is the flag's fault: exit 2, nothing booted.
    let o = run_lifeboat([
        "-o",
        "json",
        "restore",
        "test",
        "--from",
        &l,
        "--etcd",
        c.bins.etcd.to_str().unwrap(),
        "--to-revision",
        &end2.to_string(),
    ]);
    assert_exit(&o, 2);
    let j = json(&o);
    assert_eq!(j["flag"].as_str(), Some("--to-revision"), "{j}");
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains(&format!("up to {end}")),
        "{j}"
    );
    let o = run_lifeboat(["-o", "json", "list", "--capture", "--from", &l]);
    let w = json(&o);
    assert_eq!(w.as_array().unwrap().len(), 2, "{w}");
    assert_eq!(
        w[0]["gap_after"],
        serde_json::json!([end + 1, compacted - 1]),
        "{w}"
    );
    assert_eq!(w[1]["to_revision"].as_i64(), Some(end2), "{w}");
    assert!(w[1]["from_backup"].is_null(), "{w}");
}

/// SIGTERM to `lifeboat run` with `[capture]`: what capture holds is sealed and stored
/// before the daemon exits. The flush is ten minutes off, so nothing but the stop stores
/// the changes made just before it (before, the daemon aborted capture and they waited
/// for the next start to be captured again).
#[test]
fn sigterm_stores_what_capture_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::single(&etcd35(), Opts::default());
    let local = tmp.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let (cluster, b) = backup(&c, local.to_str().unwrap());
    let cfg = tmp.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[etcd]\nendpoints = [\"{}\"]\n[[destination]]\nurl = \"{}\"\n[schedule]\nevery = \"24h\"\n[metrics]\nlisten = \"off\"\n[capture]\nflush = \"10m\"\nhash_every = \"10m\"\nmax_lag = \"10m\"\n",
            c.endpoints(),
            local.display()
        ),
    )
    .unwrap();
    let log = tmp.path().join("run.log");
    let daemon = std::process::Command::new(lifeboat())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("capture beside the schedule")
    {
        assert!(Instant::now() < deadline, "capture never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its watch is open a moment after it starts; changes made before that are read from
    // the backup's revision on anyway.
    for i in 0..5 {
        c.put("/held", &i.to_string());
    }
    let end = head(&c);
    // Delivered to capture well within this (a watch on loopback answers in milliseconds);
    // not sealed: the flush is minutes away.
    std::thread::sleep(Duration::from_secs(3));
    let before = list_segments(repo(&local).store(), cluster)
        .unwrap()
        .last()
        .map_or(0, |s| s.last);
    assert!(before < end, "stored before the stop: flush did not hold");
    stop(daemon, &log);
    let got = load_records(&repo(&local), &format!("{cluster:x}"), b, end).unwrap();
    assert_eq!(events(&got), history(&c, b, end));
}

/// `lifeboat run` with `[capture]`: the leader's daemon captures beside the schedule and
/// serves capture's metrics; /healthz stays 200 while it keeps up.
#[test]
fn run_captures_beside_the_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::single(&versions::etcd36(), Opts::default());
    let local = tmp.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let (cluster, b) = backup(&c, local.to_str().unwrap());
    let port = free_port();
    let cfg = tmp.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[etcd]\nendpoints = [\"{}\"]\n[[destination]]\nurl = \"{}\"\n[schedule]\nevery = \"24h\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n[capture]\nflush = \"100ms\"\n",
            c.endpoints(),
            local.display()
        ),
    )
    .unwrap();
    let log = tmp.path().join("run.log");
    let mut daemon = std::process::Command::new(lifeboat())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    for i in 0..5 {
        c.put("/run", &i.to_string());
    }
    let end = head(&c);
    wait_durable(&local, cluster, end, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = http_get(port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        if m.contains(&format!("lifeboat_capture_durable_revision {end}")) {
            assert!(m.contains("lifeboat_capture_gaps_total 0"), "{m}");
            assert!(m.ends_with("# EOF\n"), "{m}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed revision {end}: {m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // /healthz: capture keeps up (the backup taken above is the schedule's last success).
    let (code, body) = http_get(port, "/healthz").unwrap();
    assert!(!body.contains("capture"), "{code} {body}");
    signal(daemon.id(), "TERM");
    assert!(
        daemon.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let got = load_records(&repo(&local), &format!("{cluster:x}"), b, end).unwrap();
    assert_eq!(events(&got), history(&c, b, end));

    // Down while etcd compacts what it did not see: the restarted daemon records the gap
    // and takes a full backup at once (restores can start after the gap).
    for i in 0..3 {
        c.put("/run", &format!("down {i}"));
    }
    let compacted = head(&c);
    c.ctl_ok(&["compact", &compacted.to_string()]);
    c.put("/run", "back");
    let end2 = head(&c);
    let log2 = tmp.path().join("run2.log");
    let mut daemon = std::process::Command::new(lifeboat())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log2).unwrap())
        .spawn()
        .unwrap();
    wait_durable(&local, cluster, end2, &log2);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = run_lifeboat(["-o", "json", "list", "--from", local.to_str().unwrap()]);
        let n = json(&o).as_array().map_or(0, Vec::len);
        if n == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no backup after the gap: {}",
            std::fs::read_to_string(&log2).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    signal(daemon.id(), "TERM");
    assert!(daemon.wait().unwrap().success());
    let text = std::fs::read_to_string(&log2).unwrap();
    assert!(
        text.contains("a gap in the chain") && text.contains("taking a full backup now"),
        "{text}"
    );
}

/// A stalled S3 destination does not hold capture up: the local destination keeps storing
/// segments while S3 is stopped, and S3 catches up (the same chain) once it answers again.
#[test]
fn a_stalled_s3_destination_does_not_block_capture() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::single(&native::etcd3516(), Opts::default());
    let s3 = S3Server::start(&["cap"]);
    let local = tmp.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let l = local.to_str().unwrap();
    let (cluster, b) = backup(&c, l);
    assert_exit(
        &s3.lifeboat([
            "backup",
            "--to",
            "s3://cap/etcd",
            "--endpoints",
            &c.endpoints(),
        ]),
        0,
    );
    let log = tmp.path().join("capture.log");
    let cap = spawn_capture(&s3, &config(tmp.path()), &c, &[l, "s3://cap/etcd"], &log);
    c.put("/s", "0");
    wait_durable(&local, cluster, head(&c), &log);
    s3.pause();
    for i in 1..6 {
        c.put("/s", &i.to_string());
    }
    let end = head(&c);
    wait_durable(&local, cluster, end, &log);
    s3.resume();
    let s3_dir = s3.root.path().join("cap/etcd");
    wait_durable(&s3_dir, cluster, end, &log);
    stop(cap, &log);
    let expected = history(&c, b, end);
    for dir in [&local, &s3_dir] {
        let got = load_records(&repo(dir), &format!("{cluster:x}"), b, end).unwrap();
        assert_eq!(events(&got), expected, "{}", dir.display());
    }
}

/// A one-member topology (member `r0`, data dir `DIR/r0`) in `DIR/topology.toml`.
pub(super) fn one_member_topology(version: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let topo = dir.join("topology.toml");
    std::fs::write(
        &topo,
        format!(
            "cluster_token = \"generate\"\netcd_version = \"{version}\"\n[[member]]\nname = \"r0\"\npeer_urls = [\"http://127.0.0.1:{}\"]\nclient_urls = [\"http://127.0.0.1:{}\"]\ndata_dir = \"{}\"\n",
            free_port(),
            free_port(),
            dir.join("r0").display()
        ),
    )
    .unwrap();
    topo
}
