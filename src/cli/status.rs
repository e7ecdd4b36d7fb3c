use super::connection::{runtime, ConnectionArgs};
use super::{Global, OutputFormat};
use crate::member::doctor::{self, strip_scheme, Level, Limits, PeerProbe};
use crate::source::etcd::ConnectConfig;
use crate::source::etcd::{survey, ClusterView, EndpointStatus};
use crate::ExitCode;

/// Live cluster doctor: the health checks operators run by hand, in one command.
///
/// Asks every endpoint (and every member the member list names, unless --endpoints-only)
/// for its status, member list and alarms, then checks: all members reachable, quorum,
/// one leader, the same raft term, raft index lag, the same member list and cluster id
/// everywhere, db size against the quota and free space, alarms, version skew, learners.
/// Each problem comes with the remedy.
///
/// Exit status: 0 healthy; 4 unhealthy (a member unreachable, no leader, quorum lost,
/// disagreeing members, an alarm, a db over its quota); 1 when no endpoint answers at all;
/// 2 for bad flags.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Checks: members reachable, quorum, one leader and one raft term, raft index lag, the same member
list and cluster id on every endpoint, db size against --quota-bytes and free space, alarms
(NOSPACE, CORRUPT), version skew, learners. Each problem is printed with its remedy.

Exit status: 0 healthy; 4 unhealthy; 1 when no endpoint answers at all; 2 for bad flags.")]
pub struct Args {
    #[command(flatten)]
    conn: ConnectionArgs,
    /// The members' --quota-backend-bytes (etcd's default is 2 GiB; 64M-style suffixes).
    #[arg(long, value_name = "BYTES", default_value_t = doctor::DEFAULT_QUOTA, value_parser = crate::config::parse_size)]
    quota_bytes: u64,
    /// Raft entries behind the leader before a member counts as lagging.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    lag_entries: u64,
    /// Ask only the given endpoints, not the other members' client URLs.
    #[arg(long)]
    endpoints_only: bool,
}

async fn gather(cfg: &ConnectConfig, endpoints_only: bool) -> crate::Result<ClusterView> {
    let mut view = survey(cfg).await?;
    if endpoints_only {
        return Ok(view);
    }
    let asked: Vec<String> = cfg
        .endpoints
        .iter()
        .map(|e| strip_scheme(e).to_string())
        .collect();
    let mut extra: Vec<String> = Vec::new();
    for m in &view.members {
        // One URL per member is enough; skip members already asked through any of theirs.
        if m.client_urls
            .iter()
            .any(|u| asked.iter().any(|a| a == strip_scheme(u)))
        {
            continue;
        }
        if let Some(u) = m.client_urls.first() {
            extra.push(u.clone());
        }
    }
    if extra.is_empty() {
        return Ok(view);
    }
    let mut more = cfg.clone();
    more.endpoints = extra.clone();
    match survey(&more).await {
        Ok(v) => {
            view.endpoints.extend(v.endpoints);
            if view.alarms.is_empty() {
                view.alarms = v.alarms;
            }
        }
        Err(e) => {
            for ep in extra {
                view.endpoints
                    .push(EndpointStatus::unreachable(&ep, e.to_string()));
            }
        }
    }
    Ok(view)
}

/// Probe the first peer URL of every member no endpoint speaks for (field notes §4: is 2380
/// reachable?), concurrently, each bounded by the dial timeout.
async fn probe_peers(view: &ClusterView, timeout: std::time::Duration) -> Vec<PeerProbe> {
    let mut set = tokio::task::JoinSet::new();
    for m in &view.members {
        if view
            .endpoints
            .iter()
            .any(|s| s.reachable && s.member_id == m.id)
        {
            continue;
        }
        let Some(url) = m.peer_urls.first().cloned() else {
            continue;
        };
        let id = m.id;
        set.spawn(async move {
            let addr = strip_scheme(&url)
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let error =
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!("i/o timeout after {timeout:?}")),
                };
            PeerProbe {
                member_id: id,
                url,
                error,
            }
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(p) = r {
            out.push(p);
        }
    }
    out
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let cfg = args.conn.to_config()?;
    let rt = runtime()?;
    let view = rt.block_on(gather(&cfg, args.endpoints_only))?;
    let probes = rt.block_on(probe_peers(&view, cfg.dial_timeout));
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
        OutputFormat::Text => print_text(&report),
    }
    Ok(if report.healthy {
        ExitCode::Ok
    } else {
        ExitCode::Unhealthy
    })
}

fn print_text(r: &doctor::Report) {
    use super::output::human_bytes;
    println!(
        "cluster {}  leader {}  {}",
        r.cluster_id.clone().unwrap_or_else(|| "?".into()),
        r.leader.clone().unwrap_or_else(|| "none".into()),
        if r.healthy { "HEALTHY" } else { "UNHEALTHY" }
    );
    println!(
        "{:<18} {:<10} {:<28} {:>6} {:>10} {:>8} {:>10} {:>10} {:>6}  VERSION",
        "MEMBER", "NAME", "ENDPOINT", "TERM", "INDEX", "LAG", "DB", "IN USE", "QUOTA"
    );
    for m in &r.members {
        if !m.reachable {
            println!(
                "{:<18} {:<10} {:<28} UNREACHABLE {}",
                m.id,
                m.name,
                m.endpoint.clone().unwrap_or_default(),
                m.error.clone().unwrap_or_default()
            );
            continue;
        }
        let mut id = m.id.clone();
        if m.is_leader {
            id.push('*');
        }
        if m.is_learner {
            id.push_str(" (L)");
        }
        println!(
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
        );
    }
    if !r.alarms.is_empty() {
        println!("alarms: {}", r.alarms.join(", "));
    }
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
    }
}
