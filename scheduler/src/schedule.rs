//! Cron schedules evaluated in an IANA time zone, and what to fire after a gap (misfire policy).
//!
//! Ticks are wall-clock times in the schedule's zone. Across DST changes: a wall time that does
//! not exist (clocks spring forward) is skipped; a wall time that happens twice (clocks fall back)
//! fires once, at its first occurrence. Every function takes the time as an argument, so the rules
//! are tested with a fixed clock.

use std::collections::VecDeque;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, TimeZone, Utc};
use chrono_tz::Tz;

/// Most ticks examined in one evaluation (a one-second schedule down for eleven days).
const MAX_TICKS_EXAMINED: usize = 1_000_000;
/// A tick evaluated later than this after its time is a misfire (missed while no scheduler ran).
pub const DEFAULT_MISFIRE_THRESHOLD: Duration = Duration::from_secs(1);

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("invalid cron expression `{expr}`: {message} (six or seven fields, seconds first: `0 */5 * * * *`)")]
    Cron {
        /// The expression.
        expr: String,
        /// The parser's message.
        message: String,
    },
    /// The time zone is not an IANA name.
    #[error("unknown time zone `{0}`: use an IANA name such as `Europe/Berlin` or `UTC`")]
    TimeZone(String),
}

/// What to do with ticks missed while no scheduler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MisfirePolicy {
    /// Drop them; fire only ticks that are due now.
    Skip,
    /// Fire the most recent missed tick once, then carry on.
    FireOnce,
    /// Fire every missed tick, at most the `max` most recent ones.
    CatchUp {
        /// Upper bound on missed ticks fired.
        max: usize,
    },
}

/// A parsed cron expression bound to a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    schedule: cron::Schedule,
    tz: Tz,
}

impl CronSchedule {
    /// Parses `expr` (seconds first) for the IANA zone `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Self, ScheduleError> {
        let schedule = cron::Schedule::from_str(expr).map_err(|e| ScheduleError::Cron {
            expr: expr.to_owned(),
            message: e.to_string(),
        })?;
        let tz = Tz::from_str(tz).map_err(|_| ScheduleError::TimeZone(tz.to_owned()))?;
        Ok(CronSchedule { schedule, tz })
    }

    /// The time zone.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// Ticks strictly after `after`, in order (an iterator over real instants).
    pub fn ticks_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        // Walk wall-clock times in the zone, using UTC only as a calendar for them.
        let wall_after = Utc.from_utc_datetime(&after.with_timezone(&self.tz).naive_local());
        self.schedule
            .after(&wall_after)
            .take(MAX_TICKS_EXAMINED)
            .filter_map(
                move |wall| match self.tz.from_local_datetime(&wall.naive_utc()) {
                    LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
                    // Happens twice: fire at the first occurrence only.
                    LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
                    // Does not exist (spring forward): skipped.
                    LocalResult::None => None,
                },
            )
            // In the second pass of a repeated hour, wall times map to first-pass instants that
            // already went by: they must not fire again.
            .filter(move |t| *t > after)
    }

    /// The next tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.ticks_after(after).next()
    }

    /// The next `n` ticks strictly after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.ticks_after(after).take(n).collect()
    }

    /// The ticks to enqueue at `now`, given that every tick up to `last` was handled: ticks in
    /// `(last, now]` that are on time (at most `threshold` old), plus missed ones as `policy`
    /// says. Oldest first.
    pub fn due(
        &self,
        last: DateTime<Utc>,
        now: DateTime<Utc>,
        policy: MisfirePolicy,
        threshold: Duration,
    ) -> Vec<DateTime<Utc>> {
        let threshold = chrono::Duration::from_std(threshold).unwrap_or(chrono::Duration::MAX);
        let keep = match policy {
            MisfirePolicy::Skip => 0,
            MisfirePolicy::FireOnce => 1,
            MisfirePolicy::CatchUp { max } => max,
        };
        let mut missed: VecDeque<DateTime<Utc>> = VecDeque::with_capacity(keep.min(1024));
        let mut on_time = Vec::new();
        for tick in self.ticks_after(last).take_while(|t| *t <= now) {
            if now - tick <= threshold {
                on_time.push(tick);
            } else if keep > 0 {
                if missed.len() == keep {
                    missed.pop_front();
                }
                missed.push_back(tick);
            }
        }
        missed.into_iter().chain(on_time).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_wrong() {
        let err = CronSchedule::parse("every minute", "UTC").unwrap_err();
        assert!(matches!(err, ScheduleError::Cron { .. }), "{err}");
        assert!(err.to_string().contains("seconds first"));
        let err = CronSchedule::parse("0 * * * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(err, ScheduleError::TimeZone("Mars/Olympus".into()));
    }

    #[test]
    fn every_second_in_utc() {
        let s = CronSchedule::parse("* * * * * *", "UTC").unwrap();
        let got = s.upcoming(t("2026-01-01T00:00:00Z"), 3);
        assert_eq!(
            got,
            vec![
                t("2026-01-01T00:00:01Z"),
                t("2026-01-01T00:00:02Z"),
                t("2026-01-01T00:00:03Z")
            ]
        );
    }

    #[test]
    fn a_wall_time_that_does_not_exist_is_skipped() {
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
        let s = CronSchedule::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
        let got = s.upcoming(t("2026-03-28T02:00:00Z"), 2);
        assert_eq!(
            got,
            vec![t("2026-03-30T00:30:00Z"), t("2026-03-31T00:30:00Z")]
        );
    }

    #[test]
    fn a_repeated_wall_time_fires_once() {
        // Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let s = CronSchedule::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
        let got = s.upcoming(t("2026-10-24T12:00:00Z"), 2);
        assert_eq!(
            got,
            vec![t("2026-10-25T00:30:00Z"), t("2026-10-26T01:30:00Z")]
        );
        // An every-minute schedule runs through the repeated hour once, not twice.
        let s = CronSchedule::parse("0 * * * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            s.next_after(t("2026-10-25T00:59:00Z")),
            Some(t("2026-10-25T02:00:00Z"))
        );
        // Evaluated from inside the second pass, nothing of that pass fires.
        assert_eq!(
            s.next_after(t("2026-10-25T01:10:00Z")),
            Some(t("2026-10-25T02:00:00Z"))
        );
    }

    #[test]
    fn misfire_policies() {
        let s = CronSchedule::parse("0 0 * * * *", "UTC").unwrap();
        let (last, now) = (t("2026-01-01T00:00:00Z"), t("2026-01-01T05:00:00.500Z"));
        let due = |p| s.due(last, now, p, DEFAULT_MISFIRE_THRESHOLD);
        assert_eq!(due(MisfirePolicy::Skip), vec![t("2026-01-01T05:00:00Z")]);
        assert_eq!(
            due(MisfirePolicy::FireOnce),
            vec![t("2026-01-01T04:00:00Z"), t("2026-01-01T05:00:00Z")]
        );
        assert_eq!(
            due(MisfirePolicy::CatchUp { max: 2 }),
            vec![
                t("2026-01-01T03:00:00Z"),
                t("2026-01-01T04:00:00Z"),
                t("2026-01-01T05:00:00Z")
            ]
        );
        assert_eq!(due(MisfirePolicy::CatchUp { max: 100 }).len(), 5);
        // Nothing due between ticks; nothing fires twice once `last` has moved on.
        assert!(s
            .due(
                t("2026-01-01T05:00:00Z"),
                t("2026-01-01T05:30:00Z"),
                MisfirePolicy::FireOnce,
                DEFAULT_MISFIRE_THRESHOLD
            )
            .is_empty());
    }
}
