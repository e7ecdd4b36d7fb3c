//! etcd's backend quota, read from its Prometheus endpoint: the Status RPC reports the db
//! size but not `--quota-backend-bytes`, while every etcd since 3.4 serves
//! `etcd_server_quota_backend_bytes` on its client URL's `/metrics` (over TLS with the
//! same client certificate as the gRPC API). A small blocking HTTP/1.0 GET: the daemon
//! asks once per slot, and pulling in an HTTP client for it would cost more than it saves.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;

use super::connect::{pem_certs, read_flag_file};
use super::{strip_scheme, ConnectConfig};
use crate::error::EtcdErrorKind;
use crate::{Error, Result};

/// etcd's /metrics is a few hundred KiB; anything far larger is not etcd.
const MAX_BODY: u64 = 16 << 20;
const METRIC: &str = "etcd_server_quota_backend_bytes";

/// `etcd_server_quota_backend_bytes` as served by `endpoint`.
pub fn quota_bytes(cfg: &ConnectConfig, endpoint: &str) -> Result<u64> {
    let url = cfg.normalize_endpoint(endpoint);
    let (_, body) = http_get(cfg, endpoint, &url, "/metrics")?;
    parse(&body).ok_or_else(|| {
        Error::etcd(
            endpoint,
            EtcdErrorKind::Other,
            format!("/metrics: no {METRIC} (etcd older than 3.4?)"),
        )
    })
}

/// `GET PATH` on `url` (http or https with the connection's CA and client certificate):
/// the response head and body of a 200 answer. Errors name `endpoint` and PATH.
pub fn http_get(
    cfg: &ConnectConfig,
    endpoint: &str,
    url: &str,
    path: &str,
) -> Result<(String, String)> {
    let fail = |kind, message: String| Error::etcd(endpoint, kind, message);
    let hostport = strip_scheme(url).split('/').next().unwrap_or_default();
    let addr = hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            fail(
                EtcdErrorKind::Refused,
                format!("{path}: cannot resolve {hostport}"),
            )
        })?;
    let tcp = TcpStream::connect_timeout(&addr, cfg.dial_timeout).map_err(|e| {
        fail(
            EtcdErrorKind::Refused,
            format!("{path}: {}", crate::error::io_words(&e)),
        )
    })?;
    let io = |e: std::io::Error| {
        fail(
            EtcdErrorKind::Other,
            format!("{path}: {}", crate::error::io_words(&e)),
        )
    };
    tcp.set_read_timeout(Some(cfg.command_timeout))
        .map_err(io)?;
    tcp.set_write_timeout(Some(cfg.command_timeout))
        .map_err(io)?;
    // Connection: close, or etcd's peer listener keeps an HTTP/1.0 connection open.
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {hostport}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let mut raw = Vec::new();
    if url.starts_with("https://") {
        let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let conn = tls_client(cfg, &host)?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        s.write_all(request.as_bytes()).map_err(io)?;
        // etcd closes without close_notify sometimes; what was read is what counts.
        let _ = (&mut s).take(MAX_BODY).read_to_end(&mut raw);
    } else {
        let mut s = tcp;
        s.write_all(request.as_bytes()).map_err(io)?;
        // A server that answers and then holds the connection: what was read counts.
        match (&mut s).take(MAX_BODY).read_to_end(&mut raw) {
            Err(_) if !raw.is_empty() => {}
            r => {
                r.map_err(io)?;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200") {
        return Err(fail(
            EtcdErrorKind::Other,
            format!("{path}: answered {:?}", status.trim()),
        ));
    }
    Ok((head.to_string(), body.to_string()))
}

/// The quota's value in a Prometheus text exposition.
pub fn parse(body: &str) -> Option<u64> {
    body.lines().find_map(|l| {
        let rest = l.strip_prefix(METRIC)?;
        // `name value` or `name{labels} value`, not a longer name sharing the prefix.
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            return None;
        }
        let v: f64 = rest.rsplit(' ').next()?.trim().parse().ok()?;
        (v.is_finite() && v >= 0.0).then_some(v as u64)
    })
}

fn tls_client(cfg: &ConnectConfig, host: &str) -> Result<rustls::ClientConnection> {
    let mut roots = rustls::RootCertStore::empty();
    let Some(ca) = &cfg.cacert else {
        return Err(Error::flag(
            "--cacert",
            "reading etcd's quota from /metrics over https needs the CA bundle (--cacert)",
        ));
    };
    for c in pem_certs("--cacert", ca, &read_flag_file("--cacert", ca)?)? {
        roots
            .add(c)
            .map_err(|e| Error::flag("--cacert", format!("{}: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Failed(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => {
            let chain = pem_certs("--cert", cert, &read_flag_file("--cert", cert)?)?;
            let key_der =
                rustls_pki_types::PrivateKeyDer::from_pem_slice(&read_flag_file("--key", key)?)
                    .map_err(|e| Error::flag("--key", format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| Error::flag("--key", format!("{}: {e}", key.display())))?
        }
        _ => builder.with_no_client_auth(),
    };
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| Error::flag("--endpoints", format!("{host}: not a host name")))?;
    rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| Error::etcd(host, EtcdErrorKind::Tls, format!("/metrics: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_quota_and_not_a_longer_name() {
        let body =
            "# HELP etcd_server_quota_backend_bytes Current backend storage quota size in bytes.\n\
# TYPE etcd_server_quota_backend_bytes gauge\n\
etcd_server_quota_backend_bytes_total 1\n\
etcd_server_quota_backend_bytes 2.147483648e+09\n";
        assert_eq!(parse(body), Some(2_147_483_648));
        assert_eq!(parse("etcd_server_quota_backend_bytes_x 5\n"), None);
        assert_eq!(parse(""), None);
    }
}
