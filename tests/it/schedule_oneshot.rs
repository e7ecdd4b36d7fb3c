//! The one-shot for cron/systemd against a real etcd: `backup --prune --metrics-textfile`
//! prunes after each success and writes a textfile node_exporter can read.

use std::collections::BTreeMap;

use crate::common::*;

/// `name{labels} value` lines of a Prometheus/OpenMetrics textfile; panics on anything else,
/// so a malformed line fails the test.
fn parse_textfile(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        // OpenMetrics (prometheus-client) ends the exposition with `# EOF`.
        if line == "# EOF" {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect(line);
        assert!(key.starts_with("lifeboat_") && key.ends_with('}'), "{line}");
        out.insert(key.to_string(), value.parse::<f64>().expect(line));
    }
    out
}

#[test]
fn one_shot_prunes_and_writes_a_valid_textfile() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.put("/k", "v");
    let dest = TempDir::new().unwrap();
    let d = dest.path().to_str().unwrap();
    let prom = dest.path().join("metrics").join("lifeboat.prom");
    std::fs::create_dir(prom.parent().unwrap()).unwrap();
    let mut args: Vec<String> = vec!["backup".into(), "--to".into(), d.into()];
    args.extend(c.conn_args());
    args.extend(
        [
            "--prune",
            "--keep-last",
            "2",
            "--metrics-textfile",
            prom.to_str().unwrap(),
            "-q",
        ]
        .map(String::from),
    );
    for _ in 0..3 {
        assert_exit(&run_lifeboat(&args), 0);
    }
    let o = run_lifeboat(["list", "--from", d, "-o", "json"]);
    assert_eq!(json(&o).as_array().unwrap().len(), 2);
    let m = parse_textfile(&std::fs::read_to_string(&prom).unwrap());
    let l = format!("{{destination=\"{d}\"}}");
    assert_eq!(m[&format!("lifeboat_backups{l}")], 2.0);
    assert_eq!(m[&format!("lifeboat_prune_deleted_total{l}")], 1.0);
    assert_eq!(m[&format!("lifeboat_backups_failing_verify{l}")], 0.0);
    assert!(m[&format!("lifeboat_backup_revision{l}")] >= 2.0);
    assert!(m[&format!("lifeboat_backup_db_bytes{l}")] > 0.0);
    let success = m[&format!("lifeboat_backup_last_success_timestamp_seconds{l}")];
    let attempt = m[&format!("lifeboat_backup_last_attempt_timestamp_seconds{l}")];
    assert!(
        success > 1.7e9 && attempt > 1.7e9 && success >= attempt,
        "{m:?}"
    );
    let stage =
        |s: &str| format!("lifeboat_backup_failures_total{{destination=\"{d}\",stage=\"{s}\"}}");
    assert_eq!(m[&stage("connect")], 0.0);

    // etcd gone: the run fails, the counter counts it, the last success stays.
    let mut bad = args.clone();
    let i = bad
        .iter()
        .position(|a| a.starts_with("--endpoints="))
        .unwrap();
    bad[i] = format!("--endpoints=http://127.0.0.1:{}", free_port());
    let o = run_lifeboat(&bad);
    assert_exit(&o, 1);
    let m2 = parse_textfile(&std::fs::read_to_string(&prom).unwrap());
    assert_eq!(m2[&stage("connect")], 1.0, "{m2:?}");
    assert_eq!(
        m2[&format!("lifeboat_backup_last_success_timestamp_seconds{l}")],
        success
    );
    assert_eq!(m2[&format!("lifeboat_prune_deleted_total{l}")], 1.0);
    let leftovers: Vec<_> = std::fs::read_dir(prom.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temp files left: {leftovers:?}");
}

/// Two one-shots of one config file on one host do not overlap: the second waits
/// `--lock-timeout`, then fails (exit 1) naming the first's pid; the lock is the host's,
/// taken before any destination is touched, so it holds for S3 destinations too.
#[test]
fn overlapping_one_shots_of_one_config_take_turns_on_the_host_lock() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.fill("/slow/", 3000, 1000);
    let dir = TempDir::new().unwrap();
    let dest = dir.path().join("backups");
    let cfg = dir.path().join("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[etcd]\nendpoints = [{:?}]\n\n[[destination]]\nurl = {:?}\n\n[backup]\nrate_limit = \"128K\"\n",
            c.endpoints(),
            dest.to_str().unwrap()
        ),
    )
    .unwrap();
    let c_path = cfg.to_str().unwrap();
    let mut first = std::process::Command::new(lifeboat())
        .args(["backup", "--config", c_path, "-q"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first run is writing (it holds the host lock by then).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !std::fs::read_dir(&dest).ok().is_some_and(|rd| {
        rd.filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".partial"))
    }) {
        assert!(
            std::time::Instant::now() < deadline && first.try_wait().unwrap().is_none(),
            "the first backup never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = run_lifeboat(["backup", "--config", c_path, "--lock-timeout", "1s"]);
    let _ = first.kill();
    let _ = first.wait();
    assert_exit(&o, 1);
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("lifeboat: error:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains(&format!(
            "another `lifeboat backup --config {c_path}` is running on this host (pid {} since",
            first.id()
        )) && line.contains("gave up after 1s"),
        "{line}"
    );
}
