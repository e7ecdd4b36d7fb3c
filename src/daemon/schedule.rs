//! When slots start: `every` (multiples of an interval since the Unix epoch) or a cron
//! expression evaluated in UTC. Both are pure functions of the wall clock, so the daemons on
//! every control-plane node compute the same slots without talking to each other, which is
//! what lets `when = "leader"` give one backup per slot.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Timelike, Utc};

/// How many upcoming cron slots are inspected to find the longest gap between two of them
/// (for `/healthz` and the retry deadline). 400 covers more than a year of a daily schedule
/// and a week of a 30-minute one, which is enough to see weekend gaps of weekday schedules.
const GAP_SAMPLES: usize = 400;

#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron {
        expr: String,
        cron: Box<croner::Cron>,
        /// The longest gap between two upcoming slots.
        longest_gap: Duration,
    },
}

impl Schedule {
    /// A cron schedule: 5 fields, or 6 with seconds first. Errors are one line for
    /// `[schedule] cron`.
    pub fn cron(expr: &str) -> Result<Schedule, String> {
        let cron = crate::config::parse_cron(expr)?;
        let mut gap = Duration::ZERO;
        let mut at: DateTime<Utc> = Utc::now().with_nanosecond(0).unwrap_or_else(Utc::now);
        let mut prev: Option<DateTime<Utc>> = None;
        for _ in 0..GAP_SAMPLES {
            let Ok(next) = cron.find_next_occurrence(&at, false) else {
                break;
            };
            if let Some(p) = prev {
                gap = gap.max((next - p).to_std().unwrap_or_default());
            }
            prev = Some(next);
            at = next;
        }
        if prev.is_none() {
            return Err(format!(
                "[schedule] cron = {expr:?}: the expression never matches a future time"
            ));
        }
        // A schedule with a single upcoming slot: the gap is unknown; a day is a sane bound.
        if gap.is_zero() {
            gap = Duration::from_secs(86_400);
        }
        Ok(Schedule::Cron {
            expr: expr.to_string(),
            cron: Box::new(cron),
            longest_gap: gap,
        })
    }

    /// The start of the first slot strictly after `now`.
    pub fn next_after(&self, now: SystemTime) -> Option<SystemTime> {
        let since = now.duration_since(SystemTime::UNIX_EPOCH).ok()?;
        match self {
            Schedule::Every(every) => {
                let every_ns = every.as_nanos().max(1);
                let into = since.as_nanos() % every_ns;
                Some(now + Duration::from_nanos((every_ns - into) as u64))
            }
            Schedule::Cron { cron, .. } => {
                // Whole seconds: croner keeps the fraction of `now` in its answer, and
                // slots must be the same instants on every host.
                let at = DateTime::<Utc>::from(now).with_nanosecond(0)?;
                let next = cron.find_next_occurrence(&at, false).ok()?;
                Some(SystemTime::from(next))
            }
        }
    }

    /// The interval between slots (for a cron, the longest gap between upcoming ones):
    /// `/healthz` allows 2 × this + the grace, and a failed backup is retried for at most
    /// this long.
    pub fn interval(&self) -> Duration {
        match self {
            Schedule::Every(e) => *e,
            Schedule::Cron { longest_gap, .. } => *longest_gap,
        }
    }

    /// For the start-up log line.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Every(e) => format!("every {}", humantime::format_duration(*e)),
            Schedule::Cron { expr, .. } => format!("cron {expr:?} (UTC)"),
        }
    }
}

/// Time from `now` to the next slot, plus jitter (a cheap per-process pseudo-random
/// fraction; it only spreads load, nothing depends on its quality). `None`: no slot will
/// ever come (a cron expression that stopped matching).
pub fn until_next_slot(s: &Schedule, jitter: Duration) -> Option<Duration> {
    let now = SystemTime::now();
    let wait = s.next_after(now)?.duration_since(now).unwrap_or_default();
    if jitter.is_zero() {
        return Some(wait);
    }
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let seed = (nanos ^ u64::from(std::process::id())).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Some(wait + Duration::from_nanos(seed % (jitter.as_nanos() as u64).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        let t = DateTime::parse_from_rfc3339(rfc3339).unwrap();
        SystemTime::from(t.with_timezone(&Utc))
    }

    fn show(t: SystemTime) -> String {
        DateTime::<Utc>::from(t)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    }

    #[test]
    fn every_slots_are_multiples_since_the_epoch() {
        let s = Schedule::Every(Duration::from_secs(3600));
        let n = s.next_after(at("2026-03-01T10:20:30Z")).unwrap();
        assert_eq!(show(n), "2026-03-01T11:00:00.000Z");
        // Exactly on a slot: the next one, not this one.
        let n = s.next_after(at("2026-03-01T11:00:00Z")).unwrap();
        assert_eq!(show(n), "2026-03-01T12:00:00.000Z");
    }

    #[test]
    fn five_field_cron_is_utc_and_strictly_after() {
        let s = Schedule::cron("0 * * * *").unwrap();
        assert_eq!(s.interval(), Duration::from_secs(3600));
        let n = s.next_after(at("2026-03-01T10:20:30+02:00")).unwrap();
        assert_eq!(show(n), "2026-03-01T09:00:00.000Z");
        let n = s.next_after(at("2026-03-01T09:00:00Z")).unwrap();
        assert_eq!(show(n), "2026-03-01T10:00:00.000Z");
        // Across a year boundary.
        let s = Schedule::cron("30 2 1 1 *").unwrap();
        let n = s.next_after(at("2026-12-31T23:59:59Z")).unwrap();
        assert_eq!(show(n), "2027-01-01T02:30:00.000Z");
    }

    #[test]
    fn six_fields_take_seconds_first() {
        let s = Schedule::cron("* * * * * *").unwrap();
        assert_eq!(s.interval(), Duration::from_secs(1));
        let n = s.next_after(at("2026-03-01T10:20:30.250Z")).unwrap();
        assert_eq!(show(n), "2026-03-01T10:20:31.000Z");
        let s = Schedule::cron("15 */10 * * * *").unwrap();
        let n = s.next_after(at("2026-03-01T10:20:30Z")).unwrap();
        assert_eq!(show(n), "2026-03-01T10:30:15.000Z");
    }

    #[test]
    fn weekday_schedules_allow_the_weekend_gap() {
        // 09:00 Monday to Friday: the longest gap is Friday to Monday.
        let s = Schedule::cron("0 9 * * 1-5").unwrap();
        assert_eq!(s.interval(), Duration::from_secs(3 * 86_400));
        // 2026-03-06 is a Friday.
        let n = s.next_after(at("2026-03-06T10:00:00Z")).unwrap();
        assert_eq!(show(n), "2026-03-09T09:00:00.000Z");
    }

    #[test]
    fn bad_expressions_are_one_line_errors() {
        for bad in [
            "61 * * * *",
            "* * *",
            "* * * * * * * *",
            "0 0 31 2 *",
            "nonsense",
        ] {
            let e = Schedule::cron(bad).unwrap_err();
            assert!(e.contains(bad) && !e.contains('\n'), "{bad}: {e}");
        }
    }
}
