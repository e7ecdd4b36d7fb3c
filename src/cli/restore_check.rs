//! `lifeboat restore check --plan DIR`: flags and printing; the work is in
//! [`crate::restore::check`].

use std::path::PathBuf;

use super::connection::ConnectionArgs;
use super::output::print_json;
use super::{Global, OutputFormat};
use crate::restore::check::{check, CheckReport};
use crate::restore::plan::Plan;
use crate::{Error, ExitCode};

/// Check the running restored cluster against its plan: the proof that the restore worked.
///
/// Asks every member of the plan at its client URL: it answers with the plan's member id
/// and cluster id, exactly one leader, and the revision, hashkv (at the current revision)
/// and key count the plan predicted from the backup, equal on every member. Give the
/// cluster's TLS files and, with auth on, a user that may read every key (root).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 the restore worked; 3 the data differ (revision, hashkv or key count not the
plan's prediction, or members that disagree); 4 the cluster is unhealthy or not the plan's (a
member does not answer, a member or cluster id that is not the plan's, not exactly one
leader); 2 for bad flags or a refused --user.")]
pub struct CheckArgs {
    /// Plan directory (made by `restore plan`).
    #[arg(long, value_name = "DIR")]
    pub plan: PathBuf,
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

pub fn run(a: CheckArgs, g: &Global) -> anyhow::Result<ExitCode> {
    if a.conn.endpoints.is_some() {
        return Err(Error::flag(
            "--endpoints",
            "restore check asks each member at its client URL in plan.json: drop --endpoints",
        )
        .into());
    }
    let p = Plan::load(&a.plan)?;
    let cfg = a.conn.to_config(&g.layers)?;
    let rt = g.runtime()?;
    let r = rt.block_on(check(&p, &cfg))?;
    match g.output {
        OutputFormat::Json => print_json(&r)?,
        OutputFormat::Text => print_text(&r, g.quiet),
    }
    Ok(if r.unhealthy {
        ExitCode::Unhealthy
    } else if !r.ok {
        ExitCode::Integrity
    } else {
        ExitCode::Ok
    })
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn print_text(r: &CheckReport, quiet: bool) {
    if r.ok {
        if !quiet {
            println!(
                "restore check: OK: cluster {} from backup {}: {} members with the plan's ids, leader {}, revision {}, hashkv {} on every member as predicted, {} keys",
                r.cluster_id,
                r.backup_id,
                r.members.len(),
                r.leader.as_deref().unwrap_or("-"),
                opt(r.revision),
                opt(r.hashkv),
                opt(r.keys)
            );
        }
        return;
    }
    println!(
        "restore check: {}: cluster {} from backup {}",
        r.verdict.to_uppercase(),
        r.cluster_id,
        r.backup_id
    );
    for m in &r.members {
        let state = if m.ok { "ok" } else { "PROBLEM" };
        println!(
            "  {:<10} {:<8} member {} cluster {} at {}{}: revision {} hashkv {} keys {}",
            m.name,
            state,
            m.member_id,
            m.cluster_id.map_or("-".into(), |c| c.to_string()),
            m.endpoint,
            if m.is_leader { " (leader)" } else { "" },
            opt(m.revision),
            opt(m.hashkv),
            opt(m.keys)
        );
        for p in &m.problems {
            eprintln!("lifeboat: error: {}: {p}", m.name);
        }
    }
    println!(
        "  predicted: revision {} hashkv {}{} keys {}",
        opt(r.revision_expected),
        opt(r.hashkv_expected),
        r.hashkv_while_compacting.map_or(String::new(), |w| format!(
            " (or {w} while a member runs the compaction it resumed)"
        )),
        opt(r.keys_expected)
    );
    for p in &r.problems {
        eprintln!("lifeboat: error: {p}");
    }
}
