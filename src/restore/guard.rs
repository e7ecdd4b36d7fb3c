//! The rails around writing a member's data dir, shared by `restore apply`, `--from-data-dir`
//! planning and the generated scripts:
//!
//! * never under a running etcd: a data dir or WAL dir a process holds is refused before
//!   anything changes (exit 1, naming the pid), with no override ([`refuse_held`]; the scripts'
//!   own check is [`sh_running_check`], for nodes without lifeboat);
//! * one plan per cluster: `<data_dir>.lifeboat-restored` records which plan wrote the dir
//!   ([`PlanId`]: token, backup and the digest of plan.json). Applying the same plan again
//!   changes nothing; another plan's restored dir is refused (exit 2) unless `--force`,
//!   because members written by two plans form two clusters.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::plan::{Plan, PlanMember, PLAN_FILE};
use crate::error::IoContext;
use crate::member::holder::{holder, Holder};
use crate::member::Dirs;
use crate::{Error, Result};

/// Which plan wrote a data dir: the plan's token, backup and the SHA-256 of its plan.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanId {
    pub token: String,
    pub backup_id: String,
    /// The first 16 hex digits of plan.json's SHA-256.
    pub digest: String,
}

impl PlanId {
    /// The id of `plan`, whose plan.json holds `json`.
    pub fn of(plan: &Plan, json: &[u8]) -> PlanId {
        PlanId {
            token: plan.cluster_token.clone(),
            backup_id: plan.backup_id.clone(),
            digest: hex::encode(Sha256::digest(json))[..16].to_string(),
        }
    }

    /// The id of the plan in `dir` (plan.json read as it is on disk).
    pub fn load(dir: &Path, plan: &Plan) -> Result<PlanId> {
        let path = dir.join(PLAN_FILE);
        let bytes = std::fs::read(&path).at(&path)?;
        Ok(PlanId::of(plan, &bytes))
    }
}

impl std::fmt::Display for PlanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plan {} (token {}, backup {})",
            self.digest, self.token, self.backup_id
        )
    }
}

/// `<data_dir>.lifeboat-restored`.
pub fn mark_path(data_dir: &str) -> PathBuf {
    PathBuf::from(format!("{data_dir}.lifeboat-restored"))
}

/// What a data dir's mark says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// None for a mark written before plans had ids (one line: member, cluster, backup).
    pub plan: Option<PlanId>,
    pub member_id: String,
    pub cluster_id: String,
    pub backup_id: String,
    /// When the dir was written (UTC), if recorded.
    pub written: Option<String>,
}

impl Mark {
    fn parse(text: &str) -> Option<Mark> {
        let first = text.lines().next()?;
        if !first.contains('=') {
            let mut w = first.split_whitespace();
            return Some(Mark {
                plan: None,
                member_id: w.next()?.into(),
                cluster_id: w.next()?.into(),
                backup_id: w.next()?.into(),
                written: None,
            });
        }
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_string)
        };
        let backup_id = get("backup")?;
        Some(Mark {
            plan: Some(PlanId {
                token: get("token")?,
                backup_id: backup_id.clone(),
                digest: get("plan")?,
            }),
            member_id: get("member")?,
            cluster_id: get("cluster")?,
            backup_id,
            written: get("written"),
        })
    }

    fn describe(&self) -> String {
        match &self.plan {
            Some(p) => p.to_string(),
            None => format!(
                "an earlier plan (backup {}, cluster {})",
                self.backup_id, self.cluster_id
            ),
        }
    }
}

/// The mark's text for `m` restored by `id` now.
fn mark_text(plan: &Plan, m: &PlanMember, id: &PlanId) -> String {
    format!(
        "plan={}\ntoken={}\nbackup={}\nmember={}\ncluster={}\nwritten={}\n",
        id.digest,
        id.token,
        id.backup_id,
        m.member_id,
        plan.cluster_id,
        now_utc()
    )
}

/// Now, in RFC 3339 UTC to the second (`2026-12-05T14:03:55Z`).
fn now_utc() -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_default()
}

/// Record that `id` wrote `m`'s data dir.
pub fn write_mark(plan: &Plan, m: &PlanMember, id: &PlanId) -> Result<()> {
    let path = mark_path(&m.data_dir);
    std::fs::write(&path, mark_text(plan, m, id)).at(&path)
}

/// What is in `m`'s data dir already, as far as plans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Previous {
    /// No restored dir (no mark, or a mark beside an empty or missing dir).
    None,
    /// This plan wrote it, at the time given.
    SamePlan(Option<String>),
    /// Another plan wrote it: the error that says so, for when `--force` is not given.
    OtherPlan(String),
}

