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

/// The process's one runtime, built by [`super::main`] before any command runs
/// ([`super::Global::runtime`]): etcd clients, the daemon and S3 clients all run on it.
pub(super) fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?)
}
