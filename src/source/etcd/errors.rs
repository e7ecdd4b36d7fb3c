//! etcd-client's errors turned into one line an operator can act on, with the kind that
//! decides whether another try can help.
//!
//! The transport stack nests its causes (tonic → hyper → io → rustls) and its Display is
//! often just "transport error"; the cause worth telling sits at the bottom of the chain.
//! So the chain is walked and classified by type (rustls errors, io error kinds, gRPC
//! codes); text is matched only where etcd itself puts the meaning into the message
//! ("etcdserver: no leader", "authentication failed").

use std::error::Error as StdError;

use rustls::{AlertDescription, CertificateError};

use super::ConnectConfig;
use crate::error::EtcdErrorKind;
use crate::Error;

/// Every error in `e`'s chain, outermost first, including the errors an `io::Error` wraps
/// (whose `source()` skips the wrapped error itself).
fn chain<'a>(first: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(first);
    while let Some(e) = next {
        out.push(e);
        if out.len() > 32 {
            break;
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    out
}

fn path_of(p: &Option<std::path::PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// The host part of an endpoint, for "not valid for HOST".
fn host_of(endpoint: &str) -> String {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, r)| r)
        .split('/')
        .next()
        .unwrap_or_default();
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default().to_string();
    }
    rest.rsplit_once(':').map_or(rest, |(h, _)| h).to_string()
}

/// What a TLS failure means for the flags the user gave.
fn tls_words(cfg: &ConnectConfig, endpoint: &str, e: &rustls::Error) -> String {
    use rustls::Error as R;
    let host = host_of(endpoint);
    match e {
        R::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => match &cfg.cacert {
                Some(_) => format!(
                    "the server's certificate is not signed by --cacert {}: give the CA that signed the server's certificate",
                    path_of(&cfg.cacert)
                ),
                None => "the server's certificate is not signed by a CA this host trusts: give --cacert with the cluster's CA".into(),
            },
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                let what = if host.parse::<std::net::IpAddr>().is_ok() {
                    "no matching IP SAN"
                } else {
                    "no matching DNS SAN"
                };
                format!(
                    "the server's certificate is not valid for {host} ({what}): connect by a name or address the certificate lists, or reissue it with {host} in its subject alternative names"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired: renew it (check the clocks too)".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet: check this host's clock".into()
            }
            CertificateError::Revoked => "the server's certificate is revoked".into(),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "the server's certificate is not for TLS servers (extended key usage): reissue it with serverAuth".into()
            }
            other => format!("the server's certificate was refused: {}", describe(other)),
        },
        R::AlertReceived(a) => match a {
            AlertDescription::CertificateRequired => {
                "the server requires a client certificate: give --cert and --key".into()
            }
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::DecryptError
            | AlertDescription::AccessDenied => match &cfg.cert {
                Some(_) => format!(
                    "the server refuses the client certificate --cert {}: it is not signed by a CA the server trusts (its --trusted-ca-file)",
                    path_of(&cfg.cert)
                ),
                None => "the server requires a client certificate: give --cert and --key".into(),
            },
            AlertDescription::CertificateExpired => format!(
                "the server refuses the client certificate --cert {}: it has expired",
                path_of(&cfg.cert)
            ),
            AlertDescription::HandshakeFailure if cfg.cert.is_none() => {
                "the TLS handshake failed: the server probably requires a client certificate: give --cert and --key".into()
            }
            other => format!("the server ended the TLS handshake ({other:?} alert)"),
        },
        R::InvalidMessage(_) | R::InappropriateMessage { .. } | R::PeerSentOversizedRecord => {
            not_tls(endpoint)
        }
        other => format!("TLS failed: {other}"),
    }
}

fn describe(e: &CertificateError) -> String {
    rustls::Error::InvalidCertificate(e.clone()).to_string()
}

pub(crate) fn not_tls(endpoint: &str) -> String {
    format!(
        "the server does not speak TLS: use http://{}",
        super::connect::strip_scheme(endpoint)
    )
}

pub(crate) fn speaks_tls_words(endpoint: &str) -> String {
    format!(
        "the server speaks TLS: use https://{} with --cacert (and --cert/--key if it requires client certificates)",
        super::connect::strip_scheme(endpoint)
    )
}

