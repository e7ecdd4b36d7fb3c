//! The process edge: JSON error documents, one-line errors, broken pipes, exit codes in
//! --help, completions and the man page.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use crate::common::*;

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
    assert_eq!(j["kind"], "usage");
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
    assert_eq!(j["kind"], "io");
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
    assert_eq!(j["kind"], "etcd");
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

/// The long flags of `lifeboat PATH --help`, each with the heading it is listed under.
fn help_flags(path: &[&str]) -> Vec<(String, String)> {
    let mut args = path.to_vec();
    args.push("--help");
    let o = lb(&args);
    assert_exit(&o, 0);
    let mut heading = String::new();
    let mut out = Vec::new();
    for line in stdout(&o).lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            heading = line.trim_end_matches(':').to_string();
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let t = line.trim_start();
        let t = match t.split_once(", ") {
            Some((short, rest)) if short.len() == 2 && short.starts_with('-') => rest,
            _ => t,
        };
        if (2..=6).contains(&indent) && t.starts_with("--") {
            let name: String = t[2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            out.push((format!("--{name}"), heading.clone()));
        }
    }
    out
}

/// `--flag` words in a text.
fn flags_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("--") {
        let after = &rest[i + 2..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let before_ok = i == 0 || !rest[..i].ends_with(|c: char| c.is_ascii_alphanumeric());
        if before_ok && name.starts_with(|c: char| c.is_ascii_lowercase()) {
            out.push(format!("--{}", name.trim_end_matches('-')));
        }
        rest = &after[name.len()..];
    }
    out
}

/// docs/cli.md, cut into its `### \`lifeboat CMD ...\`` sections (by command path) and
/// `## ` sections (by title).
/// (key, text) pairs: a command path or a section title, and what the section says.
type Sections = Vec<(String, String)>;

fn doc_sections() -> (Sections, Sections) {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md")).unwrap();
    let (mut commands, mut parts) = (Vec::new(), Vec::new());
    let mut current: Option<(bool, String, String)> = None;
    let mut flush = |c: Option<(bool, String, String)>| match c {
        Some((true, k, t)) => commands.push((k, t)),
        Some((false, k, t)) => parts.push((k, t)),
        None => {}
    };
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("### `lifeboat ") {
            flush(current.take());
            let path: Vec<&str> = h
                .split('`')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .take_while(|w| {
                    w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')
                })
                .collect();
            current = Some((true, path.join(" "), format!("{line}\n")));
        } else if let Some(h) = line.strip_prefix("## ").or(line.strip_prefix("### ")) {
            flush(current.take());
            current = Some((false, h.to_string(), String::new()));
        } else if let Some((_, _, t)) = current.as_mut() {
            t.push_str(line);
            t.push('\n');
        }
    }
    flush(current.take());
    (commands, parts)
}

