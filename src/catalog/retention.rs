//! Retention: which backups a policy keeps, as a pure function of the backups' times and
//! verification states, so every rule can be tested on synthetic timelines.
//!
//! The rules are restic's. `keep_last N` keeps the N newest. `keep_hourly/daily/weekly/
//! monthly/yearly N` keep the newest backup of each of the N newest UTC hours, days, ISO
//! weeks, months, years that hold a backup (periods without a backup do not count, so a
//! stopped schedule does not age everything out). `keep_within D` keeps every backup taken
//! within D of the newest one (again relative to the newest backup, not to the clock). A
//! backup is kept if any rule keeps it.
//!
//! Two rules sit above the policy, because deleting the wrong backup is the one mistake a
//! backup tool cannot undo: the newest backup that has not failed verification is always
//! kept, and a backup that failed verification (scrubbing) is never removed automatically
//! and never counts as a bucket's newest good backup — an operator looks at it and removes
//! it by hand.

use serde::Serialize;
use time::OffsetDateTime;

use crate::{Error, Result};

/// What a prune keeps. All-`None` is refused (a prune with no rule would remove everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<std::time::Duration>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

/// The last scrub's verdict on a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyState {
    /// Never scrubbed: read back when written, which is what every listed backup has passed.
    Unchecked,
    Passed,
    Failed,
}

/// One backup as the policy sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub time: OffsetDateTime,
    pub verify: VerifyState,
}

/// The verdict on one backup, with every reason it is kept (empty: removed).
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub id: String,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// Parse the time out of a backup id (`YYYYMMDDTHHMMSS.mmmZ-<cluster>`), which is when its
/// snapshot started, in UTC. Ids are what listing yields without reading manifests' bodies.
pub fn time_of_id(id: &str) -> Option<OffsetDateTime> {
    super::id::time_of(id)
}

type Bucket = fn(OffsetDateTime) -> String;

fn hour(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour()
    )
}
fn day(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}
fn week(t: OffsetDateTime) -> String {
    let (y, w, _) = t.to_iso_week_date();
    format!("{y:04}-W{w:02}")
}
fn month(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}", t.year(), u8::from(t.month()))
}
fn year(t: OffsetDateTime) -> String {
    format!("{:04}", t.year())
}