/// A gRPC status that etcd itself sent (not one tonic made up for a transport failure).
fn status_words(cfg: &ConnectConfig, s: &tonic::Status) -> Option<(EtcdErrorKind, String)> {
    use tonic::Code;
    let msg = s.message();
    let user = cfg
        .user
        .as_ref()
        .map(|(u, _)| u.as_str())
        .unwrap_or_default();
    if msg.contains("authentication failed") || msg.contains("invalid user ID or password") {
        return Some((
            EtcdErrorKind::Auth,
            format!("authentication failed for --user {user}: wrong user name or password"),
        ));
    }
    if msg.contains("authentication is not enabled") {
        return Some((
            EtcdErrorKind::Auth,
            format!("--user {user}: authentication is not enabled on this cluster: drop --user"),
        ));
    }
    if msg.contains("user name is empty") || msg.contains("user name not found") {
        return Some((
            EtcdErrorKind::Auth,
            "the cluster requires authentication: give --user NAME:PASSWORD".into(),
        ));
    }
    if msg.contains("invalid auth token") {
        return Some((
            EtcdErrorKind::Broken,
            "the auth token expired mid-way (run again)".into(),
        ));
    }
    match s.code() {
        Code::Unauthenticated => Some((
            EtcdErrorKind::Auth,
            if user.is_empty() {
                format!("not authenticated ({msg}): give --user NAME:PASSWORD")
            } else {
                format!("authentication failed for --user {user}: {msg}")
            },
        )),
        Code::PermissionDenied => Some((
            EtcdErrorKind::Permission,
            if user.is_empty() {
                format!("permission denied ({msg}): give --user with a role that may do this (root for snapshots)")
            } else {
                format!("permission denied for --user {user} ({msg}): grant it a role that may do this (root for snapshots)")
            },
        )),
        _ if msg.starts_with("etcdserver:") => {
            let transient = msg.contains("no leader")
                || msg.contains("leader changed")
                || msg.contains("timed out")
                || msg.contains("too many requests")
                || msg.contains("not capable")
                || msg.contains("unhealthy")
                || msg.contains("stopped");
            Some((
                if transient {
                    EtcdErrorKind::Unavailable
                } else {
                    EtcdErrorKind::Other
                },
                msg.to_string(),
            ))
        }
        _ => None,
    }
}

/// A status without a cause below it that etcd did not word: tonic's own (timeouts, HTTP
/// answers from something that is not etcd), in its message rather than its Debug form.
fn plain_status_words(cfg: &ConnectConfig, s: &tonic::Status) -> Option<(EtcdErrorKind, String)> {
    use tonic::Code;
    let msg = one_line(s.message());
    if msg.contains("grpc-status header missing") || msg.contains("mapped from HTTP status") {
        return Some((
            EtcdErrorKind::Other,
            format!("this is not an etcd client URL (the server answered plain HTTP: {msg}): check --endpoints"),
        ));
    }
    match s.code() {
        Code::DeadlineExceeded => Some((
            EtcdErrorKind::Timeout,
            format!(
                "no answer within --command-timeout {}",
                humantime::format_duration(cfg.command_timeout)
            ),
        )),
        Code::Cancelled if msg.to_lowercase().contains("timeout") => Some((
            EtcdErrorKind::Timeout,
            format!(
                "no answer within --command-timeout {}",
                humantime::format_duration(cfg.command_timeout)
            ),
        )),
        Code::Unavailable | Code::Aborted | Code::ResourceExhausted => {
            Some((EtcdErrorKind::Unavailable, msg))
        }
        Code::Unimplemented => Some((
            EtcdErrorKind::Other,
            format!(
                "the server does not implement this call ({msg}): is it an etcd v3 client URL?"
            ),
        )),
        _ => None,
    }
}

/// Classify a failure in `what` (e.g. "status", "snapshot") against `endpoint`.
pub(crate) fn classify(
    cfg: &ConnectConfig,
    endpoint: &str,
    what: &str,
    e: &etcd_client::Error,
) -> Error {
    let (kind, message) = kind_and_words(cfg, endpoint, e);
    Error::etcd(endpoint, kind, format!("{what}: {message}"))
}

/// [`classify`] for a stream that was already flowing: its connection and credentials
/// worked, so whatever broke it now is a broken stream (transient: another member may
/// serve), not a TLS or configuration mistake.
pub(crate) fn classify_mid_stream(
    cfg: &ConnectConfig,
    endpoint: &str,
    what: &str,
    e: &etcd_client::Error,
) -> Error {
    let (kind, message) = kind_and_words(cfg, endpoint, e);
    let kind = match kind {
        EtcdErrorKind::Tls | EtcdErrorKind::Other => EtcdErrorKind::Broken,
        k => k,
    };
    Error::etcd(endpoint, kind, format!("{what}: {message}"))
}

fn kind_and_words(
    cfg: &ConnectConfig,
    endpoint: &str,
    e: &etcd_client::Error,
) -> (EtcdErrorKind, String) {
    use etcd_client::Error as E;
    let root: &(dyn StdError + 'static) = match e {
        E::GRpcStatus(s) => {
            if s.source().is_none() {
                if let Some(w) = status_words(cfg, s) {
                    return w;
                }
                if let Some(w) = plain_status_words(cfg, s) {
                    return w;
                }
            }
            s
        }
        E::TransportError(t) => t,
        E::IoError(io) => io,
        E::InvalidArgs(m) | E::EndpointError(m) => {
            return (
                EtcdErrorKind::Other,
                format!("{m} (check --endpoints and the TLS flags)"),
            )
        }
        E::InvalidUri(u) => {
            return (
                EtcdErrorKind::Other,
                format!("not a valid URL ({u}): check --endpoints"),
            )
        }
        other => return (EtcdErrorKind::Other, other.to_string()),
    };
    classify_chain(cfg, endpoint, root)
}

