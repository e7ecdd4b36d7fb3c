//! Encryption settings after the merge: which recipients each destination's data objects
//! are encrypted to, and which identity file opens encrypted backups.

use std::path::Path;

use super::env::env_var_of;
use super::{Entry, Layers, Origin};
use crate::catalog::Access;
use crate::pipeline::encrypt::{self, Encryption, IdentitySource, Recipient};
use crate::{Error, Result};

impl Layers {
    /// For `config check`: the identity file (never its content) and each destination's
    /// recipients, with where they came from.
    pub fn encryption_entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        if let Some(src) = self.identity(None) {
            let env = src.origin == env_var_of("encryption.identity");
            out.push(Entry {
                key: "encryption.identity".into(),
                value: src.path.display().to_string(),
                source: if env { Origin::Env } else { Origin::File },
                from: if env {
                    src.origin
                } else {
                    self.file
                        .as_ref()
                        .map(|(p, _)| p.display().to_string())
                        .unwrap_or_default()
                },
            });
        }
        if let Some((file, c)) = &self.file {
            for d in &c.destination {
                let mut keys = d.encrypt_to.clone();
                if let Some(f) = &d.encrypt_to_file {
                    keys.push(format!("(file {})", f.display()));
                }
                if !keys.is_empty() {
                    out.push(Entry {
                        key: format!("destination.encrypt_to ({})", d.url),
                        value: keys.join(", "),
                        source: Origin::File,
                        from: file.display().to_string(),
                    });
                }
            }
        }
        out
    }

    /// The identity file: `--identity`, else `LIFEBOAT_IDENTITY`, else the config file's
    /// `[encryption] identity`. Only named here; it is read when a backup needs it.
    pub fn identity(&self, flag: Option<&Path>) -> Option<IdentitySource> {
        if let Some(p) = flag {
            return Some(IdentitySource {
                origin: "--identity".into(),
                path: p.to_path_buf(),
            });
        }
        if let Some(p) = &self.env.encryption.identity {
            return Some(IdentitySource {
                origin: env_var_of("encryption.identity").into(),
                path: p.clone(),
            });
        }
        let (file, c) = self.file.as_ref()?;
        let p = c.encryption.identity.as_ref()?;
        Some(IdentitySource {
            origin: format!("[encryption] identity in {}", file.display()),
            path: p.clone(),
        })
    }

    /// What opening destinations and backups needs from these settings: each
    /// destination's S3 settings ([`Layers::s3_settings`]) and the identity file
    /// ([`Layers::identity`], with `--identity` as `flag`), read on first use.
    pub fn access(&self, flag: Option<&Path>) -> Access {
        let layers = self.clone();
        Access::new(
            move |url| layers.s3_settings(url),
            crate::catalog::Keys::new(self.identity(flag)),
        )
    }

    /// How `url`'s data objects are encrypted. `--encrypt-to` / `--encrypt-to-file`
    /// (`to`, `to_files`), when given, apply to every destination of the run; otherwise the
    /// destination's own `encrypt_to` / `encrypt_to_file` keys in the config file. A bad
    /// key is a usage error naming the flag, or the config file, key and line.
    pub fn encryption_for(
        &self,
        url: &str,
        to: &[String],
        to_files: &[std::path::PathBuf],
    ) -> Result<Option<Encryption>> {
        let mut recipients: Vec<Recipient> = Vec::new();
        if !to.is_empty() || !to_files.is_empty() {
            for r in to {
                recipients.push(
                    encrypt::parse_recipient(r)
                        .map_err(|e| Error::flag("--encrypt-to", format!("{}: {e}", short(r))))?,
                );
            }
            for f in to_files {
                recipients.extend(encrypt::read_recipients_file("--encrypt-to-file", f)?);
            }
        } else if let Some((file, c)) = &self.file {
            let want = url.trim_end_matches('/');
            let Some(d) = c
                .destination
                .iter()
                .find(|d| d.url.trim_end_matches('/') == want)
            else {
                return Ok(None);
            };
            let file = file.display();
            for r in &d.encrypt_to {
                recipients.push(encrypt::parse_recipient(r).map_err(|e| {
                    Error::flag(
                        "--config",
                        format!("{file}: [[destination]] {url} encrypt_to: {e}"),
                    )
                })?);
            }
            if let Some(f) = &d.encrypt_to_file {
                let found = encrypt::read_recipients_file("--config", f).map_err(|e| {
                    Error::flag(
                        "--config",
                        format!(
                            "{file}: [[destination]] {url} encrypt_to_file: {}",
                            match e {
                                Error::Flag { message, .. } => message,
                                other => other.to_string(),
                            }
                        ),
                    )
                })?;
                recipients.extend(found);
            }
        }
        if recipients.is_empty() {
            return Ok(None);
        }
        Encryption::new(recipients)
            .map(Some)
            .map_err(|e| Error::flag("--encrypt-to", e))
    }
}

/// A value as quoted in a message: at most 40 characters.
fn short(s: &str) -> String {
    let t: String = s.chars().take(40).collect();
    if t.len() < s.len() {
        format!("{t}…")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(text: &str) -> (tempfile::TempDir, Layers) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lb.toml");
        std::fs::write(&p, text).unwrap();
        let l = Layers::load(Some(&p), &|_| None).unwrap();
        (d, l)
    }

    #[test]
    fn flags_apply_to_every_destination_and_config_keys_to_their_own() {
        let key = age::x25519::Identity::generate().to_public().to_string();
        let (_d, l) = layers(&format!(
            "[[destination]]\nurl = \"/plain\"\n[[destination]]\nurl = \"/secret/\"\nencrypt_to = [\"{key}\"]\n"
        ));
        assert!(l.encryption_for("/plain", &[], &[]).unwrap().is_none());
        let e = l.encryption_for("/secret", &[], &[]).unwrap().unwrap();
        assert_eq!(e.recipients(), vec![key.clone()]);
        let e = l
            .encryption_for("/plain", std::slice::from_ref(&key), &[])
            .unwrap()
            .unwrap();
        assert_eq!(e.recipients(), vec![key]);
        let err = l
            .encryption_for("/plain", &["age1nope".into()], &[])
            .unwrap_err();
        assert_eq!(err.locator().flag.as_deref(), Some("--encrypt-to"));
        assert_eq!(err.exit_code(), crate::ExitCode::Usage);
    }

    #[test]
    fn a_bad_configured_recipient_names_the_file_and_destination() {
        let (_d, l) = layers("[[destination]]\nurl = \"/x\"\nencrypt_to = [\"age1bad\"]\n");
        let e = l.encryption_for("/x", &[], &[]).unwrap_err().to_string();
        assert!(
            e.contains("lb.toml: [[destination]] /x encrypt_to: "),
            "{e}"
        );
    }

    #[test]
    fn identity_flag_beats_env_beats_file() {
        let (_d, l) = layers("[encryption]\nidentity = \"/from/file\"\n");
        assert_eq!(l.identity(None).unwrap().path, Path::new("/from/file"));
        assert_eq!(
            l.identity(Some(Path::new("/f"))).unwrap().origin,
            "--identity"
        );
        let env = Layers::load(None, &|k| {
            (k == "LIFEBOAT_IDENTITY").then(|| "/from/env".to_string())
        })
        .unwrap();
        let s = env.identity(None).unwrap();
        assert_eq!(
            (s.origin.as_str(), s.path.as_path()),
            ("LIFEBOAT_IDENTITY", Path::new("/from/env"))
        );
    }
}
