//! `restore test` on real etcd (3.4.23, 3.5.1, 3.5.16): a backup of a cluster with auth
//! enabled restores in the sandbox without credentials and reports its users and roles;
//! the etcd version booted is printed; an etcd that cannot be the sandbox (missing, not
//! etcd, older than the backup) is refused at once with exit 2.
use crate::common;

use crate::common::store::*;
use crate::common::*;

/// A single-member cluster with keys, two users, two roles and auth enabled, backed up
/// with `--user root:pw`. Returns the cluster, the destination and the manifest.
fn auth_backup(bins: &Bins) -> (Cluster, TempDir, serde_json::Value) {
    let c = Cluster::single(bins, Opts::default());
    c.fill("/a/", 120, 16);
    c.ctl_ok(&["del", "/a/0000001", "--prefix"]);
    c.ctl_ok(&["user", "add", "root:pw"]);
    c.ctl_ok(&["user", "grant-role", "root", "root"]);
    c.ctl_ok(&["role", "add", "reader"]);
    c.ctl_ok(&[
        "role",
        "grant-permission",
        "reader",
        "read",
        "/a/",
        "--prefix",
    ]);
    c.ctl_ok(&["user", "add", "alice:pw2"]);
    c.ctl_ok(&["user", "grant-role", "alice", "reader"]);
    c.ctl_ok(&["auth", "enable"]);
    let dest = TempDir::new().unwrap();
    let m = backup_json(&c, dest.path(), &["--user", "root:pw"]);
    (c, dest, m)
}

/// `restore test -o json` with `etcd`; returns the output.
fn restore_test(dest: &TempDir, etcd: &str, json: bool) -> std::process::Output {
    let d = dest.path().to_str().unwrap();
    let mut args = vec!["restore", "test", "--from", d, "--etcd", etcd];
    if json {
        args.extend(["-o", "json"]);
    }
    run_lifeboat(args)
}

/// The sandbox boots an auth-enabled backup with no credentials: exit 0, the recorded
/// hashkv, the key count, the users and roles, and the version it booted.
fn auth_backup_restores(bins: &Bins, version: &str) {
    let (_c, dest, m) = auth_backup(bins);
    let etcd = bins.etcd.to_str().unwrap();
    let o = restore_test(&dest, etcd, true);
    assert_exit(&o, 0);
    let r = json(&o);
    assert_eq!(r["ok"], true, "{r}");
    // The backup's id, as the string the manifest holds (a typed id in the report).
    assert!(r["id"].is_string() && r["id"] == m["id"], "{r}\n{m}");
    assert_eq!(r["etcd_version"], version, "{r}");
    assert_eq!(r["hashkv"], m["hashkv"], "{r}");
    assert_eq!(r["hashkv_expected"], m["hashkv"], "{r}");
    assert_eq!(r["keys"].as_u64(), Some(110), "{r}");
    assert_eq!(r["auth_enabled"], true, "{r}");
    assert_eq!(r["users"], serde_json::json!(["alice", "root"]), "{r}");
    // `root` is etcd's built-in role: granted, never stored.
    assert_eq!(r["roles"], serde_json::json!(["reader"]), "{r}");
    assert!(r["problems"].as_array().unwrap().is_empty(), "{r}");

    let o = restore_test(&dest, etcd, false);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.contains(&format!("etcd {version} started")), "{out}");
    assert!(
        out.contains("2 user(s) (alice, root), 1 role(s) (reader)"),
        "{out}"
    );
}

#[test]
fn auth_backup_restores_etcd34() {
    auth_backup_restores(&etcd34(), "3.4.23");
}

#[test]
fn auth_backup_restores_etcd3516() {
    auth_backup_restores(&common::native::etcd3516(), "3.5.16");
}

/// etcd 3.5.1: the same, with `--etcdutl` too (the sandbox turns auth off in what etcdutl
/// wrote), and every etcd that cannot be the sandbox refused at once with exit 2: 3.4.23
/// (older than the backup's storage version), a missing binary, a binary that is not etcd.
#[test]
fn auth_backup_restores_etcd35_and_wrong_etcd_is_refused() {
    let bins = etcd35();
    let (_c, dest, m) = auth_backup(&bins);
    let etcd = bins.etcd.to_str().unwrap();
    let o = restore_test(&dest, etcd, true);
    assert_exit(&o, 0);
    let r = json(&o);
    assert_eq!(r["etcd_version"], "3.5.1", "{r}");
    assert_eq!(r["hashkv"], m["hashkv"], "{r}");
    assert_eq!(r["users"], serde_json::json!(["alice", "root"]), "{r}");

    let d = dest.path().to_str().unwrap();
    let etcdutl = bins.etcdutl.as_ref().unwrap().to_str().unwrap();
    let o = run_lifeboat([
        "restore",
        "test",
        "--from",
        d,
        "--etcd",
        etcd,
        "--etcdutl",
        etcdutl,
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    let r = json(&o);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["hashkv"], m["hashkv"], "{r}");
    assert_eq!(r["auth_enabled"], true, "{r}");

    // Too old: refused before anything is fetched or booted.
    let old = etcd34();
    let o = restore_test(&dest, old.etcd.to_str().unwrap(), false);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    for want in [
        "--etcd",
        "3.4.23",
        "storage version 3.5",
        "install etcd 3.5",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    // Missing, and not etcd at all.
    let missing = dest.path().join("no-such-etcd");
    let o = restore_test(&dest, missing.to_str().unwrap(), false);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("cannot run") && err.contains("--etcd PATH"),
        "{err}"
    );
    let o = restore_test(&dest, "/bin/true", false);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("is not an etcd server"),
        "{}",
        stderr(&o)
    );
}
