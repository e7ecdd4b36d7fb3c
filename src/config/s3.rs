//! S3 settings, one per `s3://` destination: the `--s3-*` flags (global, so every command
//! that names a destination takes them), the `LIFEBOAT_S3_*` variables, and the
//! `[[destination]]` file's `s3_*` keys, merged like every other setting (file < env <
//! flags). Flags and variables apply to every S3 destination of the run; the file's keys
//! to their own destination only, which is how one backup writes to two providers.
//!
//! Combinations that cannot work are refused here, before any request: a KMS key without
//! `aws:kms`, an object lock without a retention period (S3 would accept it and lock
//! nothing), a storage class whose objects cannot be read back without a restore.

use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use super::resolve::Recorder;
use super::{Config, Dur, Entry, Layers, Size};
pub use crate::store::s3_settings::{
    LockMode, S3Settings, Sse, DEFAULT_CONNECT_TIMEOUT, DEFAULT_FIRST_BYTE_TIMEOUT,
    DEFAULT_STALL_TIMEOUT, MIN_PART_SIZE,
};
use crate::{Error, Result};

/// The flags' spelling of the store's enums: what `#[derive(clap::ValueEnum)]` would make
/// (doc comment as help, without its final period), written out because the types belong
/// to the store, which knows nothing of the command line.
impl clap::ValueEnum for Sse {
    fn value_variants<'a>() -> &'a [Self] {
        &[Sse::Aes256, Sse::Kms]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(match self {
            Sse::Aes256 => {
                clap::builder::PossibleValue::new("AES256").help("SSE-S3: keys managed by S3")
            }
            Sse::Kms => clap::builder::PossibleValue::new("aws:kms")
                .help("SSE-KMS: keys in AWS KMS (--s3-kms-key-id, or the account's default key)"),
        })
    }
}

impl clap::ValueEnum for LockMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[LockMode::Governance, LockMode::Compliance]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(match self {
            LockMode::Governance => clap::builder::PossibleValue::new("governance")
                .help("Users with s3:BypassGovernanceRetention may still delete or shorten it"),
            LockMode::Compliance => clap::builder::PossibleValue::new("compliance").help(
                "Nobody, not even the account's root user, can delete the object before the date",
            ),
        })
    }
}

macro_rules! deserialize_from_str {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
deserialize_from_str!(Sse);
deserialize_from_str!(LockMode);

/// A storage class name as S3 spells it. Classes whose objects must be restored before a
/// GET (GLACIER, DEEP_ARCHIVE) are refused: the backup's read-back, `verify` and `fetch`
/// would fail on them, so such a backup could not be proven good (use GLACIER_IR, or a
/// lifecycle rule that moves old backups there).
pub fn parse_storage_class(s: &str) -> std::result::Result<String, String> {
    let s = s.trim();
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "{s:?}: a storage class in capitals, e.g. STANDARD, STANDARD_IA, GLACIER_IR"
        ));
    }
    if s == "GLACIER" || s == "DEEP_ARCHIVE" {
        return Err(format!(
            "{s}: objects in this class cannot be read without a restore, so the backup \
             could not be read back or verified; use GLACIER_IR, or a lifecycle rule"
        ));
    }
    Ok(s.to_string())
}

/// A part size of at least S3's minimum.
pub fn parse_part_size(s: &str) -> std::result::Result<Size, String> {
    let n = super::parse_size(s)?;
    if n < MIN_PART_SIZE {
        return Err(format!("{s} is below S3's minimum part size of 5M"));
    }
    Ok(Size(n))
}

