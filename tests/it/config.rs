//! One configuration: file < environment < flags, `config check`, secrets, and a backup
//! that takes its destinations and connection from the file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::*;

fn lb(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(lifeboat());
    c.args(args).stdin(Stdio::null());
    for v in [
        "ETCDCTL_ENDPOINTS",
        "ETCDCTL_DIAL_TIMEOUT",
        "ETCDCTL_PASSWORD",
        "LIFEBOAT_CONFIG",
    ] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run lifeboat")
}

fn write(dir: &Path, text: &str, mode: u32) -> String {
    let p = dir.join("lifeboat.toml");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p.display().to_string()
}

fn setting(j: &serde_json::Value, key: &str) -> serde_json::Value {
    j["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == key)
        .cloned()
        .unwrap_or_else(|| panic!("{key} not in {j}"))
}

#[test]
fn file_then_env_then_flag() {
    let d = TempDir::new().unwrap();
    let f = write(
        d.path(),
        "[etcd]\nendpoints = [\"127.0.0.1:1111\"]\ndial_timeout = \"7s\"\ncommand_timeout = \"8s\"\n",
        0o600,
    );
    let env = [
        ("ETCDCTL_DIAL_TIMEOUT", "6s"),
        ("LIFEBOAT_CONFIG", f.as_str()),
    ];
    let o = lb(
        &["config", "check", "--command-timeout", "9s", "-o", "json"],
        &env,
    );
    assert_exit(&o, 0);
    let j = json(&o);
    assert_eq!(j["config_file"], f.as_str());
    let e = setting(&j, "etcd.endpoints");
    assert_eq!(
        (e["value"].as_str(), e["source"].as_str()),
        (Some("127.0.0.1:1111"), Some("file"))
    );
    let e = setting(&j, "etcd.dial_timeout");
    assert_eq!(
        (e["value"].as_str(), e["source"].as_str()),
        (Some("6s"), Some("env"))
    );
    assert_eq!(e["from"], "ETCDCTL_DIAL_TIMEOUT");
    let e = setting(&j, "etcd.command_timeout");
    assert_eq!(
        (e["value"].as_str(), e["source"].as_str()),
        (Some("9s"), Some("flag"))
    );
    let e = setting(&j, "backup.retries");
    assert_eq!(e["source"], "default");
    // Sizes and durations print as written (not `1day`, `67108864`).
    let o = lb(
        &[
            "config",
            "check",
            "--stream-timeout",
            "24h",
            "--rate-limit",
            "64M",
            "--lock-timeout",
            "90s",
        ],
        &env,
    );
    assert_exit(&o, 0);
    let text = stdout(&o);
    for (key, shown) in [
        ("backup.stream_timeout", "24h"),
        ("backup.rate_limit", "64M"),
        ("backup.lock_timeout", "1m30s"),
        ("etcd.dial_timeout", "6s"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(key) && l.contains(&format!("  {shown}  ("))),
            "{key} {shown}:\n{text}"
        );
    }
    assert!(
        !text.contains("1day") && !text.contains("67108864"),
        "{text}"
    );
    // Text mode says the same.
    let o = lb(&["config", "check", "--config", &f], &[]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("127.0.0.1:1111  (file)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn unknown_key_names_key_and_line() {
    let d = TempDir::new().unwrap();
    let f = write(
        d.path(),
        "[etcd]\nendpoints = [\"a:1\"]\n\n[backup]\nretires = 3\n",
        0o600,
    );
    let o = lb(&["config", "check", "--config", &f], &[]);
    assert_exit(&o, 2);
    let e = stderr(&o);
    assert!(e.contains(&format!("{f} line 5")), "{e}");
    assert!(e.contains("retires"), "{e}");
    let o = lb(&["config", "check", "--config", &f, "-o", "json"], &[]);
    assert_exit(&o, 2);
    assert_eq!(json(&o)["flag"], "--config");
    // Every command reads the file, so every command refuses it.
    let o = lb(&["list", "--from", "/nonexistent", "--config", &f], &[]);
    assert_exit(&o, 2);
}

#[test]
fn secrets_masked_and_loose_file_warned() {
    let d = TempDir::new().unwrap();
    let f = write(d.path(), "[etcd]\nuser = \"root:hunter2\"\n", 0o644);
    let o = lb(
        &["config", "check", "--config", &f],
        &[("ETCDCTL_PASSWORD", "s3cret")],
    );
    assert_exit(&o, 0);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!all.contains("hunter2") && !all.contains("s3cret"), "{all}");
    assert!(stdout(&o).contains("root:***"), "{all}");
    assert!(stderr(&o).contains(&format!("chmod 600 {f}")), "{all}");
    let o = lb(&["config", "check", "--config", &f, "-o", "json"], &[]);
    let j = json(&o);
    assert!(j["warnings"][0]
        .as_str()
        .unwrap()
        .contains("readable by group or others"));
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = lb(&["config", "check", "--config", &f], &[]);
    assert!(!stderr(&o).contains("chmod"), "{}", stderr(&o));
}

#[test]
fn backup_takes_destinations_and_connection_from_the_file() {
    let c = Cluster::single(&etcd35(), Opts::default());
    c.put("/k", "v");
    let d = TempDir::new().unwrap();
    let dest_a = d.path().join("a");
    let dest_b = d.path().join("b");
    std::fs::create_dir_all(&dest_a).unwrap();
    std::fs::create_dir_all(&dest_b).unwrap();
    let f = write(
        d.path(),
        &format!(
            "[etcd]\nendpoints = [\"{}\"]\n[backup]\nzstd_level = 5\n[[destination]]\nurl = \"{}\"\n[[destination]]\nurl = \"{}\"\n",
            c.endpoints(),
            dest_a.display(),
            dest_b.display()
        ),
        0o600,
    );
    let o = lb(&["backup", "--config", &f, "-o", "json"], &[]);
    assert_exit(&o, 0);
    let id = json(&o)["id"].as_str().unwrap().to_string();
    for dest in [&dest_a, &dest_b] {
        let o = lb(
            &["list", "--from", dest.to_str().unwrap(), "-o", "json"],
            &[],
        );
        assert_exit(&o, 0);
        assert_eq!(json(&o)[0]["id"], id.as_str());
    }
    // A reader that goes away early ends the listing quietly.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(lifeboat())
        .args(["list", "--from", dest_a.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    // A flag overrides the file: an endpoint where nothing listens fails, naming it.
    let o = lb(
        &[
            "backup",
            "--config",
            &f,
            "--endpoints",
            "127.0.0.1:1",
            "--retries",
            "0",
            "-o",
            "json",
        ],
        &[],
    );
    assert_exit(&o, 1);
    assert_eq!(json(&o)["endpoint"], "127.0.0.1:1");
}
