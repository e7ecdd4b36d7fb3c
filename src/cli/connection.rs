//! Connection flags shared by every command that talks to etcd. Each also reads the
//! etcdctl environment variable of the same meaning, so existing runbooks keep working.

use std::path::PathBuf;
use std::time::Duration;

use crate::source::etcd::ConnectConfig;
use crate::{Error, Result};

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// etcd client URLs, comma-separated (http://host:2379, https://..., or host:port).
    #[arg(
        long,
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// CA bundle that signed the servers' certificates.
    #[arg(long, env = "ETCDCTL_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM), for clusters that require client certificates.
    #[arg(long, env = "ETCDCTL_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Key of the client certificate (PEM).
    #[arg(long, env = "ETCDCTL_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// User for etcd auth: `name:password`, or a name with --password.
    #[arg(long, env = "ETCDCTL_USER", value_name = "NAME[:PASSWORD]")]
    pub user: Option<String>,
    /// Password for --user (prefer the environment variable to the command line).
    #[arg(long, env = "ETCDCTL_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// How long to wait for a connection to an endpoint (e.g. 2s, 500ms).
    #[arg(long, env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub dial_timeout: Duration,
    /// How long to wait for one request (status, member list, ...). Snapshot streams are
    /// bounded by --stream-timeout instead.
    #[arg(long, env = "ETCDCTL_COMMAND_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub command_timeout: Duration,
}

impl ConnectionArgs {
    pub fn to_config(&self) -> Result<ConnectConfig> {
        let user = match (&self.user, &self.password) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(Error::Usage("--password given without --user".into()))
            }
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (Some(u), None) => match u.split_once(':') {
                Some((name, pw)) => Some((name.to_string(), pw.to_string())),
                None => {
                    return Err(Error::Usage(format!(
                        "--user {u}: no password; use --user {u}:PASSWORD or --password / ETCDCTL_PASSWORD"
                    )))
                }
            },
        };
        let cfg = ConnectConfig {
            endpoints: self
                .endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            user,
            dial_timeout: self.dial_timeout,
            command_timeout: self.command_timeout,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// A multi-threaded runtime for commands that talk to etcd.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
