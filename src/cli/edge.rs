//! The process edge: how a failure is told. One line on stderr in text mode; one JSON
//! document on stdout with `-o json` (scripts never parse stderr); nothing at all when the
//! reader of stdout went away (`lifeboat list | head -1`).

use serde::Serialize;

use crate::error::Locator;
use crate::ExitCode;

/// The JSON error document of the interface.
#[derive(Debug, Serialize)]
pub struct ErrorDocument {
    pub error: String,
    pub exit_code: i32,
    /// The class of the outermost lifeboat error in the chain ([`crate::Error::kind_name`]);
    /// `usage` for command-line errors clap finds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(flatten)]
    pub locator: Locator,
}

/// The error's chain as one line, each cause said once: a cause whose text is already part
/// of what was said (a context that quotes its source) is not repeated.
pub fn render(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        // An OS error in words, without Rust's "(os error N)", which would defeat the
        // comparison with a message that already quotes it.
        let s = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => crate::error::io_words(io),
            None => cause.to_string(),
        };
        let s = s.trim();
        if s.is_empty() || out.contains(s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(s);
    }
    out
}

/// Every locator field known anywhere in the chain; the outermost [`crate::Error`] wins
/// where two say the same field.
pub fn locate(e: &anyhow::Error) -> Locator {
    let mut l = Locator::default();
    for cause in e.chain() {
        if let Some(le) = cause.downcast_ref::<crate::Error>() {
            let m = le.locator();
            l.file = l.file.or(m.file);
            l.page = l.page.or(m.page);
            l.offset = l.offset.or(m.offset);
            l.endpoint = l.endpoint.or(m.endpoint);
            l.destination = l.destination.or(m.destination);
            l.flag = l.flag.or(m.flag);
        }
    }
    l
}

pub fn document(e: &anyhow::Error, code: ExitCode) -> ErrorDocument {
    ErrorDocument {
        error: render(e),
        exit_code: code.code(),
        kind: e
            .chain()
            .find_map(|c| c.downcast_ref::<crate::Error>())
            .map(crate::Error::kind_name),
        locator: locate(e),
    }
}

/// Whether the failure is only that stdout's reader is gone.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Print the error document on stdout; if even that fails (stdout gone) there is no one to
/// tell.
pub fn print_document(doc: &ErrorDocument) {
    if let Ok(s) = serde_json::to_string_pretty(doc) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    }
}

/// `println!` panics when stdout's reader has gone; every command prints with it, so the
/// case is caught once here: the process ends quietly with 0, as `cat` or `rg` would.
pub fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Drop the process's runtime, unless blocking work still runs on it (a store call the
/// daemon's shutdown grace did not wait out): dropping it would stop its timers under
/// that call, which then panics. The runtime is left alive instead, and the process
/// exits around it, as a killed run would (the next run cleans up after it).
pub fn release_runtime(rt: Option<std::sync::Arc<tokio::runtime::Runtime>>) {
    if crate::store::blocking::in_flight() > 0 {
        std::mem::forget(rt);
    }
}

/// Whether the raw arguments ask for JSON output, for errors clap finds before any
/// parsed value exists.
pub fn wants_json(args: &[std::ffi::OsString]) -> bool {
    let mut prev_is_flag = false;
    for a in args.iter().skip(1) {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if prev_is_flag && a == "json" {
            return true;
        }
        if a == "--output=json" || a == "-ojson" || a == "-o=json" {
            return true;
        }
        prev_is_flag = a == "-o" || a == "--output";
    }
    false
}

/// A clap error as the JSON document: its first line, and the argument it is about.
pub fn clap_document(e: &clap::Error) -> ErrorDocument {
    let text = e.kind().to_string();
    let rendered = e.render().to_string();
    // The message is the lines before clap's usage hint, as one line.
    let first = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let first = first.trim_start_matches("error: ").to_string();
    let first = if first.is_empty() { text } else { first };
    let flag = e
        .get(clap::error::ContextKind::InvalidArg)
        .map(|v| v.to_string())
        .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
        .filter(|v| !v.is_empty());
    ErrorDocument {
        error: first,
        exit_code: ExitCode::Usage.code(),
        kind: Some("usage"),
        locator: Locator {
            flag,
            ..Locator::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn causes_are_said_once() {
        let io = std::io::Error::from_raw_os_error(30);
        let e = anyhow::Error::new(crate::Error::io("/ro/x", io))
            .context("/ro/x: Read-only file system");
        let s = render(&e);
        assert_eq!(s.matches("Read-only file system").count(), 1, "{s}");
        let e: anyhow::Error = Err::<(), _>(std::io::Error::other("no such file"))
            .context("backup")
            .unwrap_err();
        assert_eq!(render(&e), "backup: no such file");
    }

    #[test]
    fn locators_come_from_the_chain() {
        let e = anyhow::Error::new(crate::Error::flag("--to", "bad")).context("backup");
        let d = document(&e, ExitCode::Usage);
        assert_eq!(d.locator.flag.as_deref(), Some("--to"));
        let j = serde_json::to_value(&d).unwrap();
        assert_eq!(j["exit_code"], 2);
        assert_eq!(j["kind"], "flag");
        assert!(j.get("file").is_none());
    }

    #[test]
    fn the_kind_tells_failures_apart() {
        let kind = |e: crate::Error| {
            let code = e.exit_code();
            document(&anyhow::Error::new(e).context("x"), code).kind
        };
        assert_eq!(
            kind(crate::Error::Refused("out exists".into())),
            Some("refused")
        );
        assert_eq!(kind(crate::Error::Busy("locked".into())), Some("busy"));
        assert_eq!(
            kind(crate::Error::Internal("thread".into())),
            Some("internal")
        );
        assert_eq!(kind(crate::Error::integrity("o", "bad")), Some("integrity"));
        let plain = document(&anyhow::anyhow!("no lifeboat error"), ExitCode::Failed);
        assert_eq!(plain.kind, None);
    }

    #[test]
    fn json_is_seen_in_raw_args() {
        let v = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert!(wants_json(&v(&["lb", "list", "-o", "json"])));
        assert!(wants_json(&v(&["lb", "--output=json", "x"])));
        assert!(!wants_json(&v(&["lb", "get", "f", "--", "-o", "json"])));
        assert!(!wants_json(&v(&["lb", "list"])));
    }
}
