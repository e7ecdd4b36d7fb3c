//! `lifeboat restore plan|apply|topology`: flags and printing; the work is in
//! [`crate::restore`].

use std::path::PathBuf;

use super::output::print_json;
use super::{Global, OutputFormat};
use crate::restore::apply::{apply, ApplyOptions, DataDirWriter};
use crate::restore::plan::{split_from, Plan};
use crate::restore::planner::{plan_restore, Bump, PlanFrom, PlanRequest, Planned};
use crate::restore::topology;
use crate::{Error, ExitCode};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a topology against a backup and write plan.json, RUNBOOK.md and one script
    /// per node.
    Plan(Box<PlanArgs>),
    /// Carry out one node's data steps of a plan on this machine.
    Apply(ApplyArgs),
    /// Print a starting topology file from a backup's member list, to edit.
    Topology(TopologyArgs),
    /// Restore a backup into a temporary dir, boot it in a throwaway local etcd, and check
    /// its hashkv and key count (exit 0: restores; 3: it does not).
    Test(TestArgs),
    /// Check the running restored cluster against the plan: every member answers with the
    /// plan's ids, one leader, and the revision, hashkv and key count the plan predicted
    /// (exit 0: the restore worked; 3: the data differ; 4: unhealthy).
    Check(super::restore_check::CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Backup to test: DEST[:ID] (ID defaults to latest).
    #[arg(long, value_name = "DEST[:ID]")]
    pub from: String,
    /// etcd server to boot (default: the release the backup was taken from, found on PATH
    /// or in ~/.cache/lifeboat/etcd-<version>/; else etcd on PATH).
    #[arg(long, value_name = "PATH")]
    pub etcd: Option<PathBuf>,
    /// Restore with this etcdutl (3.5) or etcdctl (3.4) instead of lifeboat's own writer.
    #[arg(long, value_name = "PATH")]
    pub etcdutl: Option<PathBuf>,
    /// Seconds the restored etcd may take to answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub start_timeout: u64,
    /// Point-in-time: test the restore to revision R (the newest backup at or below it plus
    /// the captured changes up to R) and compare its hashkv at R.
    #[arg(long, value_name = "R", conflicts_with = "etcdutl")]
    pub to_revision: Option<i64>,
    /// With --to-revision R: compact the captured changes at R-1 as they are replayed, as
    /// `restore plan --compact` does.
    #[arg(long, requires = "to_revision")]
    pub compact: bool,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Backup to restore: DEST[:ID] (ID defaults to latest).
    #[arg(
        long,
        value_name = "DEST[:ID]",
        required_unless_present_any = ["from_data_dir", "member"]
    )]
    pub from: Option<String>,
    /// `snapshot`: restore the whole cluster; `replace-member`: replace one broken member of
    /// a healthy cluster (no snapshot; live values from the cluster, --endpoints).
    #[arg(long, value_enum, default_value_t = PlanMode::Snapshot)]
    pub mode: PlanMode,
    /// With --mode replace-member: the member to replace.
    #[arg(long, value_name = "NAME")]
    pub member: Option<String>,
    /// No backup recent enough: restore from a surviving member's data dir (or its
    /// member/snap/db), best-ranked by `lifeboat check-member`. etcd's hash check is skipped.
    #[arg(long, value_name = "PATH", conflicts_with = "from")]
    pub from_data_dir: Option<PathBuf>,
    /// Topology file (TOML): the members of the restored cluster.
    #[arg(long, value_name = "FILE")]
    pub topology: PathBuf,
    /// Directory to write the plan into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Bump the revision by N (default 1000000000) and mark old revisions compacted (etcd
    /// 3.5.10+), so Kubernetes watchers relist. On by default when the backup holds
    /// `/registry/` keys.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1000000000",
          conflicts_with = "no_bump_revision")]
    pub bump_revision: Option<u64>,
    /// Do not bump the revision.
    #[arg(long)]
    pub no_bump_revision: bool,
    /// Replace a plan that exists in DIR.
    #[arg(long)]
    pub force: bool,
    /// Point-in-time recovery: restore to revision R, the newest full backup at or below it
    /// plus the changes `lifeboat capture` recorded up to R (with --from DEST: any backup of
    /// the newest backup's cluster; with DEST:ID, that backup).
    #[arg(long, value_name = "R", conflicts_with_all = ["to_time", "from_data_dir"])]
    pub to_revision: Option<i64>,
    /// Point-in-time recovery: restore to the newest captured revision at or before T
    /// (RFC 3339, e.g. 2026-12-06T01:30:00Z).
    #[arg(long, value_name = "T", conflicts_with = "from_data_dir")]
    pub to_time: Option<String>,
    /// With --to-revision or --to-time: compact at R-1 as the captured changes are
    /// replayed. The restored cluster has the state at R and serves reads and watches from
    /// R on, not older revisions; only each key's newest change is written, so a long
    /// window restores in the time of its live data instead of its whole history. Only the
    /// newest live hash recorded in the window is checked (the older ones describe history
    /// the compaction drops).
    #[arg(long)]
    pub compact: bool,
    #[command(flatten)]
    pub conn: super::connection::ConnectionArgs,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Plan directory (made by `restore plan`).
    #[arg(long, value_name = "DIR")]
    pub plan: PathBuf,
    /// This node's member name in the plan.
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// Print the steps without doing them.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the data dir with this etcdutl (3.5) or etcdctl (3.4) instead of lifeboat's own
    /// writer (implies --with-etcdutl).
    #[arg(long, value_name = "PATH")]
    pub etcdutl: Option<PathBuf>,
    /// Write the data dir with etcd's tool found on PATH (etcdutl for 3.5, etcdctl for 3.4)
    /// instead of lifeboat's own writer, the default, which needs no etcd tool on the host.
    #[arg(long)]
    pub with_etcdutl: bool,
    /// Stop the member's service before and start it after.
    #[arg(long, value_name = "KIND", value_enum)]
    pub manage_service: Option<ServiceManager>,
    /// Replace a data dir that another plan restored (it is moved aside, never deleted).
    /// A data dir a running etcd holds is refused all the same.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct TopologyArgs {
    /// Backup whose members to start from: DEST[:ID] (ID defaults to latest).
    #[arg(long, value_name = "DEST[:ID]")]
    pub from: String,
}

