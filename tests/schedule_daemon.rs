//! `lifeboat run` against a real etcd on a 1 s schedule: backs up every slot, prunes to
//! keep_last = 2, writes the textfile, and stops cleanly on SIGTERM.
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn textfile_value(path: &std::path::Path, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

#[test]
fn daemon_backs_up_each_slot_prunes_and_stops_on_sigterm() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.put("/k", "v");
    let dir = TempDir::new().unwrap();
    let dest = dir.path().join("backups");
    let prom = dir.path().join("lifeboat.prom");
    let cfg = dir.path().join("lifeboat.toml");
    let endpoints: Vec<String> = c.endpoints().split(',').map(|e| format!("{e:?}")).collect();
    std::fs::write(
        &cfg,
        format!(
            "[etcd]\nendpoints = [{}]\n\n[[destination]]\nurl = {:?}\n\n[schedule]\nevery = \"1s\"\nwhen = \"leader\"\n\n[retention]\nkeep_last = 2\n\n[metrics]\ntextfile = {:?}\n",
            endpoints.join(", "),
            dest.to_str().unwrap(),
            prom.to_str().unwrap()
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = Command::new(lifeboat())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
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
    let o = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .output()
        .unwrap();
    assert!(o.status.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
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
