//! `lifeboat systemd --on-calendar`: refused before it goes into a timer unit that systemd
//! would reject at `daemon-reload` (a timer that never fires is a backup that never runs).
//!
//! `systemd-analyze calendar` decides when it is installed: it is systemd's own parser, so
//! it accepts exactly what the installed systemd accepts. Without it (a container, a build
//! host) a parser of the forms systemd.time(7) documents decides: the shorthands (`hourly`,
//! `daily`, ...), `@EPOCH`, and `[WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]]
//! [TIMEZONE]` with `*`, lists (`,`), ranges (`..`), repetitions (`/`) and `~` (last days).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result};

const EXAMPLES: &str = "e.g. hourly, daily, *:0/15, Mon..Fri 02:00, *-*-* 03:30:00 UTC";

/// Refuse an expression systemd would not take, naming the flag (exit 2).
pub fn check(expr: &str) -> Result<()> {
    let e = expr.trim();
    let refuse = |why: String| {
        Err(Error::flag(
            "--on-calendar",
            format!("{expr:?} is not a systemd calendar expression ({why}); {EXAMPLES}"),
        ))
    };
    if e.is_empty() || e.chars().any(char::is_control) {
        return refuse("empty or with control characters".into());
    }
    if let Some(tool) = find_on_path("systemd-analyze") {
        if let Some(verdict) = analyze(&tool, e) {
            return match verdict {
                Ok(()) => Ok(()),
                Err(why) => refuse(format!("systemd-analyze calendar: {why}")),
            };
        }
    }
    match parse(e) {
        Ok(()) => Ok(()),
        Err(why) => refuse(why),
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `systemd-analyze calendar -- EXPR`: `Some(Ok)` accepted, `Some(Err(its words))`
/// refused, `None` when it could not be asked (then the own parser decides).
fn analyze(tool: &Path, expr: &str) -> Option<std::result::Result<(), String>> {
    let mut child = Command::new(tool)
        .args(["calendar", "--", expr])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    if status.success() {
        return Some(Ok(()));
    }
    let mut words = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut words);
    }
    let words = words.lines().next().unwrap_or("refused").trim().to_string();
    // A crash or a signal is no verdict on the expression.
    status.code()?;
    Some(Err(words))
}

const SHORTHANDS: &[&str] = &[
    "minutely",
    "hourly",
    "daily",
    "monthly",
    "weekly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
];
const DAYS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// The documented forms of systemd.time(7), "CALENDAR EVENTS".
pub fn parse(expr: &str) -> std::result::Result<(), String> {
    let mut tokens: Vec<&str> = expr.split_whitespace().collect();
    if let Some(epoch) = expr.strip_prefix('@') {
        return match epoch.parse::<u64>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("{expr:?}: @ takes seconds since the epoch")),
        };
    }
    // A trailing time zone: UTC, or an IANA name that this host knows (when it has the
    // database to ask).
    if tokens.len() > 1 {
        let last = tokens[tokens.len() - 1];
        if is_zone(last) {
            tokens.pop();
        }
    }
    if tokens.len() == 1 && SHORTHANDS.contains(&tokens[0].to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let mut rest = &tokens[..];
    if let Some(first) = rest.first() {
        if first
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        {
            weekdays(first)?;
            rest = &rest[1..];
        }
    }
    let mut date = None;
    let mut time = None;
    for t in rest {
        if t.contains(':') && time.is_none() {
            time = Some(*t);
        } else if (t.contains('-') || t.contains('~')) && date.is_none() && time.is_none() {
            date = Some(*t);
        } else {
            return Err(format!(
                "{t:?} is neither a date (Y-M-D) nor a time (H:M[:S])"
            ));
        }
    }
    if tokens.is_empty() || (rest.is_empty() && tokens.len() != 1) {
        return Err("nothing to schedule".into());
    }
    if let Some(d) = date {
        check_date(d)?;
    }
    if let Some(t) = time {
        let parts: Vec<&str> = t.split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(format!(
                "{t:?}: a time is HOUR:MINUTE or HOUR:MINUTE:SECOND"
            ));
        }
        component(parts[0], "hour", 0, 23, false)?;
        component(parts[1], "minute", 0, 59, false)?;
        if let Some(s) = parts.get(2) {
            component(s, "second", 0, 59, true)?;
        }
    }
    Ok(())
}

