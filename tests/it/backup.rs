//! Backups of real etcd clusters (3.5.1 and 3.4.23, plain and TLS), verified, fetched and
//! restored with etcd's own tools; broken streams, killed runs and damaged objects.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::store::*;
use crate::common::*;

fn revision_of(c: &Cluster) -> i64 {
    let out = c.ctl_ok(&["get", "/", "--prefix", "--limit=1", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["header"]["revision"].as_i64().unwrap()
}

fn cluster_id_of(c: &Cluster) -> String {
    let s = c.status_of(0).unwrap();
    format!(
        "{:x}",
        s["Status"]["header"]["cluster_id"].as_u64().unwrap()
    )
}

/// Backup, list, verify, fetch, and check the manifest against the cluster.
fn round_trip(bins: &Bins, tls: Option<&Tls>) {
    let c = Cluster::single(
        bins,
        Opts {
            tls,
            ..Opts::default()
        },
    );
    c.fill("/rt/", 500, 200);
    c.put("/rt/last", "x");
    c.ctl_ok(&["del", "/rt/00000007"]);
    let rev = revision_of(&c);
    let dest = TempDir::new().unwrap();
    let m = backup_json(&c, dest.path(), &[]);
    let what = format!("etcd {} tls={}", bins.version, tls.is_some());
    assert_eq!(m["revision"].as_i64(), Some(rev), "{what}: revision");
    assert_eq!(
        m["cluster_id"].as_str().unwrap(),
        cluster_id_of(&c),
        "{what}"
    );
    assert_eq!(m["source_member"]["name"], "m0", "{what}");
    assert!(m["source_member"]["reason"]
        .as_str()
        .unwrap()
        .contains("leader"));
    assert_eq!(m["members"].as_array().unwrap().len(), 1);
    assert_eq!(m["members"][0]["name"], "m0");
    assert_eq!(m["members"][0]["is_learner"], false);
    assert!(
        m["etcd_version"]
            .as_str()
            .unwrap()
            .starts_with(bins.version),
        "{what}"
    );
    assert!(m["raft_index"].as_u64().unwrap() > 0, "{what}: raft_index");
    if bins.version == "3.5" {
        assert!(m["raft_term"].as_u64().unwrap() > 0, "{what}: raft_term");
    }
    assert_eq!(m["compression"], "zstd");
    assert_eq!(m["encryption"], "none");
    assert!(m["stored_size"].as_u64().unwrap() < m["db_size"].as_u64().unwrap());
    let created = m["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");

    // list shows exactly it
    let list = list_json(dest.path());
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], m["id"]);

    // verify latest and by id
    for id in ["latest", m["id"].as_str().unwrap()] {
        let o = run_lifeboat([
            "verify",
            "--from",
            dest.path().to_str().unwrap(),
            id,
            "-o",
            "json",
        ]);
        assert_exit(&o, 0);
        let v = json(&o);
        assert_eq!(v["ok"], true, "{what}: {v}");
        assert_eq!(v["problems"].as_array().unwrap().len(), 0);
    }

    // fetch gives a snapshot file: db + sha256 trailer, as etcdctl makes
    let out = dest.path().join("fetched.db");
    let o = run_lifeboat([
        "fetch",
        "--from",
        dest.path().to_str().unwrap(),
        "latest",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes.len() as u64, m["db_size"].as_u64().unwrap() + 32);
    use sha2::Digest;
    let (db, trailer) = bytes.split_at(bytes.len() - 32);
    assert_eq!(sha2::Sha256::digest(db).as_slice(), trailer);
    assert_eq!(hex::encode(trailer), m["db_sha256"].as_str().unwrap());
}

#[test]
fn etcd35_plain_backup_round_trip() {
    round_trip(&etcd35(), None);
}

#[test]
fn etcd34_plain_backup_round_trip() {
    round_trip(&etcd34(), None);
}

#[test]
fn etcd35_and_34_tls_with_client_certs() {
    let tls = Tls::generate();
    round_trip(&etcd35(), Some(&tls));
    round_trip(&etcd34(), Some(&tls));
}

#[test]
fn tls_cluster_without_client_cert_fails_cleanly() {
    let tls = Tls::generate();
    let c = Cluster::single(
        &etcd35(),
        Opts {
            tls: Some(&tls),
            ..Opts::default()
        },
    );
    let dest = TempDir::new().unwrap();
    let o = run_lifeboat([
        "backup",
        "--to",
        dest.path().to_str().unwrap(),
        "--endpoints",
        &c.endpoints(),
        "--cacert",
        tls.ca.to_str().unwrap(),
        "--retries=0",
        "--command-timeout=3s",
    ]);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains(&c.members[0].client_url),
        "{}",
        stderr(&o)
    );
    assert_eq!(list_json(dest.path()), serde_json::json!([]));
}

