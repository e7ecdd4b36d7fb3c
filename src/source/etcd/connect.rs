//! Connection settings shared by every command that talks to etcd.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::error::{EtcdErrorKind, IoContext};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct ConnectConfig {
    pub endpoints: Vec<String>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// User name and password.
    pub user: Option<(String, String)>,
    pub dial_timeout: Duration,
    pub command_timeout: Duration,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            endpoints: vec!["127.0.0.1:2379".into()],
            cacert: None,
            cert: None,
            key: None,
            user: None,
            dial_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(5),
        }
    }
}

impl ConnectConfig {
    fn tls_enabled(&self) -> bool {
        self.cacert.is_some() || self.cert.is_some()
    }

    /// Check what can be checked without a network: files exist, pairs are complete.
    pub fn validate(&self) -> Result<()> {
        if self.endpoints.is_empty() || self.endpoints.iter().any(|e| e.trim().is_empty()) {
            return Err(Error::Usage("--endpoints: no endpoint given".into()));
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err(Error::Usage(
                "--cert and --key go together: give both or neither".into(),
            ));
        }
        for (flag, p) in [
            ("--cacert", &self.cacert),
            ("--cert", &self.cert),
            ("--key", &self.key),
        ] {
            if let Some(p) = p {
                if !p.is_file() {
                    return Err(Error::Usage(format!(
                        "{flag} {}: no such file",
                        p.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The URL etcd-client should dial: etcdctl accepts `host:port`, so do we.
    pub fn normalize_endpoint(&self, ep: &str) -> String {
        let ep = ep.trim();
        if ep.contains("://") {
            ep.to_string()
        } else if self.tls_enabled() {
            format!("https://{ep}")
        } else {
            format!("http://{ep}")
        }
    }

    fn options(&self, streaming: bool) -> Result<ConnectOptions> {
        let mut o = ConnectOptions::new()
            .with_connect_timeout(self.dial_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        if !streaming {
            // A whole-request deadline would cut a long snapshot stream; streams get an
            // idle timeout per message instead.
            o = o.with_timeout(self.command_timeout);
        }
        if let Some((u, p)) = &self.user {
            o = o.with_user(u.clone(), p.clone());
        }
        if self.tls_enabled() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.cacert {
                let pem = std::fs::read(ca).at(ca)?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                let c = std::fs::read(cert).at(cert)?;
                let k = std::fs::read(key).at(key)?;
                tls = tls.identity(Identity::from_pem(c, k));
            }
            o = o.with_tls(tls);
        }
        Ok(o)
    }

    /// A client that talks to exactly one endpoint.
    pub async fn connect_one(&self, endpoint: &str, streaming: bool) -> Result<Client> {
        let url = self.normalize_endpoint(endpoint);
        let opts = self.options(streaming)?;
        let fut = Client::connect([url.as_str()], Some(opts));
        match tokio::time::timeout(self.dial_timeout + self.command_timeout, fut).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(Error::Etcd {
                endpoint: endpoint.to_string(),
                kind: EtcdErrorKind::Other,
                message: format!("connect: {e}"),
            }),
            Err(_) => Err(Error::Etcd {
                endpoint: endpoint.to_string(),
                kind: EtcdErrorKind::Timeout,
                message: format!("connect: no answer within {:?}", self.dial_timeout),
            }),
        }
    }

    /// A client over all endpoints (etcd-client balances between them).
    pub async fn connect_all(&self) -> Result<Client> {
        let urls: Vec<String> = self
            .endpoints
            .iter()
            .map(|e| self.normalize_endpoint(e))
            .collect();
        let opts = self.options(false)?;
        let what = self.endpoints.join(",");
        match tokio::time::timeout(
            self.dial_timeout + self.command_timeout,
            Client::connect(&urls, Some(opts)),
        )
        .await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(Error::Etcd {
                endpoint: what,
                kind: EtcdErrorKind::Other,
                message: format!("connect: {e}"),
            }),
            Err(_) => Err(Error::Etcd {
                endpoint: what,
                kind: EtcdErrorKind::Timeout,
                message: format!("connect: no answer within {:?}", self.dial_timeout),
            }),
        }
    }
}
