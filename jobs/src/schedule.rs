//! Cron schedules evaluated in an IANA time zone, and what to fire after a gap (misfire policy).
//!
//! Ticks are wall-clock times in the schedule's zone. Across DST changes: a wall time that does
//! not exist (clocks spring forward) is skipped; a wall time that happens twice (clocks fall back)
//! fires once, at its first occurrence. Every function takes the time as an argument, so the rules
//! are tested with a fixed clock.

use std::collections::VecDeque;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{JobOptions, JobsError, KindRegistry, NewJob};

/// Most ticks examined in one evaluation (a one-second schedule down for eleven days).
const MAX_TICKS_EXAMINED: usize = 1_000_000;
/// A tick evaluated later than this after its time is a misfire (missed while no scheduler ran).
/// Longer than a leader failover, so a failover alone never drops a tick whatever the policy.
pub const DEFAULT_MISFIRE_THRESHOLD: Duration = Duration::from_secs(10);
/// Default bound of `catch_up`.
pub const DEFAULT_CATCH_UP_MAX: u32 = 100;
/// Largest `catch_up_max` accepted.
pub const CATCH_UP_MAX_LIMIT: u32 = 10_000;
/// Longest schedule name.
pub const SCHEDULE_NAME_MAX: usize = 128;

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

    /// [`Self::parse`], the error naming the field at fault (`cron` or `timezone`).
    pub fn parse_fields(expr: &str, tz: &str) -> Result<Self, JobsError> {
        Self::parse(expr, tz).map_err(|err| match err {
            ScheduleError::Cron { .. } => invalid("cron", err.to_string()),
            ScheduleError::TimeZone(_) => invalid("timezone", err.to_string()),
        })
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

/// Misfire policy as written in the config file and API bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Drop missed ticks.
    Skip,
    /// Fire the most recent missed tick once (the default, like Celery beat).
    #[default]
    FireOnce,
    /// Fire every missed tick, up to `catch_up_max`.
    CatchUp,
}

impl Misfire {
    /// The name used in config and API bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::Skip => "skip",
            Misfire::FireOnce => "fire_once",
            Misfire::CatchUp => "catch_up",
        }
    }
}

impl FromStr for Misfire {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(Misfire::Skip),
            "fire_once" => Ok(Misfire::FireOnce),
            "catch_up" => Ok(Misfire::CatchUp),
            other => Err(format!(
                "unknown misfire policy `{other}`: use skip, fire_once or catch_up"
            )),
        }
    }
}

fn utc() -> String {
    "UTC".to_owned()
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

fn default_catch_up_max() -> u32 {
    DEFAULT_CATCH_UP_MAX
}

/// A recurring job: when it fires (cron in a time zone) and what each tick enqueues. Written in
/// the config file (`[[schedules]]`) or sent to `POST /v1/schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Unique per tenant: 1 to 128 characters of a-z, A-Z, 0-9, `.`, `_`, `-`.
    pub name: String,
    /// Cron expression, seconds first (`0 */5 * * * *`).
    pub cron: String,
    /// IANA time zone the expression is read in.
    #[serde(default = "utc")]
    pub timezone: String,
    /// Job kind each tick enqueues.
    pub kind: String,
    /// The kind's payload.
    #[serde(default = "empty_object")]
    pub payload: Value,
    /// Queue; defaults to the kind's.
    #[serde(default)]
    pub queue: Option<String>,
    /// Priority; defaults to the kind's.
    #[serde(default)]
    pub priority: Option<i16>,
    /// Attempts; defaults to the kind's retry policy.
    #[serde(default)]
    pub max_attempts: Option<i32>,
    /// What to do with ticks missed while no scheduler ran.
    #[serde(default)]
    pub misfire: Misfire,
    /// Bound on ticks fired by `catch_up`.
    #[serde(default = "default_catch_up_max")]
    pub catch_up_max: u32,
    /// A paused schedule fires nothing; resuming does not fire the ticks it missed.
    #[serde(default)]
    pub paused: bool,
}

fn invalid(field: &'static str, message: impl Into<String>) -> JobsError {
    JobsError::InvalidField {
        field,
        message: message.into(),
    }
}

