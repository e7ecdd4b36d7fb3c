//! `restore plan --mode replace-member`: one broken member of a healthy cluster, replaced in
//! the order that works (field notes §1).
//!
//! Snapshot-restoring the broken member alone makes a one-member cluster of its own (`request
//! cluster ID mismatch`); starting it again after `member remove` fails too. What works: on a
//! healthy member `member remove` then `member add` with the same peer URL; on the broken host
//! stop etcd, move the data dir aside, start with every member in `initial-cluster` and state
//! `existing`: it syncs from the leader. The live values (ids, URLs, a healthy endpoint) come
//! from the cluster itself, so the scripts need no editing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::runbook::sh_quote as q;
use super::topology::{RunsAs, Topology};
use crate::error::IoContext;
use crate::format::etcd::{ClusterId, MemberId};
use crate::source::etcd::{ClusterView, ConnectConfig};
use crate::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct ReplacePlan {
    pub mode: &'static str,
    pub member: String,
    pub old_member_id: MemberId,
    pub peer_urls: Vec<String>,
    pub data_dir: String,
    pub host: String,
    pub cluster_id: ClusterId,
    /// A healthy member's client URL, where `member remove/add` run.
    pub healthy_endpoint: String,
    /// `--initial-cluster` for the replaced member: every member, itself included.
    pub initial_cluster: String,
    pub scripts: Vec<String>,
}

/// Work out the replacement of `name` from the live cluster and the topology's entry for it.
pub fn replace_plan(view: &ClusterView, t: &Topology, name: &str) -> Result<ReplacePlan> {
    let flag = |m: String| Error::Flag {
        flag: "--member".into(),
        message: m,
    };
    let names: Vec<&str> = view.members.iter().map(|m| m.name.as_str()).collect();
    let broken = view
        .members
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| {
            flag(format!(
                "the cluster has no member {name:?} (members: {})",
                names.join(", ")
            ))
        })?;
    let topo = t.members.iter().find(|m| m.name == name).ok_or_else(|| {
        flag(format!(
            "the topology has no [[member]] named {name:?}: it says where that member's data dir is and how etcd runs there"
        ))
    })?;
    let healthy = view
        .endpoints
        .iter()
        .find(|e| e.reachable && e.member_id != broken.id && e.error.is_none())
        .ok_or_else(|| {
            Error::Etcd {
                endpoint: view
                    .endpoints
                    .first()
                    .map(|e| e.endpoint.clone())
                    .unwrap_or_default(),
                kind: crate::error::EtcdErrorKind::Unavailable,
                message: format!(
                    "no healthy member other than {name} answers: replacing a member needs a working quorum (if the quorum is lost, restore the cluster instead: restore plan --from)"
                ),
            }
        })?;
    let initial: Vec<String> = view
        .members
        .iter()
        .filter(|m| !m.is_learner)
        .flat_map(|m| {
            let urls = if m.id == broken.id {
                &broken.peer_urls
            } else {
                &m.peer_urls
            };
            urls.iter().map(move |u| format!("{}={u}", m.name))
        })
        .collect();
    Ok(ReplacePlan {
        mode: "replace-member",
        member: name.to_string(),
        old_member_id: MemberId(broken.id),
        peer_urls: broken.peer_urls.clone(),
        data_dir: topo.data_dir.clone(),
        host: topo.host.clone(),
        cluster_id: ClusterId(view.cluster_id.unwrap_or(0)),
        healthy_endpoint: healthy.endpoint.clone(),
        initial_cluster: initial.join(","),
        scripts: Vec::new(),
    })
    .map(|mut p| {
        p.scripts = vec![
            "1-on-a-healthy-member.sh".into(),
            format!("2-on-{name}.sh"),
            "3-check.sh".into(),
        ];
        let _ = topo;
        p
    })
}

fn etcdctl(cfg: &ConnectConfig, endpoint: &str) -> String {
    let mut s = format!("ETCDCTL_API=3 etcdctl --endpoints={}", q(endpoint));
    for (flag, v) in [
        ("--cacert", &cfg.cacert),
        ("--cert", &cfg.cert),
        ("--key", &cfg.key),
    ] {
        if let Some(p) = v {
            let _ = write!(s, " {flag}={}", q(&p.display().to_string()));
        }
    }
    s
}

