//! The DR drill of issue 16 on real etcd (3.5.16, 3.5.1, 3.4.23, 3.6.16, 3.7.3): an
//! auth-enabled 3-member cluster (users, roles, root, leases, a compaction, a few thousand
//! keys) is backed up and every member killed; `restore plan` with the revision bump (the default on the plan's
//! command line here: the drill's keys are not /registry/ keys), `restore apply` per node,
//! the members started with the plan's flags, and `lifeboat restore check --plan DIR
//! --user root:PW` exits 0. The 3.5.16 drill also runs the RUNBOOK's checking steps and
//! the check's failures: a stopped member (4), another plan's cluster (4), a write after
//! the restore (3), no credentials (2).

use std::path::Path;

use crate::common::restore::*;
use crate::common::versions::{etcd36, etcd37};
use crate::common::*;

/// Plan, apply and start the restored cluster from `src`'s backup. `topology_version`: the
/// etcd version the topology names.
fn restore(
    src: &AuthSource,
    bins: &Bins,
    work: &Path,
    topology_version: &str,
) -> (serde_json::Value, Cluster) {
    restore_with(src, bins, work, topology_version, true)
}

/// As [`restore`], with the revision bump or `--no-bump-revision`.
fn restore_with(
    src: &AuthSource,
    bins: &Bins,
    work: &Path,
    topology_version: &str,
    bump: bool,
) -> (serde_json::Value, Cluster) {
    let topo = work.join("topology.toml");
    std::fs::write(&topo, restore_topology(&src.cluster, topology_version)).unwrap();
    let plan_dir = work.join("plan");
    let flag = if bump {
        "--bump-revision"
    } else {
        "--no-bump-revision"
    };
    let plan = make_plan(src.dest.path(), &topo, &plan_dir, &[flag]);
    let rev = src.manifest["revision"].as_i64().unwrap();
    let by = if bump { 1_000_000_000 } else { 0 };
    assert_eq!(plan["bump_revision"].as_u64(), Some(by));
    assert_eq!(plan["expected_revision"].as_i64(), Some(rev + by as i64));
    assert_eq!(plan["expected_keys"].as_u64(), Some(src.keys));
    assert!(plan["expected_hashkv"].is_u64(), "{plan}");
    apply_all(&plan_dir, &plan);
    let r = start_from_plan_with(bins, &plan, true);
    (plan, r)
}

