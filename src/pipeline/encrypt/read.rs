//! Reading encrypted data objects: identities, and decryption that keeps random access.
//!
//! age's payload is sealed in 64 KiB chunks, so [`decrypt_at`] can serve a positional read
//! by decrypting only the chunks it touches (age's `StreamReader` seeks); a page read from
//! a remote encrypted backup still costs one small ranged read, not a download. Every chunk
//! is authenticated before a byte of it is returned: a damaged or swapped chunk is an
//! error, never data.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::io::ReadAt;
use crate::{Error, Result};

/// Secret keys that may open an encrypted backup, and where they came from (for messages).
pub struct Keyring {
    source: String,
    /// The operator's identity file: its flag (`--identity`, `LIFEBOAT_IDENTITY`, ...)
    /// and path. `None` for a key lifeboat made itself (a backup run's read-back key).
    named: Option<(String, String)>,
    ids: Vec<Id>,
}

enum Id {
    X25519(age::x25519::Identity),
    Ssh(age::ssh::Identity),
}

impl Id {
    fn as_dyn(&self) -> &dyn age::Identity {
        match self {
            Id::X25519(k) => k,
            Id::Ssh(k) => k,
        }
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({}, {} keys)", self.source, self.ids.len())
    }
}

/// Where the identity file was named: a flag, a variable or a config key, and the path.
#[derive(Debug, Clone)]
pub struct IdentitySource {
    /// `--identity`, `LIFEBOAT_IDENTITY` or `[encryption] identity` (for messages).
    pub origin: String,
    pub path: PathBuf,
}

impl Keyring {
    pub(super) fn single(source: &str, key: age::x25519::Identity) -> Keyring {
        Keyring {
            source: source.to_string(),
            named: None,
            ids: vec![Id::X25519(key)],
        }
    }

    /// Where the keys came from: `identity file /root/backup.key`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Read an identity file: age identities (`AGE-SECRET-KEY-1…` lines, `#` comments and
    /// blank lines ignored, as `age-keygen` writes them) or one unencrypted SSH private key
    /// (ed25519 or RSA). Errors are usage errors located at the flag that named the file.
    pub fn load(src: &IdentitySource) -> Result<Keyring> {
        let shown = src.path.display().to_string();
        let bad = |what: String| Error::flag(&src.origin, format!("{shown}: {what}"));
        let bytes = std::fs::read(&src.path).map_err(|e| bad(crate::error::io_words(&e)))?;
        let ids = parse_identities(&shown, &bytes).map_err(|e| Error::flag(&src.origin, e))?;
        Ok(Keyring {
            source: format!("identity file {shown}"),
            named: Some((src.origin.clone(), shown)),
            ids,
        })
    }

    fn identities(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.ids.iter().map(Id::as_dyn)
    }
}

/// The identities in an identity file's bytes; `file` names it in errors.
fn parse_identities(file: &str, bytes: &[u8]) -> std::result::Result<Vec<Id>, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| format!("{file}: not an age identity file or SSH private key (not text)"))?;
    if text.contains("-----BEGIN ") {
        return match age::ssh::Identity::from_buffer(bytes, Some(file.to_string())) {
            Ok(age::ssh::Identity::Unencrypted(k)) => Ok(vec![Id::Ssh(
                age::ssh::Identity::Unencrypted(k),
            )]),
            Ok(age::ssh::Identity::Encrypted(_)) => Err(format!(
                "{file}: the SSH key is protected by a passphrase, which lifeboat cannot ask for; use an age identity (age-keygen) or an unprotected copy of the key kept offline"
            )),
            Ok(age::ssh::Identity::Unsupported(_)) | Err(_) => Err(format!(
                "{file}: not an SSH private key lifeboat can use (ssh-ed25519 or ssh-rsa, unencrypted)"
            )),
        };
    }
    let mut ids = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{file} line {}", i + 1);
        if line.starts_with("AGE-PLUGIN-") {
            return Err(format!("{}: age plugin identities are not supported", at()));
        }
        if line.starts_with("age1") || line.starts_with("ssh-") {
            return Err(format!(
                "{}: this is a public key (a recipient); --identity needs the secret key (AGE-SECRET-KEY-1…) or an SSH private key",
                at()
            ));
        }
        let id = age::x25519::Identity::from_str(line)
            .map_err(|_| format!("{}: not an age secret key (AGE-SECRET-KEY-1…)", at()))?;
        ids.push(Id::X25519(id));
    }
    if ids.is_empty() {
        return Err(format!(
            "{file}: holds no secret key (AGE-SECRET-KEY-1… lines, or an SSH private key)"
        ));
    }
    Ok(ids)
}

