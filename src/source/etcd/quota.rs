//! etcd's backend quota, read from its Prometheus endpoint: the Status RPC reports the db
//! size but not `--quota-backend-bytes`, while every etcd since 3.4 serves
//! `etcd_server_quota_backend_bytes` on its client URL's `/metrics` (over TLS with the
//! same client certificate as the gRPC API). One GET with hyper's HTTP/1 client on one
//! connection (TLS by tokio-rustls with the connection's CA and client certificate),
//! closed after the answer.

use std::sync::Arc;

use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;

use super::connect::{pem_certs, read_flag_file};
use super::{strip_scheme, ConnectConfig};
use crate::error::EtcdErrorKind;
use crate::{Error, Result};

/// etcd's /metrics is a few hundred KiB; anything far larger is not etcd.
const MAX_BODY: usize = 16 << 20;
const METRIC: &str = "etcd_server_quota_backend_bytes";

/// `etcd_server_quota_backend_bytes` as served by `endpoint`.
pub async fn quota_bytes(cfg: &ConnectConfig, endpoint: &str) -> Result<u64> {
    let url = cfg.normalize_endpoint(endpoint);
    let (_, body) = http_get(cfg, endpoint, &url, "/metrics").await?;
    parse(&body).ok_or_else(|| {
        Error::etcd(
            endpoint,
            EtcdErrorKind::Other,
            format!("/metrics: no {METRIC} (etcd older than 3.4?)"),
        )
    })
}

/// `GET PATH` on `url` (http or https with the connection's CA and client certificate):
/// the response headers and body of a 200 answer. Connecting is bounded by the dial
/// timeout, the answer's head and its body each by the command timeout. Errors name
/// `endpoint` and PATH.
pub async fn http_get(
    cfg: &ConnectConfig,
    endpoint: &str,
    url: &str,
    path: &str,
) -> Result<(hyper::HeaderMap, String)> {
    let fail = |kind, message: String| Error::etcd(endpoint, kind, message);
    let hostport = strip_scheme(url).split('/').next().unwrap_or_default();
    let addr = tokio::net::lookup_host(hostport)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            fail(
                EtcdErrorKind::Refused,
                format!("{path}: cannot resolve {hostport}"),
            )
        })?;
    let refused = |e: std::io::Error| {
        fail(
            EtcdErrorKind::Refused,
            format!("{path}: {}", crate::error::io_words(&e)),
        )
    };
    let tcp =
        match tokio::time::timeout(cfg.dial_timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(r) => r.map_err(refused)?,
            Err(_) => {
                return Err(refused(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection timed out",
                )))
            }
        };
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, hostport)
        .header(hyper::header::ACCEPT, "*/*")
        .header(hyper::header::CONNECTION, "close")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| fail(EtcdErrorKind::Other, format!("{path}: {e}")))?;
    let timed = |what: &str| {
        fail(
            EtcdErrorKind::Timeout,
            format!("{path}: no {what} within {:?}", cfg.command_timeout),
        )
    };
    if url.starts_with("https://") {
        let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let (config, name) = tls_client(cfg, host)?;
        let tls = tokio::time::timeout(
            cfg.command_timeout,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .map_err(|_| timed("TLS handshake"))?
        .map_err(|e| {
            fail(
                EtcdErrorKind::Tls,
                format!("{path}: {}", crate::error::io_words(&e)),
            )
        })?;
        exchange(tls, request, cfg, endpoint, path).await
    } else {
        exchange(tcp, request, cfg, endpoint, path).await
    }
}

/// Send `request` on `stream` and read a 200 answer (its body up to [`MAX_BODY`]).
async fn exchange<S>(
    stream: S,
    request: hyper::Request<http_body_util::Empty<bytes::Bytes>>,
    cfg: &ConnectConfig,
    endpoint: &str,
    path: &str,
) -> Result<(hyper::HeaderMap, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let fail = |kind, message: String| Error::etcd(endpoint, kind, message);
    let timed = |what: &str| {
        fail(
            EtcdErrorKind::Timeout,
            format!("{path}: no {what} within {:?}", cfg.command_timeout),
        )
    };
    let hyper_err = |e: hyper::Error| fail(EtcdErrorKind::Other, format!("{path}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(hyper_err)?;
    // The connection's task ends with the answer (Connection: close) or when dropped.
    let conn = tokio::spawn(conn);
    let _stop = crate::task::AbortOnDrop::from(conn);
    let response = tokio::time::timeout(cfg.command_timeout, sender.send_request(request))
        .await
        .map_err(|_| timed("answer"))?
        .map_err(hyper_err)?;
    let (head, mut body) = response.into_parts();
    if head.status != hyper::StatusCode::OK {
        let status = format!("{:?} {}", head.version, head.status);
        return Err(fail(
            EtcdErrorKind::Other,
            format!("{path}: answered {:?}", status.trim()),
        ));
    }
    let mut raw = Vec::new();
    let read = async {
        while raw.len() < MAX_BODY {
            match body.frame().await {
                None => break,
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        raw.extend_from_slice(&d);
                    }
                }
                // etcd may close without TLS close_notify: what was read is what counts.
                Some(Err(_)) if !raw.is_empty() => break,
                Some(Err(e)) => return Err(fail(EtcdErrorKind::Other, format!("{path}: {e}"))),
            }
        }
        Ok(())
    };
    tokio::time::timeout(cfg.command_timeout, read)
        .await
        .map_err(|_| timed("body"))??;
    raw.truncate(MAX_BODY);
    Ok((head.headers, String::from_utf8_lossy(&raw).into_owned()))
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

/// The TLS client setup of the etcd connection (its CA, and client certificate if any),
/// and the name the server's certificate must hold.
fn tls_client(
    cfg: &ConnectConfig,
    host: &str,
) -> Result<(
    Arc<rustls::ClientConfig>,
    rustls_pki_types::ServerName<'static>,
)> {
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
        // ring supports every default protocol version: failing here is lifeboat's bug.
        .map_err(|e| Error::Internal(format!("TLS client setup: {e}")))?
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
    Ok((Arc::new(config), name))
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
