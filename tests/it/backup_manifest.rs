//! Manifests checked as strictly as data, and destinations that cannot work, with a real
//! etcd: the exit codes every command gives for the same fact.

use crate::common::store::*;
use crate::common::*;

/// Issue 8 §2: a manifest that `list` rejects is exit 3 for every command that names it,
/// any changed field is caught by the manifest's own digest, and a missing data object is
/// exit 3 everywhere.
#[test]
fn manifests_are_checked_as_strictly_as_data() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.fill("/mf/", 50, 100);
    let dest = TempDir::new().unwrap();
    let m = backup_json(&c, dest.path(), &[]);
    assert_eq!(m["format_version"], 2);
    let id = m["id"].as_str().unwrap().to_string();
    let d = dest.path().to_str().unwrap().to_string();
    let manifest = dest.path().join(format!("{id}.manifest.json"));
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(stored["manifest_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        stored["manifest_sha256"], m["manifest_sha256"],
        "printed = stored"
    );
    let good = std::fs::read(&manifest).unwrap();
    let out = dest.path().join("out.db");
    let o_str = out.to_str().unwrap().to_string();
    let verify = |id: &str| run_lifeboat(["verify", "--from", &d, id]);
    let fetch = |id: &str| run_lifeboat(["fetch", "--from", &d, id, "--out", &o_str, "--force"]);
    let inspect = |id: &str| run_lifeboat(["inspect", &format!("{d}:{id}")]);
    assert_exit(&verify(&id), 0);

    // Any changed field: exit 3 from every command, naming the manifest.
    for field in ["peer_urls", "cluster_id", "created_at", "source_member"] {
        edit_manifest(&manifest, |v| match field {
            "peer_urls" => v["members"][0]["peer_urls"][0] = "http://10.9.9.9:2380".into(),
            "source_member" => v["source_member"]["name"] = "someone-else".into(),
            f => v[f] = "1".into(),
        });
        for o in [verify(&id), fetch(&id), inspect(&id)] {
            assert_exit(&o, 3);
            assert!(
                stderr(&o).contains("manifest SHA-256"),
                "{field}: {}",
                stderr(&o)
            );
            assert!(
                stderr(&o).contains(&format!("{id}.manifest.json")),
                "{}",
                stderr(&o)
            );
        }
        std::fs::write(&manifest, &good).unwrap();
    }

    // Unknown versions: 0 is damage (3); a newer one asks for an upgrade (2).
    edit_manifest(&manifest, |v| v["format_version"] = 0.into());
    assert_exit(&verify(&id), 3);
    edit_manifest(&manifest, |v| v["format_version"] = 9.into());
    let o = fetch(&id);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("upgrade lifeboat"), "{}", stderr(&o));
    std::fs::write(&manifest, &good).unwrap();

    // A manifest under another backup's name: rejected by list, and by verify/fetch ID.
    let other = "20990101T000000.000Z-1";
    std::fs::write(dest.path().join(format!("{other}.manifest.json")), &good).unwrap();
    for o in [verify(other), fetch(other)] {
        assert_exit(&o, 3);
        assert!(stderr(&o).contains("file name"), "{}", stderr(&o));
    }
    let o = run_lifeboat(["list", "--from", &d]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains(other), "{}", stderr(&o));
    // verify --all: the good backup is OK, the rejected manifest makes it exit 3.
    let o = run_lifeboat(["verify", "--from", &d, "--all", "-o", "json"]);
    assert_exit(&o, 3);
    let reports = json(&o);
    assert_eq!(reports.as_array().unwrap().len(), 2, "{reports}");
    assert_eq!(reports[0]["ok"], true);
    assert_eq!(reports[1]["ok"], false);
    std::fs::remove_file(dest.path().join(format!("{other}.manifest.json"))).unwrap();
    assert_exit(&run_lifeboat(["verify", "--from", &d, "--all"]), 0);

    // A missing data object: 3 for verify and fetch alike.
    let obj = data_object(dest.path());
    let data = std::fs::read(&obj).unwrap();
    std::fs::remove_file(&obj).unwrap();
    assert_exit(&verify(&id), 3);
    let o = fetch(&id);
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("missing"), "{}", stderr(&o));
    std::fs::write(&obj, &data).unwrap();

    // `latest` with nothing good but a rejected manifest says so (exit 3).
    let lone = TempDir::new().unwrap();
    std::fs::write(lone.path().join(format!("{other}.manifest.json")), b"{oops").unwrap();
    let o = run_lifeboat(["verify", "--from", lone.path().to_str().unwrap(), "latest"]);
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("rejected"), "{}", stderr(&o));
    assert!(stderr(&o).contains(other), "{}", stderr(&o));
}

/// The same directory twice, and a path under a regular file, are usage errors (exit 2)
/// before anything is locked or dialled.
#[test]
fn destinations_given_twice_or_under_a_file_are_usage_errors() {
    let dest = TempDir::new().unwrap();
    let d = dest.path().to_str().unwrap().to_string();
    let port = free_port();
    let ep = format!("--endpoints=127.0.0.1:{port}");
    let o = run_lifeboat(["backup", "--to", &d, "--to", &format!("{d}/"), &ep]);
    assert_exit(&o, 2);
    let e = stderr(&o);
    assert!(
        e.contains(&format!("--to {d} ")) && e.contains(&format!("--to {d}/ ")),
        "{e}"
    );
    let file = dest.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    for p in [file.clone(), file.join("sub")] {
        let o = run_lifeboat(["backup", "--to", p.to_str().unwrap(), &ep]);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(p.to_str().unwrap()), "{}", stderr(&o));
    }
}

/// A destination locked by another run: the backup waits at most `--lock-timeout`, then
/// fails (exit 1) naming the holder recorded in the lock file.
#[test]
fn a_busy_destination_names_the_run_holding_it() {
    let dest = TempDir::new().unwrap();
    let lock = dest.path().join(".lifeboat.lock");
    std::fs::write(
        &lock,
        "pid=4242\nhost=db-backup-1\nsince=2026-11-29T03:00:00Z\n",
    )
    .unwrap();
    // util-linux flock holds the lock as another lifeboat would. --no-fork execs sleep in
    // flock's own process, so killing it releases the lock and leaves nothing behind (a
    // forked sleep would outlive it, holding the test runner's output pipe open).
    let mut holder = std::process::Command::new("flock")
        .arg("--no-fork")
        .arg(&lock)
        .args(["sleep", "600"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until flock has it (a non-blocking probe fails), without touching its content.
    while std::process::Command::new("flock")
        .args(["-n", lock.to_str().unwrap(), "true"])
        .status()
        .unwrap()
        .success()
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let port = free_port();
    let o = run_lifeboat([
        "backup".to_string(),
        "--to".into(),
        dest.path().display().to_string(),
        format!("--endpoints=127.0.0.1:{port}"),
        "--lock-timeout=0s".into(),
    ]);
    let _ = holder.kill();
    let _ = holder.wait();
    let e = stderr(&o);
    assert!(
        e.contains("pid 4242") && e.contains("host db-backup-1"),
        "{e}"
    );
    assert!(e.contains("since 2026-11-29T03:00:00Z"), "{e}");
}
