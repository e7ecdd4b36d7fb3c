//! What an S3 destination is asked to do: endpoint, addressing, deadlines and what every
//! object written carries (encryption, storage class, object lock). Plain data, built with
//! every build (the configuration checks `s3_*` keys even without S3 support): the
//! configuration resolves it per destination (`config::Layers::s3_settings`) and hands it
//! to [`super::open_destination`]; the store never reads the configuration itself.

use std::str::FromStr;
use std::time::Duration;

use crate::Result;

/// S3's smallest part (every part of a multipart upload but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;

/// Default deadline for a TCP (and TLS) connection to the server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline from sending a request (its body included: up to a part) to the first
/// byte of the answer.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a body upload or download may make no progress before it is called stalled.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Server-side encryption asked of S3 for every object written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3: keys managed by S3.
    Aes256,
    /// SSE-KMS: keys in AWS KMS (--s3-kms-key-id, or the account's default key).
    Kms,
}

impl Sse {
    /// The header value (`x-amz-server-side-encryption`).
    pub fn as_str(self) -> &'static str {
        match self {
            Sse::Aes256 => "AES256",
            Sse::Kms => "aws:kms",
        }
    }
}

impl FromStr for Sse {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "AES256" => Ok(Sse::Aes256),
            "aws:kms" => Ok(Sse::Kms),
            _ => Err(format!("{s:?}: use AES256 or aws:kms")),
        }
    }
}

/// S3 object-lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with s3:BypassGovernanceRetention may still delete or shorten it.
    Governance,
    /// Nobody, not even the account's root user, can delete the object before the date.
    Compliance,
}

impl LockMode {
    /// The header value (`x-amz-object-lock-mode`).
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

impl FromStr for LockMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "governance" => Ok(LockMode::Governance),
            "compliance" => Ok(LockMode::Compliance),
            _ => Err(format!("{s:?}: use governance or compliance")),
        }
    }
}

/// The S3 settings of each `s3://` destination, by its URL: how the caller's configuration
/// answers [`super::open_destination`].
pub type S3Resolver<'a> = &'a dyn Fn(&str) -> Result<S3Settings>;

/// How to reach S3 and what to ask of it for every object written. Credentials come from
/// the standard AWS chain (environment, shared profile, web identity / IRSA, container and
/// instance metadata), never from here.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// Endpoint URL of an S3-compatible server (`http://127.0.0.1:9000`); `None` is AWS
    /// (or `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, which the SDK reads itself).
    pub endpoint: Option<String>,
    /// Region; `None` reads `AWS_REGION` / the profile, then falls back to `us-east-1`
    /// (S3-compatible servers mostly ignore it).
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`). `None`: on when an endpoint is given
    /// (MinIO, Ceph, Garage and servers on an IP address need it), off for AWS.
    pub path_style: Option<bool>,
    /// Bytes per multipart part (at least 5 MiB). `None`: 8 MiB (`s3::DEFAULT_PART_SIZE`).
    pub part_size: Option<u64>,
    /// Server-side encryption of every object written, and its KMS key.
    pub sse: Option<Sse>,
    pub kms_key_id: Option<String>,
    /// Storage class of every object written (S3's spelling).
    pub storage_class: Option<String>,
    /// Object-lock retention of every object written: mode, and how long from its upload.
    pub object_lock: Option<(LockMode, Duration)>,
    /// Deadlines of every request (`None`: the defaults).
    pub connect_timeout: Option<Duration>,
    pub first_byte_timeout: Option<Duration>,
    pub stall_timeout: Option<Duration>,
}
