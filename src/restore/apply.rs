//! `restore apply`: one node's data steps of a plan, on this machine.
//!
//! Fetch and verify the backup, move the old data dir aside (never delete it), write the new
//! one, and read the member id and cluster id back from what was written: the plan promised
//! them, and a restore whose ids differ would form a cluster nobody planned.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::guard::{self, PlanId, Previous};
use super::plan::{Plan, PlanMember};
use crate::error::IoContext;
use crate::format::etcd::{ClusterId, MemberId};
use crate::{Error, Result};

/// What writes the member's data dir: lifeboat's own writer ([`crate::restore::native`],
/// the default: no etcd tool needed on the host), or etcd's tool when asked for.
#[derive(Debug, Clone)]
pub enum DataDirWriter {
    /// etcd 3.5's `etcdutl snapshot restore`.
    Etcdutl(PathBuf),
    /// etcd 3.4's `ETCDCTL_API=3 etcdctl snapshot restore`.
    Etcdctl(PathBuf),
    /// [`crate::restore::native::write_member_dir`]: the same files etcdutl writes.
    Native,
}

impl DataDirWriter {
    /// The writer for a member's etcd version: `explicit` (`--etcdutl PATH`) or the tool on
    /// PATH.
    pub fn for_member(m: &PlanMember, explicit: Option<&Path>) -> DataDirWriter {
        let v34 = m.etcd_version == "3.4" || m.etcd_version.starts_with("3.4.");
        match (explicit, v34) {
            (Some(p), _) if p.file_name().is_some_and(|n| n == "etcdctl") => {
                DataDirWriter::Etcdctl(p.to_path_buf())
            }
            (Some(p), _) => DataDirWriter::Etcdutl(p.to_path_buf()),
            (None, true) => DataDirWriter::Etcdctl(PathBuf::from("etcdctl")),
            (None, false) => DataDirWriter::Etcdutl(PathBuf::from("etcdutl")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub dry_run: bool,
    pub writer: DataDirWriter,
    /// Stop the unit before and start it after (`--manage-service systemd`).
    pub manage_systemd: bool,
    /// The plan's id (its plan.json's digest), recorded beside the data dir it writes.
    pub plan_id: PlanId,
    /// Move a data dir that another plan restored aside like any other (`--force`).
    pub force: bool,
    /// How to open the plan's destination and decrypt its backup.
    pub access: crate::catalog::Access,
    /// Where a point-in-time plan's records come from; None: the capture segments in the
    /// plan's destination ([`super::pitr::CatalogRecords`]).
    pub records: Option<super::pitr::SharedSource>,
    /// The plan's directory: where a point-in-time plan keeps its replay's transactions
    /// ([`super::pitr::ReplayPlan::edits`]); None: the records are read.
    pub plan_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub node: String,
    pub dry_run: bool,
    pub backup_id: String,
    pub data_dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_aside: Option<String>,
    pub member_id: MemberId,
    pub cluster_id: ClusterId,
    /// The plan's id: `plan DIGEST (token T, backup B)`.
    pub plan: String,
    /// The data dir was already restored by this plan: nothing was done.
    pub already_restored: bool,
    /// The steps, done (or, with --dry-run, to do), in order.
    pub steps: Vec<String>,
}

/// A name beside `dir` that nothing holds yet: two moves within one second (a restore
/// re-applied with `--force` at once) get `.1`, `.2`, ... rather than fail on the first.
fn aside_name(dir: &str) -> String {
    let base = aside_stamp(dir);
    let mut name = base.clone();
    let mut n = 0u32;
    while Path::new(&name).exists() || Path::new(&format!("{name}.lifeboat-restored")).exists() {
        n += 1;
        name = format!("{base}.{n}");
    }
    name
}

/// `DIR.before-restore-20261205T140355Z`: the basic ISO 8601 form, UTC, to the second.
fn aside_stamp(dir: &str) -> String {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let stamp = time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_default();
    format!("{dir}.before-restore-{stamp}")
}

fn is_nonempty_dir(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

fn systemctl(verb: &str, unit: &str) -> Result<()> {
    let o = Command::new("systemctl")
        .args([verb, unit])
        .output()
        .map_err(|e| Error::Failed(format!("systemctl {verb} {unit}: {e}")))?;
    if !o.status.success() {
        return Err(Error::Failed(format!(
            "systemctl {verb} {unit} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(())
}

/// The plan's kept transactions and their file, when it is in the plan's directory (see
/// [`super::pitr::apply_replay`], which checks it).
fn kept_here<'a>(
    rp: &'a super::pitr::ReplayPlan,
    opts: &ApplyOptions,
) -> Option<(&'a super::pitr::KeptEdits, PathBuf)> {
    let file = opts.plan_dir.as_deref()?.join(super::pitr::EDITS_FILE);
    Some((rp.edits.as_ref()?, file)).filter(|(_, f)| f.is_file())
}

/// Carry out `node`'s data steps of `plan`.
pub fn apply(plan: &Plan, node: &str, opts: &ApplyOptions) -> Result<ApplyReport> {
    let m = plan.member(node)?;
    let data_dir = PathBuf::from(&m.data_dir);
    let mut report = ApplyReport {
        node: m.name.clone(),
        dry_run: opts.dry_run,
        backup_id: plan.backup_id.clone(),
        data_dir: m.data_dir.clone(),
        moved_aside: None,
        member_id: m.member_id,
        cluster_id: plan.cluster_id,
        plan: opts.plan_id.to_string(),
        already_restored: false,
        steps: Vec::new(),
    };
    match guard::previous(plan, m, &opts.plan_id) {
        Previous::SamePlan(at) => {
            report.already_restored = true;
            report.steps.push(format!(
                "{} already restored by this plan{}; nothing to do",
                m.data_dir,
                at.map(|t| format!(" at {t}")).unwrap_or_default()
            ));
            return Ok(report);
        }
        Previous::OtherPlan(why) if !opts.force => return Err(Error::Usage(why)),
        Previous::OtherPlan(_) | Previous::None => {}
    }
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| Error::Usage(format!("data dir {} has no parent", m.data_dir)))?;
    let snapshot = parent.join(format!(".lifeboat-restore-{}.db", m.name));
    if opts.manage_systemd {
        report.steps.push(format!("systemctl stop {}", m.unit));
        if !opts.dry_run {
            systemctl("stop", &m.unit)?;
        }
    }
    // Nothing is moved or written under a running etcd; no flag overrides this. (With
    // --dry-run --manage-service the unit would be stopped first: nothing to check yet.)
    if !(opts.dry_run && opts.manage_systemd) {
        guard::refuse_held(&m.data_dir, m.wal_dir.as_deref())?;
    }
    check_tool_bumps(plan, &opts.writer)?;
    report.steps.push(match &plan.source_db {
        Some(db) => format!(
            "copy {db} to {} and check its SHA-256 against the plan's",
            snapshot.display()
        ),
        None => format!(
            "fetch backup {} from {} to {} and verify its digest",
            plan.backup_id,
            plan.from,
            snapshot.display()
        ),
    });
    let mut dirs = vec![data_dir.clone()];
    dirs.extend(m.wal_dir.as_ref().map(PathBuf::from));
    let mut moves = Vec::new();
    for d in &dirs {
        if is_nonempty_dir(d) {
            let to = aside_name(&d.display().to_string());
            report
                .steps
                .push(format!("move {} aside to {to}", d.display()));
            moves.push((d.clone(), PathBuf::from(to)));
        }
    }
    let cmd = writer_command(plan, m, &opts.writer, &snapshot);
    let kept = plan.replay.as_ref().and_then(|rp| kept_here(rp, opts));
    report.steps.push(write_step(plan, m, cmd.as_deref(), kept));
    report.steps.push(format!(
        "check that {} holds member {} of cluster {}",
        m.data_dir, m.member_id, plan.cluster_id
    ));
    if opts.manage_systemd {
        report.steps.push(format!("systemctl start {}", m.unit));
    }
    if opts.dry_run {
        report.moved_aside = moves.first().map(|(_, to)| to.display().to_string());
        return Ok(report);
    }
    std::fs::create_dir_all(parent).at(parent)?;
    // etcd's tool reads a snapshot file with its trailer; the native writer takes the
    // database image alone and moves it into the data dir it writes.
    get_snapshot(plan, &snapshot, &opts.access, cmd.is_some())?;
    for (from, to) in &moves {
        std::fs::rename(from, to).at(from)?;
        if report.moved_aside.is_none() {
            report.moved_aside = Some(to.display().to_string());
        }
        // The mark goes with the dir it describes.
        let mark = guard::mark_path(&m.data_dir);
        if *from == data_dir && mark.exists() {
            let aside = guard::mark_path(&to.display().to_string());
            std::fs::rename(&mark, &aside).at(&mark)?;
        }
    }
    let run = match &cmd {
        Some(cmd) => run_writer(cmd, &opts.writer),
        None => write_native(plan, m, &snapshot, opts),
    };
    let _ = std::fs::remove_file(&snapshot);
    run?;
    check_written(plan, m)?;
    guard::write_mark(plan, m, &opts.plan_id)?;
    if opts.manage_systemd {
        systemctl("start", &m.unit)?;
    }
    Ok(report)
}

/// The step that writes `m`'s data dir, as the report and `--dry-run` show it: etcd's
/// tool's command line (`cmd`), or the native writer with what it writes (the backup, a
/// replay of the captured records, or the plan's kept edits).
fn write_step(
    plan: &Plan,
    m: &PlanMember,
    cmd: Option<&[std::ffi::OsString]>,
    kept: Option<(&super::pitr::KeptEdits, PathBuf)>,
) -> String {
    match cmd {
        Some(cmd) => format!(
            "write {}: {}",
            m.data_dir,
            cmd.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        None => match (plan.to_revision, &plan.replay, kept) {
            (Some(r), Some(rp), Some((k, file))) => format!(
                "write {} with lifeboat's native writer, committing what the plan's replay wrote ({} transaction{}, kept in {}: its replay of the {} captured records after revision {} up to revision {r}; checked against the plan's SHA-256, the records are not read again)",
                m.data_dir,
                k.transactions,
                if k.transactions == 1 { "" } else { "s" },
                file.display(),
                rp.records,
                rp.after
            ),
            (Some(r), Some(rp), None) => format!(
                "write {} with lifeboat's native writer, replaying the {} captured records after revision {} up to revision {r} (checked against the plan's digest)",
                m.data_dir, rp.records, rp.after
            ),
            _ => format!(
                "write {} with lifeboat's native writer (db, WAL and snap file as etcdutl writes them)",
                m.data_dir
            ),
        },
    }
}

/// etcd's tool bumps the revision only from etcdutl 3.5.10 on (etcdctl never): a plan with
/// the bump written by an older tool is refused before anything changes (exit 2); lifeboat's
/// own writer bumps on any version.
fn check_tool_bumps(plan: &Plan, w: &DataDirWriter) -> Result<()> {
    if let (Some(r), false) = (plan.to_revision, matches!(w, DataDirWriter::Native)) {
        return Err(Error::flag(
            "--with-etcdutl",
            format!("this plan restores to revision {r} (point-in-time): only lifeboat's own writer replays the captured changes; leave out --with-etcdutl/--etcdutl"),
        ));
    }
    let tool = match w {
        _ if plan.bump_revision.is_none() => return Ok(()),
        DataDirWriter::Native => return Ok(()),
        DataDirWriter::Etcdutl(p) | DataDirWriter::Etcdctl(p) => p,
    };
    let mut c = Command::new(tool);
    c.args(["snapshot", "restore", "--help"]);
    if matches!(w, DataDirWriter::Etcdctl(_)) {
        c.env("ETCDCTL_API", "3");
    }
    let o = c.output().map_err(|e| {
        Error::Usage(format!(
            "cannot run {}: {e} (install etcd's tool or give its path with --etcdutl PATH)",
            tool.display()
        ))
    })?;
    let help = String::from_utf8_lossy(&[o.stdout, o.stderr].concat()).into_owned();
    if help.contains("--bump-revision") {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "this plan bumps the revision, which {} cannot do (etcdutl 3.5.10+ can): leave out --with-etcdutl/--etcdutl so that lifeboat's own writer does it, or re-plan with --no-bump-revision",
        tool.display()
    )))
}

/// The snapshot to restore, at `to`: fetched from the store and verified, or copied from
/// the member db the plan names and checked against the plan's SHA-256. `trailer`: a
/// fetched snapshot gets etcd's SHA-256 trailer and is fsynced (etcd's tool reads it);
/// without, it is the database image alone, written once and hashed once while decoded,
/// and the native writer makes it durable in the data dir it moves it into.
fn get_snapshot(
    plan: &Plan,
    to: &Path,
    access: &crate::catalog::Access,
    trailer: bool,
) -> Result<()> {
    if let Some(db) = &plan.source_db {
        std::fs::copy(db, to).at(db)?;
        let r = crate::io::FileReader::open(to).at(to)?;
        let sha = hex::encode(crate::io::sha256_at(&r).at(to)?);
        if sha != plan.db_sha256 {
            let _ = std::fs::remove_file(to);
            return Err(Error::integrity(
                db,
                format!(
                    "SHA-256 is {sha}, the plan was made for {}: the db changed since; make a new plan",
                    plan.db_sha256
                ),
            ));
        }
        return Ok(());
    }
    let repo = access.repository(&plan.from, false)?;
    let manifest = repo.resolve(&plan.backup_id)?;
    if manifest.db_sha256 != plan.db_sha256 {
        return Err(Error::integrity(
            repo.object_of(&manifest),
            format!(
                "backup {} has database SHA-256 {} but the plan was made for {}; make a new plan",
                plan.backup_id, manifest.db_sha256, plan.db_sha256
            ),
        ));
    }
    if trailer {
        crate::jobs::fetch::fetch(&repo, &manifest, to, true, &|_| {})?;
        return Ok(());
    }
    // A leftover of a killed apply is ours to replace; the name is hidden, so a crash
    // here leaves nothing that looks like a data dir.
    let _ = std::fs::remove_file(to);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .at(to)?;
    let r = crate::jobs::fetch::decode_into(&repo, &manifest, &mut f, to, &|_| {});
    if r.is_err() {
        drop(f);
        let _ = std::fs::remove_file(to);
    }
    r?;
    Ok(())
}

/// The etcd tool's command line, or `None` for the native writer.
fn writer_command(
    plan: &Plan,
    m: &PlanMember,
    w: &DataDirWriter,
    snapshot: &Path,
) -> Option<Vec<std::ffi::OsString>> {
    let tool = match w {
        DataDirWriter::Etcdutl(p) | DataDirWriter::Etcdctl(p) => p.clone(),
        DataDirWriter::Native => return None,
    };
    let args = super::runbook::restore_command(plan, m, &snapshot.display().to_string());
    let mut cmd = vec![tool.into_os_string()];
    cmd.extend(args.into_iter().skip(1).map(Into::into));
    Some(cmd)
}

/// Write `m`'s data dir with lifeboat's own writer from the fetched snapshot (the database
/// image alone, its SHA-256 checked against the plan's while it was fetched or copied),
/// which becomes the member's db: moved into the new data dir and patched there.
fn write_native(plan: &Plan, m: &PlanMember, snapshot: &Path, opts: &ApplyOptions) -> Result<()> {
    let size = std::fs::metadata(snapshot).at(snapshot)?.len();
    let spec = super::native::RestoreSpec {
        members: plan
            .members
            .iter()
            .map(|pm| super::native::MemberSpec {
                name: pm.name.clone(),
                peer_urls: pm.peer_urls.clone(),
            })
            .collect(),
        token: plan.cluster_token.clone(),
        bump_revision: plan.bump_revision,
        mark_compacted: plan.mark_compacted,
    };
    // A point-in-time plan: the captured changes up to its revision replayed onto the
    // fetched db itself (checked against the plan's SHA-256 while it was fetched), in
    // place; a refused or failed replay removes it, so the next apply fetches it again.
    let dir = opts.plan_dir.as_deref();
    let size = match (&opts.records, plan.to_revision) {
        (_, None) => Ok(size),
        (Some(src), Some(_)) => {
            super::pitr::apply_replay(plan, dir, snapshot, size, src.0.as_ref())
        }
        (None, Some(_)) => opts.access.repository(&plan.from, false).and_then(|repo| {
            let src = super::pitr::CatalogRecords {
                repo: &repo,
                cluster_id: plan.old_cluster_id.clone(),
            };
            super::pitr::apply_replay(plan, dir, snapshot, size, &src)
        }),
    }
    .inspect_err(|_| {
        let _ = std::fs::remove_file(snapshot);
    })?;
    // The files the node's etcd release's own etcdutl would write (every style boots on
    // every release; this keeps them byte-comparable with that etcdutl).
    let target = (
        m.name.clone(),
        PathBuf::from(&m.data_dir),
        m.wal_dir.as_deref().map(PathBuf::from),
    );
    super::native::write_member_dir_adopting(
        snapshot,
        size,
        &spec,
        target,
        super::native::RestoreStyle::for_version(&m.etcd_version),
    )?;
    Ok(())
}

fn run_writer(cmd: &[std::ffi::OsString], w: &DataDirWriter) -> Result<()> {
    let mut c = Command::new(&cmd[0]);
    c.args(&cmd[1..]);
    if matches!(w, DataDirWriter::Etcdctl(_)) {
        c.env("ETCDCTL_API", "3");
    }
    let tool = Path::new(&cmd[0]).display().to_string();
    let o = c.output().map_err(|e| {
        Error::Usage(format!(
            "cannot run {tool}: {e} (install etcd's {tool} or give its path with --etcdutl PATH)"
        ))
    })?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(Error::Failed(format!(
            "{tool} snapshot restore failed ({}): {}",
            o.status,
            last.trim()
        )));
    }
    Ok(())
}

/// Read the written dir back as etcd will: WAL metadata ids, and the member in the db.
fn check_written(plan: &Plan, m: &PlanMember) -> Result<()> {
    let dirs =
        crate::member::Dirs::resolve(Path::new(&m.data_dir), m.wal_dir.as_deref().map(Path::new));
    let r = crate::member::check_dir(&dirs, crate::member::Options { db_walk: false });
    let got_member = r.member_id.map(|m| m.to_string()).unwrap_or_default();
    let got_cluster = r.cluster_id.map(|c| c.to_string()).unwrap_or_default();
    if m.member_id != *got_member || plan.cluster_id != *got_cluster {
        return Err(Error::integrity(
            &m.data_dir,
            format!(
                "written data dir holds member {got_member:?} of cluster {got_cluster:?}; the plan says {} of {} (verdict {}; make a new plan)",
                m.member_id, plan.cluster_id, r.verdict.as_str()
            ),
        ));
    }
    if !r.etcd_starts {
        return Err(Error::integrity(
            &m.data_dir,
            format!("written data dir would not start: {}", r.headline()),
        ));
    }
    Ok(())
}