/// The S3 flags; also the shape of the environment layer and of the merged result.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
#[command(next_help_heading = "S3 (s3://bucket/prefix destinations)")]
pub struct S3Options {
    /// Endpoint of an S3-compatible server (http://127.0.0.1:9000, https://minio.example);
    /// default: AWS. Env: LIFEBOAT_S3_ENDPOINT.
    #[arg(long = "s3-endpoint", value_name = "URL", global = true)]
    pub endpoint: Option<String>,
    /// Region (default: AWS_REGION or the profile's, else us-east-1). Env: LIFEBOAT_S3_REGION.
    #[arg(long = "s3-region", value_name = "REGION", global = true)]
    pub region: Option<String>,
    /// Path-style addressing (endpoint/bucket/key); default: on with --s3-endpoint, off for
    /// AWS. Env: LIFEBOAT_S3_PATH_STYLE.
    #[arg(long = "s3-path-style", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", require_equals = true, global = true)]
    pub path_style: Option<bool>,
    /// Server-side encryption of every object written. Env: LIFEBOAT_S3_SSE.
    #[arg(long = "s3-sse", value_name = "AES256|aws:kms", global = true)]
    pub sse: Option<Sse>,
    /// KMS key (id, ARN or alias) for --s3-sse aws:kms. Env: LIFEBOAT_S3_KMS_KEY_ID.
    #[arg(long = "s3-kms-key-id", value_name = "KEY", global = true)]
    pub kms_key_id: Option<String>,
    /// Storage class of the objects written (STANDARD, STANDARD_IA, GLACIER_IR, ...).
    /// Env: LIFEBOAT_S3_STORAGE_CLASS.
    #[arg(long = "s3-storage-class", value_name = "CLASS", global = true,
          value_parser = parse_storage_class)]
    pub storage_class: Option<String>,
    /// Object-lock retention mode of the backup's objects (the bucket must have object lock
    /// enabled); needs --s3-retain-for. Env: LIFEBOAT_S3_OBJECT_LOCK.
    #[arg(long = "s3-object-lock", value_name = "MODE", global = true)]
    pub object_lock: Option<LockMode>,
    /// How long object lock keeps each backup from deletion (e.g. 30d).
    /// Env: LIFEBOAT_S3_RETAIN_FOR.
    #[arg(long = "s3-retain-for", value_name = "DURATION", global = true)]
    pub retain_for: Option<Dur>,
    /// Bytes per multipart part (at least 5M; default 8M, raised for large databases so an
    /// upload fits S3's 10,000 parts). Env: LIFEBOAT_S3_PART_SIZE.
    #[arg(long = "s3-part-size", value_name = "BYTES", global = true,
          value_parser = parse_part_size)]
    pub part_size: Option<Size>,
    /// Deadline for connecting to the S3 server (default 10s).
    /// Env: LIFEBOAT_S3_CONNECT_TIMEOUT.
    #[arg(long = "s3-connect-timeout", value_name = "DURATION", global = true)]
    pub connect_timeout: Option<Dur>,
    /// Deadline from sending a request (a part of up to --s3-part-size included) to the
    /// first byte of the answer (default 30s); a hung server fails the request after it.
    /// Env: LIFEBOAT_S3_FIRST_BYTE_TIMEOUT.
    #[arg(long = "s3-first-byte-timeout", value_name = "DURATION", global = true)]
    pub first_byte_timeout: Option<Dur>,
    /// How long an upload or download may make no progress before it is called stalled
    /// (default 20s). Env: LIFEBOAT_S3_STALL_TIMEOUT.
    #[arg(long = "s3-stall-timeout", value_name = "DURATION", global = true)]
    pub stall_timeout: Option<Dur>,
}

fn var_of(key: &str) -> &'static str {
    super::env::env_var_of(key)
}