/// The cron expressions a form or generated client can build safely: six fields, seconds first,
/// each `*`, `*/n` (n 1..=9; 1..=7 for the day of the week) or a comma list of values in the field's range. The server accepts
/// the whole `cron` syntax (ranges, names, a year field); this is the subset the OpenAPI document
/// promises, so that anything matching it is accepted.
pub const CRON_PATTERN: &str = concat!(
    r"^(\*(/[1-9])?|[1-5]?[0-9](,[1-5]?[0-9])*)",
    r" (\*(/[1-9])?|[1-5]?[0-9](,[1-5]?[0-9])*)",
    r" (\*(/[1-9])?|(1?[0-9]|2[0-3])(,(1?[0-9]|2[0-3]))*)",
    r" (\*(/[1-9])?|([1-9]|[12][0-9]|3[01])(,([1-9]|[12][0-9]|3[01]))*)",
    r" (\*(/[1-9])?|([1-9]|1[0-2])(,([1-9]|1[0-2]))*)",
    r" (\*(/[1-7])?|[1-7](,[1-7])*)$",
);

/// Every IANA time zone name a schedule accepts.
pub fn time_zone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

/// Schedule names: 1 to 128 characters of letters, digits, `.`, `_`, `-`.
pub fn valid_schedule_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= SCHEDULE_NAME_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl ScheduleSpec {
    /// The misfire policy with its bound.
    pub fn policy(&self) -> MisfirePolicy {
        match self.misfire {
            Misfire::Skip => MisfirePolicy::Skip,
            Misfire::FireOnce => MisfirePolicy::FireOnce,
            Misfire::CatchUp => MisfirePolicy::CatchUp {
                max: usize::try_from(self.catch_up_max).unwrap_or(usize::MAX),
            },
        }
    }

    /// The parsed cron expression.
    pub fn cron_schedule(&self) -> Result<CronSchedule, JobsError> {
        CronSchedule::parse_fields(&self.cron, &self.timezone)
    }

    /// Checks every field (the kind and payload against `registry`); the error names the field.
    pub fn validate(&self, registry: &KindRegistry) -> Result<CronSchedule, JobsError> {
        if !valid_schedule_name(&self.name) {
            return Err(invalid(
                "name",
                format!("1 to {SCHEDULE_NAME_MAX} characters of a-z, A-Z, 0-9, `.`, `_`, `-`"),
            ));
        }
        let cron = self.cron_schedule()?;
        if !(1..=CATCH_UP_MAX_LIMIT).contains(&self.catch_up_max) {
            return Err(invalid(
                "catch_up_max",
                format!("must be between 1 and {CATCH_UP_MAX_LIMIT}"),
            ));
        }
        // The same checks a submission gets, on a sample tick.
        self.new_job(registry, crate::DEFAULT_TENANT, DateTime::UNIX_EPOCH)?;
        Ok(cron)
    }

    /// The job one tick enqueues. Its idempotency key is [`tick_key`], so the same tick can never
    /// produce two jobs; `run_at` is the tick.
    pub fn new_job(
        &self,
        registry: &KindRegistry,
        tenant_id: &str,
        tick: DateTime<Utc>,
    ) -> Result<NewJob, JobsError> {
        registry.new_job(
            tenant_id,
            &self.kind,
            self.payload.clone(),
            JobOptions {
                queue: self.queue.clone(),
                priority: self.priority,
                max_attempts: self.max_attempts,
                run_at: Some(tick),
                idempotency_key: Some(tick_key(&self.name, tick)),
                trace_context: None,
                request_id: None,
            },
        )
    }
}

/// The idempotency key of a schedule's tick: `schedule:<name>:<tick, RFC 3339 UTC>`.
pub fn tick_key(name: &str, tick: DateTime<Utc>) -> String {
    format!(
        "schedule:{name}:{}",
        tick.to_rfc3339_opts(SecondsFormat::Millis, true)
    )
}

/// Where a schedule was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleSource {
    /// The config file: re-applied whenever a scheduler starts.
    Config,
    /// The API.
    Api,
}

impl ScheduleSource {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleSource::Config => "config",
            ScheduleSource::Api => "api",
        }
    }
}

