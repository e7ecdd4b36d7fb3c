//! Merging the sources: defaults < config file < environment < flags. Each effective value
//! remembers its origin, which `lifeboat config check` prints, so "why is it dialling
//! that endpoint?" has an answer without reading code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::env::{env_layer, env_var_of, CONFIG_ENV};
use super::{BackupSettings, Config, Dur, EtcdSettings, Secret, Size, UserSpec};
use crate::jobs::backup::ReadBack;
use crate::pipeline::FrameOptions;
use crate::source::etcd::{ConnectConfig, SourcePolicy};
use crate::{Error, Result};

/// Backup defaults that no library type carries (the connection's and compression's come
/// from [`ConnectConfig::default`] and [`FrameOptions::default`]).
pub const DEFAULT_SOURCE: &str = "leader";
pub const DEFAULT_RETRIES: u32 = 3;
pub const DEFAULT_STREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a backup waits for another run's lock on a destination.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(600);
pub const DEFAULT_READ_BACK: &str = "digest";
/// `[metrics] listen`: where the daemon serves /metrics and /healthz (`"off"`: nowhere).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9477";
/// `[verify] budget`: stored bytes the daemon re-reads per scrub run.
pub const DEFAULT_SCRUB_BUDGET: u64 = 1 << 30;
/// `[etcd] quota_bytes`: etcd's own default `--quota-backend-bytes`, used for
/// `lifeboat_cluster_quota_bytes` when etcd's /metrics does not say.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Default,
    File,
    Env,
    Flag,
}

/// One effective setting, for `config check`: secrets already masked.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub source: Origin,
    /// The file path, variable name or flag it came from (empty for defaults).
    pub from: String,
}

/// The sources, loaded once per process: the file (if any), the environment, and the flags
/// a command adds with [`Layers::with_etcd_flags`] / [`Layers::with_backup_flags`].
#[derive(Debug, Clone, Default)]
pub struct Layers {
    pub file: Option<(PathBuf, Config)>,
    pub env: Config,
    pub flags: Config,
    /// Things the operator should fix that do not stop the command (file permissions).
    pub warnings: Vec<String>,
}

/// A backup's settings after the merge.
#[derive(Debug, Clone)]
pub struct ResolvedBackup {
    pub source: SourcePolicy,
    pub retries: u32,
    pub frames: FrameOptions,
    pub rate_limit: Option<u64>,
    pub stream_timeout: Duration,
    pub read_back: ReadBack,
    pub lock_timeout: Duration,
}

