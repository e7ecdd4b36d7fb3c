//! The human half of a plan: RUNBOOK.md (every step, in order, for every node) and one
//! shell script per node.
//!
//! The scripts do the data steps only and print the configuration changes instead of
//! making them: editing unit files and pod manifests differs between sites, and a wrong
//! automatic edit at 3 am is worse than a printed one the operator pastes.

use std::fmt::Write as _;

use super::guard::PlanId;
use super::plan::{Plan, PlanMember};
use super::topology::RunsAs;

/// Single-quote for the shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `s` as one shell word: as is when it holds only characters the shell takes literally,
/// single-quoted otherwise (a data dir with a space stays one argument when pasted).
pub fn sh_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=,@%+-".contains(c));
    if plain {
        s.to_string()
    } else {
        sh_quote(s)
    }
}

/// A command line to paste: each argument one shell word.
pub fn sh_line(args: &[String]) -> String {
    args.iter()
        .map(|a| sh_word(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `--NAME=VALUE` for each of `names` the member's start flags set, in that order.
fn flags_of<'a>(m: &'a PlanMember, names: &'a [&str]) -> impl Iterator<Item = (&'a str, &'a str)> {
    names.iter().filter_map(|n| Some((*n, m.flag(n)?)))
}

/// The start flags `etcdutl snapshot restore` takes too, in the order it is given them.
const RESTORE_FLAGS: &[&str] = &[
    "name",
    "initial-cluster",
    "initial-cluster-token",
    "initial-advertise-peer-urls",
    "data-dir",
    "wal-dir",
];

/// The start flags a systemd environment file sets (`ETCD_*`), in the order shown.
const SYSTEMD_FLAGS: &[&str] = &[
    "name",
    "data-dir",
    "wal-dir",
    "initial-cluster",
    "initial-cluster-token",
    "initial-cluster-state",
    "initial-advertise-peer-urls",
    "listen-peer-urls",
    "advertise-client-urls",
    "listen-client-urls",
];

/// The start flags changed in a kubeadm static pod's `command:`.
const STATIC_POD_FLAGS: &[&str] = &[
    "name",
    "data-dir",
    "wal-dir",
    "initial-cluster",
    "initial-cluster-token",
    "initial-cluster-state",
    "initial-advertise-peer-urls",
];

/// `ETCD_DATA_DIR` for `data-dir`: etcd's environment name of a flag.
fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// The `snapshot restore` command for a node where lifeboat is not installed.
pub fn restore_command(plan: &Plan, m: &PlanMember, snapshot: &str) -> Vec<String> {
    let v34 = m.etcd_version == "3.4" || m.etcd_version.starts_with("3.4.");
    let mut c = if v34 {
        vec!["etcdctl".to_string(), "snapshot".into(), "restore".into()]
    } else {
        vec!["etcdutl".to_string(), "snapshot".into(), "restore".into()]
    };
    c.push(snapshot.to_string());
    c.extend(flags_of(m, RESTORE_FLAGS).map(|(n, v)| format!("--{n}={v}")));
    if plan.hash_check_skipped {
        c.push("--skip-hash-check".into());
    }
    if let Some(n) = plan.bump_revision {
        c.push(format!("--bump-revision={n}"));
        if plan.mark_compacted {
            c.push("--mark-compacted".into());
        }
    }
    c
}

/// The configuration lines to change on this node, as text for the runbook and scripts:
/// the member's start flags, as its way of running etcd spells them.
pub fn config_changes(m: &PlanMember) -> String {
    let mut s = String::new();
    match m.runs_as {
        RunsAs::Systemd => {
            let _ = writeln!(
                s,
                "In {} (read by {}), set these lines:",
                m.env_file, m.unit
            );
            for (n, v) in flags_of(m, SYSTEMD_FLAGS) {
                let _ = writeln!(s, "  {}={v}", env_name(n));
            }
            let _ = writeln!(
                s,
                "then: systemctl daemon-reload && systemctl start {}",
                m.unit
            );
        }
        RunsAs::StaticPod => {
            let file = m.manifest.rsplit('/').next().unwrap_or("etcd.yaml");
            let _ = writeln!(
                s,
                "In /etc/kubernetes/manifests-aside/{file} (the etcd static pod, moved aside from {}), under `command:` make these flags read:",
                m.manifest
            );
            for (n, v) in flags_of(m, STATIC_POD_FLAGS) {
                let _ = writeln!(s, "    - --{n}={v}");
            }
            let wal = m
                .wal_dir
                .as_ref()
                .map(|w| format!(" and a hostPath volume for the WAL dir {w}"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "and keep the hostPath volume `etcd-data` pointing at {}{wal}. Then move it back to {} (the kubelet starts etcd).",
                m.data_dir, m.manifest
            );
        }
        RunsAs::Command => {
            let _ = writeln!(s, "Start etcd with exactly these flags:");
            let _ = writeln!(s, "  etcd {}", sh_line(&m.etcd_flags));
        }
    }
    s
}

pub(crate) fn stop_step(m: &PlanMember) -> String {
    match m.runs_as {
        RunsAs::Systemd => format!("systemctl stop {}", m.unit),
        RunsAs::StaticPod => {
            let dir = m.manifest.rsplit_once('/').map_or(".", |(d, _)| d);
            format!(
                "mkdir -p /etc/kubernetes/manifests-aside && mv {dir}/kube-apiserver.yaml {} /etc/kubernetes/manifests-aside/   # the kubelet stops both pods",
                m.manifest
            )
        }
        RunsAs::Command => "stop the etcd process (SIGTERM), and anything that restarts it".into(),
    }
}

/// Step 1's check: nothing answers on the old cluster's client URLs (from the backup's
/// manifest). A TCP connect, so it needs neither the old cluster's TLS files nor its
/// credentials, and cannot pass while an old member listens.
fn old_members_stopped_check(plan: &Plan) -> String {
    let mut hostports: Vec<String> = Vec::new();
    for u in &plan.old_client_urls {
        let hp = crate::source::etcd::strip_scheme(u)
            .split('/')
            .next()
            .unwrap_or_default()
            .replace(['[', ']'], "");
        if !hp.is_empty() && !hostports.contains(&hp) {
            hostports.push(hp);
        }
    }
    if hostports.is_empty() {
        return "Check: the old cluster's client URLs are not known (the plan restores a member's data dir): on every old node, `pgrep -a etcd` prints nothing.\n".into();
    }
    format!(
        "Check (bash; exit 0 when no old member answers on its client URL, from the backup's manifest):\n\n    \
up=0; for hp in {}; do if timeout 3 bash -c \"exec 3<>/dev/tcp/${{hp%:*}}/${{hp##*:}}\" 2>/dev/null; then echo \"$hp still answers: stop that member\"; up=1; fi; done; test $up = 0\n",
        hostports.join(" ")
    )
}

/// `mv DIR DIR.before-restore-<now>`, each path one shell word.
fn move_aside(dir: &str) -> String {
    format!(
        "mv {} {}.before-restore-$(date -u +%Y%m%dT%H%M%SZ)",
        sh_word(dir),
        sh_word(dir)
    )
}

/// RUNBOOK.md: all nodes, in order, with the checks between steps.
pub fn runbook(plan: &Plan) -> String {
    let mut s = String::new();
    let ep: Vec<&str> = plan
        .members
        .iter()
        .filter_map(|m| m.client_urls.first().map(String::as_str))
        .collect();
    let endpoints = ep.join(",");
    let _ = writeln!(s, "# Restore runbook: backup {}\n", plan.backup_id);
    let _ = writeln!(
        s,
        "Restores backup `{}` (revision {}, from `{}`, cluster {} before) as a NEW cluster of {} members \
with token `{}`. etcd will give it cluster id `{}`. Generated by `lifeboat restore plan`; \
plan.json holds the same values for scripts.\n",
        plan.backup_id,
        plan.revision,
        plan.from,
        plan.old_cluster_id,
        plan.members.len(),
        plan.cluster_token,
        plan.cluster_id
    );
    if let Some(r) = plan.to_revision {
        let _ = writeln!(
            s,
            "Point-in-time restore to revision {r}{}: the changes captured after the backup up to revision {r} \
are replayed onto it with their original revisions, leases and compactions, so the restored cluster starts at \
revision {r}.{} Only lifeboat's own writer replays them: lifeboat must be installed on every node.\n",
            plan.to_time
                .as_deref()
                .map(|t| format!(" (the newest captured revision at {t})"))
                .unwrap_or_default(),
            if plan.replay.as_ref().is_some_and(|rp| rp.compacted) {
                format!(
                    " They are compacted at revision {} as they are replayed (`--compact`): the restored cluster serves \
reads at revisions {} and {r} and watches from {r} on; older revisions are refused as compacted.{}",
                    r - 1,
                    r - 1,
                    if plan.replay.as_ref().is_some_and(|rp| rp.edits.is_some()) {
                        format!(
                            " The replay's result is kept in `{}` beside plan.json: copy it with the plan, and each node commits it instead of reading the captured changes again.",
                            super::pitr::EDITS_FILE
                        )
                    } else {
                        String::new()
                    }
                )
            } else {
                String::new()
            }
        );
    }
    for w in &plan.warnings {
        let _ = writeln!(s, "> Warning: {w}\n");
    }
    let _ = writeln!(s, "| member | host | member id | data dir | peer URLs |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for m in &plan.members {
        let _ = writeln!(
            s,
            "| {} | {} | `{}` | {} | {} |",
            m.name,
            m.host,
            m.member_id,
            m.data_dir,
            m.peer_urls.join(" ")
        );
    }
    let _ = writeln!(s, "\n## 1. Stop everything (every node)\n");
    let _ = writeln!(
        s,
        "Stop kube-apiservers first (they would write to a half-restored cluster), then etcd on every node. \
No member of the old cluster may run: a restored member that reached one would be refused (different cluster id), \
and the old one would keep serving stale data.\n"
    );
    for m in &plan.members {
        let _ = writeln!(s, "- on {} ({}): `{}`", m.host, m.name, stop_step(m));
    }
    let _ = writeln!(s, "\n{}", old_members_stopped_check(plan));
    let _ = writeln!(
        s,
        "## 2. Move the old data dirs aside (every node; never delete)\n"
    );
    for m in &plan.members {
        let _ = writeln!(
            s,
            "- on {}: `{}`{}",
            m.host,
            move_aside(&m.data_dir),
            m.wal_dir
                .as_ref()
                .map(|w| format!(" and `{}`", move_aside(w)))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(s, "\n## 3. Restore each node's data dir\n");
    let _ = writeln!(
        s,
        "Copy this directory to every node and run that node's script as root: it refuses to run on \
the wrong host, while a process (etcd) holds the data dir, over a data dir another plan restored, \
or over a non-empty data dir, runs `lifeboat restore apply --plan DIR --node NAME` \
(fetch, verify the digests, write the data dir, check the member id and cluster id it wrote) \
and prints the configuration to change. Where lifeboat is not installed, copy the snapshot made by \
`lifeboat fetch --from {} {} --out snapshot.db` into this directory first; the script then runs:\n",
        plan.from, plan.backup_id
    );
    for m in &plan.members {
        let without = if let Some(r) = plan.to_revision {
            format!("lifeboat is needed there: etcd's tools cannot replay the captured changes up to revision {r}")
        } else if plan.bump_revision.is_some()
            && super::plan::supports_bump(&m.etcd_version) == Some(false)
        {
            format!(
                "lifeboat is needed there: etcd {}'s tool cannot bump the revision",
                m.etcd_version
            )
        } else {
            format!("or `{}`", sh_line(&restore_command(plan, m, "snapshot.db")))
        };
        let _ = writeln!(s, "- on {}: `./{}.sh`, {without}", m.host, m.name);
    }
    if let Some(n) = plan.bump_revision {
        let _ = writeln!(
            s,
            "\nThe restore bumps the revision by {n} and marks the old revisions compacted: Kubernetes \
watchers hold revisions up to the moment of the disaster, newer than this backup; without the bump \
they would resume watching from those revisions and never see the restored objects. With it, every \
watcher gets `compacted` and relists."
        );
    }
    let _ = writeln!(s, "\n## 4. Change the configuration (every node)\n");
    for m in &plan.members {
        let _ = writeln!(s, "### {} ({})\n\n```", m.name, m.host);
        s.push_str(&config_changes(m));
        let _ = writeln!(s, "```\n");
    }
    let _ = writeln!(s, "## 5. Start etcd on every node, then check\n");
    let _ = writeln!(
        s,
        "Start all members within a minute of each other (each waits for a quorum). Then, from this \
directory, before anything else writes to the cluster:\n\n    \
lifeboat restore check --plan .\n\n\
Give it the cluster's TLS files (`--cacert`, `--cert`, `--key`) and, with auth on, a user that may \
read every key: `--user root` (or ETCDCTL_USER and ETCDCTL_PASSWORD). It asks every member at its client \
URL ({endpoints}) and exits 0 when every member answers with the plan's member id ({}) and cluster id \
`{}`, there is exactly one leader, and the revision ({}), hashkv ({}) and key count ({}) are the ones \
the plan predicted from the backup on every member. Exit 4 names the members that do not answer or \
belong to another cluster; exit 3 means the data are not the backup's.\n",
        plan.members
            .iter()
            .map(|m| format!("{} `{}`", m.name, m.member_id))
            .collect::<Vec<_>>()
            .join(", "),
        plan.cluster_id,
        plan.expected_revision.map_or("-".into(), |r| r.to_string()),
        match (plan.expected_hashkv, plan.expected_hashkv_while_compacting) {
            (None, _) => "-".into(),
            (Some(h), None) => h.to_string(),
            // No key is live at the revision: etcd hashes every entry still stored.
            (Some(h), Some(w)) => format!(
                "{h}, or {w} while a member finishes the compaction it resumes at start"
            ),
        },
        plan.expected_keys.map_or("-".into(), |k| k.to_string()),
    );
    let _ = writeln!(s, "## 6. Restart the kube-apiservers\n");
    let _ = writeln!(
        s,
        "Move the kube-apiserver manifests back (`mv /etc/kubernetes/manifests-aside/kube-apiserver.yaml /etc/kubernetes/manifests/`), \
or start the apiservers as your site does, only after step 5's checks pass.\n"
    );
    let _ = writeln!(s, "## Rolling back\n");
    let _ = writeln!(
        s,
        "Nothing was deleted. Stop etcd on every node, move each restored data dir aside, move the \
`*.before-restore-*` dir back to its old name, restore the old configuration (old token, old \
initial-cluster) and start the old members."
    );
    s
}

/// `DIR/<name>.sh`; `id` is the plan's id (its plan.json's digest), recorded in the data
/// dir's mark so that no node applies another plan over this one's.
pub fn node_script(plan: &Plan, m: &PlanMember, id: &PlanId) -> String {
    let q = sh_quote;
    let mut s = String::new();
    let _ = writeln!(s, "#!/usr/bin/env bash");
    let _ = writeln!(
        s,
        "# Restore member {} (id {}) of the new cluster {} from backup {}.",
        m.name, m.member_id, plan.cluster_id, plan.backup_id
    );
    let _ = writeln!(
        s,
        "# Generated by `lifeboat restore plan`; see RUNBOOK.md for the steps around it.\n\
# Safe to run again: a data dir this plan already restored is left alone."
    );
    let _ = writeln!(s, "set -euo pipefail\n");
    let _ = writeln!(
        s,
        "PLAN_DIR=\"$(cd \"$(dirname \"${{BASH_SOURCE[0]}}\")\" && pwd)\""
    );
    let _ = writeln!(s, "NAME={}", q(&m.name));
    let _ = writeln!(s, "HOST={}", q(&m.host));
    let _ = writeln!(s, "DATA_DIR={}", q(&m.data_dir));
    let _ = writeln!(s, "WAL_DIR={}", q(m.wal_dir.as_deref().unwrap_or("")));
    let _ = writeln!(s, "MARK=\"$DATA_DIR.lifeboat-restored\"");
    let _ = writeln!(s, "PLAN={}", q(&id.digest));
    let _ = writeln!(s, "THIS_PLAN={}", q(&id.to_string()));
    // A mark written before plans had ids.
    let _ = writeln!(
        s,
        "LEGACY_MARK={}",
        q(&format!(
            "{} {} {}",
            m.member_id, plan.cluster_id, plan.backup_id
        ))
    );
    let _ = writeln!(s, "STOP={}\n", q(&stop_step(m)));
    let _ = writeln!(
        s,
        r#"if [ "${{LIFEBOAT_SKIP_HOST_CHECK:-}}" != 1 ]; then
  here=" $(hostname) $(hostname -f 2>/dev/null || true) $(hostname -I 2>/dev/null || true) "
  case "$here" in
    *" $HOST "*) ;;
    *) echo "$NAME.sh: this script restores $NAME on host $HOST, but this is$here; run it on $HOST (LIFEBOAT_SKIP_HOST_CHECK=1 to override)" >&2; exit 2 ;;
  esac
fi
"#
    );
    s.push_str(super::guard::sh_running_check());
    let _ = writeln!(
        s,
        r#"
mark_field() {{ sed -n "s/^$1=//p" "$MARK" | head -n 1; }}
if [ -f "$MARK" ] && [ -d "$DATA_DIR/member" ] && {{ [ "$(mark_field plan)" = "$PLAN" ] || [ "$(head -n 1 "$MARK")" = "$LEGACY_MARK" ]; }}; then
  echo "$NAME: $DATA_DIR already restored by this plan ($THIS_PLAN); nothing to do"
elif [ -f "$MARK" ] && [ -d "$DATA_DIR/member" ]; then
  other="an earlier plan ($(head -n 1 "$MARK"))"
  [ -z "$(mark_field plan)" ] || other="plan $(mark_field plan) (token $(mark_field token), backup $(mark_field backup)) at $(mark_field written)"
  echo "$NAME.sh: $DATA_DIR was restored by $other, not by this $THIS_PLAN: members written by two plans form two clusters (request cluster ID mismatch); apply the plan the other members ran, or move that restored dir aside to apply this one (lifeboat restore apply --force does)" >&2
  exit 2
else
  lifeboat_refuse_running 0 "$STOP" "$DATA_DIR" ${{WAL_DIR:+"$WAL_DIR"}}
  if [ -d "$DATA_DIR" ] && [ -n "$(ls -A "$DATA_DIR")" ]; then
    echo "$NAME.sh: $DATA_DIR is not empty; move it aside first (never delete it): mv '$DATA_DIR' '$DATA_DIR.before-restore-$(date -u +%Y%m%dT%H%M%SZ)'" >&2
    exit 2
  elif command -v lifeboat >/dev/null 2>&1; then
    lifeboat restore apply --plan "$PLAN_DIR" --node "$NAME"
  else"#
    );
    if let Some(r) = plan.to_revision {
        let _ = writeln!(
            s,
            r#"    echo "$NAME.sh: this plan restores to revision {r} (point-in-time), which only lifeboat's own writer can (etcd's tools cannot replay captured changes): install lifeboat on this node" >&2
    exit 2
  fi
fi
"#
        );
        let _ = writeln!(s, "cat <<'LIFEBOAT_CONFIG'");
        let _ = writeln!(s, "Configuration changes for {}:", m.name);
        s.push_str(&config_changes(m));
        let _ = writeln!(s, "LIFEBOAT_CONFIG");
        return s;
    }
    let v34 = m.etcd_version.starts_with("3.4");
    let tool = if v34 { "etcdctl" } else { "etcdutl" };
    let env = if v34 { "ETCDCTL_API=3 " } else { "" };
    let _ = writeln!(
        s,
        r#"    if ! command -v {tool} >/dev/null 2>&1; then
      echo "$NAME.sh: neither lifeboat nor etcd's {tool} is installed here: install lifeboat on this node (see RUNBOOK.md)" >&2
      exit 2
    fi"#
    );
    if plan.bump_revision.is_some() {
        let _ = writeln!(
            s,
            r#"    help="$({env}{tool} snapshot restore --help 2>&1 || true)"
    case "$help" in
      *--bump-revision*) ;;
      *) echo "$NAME.sh: this plan bumps the revision, which this node's {tool} cannot do (etcdutl 3.5.10+ can) and lifeboat is not installed here: install lifeboat on this node, or re-plan with --no-bump-revision" >&2; exit 2 ;;
    esac"#
        );
    }
    let _ = writeln!(
        s,
        r#"    SNAPSHOT="${{SNAPSHOT:-$PLAN_DIR/snapshot.db}}"
    if [ ! -f "$SNAPSHOT" ]; then
      echo "$NAME.sh: lifeboat is not installed here and $SNAPSHOT is missing: copy the output of \`lifeboat fetch\` there (see RUNBOOK.md)" >&2
      exit 2
    fi"#
    );
    let cmd: Vec<String> = restore_command(plan, m, "SNAPSHOT_PLACEHOLDER")
        .iter()
        .map(|a| q(a).replace("SNAPSHOT_PLACEHOLDER", "'\"$SNAPSHOT\"'"))
        .collect();
    let _ = writeln!(s, "    {env}{}", cmd.join(" "));
    let _ = writeln!(
        s,
        "    printf 'plan=%s\\ntoken=%s\\nbackup=%s\\nmember=%s\\ncluster=%s\\nwritten=%s\\n' \"$PLAN\" {} {} {} {} \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\" > \"$MARK\"",
        q(&id.token),
        q(&id.backup_id),
        q(&m.member_id.to_string()),
        q(&plan.cluster_id.to_string())
    );
    let _ = writeln!(s, "  fi");
    let _ = writeln!(s, "fi\n");
    let _ = writeln!(s, "cat <<'LIFEBOAT_CONFIG'");
    let _ = writeln!(s, "Configuration changes for {}:", m.name);
    s.push_str(&config_changes(m));
    let _ = writeln!(s, "LIFEBOAT_CONFIG");
    s
}

#[cfg(test)]
mod tests;