fn is_zone(t: &str) -> bool {
    if t.eq_ignore_ascii_case("UTC") || t.eq_ignore_ascii_case("GMT") {
        return true;
    }
    let zoneinfo = Path::new("/usr/share/zoneinfo");
    let name_like = t.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
    if !name_like {
        return false;
    }
    if zoneinfo.is_dir() {
        zoneinfo.join(t).is_file()
    } else {
        t.contains('/')
    }
}

fn weekdays(spec: &str) -> std::result::Result<(), String> {
    for item in spec.split(',') {
        for day in item.split("..") {
            let d = day.to_ascii_lowercase();
            if d.len() < 3 || !DAYS.iter().any(|full| full.starts_with(&d)) {
                return Err(format!("{day:?} is not a weekday (Mon, Tue, ... Sun)"));
            }
        }
    }
    Ok(())
}

fn check_date(d: &str) -> std::result::Result<(), String> {
    // `~` counts days from the end of the month: `*-02~03`.
    let (ym, day) = match d.rsplit_once('~') {
        Some((a, b)) => (a, b),
        None => match d.rsplit_once('-') {
            Some((a, b)) => (a, b),
            None => return Err(format!("{d:?}: a date is [YEAR-]MONTH-DAY")),
        },
    };
    let parts: Vec<&str> = ym.split('-').collect();
    let (year, month) = match parts.as_slice() {
        [m] => (None, *m),
        [y, m] => (Some(*y), *m),
        _ => return Err(format!("{d:?}: a date is [YEAR-]MONTH-DAY")),
    };
    if let Some(y) = year {
        component(y, "year", 1970, 2199, false)?;
    }
    component(month, "month", 1, 12, false)?;
    component(day, "day", 1, 31, false)
}

/// `*`, `N`, `N..M`, each with an optional `/STEP`, comma-separated.
fn component(
    s: &str,
    what: &str,
    lo: u32,
    hi: u32,
    fraction: bool,
) -> std::result::Result<(), String> {
    let bad = || format!("{s:?} is not a {what} ({lo}..{hi}, *, lists, ranges, /steps)");
    let number = |n: &str| -> std::result::Result<(), String> {
        let whole = if fraction {
            n.split_once('.').map_or(n, |(w, f)| {
                if f.chars().all(|c| c.is_ascii_digit()) {
                    w
                } else {
                    "x"
                }
            })
        } else {
            n
        };
        match whole.parse::<u32>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(()),
            _ => Err(bad()),
        }
    };
    if s.is_empty() {
        return Err(bad());
    }
    for item in s.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, st)) => (r, Some(st)),
            None => (item, None),
        };
        if let Some(st) = step {
            match st.split_once('.').map_or(st, |(w, _)| w).parse::<u32>() {
                Ok(v) if v > 0 => {}
                _ => return Err(bad()),
            }
        }
        if range == "*" {
            continue;
        }
        for n in range.split("..") {
            number(n)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_forms() {
        for ok in [
            "hourly",
            "Daily",
            "daily UTC",
            "Mon",
            "Mon,Fri",
            "Mon..Fri 02:00",
            "2026-12-05",
            "*-*-* 02:00:00",
            "*-*-1,15 03:00",
            "12:00",
            "*:0/15",
            "*-*~01",
            "Sat *-*-1..7 18:00:00",
            "@1700000000",
            "*:*:0/30.5",
            "2003-03-05 05:40",
            "*-*-* 2:0",
            "02:00 Etc/UTC",
        ] {
            assert_eq!(parse(ok), Ok(()), "{ok}");
        }
        for bad in [
            "bogus",
            "25:00",
            "*-13-01",
            "Mon 2026",
            "1/2 12:00",
            "12:00:00:00",
            "@soon",
            "*:0/0",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        if Path::new("/usr/share/zoneinfo").is_dir() {
            assert!(parse("02:00 Bogus/Zone").is_err());
        }
    }

    #[test]
    fn refusal_names_the_flag() {
        let e = check("bogus").unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Usage);
        assert!(e.to_string().contains("--on-calendar"), "{e}");
        assert!(check("*:0/15").is_ok());
        assert!(check("hourly\nExecStart=/bin/sh").is_err());
    }
}
