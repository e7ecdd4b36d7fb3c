//! Connection flags for the offline commands that can also ask a live cluster
//! (`inspect --compare-live`). A minimal local version written before `cli/connection.rs`
//! landed; it builds the same [`ConnectConfig`] and should be replaced by the shared flags.

use std::path::PathBuf;
use std::time::Duration;

use crate::source::etcd::ConnectConfig;
use crate::Error;

#[derive(Debug, Clone, clap::Args)]
pub struct LiveArgs {
    /// etcd client endpoints, comma-separated.
    #[arg(
        long,
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// CA bundle to verify the servers.
    #[arg(long, env = "ETCDCTL_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Client certificate.
    #[arg(long, env = "ETCDCTL_CERT")]
    pub cert: Option<PathBuf>,
    /// Client key.
    #[arg(long, env = "ETCDCTL_KEY")]
    pub key: Option<PathBuf>,
    /// User name, or name:password.
    #[arg(long, env = "ETCDCTL_USER")]
    pub user: Option<String>,
    /// Password (with --user NAME).
    #[arg(long, env = "ETCDCTL_PASSWORD")]
    pub password: Option<String>,
    /// Time to establish a connection.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub dial_timeout: Duration,
    /// Time for one request.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub command_timeout: Duration,
}

impl LiveArgs {
    pub fn config(&self) -> crate::Result<ConnectConfig> {
        let user = match (&self.user, &self.password) {
            (None, _) => None,
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (Some(u), None) => match u.split_once(':') {
                Some((n, p)) => Some((n.to_string(), p.to_string())),
                None => {
                    return Err(Error::Usage(
                        "--user NAME needs --password (or give --user NAME:PASSWORD)".into(),
                    ))
                }
            },
        };
        let cfg = ConnectConfig {
            endpoints: self.endpoints.clone(),
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
