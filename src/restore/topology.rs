//! The topology file: where each restored member will live and how it runs there.
//!
//! Every value keeps its span in the file, so that a validation problem names the key *and*
//! the line: an operator editing the file at 3 am should not have to hunt for which of three
//! near-identical `[[member]]` tables is wrong. Validation collects every problem before
//! anything is written, because a plan that is half right is worse than no plan.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::ids;
use crate::{Error, Result};

/// How etcd is run on a member's host: decides which configuration the runbook changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunsAs {
    /// A systemd unit whose flags come from an environment file (`ETCD_*` lines).
    Systemd,
    /// A kubeadm static pod: the flags are in the pod manifest.
    StaticPod,
    /// A plain command line.
    Command,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    cluster_token: Spanned<String>,
    #[serde(default)]
    etcd_version: Option<Spanned<String>>,
    /// The token of the cluster being replaced, when known: the new one must differ.
    #[serde(default)]
    old_cluster_token: Option<Spanned<String>>,
    #[serde(default, rename = "member")]
    members: Vec<Spanned<RawMember>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    name: Spanned<String>,
    peer_urls: Spanned<Vec<Spanned<String>>>,
    client_urls: Spanned<Vec<Spanned<String>>>,
    data_dir: Spanned<String>,
    #[serde(default)]
    wal_dir: Option<Spanned<String>>,
    #[serde(default)]
    host: Option<Spanned<String>>,
    #[serde(default)]
    runs_as: Option<Spanned<RunsAs>>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    env_file: Option<String>,
    #[serde(default)]
    manifest: Option<String>,
    #[serde(default)]
    etcd_version: Option<Spanned<String>>,
    #[serde(default)]
    peer_cert_file: Option<String>,
    #[serde(default)]
    peer_key_file: Option<String>,
    #[serde(default)]
    peer_trusted_ca_file: Option<String>,
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    trusted_ca_file: Option<String>,
}

/// A member of the topology, validated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Member {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub data_dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_dir: Option<String>,
    /// Where the member runs (the topology's `host`, else the host of its first peer URL).
    pub host: String,
    pub runs_as: RunsAs,
    pub unit: String,
    pub env_file: String,
    pub manifest: String,
    pub etcd_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_trusted_ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_ca_file: Option<String>,
    /// Line of the member's `name` key, for problems found later (against the backup).
    #[serde(skip)]
    pub line: usize,
    /// Line of the member's own `etcd_version`, None when it inherits the top-level one.
    #[serde(skip)]
    pub etcd_version_line: Option<usize>,
}

/// A validated topology.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The token as written (`generate` is resolved by the plan).
    pub cluster_token: String,
    pub cluster_token_line: usize,
    pub etcd_version: String,
    pub etcd_version_line: usize,
    pub members: Vec<Member>,
    /// Things worth saying that do not stop the plan (an even member count).
    pub warnings: Vec<String>,
}

/// One thing wrong with a topology: the key, its line, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, {}: {}", self.line, self.key, self.message)
    }
}

/// The usage error (exit 2) for a list of problems in `file`: all of them on one line.
pub fn problems_error(file: &str, problems: &[Problem]) -> Error {
    let all: Vec<String> = problems.iter().map(Problem::to_string).collect();
    Error::Flag {
        flag: "--topology".into(),
        message: format!("{file}: {}", all.join("; ")),
    }
}

/// 1-based line of a byte offset.
fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Read and validate a topology file.
pub fn load(path: &Path) -> Result<Topology> {
    let src = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&src).map_err(|p| problems_error(&path.display().to_string(), &p))
}

/// Parse and validate topology text; every problem found, or the topology.
pub fn parse(src: &str) -> std::result::Result<Topology, Vec<Problem>> {
    let raw: RawTopology = toml::from_str(src).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(src, s.start));
        vec![Problem {
            key: "topology".into(),
            line,
            message: e.message().trim().to_string(),
        }]
    })?;
    Validator::new(src).run(raw)
}

struct Validator<'a> {
    src: &'a str,
    problems: Vec<Problem>,
}