/// The environment's S3 layer; a value that cannot be parsed names its variable.
pub(crate) fn env_layer(get: &dyn Fn(&str) -> Option<String>) -> Result<S3Options> {
    fn parsed<T>(
        get: &dyn Fn(&str) -> Option<String>,
        key: &str,
        parse: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> Result<Option<T>> {
        let var = var_of(key);
        match get(var).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(v) => parse(&v)
                .map(Some)
                .map_err(|e| Error::flag(var, e.to_string())),
        }
    }
    let text = |s: &str| Ok::<_, String>(s.trim().to_string());
    Ok(S3Options {
        endpoint: parsed(get, "destination.s3_endpoint", text)?,
        region: parsed(get, "destination.s3_region", text)?,
        path_style: parsed(get, "destination.s3_path_style", |v| {
            match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(format!("{v:?} is not true or false")),
            }
        })?,
        sse: parsed(get, "destination.s3_sse", Sse::from_str)?,
        kms_key_id: parsed(get, "destination.s3_kms_key_id", text)?,
        storage_class: parsed(get, "destination.s3_storage_class", parse_storage_class)?,
        object_lock: parsed(get, "destination.s3_object_lock", LockMode::from_str)?,
        retain_for: parsed(get, "destination.s3_retain_for", Dur::from_str)?,
        part_size: parsed(get, "destination.s3_part_size", parse_part_size)?,
        connect_timeout: parsed(get, "destination.s3_connect_timeout", Dur::from_str)?,
        first_byte_timeout: parsed(get, "destination.s3_first_byte_timeout", Dur::from_str)?,
        stall_timeout: parsed(get, "destination.s3_stall_timeout", Dur::from_str)?,
    })
}

/// Checks of one `[[destination]]`'s S3 keys that serde cannot make.
pub(crate) fn validate_file(d: &super::DestinationConfig) -> std::result::Result<(), String> {
    let at = |k: &str| format!("[[destination]] {} {k}", d.url);
    if let Some(c) = &d.s3_storage_class {
        parse_storage_class(c).map_err(|e| format!("{}: {e}", at("s3_storage_class")))?;
    }
    if let Some(p) = d.s3_part_size {
        if p.0 < MIN_PART_SIZE {
            return Err(format!(
                "{}: {} is below S3's minimum part size of 5M",
                at("s3_part_size"),
                p.0
            ));
        }
    }
    Ok(())
}

/// One S3 key of `[[destination]]` as a layer value: the flags' and environment's
/// [`S3Options`] apply to every destination, the file's only to its own `url`.
fn in_file<'c, T>(
    c: &'c Config,
    url: &str,
    layer: impl Fn(&'c S3Options) -> Option<&'c T>,
    file: impl Fn(&'c super::DestinationConfig) -> Option<&'c T>,
) -> Option<&'c T> {
    layer(&c.s3).or_else(|| {
        c.destination
            .iter()
            .find(|d| d.url.trim_end_matches('/') == url.trim_end_matches('/'))
            .and_then(file)
    })
}

impl From<&S3Options> for S3Settings {
    fn from(o: &S3Options) -> S3Settings {
        S3Settings {
            endpoint: o.endpoint.clone(),
            region: o.region.clone(),
            path_style: o.path_style,
            part_size: o.part_size.map(|s| s.0),
            sse: o.sse,
            kms_key_id: o.kms_key_id.clone(),
            storage_class: o.storage_class.clone(),
            object_lock: o.object_lock.zip(o.retain_for.map(|d| d.0)),
            connect_timeout: o.connect_timeout.map(|d| d.0),
            first_byte_timeout: o.first_byte_timeout.map(|d| d.0),
            stall_timeout: o.stall_timeout.map(|d| d.0),
        }
    }
}

impl Layers {
    /// What the store of destination `url` is given ([`Layers::s3`], checked).
    pub fn s3_settings(&self, url: &str) -> Result<S3Settings> {
        Ok(S3Settings::from(&self.s3(url)?.0))
    }

