//! An S3 bucket (AWS or any S3-compatible server) as a store: `s3://bucket/prefix`.
//!
//! The [`Store`] contract blocks; the AWS SDK is async. An S3 store runs its requests on
//! the edge's runtime, whose handle it is opened with (`catalog::Access::with_runtime`:
//! the CLI's, or the daemon's; never one of its own, per store or per request), and waits
//! for each with [`bridge`], on the caller's thread. That thread must be one that may
//! block ([`crate::store::blocking`]: outside any runtime, or inside
//! [`offload`](crate::store::blocking::offload)); a request from an async task is refused
//! with an [`Error::Internal`] naming the store, never a panic or a stalled worker.
//!
//! Every request has deadlines ([`Deadlines`]): connecting, the first byte of the answer,
//! and a stall between bytes of a body; a hung server (stopped, black-holed) fails the
//! request with one line instead of holding the run.
//!
//! Objects become visible only when complete: small ones with one PutObject, large ones
//! as a multipart upload that only CompleteMultipartUpload makes visible ([`writer`]). Both
//! ask for create-if-absent (`If-None-Match: *`), so a name is never overwritten even by a
//! racing run on a server that supports conditional writes. An interrupted upload leaves
//! no object, only an invisible multipart upload that `lifeboat cleanup` aborts.
//!
//! Errors name the endpoint and bucket in one line and carry a
//! [`StoreErrorKind`](crate::error::StoreErrorKind) from the HTTP status and S3 error code
//! ([`errors`]), so the retry wrapper and per-part retries only repeat what can succeed.
//!
//! S3 has no lock that dies with its holder, so [`Store::lock`] does not serialise writers
//! here: backup ids are unique and every object is written create-if-absent, so two runs
//! into one prefix cannot damage each other; they only cannot wait for each other.

mod errors;
mod reader;
mod writer;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::Client;

pub use super::s3_settings::{
    LockMode, S3Settings, Sse, DEFAULT_CONNECT_TIMEOUT, DEFAULT_FIRST_BYTE_TIMEOUT,
    DEFAULT_STALL_TIMEOUT, MIN_PART_SIZE,
};
use super::{ObjectInfo, ObjectWriter, Store, StoreLock};
use crate::error::StoreErrorKind;
use crate::io::ReadAt;
use crate::{Error, Result};

pub use errors::classify;

/// Default part size: 8 MiB × 10,000 parts (S3's limit) is 78 GiB, far above the largest
/// database etcd allows.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// Parts uploaded at once; memory for a backup's data is bounded by this × part size.
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 4;
/// Tries of one request by the SDK itself (the store's retry wrapper and the per-part
/// retries come on top, for errors another try can fix; never for a deadline passed).
const SDK_ATTEMPTS: u32 = 2;

/// Run `f` on `handle`'s runtime and wait for it: only on a thread that may block
/// ([`crate::store::blocking`]); on an async task, the [`Error::Internal`] naming `what`
/// instead of the `Cannot start a runtime from within a runtime` panic.
pub(crate) fn bridge<F>(
    handle: &tokio::runtime::Handle,
    what: impl std::fmt::Display,
    f: F,
) -> Result<F::Output>
where
    F: std::future::Future,
{
    super::blocking::check(what)?;
    Ok(handle.block_on(f))
}

/// What every request needs: shared by the store, its writers and readers.
pub(crate) struct Inner {
    client: Client,
    handle: tokio::runtime::Handle,
    bucket: String,
    /// `""` or `"some/prefix/"`.
    prefix: String,
    /// `s3://bucket/prefix`, as errors name the store.
    location: String,
    /// The endpoint for messages (`http://127.0.0.1:9000`, or `AWS S3 (eu-west-1)`).
    endpoint: String,
    part_size: u64,
    parts_in_flight: usize,
    /// What every object written asks for: encryption, storage class, object lock.
    write: S3Settings,
}

impl Inner {
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Object-lock mode and retain-until date for an object written now.
    fn lock_until(
        &self,
    ) -> Option<(
        aws_sdk_s3::types::ObjectLockMode,
        aws_smithy_types::DateTime,
    )> {
        let (mode, dur) = self.write.object_lock?;
        let until = SystemTime::now() + dur;
        Some((
            aws_sdk_s3::types::ObjectLockMode::from(mode.as_str()),
            aws_smithy_types::DateTime::from(until),
        ))
    }

    /// The `Content-MD5` a body is sent with, which the server checks on receipt (the
    /// client adds no checksum of its own: [`client`]). Every object written in one
    /// PutObject has it: capture segments and manifests are not read back after they are
    /// stored. A part of a multipart upload has it only with object-lock retention, where
    /// S3 requires an integrity header: a backup's data object is read back against its
    /// SHA-256 after the upload, and MD5 costs about 1.5 s of CPU per GiB.
    fn content_md5(&self, body: &[u8], whole_object: bool) -> Option<String> {
        use md5::Digest;
        (whole_object || self.write.object_lock.is_some())
            .then(|| aws_smithy_types::base64::encode(md5::Md5::digest(body)))
    }

