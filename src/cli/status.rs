use super::connection::ConnectionArgs;
use super::{Global, OutputFormat};
use crate::live::doctor::{self, Level, Limits, MemberRow, Report};
use crate::live::{gather, probe_peers, read_quotas};
use crate::units::human_bytes;
use crate::ExitCode;

/// Live cluster doctor: the health checks operators run by hand, in one command.
///
/// Asks every endpoint (and every member the member list names, unless --endpoints-only)
/// for its status, member list and alarms, then checks: all members reachable, quorum,
/// one leader, the same raft term, raft index lag, the same member list and cluster id
/// everywhere, db size against the quota and free space, alarms, version skew, learners.
/// Each problem comes with the commands to run and a section of docs/cluster-health.md.
///
/// Exit status: 0 healthy; 4 unhealthy (a member unreachable, no leader, quorum lost,
/// disagreeing members, an alarm, a db over its quota); 1 when no endpoint answers at all;
/// 2 for bad flags.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Checks: members reachable, quorum, one leader and one raft term, raft index lag, the same member
list and cluster id on every endpoint (an endpoint of another cluster is named), db size against
the quota (--quota-bytes, else each member's /metrics) and free space, alarms
(NOSPACE, CORRUPT), version skew, learners. Each problem is printed with the commands to run\nand the section of docs/cluster-health.md that explains it.

Exit status: 0 healthy; 4 unhealthy; 1 when no endpoint answers at all; 2 for bad flags.")]
pub struct Args {
    #[command(flatten)]
    conn: ConnectionArgs,
    /// The members' --quota-backend-bytes (64M-style suffixes). Default: what each member's
    /// /metrics says (etcd_server_quota_backend_bytes), else etcd's default 2 GiB.
    #[arg(long, value_name = "BYTES", value_parser = crate::config::parse_size)]
    quota_bytes: Option<u64>,
    /// Raft entries behind the leader before a member counts as lagging.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    lag_entries: u64,
    /// Ask only the given endpoints, not the other members' client URLs.
    #[arg(long)]
    endpoints_only: bool,
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let cfg = args.conn.to_config(&g.layers)?;
    let rt = g.runtime()?;
    let mut view = rt.block_on(gather(&cfg, args.endpoints_only))?;
    let quota_error = match args.quota_bytes {
        Some(_) => None,
        None => rt.block_on(read_quotas(&mut view, &cfg)),
    };
    let probes = rt.block_on(probe_peers(&view, &cfg));
    let report = doctor::diagnose_with(
        &view,
        Limits {
            quota_bytes: args.quota_bytes,
            lag_entries: args.lag_entries,
            ..Limits::default()
        },
        &probes,
    );
    match g.output {
        OutputFormat::Json => super::output::print_json(&report)?,
        OutputFormat::Text => print_text(&report, quota_error.as_deref()),
    }
    Ok(if report.healthy {
        ExitCode::Ok
    } else {
        ExitCode::Unhealthy
    })
}

fn print_text(r: &Report, quota_error: Option<&str>) {
    println!("{}", header(r));
    println!(
        "{:<18} {:<10} {:<28} {:>6} {:>10} {:>8} {:>10} {:>10} {:>6}  VERSION",
        "MEMBER", "NAME", "ENDPOINT", "TERM", "INDEX", "LAG", "DB", "IN USE", "QUOTA"
    );
    for m in &r.members {
        println!("{}", member_line(m));
    }
    let from = match r.quota_source {
        "flag" => "--quota-bytes".to_string(),
        "metrics" => "etcd_server_quota_backend_bytes on the members' /metrics".to_string(),
        _ => format!(
            "etcd's default; /metrics did not say{}: give --quota-bytes",
            quota_error.map(|e| format!(" ({e})")).unwrap_or_default()
        ),
    };
    println!("quota: {} ({from})", human_bytes(r.quota_bytes));
    if !r.alarms.is_empty() {
        println!("alarms: {}", r.alarms.join(", "));
    }
    print_findings(r);
}

/// `cluster ID  leader ID  HEALTHY`; without a leader, what is known instead: the last
/// leader the survivors followed, and the quorum arithmetic.
fn header(r: &Report) -> String {
    let cluster = r.cluster_id.map_or_else(|| "?".into(), |c| c.to_string());
    let verdict = if r.healthy { "HEALTHY" } else { "UNHEALTHY" };
    let q = &r.quorum;
    let leader = match (&r.leader, &r.last_known_leader) {
        (Some(l), _) => format!("leader {l}"),
        (None, Some(last)) => format!(
            "no leader (last known leader {} ({}) at raft term {})",
            last.id, last.name, last.raft_term
        ),
        (None, None) => "no leader".to_string(),
    };
    let quorum = if q.voters == 0 {
        String::new()
    } else {
        format!(
            "  {} of {} members answer; {} needed for quorum",
            q.alive, q.voters, q.needed
        )
    };
    format!("cluster {cluster}  {leader}{quorum}  {verdict}")
}

fn member_line(m: &MemberRow) -> String {
    if !m.reachable {
        let other = m
            .other_cluster_id
            .as_ref()
            .map(|c| format!("; its peer URL answers for OTHER CLUSTER {c}"))
            .unwrap_or_default();
        return format!(
            "{:<18} {:<10} {:<28} UNREACHABLE {}{other}",
            m.id,
            m.name,
            m.endpoint.clone().unwrap_or_default(),
            m.error.clone().unwrap_or_default()
        );
    }
    if let Some(other) = &m.other_cluster_id {
        return format!(
            "{:<18} {:<10} {:<28} OTHER CLUSTER {other} (raft term {}, index {}, {})",
            m.id,
            m.name,
            m.endpoint.clone().unwrap_or_default(),
            m.raft_term,
            m.raft_index,
            m.version
        );
    }
    let mut id = m.id.to_string();
    if m.is_leader {
        id.push('*');
    }
    if m.is_learner {
        id.push_str(" (L)");
    }
    format!(
        "{:<18} {:<10} {:<28} {:>6} {:>10} {:>8} {:>10} {:>10} {:>5.1}%  {}",
        id,
        m.name,
        m.endpoint.clone().unwrap_or_default(),
        m.raft_term,
        m.raft_index,
        m.lag.map(|l| l.to_string()).unwrap_or_default(),
        human_bytes(m.db_size),
        human_bytes(m.db_size_in_use),
        m.quota_used_pct,
        m.version
    )
}

fn print_findings(r: &Report) {
    if r.findings.is_empty() {
        println!("no problems found");
    }
    for f in &r.findings {
        let l = match f.level {
            Level::Error => "ERROR",
            Level::Warning => "warning",
            Level::Info => "info",
        };
        println!("[{l}] {}", f.message);
        println!("        fix: {}", f.remedy);
        println!("        see: {}", f.doc);
    }
}
