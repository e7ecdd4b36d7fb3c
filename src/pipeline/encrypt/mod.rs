//! Client-side encryption of data objects with age (age-encryption.org/v1).
//!
//! An encrypted data object is an age v1 file whose plaintext is exactly the object an
//! unencrypted backup stores (seekable zstd frames and their seek table). Encryption comes
//! last in the pipeline, after compression (ciphertext does not compress), as a wrapper
//! around each destination's [`ObjectWriter`], so one run can store a plain copy in one
//! place and an encrypted one in another. age's payload is a STREAM of 64 KiB chunks, each
//! sealed on its own: memory stays bounded while writing, and a reader can seek to any
//! chunk, which keeps `inspect DEST:ID` reading only the frames it needs ([`read`]).
//! Each encrypting writer runs on a thread of its own behind a bounded channel
//! ([`stage`]), so encryption overlaps with compression.
//!
//! The manifest stays plaintext and names the recipients' public keys, so `list`, `prune`
//! and retention work without any secret, and an operator can tell which key a backup needs.
//!
//! The backup reads back what it stored before it writes the manifest. It holds no secret
//! key of the recipients, so every encrypted object is also encrypted to a key generated
//! for that run alone ([`ReadBackKey`]), whose secret half never leaves the process and is
//! dropped when the run ends: one more X25519 stanza in the age header, and no key that
//! exists afterwards can open it.

pub mod read;
mod stage;

use std::io::{self, Write};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use super::frames::HashingWriter;
use crate::store::ObjectWriter;
use crate::{Error, Result};

pub use read::{IdentitySource, Keyring};

/// The `encryption` value a manifest records for an age-encrypted data object.
pub const SCHEME: &str = "age";

/// One recipient's public key, as the user gave it (the manifest records that text).
pub struct Recipient {
    text: String,
    key: Key,
}

enum Key {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
}

impl Recipient {
    /// The public key as given (an SSH key's comment is dropped: it is not part of the key).
    pub fn text(&self) -> &str {
        &self.text
    }

    fn as_dyn(&self) -> &dyn age::Recipient {
        match &self.key {
            Key::X25519(k) => k,
            Key::Ssh(k) => k,
        }
    }
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parse one recipient: an age X25519 public key (`age1…`) or an SSH public key
/// (`ssh-ed25519 AAAA… [comment]`, `ssh-rsa AAAA… [comment]`). The error says what was
/// expected, for the caller to prefix with the flag or file line.
pub fn parse_recipient(s: &str) -> std::result::Result<Recipient, String> {
    let s = s.trim();
    if s.starts_with("AGE-SECRET-KEY-") {
        return Err(
            "this is a secret key (an identity), not a recipient: give its public key (`age-keygen -y FILE` prints it)"
                .into(),
        );
    }
    if s.starts_with("age1") {
        return age::x25519::Recipient::from_str(s)
            .map(|k| Recipient {
                text: s.to_string(),
                key: Key::X25519(k),
            })
            .map_err(|_| "not a valid age X25519 public key (age1…)".to_string());
    }
    if s.starts_with("ssh-") {
        // The key type and the base64 key; a trailing comment is not part of the key.
        let key: Vec<&str> = s.split_whitespace().take(2).collect();
        let key = key.join(" ");
        return match age::ssh::Recipient::from_str(&key) {
            Ok(k) => Ok(Recipient {
                text: key,
                key: Key::Ssh(k),
            }),
            Err(age::ssh::ParseRecipientKeyError::Unsupported(t)) => Err(format!(
                "SSH key type {t} is not supported: use ssh-ed25519 or ssh-rsa"
            )),
            Err(age::ssh::ParseRecipientKeyError::RsaModulusTooSmall) => {
                Err("ssh-rsa key shorter than 2048 bits: too weak, use a longer key".into())
            }
            Err(_) => Err("not a valid SSH public key (ssh-ed25519 AAAA… or ssh-rsa AAAA…)".into()),
        };
    }
    let shown: String = s.chars().take(24).collect();
    Err(format!(
        "{shown:?} is not a recipient: give an age public key (age1…) or an SSH public key (ssh-ed25519 …, ssh-rsa …)"
    ))
}

/// Parse a recipients file as `age -R` reads one: one recipient per line, blank lines and
/// lines starting with `#` ignored. `file` names it in errors, with the line number.
pub fn parse_recipients_file(
    file: &str,
    text: &str,
) -> std::result::Result<Vec<Recipient>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_recipient(line).map_err(|e| format!("{file} line {}: {e}", i + 1))?);
    }
    if out.is_empty() {
        return Err(format!(
            "{file}: holds no recipient (one public key per line)"
        ));
    }
    Ok(out)
}

/// Read and parse a recipients file; errors are usage errors located at `flag`.
pub fn read_recipients_file(flag: &str, path: &std::path::Path) -> Result<Vec<Recipient>> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::flag(flag, format!("{shown}: {}", crate::error::io_words(&e))))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::flag(flag, format!("{shown}: not a text file of public keys")))?;
    parse_recipients_file(&shown, &text).map_err(|e| Error::flag(flag, e))
}