impl FromStr for ScheduleSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "config" => Ok(ScheduleSource::Config),
            "api" => Ok(ScheduleSource::Api),
            other => Err(format!("unknown schedule source `{other}`")),
        }
    }
}

/// A schedule as the store records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Owning tenant.
    pub tenant_id: String,
    /// The definition.
    pub spec: ScheduleSpec,
    /// Where it was declared.
    pub source: ScheduleSource,
    /// Every tick up to this instant has been handled (fired or, by policy, skipped).
    pub fired_through: DateTime<Utc>,
    /// The next tick (`None` when paused or the expression never fires again).
    pub next_fire_at: Option<DateTime<Utc>>,
    /// When it last enqueued a job (a tick or a manual trigger).
    pub last_fire_at: Option<DateTime<Utc>>,
    /// The job it last enqueued.
    pub last_job_id: Option<Uuid>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Definition last changed.
    pub updated_at: DateTime<Utc>,
    /// Bumped by every definition change; a tick evaluated against an older version is rejected.
    pub version: i64,
}

impl Schedule {
    /// Replaces the definition at `now`. A new cron expression or time zone starts from `now`
    /// (ticks of the old definition are not caught up under the new one); `paused` is kept.
    pub fn apply_spec(
        &mut self,
        mut spec: ScheduleSpec,
        now: DateTime<Utc>,
    ) -> Result<(), JobsError> {
        spec.paused = self.spec.paused;
        if spec.cron != self.spec.cron || spec.timezone != self.spec.timezone {
            self.fired_through = self.fired_through.max(now);
        }
        self.spec = spec;
        self.recompute_next()
    }

    /// Pauses or resumes at `now`. Resuming does not fire the ticks missed while paused.
    pub fn set_paused(&mut self, paused: bool, now: DateTime<Utc>) -> Result<(), JobsError> {
        if self.spec.paused && !paused {
            self.fired_through = self.fired_through.max(now);
        }
        self.spec.paused = paused;
        self.recompute_next()
    }

    /// `next_fire_at` from `fired_through` (none while paused). A next tick in the past is due at
    /// once, and the misfire policy decides what fires.
    pub fn recompute_next(&mut self) -> Result<(), JobsError> {
        let cron = self.spec.cron_schedule()?;
        self.next_fire_at = if self.spec.paused {
            None
        } else {
            cron.next_after(self.fired_through)
        };
        Ok(())
    }

    /// The next `n` ticks from `now` (none while paused).
    pub fn upcoming(&self, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        if self.spec.paused {
            return Vec::new();
        }
        match self.spec.cron_schedule() {
            Ok(cron) => cron.upcoming(now.max(self.fired_through), n),
            Err(_) => Vec::new(),
        }
    }

    /// A new schedule created at `now`: ticks before `now` never fire.
    pub fn new(
        tenant_id: &str,
        spec: ScheduleSpec,
        source: ScheduleSource,
        cron: &CronSchedule,
        now: DateTime<Utc>,
    ) -> Self {
        let next_fire_at = if spec.paused {
            None
        } else {
            cron.next_after(now)
        };
        Schedule {
            tenant_id: tenant_id.to_owned(),
            spec,
            source,
            fired_through: now,
            next_fire_at,
            last_fire_at: None,
            last_job_id: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every value the documented pattern allows in each field parses (one field varied at a
    /// time, the others fixed), as do all the time zones the document lists.
    #[test]
    fn what_the_document_promises_parses() {
        let ranges = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (1, 7)];
        for (field, (lo, hi)) in ranges.into_iter().enumerate() {
            let steps = (1..=if field == 5 { 7 } else { 9 }).map(|n| format!("*/{n}"));
            let values = (lo..=hi).map(|v| v.to_string());
            let list = std::iter::once(format!("{lo},{hi}"));
            for value in steps.chain(values).chain(list) {
                let mut fields = ["0", "0", "0", "1", "1", "*"].map(str::to_owned);
                fields[field] = value;
                let expr = fields.join(" ");
                assert!(CronSchedule::parse(&expr, "UTC").is_ok(), "`{expr}`");
            }
        }
        for tz in super::time_zone_names() {
            assert!(CronSchedule::parse("0 * * * * *", tz).is_ok(), "{tz}");
        }
    }

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