pub fn run(c: Command, g: &Global) -> anyhow::Result<ExitCode> {
    match c {
        Command::Plan(a) => plan(*a, g),
        Command::Apply(a) => run_apply(a, g),
        Command::Topology(a) => starting_topology(a, g),
        Command::Test(a) => restore_test(a, g),
        Command::Check(a) => super::restore_check::run(a, g),
    }
}

/// What `restore apply --manage-service` stops and starts the member with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceManager {
    // systemctl stop/start of the member's unit.
    Systemd,
}

/// What `restore plan` plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanMode {
    // The whole cluster from a backup (or a surviving member's db).
    Snapshot,
    // One broken member of a healthy cluster.
    ReplaceMember,
}

fn plan(a: PlanArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let t = topology::load(&a.topology)?;
    if a.mode == PlanMode::ReplaceMember {
        return replace_member(&a, &t, g);
    }
    let target = crate::restore::pitr::Target::from_flags(a.to_revision, a.to_time.as_deref())?;
    if a.compact && target.is_none() {
        return Err(Error::flag(
            "--compact",
            "compacts the captured changes a point-in-time restore replays: give --to-revision or --to-time with it",
        )
        .into());
    }
    let from = match (&a.from_data_dir, &a.from) {
        (Some(dir), _) => PlanFrom::DataDir {
            dir,
            access: &g.access,
        },
        (None, from) => {
            let (dest, id) = split_from(from.as_deref().unwrap_or_default());
            PlanFrom::Backup {
                repo: super::repository(dest, g)?,
                dest,
                id,
            }
        }
    };
    let bump = match (a.no_bump_revision, a.bump_revision) {
        (true, _) => Bump::Off,
        (false, Some(n)) => Bump::By(n),
        (false, None) => Bump::Auto,
    };
    let Planned { plan: p, files } = plan_restore(PlanRequest {
        topology: &t,
        topology_file: &a.topology,
        from,
        target,
        compact: a.compact,
        bump,
        out: &a.out,
        force: a.force,
    })?;
    match g.output {
        OutputFormat::Json => print_json(&p)?,
        OutputFormat::Text => {
            if !g.quiet {
                for w in &p.warnings {
                    eprintln!("lifeboat: warning: {w}");
                }
                println!(
                    "plan for backup {} (revision {}): new cluster {} with token {}",
                    p.backup_id, p.revision, p.cluster_id, p.cluster_token
                );
                if let (Some(r), Some(rp)) = (p.to_revision, &p.replay) {
                    println!(
                        "  point-in-time: {} captured records replayed up to revision {r} ({} live hashes matched)",
                        rp.records,
                        rp.live_hashes_checked.len()
                    );
                    if rp.compacted {
                        println!(
                            "  compacted at revision {}: {} superseded changes not written; revisions before it are not restored",
                            rp.compact_revision.unwrap_or(r - 1),
                            rp.compacted_away
                        );
                    }
                    if let Some(k) = &rp.edits {
                        println!(
                            "  what the replay wrote ({}, {} transaction{}) is kept in {}: copy it with the plan, and each node's apply commits it instead of reading the captured changes",
                            crate::units::human_bytes(k.bytes),
                            k.transactions,
                            if k.transactions == 1 { "" } else { "s" },
                            a.out.join(&k.file).display()
                        );
                    }
                }
                if let Ok(id) = crate::restore::guard::PlanId::load(&a.out, &p) {
                    println!("{id}");
                }
                for mem in &p.members {
                    println!("  {} member id {} on {}", mem.name, mem.member_id, mem.host);
                }
                for f in files {
                    println!("wrote {}", f.display());
                }
            }
        }
    }
    Ok(ExitCode::Ok)
}