#[test]
fn fetched_snapshot_restores_with_etcdutl_and_serves_the_keys() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.fill("/restore/", 300, 100);
    c.put("/restore/big", &"B".repeat(20_000));
    c.ctl_ok(&["del", "/restore/00000003"]);
    let before = c.ctl_ok(&["get", "/restore/", "--prefix"]);
    let dest = TempDir::new().unwrap();
    backup_json(&c, dest.path(), &[]);
    drop(c);
    let snap = dest.path().join("snap.db");
    let o = run_lifeboat([
        "fetch",
        "--from",
        dest.path().to_str().unwrap(),
        "latest",
        "--out",
        snap.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    // Restored without --skip-hash-check: etcdutl checks our trailer.
    let r = Cluster::single(
        &etcd35(),
        Opts {
            restore_from: Some(snap),
            ..Opts::default()
        },
    );
    let after = r.ctl_ok(&["get", "/restore/", "--prefix"]);
    assert_eq!(before, after);
    assert!(!after.contains("/restore/00000003\n"));
}

#[test]
fn nospace_alarm_is_recorded_and_does_not_stop_the_backup() {
    let c = Cluster::single(
        &etcd35(),
        Opts {
            quota_backend_bytes: Some(2 * 1024 * 1024),
            ..Opts::default()
        },
    );
    c.fill_until_nospace(50_000);
    let dest = TempDir::new().unwrap();
    let m = backup_json(&c, dest.path(), &[]);
    let alarms = m["alarms"].as_array().unwrap();
    assert!(alarms.iter().any(|a| a["alarm"] == "NOSPACE"), "{m}");
    assert!(m["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("NOSPACE")));
}

fn spawn_lifeboat(args: &[String]) -> std::process::Child {
    Command::new(lifeboat())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for_partial(dest: &Path, timeout: Duration) {
    let start = Instant::now();
    loop {
        let found = std::fs::read_dir(dest).into_iter().flatten().any(|e| {
            e.map(|e| e.file_name().to_string_lossy().ends_with(".partial"))
                .unwrap_or(false)
        });
        if found {
            return;
        }
        assert!(start.elapsed() < timeout, "no partial object appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn leader_killed_mid_stream_backup_completes_from_new_leader() {
    let mut c = Cluster::start(&etcd35(), 3, Opts::default());
    // Larger than what gRPC flow control and lifeboat's buffer hold (about 10 MiB), so the
    // leader is still sending when it dies.
    c.fill("/ha/", 16000, 1000);
    let leader = c.leader().expect("leader");
    let leader_id = format!(
        "{:x}",
        c.status_of(leader).unwrap()["Status"]["header"]["member_id"]
            .as_u64()
            .unwrap()
    );
    let dest = TempDir::new().unwrap();
    let mut args = vec![
        "backup".to_string(),
        "--to".into(),
        dest.path().display().to_string(),
        "--rate-limit=2M".into(),
        "--retries=5".into(),
        "--stream-timeout=5s".into(),
        "-o".into(),
        "json".into(),
    ];
    args.extend(c.conn_args());
    let child = spawn_lifeboat(&args);
    wait_for_partial(dest.path(), Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(700));
    c.kill(leader);
    let o = child.wait_with_output().unwrap();
    assert_exit(&o, 0);
    let m = json(&o);
    assert_ne!(m["source_member"]["id"].as_str().unwrap(), leader_id, "{m}");
    assert!(m["source_member"]["attempts"].as_u64().unwrap() >= 2, "{m}");
    assert!(stderr(&o).contains("attempt 1 failed"), "{}", stderr(&o));
    let o = run_lifeboat([
        "verify",
        "--from",
        dest.path().to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    assert_eq!(list_json(dest.path()).as_array().unwrap().len(), 1);
    // The leader's replacement was chosen and said why.
    let reason = m["source_member"]["reason"].as_str().unwrap();
    assert!(!reason.is_empty());
}

#[test]
fn three_members_backup_streams_from_the_leader() {
    let c = Cluster::start(&etcd34(), 3, Opts::default());
    c.fill("/three/", 200, 100);
    let leader = c.leader().unwrap();
    let leader_id = format!(
        "{:x}",
        c.status_of(leader).unwrap()["Status"]["header"]["member_id"]
            .as_u64()
            .unwrap()
    );
    let dest = TempDir::new().unwrap();
    let m = backup_json(&c, dest.path(), &[]);
    assert_eq!(m["source_member"]["id"].as_str().unwrap(), leader_id);
    assert_eq!(m["members"].as_array().unwrap().len(), 3);
    assert_eq!(m["cluster_status"].as_array().unwrap().len(), 3);
    // --source by name
    let follower = (leader + 1) % 3;
    let name = c.members[follower].name.clone();
    let m = backup_json(&c, dest.path(), &["--source", &name]);
    assert_eq!(m["source_member"]["name"].as_str().unwrap(), name);
}

#[test]
fn killed_backup_leaves_nothing_listed_and_is_cleaned_up_next_time() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.fill("/kill/", 3000, 1000);
    let dest = TempDir::new().unwrap();
    let mut args = vec![
        "backup".to_string(),
        "--to".into(),
        dest.path().display().to_string(),
        "--rate-limit=500K".into(),
    ];
    args.extend(c.conn_args());
    let mut child = spawn_lifeboat(&args);
    wait_for_partial(dest.path(), Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(list_json(dest.path()), serde_json::json!([]));
    let o = run_lifeboat(["verify", "--from", dest.path().to_str().unwrap()]);
    assert_exit(&o, 1);
    // The next backup removes the debris and stores a good one.
    backup_json(&c, dest.path(), &[]);
    let names: Vec<String> = std::fs::read_dir(dest.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".partial")), "{names:?}");
    assert_eq!(names.iter().filter(|n| n.ends_with(".db.zst")).count(), 1);
}

#[test]
fn damaged_objects_fail_verify_with_exit_3() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.fill("/dmg/", 2000, 300);
    let dest = TempDir::new().unwrap();
    let m = backup_json(&c, dest.path(), &[]);
    let id = m["id"].as_str().unwrap().to_string();
    let obj = data_object(dest.path());
    let good = std::fs::read(&obj).unwrap();
    let d = dest.path().to_str().unwrap().to_string();
    let verify = || run_lifeboat(["verify", "--from", &d, &id, "-o", "json"]);

    // one flipped byte in the middle of a frame
    let mut bad = good.clone();
    bad[good.len() / 3] ^= 0x01;
    std::fs::write(&obj, &bad).unwrap();
    let o = verify();
    assert_exit(&o, 3);
    let v = json(&o);
    assert_eq!(v["ok"], false);
    let problems = v["problems"].to_string();
    assert!(
        problems.contains("frame") || problems.contains("SHA-256"),
        "{problems}"
    );

    // truncated
    std::fs::write(&obj, &good[..good.len() - 100]).unwrap();
    let o = verify();
    assert_exit(&o, 3);
    assert!(json(&o)["problems"].to_string().contains("truncated"));

    // fetch refuses a damaged object and leaves no file behind
    std::fs::write(&obj, &bad).unwrap();
    let out = dest.path().join("x.db");
    let o = run_lifeboat(["fetch", "--from", &d, &id, "--out", out.to_str().unwrap()]);
    assert_exit(&o, 3);
    assert!(!out.exists());
    assert!(!dest.path().join("x.db.partial").exists());

    // missing object
    std::fs::remove_file(&obj).unwrap();
    let o = verify();
    assert_exit(&o, 3);
    assert!(json(&o)["problems"].to_string().contains("missing"));

    // intact again
    std::fs::write(&obj, &good).unwrap();
    assert_exit(&verify(), 0);
}

#[test]
fn bad_input_gets_clear_errors_and_exit_codes() {
    let dest = TempDir::new().unwrap();
    let d = dest.path().to_str().unwrap();
    // nothing listens here
    let port = free_port();
    let o = run_lifeboat([
        "backup",
        "--to",
        d,
        "--endpoints",
        &format!("127.0.0.1:{port}"),
        "--retries=0",
        "--dial-timeout=500ms",
    ]);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains(&format!("127.0.0.1:{port}")),
        "{}",
        stderr(&o)
    );
    // usage errors
    assert_exit(&run_lifeboat(["backup"]), 2);
    assert_exit(
        &run_lifeboat(["backup", "--to", d, "--zstd-level", "99"]),
        2,
    );
    assert_exit(
        &run_lifeboat(["backup", "--to", d, "--cert", "/nonexistent"]),
        2,
    );
    assert_exit(&run_lifeboat(["backup", "--to", "ftp://x/y"]), 2);
    // unknown backup
    let o = run_lifeboat(["verify", "--from", d, "20990101T000000.000Z-1"]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("no backup"));
    // missing destination
    assert_exit(
        &run_lifeboat(["list", "--from", "/nonexistent/lifeboat"]),
        1,
    );
    // a manifest that is not JSON is reported, not listed, and not fatal
    std::fs::write(dest.path().join("x.manifest.json"), b"{not json").unwrap();
    let o = run_lifeboat(["list", "--from", d, "-o", "json"]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("x.manifest.json"));
}

/// A tmpfs of a few hundred KiB stands in for a full disk (needs root, as CI has).
struct TinyFs {
    dir: TempDir,
}

impl TinyFs {
    fn mount(size: &str) -> Option<TinyFs> {
        let dir = TempDir::new().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(TinyFs { dir })
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn full_disk_fails_cleanly_and_keeps_what_was_stored() {
    let Some(fs) = TinyFs::mount("512k") else {
        eprintln!("NOT RUN: mounting a tmpfs needs root (CI runs as root)");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs for this test"
        );
        return;
    };
    let dest = fs.dir.path().join("backups");
    let c = Cluster::single(&etcd35(), Opts::default());
    c.put("/small", "1");
    let first = backup_json(&c, &dest, &[]);
    // Now more than the filesystem holds, in data zstd cannot shrink much.
    c.fill_random("/big/", 1500, 1000);
    let o = run_lifeboat([
        "backup".to_string(),
        "--to".into(),
        dest.display().to_string(),
        format!("--endpoints={}", c.endpoints()),
        "--retries=0".into(),
    ]);
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains(&dest.display().to_string()), "{err}");
    // The earlier backup is intact and the only one listed; nothing partial is left.
    let list = list_json(&dest);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], first["id"]);
    let o = run_lifeboat(["verify", "--from", dest.to_str().unwrap(), "latest"]);
    assert_exit(&o, 0);
    let names: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}"); // object, manifest, lock file
}

#[test]
fn two_destinations_from_one_stream_and_one_fails() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.fill_random("/two/", 1500, 1000);
    let good = TempDir::new().unwrap();
    let other = TempDir::new().unwrap();
    // Both succeed: the same backup (same id and digests) lands in both.
    let o = run_lifeboat([
        "backup".to_string(),
        "--to".into(),
        good.path().display().to_string(),
        "--to".into(),
        other.path().display().to_string(),
        format!("--endpoints={}", c.endpoints()),
        "-o".into(),
        "json".into(),
    ]);
    assert_exit(&o, 0);
    let m = json(&o);
    for d in [good.path(), other.path()] {
        let l = list_json(d);
        assert_eq!(l[0]["id"], m["id"]);
        assert_eq!(l[0]["stored_sha256"], m["stored_sha256"]);
    }
    // The default level adapts: the manifest counts the frames of each level used.
    let levels = m["compression_levels"]
        .as_object()
        .expect("compression_levels");
    assert!(!levels.is_empty(), "{m}");
    assert!(
        levels
            .keys()
            .all(|l| (1..=3).contains(&l.parse::<i32>().unwrap())),
        "{m}"
    );
    // A level given is kept for every frame: no count.
    let fixed_dir = TempDir::new().unwrap();
    let fixed = backup_json(&c, fixed_dir.path(), &["--zstd-level", "5"]);
    assert_eq!(fixed["compression_level"], 5);
    assert!(fixed.get("compression_levels").is_none(), "{fixed}");
    // One destination walks the database for the hashkv, for both: the value every
    // manifest records is etcd's own at the backup's revision.
    let rev = m["revision"].as_i64().unwrap().to_string();
    let live: serde_json::Value =
        serde_json::from_str(&c.ctl_ok(&["endpoint", "hashkv", "--rev", &rev, "-w", "json"]))
            .unwrap();
    let want = live[0]["HashKV"]["hash"].as_u64().expect("etcd's hashkv");
    for d in [good.path(), other.path()] {
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(d.join(format!("{}.manifest.json", m["id"].as_str().unwrap()))).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["hashkv"].as_u64(), Some(want), "{}", d.display());
    }
    // One destination fills up: the other still gets its backup; exit 1 says what failed.
    let Some(fs) = TinyFs::mount("256k") else {
        eprintln!("NOT RUN (second half): mounting a tmpfs needs root");
        assert!(std::env::var_os("CI").is_none());
        return;
    };
    let full = fs.dir.path().join("b");
    let o = run_lifeboat([
        "backup".to_string(),
        "--to".into(),
        good.path().display().to_string(),
        "--to".into(),
        full.display().to_string(),
        format!("--endpoints={}", c.endpoints()),
        "--retries=0".into(),
    ]);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains(&full.display().to_string()),
        "{}",
        stderr(&o)
    );
    assert_eq!(list_json(good.path()).as_array().unwrap().len(), 2);
    assert_eq!(list_json(&full), serde_json::json!([]));
}
