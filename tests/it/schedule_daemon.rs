//! `lifeboat run` against a real etcd on a 1 s schedule: backs up every slot, prunes to
//! keep_last = 2, writes the textfile, and stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Start `lifeboat run` with a config; stderr goes to `log`.
fn start_daemon(
    cfg: &std::path::Path,
    log: &std::path::Path,
    more: &[&str],
) -> std::process::Child {
    Command::new(lifeboat())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .args(more)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// SIGTERM, then wait for the exit status.
fn stop_daemon(child: &mut std::process::Child) -> std::process::ExitStatus {
    let o = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .output()
        .unwrap();
    assert!(o.status.success());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn textfile_value(path: &std::path::Path, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

#[test]
fn daemon_backs_up_each_slot_prunes_and_stops_on_sigterm() {
    let mut c = Cluster::single(
        &etcd35(),
        Opts {
            quota_backend_bytes: Some(80 << 20),
            ..Opts::default()
        },
    );
    c.put("/k", "v");
    let port = free_port();
    let dir = TempDir::new().unwrap();
    let dest = dir.path().join("backups");
    let prom = dir.path().join("lifeboat.prom");
    let cfg = dir.path().join("lifeboat.toml");
    let endpoints: Vec<String> = c.endpoints().split(',').map(|e| format!("{e:?}")).collect();
    std::fs::write(
        &cfg,
        format!(
            "[etcd]\nendpoints = [{}]\n\n[[destination]]\nurl = {:?}\n\n[schedule]\nevery = \"1s\"\nwhen = \"leader\"\n\n[retention]\nkeep_last = 2\n\n[metrics]\ntextfile = {:?}\nlisten = \"127.0.0.1:{}\"\n",
            endpoints.join(", "),
            dest.to_str().unwrap(),
            prom.to_str().unwrap(),
            port
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = start_daemon(&cfg, &log, &["--shutdown-grace", "1s"]);
    let d = dest.to_str().unwrap();
    let label = format!("{{destination=\"{d}\"}}");
    let deadline = Instant::now() + Duration::from_secs(120);
    // Pruned at least twice: at least four backups were taken, two are left.
    while textfile_value(&prom, &format!("lifeboat_prune_deleted_total{label}")).unwrap_or(0.0)
        < 2.0
    {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "daemon made too few backups; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // /metrics parses and is plausible; /healthz is 200, then 503 once etcd is gone for
    // longer than 2 x the schedule + the grace.
    let (code, body) = http_get(port, "/metrics").expect("metrics listener");
    assert_eq!(code, 200);
    let mut seen = 0;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line.rsplit_once(' ').expect(line);
        let v: f64 = value.parse().expect(line);
        if key == format!("lifeboat_backups{label}") {
            assert!((2.0..=3.0).contains(&v), "{line}");
            seen += 1;
        }
        if key == format!("lifeboat_backup_revision{label}") {
            assert!(v >= 2.0, "{line}");
            seen += 1;
        }
        if key == "lifeboat_cluster_quota_bytes" {
            assert_eq!(v, f64::from(80u32 << 20), "{line}");
            seen += 1;
        }
    }
    assert_eq!(seen, 3, "{body}");
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
    c.stop(0);
    loop {
        let (code, body) = http_get(port, "/healthz").expect("healthz");
        if code == 503 {
            assert!(
                body.starts_with("unhealthy: last successful backup"),
                "{body}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "/healthz stayed {code}: {body}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = stop_daemon(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(
        text.contains("backup stored") && text.contains("scheduler stopped"),
        "{text}"
    );
    let o = run_lifeboat(["list", "--from", d, "-o", "json"]);
    assert_exit(&o, 0);
    let n = json(&o).as_array().unwrap().len();
    assert!((2..=3).contains(&n), "{n} backups listed");
    let o = run_lifeboat(["verify", "--from", d, "--all"]);
    assert_exit(&o, 0);
    assert_eq!(
        textfile_value(&prom, &format!("lifeboat_backups_failing_verify{label}")),
        Some(0.0)
    );
}

/// A daemon per member of a 3-member cluster, one shared destination: only the leader's
/// daemon backs up, once per slot; the others log that they skipped, and still serve what
/// the destination holds (issue 16 §8: `/healthz` 200 and `lifeboat_backups` > 0 on every
/// daemon, leader or not).
#[test]
fn with_a_daemon_per_member_only_the_leaders_backs_up() {
    let mut c = Cluster::start(&etcd35(), 3, Opts::default());
    c.wait_healthy(Duration::from_secs(60));
    c.put("/k", "v");
    let leader = c.leader().expect("a leader");
    let dir = TempDir::new().unwrap();
    let dest = dir.path().join("backups");
    let d = dest.to_str().unwrap().to_string();
    let mut daemons = Vec::new();
    let mut ports = Vec::new();
    for (i, ep) in c.endpoints().split(',').enumerate() {
        let cfg = dir.path().join(format!("m{i}.toml"));
        let port = free_port();
        ports.push(port);
        std::fs::write(
            &cfg,
            format!("[etcd]\nendpoints = [{ep:?}]\n\n[[destination]]\nurl = {d:?}\n\n[schedule]\nevery = \"1s\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        )
        .unwrap();
        let log = dir.path().join(format!("m{i}.log"));
        daemons.push((start_daemon(&cfg, &log, &[]), log));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let o = run_lifeboat(["list", "--from", &d, "-o", "json"]);
        if o.status.code() == Some(0) && json(&o).as_array().map_or(0, |a| a.len()) >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "fewer than 3 backups in time");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every daemon, leader or not, says what the shared destination holds.
    let label = format!("lifeboat_backups{{destination=\"{d}\"}}");
    for (i, port) in ports.iter().enumerate() {
        loop {
            let health = http_get(*port, "/healthz");
            let backups = http_get(*port, "/metrics").and_then(|(_, b)| {
                b.lines()
                    .find_map(|l| l.strip_prefix(&label)?.trim().parse::<f64>().ok())
            });
            if health.as_ref().is_some_and(|h| h.0 == 200) && backups.is_some_and(|n| n >= 1.0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "member {i}'s daemon: /healthz {health:?}, {label} {backups:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mut logs = Vec::new();
    for (child, log) in &mut daemons {
        assert_eq!(stop_daemon(child).code(), Some(0));
        logs.push(std::fs::read_to_string(log).unwrap());
    }
    let o = run_lifeboat(["list", "--from", &d, "-o", "json"]);
    let listed = json(&o).as_array().unwrap().len();
    for (i, text) in logs.iter().enumerate() {
        let stored = text.matches("backup stored").count();
        if i == leader {
            assert_eq!(stored, listed, "leader's log:\n{text}");
        } else {
            assert_eq!(stored, 0, "member {i} backed up:\n{text}");
            assert!(
                text.contains("skipped: the local member is not the leader"),
                "{text}"
            );
        }
    }
    // One per slot: no two backups started in the same second.
    let ids: Vec<String> = json(&o)
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap()[..15].to_string())
        .collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique, ids);
}

/// SIGTERM while a (rate-limited, slow) backup is being written, with a short grace: the
/// daemon aborts it, exits 0, and no backup is listed. Logs in JSON (`--log-format json`).
#[test]
fn sigterm_mid_backup_leaves_nothing_listed() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.fill("/slow/", 3000, 1000);
    let dir = TempDir::new().unwrap();
    let dest = dir.path().join("backups");
    let cfg = dir.path().join("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[etcd]\nendpoints = [{:?}]\n\n[[destination]]\nurl = {:?}\n\n[backup]\nrate_limit = \"128K\"\n\n[schedule]\nevery = \"1s\"\nwhen = \"always\"\n\n[metrics]\nlisten = \"off\"\n",
            c.endpoints(),
            dest.to_str().unwrap()
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = start_daemon(
        &cfg,
        &log,
        &["--shutdown-grace", "1s", "--log-format", "json"],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    // Wait until the data object is being written.
    loop {
        let writing = std::fs::read_dir(&dest).ok().is_some_and(|rd| {
            rd.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        });
        if writing {
            break;
        }
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "no backup started; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = stop_daemon(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    // --log-format json: every line is one JSON object with a level and a message.
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("backup aborted at shutdown"))
            && l["timestamp"].is_string()),
        "{text}"
    );
    let o = run_lifeboat(["list", "--from", dest.to_str().unwrap(), "-o", "json"]);
    assert_exit(&o, 0);
    assert_eq!(json(&o), serde_json::json!([]), "{text}");
    let manifests = std::fs::read_dir(&dest)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".manifest.json"))
        .count();
    assert_eq!(manifests, 0);
}

/// A cron schedule with seconds (`* * * * * *`) backs up every second, and the scrubbing
/// rotation (`[verify] every = "1s"`) finds a byte flipped in a stored backup: it logs it,
/// counts it in /metrics, and deletes nothing.
#[test]
fn cron_schedule_backs_up_and_scrub_reports_a_flipped_byte() {
    // etcd 3.4 over TLS with client certificates: the quota comes from its /metrics.
    let tls = Tls::generate();
    let c = Cluster::single(
        &etcd34(),
        Opts {
            tls: Some(&tls),
            quota_backend_bytes: Some(96 << 20),
            ..Opts::default()
        },
    );
    c.fill("/scrub/", 200, 100);
    let dir = TempDir::new().unwrap();
    let dest = dir.path().join("backups");
    let d = dest.to_str().unwrap().to_string();
    // One backup taken by hand, then damaged in the middle of its data object.
    let mut args: Vec<String> = vec!["backup".into(), "--to".into(), d.clone(), "-q".into()];
    args.extend(c.conn_args());
    assert_exit(&run_lifeboat(&args), 0);
    let damaged: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".db.zst"))
        .collect();
    assert_eq!(damaged.len(), 1);
    let obj = damaged[0].path();
    let mut bytes = std::fs::read(&obj).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&obj, &bytes).unwrap();
    let o = run_lifeboat(["list", "--from", &d, "-o", "json"]);
    let damaged_id = json(&o)[0]["id"].as_str().unwrap().to_string();

    let port = free_port();
    let cfg = dir.path().join("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[etcd]\nendpoints = [{:?}]\ncacert = {:?}\ncert = {:?}\nkey = {:?}\n\n[[destination]]\nurl = {d:?}\n\n[schedule]\ncron = \"* * * * * *\"\nwhen = \"always\"\n\n[verify]\nevery = \"1s\"\nbudget = \"64M\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            c.endpoints(),
            tls.ca,
            tls.client_cert,
            tls.client_key,
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = start_daemon(&cfg, &log, &["--shutdown-grace", "1s"]);
    let label = format!("{{destination=\"{d}\"}}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let value = |body: &str, key: &str| -> Option<f64> {
        body.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
    };
    loop {
        let body = http_get(port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let failing = value(&body, &format!("lifeboat_backups_failing_verify{label}"));
        let backups = value(&body, &format!("lifeboat_backups{label}")).unwrap_or(0.0);
        let verified = value(
            &body,
            &format!("lifeboat_verify_last_success_timestamp_seconds{label}"),
        );
        if failing == Some(1.0) && backups >= 3.0 && verified.is_some() {
            // etcd's own quota, not the 2 GiB fallback.
            assert_eq!(
                value(&body, "lifeboat_cluster_quota_bytes"),
                Some(f64::from(96u32 << 20)),
                "{body}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "no scrub verdict / too few backups; metrics:\n{body}\nlog:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(stop_daemon(&mut child).code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("* * * * * *") && text.contains("(UTC)"),
        "{text}"
    );
    let failed_line = text
        .lines()
        .find(|l| l.contains("scrub: backup FAILED verification"))
        .unwrap_or_else(|| panic!("no scrub failure logged:\n{text}"));
    assert!(failed_line.contains(&damaged_id), "{failed_line}");
    // Never deleted: the damaged backup is still listed, and recorded as failed.
    let o = run_lifeboat(["list", "--from", &d, "-o", "json"]);
    let ids: Vec<String> = json(&o)
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&damaged_id), "{ids:?}");
    let record = std::fs::read_to_string(dest.join(format!("{damaged_id}.verified.json"))).unwrap();
    assert!(record.contains("\"ok\": false"), "{record}");
}