/// Every flag in every command's `--help` is in docs/cli.md: in that command's section, or,
/// for the flags many commands share, in the section for them (every command, connection,
/// S3); each shared group is listed under its own heading in --help (a flag of the command
/// under "Connection:" was the bug); and every flag a command's section header or flag table
/// names exists in its --help. The two cannot drift.
#[test]
fn docs_cli_md_matches_every_help() {
    let (commands, parts) = doc_sections();
    let part = |title: &str| -> Vec<String> {
        let (_, t) = parts
            .iter()
            .find(|(k, _)| k.starts_with(title))
            .unwrap_or_else(|| panic!("docs/cli.md has no section {title}"));
        flags_in(t)
    };
    let every = part("Flags every command takes");
    let connection = part("Connection flags");
    let s3 = part("S3");
    fn walk(c: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        if c.has_subcommands() {
            for s in c.get_subcommands() {
                let mut p = path.clone();
                p.push(s.get_name().to_string());
                walk(s, p, out);
            }
        } else {
            out.push(path);
        }
    }
    let mut paths = Vec::new();
    walk(&lifeboat::cli::command(), vec![], &mut paths);
    let mut problems = Vec::new();
    for path in paths.iter().filter(|p| p[0] != "help") {
        let name = path.join(" ");
        let Some((_, section)) = commands.iter().find(|(k, _)| *k == name) else {
            problems.push(format!("`lifeboat {name}` has no ### section"));
            continue;
        };
        let mentioned = flags_in(section);
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let help = help_flags(&args);
        for (flag, heading) in &help {
            if flag == "--help" || flag == "--version" {
                continue;
            }
            let ok = match heading.as_str() {
                "Connection" => connection.contains(flag),
                h if h.starts_with("S3") => s3.contains(flag),
                _ => mentioned.contains(flag) || every.contains(flag),
            };
            if !ok {
                problems.push(format!(
                    "lifeboat {name}: {flag} (under \"{heading}:\" in --help) is not in its docs/cli.md section{}",
                    match heading.as_str() {
                        "Connection" => " Connection flags",
                        h if h.starts_with("S3") => " S3",
                        _ => "",
                    }
                ));
            }
        }
        if help.iter().any(|(_, h)| h == "Connection") && !section.contains("connection flags") {
            problems.push(format!(
                "lifeboat {name}: takes the connection flags; its section does not say so"
            ));
        }
        // What the section header and its flag table name must exist.
        let claimed: Vec<String> = section
            .lines()
            .filter(|l| l.starts_with("### ") || l.starts_with("| `-"))
            .flat_map(flags_in)
            .collect();
        for flag in claimed {
            if !help.iter().any(|(f, _)| *f == flag) {
                problems.push(format!(
                    "lifeboat {name}: docs/cli.md names {flag}, which --help does not have"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/cli.md and --help differ:\n{}",
        problems.join("\n")
    );
}

/// `lifeboat man --out DIR` writes a page for every command, restore's subcommands
/// included, and every page it refers to is one it wrote; `lifeboat man` alone is one
/// complete page that refers to none.
#[test]
fn man_pages_per_command() {
    let d = TempDir::new().unwrap();
    let o = lb(&["man", "--out", d.path().to_str().unwrap()]);
    assert_exit(&o, 0);
    let written: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for want in [
        "lifeboat.1",
        "lifeboat-backup.1",
        "lifeboat-restore.1",
        "lifeboat-restore-plan.1",
        "lifeboat-restore-check.1",
        "lifeboat-wal-dump.1",
        "lifeboat-config-check.1",
    ] {
        assert!(
            written.iter().any(|w| w == want),
            "{want} not in {written:?}"
        );
    }
    for page in &written {
        let text = std::fs::read_to_string(d.path().join(page)).unwrap();
        // clap_mangen refers to other pages as `name(1)`, in bold: \fBlifeboat\-x(1)\fR.
        for (i, _) in text.match_indices("(1)") {
            let start = text[..i].rfind("\\fB").map(|s| s + 3).unwrap_or(i);
            let name = text[start..i].replace("\\-", "-");
            if name.starts_with("lifeboat") {
                assert!(
                    written.contains(&format!("{name}.1")),
                    "{page} refers to {name}(1), not written"
                );
            }
        }
    }
    let plan = std::fs::read_to_string(d.path().join("lifeboat-restore-plan.1")).unwrap();
    assert!(plan.contains("topology"), "{plan}");
    let o = lb(&["man"]);
    assert_exit(&o, 0);
    let one = stdout(&o);
    assert!(!one.contains("(1)"), "one page refers to others");
    for sub in [
        "LIFEBOAT RESTORE PLAN",
        "LIFEBOAT RESTORE APPLY",
        "LIFEBOAT WAL DUMP",
        "EXIT STATUS",
    ] {
        assert!(one.contains(sub), "{sub} missing from the page");
    }
    let o = lb(&["man", "--out", d.path().join("nope").to_str().unwrap()]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("--out") && stderr(&o).lines().count() == 1,
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_says_what_exists() {
    let o = lb(&["backup", "--help"]);
    let h = stdout(&o);
    assert!(!h.contains("later release"), "{h}");
    assert!(h.contains("a local directory or s3://bucket/prefix"), "{h}");
    // --prune is the command's own, not a connection flag.
    let connection = h
        .split("Connection:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    assert!(!connection.contains("--prune"), "{connection}");
    for cmd in ["list", "verify", "prune", "fetch", "cleanup"] {
        let h = stdout(&lb(&[cmd, "--help"]));
        assert!(h.contains("s3://bucket/prefix"), "{cmd}: {h}");
    }
}
