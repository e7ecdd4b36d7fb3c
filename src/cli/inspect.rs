//! `lifeboat inspect FILE|DEST:ID`: offline report on a snapshot, a member's db or a backup.

use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;

use super::output::{human_bytes, print_json};
use super::{Global, OutputFormat};
use crate::format::etcd::report::{K8sSummary, Report, ReportOptions};
use crate::offline::{self, Inspection, LiveHash, OpenOptions};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// An etcdctl snapshot (with or without its SHA-256 trailer), a raw member/snap/db (or
    /// the data dir holding it), a lifeboat backup file, or DEST:ID (ID may be `latest`).
    pub input: String,
    #[command(flatten)]
    pub rev: super::flags::RevArgs,
    /// Also ask the live cluster (--endpoints) for its hashkv at that revision and compare.
    #[arg(long)]
    pub compare_live: bool,
    /// Kubernetes summary: keys and bytes per /registry/<resource>, largest objects.
    #[arg(long)]
    pub k8s: bool,
    /// With --k8s: keys and bytes per namespace too.
    #[arg(long, requires = "k8s")]
    pub by_namespace: bool,
    /// How many of the largest keys (and objects, with --k8s) to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    #[command(flatten)]
    pub live: super::flags::CopyLiveArgs,
    /// List at most this many problems (the rest are counted).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_problems: usize,
    #[command(flatten)]
    pub conn: super::connection::ConnectionArgs,
}

#[derive(Debug, Serialize)]
struct Out<'a> {
    #[serde(flatten)]
    inspection: &'a Inspection,
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<&'a Vec<LiveHash>>,
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let input = offline::open_input(
        &args.input,
        &OpenOptions {
            force: args.live.copy_live,
            access: g.access.clone(),
        },
    )?;
    let opts = ReportOptions {
        hashkv_rev: args.rev.rev,
        k8s: args.k8s,
        by_namespace: args.by_namespace,
        top: args.top,
        max_problems: args.max_problems.max(1),
    };
    if args.rev.rev < 0 {
        return Err(crate::Error::Usage("--rev must be >= 0".into()).into());
    }
    let ins = offline::inspect(&input, &opts);
    if args.rev.rev > 0 {
        if let Some(e) = &ins.report.hashkv_error {
            return Err(crate::Error::Usage(format!("--rev {}: {e}", args.rev.rev)).into());
        }
    }
    let live = if args.compare_live {
        let cfg = args.conn.to_config(&g.layers)?;
        let rt = g.runtime()?;
        Some(rt.block_on(offline::compare_live(&cfg, &input, &ins.report))?)
    } else {
        None
    };
    match g.output {
        OutputFormat::Json => print_json(&Out {
            inspection: &ins,
            live: live.as_ref(),
        })?,
        OutputFormat::Text => print_text(&ins, live.as_deref(), &args)?,
    }
    if !ins.report.ok {
        return Ok(ExitCode::Integrity);
    }
    if let Some(l) = &live {
        if l.iter().any(|h| h.error.is_some()) {
            return Ok(ExitCode::Failed);
        }
        if l.iter().any(|h| !h.matches) {
            return Ok(ExitCode::Integrity);
        }
    }
    Ok(ExitCode::Ok)
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|v| v.to_string())
        .unwrap_or_else(|| "none".into())
}

/// The text report, section by section; problems last, where the eye ends.
fn print_text(ins: &Inspection, live: Option<&[LiveHash]>, args: &Args) -> anyhow::Result<()> {
    let r = &ins.report;
    let mut o = String::new();
    text_verdict(&mut o, ins)?;
    if r.opened {
        text_state(&mut o, r)?;
        text_buckets(&mut o, r)?;
        if let Some(k) = &r.k8s {
            text_k8s(&mut o, k, args.top)?;
        }
        if let Some(l) = live {
            text_live(&mut o, r.hashkv_revision, l)?;
        }
    }
    text_problems(&mut o, r)?;
    emit(&o)
}

