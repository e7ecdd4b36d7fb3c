//! One configuration, merged once: the config file, then the environment, then flags;
//! later sources win (rustic's pattern).
//!
//! The same structs are the file's TOML sections (serde) and the commands' flags (clap), so
//! a setting has one name and one type wherever it is written. Every field is an `Option`:
//! `None` means "this source says nothing", which is what lets [`Layers`] tell a flag that
//! was given from a default and report where each effective value came from
//! (`lifeboat config check`). Defaults live in [`resolve`] and nowhere else in the CLI.

use std::path::PathBuf;

use serde::Deserialize;

pub mod capture;
mod env;
mod keys;
pub mod resolve;
pub mod s3;
pub mod values;

pub use capture::{CaptureConfig, CaptureSettings};
pub use env::{CONFIG_ENV, ENV_VARS};
pub use resolve::{Entry, Layers, Origin, ResolvedBackup};
pub use values::{parse_cron, parse_size, Dur, Secret, Size, UserSpec};

/// The whole config file. Unknown keys are errors: a typo must not silently fall back to a
/// default at 3 am.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub etcd: EtcdSettings,
    #[serde(default)]
    pub destination: Vec<DestinationConfig>,
    #[serde(default)]
    pub backup: BackupSettings,
    pub schedule: Option<ScheduleConfig>,
    pub retention: Option<RetentionConfig>,
    pub verify: Option<VerifyConfig>,
    pub metrics: Option<MetricsConfig>,
    /// `[capture]`: point-in-time recovery (`lifeboat capture`, and `lifeboat run` beside
    /// the schedule).
    pub capture: Option<capture::CaptureConfig>,
    /// The `--s3-*` flags and `LIFEBOAT_S3_*` variables (every S3 destination); in the file
    /// these keys live in each `[[destination]]`.
    #[serde(skip)]
    pub s3: s3::S3Options,
    #[serde(default)]
    pub encryption: EncryptionConfig,
}

/// `[encryption]`: the identity file that opens encrypted backups (`--identity`,
/// `LIFEBOAT_IDENTITY`). Recipients are per destination (`encrypt_to`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// age identity file (`AGE-SECRET-KEY-1…` lines) or unencrypted SSH private key.
    pub identity: Option<PathBuf>,
}

/// `[etcd]`, and the connection flags of every command that talks to etcd.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Connection")]
pub struct EtcdSettings {
    /// etcd client URLs, comma-separated (http://host:2379, https://..., or host:port).
    /// Env: ETCDCTL_ENDPOINTS. Default: 127.0.0.1:2379.
    #[arg(long, value_delimiter = ',', value_name = "URLS")]
    pub endpoints: Option<Vec<String>>,
    /// CA bundle that signed the servers' certificates. Env: ETCDCTL_CACERT.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM), for clusters that require client certificates.
    /// Env: ETCDCTL_CERT.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Key of the client certificate (PEM). Env: ETCDCTL_KEY.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// User for etcd auth: `name:password`, or a name with --password. Env: ETCDCTL_USER.
    #[arg(long, value_name = "NAME[:PASSWORD]")]
    pub user: Option<UserSpec>,
    /// Password for --user (prefer ETCDCTL_PASSWORD to the command line, where other users
    /// can see it).
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<Secret>,
    /// How long to wait for a connection to an endpoint. Env: ETCDCTL_DIAL_TIMEOUT.
    /// Default: 2s.
    #[arg(long, value_name = "DURATION")]
    pub dial_timeout: Option<Dur>,
    /// How long to wait for one request (status, member list, ...); snapshot streams are
    /// bounded by --stream-timeout instead. Env: ETCDCTL_COMMAND_TIMEOUT. Default: 5s.
    #[arg(long, value_name = "DURATION")]
    pub command_timeout: Option<Dur>,
    /// The members' `--quota-backend-bytes`, for `lifeboat_cluster_quota_bytes` when etcd's
    /// own /metrics cannot be read. File only (`lifeboat status` has its own flag).
    #[arg(skip)]
    pub quota_bytes: Option<Size>,
}

