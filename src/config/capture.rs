//! `[capture]`: how `lifeboat capture` seals segments and watches its own lag.

use std::time::Duration;

use serde::Deserialize;

use super::{Dur, Size};
pub use crate::jobs::capture::CaptureSettings;
use crate::{Error, Result};

/// A segment must decompress within what readers accept
/// ([`crate::catalog::capture::MAX_SEGMENT_BYTES`]), with room for the last event.
pub const MAX_SEGMENT_BYTES: u64 = 64 << 20;

/// The `[capture]` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Seal a segment this often (default 1s): the RPO to a local destination.
    pub flush: Option<Dur>,
    /// ... or when it holds this many bytes of events (default 16M), whichever first.
    pub segment_bytes: Option<Size>,
    /// Record the live cluster's HashKV this often (default 1m).
    pub hash_every: Option<Dur>,
    /// `/healthz` fails (and `capture` logs) when capture lags more than this (default 30s).
    pub max_lag: Option<Dur>,
}

impl CaptureConfig {
    /// Defaults for what is not set; out-of-range values are usage errors naming the key
    /// and `file`.
    pub fn resolve(&self, file: &str) -> Result<CaptureSettings> {
        let d = CaptureSettings::default();
        let s = CaptureSettings {
            flush: self.flush.map_or(d.flush, |v| v.0),
            segment_bytes: self.segment_bytes.map_or(d.segment_bytes, |v| v.0),
            hash_every: self.hash_every.map_or(d.hash_every, |v| v.0),
            max_lag: self.max_lag.map_or(d.max_lag, |v| v.0),
        };
        let bad = |key: &str, what: &str| {
            Error::flag(
                format!("capture.{key}"),
                format!("{file}: [capture] {key} {what}"),
            )
        };
        if s.flush < Duration::from_millis(10) || s.flush > Duration::from_secs(3600) {
            return Err(bad("flush", "must be between 10ms and 1h"));
        }
        if s.segment_bytes < 4096 || s.segment_bytes > MAX_SEGMENT_BYTES {
            return Err(bad("segment_bytes", "must be between 4K and 64M"));
        }
        if s.hash_every < s.flush {
            return Err(bad("hash_every", "must be at least flush"));
        }
        if s.max_lag < s.flush {
            return Err(bad("max_lag", "must be at least flush"));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_limits() {
        let c: CaptureConfig = toml::from_str("").unwrap();
        assert_eq!(c.resolve("f").unwrap(), CaptureSettings::default());
        let c: CaptureConfig = toml::from_str("flush = \"200ms\"\nsegment_bytes = \"1M\"").unwrap();
        let r = c.resolve("f").unwrap();
        assert_eq!(
            (r.flush, r.segment_bytes),
            (Duration::from_millis(200), 1 << 20)
        );
        let c: CaptureConfig = toml::from_str("segment_bytes = \"1G\"").unwrap();
        let e = c.resolve("/etc/lifeboat.toml").unwrap_err().to_string();
        assert!(
            e.contains("capture.segment_bytes") && e.contains("/etc/lifeboat.toml"),
            "{e}"
        );
        assert!(toml::from_str::<CaptureConfig>("flsh = \"1s\"").is_err());
    }
}
