//! Writing an object: one PutObject when it fits in a part, else a streamed multipart upload.
//!
//! Bytes collect in one part-sized buffer; a full buffer becomes an UploadPart task on the
//! store's runtime, and at most `parts_in_flight` of them run at once (the writer waits for
//! the oldest), so memory is bounded by (parts in flight + 1) × part size whatever the
//! object's size. Each part is retried with back-off while its failure is transient.
//! Only CompleteMultipartUpload makes the object visible, with `If-None-Match: *`; any
//! failure, an abort, or a drop without commit sends AbortMultipartUpload, so no upload
//! is left behind unless the process itself dies (`lifeboat cleanup` handles those).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::task::JoinHandle;

use super::{classify, Inner};
use crate::error::StoreErrorKind;
use crate::store::ObjectWriter;
use crate::{Error, Result};

/// S3 allows at most this many parts in one upload.
const MAX_PARTS: i32 = 10_000;
/// Attempts per part (the SDK's own retries of one request come on top).
const PART_ATTEMPTS: u32 = 5;

/// The same options on PutObject and CreateMultipartUpload (two builder types): server-side
/// encryption, storage class, object-lock retention. A body written with object-lock
/// retention needs an integrity header: its `Content-MD5` (`Inner::content_md5`, which
/// every PutObject carries).
macro_rules! with_write_options {
    ($inner:expr, $req:expr) => {{
        let w = &$inner.write;
        let lock = $inner.lock_until();
        $req.set_server_side_encryption(
            w.sse
                .map(|s| aws_sdk_s3::types::ServerSideEncryption::from(s.as_str())),
        )
        .set_ssekms_key_id(w.kms_key_id.clone())
        .set_storage_class(
            w.storage_class
                .as_deref()
                .map(aws_sdk_s3::types::StorageClass::from),
        )
        .set_object_lock_mode(lock.as_ref().map(|l| l.0.clone()))
        .set_object_lock_retain_until_date(lock.map(|l| l.1))
    }};
}

pub struct S3Writer {
    inner: Arc<Inner>,
    part_size: u64,
    name: String,
    buf: Vec<u8>,
    upload_id: Option<String>,
    next_part: i32,
    in_flight: VecDeque<JoinHandle<Result<CompletedPart>>>,
    done: Vec<CompletedPart>,
    /// The first failure: later writes fail with it, commit returns it.
    failed: Option<Error>,
    finished: bool,
    /// Bytes written so far: the size the finished object must have.
    written: u64,
}

impl S3Writer {
    pub(super) fn new(inner: Arc<Inner>, name: &str, part_size: u64) -> S3Writer {
        S3Writer {
            buf: Vec::with_capacity(part_size.min(1 << 20) as usize),
            inner,
            part_size,
            name: name.to_string(),
            upload_id: None,
            next_part: 1,
            in_flight: VecDeque::new(),
            done: Vec::new(),
            failed: None,
            finished: false,
            written: 0,
        }
    }

    fn fail(&mut self, e: Error) -> io::Error {
        let msg = e.to_string();
        let kind = match &e {
            Error::Store { kind, .. } if kind.is_transient() => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::Other,
        };
        if self.failed.is_none() {
            self.failed = Some(e);
        }
        io::Error::new(kind, msg)
    }