/// Classify from the bottom of the chain up: the deepest cause that is known wins.
fn classify_chain(
    cfg: &ConnectConfig,
    endpoint: &str,
    root: &(dyn StdError + 'static),
) -> (EtcdErrorKind, String) {
    let links = chain(root);
    let tls = cfg.tls_enabled() || endpoint.trim().starts_with("https://");
    for e in links.iter().rev() {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return (EtcdErrorKind::Tls, tls_words(cfg, endpoint, r));
        }
        if let Some(s) = e.downcast_ref::<tonic::Status>() {
            if let Some(w) = status_words(cfg, s) {
                return w;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => {
                    return (
                        EtcdErrorKind::Refused,
                        "connection refused: nothing listens there (etcd not running, or a wrong port)"
                            .into(),
                    )
                }
                K::TimedOut => {
                    return (
                        EtcdErrorKind::Timeout,
                        format!(
                            "no connection within --dial-timeout {}: host down or a firewall drops the packets",
                            humantime::format_duration(cfg.dial_timeout)
                        ),
                    )
                }
                K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted | K::UnexpectedEof => {
                    return (
                        EtcdErrorKind::Broken,
                        format!("connection broken: {}", crate::error::io_words(io)),
                    )
                }
                K::AddrNotAvailable | K::NotFound => {
                    return (
                        EtcdErrorKind::Refused,
                        format!("cannot resolve or reach the address: {}", crate::error::io_words(io)),
                    )
                }
                _ => {}
            }
        }
        if let Some(h) = e.downcast_ref::<h2::Error>() {
            // Also a plain-text client that a TLS server hangs up on: the survey asks the
            // server whether it speaks TLS before saying so (never mid-stream).
            return (EtcdErrorKind::Broken, format!("connection broken: {h}"));
        }
    }
    // Nothing known: the words of the deepest cause, in one line.
    let words: Vec<String> = links
        .iter()
        .map(|e| e.to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let deepest = words.last().cloned().unwrap_or_default();
    let all = words.join(": ").to_lowercase();
    if all.contains("timed out")
        || all.contains("timeout expired")
        || all.contains("deadline")
        || all.contains("elapsed")
    {
        return (
            EtcdErrorKind::Timeout,
            format!(
                "no answer within --command-timeout {}",
                humantime::format_duration(cfg.command_timeout)
            ),
        );
    }
    if !tls && (all.contains("frame with invalid size") || all.contains("invalid http version")) {
        return (EtcdErrorKind::Tls, speaks_tls_words(endpoint));
    }
    if all.contains("invalid content type") || all.contains("corrupt message") {
        return (EtcdErrorKind::Tls, not_tls(endpoint));
    }
    let kind = if all.contains("connection") || all.contains("transport") {
        EtcdErrorKind::Broken
    } else {
        EtcdErrorKind::Other
    };
    (kind, one_line(&deepest))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host_of("https://127.0.0.1:2379"), "127.0.0.1");
        assert_eq!(host_of("etcd-0:2379"), "etcd-0");
        assert_eq!(host_of("https://[::1]:2379/"), "::1");
    }

    #[test]
    fn auth_failure_names_user_and_is_not_transient() {
        let cfg = ConnectConfig {
            user: Some(("root".into(), "pw".into())),
            ..ConnectConfig::default()
        };
        let e = etcd_client::Error::GRpcStatus(tonic::Status::invalid_argument(
            "etcdserver: authentication failed, invalid user ID or password",
        ));
        let e = classify(&cfg, "127.0.0.1:2379", "connect", &e);
        assert!(!e.is_transient());
        assert!(e.to_string().contains("--user root"), "{e}");
        let e = etcd_client::Error::GRpcStatus(tonic::Status::unavailable(
            "etcdserver: leader changed",
        ));
        assert!(classify(&cfg, "x", "status", &e).is_transient());
    }

    #[test]
    fn unknown_issuer_names_the_cacert() {
        let cfg = ConnectConfig {
            cacert: Some("/etc/etcd/ca.crt".into()),
            ..ConnectConfig::default()
        };
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let e = classify(
            &cfg,
            "https://127.0.0.1:2379",
            "status",
            &etcd_client::Error::IoError(io),
        );
        let s = e.to_string();
        assert!(s.contains("not signed by --cacert /etc/etcd/ca.crt"), "{s}");
        assert!(!e.is_transient());
    }

    #[test]
    fn a_reset_over_tls_is_transient() {
        // A member killed mid-stream must let the backup move on, TLS or not.
        let cfg = ConnectConfig {
            cacert: Some("/ca.crt".into()),
            ..ConnectConfig::default()
        };
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let e = classify(
            &cfg,
            "https://127.0.0.1:2379",
            "snapshot stream broke after 10 bytes",
            &etcd_client::Error::IoError(io),
        );
        assert!(e.is_transient(), "{e}");
    }
}
