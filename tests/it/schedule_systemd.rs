//! `lifeboat systemd`: the unit pair it writes is hardened, names the config's paths, and
//! passes `systemd-analyze verify` where systemd is installed. No etcd needed.

use crate::common::*;

#[test]
fn systemd_writes_a_hardened_service_and_timer() {
    let dir = TempDir::new().unwrap();
    let backups = dir.path().join("backups");
    let prom = dir.path().join("prom");
    let out = dir.path().join("units");
    for d in [&backups, &prom, &out] {
        std::fs::create_dir(d).unwrap();
    }
    let cfg = dir.path().join("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[etcd]\nendpoints = [\"https://127.0.0.1:2379\"]\ncacert = \"/etc/lifeboat/ca.crt\"\n\n[[destination]]\nurl = {:?}\n\n[[destination]]\nurl = \"s3://bucket/etcd\"\n\n[retention]\nkeep_last = 24\n\n[metrics]\ntextfile = {:?}\n",
            backups.to_str().unwrap(),
            prom.join("lifeboat.prom").to_str().unwrap()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let o = run_lifeboat([
        "systemd",
        "--config",
        c,
        "--on-calendar",
        "*:0/30",
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert_exit(&o, 0);
    let service = std::fs::read_to_string(out.join("lifeboat-backup.service")).unwrap();
    let timer = std::fs::read_to_string(out.join("lifeboat-backup.timer")).unwrap();
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.ends_with(&format!(
            " backup --config {c} --prune --metrics-textfile {}",
            prom.join("lifeboat.prom").display()
        )),
        "{exec}"
    );
    for line in [
        "Type=oneshot",
        "ProtectSystem=strict",
        "NoNewPrivileges=true",
        "PrivateTmp=true",
        &format!("ReadWritePaths={} {}", backups.display(), prom.display()),
    ] {
        assert!(service.lines().any(|l| l == line), "{line}:\n{service}");
    }
    assert!(service.contains("#   /etc/lifeboat/ca.crt\n"), "{service}");
    assert!(timer.lines().any(|l| l == "OnCalendar=*:0/30"), "{timer}");
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(out.join("lifeboat-backup.service"))
        .arg(out.join("lifeboat-backup.timer"))
        .output();
    if let Ok(v) = verify {
        assert!(
            v.status.success() && v.stderr.is_empty(),
            "systemd-analyze verify:\n{}",
            String::from_utf8_lossy(&v.stderr)
        );
    }

    // Printed on stdout without --output-dir; a newline in --on-calendar is refused (exit 2).
    let o = run_lifeboat(["systemd", "--config", c]);
    assert_exit(&o, 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("OnCalendar=hourly"));
    let o = run_lifeboat([
        "systemd",
        "--config",
        c,
        "--on-calendar",
        "hourly\nUser=root",
    ]);
    assert_exit(&o, 2);
    let o = run_lifeboat(["systemd"]);
    assert_exit(&o, 2);

    // A calendar systemd would not take is refused: exit 2, one line naming the flag
    // (systemd-analyze decides where installed, lifeboat's own parser elsewhere).
    for bogus in ["bogus", "25:00", "*-13-01"] {
        let o = run_lifeboat(["systemd", "--config", c, "--on-calendar", bogus]);
        assert_exit(&o, 2);
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.contains("--on-calendar") && e.contains(bogus), "{e}");
    }
    for good in ["daily", "Mon..Fri 02:00", "*-*-* 03:30:00 UTC"] {
        let o = run_lifeboat(["systemd", "--config", c, "--on-calendar", good]);
        assert_exit(&o, 0);
    }
    // A missing --output-dir: one line naming it and what to do.
    let missing = dir.path().join("no-such-dir");
    let o = run_lifeboat([
        "systemd",
        "--config",
        c,
        "--output-dir",
        missing.to_str().unwrap(),
    ]);
    assert_exit(&o, 2);
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("--output-dir")
            && e.contains(&missing.display().to_string())
            && e.contains("mkdir -p"),
        "{e}"
    );
    assert!(!e.contains("No such file or directory"), "{e}");
}