/// What was read, its digest, and the verdict.
fn text_verdict(o: &mut String, ins: &Inspection) -> std::fmt::Result {
    let r = &ins.report;
    let kind = match ins.input_kind {
        offline::InputKind::Snapshot => "etcdctl snapshot",
        offline::InputKind::Db => "bbolt db",
        offline::InputKind::Backup => "lifeboat backup",
    };
    writeln!(
        o,
        "Input          {} ({kind}, {} bytes)",
        ins.input, ins.file_size
    )?;
    if let Some(d) = &ins.digest {
        writeln!(
            o,
            "Digest         SHA-256 {} ({})",
            if d.ok { "matches" } else { "MISMATCH" },
            d.source
        )?;
    } else if ins.input_kind == offline::InputKind::Db {
        writeln!(o, "Digest         none recorded (raw db)")?;
    }
    let verdict = if r.ok {
        "OK".to_string()
    } else {
        format!(
            "{} PROBLEM(S) FOUND",
            r.problems.len() as u64 + r.problems_not_shown
        )
    };
    writeln!(o, "Verdict        {verdict}")?;
    Ok(())
}

/// What the database says about the cluster: revisions, raft, members, alarms, keys,
/// hashes, size.
fn text_state(o: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(
        o,
        "Revision       {} (compact revision {}: finished {}, scheduled {})",
        r.summary.revision,
        opt(&r.summary.compact_revision),
        opt(&r.summary.finished_compact_revision),
        opt(&r.summary.scheduled_compact_revision)
    )?;
    writeln!(
        o,
        "Raft           consistent index {}, term {}",
        r.summary.consistent_index, r.summary.term
    )?;
    if let Some(cs) = &r.summary.conf_state {
        let ids = |v: &[u64]| {
            v.iter()
                .map(|i| format!("{i:x}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(o, "Conf state     voters {}", ids(&cs.voters))?;
        if !cs.learners.is_empty() {
            write!(o, "; learners {}", ids(&cs.learners))?;
        }
        writeln!(o)?;
    }
    writeln!(
        o,
        "Cluster        version {}{}; {} member(s){}",
        opt(&r.summary.cluster_version),
        r.summary
            .storage_version
            .as_deref()
            .map(|v| format!(", storage version {v}"))
            .unwrap_or_default(),
        r.summary.members.len(),
        if r.summary.removed_members.is_empty() {
            String::new()
        } else {
            format!(", {} removed", r.summary.removed_members.len())
        }
    )?;
    for m in &r.summary.members {
        writeln!(
            o,
            "               {:x} {}{} {}",
            m.id,
            if m.name.is_empty() {
                "(unnamed)"
            } else {
                &m.name
            },
            if m.is_learner { " (learner)" } else { "" },
            m.peer_urls.join(",")
        )?;
    }
    if r.summary.alarms.is_empty() {
        writeln!(o, "Alarms         none")?;
    } else {
        for a in &r.summary.alarms {
            writeln!(o, "Alarms         {} on member {:x}", a.alarm, a.member_id)?;
        }
    }
    writeln!(
        o,
        "Auth           {}",
        if r.summary.auth_enabled {
            "enabled"
        } else {
            "disabled"
        }
    )?;
    writeln!(
        o,
        "Keys           {} live keys, {} revisions stored ({} tombstones), {} leases; {} entries in all buckets",
        r.live_keys, r.key_revisions, r.tombstones, r.leases, r.total_entries
    )?;
    writeln!(
        o,
        "Hashes         etcdutl {:x} ({}); hashkv at revision {}: {}",
        r.etcdutl_hash,
        r.etcdutl_hash,
        r.hashkv_revision,
        match (&r.hashkv, &r.hashkv_error) {
            (Some(h), _) => match r.hashkv_while_compacting {
                Some(w) => format!(
                    "{h} ({w} while etcd runs the compaction scheduled in it: no key is live there)"
                ),
                None => h.to_string(),
            },
            (None, Some(e)) => format!("not computed ({e})"),
            (None, None) => "not computed".into(),
        }
    )?;
    writeln!(
        o,
        "Size           {} ({} pages of {} bytes); in use {}; free {} in {} pages (a defrag gives that back)",
        human_bytes(r.summary.db_size),
        r.pages.total,
        r.summary.page_size,
        human_bytes(r.in_use_size),
        human_bytes(r.free_size),
        r.pages.free
    )?;
    writeln!(
        o,
        "Meta           meta {} is current: {} (txid {})",
        r.current_meta, r.why_current_meta, r.summary.txid
    )?;
    Ok(())
}

/// Per bucket, and the largest values.
fn text_buckets(o: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(o, "\nBucket            entries       bytes  pages  depth")?;
    for b in &r.buckets {
        writeln!(
            o,
            "  {:<16}{:>8}  {:>10}  {:>5}  {}",
            b.name,
            b.entries,
            human_bytes(b.key_bytes + b.value_bytes),
            b.branch_pages + b.leaf_pages + b.overflow_pages,
            if b.inline {
                "inline".to_string()
            } else {
                b.depth.to_string()
            }
        )?;
    }
    if !r.largest_keys.is_empty() {
        writeln!(o, "\nLargest values (any revision)")?;
        for k in &r.largest_keys {
            writeln!(
                o,
                "  {:>10}  rev {:<10} {}",
                human_bytes(k.size),
                k.revision,
                k.key
            )?;
        }
    }
    Ok(())
}

/// `--k8s`: per resource, per namespace, largest objects.
fn text_k8s(o: &mut String, k: &K8sSummary, top: usize) -> std::fmt::Result {
    writeln!(
        o,
        "\nKubernetes     live keys   live bytes   revisions  stored bytes  resource"
    )?;
    for u in k
        .resources
        .iter()
        .take(if top == 0 { usize::MAX } else { top.max(20) })
    {
        writeln!(
            o,
            "  {:>22}  {:>11}  {:>10}  {:>12}  {}",
            u.keys,
            human_bytes(u.bytes),
            u.revisions,
            human_bytes(u.revision_bytes),
            u.name
        )?;
    }
    if k.other_keys > 0 {
        writeln!(o, "  {} live keys outside /registry/", k.other_keys)?;
    }
    if let Some(ns) = &k.namespaces {
        writeln!(o, "\nNamespace      live keys   live bytes  namespace")?;
        for u in ns {
            writeln!(
                o,
                "  {:>22}  {:>11}  {}",
                u.keys,
                human_bytes(u.bytes),
                if u.name.is_empty() {
                    "(cluster-scoped)"
                } else {
                    &u.name
                }
            )?;
        }
    }
    if !k.largest_objects.is_empty() {
        writeln!(o, "\nLargest objects")?;
        for x in &k.largest_objects {
            writeln!(o, "  {:>10}  {}", human_bytes(x.size), x.key)?;
        }
    }
    Ok(())
}

/// `--compare-live`: each member's hashkv against the offline one.
fn text_live(o: &mut String, revision: i64, l: &[LiveHash]) -> std::fmt::Result {
    writeln!(o, "\nLive hashkv at revision {}", revision)?;
    for h in l {
        match &h.error {
            Some(e) => writeln!(o, "  {}: ERROR {e}", h.endpoint)?,
            None => writeln!(
                o,
                "  {}: {} (compact {}), expected {} -> {}",
                h.endpoint,
                opt(&h.hashkv),
                opt(&h.compact_revision),
                opt(&h.expected),
                if h.matches { "MATCH" } else { "DIFFERENT" }
            )?,
        }
    }
    Ok(())
}

fn text_problems(o: &mut String, r: &Report) -> std::fmt::Result {
    if r.problems.is_empty() && r.problems_not_shown == 0 {
        return Ok(());
    }
    writeln!(o, "\nProblems")?;
    for p in &r.problems {
        writeln!(o, "  {p}")?;
    }
    if r.problems_not_shown > 0 {
        writeln!(o, "  ... and {} more", r.problems_not_shown)?;
    }
    Ok(())
}

fn emit(o: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(o.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}
