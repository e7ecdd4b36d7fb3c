use super::output::{human_bytes, print_json};
use super::{Global, OutputFormat};
use crate::catalog::Manifest;
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub from: super::flags::FromArgs,
    /// List the point-in-time recovery windows `lifeboat capture` recorded instead of the
    /// backups (with -o json: an array of windows).
    #[arg(long)]
    pub capture: bool,
}

/// A few lines about one backup, for people.
pub fn describe(m: &Manifest) -> String {
    let ratio = if m.stored_size > 0 {
        m.db_size as f64 / m.stored_size as f64
    } else {
        0.0
    };
    let mut s = format!(
        "id:            {}\ncreated:       {}\ncluster:       {}\nrevision:      {}\nraft:          term {}, index {}\nsource:        {} ({}) at {}: {}\netcd version:  {}\ndatabase:      {} ({} bytes), sha256 {}\nstored:        {} ({:.1}x zstd), sha256 {}\nmembers:       {}\n",
        m.id,
        m.created_at,
        m.cluster_id,
        m.revision,
        m.raft_term,
        m.raft_index,
        m.source_member.name,
        m.source_member.id,
        m.source_member.endpoint,
        m.source_member.reason,
        m.etcd_version,
        human_bytes(m.db_size),
        m.db_size,
        m.db_sha256,
        human_bytes(m.stored_size),
        ratio,
        m.stored_sha256,
        m.members
            .iter()
            .map(|x| format!("{} ({})", x.name, x.id))
            .collect::<Vec<_>>()
            .join(", "),
    );
    s.push_str(&format!("encryption:    {}\n", encryption(m)));
    for a in &m.alarms {
        s.push_str(&format!("alarm:         {} on {}\n", a.alarm, a.member_id));
    }
    for w in &m.warnings {
        s.push_str(&format!("warning:       {w}\n"));
    }
    s
}

/// `none`, or `age, to age1qyqszqgpqyqs… (an identity for one of them opens it)`.
fn encryption(m: &Manifest) -> String {
    if !is_encrypted(m) {
        return "none".into();
    }
    let short: Vec<String> = m
        .recipients
        .iter()
        .map(|r| {
            if r.chars().count() > 24 {
                format!("{}…", r.chars().take(20).collect::<String>())
            } else {
                r.clone()
            }
        })
        .collect();
    if short.is_empty() {
        return format!("{} (encrypted)", m.encryption);
    }
    format!(
        "{}, to {} (--identity with a key of {} opens it)",
        m.encryption,
        short.join(", "),
        if short.len() == 1 {
            "it"
        } else {
            "one of them"
        }
    )
}

fn is_encrypted(m: &Manifest) -> bool {
    !m.encryption.is_empty() && m.encryption != "none"
}

pub fn run(a: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let repo = super::repository(&a.from.from, g)?;
    let (backups, bad) = repo.list()?;
    for b in &bad {
        eprintln!("lifeboat: warning: {} (not listed)", b.error);
    }
    if a.capture {
        let windows = crate::catalog::capture::capture_windows(repo.store(), &backups)?;
        match g.output {
            OutputFormat::Json => print_json(&windows)?,
            OutputFormat::Text if windows.is_empty() => {
                if !g.quiet {
                    eprintln!("no capture segments in {}", repo.location());
                }
            }
            OutputFormat::Text => print_windows(&windows),
        }
        return Ok(ExitCode::Ok);
    }
    match g.output {
        OutputFormat::Json => print_json(&backups)?,
        OutputFormat::Text => {
            if backups.is_empty() {
                if !g.quiet {
                    eprintln!("no complete backups in {}", repo.location());
                }
                return Ok(ExitCode::Ok);
            }
            // The object-lock column only where some backup is locked.
            let locked = backups.iter().any(|m| m.retain_until.is_some());
            let lock_col = |v: &str| {
                if locked {
                    format!("  {v}")
                } else {
                    String::new()
                }
            };
            // The encryption column only where some backup is encrypted.
            let encrypted = backups.iter().any(is_encrypted);
            let enc_col = |m: Option<&Manifest>| match (encrypted, m) {
                (false, _) => String::new(),
                (true, None) => format!("  {:<9}", "ENCRYPTED"),
                (true, Some(m)) if is_encrypted(m) => format!("  {:<9}", m.encryption),
                (true, Some(_)) => format!("  {:<9}", "no"),
            };
            let header = format!(
                "{:<42} {:>10} {:>10} {:>10}  {:<10} {:<30}{}{}",
                "ID",
                "REVISION",
                "DB",
                "STORED",
                "SOURCE",
                "CREATED",
                enc_col(None),
                lock_col("RETAIN-UNTIL")
            );
            println!("{}", header.trim_end());
            for m in &backups {
                let line = format!(
                    "{:<42} {:>10} {:>10} {:>10}  {:<10} {:<30}{}{}",
                    m.id,
                    m.revision,
                    human_bytes(m.db_size),
                    human_bytes(m.stored_size),
                    m.source_member.name,
                    m.created_at,
                    enc_col(Some(m)),
                    lock_col(m.retain_until.as_deref().unwrap_or("-"))
                );
                println!("{}", line.trim_end());
            }
        }
    }
    Ok(ExitCode::Ok)
}

/// The capture windows as a table, a gap line after a window that has one.
fn print_windows(windows: &[crate::catalog::capture::CaptureWindow]) {
    println!(
        "{:<16} {:<42} {:>14} {:>14}  {:<30} {:>8}",
        "CLUSTER", "FROM-BACKUP", "FROM-REVISION", "TO-REVISION", "TO-TIME", "SEGMENTS"
    );
    for w in windows {
        println!(
            "{:<16} {:<42} {:>14} {:>14}  {:<30} {:>8}",
            w.cluster_id,
            w.from_backup.as_deref().unwrap_or("(no backup)"),
            w.from_revision,
            w.to_revision,
            w.to_time,
            w.segments
        );
        if let Some([a, b]) = w.gap_after {
            println!(
                "{:<16} gap: revisions {a}..{b} were not captured",
                w.cluster_id
            );
        }
    }
}