    fn start_upload(&mut self) -> Result<String> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let i = &self.inner;
        let req = with_write_options!(
            i,
            i.client
                .create_multipart_upload()
                .bucket(&i.bucket)
                .key(i.key(&self.name))
        );
        let r = i.block_on(req.send())?.map_err(|e| {
            let f = classify(&e);
            i.error(f.kind, format!("start upload of {}: {f}", self.name))
        })?;
        let id = r.upload_id().unwrap_or_default().to_string();
        if id.is_empty() {
            return Err(i.error(
                StoreErrorKind::Other,
                "the server started an upload without an upload id",
            ));
        }
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Send the buffer as the next part, waiting for the oldest part if too many are out.
    fn send_part(&mut self) -> Result<()> {
        if self.next_part > MAX_PARTS {
            return Err(self.inner.error(
                StoreErrorKind::Other,
                format!(
                    "{} needs more than {MAX_PARTS} parts of {} bytes; raise the part size",
                    self.name, self.part_size
                ),
            ));
        }
        let id = self.start_upload()?;
        let data = std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(self.part_size.min(1 << 20) as usize),
        );
        let number = self.next_part;
        self.next_part += 1;
        let inner = Arc::clone(&self.inner);
        let name = self.name.clone();
        let task = self.inner.handle.spawn(upload_part(
            inner,
            name,
            id,
            number,
            bytes::Bytes::from(data),
        ));
        self.in_flight.push_back(task);
        while self.in_flight.len() >= self.inner.parts_in_flight {
            self.wait_oldest()?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        let Some(task) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let part = self.inner.block_on(task)?.map_err(|e| {
            self.inner.error(
                StoreErrorKind::Other,
                format!("part upload task failed: {e}"),
            )
        })??;
        self.done.push(part);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let i = Arc::clone(&self.inner);
        if self.upload_id.is_none() {
            let md5 = i.content_md5(&self.buf, true);
            let body = ByteStream::from(std::mem::take(&mut self.buf));
            let req = with_write_options!(
                i,
                i.client
                    .put_object()
                    .bucket(&i.bucket)
                    .key(i.key(&self.name))
                    .if_none_match("*")
                    .set_content_md5(md5)
                    .body(body)
            );
            i.block_on(req.send())?.map_err(|e| {
                let f = classify(&e);
                i.error(f.kind, format!("PUT {}: {f}", self.name))
            })?;
            return check_applied(&i, &self.name);
        }
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|p| p.part_number());
        let id = self.upload_id.clone().unwrap_or_default();
        let r = i.block_on(
            i.client
                .complete_multipart_upload()
                .bucket(&i.bucket)
                .key(i.key(&self.name))
                .upload_id(id)
                .if_none_match("*")
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send(),
        )?;
        if let Err(e) = r {
            let f = classify(&e);
            let err = i.error(f.kind, format!("complete upload of {}: {f}", self.name));
            if !answered_ok(&e) || !self.stored_whole(&i)? {
                return Err(err);
            }
            tracing::debug!("{err}: the object is stored whole all the same");
        }
        self.upload_id = None;
        check_applied(&i, &self.name)
    }

    /// Whether the object is stored with every byte written: what a completion the
    /// server answered with `200 OK` and a body the SDK could not read must have done
    /// (moto 5 names the body's root `CompleteMultipartUploadResponse`, where S3 says
    /// `...Result`). Its digest is still checked by the read-back, as any object's.
    fn stored_whole(&self, i: &Inner) -> Result<bool> {
        // Any failure of the HEAD itself leaves the completion's own error standing.
        let size = i
            .head(&self.name, "")
            .ok()
            .flatten()
            .and_then(|h| h.content_length());
        Ok(size.and_then(|n| u64::try_from(n).ok()) == Some(self.written))
    }

    /// Abort the multipart upload, if one was started. Best effort: a failure here leaves
    /// an invisible upload that `lifeboat cleanup` removes.
    fn abort_upload(&mut self) {
        for t in self.in_flight.drain(..) {
            t.abort();
        }
        let Some(id) = self.upload_id.take() else {
            return;
        };
        let i = &self.inner;
        let r = i.block_on(
            i.client
                .abort_multipart_upload()
                .bucket(&i.bucket)
                .key(i.key(&self.name))
                .upload_id(id)
                .send(),
        );
        let failed = match r {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => classify(&e).to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(
            "{}: could not abort the upload of {}: {failed}; `lifeboat cleanup` removes it",
            i.location,
            self.name,
        );
    }
}

/// Whether the server answered `200 OK` with a body that is not an S3 error (one the SDK
/// could not decode): the request may have done what it asked.
fn answered_ok<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    e.raw_response().is_some_and(|r| r.status().as_u16() == 200) && e.code().is_none()
}

/// Check that the server applied what every object asks for (object-lock retention,
/// server-side encryption) to the object just written; a server that ignores those
/// headers (s3s-fs, a bucket made without object lock) otherwise stores an object that
/// is silently unprotected. If it did not, the object is removed and the write fails
/// (exit 1), naming what the bucket lacks.
fn check_applied(i: &Inner, name: &str) -> Result<()> {
    let w = &i.write;
    if w.sse.is_none() && w.object_lock.is_none() {
        return Ok(());
    }
    let why = " (checking its retention and encryption)";
    let head = i.head(name, why)?.ok_or_else(|| {
        i.error(
            StoreErrorKind::NotFound,
            format!("HEAD {name}{why}: not found right after it was written"),
        )
    })?;
    let mut lacking = Vec::new();
    if let Some((mode, _)) = w.object_lock {
        let got_mode = head
            .object_lock_mode()
            .map(|m| m.as_str().to_ascii_uppercase());
        let want = mode.as_str().to_ascii_uppercase();
        if head.object_lock_retain_until_date().is_none() || got_mode.as_deref() != Some(&want) {
            lacking.push(format!(
                "object lock: no {} retention on the object (the bucket was not created with object lock enabled, or the server does not support it; drop --s3-object-lock or use a bucket with object lock)",
                mode.as_str()
            ));
        }
    }
    if let Some(sse) = w.sse {
        let got = head
            .server_side_encryption()
            .map(|s| s.as_str().to_string());
        if got.as_deref() != Some(sse.as_str()) {
            lacking.push(format!(
                "server-side encryption: the object is stored with {} instead of {} (the server does not support it; drop --s3-sse or use a server that does)",
                got.as_deref().unwrap_or("none"),
                sse.as_str()
            ));
        }
    }
    if lacking.is_empty() {
        return Ok(());
    }
    // Remove what was written: that version exactly, where the bucket keeps versions.
    let removed = i.block_on(
        i.client
            .delete_object()
            .bucket(&i.bucket)
            .key(i.key(name))
            .set_version_id(head.version_id().map(str::to_string))
            .set_bypass_governance_retention(
                (head.object_lock_mode() == Some(&aws_sdk_s3::types::ObjectLockMode::Governance))
                    .then_some(true),
            )
            .send(),
    )?;
    let removed = match removed {
        Ok(_) => format!("{name} was removed"),
        Err(e) => format!("{name} could not be removed ({})", classify(&e)),
    };
    Err(i.error(
        StoreErrorKind::Other,
        format!(
            "the server did not apply what was asked to {name}: {}; {removed}",
            lacking.join("; ")
        ),
    ))
}

