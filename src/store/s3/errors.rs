//! SDK errors → one line and a [`StoreErrorKind`].
//!
//! The SDK's Display of a dispatch failure is "dispatch failure" and its Debug is a page of
//! nested structs; an operator needs "connection refused" or "bucket does not exist", and
//! the retry logic needs to know whether another try can help. Decided from the HTTP
//! status and the S3 error code, never from a message.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::StoreErrorKind;

/// A failed request, classified.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: StoreErrorKind,
    /// The S3 error code (`NoSuchBucket`, `AccessDenied`, ...) when the server sent one.
    pub code: Option<String>,
    /// What went wrong, in words.
    pub what: String,
}

impl Failure {
    pub fn missing_bucket(&self) -> bool {
        self.code.as_deref() == Some("NoSuchBucket")
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

/// The innermost message of an error chain: hyper's "connection refused" rather than the
/// SDK's "dispatch failure".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let s = cur.to_string();
    crate::error::io_words(&std::io::Error::other(s))
}

/// Whether any error in the chain says `needle` (case-insensitive): the connector's own
/// errors ("HTTP read timeout occurred after 30s", "tcp connect error") have no type we
/// can match.
fn chain_mentions(e: &(dyn std::error::Error + 'static), needle: &str) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.to_string().to_lowercase().contains(needle) {
            return true;
        }
        cur = c.source();
    }
    false
}

/// Whether any error in the chain is about credentials (the SDK's outer layers say so;
/// the root cause may only say why the last provider it tried failed).
fn about_credentials(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.to_string().to_lowercase().contains("credential") {
            return true;
        }
        cur = c.source();
    }
    false
}

pub fn classify<E>(e: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    use StoreErrorKind as K;
    match e {
        SdkError::ConstructionFailure(_) => Failure {
            kind: K::Other,
            code: None,
            what: format!("request could not be built: {}", root_cause(e)),
        },
        SdkError::TimeoutError(_) => Failure {
            kind: K::Timeout,
            code: None,
            what: "no answer in time: the server may be hung (raise s3_first_byte_timeout \
                   if it is only slow)"
                .into(),
        },
        SdkError::DispatchFailure(d) => {
            // Credentials that cannot be found or loaded are not worth another try.
            let cause = root_cause(e);
            let kind = if chain_mentions(e, "read timeout") || chain_mentions(e, "throughput") {
                K::Timeout
            } else if d.is_timeout() || (d.is_io() && chain_mentions(e, "connect")) {
                K::Unreachable
            } else if d.is_io() {
                K::Transient
            } else if about_credentials(e) {
                K::Permission
            } else {
                K::Transient
            };
            let what = match kind {
                K::Permission => {
                    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                     (or AWS_PROFILE, or run with a role: web identity / IRSA, container or \
                     instance metadata)"
                        .to_string()
                }
                K::Timeout if chain_mentions(e, "throughput") => {
                    "the transfer stalled past s3_stall_timeout: the server may be hung".into()
                }
                K::Timeout => "no answer within s3_first_byte_timeout: the server may be hung \
                               (raise it if the link is only slow)"
                    .into(),
                K::Unreachable if d.is_timeout() => {
                    "cannot connect to the server within s3_connect_timeout".into()
                }
                _ => format!("cannot reach the server: {cause}"),
            };
            Failure {
                kind,
                code: None,
                what,
            }
        }
        SdkError::ResponseError(_) => Failure {
            kind: K::Transient,
            code: None,
            what: format!("unreadable response: {}", root_cause(e)),
        },
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().map(str::to_string);
            let msg = se.err().message().map(str::to_string);
            service(status, code, msg)
        }
        _ => Failure {
            kind: K::Other,
            code: None,
            what: root_cause(e),
        },
    }
}

/// A server's answer, by status and code.
fn service(status: u16, code: Option<String>, msg: Option<String>) -> Failure {
    use StoreErrorKind as K;
    let c = code.as_deref().unwrap_or("");
    let (kind, words) = match (status, c) {
        (_, "NoSuchBucket") => (K::NotFound, "the bucket does not exist".to_string()),
        (_, "NoSuchKey") | (404, _) => (K::NotFound, "no such object".to_string()),
        (_, "InvalidAccessKeyId") => (
            K::Permission,
            "the access key is not known to the server (wrong credentials)".to_string(),
        ),
        (_, "SignatureDoesNotMatch") => (
            K::Permission,
            "the secret key does not match the access key (wrong credentials)".to_string(),
        ),
        (_, "AccessDenied") | (401 | 403, _) => (
            K::Permission,
            "access denied (wrong credentials, or no permission for this bucket)".to_string(),
        ),
        (_, "PreconditionFailed") | (412, _) => (
            K::AlreadyExists,
            "an object of that name already exists".to_string(),
        ),
        (501, _) | (_, "NotImplemented") => (
            K::Unsupported,
            "this server does not support the request".to_string(),
        ),
        (_, "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable") => (
            K::Transient,
            format!("server busy or failing (HTTP {status})"),
        ),
        (409, "ConditionalRequestConflict") | (408 | 429, _) | (500..=599, _) => (
            K::Transient,
            format!("server busy or failing (HTTP {status})"),
        ),
        (200..=299, "") => (
            K::Other,
            format!("the server answered HTTP {status} with a body that is not S3's answer to this request"),
        ),
        _ => (K::Other, format!("HTTP {status}")),
    };
    let mut what = words;
    if !c.is_empty() {
        what.push_str(&format!(" ({c}"));
        match msg.as_deref() {
            Some(m) if !m.is_empty() => what.push_str(&format!(": {m})")),
            _ => what.push(')'),
        }
    }
    Failure { kind, code, what }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let f = service(404, Some("NoSuchBucket".into()), None);
        assert!(f.missing_bucket());
        assert_eq!(f.kind, StoreErrorKind::NotFound);
        assert_eq!(
            service(403, Some("InvalidAccessKeyId".into()), None).kind,
            StoreErrorKind::Permission
        );
        assert!(service(503, None, None).kind.is_transient());
        assert!(service(500, Some("InternalError".into()), None)
            .kind
            .is_transient());
        assert_eq!(service(412, None, None).kind, StoreErrorKind::AlreadyExists);
        assert_eq!(service(400, None, None).kind, StoreErrorKind::Other);
        assert_eq!(
            service(501, Some("NotImplemented".into()), None).kind,
            StoreErrorKind::Unsupported
        );
    }
}
