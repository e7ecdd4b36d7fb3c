//! check-member on members of live clusters: restoring from the best-ranked survivor,
//! ranking survivors stopped one after another, and the replacement steps it prints,
//! followed.

use super::*;

/// Field notes §2 with no backup: the best-ranked survivor's db restores a cluster that has
/// the newest writes.
#[test]
fn restore_from_the_best_ranked_survivor() {
    let mut c = Cluster::start(&etcd35(), 3, Opts::default());
    c.fill("/early/", 500, 100);
    c.stop(2);
    c.fill("/late/", 500, 100);
    c.stop(1);
    c.stop(0);
    let dirs: Vec<String> = (0..3)
        .map(|i| c.data_dir(i).display().to_string())
        .collect();
    let o = run_lifeboat(
        ["check-member", "-o", "json"]
            .iter()
            .map(|s| s.to_string())
            .chain(dirs.iter().cloned()),
    );
    let j = json(&o);
    let best = j["ranking"][0]["data_dir"].as_str().unwrap().to_string();
    assert_ne!(best, dirs[2], "{j:#}");
    let tmp = TempDir::new().unwrap();
    let db = tmp.path().join("survivor.db");
    std::fs::copy(Path::new(&best).join("member/snap/db"), &db).unwrap();
    let r = Cluster::start(
        &etcd35(),
        3,
        Opts {
            restore_from: Some(db),
            restore_skip_hash_check: true,
            ..Opts::default()
        },
    );
    let keys = r.ctl_ok(&["get", "--prefix", "/late/", "--keys-only"]);
    let count = keys.lines().filter(|l| !l.is_empty()).count();
    assert_eq!(count, 500);
    // The worst-ranked member's db would have lost them.
    let worst = j["ranking"][2]["data_dir"].as_str().unwrap();
    assert_eq!(worst, dirs[2]);
}

#[test]
fn ranking_survivors_stopped_one_after_another() {
    let mut c = Cluster::start(
        &etcd35(),
        3,
        Opts {
            snapshot_count: Some(50),
            ..Opts::default()
        },
    );
    c.fill("/a/", 2000, 100);
    c.stop(2);
    c.fill("/b/", 2000, 100);
    c.stop(1);
    c.stop(0);
    let dirs: Vec<String> = (0..3)
        .map(|i| c.data_dir(i).display().to_string())
        .collect();
    let o = run_lifeboat(
        ["check-member", "-o", "json"]
            .iter()
            .map(|s| s.to_string())
            .chain(dirs.iter().cloned()),
    );
    assert_exit(&o, 0);
    let j = json(&o);
    let ranking = j["ranking"].as_array().unwrap();
    assert_eq!(ranking.len(), 3);
    // m2 stopped first, before the /b/ writes: last.
    assert_eq!(ranking[2]["data_dir"], dirs[2], "{j:#}");
    let c2 = ranking[2]["commit"].as_u64().unwrap();
    assert!(ranking[0]["commit"].as_u64().unwrap() > c2 + 10, "{j:#}");
    assert!(ranking[0]["note"].as_str().unwrap().contains("copy"));
    for m in j["members"].as_array().unwrap() {
        assert_eq!(m["verdict"], "healthy", "{m:#}");
        assert_eq!(m["voters"].as_array().unwrap().len(), 3);
    }
}

/// Field notes §1 end to end: a member of a healthy cluster gets a corrupt WAL; check-member
/// says so and prints the replacement steps; following them brings the cluster back to three
/// healthy members with the data.
#[test]
fn following_the_replacement_steps_works() {
    let mut c = Cluster::start(&etcd35(), 3, Opts::default());
    c.fill("/r/", 300, 200);
    let victim = (0..3).find(|&i| Some(i) != c.leader()).unwrap();
    c.stop(victim);
    let dir = c.data_dir(victim).to_path_buf();
    let o = run_lifeboat([
        "wal",
        "dump",
        "-o",
        "json",
        "--type",
        "txn",
        dir.to_str().unwrap(),
    ]);
    let txns = json(&o);
    let rec = txns.as_array().unwrap()[1]["offset"].as_u64().unwrap();
    let seg = std::fs::read_dir(dir.join("member/wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    patch(&seg, rec + 100, |b| b[0] ^= 0x20);

    let o = run_lifeboat(["check-member", "-o", "json", dir.to_str().unwrap()]);
    assert_exit(&o, 3);
    let r = json(&o)["members"][0].clone();
    assert_eq!(r["verdict"], "corrupt-wal");
    let id = r["member_id"].as_str().unwrap().to_string();
    let steps = r["next_steps"].to_string();
    let name = &c.members[victim].name;
    let url = &c.members[victim].peer_url;
    assert!(steps.contains(&format!("member remove {id}")), "{steps}");
    assert!(
        steps.contains(&format!("member add {name} --peer-urls={url}")),
        "{steps}"
    );
    assert!(
        steps.contains("ETCD_INITIAL_CLUSTER_STATE=existing"),
        "{steps}"
    );
    // The real etcd refuses this dir, as predicted.
    assert_eq!(r["etcd_starts"], false);

    // Follow the steps, in that order.
    let others: Vec<String> = (0..3)
        .filter(|&i| i != victim)
        .map(|i| c.members[i].client_url.clone())
        .collect();
    let live = others.join(",");
    let ok = |args: &[&str]| {
        let o = c.ctl_at(&live, args);
        assert!(o.status.success(), "etcdctl {args:?}: {}", stderr(&o));
    };
    ok(&["member", "remove", &id]);
    // etcd refuses a new voter ("unhealthy cluster") until the remaining members have been
    // connected for 5 s; the advice says to retry.
    let add = [
        "member".to_string(),
        "add".to_string(),
        name.clone(),
        format!("--peer-urls={url}"),
    ];
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    let t = std::time::Instant::now();
    loop {
        let o = c.ctl_at(&live, &add);
        if o.status.success() {
            break;
        }
        assert!(
            stderr(&o).contains("unhealthy cluster") && t.elapsed() < Duration::from_secs(30),
            "member add: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Between `member add` and the start, the doctor sees a member that never started.
    let o = run_lifeboat([
        "status".to_string(),
        "-o".into(),
        "json".into(),
        format!("--endpoints={live}"),
        "--dial-timeout=1s".into(),
    ]);
    assert_exit(&o, 4);
    assert!(
        json(&o)["findings"]
            .to_string()
            .contains("member-unstarted"),
        "{}",
        stdout(&o)
    );
    std::fs::rename(dir.join("member"), dir.join("member.broken")).unwrap();
    c.restart_existing(victim);
    c.wait_healthy(Duration::from_secs(60));
    let got = c.ctl_at(
        &c.members[victim].client_url,
        &["get", "/r/00000299", "--print-value-only"],
    );
    assert!(stdout(&got).starts_with("vvv"), "{}", stdout(&got));
    let list = c.ctl_ok(&["member", "list"]);
    assert_eq!(
        list.lines().filter(|l| l.contains("started")).count(),
        3,
        "{list}"
    );
    // And lifeboat's doctor agrees.
    let mut args: Vec<String> = vec!["status".into()];
    args.extend(c.conn_args());
    assert_exit(&run_lifeboat(&args), 0);
}
