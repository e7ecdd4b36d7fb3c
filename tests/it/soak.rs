//! `lifeboat run` left running while things fail around it (issue 17): reloads with S3
//! destinations, a hung S3 server, an unwritable local destination, a killed leader. The
//! daemon must stay up, every listed backup must verify, no scrub may report a backup
//! that retention removed, and memory must stay flat (a generous bound here; the strict
//! ratio is a benchmark: scripts/soak.sh, BENCHMARKS.md).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::s3::{signal, S3Server};
use crate::common::*;

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Lines of the log that say a backup was stored in `dest`.
fn stored_in(log: &Path, dest: &str) -> usize {
    read(log)
        .lines()
        .filter(|l| l.contains("backup stored") && l.contains(&format!("destination={dest}")))
        .count()
}

/// Wait until `cond` holds, the daemon staying alive; panics with the log otherwise.
fn wait_for(child: &mut Child, log: &Path, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited while waiting for {what}; log:\n{}",
            read(log)
        );
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            read(log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `lifeboat run --config CFG --shutdown-grace GRACE` with the S3 server's credentials,
/// its output in `log`.
fn run_daemon(s3: &S3Server, cfg: &Path, grace: &str, log: &Path) -> Child {
    let cfg = cfg.to_str().unwrap();
    s3.spawn_lifeboat_logged(
        ["run", "--config", cfg, "--shutdown-grace", grace],
        &[],
        log,
    )
}

/// SIGTERM, then the exit status.
fn stop(child: &mut Child) -> std::process::ExitStatus {
    signal(child.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A directory made unwritable while this lives: a read-only bind mount where the test may
/// mount (root in a container), else the permission bits (other users); lifeboat sees
/// `Read-only file system` or `Permission denied` either way.
struct Unwritable {
    dir: PathBuf,
    mounted: bool,
}

impl Unwritable {
    fn new(dir: &Path) -> Unwritable {
        use std::os::unix::fs::PermissionsExt;
        let d = dir.to_str().unwrap();
        let ok = |args: &[&str]| {
            Command::new("mount")
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let mounted = ok(&["--bind", d, d]);
        if mounted && !ok(&["-o", "remount,ro,bind", d]) {
            let _ = Command::new("umount").arg(d).output();
            panic!("cannot remount {d} read-only");
        }
        if !mounted {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        let probe = dir.join("probe");
        assert!(
            std::fs::write(&probe, b"x").is_err(),
            "{d} is still writable (root without mount rights?)"
        );
        Unwritable {
            dir: dir.to_path_buf(),
            mounted,
        }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).output();
        } else {
            let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755));
        }
    }
}

/// SIGHUP with S3 destinations, again and again: valid configurations reload (the S3
/// stores are reopened from inside the daemon), invalid ones are refused in one line, and
/// the daemon keeps backing up throughout. Text log lines carry RFC 3339 UTC times.
#[test]
fn sighup_with_s3_destinations_reloads_and_refuses_again_and_again() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.put("/k", "v");
    let s3 = S3Server::start(&["bkt"]);
    let dir = TempDir::new().unwrap();
    let local = dir.path().join("local");
    let l = local.to_str().unwrap().to_string();
    let cfg = dir.path().join("lifeboat.toml");
    let config = |keep: u32| {
        format!(
            "[etcd]\nendpoints = [{:?}]\n\n[[destination]]\nurl = {l:?}\n\n[[destination]]\nurl = \"s3://bkt/p\"\ns3_endpoint = {:?}\n\n[schedule]\nevery = \"1s\"\nwhen = \"always\"\n\n[retention]\nkeep_last = {keep}\n\n[metrics]\nlisten = \"off\"\n",
            c.endpoints(),
            s3.endpoint()
        )
    };
    std::fs::write(&cfg, config(3)).unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = run_daemon(&s3, &cfg, "2s", &log);
    let count = |what: &str| read(&log).matches(what).count();
    wait_for(&mut child, &log, "a backup in each destination", || {
        stored_in(&log, &l) >= 1 && stored_in(&log, "s3://bkt/p") >= 1
    });
    for n in 1..=3 {
        signal(child.id(), "HUP");
        wait_for(&mut child, &log, "a reload", || {
            count("configuration reloaded") >= n
        });
    }
    std::fs::write(&cfg, "[schedule]\nevery = \"0s\"\n").unwrap();
    for n in 1..=2 {
        signal(child.id(), "HUP");
        wait_for(&mut child, &log, "a refused reload", || {
            count("reload failed, keeping the running configuration") >= n
        });
    }
    std::fs::write(&cfg, config(2)).unwrap();
    signal(child.id(), "HUP");
    wait_for(&mut child, &log, "the last reload", || {
        count("configuration reloaded") >= 4
    });
    let (before_l, before_s3) = (stored_in(&log, &l), stored_in(&log, "s3://bkt/p"));
    wait_for(&mut child, &log, "backups after the reloads", || {
        stored_in(&log, &l) > before_l && stored_in(&log, "s3://bkt/p") > before_s3
    });
    assert_eq!(stop(&mut child).code(), Some(0), "{}", read(&log));
    let text = read(&log);
    assert!(!text.contains("panicked"), "{text}");
    let refused = text
        .lines()
        .find(|l| l.contains("reload failed"))
        .unwrap()
        .to_string();
    assert!(refused.contains("every"), "{refused}");
    // Every text line starts with an RFC 3339 UTC time, and the next slot is announced.
    for line in text.lines() {
        let t = line.split_whitespace().next().unwrap_or_default();
        assert!(
            t.len() >= 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "no RFC 3339 UTC time: {line}"
        );
    }
    assert!(text.contains("next slot"), "{text}");
    for d in [l.as_str(), "s3://bkt/p"] {
        assert_exit(&s3.lifeboat(["verify", "--from", d, "--all"]), 0);
    }
}