impl Layers {
    /// Load the config file (`--config`, else `LIFEBOAT_CONFIG`, else none) and the
    /// environment, read through `env` so tests can inject one.
    pub fn load(config: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Layers> {
        let get = |name: &str| env(name).filter(|v| !v.is_empty());
        let path = config
            .map(Path::to_path_buf)
            .or_else(|| get(CONFIG_ENV).map(PathBuf::from));
        let mut layers = Layers {
            env: env_layer(&get)?,
            ..Layers::default()
        };
        if let Some(path) = path {
            let shown = path.display().to_string();
            let text = std::fs::read(&path).map_err(|e| {
                Error::flag(
                    "--config",
                    format!("{shown}: {}", crate::error::io_words(&e)),
                )
            })?;
            let text = String::from_utf8(text)
                .map_err(|_| Error::flag("--config", format!("{shown}: not UTF-8 text")))?;
            let cfg = Config::parse(&shown, &text)?;
            if cfg.holds_password() && readable_by_others(&path) {
                layers.warnings.push(format!(
                    "{shown} holds a password and is readable by group or others: run `chmod 600 {shown}`"
                ));
            }
            layers.file = Some((path, cfg));
        }
        Ok(layers)
    }

    pub fn with_etcd_flags(&self, flags: &EtcdSettings) -> Layers {
        let mut l = self.clone();
        l.flags.etcd = flags.clone();
        l
    }

    pub fn with_backup_flags(&self, flags: &BackupSettings) -> Layers {
        let mut l = self.clone();
        l.flags.backup = flags.clone();
        l
    }

    /// The connection settings, checked as far as can be without a network.
    pub fn connect(&self) -> Result<(ConnectConfig, Vec<Entry>)> {
        let d = ConnectConfig::default();
        let mut r = Recorder::new(self);
        let endpoints = r.take(
            "etcd.endpoints",
            |c| c.etcd.endpoints.as_ref(),
            Some(d.endpoints.clone()),
            |v| v.join(","),
        );
        let path = |p: &PathBuf| p.display().to_string();
        let cacert = r.take("etcd.cacert", |c| c.etcd.cacert.as_ref(), None, path);
        let cert = r.take("etcd.cert", |c| c.etcd.cert.as_ref(), None, path);
        let key = r.take("etcd.key", |c| c.etcd.key.as_ref(), None, path);
        let user = r.take(
            "etcd.user",
            |c| c.etcd.user.as_ref(),
            None,
            UserSpec::masked,
        );
        let password = r.take(
            "etcd.password",
            |c| c.etcd.password.as_ref(),
            None,
            |_: &Secret| "***".into(),
        );
        let dial = r.take(
            "etcd.dial_timeout",
            |c| c.etcd.dial_timeout.as_ref(),
            Some(Dur(d.dial_timeout)),
            Dur::to_string,
        );
        let command = r.take(
            "etcd.command_timeout",
            |c| c.etcd.command_timeout.as_ref(),
            Some(Dur(d.command_timeout)),
            Dur::to_string,
        );
        let user = match (user, password) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(Error::flag(
                    "--password",
                    "a password without a user: give --user (or ETCDCTL_USER) too",
                ))
            }
            (Some(u), Some(p)) => Some((u.split().0.to_string(), p.expose().to_string())),
            (Some(u), None) => match u.split() {
                (name, Some(pw)) => Some((name.to_string(), pw.to_string())),
                (name, None) => {
                    return Err(Error::flag(
                        "--user",
                        format!(
                            "{name}: no password; use --user {name}:PASSWORD, or --password / ETCDCTL_PASSWORD"
                        ),
                    ))
                }
            },
        };
        let cfg = ConnectConfig {
            endpoints: endpoints
                .unwrap_or_default()
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
            cacert,
            cert,
            key,
            user,
            dial_timeout: dial.map_or(d.dial_timeout, |x| x.0),
            command_timeout: command.map_or(d.command_timeout, |x| x.0),
        };
        cfg.validate()?;
        Ok((cfg, r.entries))
    }

    /// The backup's settings (everything but the connection and the destinations).
    pub fn backup(&self) -> Result<(ResolvedBackup, Vec<Entry>)> {
        let frames = FrameOptions::default();
        let mut r = Recorder::new(self);
        let show = |s: &String| s.clone();
        let source = r
            .take(
                "backup.source",
                |c| c.backup.source.as_ref(),
                Some(DEFAULT_SOURCE.to_string()),
                show,
            )
            .unwrap_or_default();
        let retries = r.take(
            "backup.retries",
            |c| c.backup.retries.as_ref(),
            Some(DEFAULT_RETRIES),
            u32::to_string,
        );
        let level = r.take(
            "backup.zstd_level",
            |c| c.backup.zstd_level.as_ref(),
            Some(frames.level),
            i32::to_string,
        );
        // A level the operator chose stays fixed; the default adapts to the machine.
        let level_chosen = r
            .entries
            .last()
            .is_some_and(|e| e.key == "backup.zstd_level" && e.source != Origin::Default);
        let threads = r.take(
            "backup.zstd_threads",
            |c| c.backup.zstd_threads.as_ref(),
            Some(frames.threads),
            usize::to_string,
        );
        let rate = r.take(
            "backup.rate_limit",
            |c| c.backup.rate_limit.as_ref(),
            None,
            Size::to_string,
        );
        let stream = r.take(
            "backup.stream_timeout",
            |c| c.backup.stream_timeout.as_ref(),
            Some(Dur(DEFAULT_STREAM_TIMEOUT)),
            Dur::to_string,
        );
        let lock = r.take(
            "backup.lock_timeout",
            |c| c.backup.lock_timeout.as_ref(),
            Some(Dur(DEFAULT_LOCK_TIMEOUT)),
            Dur::to_string,
        );
        let read_back = r
            .take(
                "backup.read_back",
                |c| c.backup.read_back.as_ref(),
                Some(DEFAULT_READ_BACK.to_string()),
                show,
            )
            .unwrap_or_default();
        let resolved = ResolvedBackup {
            source: source
                .parse()
                .map_err(|e: String| Error::flag("--source", e))?,
            retries: retries.unwrap_or(DEFAULT_RETRIES),
            frames: FrameOptions {
                level: level.unwrap_or(frames.level),
                adaptive: !level_chosen,
                threads: threads.unwrap_or(frames.threads).max(1),
                ..frames
            },
            rate_limit: rate.map(|s| s.0),
            stream_timeout: stream.map_or(DEFAULT_STREAM_TIMEOUT, |d| d.0),
            lock_timeout: lock.map_or(DEFAULT_LOCK_TIMEOUT, |d| d.0),
            read_back: <ReadBack as clap::ValueEnum>::from_str(&read_back, true).map_err(|_| {
                Error::flag(
                    "--read-back",
                    format!("{read_back:?}: use facts, digest or full"),
                )
            })?,
        };
        Ok((resolved, r.entries))
    }

    /// The retention policy: the `--keep-*` flags if any is given, else the file's
    /// `[retention]`, else none (which prune refuses).
    pub fn retention(&self, flags: &super::RetentionConfig) -> super::RetentionConfig {
        if *flags != super::RetentionConfig::default() {
            return flags.clone();
        }
        self.file
            .as_ref()
            .and_then(|(_, c)| c.retention.clone())
            .unwrap_or_default()
    }

    /// Where `backup` stores: `--to` flags if any, else the file's `[[destination]]`s.
    pub fn destinations(&self, to: &[String]) -> Result<(Vec<String>, Vec<Entry>)> {
        let (list, source, from) = if !to.is_empty() {
            (to.to_vec(), Origin::Flag, "--to".to_string())
        } else if let Some((p, c)) = self
            .file
            .as_ref()
            .filter(|(_, c)| !c.destination.is_empty())
        {
            let urls = c.destination.iter().map(|d| d.url.clone()).collect();
            (urls, Origin::File, p.display().to_string())
        } else {
            return Err(Error::flag(
                "--to",
                "no destination: give --to DEST, or [[destination]] url = \"...\" in --config FILE",
            ));
        };
        let entries = list
            .iter()
            .map(|u| Entry {
                key: "destination.url".into(),
                value: u.clone(),
                source,
                from: from.clone(),
            })
            .collect();
        Ok((list, entries))
    }

    /// Every effective setting, for `config check`: the connection, the backup, the
    /// destinations, and the file-only sections.
    pub fn entries(&self, to: &[String]) -> Result<Vec<Entry>> {
        let mut out = self.connect()?.1;
        out.extend(self.backup()?.1);
        if let Ok((urls, d)) = self.destinations(to) {
            out.extend(d);
            for u in urls.iter().filter(|u| u.starts_with("s3://")) {
                out.extend(self.s3(u)?.1);
            }
        }
        out.extend(self.encryption_entries());
        if let Some((p, c)) = &self.file {
            let from = p.display().to_string();
            let mut add = |key: &str, value: Option<String>| {
                if let Some(value) = value {
                    out.push(Entry {
                        key: key.into(),
                        value,
                        source: Origin::File,
                        from: from.clone(),
                    });
                }
            };
            let dur = |d: &Option<Dur>| d.map(|d| d.to_string());
            let num = |n: &Option<u32>| n.map(|n| n.to_string());
            if let Some(s) = &c.schedule {
                add("schedule.cron", s.cron.clone());
                add("schedule.every", dur(&s.every));
                add("schedule.jitter", dur(&s.jitter));
                add("schedule.when", s.when.clone());
            }
            if let Some(r) = &c.retention {
                add("retention.keep_last", num(&r.keep_last));
                add("retention.keep_hourly", num(&r.keep_hourly));
                add("retention.keep_daily", num(&r.keep_daily));
                add("retention.keep_weekly", num(&r.keep_weekly));
                add("retention.keep_monthly", num(&r.keep_monthly));
                add("retention.keep_yearly", num(&r.keep_yearly));
                add("retention.keep_within", dur(&r.keep_within));
            }
            add(
                "etcd.quota_bytes",
                c.etcd.quota_bytes.map(|q| q.to_string()),
            );
            if let Some(v) = &c.verify {
                add("verify.every", dur(&v.every));
                add("verify.budget", v.budget.map(|b| b.to_string()));
            }
            if let Some(cap) = &c.capture {
                let r = cap.resolve(&from)?;
                add("capture.flush", Some(Dur(r.flush).to_string()));
                add(
                    "capture.segment_bytes",
                    Some(Size(r.segment_bytes).to_string()),
                );
                add("capture.hash_every", Some(Dur(r.hash_every).to_string()));
                add("capture.max_lag", Some(Dur(r.max_lag).to_string()));
            }
            if let Some(m) = &c.metrics {
                add("metrics.listen", m.listen.clone());
                add(
                    "metrics.textfile",
                    m.textfile.as_ref().map(|p| p.display().to_string()),
                );
            }
        }
        Ok(out)
    }
}

