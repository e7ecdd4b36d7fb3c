//! Connection settings shared by every command that talks to etcd.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::EtcdErrorKind;
use crate::{Error, Result};

#[derive(Clone)]
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

/// Never prints the password: configurations end up in logs and bug reports.
impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("endpoints", &self.endpoints)
            .field("cacert", &self.cacert)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("user", &self.user.as_ref().map(|(u, _)| (u, "***")))
            .field("dial_timeout", &self.dial_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
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

/// `https://host:port/` → `host:port`, to compare endpoints given in different forms.
pub fn strip_scheme(u: &str) -> &str {
    let u = u.trim();
    let u = u.split_once("://").map_or(u, |(_, r)| r);
    u.trim_end_matches('/')
}

/// Read one of the TLS files: missing or unreadable is a usage error naming the flag, since
/// no retry can fix it.
pub(super) fn read_flag_file(flag: &str, p: &Path) -> Result<Vec<u8>> {
    if p.is_dir() {
        return Err(Error::flag(
            flag,
            format!("{} is a directory, not a PEM file", p.display()),
        ));
    }
    std::fs::read(p).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => {
                "permission denied: make it readable by this user".to_string()
            }
            _ => crate::error::io_words(&e),
        };
        Error::flag(flag, format!("{}: {why}", p.display()))
    })
}

pub(super) fn pem_certs(flag: &str, p: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs: std::result::Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(Error::flag(
            flag,
            format!(
                "{}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)",
                p.display()
            ),
        )),
        Err(e) => Err(Error::flag(
            flag,
            format!("{}: not a readable PEM certificate ({e})", p.display()),
        )),
    }
}

impl ConnectConfig {
    pub(crate) fn tls_enabled(&self) -> bool {
        self.cacert.is_some() || self.cert.is_some()
    }

    /// Check what can be checked without a network: endpoints are http(s) URLs or host:port,
    /// the TLS files can be read and parsed, and --key belongs to --cert.
    pub fn validate(&self) -> Result<()> {
        if self.endpoints.is_empty() || self.endpoints.iter().any(|e| e.trim().is_empty()) {
            return Err(Error::flag("--endpoints", "no endpoint given"));
        }
        for ep in &self.endpoints {
            self.check_endpoint(ep)?;
        }
        if self.cert.is_some() != self.key.is_some() {
            let missing = if self.cert.is_none() {
                "--cert"
            } else {
                "--key"
            };
            return Err(Error::flag(
                missing,
                "missing: --cert and --key go together (give both or neither)",
            ));
        }
        if let Some(ca) = &self.cacert {
            let pem = read_flag_file("--cacert", ca)?;
            pem_certs("--cacert", ca, &pem)?;
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            check_pair(cert, key)?;
        }
        Ok(())
    }

