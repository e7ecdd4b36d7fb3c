use std::path::PathBuf;

use serde::Serialize;

use super::{Global, OutputFormat};
use crate::member::{self, rank, MemberReport, Severity, Verdict};
use crate::units::human_bytes;
use crate::ExitCode;

/// Offline verdict on member data dirs: WAL, snap files and db, as etcd 3.5 would see them.
///
/// For each dir: `healthy`, `torn-tail` (etcd repairs it by itself by cutting the last WAL
/// file; what is lost is printed), `corrupt-wal`, `corrupt-snap`, `corrupt-db`, `missing`,
/// `unreadable` (this user may not read it) or `running` (a live etcd holds it),
/// the first bad record (file, byte offset of its length field, record number, raft index),
/// whether etcd will start, and the next steps. With several dirs, they are ranked by
/// committed index and term: the survivor to copy the db from.
///
/// Exit status: 3 if any dir is corrupt (corrupt-wal, corrupt-snap or corrupt-db);
/// otherwise 1 if any dir is missing, unreadable or held by a running etcd; otherwise 0
/// (healthy and torn-tail: etcd starts).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Verdicts: healthy, torn-tail (etcd cuts the torn end of the WAL itself; what is lost is printed),
corrupt-wal, corrupt-snap, corrupt-db, missing, unreadable (permission denied: run as the etcd user
or root), running (a live etcd holds the dir: stop it first, or use `lifeboat status`). Each comes
with the first bad record (file, byte offset of its length field, record number, raft index),
whether etcd will start, and next steps linking docs/member-recovery.md. With several dirs they are
ranked: the survivor with the newest data first.

Exit status: 3 if any dir is corrupt (corrupt-wal, corrupt-snap, corrupt-db); otherwise 1 if any
dir is missing, unreadable or running; otherwise 0 (healthy and torn-tail).")]
pub struct Args {
    /// Member data dirs (etcd's --data-dir; a `member` dir itself is accepted too).
    #[arg(required = true, value_name = "DATA_DIR")]
    data_dirs: Vec<PathBuf>,
    /// The WAL directory when it is not DATA_DIR/member/wal (etcd's --wal-dir); only with a
    /// single DATA_DIR.
    #[arg(long, value_name = "DIR")]
    wal_dir: Option<PathBuf>,
    /// Check only the db's meta pages and etcd's small buckets, not every page (faster on a
    /// big db).
    #[arg(long)]
    quick: bool,
}

#[derive(Serialize)]
struct Out<'a> {
    members: &'a [MemberReport],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ranking: Vec<rank::Ranked>,
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    if args.wal_dir.is_some() && args.data_dirs.len() > 1 {
        return Err(crate::Error::Usage("--wal-dir needs exactly one DATA_DIR".into()).into());
    }
    let opts = member::Options {
        db_walk: !args.quick,
    };
    let reports = member::check_dirs(&args.data_dirs, args.wal_dir.as_deref(), opts);
    let ranking = if reports.len() > 1 {
        rank::rank(&reports)
    } else {
        Vec::new()
    };
    match g.output {
        OutputFormat::Json => super::output::print_json(&Out {
            members: &reports,
            ranking,
        })?,
        OutputFormat::Text => print_text(&reports, &ranking),
    }
    let code = if reports.iter().any(|r| r.verdict.is_corrupt()) {
        ExitCode::Integrity
    } else if reports.iter().any(|r| !r.verdict.was_judged()) {
        ExitCode::Failed
    } else {
        ExitCode::Ok
    };
    Ok(code)
}

fn print_text(reports: &[MemberReport], ranking: &[rank::Ranked]) {
    for r in reports {
        println!("{}: {}", r.data_dir, r.verdict.as_str().to_uppercase());
        if let (Some(m), Some(c)) = (&r.member_id, &r.cluster_id) {
            println!("  member {m}, cluster {c}");
        }
        if r.verdict.was_judged() {
            print_facts(r);
        }
        print_problems(r);
        println!("  next:");
        for s in &r.next_steps {
            println!("    {s}");
        }
        println!();
    }
    print_ranking(ranking);
}

/// What etcd will do and what the dir holds.
fn print_facts(r: &MemberReport) {
    println!(
        "  etcd {}",
        if r.etcd_starts {
            "will start".to_string()
        } else {
            format!(
                "will NOT start ({})",
                r.etcd_error.clone().unwrap_or_default()
            )
        }
    );
    println!(
        "  raft: last index {} (term {}), commit {}, term {}, vote {:x}",
        r.last_index, r.last_term, r.commit, r.hard_state.term, r.hard_state.vote
    );
    println!(
        "  snapshot: {}",
        match &r.snapshot_file {
            Some(f) => format!("{f} (index {}, term {})", r.snapshot.index, r.snapshot.term),
            None => "none (WAL replayed from the start)".into(),
        }
    );
    println!(
        "  WAL: {} segment(s), {} records, {} entries, {}{}",
        r.wal_segments.len(),
        r.wal_records,
        r.wal_entries,
        human_bytes(r.wal_bytes),
        if r.overwritten_entries > 0 {
            format!(", {} overwritten by a later leader", r.overwritten_entries)
        } else {
            String::new()
        }
    );
    if !r.voters.is_empty() {
        println!(
            "  voters: {}",
            r.voters
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(db) = &r.db {
        println!(
            "  db: {}{}",
            human_bytes(db.size),
            db.txid.map(|t| format!(", txid {t}")).unwrap_or_default()
        );
    }
}

/// Each problem on one line, then what is lost.
fn print_problems(r: &MemberReport) {
    for p in &r.problems {
        let sev = match p.severity {
            Severity::Fatal => "FATAL",
            Severity::Repaired => "repaired by etcd",
            Severity::Warning => "warning",
        };
        println!("  [{sev}] {}", p.located());
    }
    if let Some(l) = &r.lost {
        if r.verdict != Verdict::Healthy {
            println!(
                "  lost: {}{} entries{}",
                if l.complete { "" } else { "at least " },
                l.entries,
                match (l.first_index, l.last_index) {
                    (Some(a), Some(b)) => format!(" (indexes {a}..{b})"),
                    _ => String::new(),
                }
            );
        }
    }
}

fn print_ranking(ranking: &[rank::Ranked]) {
    if ranking.is_empty() {
        return;
    }
    println!("Survivors, newest committed data first:");
    for k in ranking {
        println!(
            "  {}. {}  db applied {} commit {} term {} last {}/{}  {}  {}",
            k.rank,
            k.data_dir,
            k.db_consistent_index
                .map(|c| c.to_string())
                .unwrap_or_else(|| "?".into()),
            k.commit,
            k.term,
            k.last_term,
            k.last_index,
            k.verdict.as_str(),
            k.note
        );
    }
    println!("  (restoring from the first: docs/member-recovery.md#quorum-lost)");
}