/// Write the plan (replace.json) and the three scripts into `out`.
pub fn write_replace(
    p: &ReplacePlan,
    t: &Topology,
    cfg: &ConnectConfig,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let topo = t
        .members
        .iter()
        .find(|m| m.name == p.member)
        .ok_or_else(|| Error::Usage(format!("no member {} in the topology", p.member)))?;
    std::fs::create_dir_all(out).at(out)?;
    let ctl = etcdctl(cfg, &p.healthy_endpoint);
    let peers = p.peer_urls.join(",");
    let head = "#!/usr/bin/env bash\n# Generated by `lifeboat restore plan --mode replace-member`.\nset -euo pipefail\n";
    let s1 = format!(
        r#"{head}# Step 1, on any healthy member: replace {name} ({old}) in the membership.
CTL() {{ {ctl} "$@"; }}
if CTL member list | grep -q '^{old},'; then
  CTL member remove {old}
fi
# etcd refuses a new voter until the remaining members have been healthy for a few seconds
# after the removal ("unhealthy cluster"): try again for up to a minute.
tries=0
until CTL member list | grep -qF ', {peers_first}' || CTL member add {name_q} --peer-urls={peers_q}; do
  tries=$((tries + 1))
  if [ "$tries" -ge 30 ]; then echo "member add still refused after 30 tries; check the cluster: lifeboat status" >&2; exit 1; fi
  echo "the cluster does not accept a new member yet; trying again in 2 s" >&2
  sleep 2
done
CTL member list
echo "next: run 2-on-{name}.sh on {host}"
"#,
        name = p.member,
        name_q = q(&p.member),
        old = p.old_member_id,
        peers_first = p.peer_urls.first().cloned().unwrap_or_default(),
        peers_q = q(&peers),
        host = p.host,
    );
    let stop = match topo.runs_as {
        RunsAs::Systemd => format!("systemctl stop {} || true", q(&topo.unit)),
        RunsAs::StaticPod => format!(
            "mkdir -p /etc/kubernetes/manifests-aside && if [ -f {m} ]; then mv {m} /etc/kubernetes/manifests-aside/; fi",
            m = q(&topo.manifest)
        ),
        RunsAs::Command => "echo 'stop etcd on this host now if it runs (SIGTERM); this script refuses to go on while it does'".into(),
    };
    // systemctl stop waits for etcd to exit; the kubelet stops a static pod in its own time.
    let (wait, hint) = match topo.runs_as {
        RunsAs::Systemd => (30, format!("systemctl stop {}", topo.unit)),
        RunsAs::StaticPod => (
            90,
            format!("move {} out of the kubelet's manifest dir", topo.manifest),
        ),
        RunsAs::Command => (0, "stop the etcd process (SIGTERM)".to_string()),
    };
    let running = format!(
        "{}lifeboat_refuse_running {wait} {} \"$DATA_DIR\"{}",
        super::guard::sh_running_check(),
        q(&hint),
        topo.wal_dir
            .as_deref()
            .map(|w| format!(" {}", q(w)))
            .unwrap_or_default()
    );
    let config = match topo.runs_as {
        RunsAs::Systemd => format!(
            "In {env} set:\n  ETCD_INITIAL_CLUSTER={ic}\n  ETCD_INITIAL_CLUSTER_STATE=existing\nthen: systemctl daemon-reload && systemctl start {unit}",
            env = topo.env_file,
            ic = p.initial_cluster,
            unit = topo.unit
        ),
        RunsAs::StaticPod => format!(
            "In /etc/kubernetes/manifests-aside/{f} set:\n    - --initial-cluster={ic}\n    - --initial-cluster-state=existing\nthen move it back to {m}",
            f = topo.manifest.rsplit('/').next().unwrap_or("etcd.yaml"),
            ic = p.initial_cluster,
            m = topo.manifest
        ),
        RunsAs::Command => format!(
            "Start etcd with its usual flags, and:\n  --initial-cluster={} --initial-cluster-state=existing",
            p.initial_cluster
        ),
    };
    let s2 = format!(
        r#"{head}# Step 2, on {host}: the broken member {name} starts empty and syncs from the leader.
HOST={host_q}
DATA_DIR={dd}
if [ "${{LIFEBOAT_SKIP_HOST_CHECK:-}}" != 1 ]; then
  here=" $(hostname) $(hostname -f 2>/dev/null || true) $(hostname -I 2>/dev/null || true) "
  case "$here" in *" $HOST "*) ;; *) echo "this script is for $HOST, this is$here (LIFEBOAT_SKIP_HOST_CHECK=1 to override)" >&2; exit 2 ;; esac
fi
{stop}
{running}
if [ -d "$DATA_DIR" ] && [ -n "$(ls -A "$DATA_DIR")" ]; then
  aside="$DATA_DIR.before-replace-$(date -u +%Y%m%dT%H%M%SZ)"
  mv "$DATA_DIR" "$aside"
  echo "moved $DATA_DIR aside to $aside (never deleted)"
fi
cat <<'LIFEBOAT_CONFIG'
{config}
LIFEBOAT_CONFIG
"#,
        host = p.host,
        host_q = q(&p.host),
        name = p.member,
        dd = q(&p.data_dir),
    );
    let s3 = format!(
        "{head}# Step 3: every member healthy, {name} started.\nCTL() {{ {ctl} \"$@\"; }}\nCTL endpoint health --cluster\nCTL member list -w table\n",
        name = p.member
    );
    let mut files = Vec::new();
    let json = serde_json::to_string_pretty(p)
        .map_err(|e| Error::Internal(format!("cannot encode the plan: {e}")))?;
    for (name, text, exec) in [
        ("replace.json".to_string(), json + "\n", false),
        (p.scripts[0].clone(), s1, true),
        (p.scripts[1].clone(), s2, true),
        (p.scripts[2].clone(), s3, true),
    ] {
        let path = out.join(&name);
        std::fs::write(&path, text).at(&path)?;
        if exec {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).at(&path)?;
        }
        files.push(path);
    }
    Ok(files)
}
