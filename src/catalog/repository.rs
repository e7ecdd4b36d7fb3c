//! One destination as a whole: its name, its store and the keys that open its encrypted
//! backups (rustic's `Repository`, for etcd backups).
//!
//! Every command that reads stored backups goes through a [`Repository`]: `list`,
//! `resolve` (an id or `latest`), opening a backup's database for random access or its
//! object as one stream (decrypted with the repository's keys, decompressed by the frame
//! reader), the verification records, and the orphans a killed run left. The jobs add
//! what builds on reading: `verify` ([`crate::jobs::verify`]), `scrub` and `prune`.
//!
//! The keys are not a process global: the edge (the CLI, the daemon's plan) names the
//! identity file once and hands it to each repository, which reads it the first time an
//! encrypted backup has to be opened, so a command that reads no encrypted data never
//! touches the file.

use std::io::Read;
use std::sync::{Arc, OnceLock};

use super::verified::{self, VerifyRecord};
use super::{BadManifest, Manifest};
use crate::io::ReadAt;
use crate::pipeline::encrypt::read::ReadDigest;
use crate::pipeline::encrypt::{IdentitySource, Keyring};
use crate::pipeline::FramedReader;
use crate::store::Store;
use crate::{Error, Result};

/// The operator's identity file, read on first use and then kept. Clones share the read.
#[derive(Clone, Default)]
pub struct Keys {
    inner: Arc<KeysInner>,
}

#[derive(Default)]
struct KeysInner {
    source: Option<IdentitySource>,
    loaded: OnceLock<std::result::Result<Arc<Keyring>, (String, String)>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner.source {
            Some(s) => write!(f, "Keys({} {})", s.origin, s.path.display()),
            None => write!(f, "Keys(none)"),
        }
    }
}

impl Keys {
    /// Keys from the identity file `source` names (`None`: no identity given).
    pub fn new(source: Option<IdentitySource>) -> Keys {
        Keys {
            inner: Arc::new(KeysInner {
                source,
                loaded: OnceLock::new(),
            }),
        }
    }

    /// No identity: encrypted backups cannot be opened (a usage error naming them).
    pub fn none() -> Keys {
        Keys::default()
    }

    /// The identities, read once; `None` when no identity file was named. A file that
    /// cannot be read is a usage error located at the flag (or variable) that named it.
    pub fn get(&self) -> Result<Option<Arc<Keyring>>> {
        let Some(src) = &self.inner.source else {
            return Ok(None);
        };
        let loaded = self.inner.loaded.get_or_init(|| {
            Keyring::load(src).map(Arc::new).map_err(|e| match e {
                Error::Flag { flag, message } => (flag, message),
                other => (src.origin.clone(), other.to_string()),
            })
        });
        match loaded {
            Ok(k) => Ok(Some(Arc::clone(k))),
            Err((flag, message)) => Err(Error::flag(flag, message)),
        }
    }
}

/// A destination's backups: a name (as the operator gave it), a store and keys.
/// Cloning gives another handle on the same store and keys.
#[derive(Clone)]
pub struct Repository {
    name: String,
    store: Arc<dyn Store>,
    keys: Keys,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({}, {:?})", self.name, self.keys)
    }
}

impl Repository {
    pub fn new(name: impl Into<String>, store: Arc<dyn Store>, keys: Keys) -> Repository {
        Repository {
            name: name.into(),
            store,
            keys,
        }
    }

