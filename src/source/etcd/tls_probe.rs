//! Does a server speak TLS? Asked when a first call broke at once, so the error can say
//! "use https://" or "use http://" instead of "connection broken".

use super::{strip_scheme, ConnectConfig};

/// Whether the server at `endpoint` speaks TLS: it answers a TLS ClientHello with a TLS
/// record (handshake or alert), or with something else. Nothing is verified: only the
/// first byte of the answer is looked at. `None`: no answer to judge by.
pub(super) async fn speaks_tls(cfg: &ConnectConfig, endpoint: &str) -> Option<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hello = client_hello()?;
    let addr = strip_scheme(endpoint).split('/').next().unwrap_or_default();
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(&hello).await.ok()?;
        let mut first = [0u8; 1];
        // A TLS server answers a ClientHello with a handshake or an alert record; a
        // plain-text one answers with text, hangs up, or resets (cmux drops what it cannot
        // match, and a close with the hello unread is a reset).
        match s.read(&mut first).await {
            Ok(0) => Some(false),
            Ok(_) => Some(first[0] == 0x16 || first[0] == 0x15),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                Some(false)
            }
            Err(_) => None,
        }
    };
    tokio::time::timeout(cfg.dial_timeout, probe)
        .await
        .ok()
        .flatten()
}

/// The bytes of a TLS ClientHello, as rustls would send them.
fn client_hello() -> Option<Vec<u8>> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").ok()?;
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).ok()?;
    let mut out = Vec::new();
    conn.write_tls(&mut out).ok()?;
    Some(out)
}
