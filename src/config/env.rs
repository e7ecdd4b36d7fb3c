//! The environment as a config layer: etcdctl's variables for the connection, so existing
//! runbooks keep working, and `LIFEBOAT_*` for the rest.

use std::path::PathBuf;

use super::{BackupSettings, Config, EtcdSettings, Secret, UserSpec};
use crate::{Error, Result};

/// Environment variables, by config key. The connection keeps etcdctl's names so existing
/// runbooks work unchanged.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("etcd.endpoints", "ETCDCTL_ENDPOINTS"),
    ("etcd.cacert", "ETCDCTL_CACERT"),
    ("etcd.cert", "ETCDCTL_CERT"),
    ("etcd.key", "ETCDCTL_KEY"),
    ("etcd.user", "ETCDCTL_USER"),
    ("etcd.password", "ETCDCTL_PASSWORD"),
    ("etcd.dial_timeout", "ETCDCTL_DIAL_TIMEOUT"),
    ("etcd.command_timeout", "ETCDCTL_COMMAND_TIMEOUT"),
    ("backup.source", "LIFEBOAT_SOURCE"),
    ("backup.retries", "LIFEBOAT_RETRIES"),
    ("backup.zstd_level", "LIFEBOAT_ZSTD_LEVEL"),
    ("backup.zstd_threads", "LIFEBOAT_ZSTD_THREADS"),
    ("backup.rate_limit", "LIFEBOAT_RATE_LIMIT"),
    ("backup.stream_timeout", "LIFEBOAT_STREAM_TIMEOUT"),
    ("backup.read_back", "LIFEBOAT_READ_BACK"),
    ("backup.lock_timeout", "LIFEBOAT_LOCK_TIMEOUT"),
    ("destination.s3_endpoint", "LIFEBOAT_S3_ENDPOINT"),
    ("destination.s3_region", "LIFEBOAT_S3_REGION"),
    ("destination.s3_path_style", "LIFEBOAT_S3_PATH_STYLE"),
    ("destination.s3_sse", "LIFEBOAT_S3_SSE"),
    ("destination.s3_kms_key_id", "LIFEBOAT_S3_KMS_KEY_ID"),
    ("destination.s3_storage_class", "LIFEBOAT_S3_STORAGE_CLASS"),
    ("destination.s3_object_lock", "LIFEBOAT_S3_OBJECT_LOCK"),
    ("destination.s3_retain_for", "LIFEBOAT_S3_RETAIN_FOR"),
    ("destination.s3_part_size", "LIFEBOAT_S3_PART_SIZE"),
    (
        "destination.s3_connect_timeout",
        "LIFEBOAT_S3_CONNECT_TIMEOUT",
    ),
    (
        "destination.s3_first_byte_timeout",
        "LIFEBOAT_S3_FIRST_BYTE_TIMEOUT",
    ),
    ("destination.s3_stall_timeout", "LIFEBOAT_S3_STALL_TIMEOUT"),
    ("encryption.identity", "LIFEBOAT_IDENTITY"),
];

/// The variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "LIFEBOAT_CONFIG";

pub(crate) fn env_var_of(key: &str) -> &'static str {
    ENV_VARS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .unwrap_or("")
}

/// The environment as one more layer; a value that cannot be parsed names its variable.
pub(crate) fn env_layer(get: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
    fn parsed<T: std::str::FromStr<Err = String>>(
        get: &dyn Fn(&str) -> Option<String>,
        key: &str,
    ) -> Result<Option<T>> {
        let var = env_var_of(key);
        match get(var) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|e: String| Error::flag(var, format!("{v:?}: {e}"))),
        }
    }
    fn number<T: std::str::FromStr>(
        get: &dyn Fn(&str) -> Option<String>,
        key: &str,
    ) -> Result<Option<T>> {
        let var = env_var_of(key);
        match get(var) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Error::flag(var, format!("{v:?} is not a number"))),
        }
    }
    let etcd = EtcdSettings {
        endpoints: get(env_var_of("etcd.endpoints"))
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
        cacert: get(env_var_of("etcd.cacert")).map(PathBuf::from),
        cert: get(env_var_of("etcd.cert")).map(PathBuf::from),
        key: get(env_var_of("etcd.key")).map(PathBuf::from),
        user: get(env_var_of("etcd.user")).map(UserSpec::new),
        password: get(env_var_of("etcd.password")).map(Secret::new),
        dial_timeout: parsed(get, "etcd.dial_timeout")?,
        command_timeout: parsed(get, "etcd.command_timeout")?,
        quota_bytes: None,
    };
    let backup = BackupSettings {
        source: get(env_var_of("backup.source")),
        retries: number(get, "backup.retries")?,
        zstd_level: number(get, "backup.zstd_level")?,
        zstd_threads: number(get, "backup.zstd_threads")?,
        rate_limit: parsed(get, "backup.rate_limit")?,
        stream_timeout: parsed(get, "backup.stream_timeout")?,
        read_back: get(env_var_of("backup.read_back")),
        lock_timeout: parsed(get, "backup.lock_timeout")?,
    };
    if let Some(l) = backup.zstd_level.filter(|l| !(1..=19).contains(l)) {
        return Err(Error::flag(
            "LIFEBOAT_ZSTD_LEVEL",
            format!("{l}: use 1 to 19"),
        ));
    }
    Ok(Config {
        etcd,
        backup,
        s3: super::s3::env_layer(get)?,
        encryption: super::EncryptionConfig {
            identity: get(env_var_of("encryption.identity")).map(PathBuf::from),
        },
        ..Config::default()
    })
}

#[cfg(test)]
mod tests {
    use super::super::Layers;

    #[test]
    fn bad_env_names_the_variable() {
        let e = Layers::load(None, &|k| {
            (k == "ETCDCTL_DIAL_TIMEOUT").then(|| "soon".to_string())
        })
        .unwrap_err();
        assert_eq!(e.locator().flag.as_deref(), Some("ETCDCTL_DIAL_TIMEOUT"));
        assert_eq!(e.exit_code(), crate::ExitCode::Usage);
    }
}
