//! When capture seals: the RPO guarantee.
//!
//! A change is durable (its segment stored: locally fsynced and renamed) within `flush` of
//! the moment capture read it off the watch. The seal deadline is counted from the arrival
//! of the oldest unsealed change, not from the previous seal, and it is early by a budget:
//! what sealing and storing a segment took lately (from the start of the seal, with its
//! `LeaseLeases`/`HashKV` calls, to the store's commit), doubled, plus 10 ms, and at most
//! half of `flush`. Nothing pending, no deadline: an idle cluster (or one sending only
//! progress notifications) gets no segment and no seal.
//!
//! Pure logic on [`Instant`]s handed in, so it is tested with a made-up clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many recent seal→stored durations the budget looks at.
const RECENT: usize = 64;
/// Added to the doubled duration: timer and scheduling slack.
const SLACK: Duration = Duration::from_millis(10);

/// The seal deadline of the pending changes.
#[derive(Debug)]
pub struct SealTimer {
    flush: Duration,
    /// When the oldest unsealed change arrived.
    since: Option<Instant>,
    /// The latest seal→stored durations of seals without a `HashKV` mark.
    recent: VecDeque<Duration>,
    /// The last one of a seal with a `HashKV` mark (those take longer on a big keyspace and
    /// come only every `hash_every`).
    hash: Option<Duration>,
}

impl SealTimer {
    pub fn new(flush: Duration) -> SealTimer {
        SealTimer {
            flush,
            since: None,
            recent: VecDeque::with_capacity(RECENT),
            hash: None,
        }
    }

    /// Changes arrived at `at` (or, read right after a seal, were waiting since `at`).
    pub fn arrived(&mut self, at: Instant) {
        self.since = Some(self.since.map_or(at, |s| s.min(at)));
    }

    /// The pending changes were sealed (handed to the destinations).
    pub fn sealed(&mut self) {
        self.since = None;
    }

    /// A destination stored a segment `took` after its seal started (`with_hash`: that seal
    /// asked etcd for `HashKV`).
    pub fn stored(&mut self, took: Duration, with_hash: bool) {
        if with_hash {
            self.hash = Some(took);
            return;
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(took);
    }

    /// What a seal is given to finish before its changes are `flush` old: twice the slowest
    /// recent seal (a `HashKV` one when the next seal asks for a hash), plus slack, at most
    /// half of `flush`. Before any seal was measured: a tenth of `flush`.
    pub fn budget(&self, hash_due: bool) -> Duration {
        let slowest = self
            .recent
            .iter()
            .copied()
            .chain(self.hash.filter(|_| hash_due))
            .max();
        let want = match slowest {
            Some(d) => d.saturating_mul(2).saturating_add(SLACK),
            None => self.flush / 10,
        };
        want.min(self.flush / 2)
    }

    /// When to seal: `flush` minus the budget after the oldest unsealed change arrived;
    /// `None` when nothing is pending.
    pub fn deadline(&self, hash_due: bool) -> Option<Instant> {
        let since = self.since?;
        Some(since + self.flush.saturating_sub(self.budget(hash_due)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_pending_no_deadline_and_progress_does_not_start_one() {
        let t = SealTimer::new(S);
        assert_eq!(t.deadline(false), None);
        assert_eq!(t.deadline(true), None);
    }

    /// The deadline counts from the first unsealed change, whatever came after it, and
    /// a seal clears it: the next change starts a new one (never a fixed tick).
    #[test]
    fn deadline_counts_from_the_oldest_unsealed_change() {
        let t0 = Instant::now();
        let mut t = SealTimer::new(S);
        t.stored(ms(5), false);
        t.arrived(t0 + ms(300));
        t.arrived(t0 + ms(900));
        let d = t.deadline(false).unwrap();
        assert_eq!(d, t0 + ms(300) + S - ms(20));
        // Changes waiting since the seal started count from then, even when read later.
        t.arrived(t0 + ms(100));
        assert_eq!(t.deadline(false).unwrap(), t0 + ms(100) + S - ms(20));
        t.sealed();
        assert_eq!(t.deadline(false), None);
        t.arrived(t0 + ms(5000));
        assert_eq!(t.deadline(false).unwrap(), t0 + ms(5000) + S - ms(20));
    }

    /// The budget covers the slowest recent seal twice over, so a seal that starts at the
    /// deadline is stored before the oldest change is `flush` old; it never eats more than
    /// half of `flush`.
    #[test]
    fn budget_covers_the_slowest_recent_seal_and_is_capped() {
        let mut t = SealTimer::new(S);
        assert_eq!(t.budget(false), ms(100));
        t.stored(ms(3), false);
        t.stored(ms(40), false);
        t.stored(ms(7), false);
        assert_eq!(t.budget(false), ms(90));
        for _ in 0..RECENT {
            t.stored(ms(2), false);
        }
        assert_eq!(t.budget(false), ms(14), "old samples age out");
        t.stored(ms(200), true);
        assert_eq!(
            t.budget(false),
            ms(14),
            "a hash seal counts only when one is due"
        );
        assert_eq!(t.budget(true), ms(410));
        t.stored(ms(2000), false);
        assert_eq!(t.budget(false), ms(500), "at most half of flush");
        let since = Instant::now();
        t.arrived(since);
        assert_eq!(t.deadline(false).unwrap(), since + ms(500));
    }

    /// Whatever the measured seal time within the cap, a seal started at the deadline
    /// and taking that long again ends within `flush` of the oldest change.
    #[test]
    fn a_seal_as_slow_as_recent_ones_ends_within_flush() {
        for flush in [ms(10), ms(200), S, Duration::from_secs(60)] {
            for took in [ms(0), ms(1), ms(4), ms(30), ms(120), ms(240)] {
                let mut t = SealTimer::new(flush);
                t.stored(took, false);
                let since = Instant::now();
                t.arrived(since);
                let stored = t.deadline(false).unwrap() + took;
                if took.saturating_mul(2) + SLACK <= flush / 2 {
                    assert!(stored <= since + flush, "flush {flush:?} took {took:?}");
                }
            }
        }
    }
}