/// Wait until member `i` answers `endpoint status` with a leader (no credentials needed).
fn wait_answers(r: &Cluster, i: usize) {
    let start = std::time::Instant::now();
    while r
        .status_of(i)
        .is_none_or(|s| s["Status"]["leader"].as_u64().unwrap_or(0) == 0)
    {
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// An etcd started by hand with a plan member's flags, killed when dropped.
struct Stray(std::process::Child);

impl Stray {
    fn start(bins: &Bins, member: &serde_json::Value, log: &Path) -> Stray {
        let args: Vec<&str> = member["etcd_flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let out = std::fs::File::create(log).unwrap();
        let child = std::process::Command::new(&bins.etcd)
            .args(&args)
            .arg("--log-level=warn")
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let peer = member["peer_urls"][0].as_str().unwrap();
        let addr = peer.trim_start_matches("http://").to_string();
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "stray etcd does not listen on {addr}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Stray(child)
    }
}

impl Drop for Stray {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[track_caller]
fn check_ok(plan_dir: &Path, plan: &serde_json::Value, keys: u64) -> serde_json::Value {
    let user = format!("root:{ROOT_PW}");
    let o = restore_check(plan_dir, &["--user", &user]);
    assert_exit(&o, 0);
    let v = json(&o);
    assert_eq!(v["ok"], true);
    assert_eq!(v["hashkv"], plan["expected_hashkv"], "{v}");
    assert_eq!(v["hashkv_expected"], plan["expected_hashkv"]);
    assert_eq!(v["revision"], plan["expected_revision"]);
    assert_eq!(v["keys"].as_u64(), Some(keys));
    assert_eq!(v["keys_expected"].as_u64(), Some(keys));
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for (m, p) in members.iter().zip(plan["members"].as_array().unwrap()) {
        assert_eq!(m["name"], p["name"]);
        assert_eq!(m["member_id"], p["member_id"]);
        assert_eq!(m["cluster_id"], plan["cluster_id"]);
        assert_eq!(m["ok"], true);
        assert_eq!(m["problems"].as_array().unwrap().len(), 0);
    }
    v
}

#[test]
fn drill_etcd3516_auth_bump_check_and_its_failures() {
    let bins = etcd3516();
    let mut src = auth_source(&bins);
    let work = TempDir::new().unwrap();
    let plan_dir = work.path().join("plan");

    // RUNBOOK step 1 probes the OLD cluster's client URLs: it fails while they run.
    let topo = work.path().join("topology.toml");
    std::fs::write(&topo, restore_topology(&src.cluster, "3.5.16")).unwrap();
    let early = work.path().join("early");
    make_plan(src.dest.path(), &topo, &early, &["--bump-revision"]);
    let stopped = runbook_command(&early, "for hp in");
    for m in &src.cluster.members {
        assert!(
            stopped.contains(m.client_url.trim_start_matches("http://")),
            "{stopped}"
        );
    }
    let o = run_runbook_command(&early, &stopped, &[]);
    assert_exit(&o, 1);
    assert_eq!(
        stdout(&o).matches("still answers").count(),
        3,
        "{}",
        stdout(&o)
    );
    src.kill();
    let o = run_runbook_command(&early, &stopped, &[]);
    assert_exit(&o, 0);

    let (plan, mut r) = restore(&src, &bins, work.path(), "3.5.16");
    let v = check_ok(&plan_dir, &plan, src.keys);
    assert!(v["leader"].is_string());

    // The RUNBOOK's last step, as written, with the credentials from the environment.
    let last = runbook_command(&plan_dir, "restore check");
    assert_eq!(last, "lifeboat restore check --plan .");
    let o = run_runbook_command(
        &plan_dir,
        &last,
        &[("ETCDCTL_USER", "root"), ("ETCDCTL_PASSWORD", ROOT_PW)],
    );
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("restore check: OK"), "{}", stdout(&o));

    // No credentials: a usage error naming --user, not a verdict.
    let o = restore_check(&plan_dir, &[]);
    assert_exit(&o, 2);
    assert_eq!(json(&o)["flag"], "--user", "{}", stdout(&o));

    // Another plan of the same backup (a new token) against this cluster: every member is
    // named with the cluster id it has.
    let other = work.path().join("other");
    let p2 = make_plan(src.dest.path(), &topo, &other, &["--bump-revision"]);
    // (restore() rewrote the topology file: the same URLs as `plan`, a new token.)
    assert_eq!(
        p2["members"][0]["client_urls"],
        plan["members"][0]["client_urls"]
    );
    assert_ne!(p2["cluster_id"], plan["cluster_id"]);
    let o = restore_check(&other, &["--user", &format!("root:{ROOT_PW}")]);
    assert_exit(&o, 4);
    let v = json(&o);
    assert_eq!(v["ok"], false);
    for m in v["members"].as_array().unwrap() {
        assert_eq!(m["ok"], false);
        assert_eq!(m["cluster_id"], plan["cluster_id"]);
        let p = m["problems"][0].as_str().unwrap();
        assert!(
            p.contains(plan["cluster_id"].as_str().unwrap())
                && p.contains(p2["cluster_id"].as_str().unwrap()),
            "{p}"
        );
    }
    let o = run_lifeboat([
        "restore",
        "check",
        "--plan",
        other.to_str().unwrap(),
        "--user",
        &format!("root:{ROOT_PW}"),
    ]);
    assert_exit(&o, 4);
    assert!(
        stderr(&o).contains("r2: answers as member"),
        "{}",
        stderr(&o)
    );

    // A stopped member: unhealthy, named.
    r.stop(2);
    let o = restore_check(&plan_dir, &["--user", &format!("root:{ROOT_PW}")]);
    assert_exit(&o, 4);
    let v = json(&o);
    assert_eq!(v["members"][2]["ok"], false);
    assert_eq!(v["members"][0]["ok"], true);
    let p = v["members"][2]["problems"][0].as_str().unwrap();
    assert!(p.contains("does not answer"), "{p}");

    // r2 started from another plan (new token, its own fresh data dir, the same URLs): it
    // never reaches a quorum, so it never serves its client URL: unhealthy, r2 named.
    let text = std::fs::read_to_string(&topo).unwrap();
    let fresh = work.path().join("r2-other");
    let old_dir = src.cluster.members[2].data_dir.display().to_string();
    std::fs::write(&topo, text.replace(&old_dir, fresh.to_str().unwrap())).unwrap();
    let third = work.path().join("third");
    let p3 = make_plan(src.dest.path(), &topo, &third, &["--bump-revision"]);
    let o = run_lifeboat([
        "restore",
        "apply",
        "--plan",
        third.to_str().unwrap(),
        "--node",
        "r2",
    ]);
    assert_exit(&o, 0);
    let stray = Stray::start(&bins, &p3["members"][2], &work.path().join("stray.log"));
    let o = restore_check(
        &plan_dir,
        &[
            "--user",
            &format!("root:{ROOT_PW}"),
            "--command-timeout",
            "2s",
        ],
    );
    assert_exit(&o, 4);
    let v = json(&o);
    let m2 = &v["members"][2];
    assert_eq!(m2["ok"], false);
    assert_eq!(v["members"][0]["ok"], true);
    let p = m2["problems"][0].as_str().unwrap();
    assert!(p.contains("another plan"), "{p}");
    drop(stray);

    r.restart(2);
    wait_answers(&r, 2);
    check_ok(&plan_dir, &plan, src.keys);

    // A write after the restore: the data are no longer the backup's.
    ctl_root(&r, &["put", "/drill/late", "x"]);
    let o = restore_check(&plan_dir, &["--user", &format!("root:{ROOT_PW}")]);
    assert_exit(&o, 3);
    let v = json(&o);
    assert_eq!(v["ok"], false);
    assert_eq!(v["keys"].as_u64(), Some(src.keys + 1));
    let problems = v["problems"].to_string();
    assert!(
        problems.contains("moved on by 1 since the restore"),
        "{problems}"
    );
}

/// etcd 3.5.1 nodes, named as such in the topology: lifeboat's writer does the bump (the
/// node's etcdutl has no --bump-revision before 3.5.10, so its scripts refuse that fallback).
#[test]
fn drill_etcd351_auth_bump_check() {
    let bins = etcd35();
    let mut src = auth_source(&bins);
    src.kill();
    let work = TempDir::new().unwrap();
    let (plan, _r) = restore(&src, &bins, work.path(), "3.5.1");
    check_ok(&work.path().join("plan"), &plan, src.keys);
}

/// etcd 3.4.23 nodes, as for 3.5.1.
#[test]
fn drill_etcd34_auth_bump_check() {
    let bins = etcd34();
    let mut src = auth_source(&bins);
    src.kill();
    let work = TempDir::new().unwrap();
    let (plan, _r) = restore(&src, &bins, work.path(), "3.4.23");
    check_ok(&work.path().join("plan"), &plan, src.keys);
}

/// Both drills on one backup of `bins`' cluster: with the bump, then (the restored members
/// stopped and their data dirs cleared, as after a failed first attempt) without it.
fn drill_with_and_without_bump(bins: &Bins, version: &str) {
    let mut src = auth_source(bins);
    src.kill();
    let work = TempDir::new().unwrap();
    let (plan, r) = restore_with(&src, bins, work.path(), version, true);
    check_ok(&work.path().join("plan"), &plan, src.keys);
    drop(r);
    for m in &src.cluster.members {
        let marker = format!("{}.lifeboat-restored", m.data_dir.display());
        let _ = std::fs::remove_file(marker);
        let _ = std::fs::remove_dir_all(&m.data_dir);
    }
    let work = TempDir::new().unwrap();
    let (plan, _r) = restore_with(&src, bins, work.path(), version, false);
    check_ok(&work.path().join("plan"), &plan, src.keys);
}

/// etcd 3.6.16 nodes: the snapshot carries a storage version that lifeboat's writer keeps.
#[test]
fn drill_etcd36_auth_check_with_and_without_bump() {
    drill_with_and_without_bump(&etcd36(), "3.6.16");
}

/// etcd 3.7.3 nodes (no v2 store at all), as for 3.6.16.
#[test]
fn drill_etcd37_auth_check_with_and_without_bump() {
    drill_with_and_without_bump(&etcd37(), "3.7.3");
}