/// Whether `m`'s data dir was restored by a plan, and by which.
pub fn previous(plan: &Plan, m: &PlanMember, id: &PlanId) -> Previous {
    let member = Path::new(&m.data_dir).join("member");
    if !member.is_dir() {
        return Previous::None;
    }
    let Some(mark) = std::fs::read_to_string(mark_path(&m.data_dir))
        .ok()
        .and_then(|t| Mark::parse(&t))
    else {
        return Previous::None;
    };
    let same = match &mark.plan {
        Some(p) => p == id,
        None => {
            m.member_id == *mark.member_id
                && plan.cluster_id == *mark.cluster_id
                && mark.backup_id == plan.backup_id
        }
    };
    if same {
        return Previous::SamePlan(mark.written);
    }
    Previous::OtherPlan(format!(
        "{} was restored by {}{}, not by this {id}: members written by two plans form two clusters (`request cluster ID mismatch`); apply the plan the other members ran, or pass --force to move that restored dir aside and write this plan's",
        m.data_dir,
        mark.describe(),
        mark.written.map(|w| format!(" at {w}")).unwrap_or_default(),
    ))
}

/// Refuse (exit 1) a data dir or WAL dir that a process holds: moving it aside or writing
/// under it while etcd runs leaves a member that panics on its next start.
pub fn refuse_held(data_dir: &str, wal_dir: Option<&str>) -> Result<()> {
    let dirs = Dirs::resolve(Path::new(data_dir), wal_dir.map(Path::new));
    match holder(&dirs, true) {
        Some(h) => Err(held_error(data_dir, &h)),
        None => Ok(()),
    }
}

/// The error for a dir in use.
pub fn held_error(what: &str, h: &Holder) -> Error {
    Error::Refused(format!(
        "{what} is in use: {h} on {}; etcd is running on it and lifeboat never moves or writes a live member's files: {}, then run this again",
        h.path.display(),
        h.stop_hint()
    ))
}

/// A bash function `lifeboat_refuse_running WAIT HINT DIR...` for the generated scripts: exits
/// 1 when a process has a file under a DIR open (found in /proc, as root sees every process)
/// or holds the flock of `DIR/member/snap/db` (etcd's db lock, seen by any user), after
/// waiting up to WAIT seconds for it to go. Needs only bash, find and coreutils (flock when
/// present), so it works on a node without lifeboat.
pub fn sh_running_check() -> &'static str {
    r#"# A running etcd holds its db (flock) and WAL files open: never move or write under it.
lifeboat_holders() {
  local d real pids=""
  for d in "$@"; do
    [ -n "$d" ] && [ -e "$d" ] || continue
    real="$(readlink -f -- "$d")"
    pids="$pids $(find /proc/[0-9]*/fd -maxdepth 1 \( -lname "$real" -o -lname "$real/*" \) 2>/dev/null | cut -d/ -f3 | grep -vx "$$" | sort -u | tr '\n' ' ' || true)"
    if [ -f "$d/member/snap/db" ] && command -v flock >/dev/null 2>&1 && ! flock -n -s "$d/member/snap/db" true 2>/dev/null; then
      pids="$pids unknown"
    fi
  done
  [ -n "${pids// /}" ] || return 0
  printf '%s\n' $pids | sort -u | tr '\n' ' '
}
lifeboat_refuse_running() {
  local wait="$1" hint="$2" pids p who="" i=0
  shift 2
  pids="$(lifeboat_holders "$@")"
  while [ -n "$pids" ] && [ "$i" -lt "$wait" ]; do
    sleep 1; i=$((i + 1)); pids="$(lifeboat_holders "$@")"
  done
  [ -z "$pids" ] && return 0
  for p in $pids; do
    if [ "$p" = unknown ]; then
      [ -n "$who" ] || who="a process this user cannot see (run as root to name it)"
    else
      who="${who:+$who, }pid $p ($(cat "/proc/$p/comm" 2>/dev/null || echo '?'))"
    fi
  done
  echo "$(basename "$0"): etcd is running on $*: $who holds its files; never move or write a live member's dir: $hint, wait until it has exited, then run this again" >&2
  exit 1
}
"#
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_new_and_legacy() {
        let m = Mark::parse(
            "plan=0123456789abcdef\ntoken=t\nbackup=b1\nmember=a1\ncluster=c1\nwritten=2026-12-05T09:00:00Z\n",
        )
        .unwrap();
        assert_eq!(
            m.plan,
            Some(PlanId {
                token: "t".into(),
                backup_id: "b1".into(),
                digest: "0123456789abcdef".into()
            })
        );
        assert_eq!(m.written.as_deref(), Some("2026-12-05T09:00:00Z"));
        assert_eq!(m.describe(), "plan 0123456789abcdef (token t, backup b1)");
        let old = Mark::parse("a1 c1 b1\n").unwrap();
        assert_eq!((old.plan, old.member_id.as_str()), (None, "a1"));
        assert!(Mark::parse("plan=x\n").is_none());
        assert!(Mark::parse("").is_none());
    }
}