    /// Wait for a request of this store (see [`bridge`]).
    fn block_on<F>(&self, f: F) -> Result<F::Output>
    where
        F: std::future::Future,
    {
        bridge(
            &self.handle,
            format_args!("an S3 request to {}", self.location),
            f,
        )
    }

    /// HEAD an object: `None` if it does not exist (a missing bucket is an error, whose
    /// message says why it was asked: `why`, after the name).
    fn head(&self, name: &str, why: &str) -> Result<Option<HeadObjectOutput>> {
        let r = self.block_on(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(self.key(name))
                .send(),
        )?;
        match r {
            Ok(o) => Ok(Some(o)),
            Err(e) => {
                let f = classify(&e);
                if f.kind == StoreErrorKind::NotFound && !f.missing_bucket() {
                    Ok(None)
                } else {
                    Err(self.error(f.kind, format!("HEAD {name}{why}: {f}")))
                }
            }
        }
    }

    /// An error of this store: `store s3://b/p: <what> (endpoint E, bucket B)`.
    pub(crate) fn error(&self, kind: StoreErrorKind, what: impl std::fmt::Display) -> Error {
        Error::store(
            self.location.clone(),
            kind,
            format!(
                "{what} (endpoint {}, bucket {})",
                self.endpoint, self.bucket
            ),
        )
    }
}

pub struct S3Store {
    inner: Arc<Inner>,
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.contains('\0') {
        return Err(Error::Usage(format!("invalid object name {name:?}")));
    }
    Ok(())
}