/// One destination that cannot be written (read-only) for several slots: each retry goes
/// to it alone, so the healthy destination gets one backup per slot, not one per retry.
#[test]
fn a_retry_goes_only_to_the_destination_that_failed() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.put("/k", "v");
    let dir = TempDir::new().unwrap();
    let (bad, good) = (dir.path().join("bad"), dir.path().join("good"));
    let (b, g) = (
        bad.to_str().unwrap().to_string(),
        good.to_str().unwrap().to_string(),
    );
    let cfg = dir.path().join("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[etcd]\nendpoints = [{:?}]\n\n[[destination]]\nurl = {b:?}\n\n[[destination]]\nurl = {g:?}\n\n[schedule]\nevery = \"8s\"\nwhen = \"always\"\n\n[retention]\nkeep_last = 10\n\n[metrics]\nlisten = \"off\"\n",
            c.endpoints()
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let started = Instant::now();
    let mut child = Command::new(lifeboat())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for(&mut child, &log, "the start", || {
        read(&log).contains("scheduler started")
    });
    let ro = Unwritable::new(&bad);
    wait_for(&mut child, &log, "three retries", || {
        read(&log)
            .matches("retrying the destinations that failed")
            .count()
            >= 3
    });
    let elapsed = started.elapsed();
    drop(ro);
    assert_eq!(stop(&mut child).code(), Some(0));
    let text = read(&log);
    for line in text
        .lines()
        .filter(|l| l.contains("retrying the destinations that failed"))
    {
        assert!(
            line.contains(&format!("destinations={b}")) && !line.contains(&g),
            "{line}"
        );
    }
    // At most one backup per slot in the healthy destination.
    let slots = elapsed.as_secs() / 8 + 2;
    let o = run_lifeboat(["list", "--from", &g, "-o", "json"]);
    assert_exit(&o, 0);
    let n = json(&o).as_array().unwrap().len() as u64;
    assert!(
        (1..=slots).contains(&n),
        "{n} backups in {slots} slots:\n{text}"
    );
    assert_eq!(stored_in(&log, &g) as u64, n, "{text}");
}