async fn upload_part(
    i: Arc<Inner>,
    name: String,
    upload_id: String,
    number: i32,
    data: bytes::Bytes,
) -> Result<CompletedPart> {
    let md5 = i.content_md5(&data, false);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = i
            .client
            .upload_part()
            .bucket(&i.bucket)
            .key(i.key(&name))
            .upload_id(&upload_id)
            .part_number(number)
            .set_content_md5(md5.clone())
            .body(ByteStream::from(data.clone()))
            .send()
            .await;
        match r {
            Ok(o) => {
                return Ok(CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(o.e_tag().map(str::to_string))
                    .build())
            }
            Err(e) => {
                let f = classify(&e);
                if !f.kind.is_transient() || attempt >= PART_ATTEMPTS {
                    return Err(i.error(
                        f.kind,
                        format!("upload part {number} of {name} (attempt {attempt}): {f}"),
                    ));
                }
                tracing::debug!("part {number} of {name}: {f}; retrying");
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(5))).await;
            }
        }
    }
}

/// Abort the multipart uploads under the store's prefix started more than `older_than`
/// ago; one line per upload (`key (started T)`). Younger ones may belong to a run that is
/// still going and are left alone.
pub(super) fn abort_stale_uploads(i: &Inner, older_than: Duration) -> Result<Vec<String>> {
    let stale = stale_uploads(i, older_than)?;
    let mut done = Vec::new();
    for (key, id, when) in stale {
        i.block_on(
            i.client
                .abort_multipart_upload()
                .bucket(&i.bucket)
                .key(&key)
                .upload_id(&id)
                .send(),
        )?
        .map(|_| ())
        .or_else(|e| {
            let f = classify(&e);
            // Gone meanwhile (completed or aborted by another clean-up): nothing to do.
            if f.kind == StoreErrorKind::NotFound && !f.missing_bucket() {
                Ok(())
            } else {
                Err(i.error(f.kind, format!("abort upload of {key}: {f}")))
            }
        })?;
        done.push(format!("{key} (started {when})"));
    }
    Ok(done)
}

/// The multipart uploads under the store's prefix started more than `older_than` ago:
/// `(key, upload id, started)`.
pub(super) fn stale_uploads(
    i: &Inner,
    older_than: Duration,
) -> Result<Vec<(String, String, String)>> {
    let cutoff = std::time::SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(std::time::UNIX_EPOCH);
    let mut stale = Vec::new();
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    loop {
        let r = i
            .block_on(
                i.client
                    .list_multipart_uploads()
                    .bucket(&i.bucket)
                    .prefix(&i.prefix)
                    .set_key_marker(key_marker.take())
                    .set_upload_id_marker(id_marker.take())
                    .send(),
            )?
            .map_err(|e| {
                let f = classify(&e);
                i.error(f.kind, format!("list multipart uploads: {f}"))
            })?;
        for u in r.uploads() {
            let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                continue;
            };
            let started = u
                .initiated()
                .and_then(|t| std::time::SystemTime::try_from(*t).ok());
            if started.is_some_and(|t| t <= cutoff) {
                let when = u.initiated().map(|t| t.to_string()).unwrap_or_default();
                stale.push((key.to_string(), id.to_string(), when));
            }
        }
        if r.is_truncated() != Some(true) {
            break;
        }
        key_marker = r.next_key_marker().map(str::to_string);
        id_marker = r.next_upload_id_marker().map(str::to_string);
        if key_marker.is_none() {
            break;
        }
    }
    Ok(stale)
}

impl Write for S3Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.finished {
            return Err(io::Error::other("object already closed"));
        }
        if let Some(e) = &self.failed {
            return Err(io::Error::other(e.to_string()));
        }
        let room = (self.part_size as usize).saturating_sub(self.buf.len());
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() as u64 >= self.part_size {
            if let Err(e) = self.send_part() {
                return Err(self.fail(e));
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    fn commit(mut self: Box<Self>) -> Result<()> {
        self.finished = true;
        let r = self.finish();
        if r.is_err() {
            self.abort_upload();
        }
        r
    }

    fn abort(mut self: Box<Self>) {
        self.finished = true;
        self.abort_upload();
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if self.upload_id.is_some() {
            self.abort_upload();
        }
    }
}
