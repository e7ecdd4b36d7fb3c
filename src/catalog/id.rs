//! Backup ids: `YYYYMMDDTHHMMSS.mmmZ-<cluster id hex>`.
//!
//! They sort by time as plain strings (so `list` and `latest` need no parsing), name the
//! cluster so backups of several clusters can share a destination, and are unique: the
//! store refuses to create an object that exists, and the id is chosen under the store's
//! writer lock.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

/// A backup's id, checked: `YYYYMMDDTHHMMSS.mmmZ-<hex>` with a real date and time. The
/// manifest's `id` and every name derived from it (`<id>.db.zst`, `<id>.manifest.json`)
/// go through this type, so an id can never hold a path separator or a leading dot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId(String);

impl BackupId {
    /// The id of a backup started at `now` from cluster `cluster_id`.
    pub fn new(now: OffsetDateTime, cluster_id: u64) -> BackupId {
        BackupId(new_backup_id(now, cluster_id))
    }

    /// `s` if it is a backup id; `None` otherwise.
    pub fn parse(s: &str) -> Option<BackupId> {
        let (_, cluster) = s.split_once('Z')?;
        let hex = cluster.strip_prefix('-')?;
        let ok = time_of(s).is_some()
            && !hex.is_empty()
            && hex.len() <= 16
            && hex.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| BackupId(s.to_string()))
    }

    /// When the backup's stream started (to the millisecond).
    pub fn time(&self) -> OffsetDateTime {
        time_of(&self.0).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackupId {
    /// Honours width and alignment (`{:<42}` in `list`'s table).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl std::ops::Deref for BackupId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for BackupId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for BackupId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for BackupId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl Serialize for BackupId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BackupId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BackupId::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{s:?} is not a backup id (YYYYMMDDTHHMMSS.mmmZ-<cluster id>)"
            ))
        })
    }
}

/// The time in a backup id, if it has one.
pub fn time_of(id: &str) -> Option<OffsetDateTime> {
    let b = id.as_bytes();
    if b.len() < 20 || b[8] != b'T' || b[15] != b'.' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = id.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(num(0..4)? as i32, month, u8::try_from(num(6..8)?).ok()?)
            .ok()?;
    let t = time::Time::from_hms_milli(
        u8::try_from(num(9..11)?).ok()?,
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(13..15)?).ok()?,
        u16::try_from(num(16..19)?).ok()?,
    )
    .ok()?;
    Some(date.with_time(t).assume_utc())
}

pub fn new_backup_id(now: OffsetDateTime, cluster_id: u64) -> String {
    let t = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z-{:x}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond(),
        cluster_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_id_is_checked_once() {
        let t = time::macros::datetime!(2026-11-21 07:05:54.123 UTC);
        let id = BackupId::new(t, 0x1648f861f2b6c31c);
        assert_eq!(BackupId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(id.time(), t);
        for bad in [
            "",
            "latest",
            "../20261121T070554.123Z-1",
            "20261121T070554.123Z-",
            "20261121T070554.123Z-xyz",
            "20261321T070554.123Z-1",
            "20261121T070554.123Z-1/x",
            "20261121T070554.123Z-12345678901234567",
        ] {
            assert_eq!(BackupId::parse(bad), None, "{bad}");
        }
        assert_eq!(format!("[{:<40}]", id), format!("[{:<40}]", id.as_str()));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"20261121T070554.123Z-1648f861f2b6c31c\"");
        assert!(serde_json::from_str::<BackupId>("\"../x\"").is_err());
    }

    #[test]
    fn ids_sort_by_time() {
        let a = new_backup_id(
            time::macros::datetime!(2026-11-21 07:05:54.123 UTC),
            0x1648f861f2b6c31c,
        );
        assert_eq!(a, "20261121T070554.123Z-1648f861f2b6c31c");
        let b = new_backup_id(time::macros::datetime!(2026-11-21 10:00:00 UTC), 1);
        assert!(a < b);
    }
}