/// `s3://bucket/prefix` → (bucket, prefix without slashes at either end).
pub fn parse_url(dest: &str) -> Result<(String, String)> {
    let rest = dest.strip_prefix("s3://").unwrap_or(dest);
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bad = bucket.is_empty()
        || !bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'));
    if bad {
        return Err(Error::Usage(format!(
            "destination {dest}: expected s3://BUCKET/PREFIX with a bucket name of lower-case \
             letters, digits, '-' and '.'"
        )));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

/// Keys per page of a listing that stops at a name ([`S3Store::list_skipping`]).
const UNTIL_PAGE: i32 = 100;

impl S3Store {
    /// Connect lazily: nothing is sent until the first request, whose error names the
    /// endpoint and bucket.
    /// Requests run on `runtime`, the edge's (see the module docs).
    pub fn open(
        dest: &str,
        settings: &S3Settings,
        runtime: &tokio::runtime::Handle,
    ) -> Result<S3Store> {
        let (bucket, prefix) = parse_url(dest)?;
        let (client, endpoint) = bridge(runtime, format_args!("opening {dest}"), client(settings))?;
        let endpoint = endpoint.unwrap_or_else(|| {
            let region = client.config().region().map(|r| r.to_string());
            format!("AWS S3 ({})", region.as_deref().unwrap_or("us-east-1"))
        });
        let location = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let inner = Inner {
            client,
            handle: runtime.clone(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            bucket,
            location,
            endpoint,
            part_size: settings.part_size.unwrap_or(DEFAULT_PART_SIZE),
            parts_in_flight: DEFAULT_PARTS_IN_FLIGHT,
            write: settings.clone(),
        };
        Ok(S3Store {
            inner: Arc::new(inner),
        })
    }

    /// The committed objects named `prefix…`, only those after `after` when given (sent as
    /// ListObjectsV2 `start-after`: the names before it are never listed), and, with
    /// `until`, only those before it (no page is asked for past it), by name.
    fn list_from(
        &self,
        prefix: &str,
        after: Option<&str>,
        until: Option<&str>,
    ) -> Result<Vec<ObjectInfo>> {
        let i = &self.inner;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut past = false;
        loop {
            let r = i
                .block_on(
                    i.client
                        .list_objects_v2()
                        .bucket(&i.bucket)
                        .prefix(i.key(prefix))
                        .set_start_after(after.map(|a| i.key(a)))
                        // Short pages when stopping early: the page that crosses `until`
                        // is mostly names nobody wants.
                        .set_max_keys(until.map(|_| UNTIL_PAGE))
                        .set_continuation_token(token.take())
                        .send(),
                )?
                .map_err(|e| {
                    let f = classify(&e);
                    i.error(f.kind, format!("list: {f}"))
                })?;
            for o in r.contents() {
                let Some(key) = o.key() else { continue };
                let Some(name) = key.strip_prefix(&i.prefix) else {
                    continue;
                };
                if name.is_empty() || name.contains('/') {
                    continue;
                }
                if until.is_some_and(|u| name >= u) {
                    past = true;
                    continue;
                }
                out.push(ObjectInfo {
                    name: name.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified: o
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                });
            }
            match r.next_continuation_token() {
                Some(t) if r.is_truncated() == Some(true) && !past => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// The SDK client: rustls with ring (the TLS stack etcd-client already brings, so the
/// binary carries one), the standard credential chain, the deadlines (connect, first
/// byte of the answer, and a stalled body: no progress for the stall timeout, up or down),
/// and checksums only where an operation requires one.
/// Also the custom endpoint, if any, for messages.
async fn client(s: &S3Settings) -> (Client, Option<String>) {
    use aws_config::{BehaviorVersion, Region};
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(s.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
                .read_timeout(s.first_byte_timeout.unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT))
                .build(),
        )
        .stalled_stream_protection(
            aws_config::stalled_stream_protection::StalledStreamProtectionConfig::enabled()
                .grace_period(s.stall_timeout.unwrap_or(DEFAULT_STALL_TIMEOUT))
                .build(),
        )
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(SDK_ATTEMPTS));
    if let Some(r) = &s.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &s.endpoint {
        loader = loader.endpoint_url(e.clone());
    }
    let shared = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&shared);
    if shared.region().is_none() {
        b = b.region(Region::new("us-east-1"));
    }
    // No CRC32 of every body, nor its check on every answer, unless the standard variables
    // ask for them: the SDK's default since 2025 sends bodies `aws-chunked` with a trailing
    // checksum, which many S3-compatible servers refuse. Whole objects carry their
    // Content-MD5 instead (`Inner::content_md5`), and a backup is read back against its
    // SHA-256.
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
    if std::env::var_os("AWS_REQUEST_CHECKSUM_CALCULATION").is_none() {
        b = b.request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
    }
    if std::env::var_os("AWS_RESPONSE_CHECKSUM_VALIDATION").is_none() {
        b = b.response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    let endpoint = shared.endpoint_url().map(str::to_string);
    b = b.force_path_style(s.path_style.unwrap_or(endpoint.is_some()));
    (Client::from_conf(b.build()), endpoint)
}

/// The part size for an object of about `hint` bytes: the configured size, raised so that
/// twice the hint (the database may grow while it streams; compression rarely inflates)
/// fits in S3's 10,000 parts.
pub fn part_size_for(configured: u64, hint: Option<u64>) -> u64 {
    let needed = hint.map_or(0, |h| h.saturating_mul(2).div_ceil(10_000));
    configured.max(needed).clamp(MIN_PART_SIZE, MAX_PART_SIZE)
}

/// S3's largest part. A size hint that would need more (a member reporting an absurd db
/// size) must not turn into a buffer of that size.
pub const MAX_PART_SIZE: u64 = 5 << 30;

/// No lock on S3 (see the module doc): writers never overwrite, so nothing to guard.
struct NoLock;
impl StoreLock for NoLock {}

impl Store for S3Store {
    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn lock_key(&self) -> String {
        format!("{}|{}", self.inner.endpoint, self.inner.location)
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        self.create_sized(name, None)
    }

    fn create_sized(&self, name: &str, size_hint: Option<u64>) -> Result<Box<dyn ObjectWriter>> {
        check_name(name)?;
        // A listing rather than a HEAD: it also proves, before any data streams, that the
        // bucket exists and the credentials work (a HEAD's 404 cannot tell the bucket from
        // the object).
        if self.list(name)?.iter().any(|o| o.name == name) {
            return Err(self.inner.error(
                StoreErrorKind::AlreadyExists,
                format!("{name} already exists; not overwriting it"),
            ));
        }
        Ok(Box::new(writer::S3Writer::new(
            Arc::clone(&self.inner),
            name,
            part_size_for(self.inner.part_size, size_hint),
        )))
    }

    fn open(&self, name: &str) -> Result<Box<dyn ReadAt>> {
        check_name(name)?;
        let Some(size) = self.stat(name)? else {
            return Err(self
                .inner
                .error(StoreErrorKind::NotFound, format!("{name} does not exist")));
        };
        Ok(Box::new(reader::S3ReadAt::new(
            Arc::clone(&self.inner),
            name,
            size,
        )))
    }

    fn load(
        &self,
        name: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn std::io::Read + Send>> {
        check_name(name)?;
        reader::load(&self.inner, name, offset, len)
    }

    fn stat(&self, name: &str) -> Result<Option<u64>> {
        check_name(name)?;
        Ok(self
            .inner
            .head(name, "")?
            .map(|o| o.content_length().unwrap_or(0).max(0) as u64))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.list_from(prefix, None, None)
    }

    fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<ObjectInfo>> {
        self.list_from(prefix, Some(after), None)
    }

    fn list_skipping(&self, skip: &str) -> Result<Vec<ObjectInfo>> {
        // Up to the skipped names, then from after the last name they can have (keys
        // compare as UTF-8 bytes; U+10FFFF is the highest).
        let mut out = self.list_from("", None, Some(skip))?;
        out.extend(self.list_from("", Some(&format!("{skip}\u{10FFFF}")), None)?);
        out.retain(|o| !o.name.starts_with(skip));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }

    fn remove(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let i = &self.inner;
        match i.block_on(
            i.client
                .delete_object()
                .bucket(&i.bucket)
                .key(i.key(name))
                .send(),
        )? {
            Ok(_) => Ok(()),
            Err(e) => {
                let f = classify(&e);
                if f.kind == StoreErrorKind::NotFound && !f.missing_bucket() {
                    Ok(())
                } else {
                    Err(i.error(f.kind, format!("DELETE {name}: {f}")))
                }
            }
        }
    }

    fn lock(&self, _wait: Duration) -> Result<Box<dyn StoreLock>> {
        Ok(Box::new(NoLock))
    }

    fn retained_until(&self, name: &str) -> Result<Option<SystemTime>> {
        check_name(name)?;
        Ok(self
            .inner
            .head(name, "")?
            .and_then(|o| o.object_lock_retain_until_date().copied())
            .and_then(|t| SystemTime::try_from(t).ok()))
    }

    /// Nothing partial is ever visible on S3; stale multipart uploads are
    /// `lifeboat cleanup`'s business.
    fn clean_partials(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn abort_stale_uploads(&self, older_than: Duration) -> Result<Vec<String>> {
        writer::abort_stale_uploads(&self.inner, older_than)
    }

    fn stale_uploads(&self, older_than: Duration) -> Result<Vec<String>> {
        Ok(writer::stale_uploads(&self.inner, older_than)?
            .into_iter()
            .map(|(key, _, when)| format!("{key} (started {when})"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bridge waits on a thread that may block and refuses an async task with one
    /// `internal` line, whatever the caller's runtime: never a panic.
    #[test]
    fn the_bridge_refuses_async_tasks_without_panicking() {
        let edge = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let io = edge.handle().clone();
        assert_eq!(bridge(&io, "t", async { 7 }).unwrap(), 7);
        for rt in [
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .build()
                .unwrap(),
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        ] {
            let io2 = io.clone();
            let e = rt
                .block_on(async move { bridge(&io2, "an S3 request to s3://b", async { 7 }) })
                .unwrap_err();
            assert_eq!(e.kind_name(), "internal");
            assert!(e.to_string().contains("s3://b"), "{e}");
            let io3 = io.clone();
            let ok = rt.block_on(async move {
                crate::store::blocking::offload(move || bridge(&io3, "t", async { 7 })).await
            });
            assert_eq!(ok.unwrap().unwrap(), 7);
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("s3://b/p/q/").unwrap(),
            ("b".to_string(), "p/q".to_string())
        );
        assert_eq!(
            parse_url("s3://b").unwrap(),
            ("b".to_string(), String::new())
        );
        assert!(parse_url("s3:///p").is_err());
        assert!(parse_url("s3://Bad_Bucket/p").is_err());
    }

    #[test]
    fn part_sizes_fit_ten_thousand_parts() {
        // No hint, or a small database: the configured size, 8 MiB by default.
        assert_eq!(part_size_for(DEFAULT_PART_SIZE, None), 8 << 20);
        assert_eq!(part_size_for(DEFAULT_PART_SIZE, Some(1 << 20)), 8 << 20);
        assert_eq!(part_size_for(MIN_PART_SIZE, Some(1 << 20)), MIN_PART_SIZE);
        // Never below S3's minimum, whatever is configured.
        assert_eq!(part_size_for(1, None), MIN_PART_SIZE);
        // etcd's largest allowed database (8 GiB quota) fits twice over at the default.
        let max_etcd = 8u64 << 30;
        assert_eq!(part_size_for(DEFAULT_PART_SIZE, Some(max_etcd)), 8 << 20);
        assert!(DEFAULT_PART_SIZE * 10_000 >= 2 * max_etcd);
        // Beyond that the part grows so that twice the hint fits in 10,000 parts.
        for hint in [100u64 << 30, 200 << 30, 1 << 40] {
            let p = part_size_for(DEFAULT_PART_SIZE, Some(hint));
            assert!(
                p > DEFAULT_PART_SIZE && p * 10_000 >= 2 * hint,
                "{hint}: {p}"
            );
        }
        // An absurd hint is capped at S3's largest part, not allocated.
        assert_eq!(
            part_size_for(DEFAULT_PART_SIZE, Some(u64::MAX)),
            MAX_PART_SIZE
        );
    }
}
