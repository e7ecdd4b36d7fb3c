//! Connection flags shared by every command that talks to etcd. They are the `[etcd]`
//! section of the config ([`crate::config::EtcdSettings`]); each also reads the etcdctl
//! environment variable of the same meaning, so existing runbooks keep working.

use crate::config::Layers;
use crate::source::etcd::ConnectConfig;
use crate::Result;

pub use crate::config::EtcdSettings as ConnectionArgs;

impl ConnectionArgs {
    /// The connection after merging the config file, the environment and these flags.
    pub fn to_config(&self, layers: &Layers) -> Result<ConnectConfig> {
        layers.with_etcd_flags(self).connect().map(|(c, _)| c)
    }
}

/// A multi-threaded runtime for commands that talk to etcd.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