impl<'a> Validator<'a> {
    fn new(src: &'a str) -> Self {
        Validator {
            src,
            problems: Vec::new(),
        }
    }

    fn at<T>(&self, s: &Spanned<T>) -> usize {
        line_of(self.src, s.span().start)
    }

    fn problem(&mut self, key: String, line: usize, message: impl Into<String>) {
        self.problems.push(Problem {
            key,
            line,
            message: message.into(),
        });
    }

    fn run(mut self, raw: RawTopology) -> std::result::Result<Topology, Vec<Problem>> {
        let token_line = self.at(&raw.cluster_token);
        let token = raw.cluster_token.get_ref().trim().to_string();
        if token.is_empty() {
            self.problem(
                "cluster_token".into(),
                token_line,
                "empty; give a new token or \"generate\"",
            );
        }
        if let Some(old) = &raw.old_cluster_token {
            if old.get_ref().trim() == token {
                self.problem(
                    "cluster_token".into(),
                    token_line,
                    format!(
                        "{token:?} is the old cluster's token (old_cluster_token, line {}): restored members could join old ones still running; use a new token or \"generate\"",
                        self.at(old)
                    ),
                );
            }
        }
        let (version, version_line) = match &raw.etcd_version {
            Some(v) => (v.get_ref().trim().to_string(), self.at(v)),
            None => ("3.5".to_string(), 1),
        };
        self.check_version("etcd_version".into(), version_line, &version);
        if raw.members.is_empty() {
            self.problem(
                "member".into(),
                1,
                "no [[member]] tables: list every member of the restored cluster",
            );
        }
        let mut members = Vec::new();
        for (i, m) in raw.members.iter().enumerate() {
            members.push(self.member(i, m.get_ref(), &version));
        }
        self.check_unique(&raw.members, &members);
        let mut warnings = Vec::new();
        let n = members.len();
        if n > 0 && n % 2 == 0 {
            warnings.push(format!(
                "{n} members tolerate no more failures than {}: an odd count is better",
                n - 1
            ));
        }
        if n > 7 {
            warnings.push(format!(
                "{n} members: more than 7 slows every write; etcd recommends 3 or 5"
            ));
        }
        if !self.problems.is_empty() {
            self.problems.sort_by_key(|p| p.line);
            return Err(self.problems);
        }
        Ok(Topology {
            cluster_token: token,
            cluster_token_line: token_line,
            etcd_version: version,
            etcd_version_line: version_line,
            members,
            warnings,
        })
    }

    fn check_version(&mut self, key: String, line: usize, v: &str) {
        if !is_planned_version(v) {
            self.problem(
                key,
                line,
                format!("{v:?}: lifeboat plans restores for etcd 3.4, 3.5, 3.6 and 3.7 (write e.g. \"3.5\", \"3.5.16\" or \"3.6.16\")"),
            );
        }
    }

