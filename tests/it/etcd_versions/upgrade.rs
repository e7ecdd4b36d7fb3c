//! Across releases: a backup restored onto a newer release through plan and apply, a
//! downgrade refused, and `status` through rolling upgrades 3.5.16 → 3.6.16 → 3.7.3.

use super::*;

/// The upgrade path a Kubernetes upgrade gone wrong needs, as an operator runs it: `restore
/// plan` from the backup with a topology naming the newer release, `restore apply` on every
/// node (the native writer), the members started with the plan's `etcd_flags` alone; then
/// every key and revision on every member, hashkv (equal to the backup's without a bump,
/// one value on all members with it), and `restore check --plan`.
fn upgrade(src: &Source, on: &Bins, bump: Option<u64>) {
    let dest = src.snap.parent().unwrap().join("backups");
    let tmp = TempDir::new().unwrap();
    let mut t = format!(
        "cluster_token = \"generate\"\netcd_version = \"{}\"\n",
        on.version
    );
    for i in 0..3 {
        t.push_str(&format!(
            "\n[[member]]\nname = \"r{i}\"\npeer_urls = [\"http://127.0.0.1:{}\"]\nclient_urls = [\"http://127.0.0.1:{}\"]\ndata_dir = \"{}\"\nhost = \"127.0.0.1\"\n",
            free_port(),
            free_port(),
            tmp.path().join(format!("r{i}")).display()
        ));
    }
    let topo = tmp.path().join("topology.toml");
    std::fs::write(&topo, t).unwrap();
    let plan_dir = tmp.path().join("plan");
    let flag = bump.map_or("--no-bump-revision".to_string(), |b| {
        format!("--bump-revision={b}")
    });
    let plan = make_plan(&dest, &topo, &plan_dir, &[&flag]);
    apply_all(&plan_dir, &plan);
    let c = start_from_plan(on, &plan);
    let what = format!(
        "{} backup planned and applied onto etcd {} bump={bump:?}",
        src.bins.version, on.version
    );
    for m in &c.members {
        let o = c.ctl_at(
            &m.client_url,
            &["get", "", "--from-key", "-w", "json", "--consistency=s"],
        );
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(got["kvs"], src.kvs, "{what} at {}", m.client_url);
        let want = src.revision + bump.map_or(0, |b| b as i64);
        assert_eq!(got["header"]["revision"].as_i64(), Some(want), "{what}");
    }
    let hk: serde_json::Value =
        serde_json::from_str(&c.ctl_ok(&["endpoint", "hashkv", "-w", "json"])).unwrap();
    let hashes: Vec<u64> = hk
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["HashKV"]["hash"].as_u64().unwrap())
        .collect();
    assert_eq!(hashes.len(), 3, "{what}");
    let want = if bump.is_none() {
        src.hashkv
    } else {
        hashes[0]
    };
    assert!(hashes.iter().all(|h| *h == want), "{what}: {hashes:?}");
    let o = restore_check(&plan_dir, &[]);
    assert_exit(&o, 0);
    let o = run_lifeboat([
        "status",
        "-o",
        "json",
        &format!("--endpoints={}", c.endpoints()),
    ]);
    assert_exit(&o, 0);
    let versions: Vec<serde_json::Value> = json(&o)["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].clone())
        .collect();
    assert_eq!(
        versions,
        vec![serde_json::Value::from(on.version); 3],
        "{what}"
    );
}

/// A 3.6.16 backup onto 3.7.3 nodes (Kubernetes' next etcd), through plan and apply.
#[test]
fn upgrade_a_3_6_backup_onto_3_7_by_plan_and_apply() {
    upgrade(source("3.6"), &etcd37(), None);
}

/// A 3.5.16 backup (no storage version) onto 3.6.16 nodes, through plan and apply, with
/// the revision bump: the Kubernetes 1.33 → 1.34 path.
#[test]
fn upgrade_a_3_5_16_backup_onto_3_6_by_plan_and_apply() {
    let s = source("3.5.16");
    assert!(
        s.manifest.get("storage_version").is_none(),
        "{:#}",
        s.manifest
    );
    upgrade(s, &etcd36(), Some(1000));
}

