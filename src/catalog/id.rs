//! Backup ids: `YYYYMMDDTHHMMSS.mmmZ-<cluster id hex>`.
//!
//! They sort by time as plain strings (so `list` and `latest` need no parsing), name the
//! cluster so backups of several clusters can share a destination, and are unique: the
//! store refuses to create an object that exists, and the id is chosen under the store's
//! writer lock.

use time::OffsetDateTime;

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
