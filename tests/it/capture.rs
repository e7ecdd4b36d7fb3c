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
mod process;
mod restore;
mod scale;

use restore::restore_from_what_capture_stored;

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
