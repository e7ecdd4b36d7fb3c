//! The capture process under faults and beside the schedule: kill -9 and restart, SIGTERM,
//! `lifeboat run` with a `[capture]` section, a stalled S3 destination.

use super::*;

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