    /// The S3 settings of destination `url`, checked, with where each came from.
    pub fn s3(&self, url: &str) -> Result<(S3Options, Vec<Entry>)> {
        let mut r = Recorder::new(self);
        let text = |s: &String| s.clone();
        let o = S3Options {
            endpoint: r.take(
                "destination.s3_endpoint",
                |c| in_file(c, url, |s| s.endpoint.as_ref(), |d| d.s3_endpoint.as_ref()),
                None,
                text,
            ),
            region: r.take(
                "destination.s3_region",
                |c| in_file(c, url, |s| s.region.as_ref(), |d| d.s3_region.as_ref()),
                None,
                text,
            ),
            path_style: r.take(
                "destination.s3_path_style",
                |c| {
                    in_file(
                        c,
                        url,
                        |s| s.path_style.as_ref(),
                        |d| d.s3_path_style.as_ref(),
                    )
                },
                None,
                bool::to_string,
            ),
            sse: r.take(
                "destination.s3_sse",
                |c| in_file(c, url, |s| s.sse.as_ref(), |d| d.s3_sse.as_ref()),
                None,
                |s| s.as_str().to_string(),
            ),
            kms_key_id: r.take(
                "destination.s3_kms_key_id",
                |c| {
                    in_file(
                        c,
                        url,
                        |s| s.kms_key_id.as_ref(),
                        |d| d.s3_kms_key_id.as_ref(),
                    )
                },
                None,
                text,
            ),
            storage_class: r.take(
                "destination.s3_storage_class",
                |c| {
                    in_file(
                        c,
                        url,
                        |s| s.storage_class.as_ref(),
                        |d| d.s3_storage_class.as_ref(),
                    )
                },
                None,
                text,
            ),
            object_lock: r.take(
                "destination.s3_object_lock",
                |c| {
                    in_file(
                        c,
                        url,
                        |s| s.object_lock.as_ref(),
                        |d| d.s3_object_lock.as_ref(),
                    )
                },
                None,
                |m| m.as_str().to_ascii_lowercase(),
            ),
            retain_for: r.take(
                "destination.s3_retain_for",
                |c| {
                    in_file(
                        c,
                        url,
                        |s| s.retain_for.as_ref(),
                        |d| d.s3_retain_for.as_ref(),
                    )
                },
                None,
                Dur::to_string,
            ),
            part_size: r.take(
                "destination.s3_part_size",
                |c| {
                    in_file(
                        c,
                        url,
                        |s| s.part_size.as_ref(),
                        |d| d.s3_part_size.as_ref(),
                    )
                },
                None,
                Size::to_string,
            ),
            connect_timeout: r.take(
                "destination.s3_connect_timeout",
                |c| {
                    in_file(
                        c,
                        url,
                        |s| s.connect_timeout.as_ref(),
                        |d| d.s3_connect_timeout.as_ref(),
                    )
                },
                Some(Dur(DEFAULT_CONNECT_TIMEOUT)),
                Dur::to_string,
            ),
            first_byte_timeout: r.take(
                "destination.s3_first_byte_timeout",
                |c| {
                    in_file(
                        c,
                        url,
                        |s| s.first_byte_timeout.as_ref(),
                        |d| d.s3_first_byte_timeout.as_ref(),
                    )
                },
                Some(Dur(DEFAULT_FIRST_BYTE_TIMEOUT)),
                Dur::to_string,
            ),
            stall_timeout: r.take(
                "destination.s3_stall_timeout",
                |c| {
                    in_file(
                        c,
                        url,
                        |s| s.stall_timeout.as_ref(),
                        |d| d.s3_stall_timeout.as_ref(),
                    )
                },
                Some(Dur(DEFAULT_STALL_TIMEOUT)),
                Dur::to_string,
            ),
        };
        let mut entries = r.entries;
        for e in &mut entries {
            e.key = e
                .key
                .replacen("destination.", &format!("destination[{url}]."), 1);
        }
        let origin = |key: &str| {
            entries
                .iter()
                .find(|e| e.key.ends_with(key))
                .map(|e| e.from.clone())
                .filter(|f| f.starts_with("--") || f.starts_with("LIFEBOAT_"))
                .unwrap_or_else(|| format!("[[destination]] {url} {key}"))
        };
        if o.kms_key_id.is_some() && o.sse != Some(Sse::Kms) {
            return Err(Error::flag(
                origin("s3_kms_key_id"),
                "a KMS key needs --s3-sse aws:kms",
            ));
        }
        match (o.object_lock, o.retain_for) {
            (Some(_), None) => {
                return Err(Error::flag(
                    origin("s3_object_lock"),
                    "object lock needs a retention period: add --s3-retain-for (e.g. 30d)",
                ))
            }
            (None, Some(_)) => {
                return Err(Error::flag(
                    origin("s3_retain_for"),
                    "a retention period needs --s3-object-lock governance|compliance",
                ))
            }
            (Some(_), Some(d)) if d.0.as_secs() < 1 => {
                return Err(Error::flag(
                    origin("s3_retain_for"),
                    "the retention period must be at least 1s",
                ))
            }
            _ => {}
        }
        for (key, d) in [
            ("s3_connect_timeout", o.connect_timeout),
            ("s3_first_byte_timeout", o.first_byte_timeout),
            ("s3_stall_timeout", o.stall_timeout),
        ] {
            if d.is_some_and(|d| d.0 < std::time::Duration::from_millis(100)) {
                return Err(Error::flag(
                    origin(key),
                    "a deadline of at least 100ms (e.g. 10s)",
                ));
            }
        }
        Ok((o, entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(file: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Layers) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.toml");
        std::fs::write(&p, file).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let l = Layers::load(Some(&p), &move |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
        .unwrap();
        (d, l)
    }

    #[test]
    fn file_per_destination_then_env_then_flags() {
        let (_d, mut l) = layers(
            "[[destination]]\nurl = \"s3://a/p\"\ns3_region = \"eu-west-1\"\ns3_sse = \"aws:kms\"\n\
             s3_kms_key_id = \"alias/x\"\n[[destination]]\nurl = \"s3://b\"\ns3_storage_class = \"STANDARD_IA\"\n",
            &[("LIFEBOAT_S3_ENDPOINT", "http://127.0.0.1:9000")],
        );
        let (a, es) = l.s3("s3://a/p/").unwrap();
        assert_eq!(a.region.as_deref(), Some("eu-west-1"));
        assert_eq!(a.sse, Some(Sse::Kms));
        assert_eq!(a.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(es
            .iter()
            .any(|e| e.key == "destination[s3://a/p/].s3_endpoint"
                && e.from == "LIFEBOAT_S3_ENDPOINT"));
        let (b, _) = l.s3("s3://b").unwrap();
        assert_eq!(b.region, None);
        assert_eq!(b.storage_class.as_deref(), Some("STANDARD_IA"));
        l.flags.s3.region = Some("us-west-2".into());
        assert_eq!(
            l.s3("s3://a/p").unwrap().0.region.as_deref(),
            Some("us-west-2")
        );
    }

    #[test]
    fn combinations_that_cannot_work_name_the_flag() {
        let (_d, mut l) = layers("", &[]);
        l.flags.s3.kms_key_id = Some("k".into());
        let e = l.s3("s3://b").unwrap_err();
        assert_eq!(e.locator().flag.as_deref(), Some("--s3-kms-key-id"));
        let (_d, mut l) = layers("", &[("LIFEBOAT_S3_OBJECT_LOCK", "compliance")]);
        let e = l.s3("s3://b").unwrap_err();
        assert_eq!(e.locator().flag.as_deref(), Some("LIFEBOAT_S3_OBJECT_LOCK"));
        l.flags.s3.retain_for = Some("30d".parse().unwrap());
        let (o, _) = l.s3("s3://b").unwrap();
        assert_eq!(o.object_lock, Some(LockMode::Compliance));
        assert_eq!(o.retain_for.unwrap().0.as_secs(), 30 * 86400);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse_storage_class("GLACIER").is_err());
        assert!(parse_storage_class("standard").is_err());
        assert_eq!(parse_storage_class("GLACIER_IR").unwrap(), "GLACIER_IR");
        assert!(parse_part_size("4M").is_err());
        assert_eq!(parse_part_size("8M").unwrap().0, 8 << 20);
        let e =
            Layers::load(None, &|k| (k == "LIFEBOAT_S3_SSE").then(|| "aes".into())).unwrap_err();
        assert_eq!(e.locator().flag.as_deref(), Some("LIFEBOAT_S3_SSE"));
        let e = Config::parse(
            "x",
            "[[destination]]\nurl = \"s3://b\"\ns3_object_lock = \"soft\"\n",
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Usage);
    }
}