/// SIGTERM while a scrub (and maybe a backup) waits on an S3 server that answers nothing:
/// the daemon stops within its grace, twice over, with exit 0, and nothing panics. Before,
/// the runtime was dropped under the scrub's S3 call, whose timer then panicked ("A Tokio
/// 1.x context was found, but it is being shutdown"): the soak caught it under load.
#[test]
fn sigterm_while_a_scrub_waits_on_a_hung_s3() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.put("/k", "v");
    let s3 = S3Server::start(&["hang"]);
    let dir = TempDir::new().unwrap();
    let cfg = dir.path().join("lifeboat.toml");
    let s = "s3://hang/p";
    std::fs::write(
        &cfg,
        format!(
            "[etcd]\nendpoints = [{:?}]\n\n[[destination]]\nurl = {s:?}\ns3_endpoint = {:?}\ns3_connect_timeout = \"5s\"\ns3_first_byte_timeout = \"60s\"\ns3_stall_timeout = \"60s\"\n\n[schedule]\nevery = \"1s\"\nwhen = \"always\"\n\n[verify]\nevery = \"1s\"\nbudget = \"64M\"\n\n[metrics]\nlisten = \"off\"\n",
            c.endpoints(),
            s3.endpoint()
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = run_daemon(&s3, &cfg, "1s", &log);
    wait_for(&mut child, &log, "backups and a scrub", || {
        let t = read(&log);
        stored_in(&log, s) >= 2 && t.contains("scrub finished")
    });
    s3.pause();
    // The next rotation starts within a second and waits on the stopped server (its
    // deadlines are far off).
    std::thread::sleep(Duration::from_millis(2500));
    let t0 = Instant::now();
    let status = stop(&mut child);
    let took = t0.elapsed();
    s3.resume();
    let text = read(&log);
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        text.contains("store calls still running"),
        "the abandoned S3 call is logged:\n{text}"
    );
    // Not a speed target: the S3 deadlines (60 s) are not what ended it (2 x the grace is).
    assert!(took < Duration::from_secs(30), "{took:?}\n{text}");
}

