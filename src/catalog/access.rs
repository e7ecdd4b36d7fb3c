//! What opening a stored backup needs besides its name: how to reach each destination's
//! store (the S3 settings of the configuration) and the operator's identity file for
//! encrypted backups. The edge (the CLI, the daemon) builds one from the merged
//! configuration (`config::Layers::access`) and passes it to whatever opens destinations
//! and backups; nothing below reads the configuration or a process global.

use std::sync::Arc;

use super::{Keys, Repository};
use crate::store::{S3Settings, Store};
use crate::Result;

type S3Of = dyn Fn(&str) -> Result<S3Settings> + Send + Sync;

/// How to open destinations and the backups in them. Cheap to clone.
#[derive(Clone, Default)]
pub struct Access {
    /// The S3 settings of a destination; `None`: the defaults (library use, tests).
    s3: Option<Arc<S3Of>>,
    keys: Keys,
    /// The edge's runtime, which S3 clients run their requests on (`None`: no S3).
    runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("s3", &self.s3.as_ref().map(|_| "configured"))
            .field("keys", &self.keys)
            .field("runtime", &self.runtime.is_some())
            .finish()
    }
}

impl Access {
    pub fn new(
        s3: impl Fn(&str) -> Result<S3Settings> + Send + Sync + 'static,
        keys: Keys,
    ) -> Access {
        Access {
            s3: Some(Arc::new(s3)),
            keys,
            runtime: None,
        }
    }

    /// S3 stores opened through this run their requests on `runtime` (the edge's: the
    /// CLI's or the daemon's; a handle, so the edge keeps owning it).
    pub fn with_runtime(mut self, runtime: tokio::runtime::Handle) -> Access {
        self.runtime = Some(runtime);
        self
    }

    /// The S3 settings of destination `url`.
    pub fn s3_settings(&self, url: &str) -> Result<S3Settings> {
        match &self.s3 {
            Some(f) => f(url),
            None => Ok(S3Settings::default()),
        }
    }

    /// Open a destination ([`crate::store::open_destination`]) with these settings.
    pub fn open(&self, dest: &str, create: bool) -> Result<Box<dyn Store>> {
        crate::store::open_destination(
            dest,
            create,
            &|url| self.s3_settings(url),
            self.runtime.as_ref(),
        )
    }

    /// The keys for encrypted backups (the identity file, read on first use).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Destination `dest` as a [`Repository`] with these keys.
    pub fn repository(&self, dest: &str, create: bool) -> Result<Repository> {
        let store = self.open(dest, create)?;
        Ok(Repository::new(dest, Arc::from(store), self.keys.clone()))
    }
}
