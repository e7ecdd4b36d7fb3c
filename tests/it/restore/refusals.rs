//! Restore plans that must not be made: a topology with problems (exit 2, nothing written),
//! the scripts' refusals, and `restore test` on a good and a damaged backup.

use super::*;

/// Problems in a topology name the key and the line, exit 2, and nothing is written.
#[test]
fn plan_validation_failures_and_script_refusals() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.put("/k", "v");
    c.put("/registry/pods/default/web-1", "pod");
    let dest = TempDir::new().unwrap();
    let d = dest.path().to_str().unwrap();
    backup_json(&c, dest.path(), &[]);
    let work = TempDir::new().unwrap();
    let topo = work.path().join("t.toml");
    let out = work.path().join("plan");
    let good = "cluster_token = \"new\"\nold_cluster_token = \"old\"\netcd_version = \"3.5.1\"\n\n[[member]]\nname = \"a\"\npeer_urls = [\"http://127.0.0.1:2380\"]\nclient_urls = [\"http://127.0.0.1:2379\"]\ndata_dir = \"/tmp/lifeboat-restore-test-a\"\nhost = \"no-such-host.invalid\"\n\n[[member]]\nname = \"b\"\npeer_urls = [\"http://127.0.0.1:2480\"]\nclient_urls = [\"http://127.0.0.1:2479\"]\ndata_dir = \"/tmp/lifeboat-restore-test-b\"\nhost = \"no-such-host.invalid\"\n\n[[member]]\nname = \"c\"\npeer_urls = [\"http://127.0.0.1:2580\"]\nclient_urls = [\"http://127.0.0.1:2579\"]\ndata_dir = \"/tmp/lifeboat-restore-test-c\"\nhost = \"no-such-host.invalid\"\n";
    let plan = |t: &str| {
        std::fs::write(&topo, t).unwrap();
        run_lifeboat([
            "restore",
            "plan",
            "--from",
            d,
            "--topology",
            topo.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-bump-revision",
        ])
    };
    let cases = [
        (good.replace("2480", "2380"), "line 14, member[1].peer_urls: http://127.0.0.1:2380 is also a peer URL of \"a\" (line 6)"),
        (good.replace("\"new\"", "\"old\""), "line 1, cluster_token: \"old\" is the old cluster's token"),
        (good.replace("\"/tmp/lifeboat-restore-test-c\"", "\"etcd-c\""), "line 23, member[2].data_dir: \"etcd-c\" is not an absolute path"),
        (good.replace("\"3.5.1\"", "\"3.4\""), "cannot restore backup"),
    ];
    for (t, want) in cases {
        let o = plan(&t);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(want), "want {want:?} in {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        assert!(!out.exists(), "nothing written on a bad topology");
    }
    // Kubernetes keys turn the revision bump on. etcd 3.5.1's etcdutl cannot bump, but
    // lifeboat's writer can: the plan is valid, and says which nodes need lifeboat.
    std::fs::write(&topo, good).unwrap();
    let o = run_lifeboat([
        "restore",
        "plan",
        "--from",
        d,
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    let p = json(&o);
    assert_eq!(p["bump_revision"], 1_000_000_000);
    assert!(
        p["warnings"]
            .to_string()
            .contains("a (etcd 3.5.1), b (etcd 3.5.1), c (etcd 3.5.1) need lifeboat installed"),
        "{p}"
    );
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::write(&topo, good.replace("3.5.1", "3.5.16")).unwrap();
    let o = run_lifeboat([
        "restore",
        "plan",
        "--from",
        d,
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["bump_revision"], 1_000_000_000);
    assert!(std::fs::read_to_string(out.join("a.sh"))
        .unwrap()
        .contains("'--bump-revision=1000000000' '--mark-compacted'"));
    std::fs::remove_dir_all(&out).unwrap();
    let o = plan(good);
    assert_exit(&o, 0);
    assert!(out.join("a.sh").is_file());
    // A second plan over the first is refused (the token in use must not change).
    assert_exit(&plan(good), 2);

    let o = run_lifeboat([
        "restore",
        "apply",
        "--plan",
        out.to_str().unwrap(),
        "--node",
        "x",
    ]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("no member \"x\" in the plan (members: a, b, c)"),
        "{}",
        stderr(&o)
    );
    let o = run_lifeboat([
        "restore",
        "apply",
        "--plan",
        out.to_str().unwrap(),
        "--node",
        "a",
        "--dry-run",
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    assert_eq!(json(&o)["dry_run"], true);
    assert!(!Path::new("/tmp/lifeboat-restore-test-a").exists());

    // The script refuses the wrong host, and a non-empty data dir.
    let o = Command::new("bash").arg(out.join("a.sh")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("run it on no-such-host.invalid"),
        "{}",
        stderr(&o)
    );
    let busy = work.path().join("busy");
    std::fs::create_dir_all(busy.join("member")).unwrap();
    let script = std::fs::read_to_string(out.join("b.sh")).unwrap().replace(
        "'/tmp/lifeboat-restore-test-b'",
        &format!("'{}'", busy.display()),
    );
    std::fs::write(work.path().join("b.sh"), script).unwrap();
    let o = Command::new("bash")
        .arg(work.path().join("b.sh"))
        .env("LIFEBOAT_SKIP_HOST_CHECK", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not empty; move it aside first"),
        "{}",
        stderr(&o)
    );
    assert!(busy.join("member").is_dir());
}

/// `restore test` boots a good backup and checks it (0); a damaged one is refused (3).
#[test]
fn restore_test_good_and_damaged() {
    let bins = etcd35();
    let c = Cluster::single(&bins, Opts::default());
    c.fill("/t/", 300, 20);
    c.ctl_ok(&["del", "/t/0000000", "--prefix"]);
    let dest = TempDir::new().unwrap();
    let d = dest.path().to_str().unwrap();
    let m = backup_json(&c, dest.path(), &[]);
    let recorded = m["hashkv"].as_u64().expect("manifest records hashkv");
    let etcd = bins.etcd.to_str().unwrap();
    let o = run_lifeboat(["restore", "test", "--from", d, "--etcd", etcd, "-o", "json"]);
    assert_exit(&o, 0);
    let r = json(&o);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["hashkv"].as_u64(), Some(recorded));
    assert_eq!(r["keys"].as_u64(), Some(290));
    let live = c.ctl_ok(&["endpoint", "hashkv", "-w", "json"]);
    let live: serde_json::Value = serde_json::from_str(&live).unwrap();
    assert_eq!(live[0]["HashKV"]["hash"].as_u64(), Some(recorded));

    let obj = data_object(dest.path());
    let mut bytes = std::fs::read(&obj).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&obj, bytes).unwrap();
    let o = run_lifeboat([
        "restore",
        "test",
        "--from",
        &format!("{d}:latest"),
        "--etcd",
        etcd,
    ]);
    assert_exit(&o, 3);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}