fn run_apply(a: ApplyArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let p = Plan::load(&a.plan)?;
    let m = p.member(&a.node)?;
    let writer = if a.with_etcdutl || a.etcdutl.is_some() {
        DataDirWriter::for_member(m, a.etcdutl.as_deref())
    } else {
        DataDirWriter::Native
    };
    let opts = ApplyOptions {
        dry_run: a.dry_run,
        writer,
        manage_systemd: a.manage_service == Some(ServiceManager::Systemd),
        plan_id: crate::restore::guard::PlanId::load(&a.plan, &p)?,
        force: a.force,
        access: g.access.clone(),
        records: None,
        plan_dir: Some(a.plan.clone()),
    };
    let r = apply(&p, &a.node, &opts)?;
    match g.output {
        OutputFormat::Json => print_json(&r)?,
        OutputFormat::Text => {
            if !g.quiet {
                if r.already_restored {
                    println!("{}: {}", r.node, r.steps.join("; "));
                    return Ok(ExitCode::Ok);
                }
                let verb = if r.dry_run { "would" } else { "did" };
                println!("{} {verb}:", r.node);
                for s in &r.steps {
                    println!("  {s}");
                }
                if !r.dry_run {
                    println!(
                        "{}: {} holds member {} of cluster {} (backup {})",
                        r.node, r.data_dir, r.member_id, r.cluster_id, r.backup_id
                    );
                }
            }
        }
    }
    Ok(ExitCode::Ok)
}

fn starting_topology(a: TopologyArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let (dest, id) = split_from(&a.from);
    let m = super::repository(dest, g)?.resolve(id)?;
    print!("{}", crate::restore::topology::starting_topology(&m));
    Ok(ExitCode::Ok)
}

/// `, backed up from etcd 3.6.16` when the booted release is another than the backup's.
fn backed_up_from(r: &crate::restore::selftest::TestReport) -> String {
    if r.backup_etcd_version.is_empty() || r.backup_etcd_version == r.etcd_version {
        String::new()
    } else {
        format!(", backed up from etcd {}", r.backup_etcd_version)
    }
}

fn restore_test(a: TestArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let (dest, id) = split_from(&a.from);
    let repo = super::repository(dest, g)?;
    let target = crate::restore::pitr::Target::from_flags(a.to_revision, None)?;
    let chosen = crate::restore::pitr::choose_target(&repo, id, target, a.compact)?;
    let m = match &chosen {
        Some(c) => c.manifest.clone(),
        None => repo.resolve(id)?,
    };
    let rt = g.runtime()?;
    let r = crate::restore::selftest::restore_test(
        &repo,
        &m,
        &crate::restore::selftest::TestOptions {
            etcd: a.etcd,
            etcdutl: a.etcdutl,
            start_timeout: std::time::Duration::from_secs(a.start_timeout),
            runtime: rt.handle(),
            replay: chosen.as_ref(),
            records: None,
        },
    )?;
    match g.output {
        OutputFormat::Json => print_json(&r)?,
        OutputFormat::Text => {
            if r.ok {
                if !g.quiet {
                    println!(
                        "backup {} restores: etcd {} started ({}{}), hashkv {} at revision {}, {} keys ({:.1} s)",
                        r.id,
                        r.etcd_version,
                        r.etcd_path,
                        backed_up_from(&r),
                        r.hashkv.map_or("-".into(), |h| h.to_string()),
                        r.revision,
                        r.keys.unwrap_or(0),
                        r.seconds
                    );
                    if r.auth_enabled {
                        println!(
                            "auth enabled: {} user(s) ({}), {} role(s) ({}); the sandbox ran its copy with auth off",
                            r.users.len(),
                            r.users.join(", "),
                            r.roles.len(),
                            r.roles.join(", ")
                        );
                    }
                }
            } else {
                eprintln!(
                    "lifeboat: error: backup {} does not restore cleanly on etcd {} ({}{}): {}",
                    r.id,
                    r.etcd_version,
                    r.etcd_path,
                    backed_up_from(&r),
                    r.problems.join("; ")
                );
            }
        }
    }
    Ok(if r.ok {
        ExitCode::Ok
    } else {
        ExitCode::Integrity
    })
}

fn replace_member(a: &PlanArgs, t: &topology::Topology, g: &Global) -> anyhow::Result<ExitCode> {
    let name = a.member.as_deref().ok_or_else(|| Error::Flag {
        flag: "--member".into(),
        message: "--mode replace-member needs --member NAME (the broken member)".into(),
    })?;
    let cfg = a.conn.to_config(&g.layers)?;
    let rt = g.runtime()?;
    let view = rt.block_on(crate::live::gather::gather(&cfg, false))?;
    let p = crate::restore::replace::replace_plan(&view, t, name)?;
    let files = crate::restore::replace::write_replace(&p, t, &cfg, &a.out)?;
    match g.output {
        OutputFormat::Json => print_json(&p)?,
        OutputFormat::Text => {
            if !g.quiet {
                println!(
                    "replace member {} ({}) of cluster {} through {}",
                    p.member, p.old_member_id, p.cluster_id, p.healthy_endpoint
                );
                for f in files {
                    println!("wrote {}", f.display());
                }
            }
        }
    }
    Ok(ExitCode::Ok)
}