    fn member(&mut self, i: usize, m: &RawMember, default_version: &str) -> Member {
        let k = |field: &str| format!("member[{i}].{field}");
        let name = m.name.get_ref().trim().to_string();
        if name.is_empty() || name.contains([',', '=', ' ']) {
            self.problem(
                k("name"),
                self.at(&m.name),
                format!("{name:?}: a name must be non-empty, without ',', '=' or spaces"),
            );
        }
        let mut peer_urls = Vec::new();
        if m.peer_urls.get_ref().is_empty() {
            self.problem(
                k("peer_urls"),
                self.at(&m.peer_urls),
                "empty: a member needs a peer URL",
            );
        }
        for u in m.peer_urls.get_ref() {
            match ids::normalize_peer_url(u.get_ref()) {
                Ok(n) => peer_urls.push(n),
                Err(e) => self.problem(k("peer_urls"), self.at(u), e.to_string()),
            }
        }
        let mut client_urls = Vec::new();
        if m.client_urls.get_ref().is_empty() {
            self.problem(
                k("client_urls"),
                self.at(&m.client_urls),
                "empty: a member needs a client URL",
            );
        }
        for u in m.client_urls.get_ref() {
            match ids::normalize_peer_url(u.get_ref()) {
                Ok(n) => client_urls.push(n),
                Err(e) => self.problem(
                    k("client_urls"),
                    self.at(u),
                    e.to_string().replacen("peer URL", "client URL", 1),
                ),
            }
        }
        let data_dir = m.data_dir.get_ref().trim().to_string();
        self.check_absolute(k("data_dir"), self.at(&m.data_dir), &data_dir);
        let wal_dir = m.wal_dir.as_ref().map(|w| {
            let s = w.get_ref().trim().to_string();
            self.check_absolute(k("wal_dir"), self.at(w), &s);
            if nested(&s, &data_dir) || nested(&data_dir, &s) {
                self.problem(
                    k("wal_dir"),
                    self.at(w),
                    format!("{s} and data_dir {data_dir} overlap: a restore moves each aside on its own and writes each afresh; give a WAL dir outside the data dir (or leave wal_dir out: etcd keeps the WAL in the data dir)"),
                );
            }
            s
        });
        let runs_as = m.runs_as.as_ref().map_or(RunsAs::Command, |r| *r.get_ref());
        let https = peer_urls
            .iter()
            .any(|u| u.starts_with("https://") || u.starts_with("unixs://"));
        if https && (m.peer_cert_file.is_none() || m.peer_key_file.is_none()) {
            self.problem(
                k("peer_cert_file"),
                self.at(&m.peer_urls),
                "https peer URLs need peer_cert_file and peer_key_file (the member's --peer-cert-file/--peer-key-file), and usually peer_trusted_ca_file",
            );
        }
        let etcd_version_line = m.etcd_version.as_ref().map(|v| self.at(v));
        let etcd_version = match &m.etcd_version {
            Some(v) => {
                let s = v.get_ref().trim().to_string();
                self.check_version(k("etcd_version"), self.at(v), &s);
                s
            }
            None => default_version.to_string(),
        };
        let host = match &m.host {
            Some(h) => h.get_ref().trim().to_string(),
            None => peer_urls
                .first()
                .and_then(|u| u.split_once("://"))
                .and_then(|(_, rest)| rest.rsplit_once(':'))
                .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
                .unwrap_or_default(),
        };
        Member {
            name,
            peer_urls,
            client_urls,
            data_dir,
            wal_dir,
            host,
            runs_as,
            unit: m.unit.clone().unwrap_or_else(|| "etcd.service".into()),
            env_file: m
                .env_file
                .clone()
                .unwrap_or_else(|| "/etc/default/etcd".into()),
            manifest: m
                .manifest
                .clone()
                .unwrap_or_else(|| "/etc/kubernetes/manifests/etcd.yaml".into()),
            etcd_version,
            peer_cert_file: m.peer_cert_file.clone(),
            peer_key_file: m.peer_key_file.clone(),
            peer_trusted_ca_file: m.peer_trusted_ca_file.clone(),
            cert_file: m.cert_file.clone(),
            key_file: m.key_file.clone(),
            trusted_ca_file: m.trusted_ca_file.clone(),
            line: self.at(&m.name),
            etcd_version_line,
        }
    }

    fn check_absolute(&mut self, key: String, line: usize, dir: &str) {
        if !dir.starts_with('/') {
            self.problem(
                key,
                line,
                format!("{dir:?} is not an absolute path: the scripts run from any directory, write it from /"),
            );
        }
    }