    fn check_endpoint(&self, ep: &str) -> Result<()> {
        let ep = ep.trim();
        if let Some((scheme, rest)) = ep.split_once("://") {
            match scheme.to_ascii_lowercase().as_str() {
                "https" => {}
                "http" if self.tls_enabled() => {
                    return Err(Error::flag(
                        "--endpoints",
                        format!("{ep} is plain http:// but --cacert/--cert are given: use https://{rest}, or drop the TLS flags"),
                    ))
                }
                "http" => {}
                other => {
                    return Err(Error::flag(
                        "--endpoints",
                        format!("{ep}: unknown scheme {other}://: use http://HOST:PORT, https://HOST:PORT or HOST:PORT"),
                    ))
                }
            }
        }
        let hostport = strip_scheme(ep);
        if hostport.is_empty() || hostport.contains(char::is_whitespace) {
            return Err(Error::flag(
                "--endpoints",
                format!(
                    "{ep}: not an endpoint: use http://HOST:PORT, https://HOST:PORT or HOST:PORT"
                ),
            ));
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
        let mut o = ConnectOptions::new().with_connect_timeout(self.dial_timeout);
        if !streaming {
            // A whole-request deadline would cut a long snapshot stream; streams get an
            // idle timeout per message instead. For the same reason streams get no h2
            // keep-alive: its ping timeout would abandon a frozen member before the stall
            // timeout (--stream-timeout) decides, with an h2 protocol error nobody can read.
            o = o
                .with_timeout(self.command_timeout)
                .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        }
        if let Some((u, p)) = &self.user {
            o = o.with_user(u.clone(), p.clone());
        }
        if self.tls_enabled() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.cacert {
                let pem = read_flag_file("--cacert", ca)?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                let c = read_flag_file("--cert", cert)?;
                let k = read_flag_file("--key", key)?;
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
            Ok(Err(e)) => Err(super::errors::classify(self, endpoint, "connect", &e)),
            Err(_) => Err(Error::Etcd {
                endpoint: endpoint.to_string(),
                kind: EtcdErrorKind::Timeout,
                message: format!(
                    "connect: no answer within {}",
                    humantime::format_duration(self.dial_timeout + self.command_timeout)
                ),
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
            Ok(Err(e)) => Err(super::errors::classify(self, &what, "connect", &e)),
            Err(_) => Err(Error::Etcd {
                endpoint: what,
                kind: EtcdErrorKind::Timeout,
                message: format!(
                    "connect: no answer within {}",
                    humantime::format_duration(self.dial_timeout + self.command_timeout)
                ),
            }),
        }
    }
}

/// --key must be the private key of --cert: checked here, before dialling, because the
/// server would only say "bad certificate" (or nothing useful) after a handshake.
fn check_pair(cert: &Path, key: &Path) -> Result<()> {
    let c = read_flag_file("--cert", cert)?;
    let k = read_flag_file("--key", key)?;
    let chain = pem_certs("--cert", cert, &c)?;
    let key_der = PrivateKeyDer::from_pem_slice(&k).map_err(|e| {
        Error::flag(
            "--key",
            format!("{}: no readable PEM private key in it ({e})", key.display()),
        )
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| {
        Error::flag(
            "--key",
            format!("{}: not a usable private key ({e})", key.display()),
        )
    })?;
    let pair = rustls::sign::CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(Error::flag(
                "--key",
                format!(
                    "{} does not match --cert {}: give the key the certificate was issued for",
                    key.display(),
                    cert.display()
                ),
            ))
        }
        // The key type cannot say its public key: the server will judge.
        Err(rustls::Error::InconsistentKeys(_)) => Ok(()),
        Err(e) => Err(Error::flag(
            "--cert",
            format!("{}: not a usable certificate ({e})", cert.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_masks_the_password() {
        let cfg = ConnectConfig {
            user: Some(("root".into(), "s3cret".into())),
            ..ConnectConfig::default()
        };
        let d = format!("{cfg:?}");
        assert!(!d.contains("s3cret"), "{d}");
        assert!(d.contains("root"), "{d}");
    }

    #[test]
    fn endpoints_with_unknown_schemes_are_usage_errors() {
        let cfg = ConnectConfig {
            endpoints: vec!["ftp://127.0.0.1:2379".into()],
            ..ConnectConfig::default()
        };
        let e = cfg.validate().unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Usage);
        assert!(e.to_string().contains("--endpoints"), "{e}");
        assert!(e.to_string().contains("ftp://"), "{e}");
    }

    #[test]
    fn a_key_of_another_certificate_is_caught_before_dialling() {
        let dir = tempfile::TempDir::new().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let write = |name: &str, pem: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let cfg = ConnectConfig {
            endpoints: vec!["https://127.0.0.1:2379".into()],
            cacert: Some(write("ca.crt", cert.pem())),
            cert: Some(write("client.crt", cert.pem())),
            key: Some(write("client.key", key.serialize_pem())),
            ..ConnectConfig::default()
        };
        cfg.validate().unwrap();
        let wrong = ConnectConfig {
            key: Some(write("other.key", other.serialize_pem())),
            ..cfg.clone()
        };
        let e = wrong.validate().unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Usage);
        assert_eq!(e.locator().flag.as_deref(), Some("--key"));
        assert!(e.to_string().contains("does not match --cert"), "{e}");
        let not_pem = ConnectConfig {
            cacert: Some(write("junk.crt", "hello".into())),
            ..cfg
        };
        let e = not_pem.validate().unwrap_err();
        assert_eq!(e.locator().flag.as_deref(), Some("--cacert"), "{e}");
    }
}