/// A 3.7 backup planned onto 3.6 nodes, or a 3.6 backup onto 3.5 nodes, is a downgrade:
/// refused at plan time (exit 2) naming the version to use. (etcd 3.6 refuses a 3.7 db at
/// boot; etcd 3.5 would start on a 3.6 db, which etcd does not support.)
#[test]
fn plan_refuses_a_downgrade() {
    for (version, target, want) in [("3.7", "3.6.16", "3.7"), ("3.6", "3.5.16", "3.6")] {
        let s = source(version);
        let dest = s.snap.parent().unwrap().join("backups");
        let tmp = TempDir::new().unwrap();
        let topo = tmp.path().join("topology.toml");
        std::fs::write(
            &topo,
            format!(
                "cluster_token = \"generate\"\netcd_version = \"{target}\"\n\n[[member]]\nname = \"r0\"\npeer_urls = [\"http://127.0.0.1:{}\"]\nclient_urls = [\"http://127.0.0.1:{}\"]\ndata_dir = \"{}\"\nhost = \"127.0.0.1\"\n",
                free_port(),
                free_port(),
                tmp.path().join("d").display()
            ),
        )
        .unwrap();
        let out = tmp.path().join("plan");
        let o = run_lifeboat([
            "restore",
            "plan",
            "--from",
            dest.to_str().unwrap(),
            "--topology",
            topo.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_exit(&o, 2);
        let e = stderr(&o);
        assert!(e.contains(&format!("use {want} or later")), "{e}");
        assert!(!out.join("plan.json").exists());
    }
}

/// What a member's client URL answers at `/version` (`etcdserver`, `etcdcluster`).
fn http_version(client_url: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let addr = client_url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /version HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{client_url}/version: {e}: {text}"))
}

/// `lifeboat status -o json` on the cluster: its exit code and report.
fn status_of(c: &Cluster) -> (i32, serde_json::Value) {
    let o = run_lifeboat([
        "status",
        "-o",
        "json",
        &format!("--endpoints={}", c.endpoints()),
    ]);
    (o.status.code().unwrap_or(-1), json(&o))
}

/// Wait until every member says the cluster version is `want` (the leader raises it a few
/// seconds after the last member runs the new release).
fn wait_cluster_version(c: &Cluster, want: &str) {
    let start = std::time::Instant::now();
    loop {
        let now: Vec<String> = c
            .members
            .iter()
            .map(|m| http_version(&m.client_url)["etcdcluster"].to_string())
            .collect();
        if now.iter().all(|v| v.trim_matches('"') == want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "cluster version still {now:?}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Restart member `i` on its own data dir with another release's etcd.
fn replace_binary(c: &mut Cluster, i: usize, bins: &Bins) {
    c.stop(i);
    c.members[i].etcd = bins.etcd.clone();
    c.restart(i);
    c.wait_healthy(Duration::from_secs(60));
}

/// The one version-skew finding of a report.
fn skew(j: &serde_json::Value) -> serde_json::Value {
    let all: Vec<&serde_json::Value> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "version-skew")
        .collect();
    assert_eq!(all.len(), 1, "{j:#}");
    all[0].clone()
}

/// `status` on one 3-member cluster through two rolling upgrades, a member at a time, each
/// restarted on its own data dir with the next release: 3.5.16 → 3.6.16 → 3.7.3. In the
/// middle of each, the doctor names who runs what and calls the mix one etcd supports (a
/// warning, exit 0; for 3.5.16 it adds the etcd project's advice to be on 3.5.26 first);
/// the cluster version (`/version`) stays the old minor version until the last member
/// runs the new one. Between and after, a 3.6 and a 3.7 cluster are healthy, each member
/// reporting its storage version.
#[test]
fn status_through_rolling_upgrades_3_5_to_3_6_to_3_7() {
    let (e35, e36, e37) = (common::native::etcd3516(), etcd36(), etcd37());
    // Raft snapshots every 25 entries: 3.7.3 panics replaying a WAL that still holds the
    // v2 entries 3.5 wrote at the cluster's creation (pbutil.MustUnmarshalMessage in
    // apply); a snapshot taken on 3.6 puts them behind the replay.
    let mut c = Cluster::start(
        &e35,
        3,
        Opts {
            snapshot_count: Some(25),
            ..Opts::default()
        },
    );
    c.put("/upgrade/k", "v");
    let versions = |j: &serde_json::Value, field: &str| -> Vec<String> {
        let mut v: Vec<(String, String)> = j["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_string(),
                    m[field].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, x)| x).collect()
    };
    for (old, new, cv_old, cv_new) in [
        (&e35, &e36, "3.5.0", "3.6.0"),
        (&e36, &e37, "3.6.0", "3.7.0"),
    ] {
        replace_binary(&mut c, 0, new);
        let (code, j) = status_of(&c);
        assert_eq!(code, 0, "{j:#}");
        assert_eq!(
            versions(&j, "version"),
            [new.version, old.version, old.version],
            "{j:#}"
        );
        let f = skew(&j);
        let msg = f["message"].as_str().unwrap();
        assert_eq!(f["level"], "warning", "{f:#}");
        assert!(
            msg.contains(&format!("{} on m1, m2; {} on m0", old.version, new.version))
                && msg.contains("a mix etcd supports"),
            "{msg}"
        );
        assert_eq!(
            msg.contains("3.5.26 or later"),
            old.version == "3.5.16",
            "{msg}"
        );
        assert!(
            f["remedy"].as_str().unwrap().contains("(m1), then"),
            "{f:#}"
        );
        for m in &c.members {
            assert_eq!(http_version(&m.client_url)["etcdcluster"], cv_old);
        }
        // 3.6+ report a storage version, the cluster version's (3.5 reports none).
        let sv = |v: &str| if v == "3.5.16" { "" } else { cv_old };
        assert_eq!(
            versions(&j, "storage_version"),
            [sv(new.version), sv(old.version), sv(old.version)],
            "{j:#}"
        );
        replace_binary(&mut c, 1, new);
        replace_binary(&mut c, 2, new);
        wait_cluster_version(&c, cv_new);
        let (code, j) = status_of(&c);
        assert_eq!(code, 0, "{j:#}");
        assert!(
            j["findings"].to_string().find("version-skew").is_none(),
            "{j:#}"
        );
        assert_eq!(versions(&j, "version"), [new.version; 3], "{j:#}");
        assert_eq!(versions(&j, "storage_version"), [cv_new; 3], "{j:#}");
        // Entries enough for a raft snapshot on every member of the new release.
        c.fill_batched("/upgrade/fill/", 40, 10, 1);
    }
    assert_eq!(
        c.ctl_ok(&["get", "/upgrade/k", "--print-value-only"])
            .trim(),
        "v"
    );
}