    /// The destination as the operator named it (`--from`, `--to`, `[[destination]]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Another handle on the store (for work on other threads).
    pub fn store_arc(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The store's location, for messages (`/var/backups/etcd`, `s3://bucket/prefix`).
    pub fn location(&self) -> String {
        self.store.location()
    }

    /// Where a backup's data object is, for messages.
    pub fn object_of(&self, m: &Manifest) -> String {
        format!("{}/{}", self.store.location(), m.object)
    }

    /// Complete backups, newest first, plus manifests that were rejected.
    pub fn list(&self) -> Result<(Vec<Manifest>, Vec<BadManifest>)> {
        super::list(self.store())
    }

    /// A backup by id, or the newest one for `latest` (see [`super::resolve`]).
    pub fn resolve(&self, id: &str) -> Result<Manifest> {
        super::resolve(self.store(), id)
    }

    /// The keys that open backup `m`: `None` for an unencrypted backup; for an encrypted
    /// one without an identity, a usage error (exit 2) naming its recipients.
    pub fn keys_for(&self, m: &Manifest) -> Result<Option<Arc<Keyring>>> {
        super::keys_for(self.store(), m, self.keys.get_if(m)?)
    }

    /// The backup's database for random access (decrypted and decompressed on the fly).
    /// A missing data object is an integrity problem (exit 3).
    pub fn open_db(&self, m: &Manifest) -> Result<FramedReader<Box<dyn ReadAt>>> {
        let keys = self.keys_for(m)?;
        super::open_backup_db_with(self.store(), m, keys.as_deref())
    }

    /// The backup's stored object as one sequential read, decrypted when it is encrypted;
    /// the [`ReadDigest`] gives the SHA-256 and size of the bytes as stored.
    pub fn load_object(&self, m: &Manifest) -> Result<(Box<dyn Read + Send>, ReadDigest)> {
        let keys = self.keys_for(m)?;
        super::load_backup_object(self.store(), m, keys.as_deref())
    }

    /// [`Repository::load_object`] without the stored bytes' digest (see
    /// [`super::load_backup_stream`]).
    pub fn load_stream(&self, m: &Manifest) -> Result<Box<dyn Read + Send>> {
        let keys = self.keys_for(m)?;
        super::load_backup_stream(self.store(), m, keys.as_deref())
    }

    /// The last recorded verification of backup `id` (see [`verified::read_state`]).
    pub fn verdict(
        &self,
        id: &str,
    ) -> Result<(super::retention::VerifyState, Option<VerifyRecord>)> {
        verified::read_state(self.store(), id)
    }

    /// Record a verification's verdict beside the backup, replacing the previous one.
    pub fn record_verdict(&self, r: &VerifyRecord) -> Result<()> {
        verified::write_record(self.store(), r)
    }

    /// Whether backup `id` still exists (its manifest is what makes it exist).
    pub fn contains(&self, id: &str) -> Result<bool> {
        Ok(self.store.stat(&super::manifest_name(id))?.is_some())
    }

    /// Data objects whose manifest is missing (see [`super::orphans`]).
    pub fn orphans(&self) -> Result<Vec<String>> {
        super::orphans(self.store())
    }
}

impl Keys {
    /// The keys, read only for a backup that is encrypted (an unencrypted one never
    /// touches the identity file).
    fn get_if(&self, m: &Manifest) -> Result<Option<Arc<Keyring>>> {
        if m.encryption == crate::pipeline::encrypt::SCHEME {
            self.get()
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::retention::VerifyState;
    use crate::store::local::LocalStore;

    const GOLDEN: &str =
        include_str!("../../tests/golden/v1/20261129T053645.864Z-650b5d21591bfd0.manifest.json");
    const GOLDEN_NAME: &str = "20261129T053645.864Z-650b5d21591bfd0.manifest.json";

    fn repo(dir: &std::path::Path) -> Repository {
        let store = LocalStore::open(dir, false).unwrap();
        Repository::new(dir.display().to_string(), Arc::new(store), Keys::none())
    }

    /// Stores two backups' manifests (the data object only for the first), returns ids.
    fn two_backups(r: &Repository) -> (String, String) {
        let base = Manifest::from_json(GOLDEN.as_bytes(), GOLDEN_NAME).unwrap();
        let mut ids = Vec::new();
        for h in 0..2 {
            let t = time::macros::datetime!(2026-11-01 00:00 UTC) + time::Duration::hours(h);
            let mut m = base.clone();
            m.id = super::super::BackupId::new(t, 0x650b5d21591bfd0);
            m.object = super::super::data_name(&m.id);
            m.format_version = super::super::FORMAT_VERSION;
            if h == 0 {
                r.store().put_bytes(&m.object, b"not a backup").unwrap();
            }
            r.store()
                .put_bytes(&super::super::manifest_name(&m.id), &m.seal().unwrap())
                .unwrap();
            ids.push(m.id);
        }
        (ids[0].to_string(), ids[1].to_string())
    }

    #[test]
    fn lists_and_resolves_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path());
        let (old, new) = two_backups(&r);
        r.store().put_bytes("junk.manifest.json", b"{").unwrap();
        let (good, bad) = r.list().unwrap();
        let ids: Vec<&str> = good.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, [new.as_str(), old.as_str()]);
        assert_eq!(bad.len(), 1);
        assert_eq!(r.resolve("latest").unwrap().id, new);
        assert_eq!(r.resolve(&old).unwrap().id, old);
        let e = r.resolve("20000101T000000.000Z-1").unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Failed, "{e}");
        assert!(e.to_string().contains("lifeboat list --from"), "{e}");
        let e = r.resolve("../x").unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Usage, "{e}");
        assert!(r.contains(&old).unwrap());
        assert!(!r.contains("nope").unwrap());
    }

    #[test]
    fn a_missing_data_object_is_damage_and_a_bad_one_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path());
        let (old, new) = two_backups(&r);
        let e = r.open_db(&r.resolve(&new).unwrap()).err().unwrap();
        assert_eq!(e.exit_code(), crate::ExitCode::Integrity, "{e}");
        assert!(e.to_string().contains("is missing"), "{e}");
        let e = r.open_db(&r.resolve(&old).unwrap()).err().unwrap();
        assert_eq!(e.exit_code(), crate::ExitCode::Integrity, "{e}");
    }

    #[test]
    fn an_encrypted_backup_without_keys_names_its_recipients() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path());
        let (old, _) = two_backups(&r);
        let mut m = r.resolve(&old).unwrap();
        m.encryption = crate::pipeline::encrypt::SCHEME.into();
        m.recipients = vec!["age1example".into()];
        let e = r.open_db(&m).err().unwrap();
        assert_eq!(e.exit_code(), crate::ExitCode::Usage, "{e}");
        assert!(e.to_string().contains("age1example"), "{e}");
        // An identity file that is not there is read only for an encrypted backup.
        let keys = Keys::new(Some(IdentitySource {
            origin: "--identity".into(),
            path: dir.path().join("missing.key"),
        }));
        let r = Repository::new("d", r.store_arc(), keys);
        let plain = r.resolve(&old).unwrap();
        assert!(r.keys_for(&plain).unwrap().is_none());
        let e = r.open_db(&m).err().unwrap();
        assert!(e.to_string().contains("--identity"), "{e}");
        assert!(e.to_string().contains("missing.key"), "{e}");
    }

    #[test]
    fn verdicts_round_trip_and_orphans_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path());
        let (old, new) = two_backups(&r);
        assert_eq!(r.verdict(&old).unwrap().0, VerifyState::Unchecked);
        let rec = VerifyRecord {
            id: old.clone(),
            verified_at: "2026-11-02T00:00:00Z".into(),
            ok: false,
            problems: vec!["bad".into()],
        };
        r.record_verdict(&rec).unwrap();
        assert_eq!(r.verdict(&old).unwrap(), (VerifyState::Failed, Some(rec)));
        assert!(r.orphans().unwrap().is_empty());
        r.store()
            .remove(&super::super::manifest_name(&old))
            .unwrap();
        assert_eq!(r.orphans().unwrap(), [super::super::data_name(&old)]);
        assert_eq!(r.list().unwrap().0.len(), 1);
        assert_eq!(r.resolve("latest").unwrap().id, new);
    }
}