/// Where a destination's data object is encrypted to.
#[derive(Debug)]
pub struct Encryption {
    recipients: Vec<Recipient>,
}

impl Encryption {
    /// At least one recipient; the same key given twice counts once.
    pub fn new(recipients: Vec<Recipient>) -> std::result::Result<Encryption, String> {
        let mut seen: Vec<Recipient> = Vec::new();
        for r in recipients {
            if !seen.iter().any(|s| s.text == r.text) {
                seen.push(r);
            }
        }
        if seen.is_empty() {
            return Err("no recipient".into());
        }
        Ok(Encryption { recipients: seen })
    }

    /// The public keys, as the manifest records them.
    pub fn recipients(&self) -> Vec<String> {
        self.recipients.iter().map(|r| r.text.clone()).collect()
    }

    /// Wrap a destination's writer: what is written to the result is stored encrypted to
    /// every recipient and to `read_back`. `object` names the object in errors. The
    /// returned [`StoredDigest`] is filled in when the writer commits.
    pub fn wrap(
        &self,
        inner: Box<dyn ObjectWriter>,
        read_back: &ReadBackKey,
        object: &str,
    ) -> Result<(Box<dyn ObjectWriter>, StoredDigest)> {
        let mut keys: Vec<&dyn age::Recipient> =
            self.recipients.iter().map(Recipient::as_dyn).collect();
        keys.push(&read_back.public);
        let fail = |what: String| Error::Failed(format!("encrypting {object}: {what}"));
        let enc =
            age::Encryptor::with_recipients(keys.into_iter()).map_err(|e| fail(e.to_string()))?;
        let stream = enc
            .wrap_output(HashingWriter::new(Boxed(inner)))
            .map_err(|e| fail(crate::error::io_words(&e)))?;
        let digest = StoredDigest::default();
        let w = EncryptingWriter {
            stream: Some(stream),
            digest: digest.clone(),
            object: object.to_string(),
        };
        // Its own stage: encryption overlaps with compression (see [`stage`]).
        let staged = stage::Staged::spawn(Box::new(w), object)?;
        Ok((Box::new(staged), digest))
    }
}

/// A key made for one backup run so that it can read back what it encrypted (see the
/// module docs); dropped with the run.
pub struct ReadBackKey {
    secret: age::x25519::Identity,
    public: age::x25519::Recipient,
}

impl ReadBackKey {
    pub fn generate() -> ReadBackKey {
        let secret = age::x25519::Identity::generate();
        let public = secret.to_public();
        ReadBackKey { secret, public }
    }

    /// The keyring that opens this run's objects.
    pub fn keyring(&self) -> Keyring {
        Keyring::single("the backup's read-back key", self.secret.clone())
    }
}

/// Size and SHA-256 of the bytes as stored (the ciphertext), known once the writer has
/// committed: the manifest's `stored_size` and `stored_sha256` describe them.
#[derive(Debug, Clone, Default)]
pub struct StoredDigest(Arc<Mutex<Option<SizeAndSha>>>);

/// Bytes stored and their SHA-256.
pub type SizeAndSha = (u64, [u8; 32]);

impl StoredDigest {
    pub fn get(&self) -> Option<SizeAndSha> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn set(&self, v: SizeAndSha) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
    }
}

/// `Box<dyn ObjectWriter>` as a plain writer (age's stream wants a sized `Write`).
struct Boxed(Box<dyn ObjectWriter>);

impl Write for Boxed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

type Stream = age::stream::StreamWriter<HashingWriter<Boxed>>;

struct EncryptingWriter {
    /// `None` only while committing or aborting.
    stream: Option<Stream>,
    digest: StoredDigest,
    object: String,
}

impl EncryptingWriter {
    fn stream(&mut self) -> io::Result<&mut Stream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::other("encrypting writer already finished"))
    }
}

impl Write for EncryptingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream()?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream()?.flush()
    }
}

impl ObjectWriter for EncryptingWriter {
    fn commit(mut self: Box<Self>) -> Result<()> {
        let stream = self.stream.take().ok_or_else(|| {
            Error::Internal(format!("encrypting {}: finished twice", self.object))
        })?;
        // The last chunk goes out here; a failure drops the inner writer, which removes
        // what was written (the ObjectWriter contract).
        let hashed = stream.finish().map_err(|e| {
            Error::Failed(format!(
                "encrypting {}: {}",
                self.object,
                crate::error::io_words(&e)
            ))
        })?;
        let (Boxed(inner), len, sha) = hashed.into_parts();
        self.digest.set((len, sha));
        inner.commit()
    }

    fn abort(mut self: Box<Self>) {
        if let Some(stream) = self.stream.take() {
            if let Ok(hashed) = stream.finish() {
                let (Boxed(inner), _, _) = hashed.into_parts();
                inner.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests;