/// `[backup]`, and the flags of `lifeboat backup` that tune it.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    /// Member to stream from: `leader`, `freshest` (highest raft term and applied index),
    /// or a member name or hex id. Env: LIFEBOAT_SOURCE. Default: leader.
    #[arg(long, value_name = "leader|freshest|NAME")]
    pub source: Option<String>,
    /// Further attempts, on the next healthy member, when a stream breaks.
    /// Env: LIFEBOAT_RETRIES. Default: 3.
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// zstd compression level, 1-19, kept for every frame. Env: LIFEBOAT_ZSTD_LEVEL.
    /// Default: adaptive, 3 at most, stepped down (to 1) while compression holds the
    /// stream up and back up when it keeps up; the manifest counts the frames per level.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=19))]
    pub zstd_level: Option<i32>,
    /// Compression threads. Env: LIFEBOAT_ZSTD_THREADS. Default: one per CPU.
    #[arg(long, value_name = "N")]
    pub zstd_threads: Option<usize>,
    /// Cap the streaming rate, bytes per second (64M-style suffixes, 1024-based), to spare
    /// the member's disk and network. Env: LIFEBOAT_RATE_LIMIT. Default: no cap.
    #[arg(long, value_name = "BYTES")]
    pub rate_limit: Option<Size>,
    /// Give up on a stream when no data arrives for this long.
    /// Env: LIFEBOAT_STREAM_TIMEOUT. Default: 30s.
    #[arg(long, value_name = "DURATION")]
    pub stream_timeout: Option<Dur>,
    /// What to read back from the store before the manifest is written: `facts` (the
    /// database pages the manifest quotes), `digest` (also every stored byte against the
    /// SHA-256 computed while writing), `full` (also decode every frame). The in-flight check
    /// of etcd's SHA-256 trailer always happens; `lifeboat verify` checks everything.
    /// Env: LIFEBOAT_READ_BACK. Default: digest.
    #[arg(long, value_name = "facts|digest|full", value_parser = ["facts", "digest", "full"])]
    pub read_back: Option<String>,
    /// How long to wait for another backup's lock on a destination before giving up (the
    /// message names the holder: pid, host, since when). Env: LIFEBOAT_LOCK_TIMEOUT.
    /// Default: 10m.
    #[arg(long, value_name = "DURATION")]
    pub lock_timeout: Option<Dur>,
}

/// `[[destination]]`: where `backup` stores when no `--to` is given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// A local directory, or `s3://bucket/prefix`.
    pub url: String,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_path_style: Option<bool>,
    pub s3_sse: Option<s3::Sse>,
    pub s3_kms_key_id: Option<String>,
    pub s3_storage_class: Option<String>,
    pub s3_object_lock: Option<s3::LockMode>,
    pub s3_retain_for: Option<Dur>,
    pub s3_part_size: Option<Size>,
    /// Deadlines of every S3 request: connect, first byte of the answer, a stalled body.
    pub s3_connect_timeout: Option<Dur>,
    pub s3_first_byte_timeout: Option<Dur>,
    pub s3_stall_timeout: Option<Dur>,
    /// Encrypt this destination's data objects to these public keys (age1…, ssh-…).
    #[serde(default)]
    pub encrypt_to: Vec<String>,
    /// ... and to the public keys in this file (one a line, `#` comments), as `age -R`.
    pub encrypt_to_file: Option<PathBuf>,
}

/// `[schedule]`, for the planned scheduler daemon (`lifeboat run`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Cron expression in UTC: five fields (`0 * * * *`), or six with seconds first.
    pub cron: Option<String>,
    /// Or a fixed interval.
    pub every: Option<Dur>,
    pub jitter: Option<Dur>,
    /// `leader` (with a daemon per member, only the leader's backs up) or `always`.
    pub when: Option<String>,
}

/// `[retention]`, and the policy flags of `lifeboat prune` (rules in
/// [`crate::catalog::retention`]). Flags replace the file's policy as a whole: a policy is
/// read as one rule set, and half of one from each source would surprise.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Retention")]
pub struct RetentionConfig {
    /// Keep the N newest backups.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the N newest hours (UTC) that hold one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the N newest days (UTC) that hold one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the N newest ISO weeks that hold one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the N newest months that hold one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the N newest years that hold one.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every backup taken within this long of the newest one (e.g. 72h).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<Dur>,
}

impl RetentionConfig {
    pub fn policy(&self) -> crate::catalog::retention::Policy {
        crate::catalog::retention::Policy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within.map(|d| d.0),
        }
    }
}

/// `[verify]`: the daemon scrubs stored backups on a rotation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    pub every: Option<Dur>,
    /// Stored bytes re-read per run (default [`resolve::DEFAULT_SCRUB_BUDGET`]).
    pub budget: Option<Size>,
}

/// `[metrics]`: where the daemon serves metrics, where one-shot runs write them (planned).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: Option<String>,
    pub textfile: Option<PathBuf>,
}

