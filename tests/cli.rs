//! The process edge: JSON error documents, one-line errors, broken pipes, exit codes in
//! --help, completions and the man page.
mod common;

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use common::*;

/// Run lifeboat with no lifeboat or etcdctl variables from the caller's environment.
fn lb(args: &[&str]) -> Output {
    Command::new(lifeboat())
        .args(args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("LIFEBOAT_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run lifeboat")
}

/// Run lifeboat with a stdout whose reader is already gone.
fn lb_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Command::new(lifeboat())
        .args(args)
        .env_remove("LIFEBOAT_CONFIG")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run lifeboat")
}

#[test]
fn usage_error_as_json_document() {
    let o = lb(&["list", "-o", "json"]);
    assert_exit(&o, 2);
    let j = json(&o);
    assert_eq!(j["exit_code"], 2);
    assert_eq!(j["flag"], "--from");
    assert!(j["error"].as_str().unwrap().contains("--from"), "{j}");
    let o = lb(&[
        "backup",
        "--to",
        "/tmp/x",
        "--zstd-level",
        "99",
        "-o",
        "json",
    ]);
    assert_exit(&o, 2);
    assert_eq!(json(&o)["flag"], "--zstd-level");
}

#[test]
fn missing_file_names_the_file() {
    let d = TempDir::new().unwrap();
    let missing = d.path().join("no-such.db");
    let m = missing.to_str().unwrap();
    let o = lb(&["inspect", m, "-o", "json"]);
    assert_exit(&o, 1);
    let j = json(&o);
    assert_eq!(j["file"], m);
    assert_eq!(j["exit_code"], 1);
    assert!(
        o.stderr.is_empty() || !stderr(&o).contains("error"),
        "{}",
        stderr(&o)
    );
    // Text mode: one line, the cause said once.
    let o = lb(&["inspect", m]);
    assert_exit(&o, 1);
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.starts_with("lifeboat: error: "), "{e}");
    assert!(e.contains(m), "{e}");
    assert_eq!(e.matches("no such file").count(), 1, "{e}");
}

#[test]
fn unreachable_endpoint_names_the_endpoint() {
    // A loopback port that was bound and released: nothing listens there.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ep = format!("127.0.0.1:{port}");
    let dest = TempDir::new().unwrap();
    let o = lb(&[
        "backup",
        "--to",
        dest.path().to_str().unwrap(),
        "--endpoints",
        &ep,
        "--retries",
        "0",
        "-o",
        "json",
    ]);
    assert_exit(&o, 1);
    let j = json(&o);
    assert_eq!(j["exit_code"], 1);
    assert!(j["endpoint"].as_str().unwrap().contains(&ep), "{j}");
}

#[test]
fn closed_stdout_ends_quietly() {
    for args in [
        &["completions", "bash"][..],
        &["man"],
        &["config", "check"],
        &["config", "check", "-o", "json"],
    ] {
        let o = lb_closed_stdout(args);
        assert_exit(&o, 0);
        assert!(o.stderr.is_empty(), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn help_lists_exit_codes_everywhere() {
    for args in [
        &["--help"][..],
        &["backup", "--help"],
        &["wal", "dump", "--help"],
    ] {
        let o = lb(args);
        assert_exit(&o, 0);
        let s = stdout(&o);
        assert!(s.contains("Exit codes:"), "{args:?}");
        assert!(s.contains("3  integrity problem"), "{args:?}");
    }
}

#[test]
fn completions_and_man_page() {
    let o = lb(&["completions", "bash"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("lifeboat"));
    assert!(stdout(&o).contains("--copy-live"));
    let o = lb(&["man"]);
    assert_exit(&o, 0);
    let s = stdout(&o);
    assert!(
        s.starts_with(".ie") || s.contains(".TH"),
        "{}",
        &s[..200.min(s.len())]
    );
    assert!(s.contains("backup"));
    let o = lb(&["completions", "tcsh"]);
    assert_exit(&o, 2);
}

#[test]
fn force_means_overwrite_only() {
    // The live-db copy has its own flag; --force on inspect is refused.
    let o = lb(&["inspect", "--force", "x.db"]);
    assert_exit(&o, 2);
    let o = lb(&["get", "--help"]);
    assert!(stdout(&o).contains("--copy-live"));
    let o = lb(&["fetch", "--help"]);
    assert!(stdout(&o).contains("--force"));
}