/// Decide keep/remove for every backup, newest first in the result.
///
/// Refuses (usage error) an empty policy. Never returns a plan that removes every backup:
/// the newest backup that did not fail verification is always kept, and failed ones are
/// never removed; when all backups failed verification, all are kept.
pub fn plan(policy: &Policy, backups: &[Candidate]) -> Result<Vec<Decision>> {
    if policy.is_empty() {
        return Err(Error::Usage(
            "no retention rule: give --keep-last, --keep-hourly, --keep-daily, --keep-weekly, \
             --keep-monthly, --keep-yearly or --keep-within (or [retention] in --config FILE)"
                .into(),
        ));
    }
    let mut order: Vec<&Candidate> = backups.iter().collect();
    order.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); order.len()];
    let good: Vec<usize> = (0..order.len())
        .filter(|&i| order[i].verify != VerifyState::Failed)
        .collect();
    for (i, c) in order.iter().enumerate() {
        if c.verify == VerifyState::Failed {
            reasons[i].push("failed verification (never removed automatically)".into());
        }
    }
    if let Some(&newest) = good.first() {
        reasons[newest].push("newest good backup".into());
    }
    if let Some(n) = policy.keep_last {
        for (rank, &i) in good.iter().take(n as usize).enumerate() {
            reasons[i].push(format!("last {}", rank + 1));
        }
    }
    let rules: [(&str, Option<u32>, Bucket); 5] = [
        ("hourly", policy.keep_hourly, hour),
        ("daily", policy.keep_daily, day),
        ("weekly", policy.keep_weekly, week),
        ("monthly", policy.keep_monthly, month),
        ("yearly", policy.keep_yearly, year),
    ];
    for (name, count, bucket) in rules {
        let Some(n) = count else { continue };
        let mut seen: Vec<String> = Vec::new();
        for &i in &good {
            if seen.len() >= n as usize {
                break;
            }
            let b = bucket(order[i].time);
            if seen.last() != Some(&b) {
                reasons[i].push(format!("{name} {b}"));
                seen.push(b);
            }
        }
    }
    if let (Some(within), Some(&newest)) = (policy.keep_within, good.first()) {
        let since = order[newest].time - within;
        let shown = humantime::format_duration(within);
        for &i in &good {
            if order[i].time >= since {
                reasons[i].push(format!("within {shown}"));
            }
        }
    }
    let decisions: Vec<Decision> = order
        .iter()
        .zip(reasons)
        .map(|(c, reasons)| Decision {
            id: c.id.clone(),
            keep: !reasons.is_empty(),
            reasons,
        })
        .collect();
    if !decisions.is_empty() && decisions.iter().all(|d| !d.keep) {
        // Unreachable by construction (the newest good backup is kept); a guard, not a rule.
        return Err(Error::Refused(
            "retention would remove every backup; nothing removed".into(),
        ));
    }
    Ok(decisions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn at(t: OffsetDateTime) -> Candidate {
        Candidate {
            id: crate::catalog::new_backup_id(t, 0xabc),
            time: t,
            verify: VerifyState::Unchecked,
        }
    }

    fn kept(d: &[Decision]) -> Vec<String> {
        d.iter()
            .filter(|d| d.keep)
            .map(|d| d.id[..15].to_string())
            .collect()
    }

    fn hourly_for(hours: i64, start: OffsetDateTime) -> Vec<Candidate> {
        (0..hours)
            .map(|h| at(start + time::Duration::hours(h)))
            .collect()
    }

    #[test]
    fn id_time_round_trips_and_rejects_junk() {
        let t = datetime!(2026-11-21 07:05:54.123 UTC);
        assert_eq!(time_of_id(&crate::catalog::new_backup_id(t, 1)), Some(t));
        for bad in [
            "",
            "2026",
            "20261321T070554.123Z-1",
            "2026112xT070554.123Z-1",
        ] {
            assert_eq!(time_of_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn empty_policy_is_refused() {
        let e = plan(&Policy::default(), &[at(datetime!(2026-01-01 0:00 UTC))]).unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Usage);
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let b = hourly_for(5, datetime!(2026-01-01 0:00 UTC));
        let p = Policy {
            keep_last: Some(2),
            ..Policy::default()
        };
        let d = plan(&p, &b).unwrap();
        assert_eq!(kept(&d), ["20260101T040000", "20260101T030000"]);
        assert_eq!(d[0].reasons, ["newest good backup", "last 1"]);
        assert_eq!(d[1].reasons, ["last 2"]);
    }

    #[test]
    fn hourly_keeps_newest_of_each_hour_across_a_day_boundary() {
        let b = vec![
            at(datetime!(2026-01-01 22:10 UTC)),
            at(datetime!(2026-01-01 22:50 UTC)),
            at(datetime!(2026-01-01 23:59:59.999 UTC)),
            at(datetime!(2026-01-02 00:00 UTC)),
            at(datetime!(2026-01-02 00:30 UTC)),
        ];
        let p = Policy {
            keep_hourly: Some(3),
            ..Policy::default()
        };
        let d = plan(&p, &b).unwrap();
        assert_eq!(
            kept(&d),
            ["20260102T003000", "20260101T235959", "20260101T225000"]
        );
        assert_eq!(d[0].reasons, ["newest good backup", "hourly 2026-01-02T00"]);
    }

    #[test]
    fn daily_weekly_monthly_yearly_use_utc_calendar_buckets() {
        // 2026-12-31 is a Thursday in ISO week 2026-W53; 2027-01-01 (Friday) is too.
        let b = vec![
            at(datetime!(2025-06-01 12:00 UTC)),
            at(datetime!(2026-12-28 12:00 UTC)),
            at(datetime!(2026-12-31 08:00 UTC)),
            at(datetime!(2026-12-31 23:00 UTC)),
            at(datetime!(2027-01-01 01:00 UTC)),
        ];
        let daily = plan(
            &Policy {
                keep_daily: Some(2),
                ..Policy::default()
            },
            &b,
        )
        .unwrap();
        assert_eq!(kept(&daily), ["20270101T010000", "20261231T230000"]);
        let weekly = plan(
            &Policy {
                keep_weekly: Some(2),
                ..Policy::default()
            },
            &b,
        )
        .unwrap();
        // One ISO week holds all four 2026/2027 backups; the next newest week is 2025's.
        assert_eq!(kept(&weekly), ["20270101T010000", "20250601T120000"]);
        assert!(weekly[0].reasons.contains(&"weekly 2026-W53".to_string()));
        let monthly = plan(
            &Policy {
                keep_monthly: Some(2),
                ..Policy::default()
            },
            &b,
        )
        .unwrap();
        assert_eq!(kept(&monthly), ["20270101T010000", "20261231T230000"]);
        let yearly = plan(
            &Policy {
                keep_yearly: Some(5),
                ..Policy::default()
            },
            &b,
        )
        .unwrap();
        assert_eq!(
            kept(&yearly),
            ["20270101T010000", "20261231T230000", "20250601T120000"]
        );
    }

    #[test]
    fn within_is_relative_to_the_newest_backup() {
        let b = hourly_for(10, datetime!(2020-01-01 0:00 UTC));
        let p = Policy {
            keep_within: Some(std::time::Duration::from_secs(2 * 3600)),
            ..Policy::default()
        };
        let d = plan(&p, &b).unwrap();
        assert_eq!(
            kept(&d),
            ["20200101T090000", "20200101T080000", "20200101T070000"]
        );
    }

    #[test]
    fn rules_combine_and_list_every_reason() {
        let b = hourly_for(48, datetime!(2026-03-01 0:00 UTC));
        let p = Policy {
            keep_last: Some(1),
            keep_daily: Some(2),
            ..Policy::default()
        };
        let d = plan(&p, &b).unwrap();
        assert_eq!(kept(&d), ["20260302T230000", "20260301T230000"]);
        assert_eq!(
            d[0].reasons,
            ["newest good backup", "last 1", "daily 2026-03-02"]
        );
        assert_eq!(d.iter().filter(|d| !d.keep).count(), 46);
    }

    #[test]
    fn failed_backups_are_kept_and_never_count_as_newest_good() {
        let mut b = hourly_for(4, datetime!(2026-01-01 0:00 UTC));
        b[3].verify = VerifyState::Failed; // the newest
        let p = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let d = plan(&p, &b).unwrap();
        assert_eq!(kept(&d), ["20260101T030000", "20260101T020000"]);
        assert!(d[0].reasons[0].starts_with("failed verification"));
        assert_eq!(d[1].reasons, ["newest good backup", "last 1"]);
    }

    #[test]
    fn newest_good_is_kept_even_when_no_rule_reaches_it() {
        // keep_hourly 1 would pick the failed newest's hour; the good one is in that hour.
        let mut b = vec![
            at(datetime!(2026-01-01 05:10 UTC)),
            at(datetime!(2026-01-01 05:20 UTC)),
        ];
        b[1].verify = VerifyState::Failed;
        let p = Policy {
            keep_hourly: Some(1),
            ..Policy::default()
        };
        let d = plan(&p, &b).unwrap();
        assert!(d.iter().all(|d| d.keep));
        assert!(d[1].reasons.contains(&"newest good backup".to_string()));
    }

    #[test]
    fn all_failed_keeps_all() {
        let mut b = hourly_for(3, datetime!(2026-01-01 0:00 UTC));
        for c in &mut b {
            c.verify = VerifyState::Failed;
        }
        let p = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        assert!(plan(&p, &b).unwrap().iter().all(|d| d.keep));
    }

    #[test]
    fn empty_destination_plans_nothing() {
        let p = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        assert!(plan(&p, &[]).unwrap().is_empty());
    }
}