/// Why an age file did not open. Keys from the operator's identity file that open none of
/// its recipients are a configuration error (exit 2) located at the flag that named the
/// file: the backup is not damaged, and nothing may be recorded against it. The read-back
/// key of a run not opening its own object, or a header that is not age's, is damage
/// (exit 3).
fn decrypt_error(e: age::DecryptError, keys: &Keyring, sealed: &Sealed<'_>) -> Error {
    let Sealed {
        object,
        what,
        recipients,
    } = *sealed;
    match e {
        age::DecryptError::NoMatchingKeys => match &keys.named {
            Some((origin, file)) => Error::flag(
                origin,
                if recipients.is_empty() {
                    format!("no identity in {file} opens {what}; give the identity file of one of the keys it was encrypted to")
                } else {
                    format!(
                        "no identity in {file} opens {what} (encrypted to {}); give the identity file holding one of those keys",
                        recipients.join(", ")
                    )
                },
            ),
            None => Error::integrity(
                object,
                format!(
                    "cannot decrypt {what}: {} does not open it (its header was changed)",
                    keys.source
                ),
            ),
        },
        age::DecryptError::Io(e) => {
            Error::Failed(format!("reading {object}: {}", crate::error::io_words(&e)))
        }
        other => Error::integrity(object, format!("{what}: age header: {other}")),
    }
}

/// What an encrypted object is, for messages: where it is stored (`object`), what it is to
/// people (`backup ID`) and the public keys it was encrypted to (its manifest's
/// `recipients`; empty when not known, as for a bare file).
#[derive(Clone, Copy)]
pub struct Sealed<'a> {
    pub object: &'a str,
    pub what: &'a str,
    pub recipients: &'a [String],
}

/// A sequential decrypting reader over the stored bytes (a store's `load`).
pub fn decrypt_stream(
    stored: Box<dyn Read + Send>,
    keys: &Keyring,
    sealed: &Sealed<'_>,
) -> Result<Box<dyn Read + Send>> {
    let d = age::Decryptor::new_buffered(io::BufReader::with_capacity(1 << 20, stored))
        .map_err(|e| decrypt_error(e, keys, sealed))?;
    let r = d
        .decrypt(keys.identities())
        .map_err(|e| decrypt_error(e, keys, sealed))?;
    Ok(Box::new(r))
}

/// Positional reads of the plaintext of an encrypted object read positionally.
pub fn decrypt_at(
    stored: Box<dyn ReadAt>,
    keys: &Keyring,
    sealed: &Sealed<'_>,
) -> Result<Box<dyn ReadAt>> {
    let d = age::Decryptor::new(Cursor {
        src: stored,
        pos: 0,
    })
    .map_err(|e| decrypt_error(e, keys, sealed))?;
    let mut r = d
        .decrypt(keys.identities())
        .map_err(|e| decrypt_error(e, keys, sealed))?;
    let damaged = |e: io::Error| {
        Error::integrity(
            sealed.object,
            format!("age payload: {}", crate::error::io_words(&e)),
        )
    };
    let size = r.seek(SeekFrom::End(0)).map_err(damaged)?;
    r.seek(SeekFrom::Start(0)).map_err(damaged)?;
    Ok(Box::new(Decrypted {
        inner: Mutex::new(r),
        size,
    }))
}

/// A [`ReadAt`] as the `Read + Seek` that age's reader wants.
struct Cursor {
    src: Box<dyn ReadAt>,
    pos: u64,
}

impl Read for Cursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.src.size().saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.src.read_exact_at(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Cursor {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(n) => {
                self.pos = n;
                return Ok(n);
            }
            SeekFrom::End(d) => (self.src.size(), d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        self.pos = base
            .checked_add_signed(delta)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

struct Decrypted {
    inner: Mutex<age::stream::StreamReader<Cursor>>,
    size: u64,
}

impl ReadAt for Decrypted {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.size) {
            return Err(crate::io::eof(offset, buf.len(), self.size));
        }
        let mut r = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        r.seek(SeekFrom::Start(offset))?;
        r.read_exact(buf)
    }
}

/// SHA-256 and length of what passed through a [`HashingReader`], readable after the
/// reader was handed on (to a decryptor that owns it).
#[derive(Clone, Default)]
pub struct ReadDigest(Arc<Mutex<(Sha256, u64)>>);

impl ReadDigest {
    pub fn finish(&self) -> ([u8; 32], u64) {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (g.0.clone().finalize().into(), g.1)
    }
}

/// Hashes the bytes read through it: the digest of the stored (encrypted) bytes while the
/// decrypted ones are checked.
pub struct HashingReader<R> {
    inner: R,
    digest: ReadDigest,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> (Self, ReadDigest) {
        let digest = ReadDigest::default();
        (
            HashingReader {
                inner,
                digest: digest.clone(),
            },
            digest,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut g = self.digest.0.lock().unwrap_or_else(|p| p.into_inner());
        g.0.update(&buf[..n]);
        g.1 += n as u64;
        Ok(n)
    }
}