/// Picks each value from the highest source that has it and records where it came from.
pub(super) struct Recorder<'a> {
    layers: &'a Layers,
    pub(super) entries: Vec<Entry>,
}

impl<'a> Recorder<'a> {
    pub(super) fn new(layers: &'a Layers) -> Self {
        Recorder {
            layers,
            entries: Vec::new(),
        }
    }

    pub(super) fn take<T: Clone>(
        &mut self,
        key: &str,
        get: impl Fn(&Config) -> Option<&T>,
        default: Option<T>,
        show: impl Fn(&T) -> String,
    ) -> Option<T> {
        let field = key.rsplit('.').next().unwrap_or(key);
        let file = self.layers.file.as_ref();
        let picked = if let Some(v) = get(&self.layers.flags) {
            Some((
                v.clone(),
                Origin::Flag,
                format!("--{}", field.replace('_', "-")),
            ))
        } else if let Some(v) = get(&self.layers.env) {
            Some((v.clone(), Origin::Env, env_var_of(key).to_string()))
        } else if let Some((p, v)) = file.and_then(|(p, c)| get(c).map(|v| (p, v))) {
            Some((v.clone(), Origin::File, p.display().to_string()))
        } else {
            default.map(|v| (v, Origin::Default, String::new()))
        };
        let (value, source, from) = picked?;
        self.entries.push(Entry {
            key: key.to_string(),
            value: show(&value),
            source,
            from,
        });
        Some(value)
    }
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lifeboat.toml");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    fn entry<'a>(es: &'a [Entry], key: &str) -> &'a Entry {
        es.iter().find(|e| e.key == key).unwrap()
    }

    #[test]
    fn file_then_env_then_flag() {
        let (_d, p) = file(
            "[etcd]\nendpoints = [\"f:1\"]\ndial_timeout = \"7s\"\ncommand_timeout = \"8s\"\n[backup]\nretries = 9\n",
        );
        let e = env(&[
            ("ETCDCTL_ENDPOINTS", "e:1,e:2"),
            ("ETCDCTL_DIAL_TIMEOUT", "6s"),
        ]);
        let l = Layers::load(Some(&p), &e).unwrap();
        // file < env
        let (c, es) = l.connect().unwrap();
        assert_eq!(c.endpoints, vec!["e:1", "e:2"]);
        assert_eq!(c.dial_timeout, Duration::from_secs(6));
        assert_eq!(c.command_timeout, Duration::from_secs(8));
        assert_eq!(entry(&es, "etcd.endpoints").source, Origin::Env);
        assert_eq!(entry(&es, "etcd.endpoints").from, "ETCDCTL_ENDPOINTS");
        assert_eq!(entry(&es, "etcd.command_timeout").source, Origin::File);
        // env < flag
        let flags = EtcdSettings {
            endpoints: Some(vec!["x:1".into()]),
            ..Default::default()
        };
        let (c, es) = l.with_etcd_flags(&flags).connect().unwrap();
        assert_eq!(c.endpoints, vec!["x:1"]);
        assert_eq!(entry(&es, "etcd.endpoints").source, Origin::Flag);
        assert_eq!(entry(&es, "etcd.dial_timeout").source, Origin::Env);
        // defaults where nobody says
        let (b, es) = l.backup().unwrap();
        assert_eq!(b.retries, 9);
        assert_eq!(b.stream_timeout, DEFAULT_STREAM_TIMEOUT);
        assert_eq!(entry(&es, "backup.stream_timeout").source, Origin::Default);
        assert_eq!(entry(&es, "backup.retries").source, Origin::File);
    }

    #[test]
    fn config_path_from_env_and_defaults_without_file() {
        let (_d, p) = file("[backup]\nzstd_level = 7\n");
        let e = env(&[("LIFEBOAT_CONFIG", p.to_str().unwrap())]);
        let (b, _) = Layers::load(None, &e).unwrap().backup().unwrap();
        assert_eq!(b.frames.level, 7);
        let l = Layers::load(None, &env(&[])).unwrap();
        let (c, _) = l.connect().unwrap();
        assert_eq!(c.endpoints, ConnectConfig::default().endpoints);
    }

    #[test]
    fn secrets_are_masked_everywhere() {
        let (_d, p) = file("[etcd]\nuser = \"root:hunter2\"\n");
        let l = Layers::load(Some(&p), &env(&[("ETCDCTL_PASSWORD", "s3cret")])).unwrap();
        let es = l.entries(&[]).unwrap();
        let all = format!("{es:?} {l:?}");
        assert!(!all.contains("hunter2") && !all.contains("s3cret"), "{all}");
        assert_eq!(entry(&es, "etcd.password").value, "***");
        assert_eq!(entry(&es, "etcd.user").value, "root:***");
        // The password variable wins over the one in --user, as etcdctl does.
        let (c, _) = l.connect().unwrap();
        assert_eq!(c.user, Some(("root".into(), "s3cret".into())));
    }

    #[test]
    fn group_readable_password_file_warns() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, p) = file("[etcd]\npassword = \"x\"\nuser = \"root\"\n");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let l = Layers::load(Some(&p), &env(&[])).unwrap();
        assert_eq!(l.warnings.len(), 1);
        assert!(l.warnings[0].contains("chmod 600"), "{:?}", l.warnings);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Layers::load(Some(&p), &env(&[]))
            .unwrap()
            .warnings
            .is_empty());
    }

    #[test]
    fn destinations_from_flags_or_file() {
        let (_d, p) = file("[[destination]]\nurl = \"/a\"\n[[destination]]\nurl = \"/b\"\n");
        let l = Layers::load(Some(&p), &env(&[])).unwrap();
        assert_eq!(l.destinations(&[]).unwrap().0, vec!["/a", "/b"]);
        assert_eq!(l.destinations(&["/c".into()]).unwrap().0, vec!["/c"]);
        let none = Layers::load(None, &env(&[])).unwrap();
        assert!(none.destinations(&[]).is_err());
    }
}
