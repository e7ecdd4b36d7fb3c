//! Restores without a good backup of the whole cluster: a plan from a surviving member's
//! data dir, and one member replaced after its WAL was damaged.

use super::*;

/// No backup: plan from a surviving member's data dir; the hash check is skipped and said so.
#[test]
fn plan_from_a_surviving_member_data_dir() {
    let bins = etcd35();
    let mut c = Cluster::single(&bins, Opts::default());
    c.fill("/drill/", 200, 10);
    let before = kvs(&c);
    c.stop(0);
    let work = TempDir::new().unwrap();
    let topo = work.path().join("t.toml");
    std::fs::write(
        &topo,
        format!(
            "cluster_token = \"after-loss\"\netcd_version = \"3.5.1\"\n\n[[member]]\nname = \"solo\"\npeer_urls = [\"http://127.0.0.1:{}\"]\nclient_urls = [\"http://127.0.0.1:{}\"]\ndata_dir = \"{}\"\n",
            free_port(),
            free_port(),
            work.path().join("restored").display()
        ),
    )
    .unwrap();
    let out = work.path().join("plan");
    let o = run_lifeboat([
        "restore",
        "plan",
        "--from-data-dir",
        c.data_dir(0).to_str().unwrap(),
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    let plan = json(&o);
    assert_eq!(plan["hash_check_skipped"], true);
    assert!(plan["warnings"][0]
        .as_str()
        .unwrap()
        .contains("hash check is skipped"));
    assert!(std::fs::read_to_string(out.join("solo.sh"))
        .unwrap()
        .contains("'--skip-hash-check'"));
    let o = run_lifeboat([
        "restore",
        "apply",
        "--plan",
        out.to_str().unwrap(),
        "--node",
        "solo",
        "--etcdutl",
        bins.etcdutl.as_ref().unwrap().to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    let r = start_from_plan(&bins, &plan);
    assert_eq!(kvs(&r), before);
}

/// One member's WAL is corrupt in a healthy cluster: `--mode replace-member` writes the steps
/// with the live values, and following them the member rejoins and syncs.
#[test]
fn replace_member_with_a_corrupt_wal() {
    let bins = etcd35();
    let mut c = Cluster::start(&bins, 3, Opts::default());
    c.fill("/drill/", 300, 10);
    c.stop(2);
    // Damage a record in the middle of m2's first WAL segment.
    let wal = c.data_dir(2).join("member/wal");
    let seg = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .min()
        .unwrap();
    let used = run_lifeboat([
        "check-member",
        "-o",
        "json",
        c.data_dir(2).to_str().unwrap(),
    ]);
    let end = json(&used)["members"][0]["wal_bytes"].as_u64().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = (end / 2) as usize;
    bytes[at] ^= 0x55;
    std::fs::write(&seg, bytes).unwrap();
    let o = run_lifeboat([
        "check-member",
        "-o",
        "json",
        c.data_dir(2).to_str().unwrap(),
    ]);
    assert_exit(&o, 3);

    let work = TempDir::new().unwrap();
    let topo = work.path().join("t.toml");
    let mut t = String::from("cluster_token = \"unused\"\n");
    for m in &c.members {
        t.push_str(&format!(
            "\n[[member]]\nname = \"{}\"\npeer_urls = [\"{}\"]\nclient_urls = [\"{}\"]\ndata_dir = \"{}\"\nhost = \"127.0.0.1\"\n",
            m.name, m.peer_url, m.client_url, m.data_dir.display()
        ));
    }
    std::fs::write(&topo, t).unwrap();
    let out = work.path().join("replace");
    let eps = format!("{},{}", c.members[0].client_url, c.members[1].client_url);
    let o = run_lifeboat([
        "restore",
        "plan",
        "--mode",
        "replace-member",
        "--member",
        "m2",
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--endpoints",
        &eps,
        "-o",
        "json",
    ]);
    assert_exit(&o, 0);
    let p = json(&o);
    assert_eq!(
        p["peer_urls"][0].as_str(),
        Some(c.members[2].peer_url.as_str())
    );
    let path = format!(
        "{}:{}",
        bins.etcdctl.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for script in ["1-on-a-healthy-member.sh", "2-on-m2.sh"] {
        let o = Command::new("bash")
            .arg(out.join(script))
            .env("PATH", &path)
            .env("LIFEBOAT_SKIP_HOST_CHECK", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{script}: {}{}", stdout(&o), stderr(&o));
    }
    assert!(
        !c.data_dir(2).exists(),
        "the broken data dir was moved aside"
    );
    c.restart_existing(2);
    c.wait_healthy(std::time::Duration::from_secs(60));
    let list: serde_json::Value =
        serde_json::from_str(&c.ctl_ok(&["member", "list", "-w", "json"])).unwrap();
    let names: Vec<&str> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names.contains(&"m2"), "{names:?}");
    let o = c.ctl_at(
        &c.members[2].client_url,
        &["get", "/drill/00000299", "--print-value-only"],
    );
    assert_eq!(stdout(&o).trim(), "v".repeat(10));
    let o = Command::new("bash")
        .arg(out.join("3-check.sh"))
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}