    /// Names unique; every peer URL used once in the whole cluster (etcd refuses a URL listed
    /// twice); data dirs unique per host.
    fn check_unique(&mut self, raw: &[Spanned<RawMember>], members: &[Member]) {
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut urls: BTreeMap<&str, usize> = BTreeMap::new();
        let mut dirs: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (i, (m, r)) in members.iter().zip(raw).enumerate() {
            let r = r.get_ref();
            if let Some(&j) = names.get(m.name.as_str()) {
                self.problem(
                    format!("member[{i}].name"),
                    self.at(&r.name),
                    format!(
                        "{:?} is also the name of member[{j}] (line {}); names must be unique",
                        m.name, members[j].line
                    ),
                );
            } else {
                names.insert(&m.name, i);
            }
            for u in &m.peer_urls {
                if let Some(&j) = urls.get(u.as_str()) {
                    let other = if j == i {
                        "this member already lists it".to_string()
                    } else {
                        format!(
                            "also a peer URL of {:?} (line {})",
                            members[j].name, members[j].line
                        )
                    };
                    self.problem(
                        format!("member[{i}].peer_urls"),
                        self.at(&r.peer_urls),
                        format!("{u} is {other}; every peer URL must be unique in the cluster"),
                    );
                } else {
                    urls.insert(u, i);
                }
            }
            for d in std::iter::once(&m.data_dir).chain(m.wal_dir.as_ref()) {
                if let Some(&j) = dirs.get(&(m.host.as_str(), d.as_str())) {
                    self.problem(
                        format!("member[{i}].data_dir"),
                        self.at(&r.data_dir),
                        format!(
                            "{d} on host {} is also used by {:?} (line {}); members on one host need their own dirs",
                            m.host, members[j].name, members[j].line
                        ),
                    );
                } else {
                    dirs.insert((&m.host, d), i);
                }
            }
        }
    }
}

/// Whether directory `inner` is `outer` or lies under it (lexically, as the topology
/// spells them).
fn nested(inner: &str, outer: &str) -> bool {
    let (i, o) = (inner.trim_end_matches('/'), outer.trim_end_matches('/'));
    i == o || i.strip_prefix(o).is_some_and(|rest| rest.starts_with('/'))
}

/// A starting topology from a backup's members, for the operator to edit: same names and
/// URLs, a generated token, and the data dir etcd uses by default.
pub fn starting_topology(m: &crate::catalog::Manifest) -> String {
    use std::fmt::Write as _;
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"));
    let list = |v: &[String]| {
        let items: Vec<String> = v.iter().map(|s| q(s)).collect();
        format!("[{}]", items.join(", "))
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Starting topology from backup {} (cluster {}). Check every value: host, data_dir and\n# runs_as are guesses. Learners are left out (restore makes every member a voter).",
        m.id, m.cluster_id
    );
    let _ = writeln!(s, "cluster_token = \"generate\"");
    // The backup's own full version: "3.5" would hide whether etcd's tool can bump the
    // revision (3.5.10+); edit it to what the nodes will run.
    let _ = writeln!(
        s,
        "etcd_version = {}   # the backup's; set what the restored nodes run",
        q(&m.etcd_version)
    );
    for mem in m.members.iter().filter(|x| !x.is_learner) {
        let host = mem
            .peer_urls
            .first()
            .and_then(|u| u.split_once("://"))
            .and_then(|(_, r)| r.rsplit_once(':'))
            .map_or("", |(h, _)| h);
        let _ = writeln!(s, "\n[[member]]");
        let _ = writeln!(s, "name = {}", q(&mem.name));
        let _ = writeln!(s, "peer_urls = {}", list(&mem.peer_urls));
        let _ = writeln!(s, "client_urls = {}", list(&mem.client_urls));
        let _ = writeln!(s, "data_dir = \"/var/lib/etcd\"");
        let _ = writeln!(s, "host = {}", q(host));
        let _ = writeln!(s, "runs_as = \"systemd\"");
        if mem.peer_urls.iter().any(|u| u.starts_with("https")) {
            let _ = writeln!(s, "peer_cert_file = \"/etc/etcd/pki/peer.crt\"");
            let _ = writeln!(s, "peer_key_file = \"/etc/etcd/pki/peer.key\"");
            let _ = writeln!(s, "peer_trusted_ca_file = \"/etc/etcd/pki/ca.crt\"");
        }
    }
    s
}

/// The etcd releases a plan can target: 3.4 to 3.7, as `3.N` or `3.N.P` (each tested by
/// booting natively restored members, docs/etcd-versions.md).
fn is_planned_version(v: &str) -> bool {
    ["3.4", "3.5", "3.6", "3.7"]
        .iter()
        .any(|m| v == *m || v.strip_prefix(m).is_some_and(|rest| rest.starts_with('.')))
}

#[cfg(test)]
mod tests;