/// The soak (issue 17): a 3-member cluster, a 1 s schedule, a local and an S3 destination,
/// retention and scrubbing; then a SIGHUP with a valid config, the S3 server stopped
/// (SIGSTOP) and continued, then killed and restarted, the local destination read-only for
/// a while, and the leader killed. The daemon stays up and keeps backing up the healthy destination through each
/// fault; at the end every listed backup verifies, no scrub failed, and memory is flat.
#[test]
fn soak_one_second_schedule_through_faults() {
    let mut c = Cluster::start(&etcd35(), 3, Opts::default());
    c.wait_healthy(Duration::from_secs(60));
    c.fill("/soak/", 500, 200);
    let mut s3 = S3Server::start(&["soak"]);
    let dir = TempDir::new().unwrap();
    let local = dir.path().join("local");
    let l = local.to_str().unwrap().to_string();
    let s = "s3://soak/p";
    let port = free_port();
    let cfg = dir.path().join("lifeboat.toml");
    let endpoints: Vec<String> = c.endpoints().split(',').map(|e| format!("{e:?}")).collect();
    std::fs::write(
        &cfg,
        format!(
            "[etcd]\nendpoints = [{}]\n\n[[destination]]\nurl = {l:?}\n\n[[destination]]\nurl = {s:?}\ns3_endpoint = {:?}\ns3_connect_timeout = \"2s\"\ns3_first_byte_timeout = \"3s\"\ns3_stall_timeout = \"2s\"\n\n[schedule]\nevery = \"1s\"\nwhen = \"always\"\n\n[retention]\nkeep_last = 5\n\n[verify]\nevery = \"2s\"\nbudget = \"64M\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            endpoints.join(", "),
            s3.endpoint()
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = run_daemon(&s3, &cfg, "5s", &log);
    let pid = child.id();
    wait_for(&mut child, &log, "warm-up backups", || {
        stored_in(&log, &l) >= 8 && stored_in(&log, s) >= 8
    });
    let rss_start = rss_kib(pid);

    // A reload with a valid configuration (the S3 store is reopened).
    signal(pid, "HUP");
    wait_for(&mut child, &log, "the reload", || {
        read(&log).contains("configuration reloaded")
    });

    // S3 hung: the local destination goes on being backed up while S3 answers nothing,
    // and S3 fails at its deadlines, in one line each.
    s3.pause();
    let paused_at = stored_in(&log, &l);
    wait_for(
        &mut child,
        &log,
        "local backups while S3 is stopped",
        || stored_in(&log, &l) >= paused_at + 3,
    );
    wait_for(&mut child, &log, "the S3 failure", || {
        read(&log)
            .lines()
            .any(|x| x.contains("backup failed") && x.contains(s) && x.contains("hung"))
    });
    s3.resume();
    let resumed_at = stored_in(&log, s);
    wait_for(&mut child, &log, "S3 backups after SIGCONT", || {
        stored_in(&log, s) >= resumed_at + 3
    });

    // S3 killed: its connections are refused, which counts as stage="connect" (not
    // "store"), and its backups resume the moment it is back.
    s3.kill();
    wait_for(&mut child, &log, "the refused S3 connection", || {
        read(&log)
            .lines()
            .any(|x| x.contains("backup failed") && x.contains(s) && x.contains("cannot reach"))
    });
    s3.restart();
    let restarted_at = stored_in(&log, s);
    wait_for(&mut child, &log, "S3 backups after the restart", || {
        stored_in(&log, s) >= restarted_at + 2
    });

    // The local destination read-only: S3 goes on.
    let ro = Unwritable::new(&local);
    let s3_at = stored_in(&log, s);
    wait_for(
        &mut child,
        &log,
        "S3 backups while local is read-only",
        || stored_in(&log, s) >= s3_at + 3,
    );
    drop(ro);
    let local_at = stored_in(&log, &l);
    wait_for(&mut child, &log, "local backups again", || {
        stored_in(&log, &l) >= local_at + 2
    });

    // The leader killed: the next member streams.
    let leader = c.leader().expect("a leader");
    c.kill(leader);
    let (la, sa) = (stored_in(&log, &l), stored_in(&log, s));
    wait_for(&mut child, &log, "backups without the old leader", || {
        stored_in(&log, &l) >= la + 5 && stored_in(&log, s) >= sa + 5
    });
    let rss_end = rss_kib(pid);
    let metrics = std::net::TcpStream::connect(("127.0.0.1", port))
        .ok()
        .and_then(|mut t| {
            use std::io::{Read, Write};
            write!(
                t,
                "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .ok()?;
            let mut out = String::new();
            t.read_to_string(&mut out).ok()?;
            Some(out)
        })
        .unwrap_or_default();
    assert_eq!(stop(&mut child).code(), Some(0), "{}", read(&log));
    let text = read(&log);
    assert!(!text.contains("panicked"), "{text}");
    assert!(!text.contains("FAILED verification"), "{text}");
    // The hung S3 server and the killed one were counted, by stage.
    let s3_failures = |stage: &str| -> f64 {
        metrics
            .lines()
            .filter(|x| {
                x.starts_with(&format!(
                    "lifeboat_backup_failures_total{{destination=\"{s}\",stage=\"{stage}\"}}"
                ))
            })
            .filter_map(|x| x.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    assert!(s3_failures("store") >= 1.0, "hung: {metrics}");
    assert!(s3_failures("connect") >= 1.0, "refused: {metrics}");
    // Every listed backup verifies, in both destinations; retention held.
    for d in [l.as_str(), s] {
        let o = s3.lifeboat(["list", "--from", d, "-o", "json"]);
        assert_exit(&o, 0);
        let n = json(&o).as_array().unwrap().len();
        assert!((1..=6).contains(&n), "{d}: {n} backups");
        assert_exit(&s3.lifeboat(["verify", "--from", d, "--all"]), 0);
    }
    // Scrub records only for listed backups (prune removes a backup's record with it).
    let records = std::fs::read_dir(&local)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".verified.json"))
        .count();
    let o = s3.lifeboat(["list", "--from", &l, "-o", "json"]);
    assert!(
        records <= json(&o).as_array().unwrap().len(),
        "{records} records"
    );
    // Flat memory, generously: the strict ratio is the benchmark's.
    assert!(
        rss_end <= rss_start + 64 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB"
    );
    let _ = &mut s3;
}