/// The 1-based line of a byte offset, for messages that point into the file.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Config {
    /// Parse and check a config file's text. Errors name the file, the line and the key;
    /// they are usage errors (exit 2) located at `--config`.
    pub fn parse(file: &str, text: &str) -> crate::Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let at = match e.span() {
                Some(span) => format!("{file} line {}", line_of(text, span.start)),
                None => file.to_string(),
            };
            let msg = e.message().trim().replace('\n', " ");
            let msg = msg.replace("unknown field", "unknown key");
            crate::Error::flag("--config", format!("{at}: {msg}"))
        })?;
        cfg.validate()
            .map_err(|m| crate::Error::flag("--config", format!("{file}: {m}")))?;
        Ok(cfg)
    }

    /// Checks serde cannot make: values that parse but cannot work.
    fn validate(&self) -> Result<(), String> {
        if let Some(s) = &self.backup.source {
            s.parse::<crate::source::etcd::SourcePolicy>()
                .map_err(|e| format!("[backup] source: {e}"))?;
        }
        if let Some(r) = &self.backup.read_back {
            if !["facts", "digest", "full"].contains(&r.as_str()) {
                return Err(format!(
                    "[backup] read_back = {r:?}: use \"facts\", \"digest\" or \"full\""
                ));
            }
        }
        if let Some(l) = self.backup.zstd_level {
            if !(1..=19).contains(&l) {
                return Err(format!("[backup] zstd_level = {l}: use 1 to 19"));
            }
        }
        let mut seen = Vec::new();
        for d in &self.destination {
            if d.url.trim().is_empty() {
                return Err("[[destination]] url is empty".into());
            }
            if seen.contains(&d.url.as_str()) {
                return Err(format!("[[destination]] url {:?} given twice", d.url));
            }
            seen.push(d.url.as_str());
            s3::validate_file(d)?;
        }
        if let Some(s) = &self.schedule {
            match (&s.cron, &s.every) {
                (Some(_), Some(_)) => return Err("[schedule]: give cron or every, not both".into()),
                (None, None) => return Err("[schedule]: give cron or every".into()),
                _ => {}
            }
            if let Some(c) = &s.cron {
                values::parse_cron(c)?;
            }
            if let Some(w) = &s.when {
                if w != "leader" && w != "always" {
                    return Err(format!(
                        "[schedule] when = {w:?}: use \"leader\" or \"always\""
                    ));
                }
            }
        }
        if let Some(m) = &self.metrics {
            if let Some(l) = m.listen.as_ref().filter(|l| *l != "off") {
                l.parse::<std::net::SocketAddr>().map_err(|_| {
                    format!("[metrics] listen = {l:?}: not an address (e.g. 127.0.0.1:9477)")
                })?;
            }
        }
        Ok(())
    }

    /// Whether this file holds a password (and so must not be readable by others).
    pub fn holds_password(&self) -> bool {
        self.etcd.password.is_some() || self.etcd.user.as_ref().is_some_and(|u| u.has_password())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_file_parses() {
        let text = r#"
[etcd]
endpoints = ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
cacert = "/etc/kubernetes/pki/etcd/ca.crt"
dial_timeout = "3s"

[[destination]]
url = "/var/backups/etcd"

[[destination]]
url = "s3://bucket/prefix"
s3_region = "eu-west-1"
encrypt_to = ["age1xyz"]

[backup]
retries = 5
rate_limit = "64M"

[schedule]
cron = "0 * * * *"
jitter = "30s"
when = "leader"

[retention]
keep_last = 24
keep_daily = 7
keep_weekly = 4

[verify]
every = "24h"
budget = "1G"

[metrics]
listen = "127.0.0.1:9477"
textfile = "/var/lib/node_exporter/textfile_collector/lifeboat.prom"
"#;
        let c = Config::parse("f.toml", text).unwrap();
        assert_eq!(c.destination.len(), 2);
        assert_eq!(c.backup.rate_limit, Some(Size(64 << 20)));
        assert_eq!(c.retention.unwrap().keep_last, Some(24));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = "[etcd]\nendpoints = [\"a:1\"]\nendpoint = \"b:2\"\n";
        let e = Config::parse("/etc/lb.toml", text).unwrap_err().to_string();
        assert!(e.contains("/etc/lb.toml line 3"), "{e}");
        assert!(e.contains("endpoint"), "{e}");
        assert!(e.contains("unknown key"), "{e}");
        let e = Config::parse("x", "[retention]\nkeep_lats = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("keep_lats"), "{e}");
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for text in [
            "[schedule]\ncron = \"* *\"\n",
            "[schedule]\nevery = \"1h\"\nwhen = \"sometimes\"\n",
            "[backup]\nzstd_level = 30\n",
            "[etcd]\ndial_timeout = \"soon\"\n",
            "[metrics]\nlisten = \"nowhere\"\n",
        ] {
            let e = Config::parse("x", text).unwrap_err();
            assert_eq!(e.exit_code(), crate::ExitCode::Usage, "{text}");
        }
    }
}
