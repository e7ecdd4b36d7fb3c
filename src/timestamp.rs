//! Points in time as lifeboat writes and reads them: RFC 3339 in UTC (manifests'
//! `created_at`/`completed_at`, verification records, lock files, object-lock dates, logs).
//!
//! One type, so every place parses the same way: RFC 3339 fractions vary in length, so
//! the strings must never be compared as text, and a time that does not parse is `None`
//! for the caller to decide about (never a panic, never the epoch by accident).

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A point in time, shown as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(OffsetDateTime::now_utc())
    }

    /// An RFC 3339 time as written in a manifest or record; `None` when it is not one.
    pub fn parse(s: &str) -> Option<Timestamp> {
        OffsetDateTime::parse(s.trim(), &Rfc3339)
            .ok()
            .map(Timestamp)
    }

    /// Seconds since the Unix epoch (for metrics).
    pub fn unix_seconds(&self) -> f64 {
        self.0.unix_timestamp_nanos() as f64 / 1e9
    }

    pub fn as_offset(&self) -> OffsetDateTime {
        self.0
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Timestamp {
        Timestamp(t)
    }
}

impl From<std::time::SystemTime> for Timestamp {
    fn from(t: std::time::SystemTime) -> Timestamp {
        Timestamp(OffsetDateTime::from(t))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Formatting RFC 3339 fails only for years outside 0..=9999 or a non-whole-minute
        // offset; show such a time in time's own words rather than fail.
        match self.0.format(&Rfc3339) {
            Ok(s) => f.pad(&s),
            Err(_) => f.pad(&self.0.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order_by_time_not_text() {
        let a = Timestamp::parse("2026-11-02T00:00:00.5Z").unwrap();
        let b = Timestamp::parse("2026-11-02T00:00:00.25Z").unwrap();
        assert!(b < a, "parsed, not compared as text");
        assert_eq!(Timestamp::parse(&a.to_string()), Some(a));
        assert_eq!(format!("{a:<26}|"), "2026-11-02T00:00:00.5Z    |");
        assert_eq!(a.unix_seconds(), 1_793_577_600.5);
        assert_eq!(
            Timestamp::parse("2026-11-02T01:00:00+01:00"),
            Timestamp::parse("2026-11-02T00:00:00Z")
        );
    }

    #[test]
    fn not_a_time_is_none() {
        for s in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-02 00:00:00",
        ] {
            assert_eq!(Timestamp::parse(s), None, "{s}");
        }
    }
}
