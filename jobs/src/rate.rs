//! Execution rate limits: at most `count` starts per `per`, for a kind or a queue, over all
//! tenants or per tenant, enforced by every worker process through the store (GCRA: each start
//! reserves the next slot of the rate; a job whose slot lies ahead waits as `scheduled` for it,
//! without counting an attempt).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What a limit counts starts of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RateScope {
    /// Every job of one kind.
    Kind(String),
    /// Every job on one queue.
    Queue(String),
}

/// A rate: `count` starts per `per`, `burst` of them at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Starts per period (at least 1).
    pub count: u32,
    /// The period.
    pub per: Duration,
    /// Starts allowed back to back after a quiet spell (at least 1; `count` by default: a
    /// whole period's worth).
    pub burst: u32,
}

impl Rate {
    /// `count` starts per `per`, all of a period's starts allowed at once.
    pub const fn per(count: u32, per: Duration) -> Self {
        Rate {
            count,
            per,
            burst: count,
        }
    }

    /// `count` starts per second.
    pub const fn per_second(count: u32) -> Self {
        Self::per(count, Duration::from_secs(1))
    }

    /// The same rate with `burst` starts allowed back to back.
    pub const fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// The time between two starts at the steady rate, in microseconds (at least 1).
    pub fn interval_micros(&self) -> i64 {
        let per = i64::try_from(self.per.as_micros()).unwrap_or(i64::MAX);
        (per / i64::from(self.count.max(1))).max(1)
    }

    fn check(&self) -> Result<(), String> {
        if self.count == 0 {
            return Err("a rate allows at least one start".into());
        }
        if self.per.is_zero() {
            return Err("a rate's period must be longer than zero".into());
        }
        if self.burst == 0 {
            return Err("a rate's burst is at least 1".into());
        }
        Ok(())
    }
}

/// `10/s`, `100/min`, `5/2s`, `3600/h`; a burst after a comma: `10/s,burst=1`.
impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (rate, burst) = match s.split_once(',') {
            Some((rate, burst)) => {
                let n = burst
                    .trim()
                    .strip_prefix("burst=")
                    .ok_or_else(|| format!("`{burst}`: expected `burst=N`"))?;
                let n: u32 = n
                    .parse()
                    .map_err(|_| format!("`{n}` is not a burst count"))?;
                (rate, Some(n))
            }
            None => (s, None),
        };
        let (count, per) = rate
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected COUNT/PERIOD, e.g. `10/s`"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{count}` is not a count of starts"))?;
        let per = per.trim();
        let digits = per.find(|c: char| !c.is_ascii_digit()).unwrap_or(per.len());
        let (n, unit) = per.split_at(digits);
        let n: u64 = if n.is_empty() {
            1
        } else {
            n.parse().map_err(|_| format!("`{per}` is not a period"))?
        };
        let unit = match unit {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "min" | "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(format!("`{per}`: the period's unit is ms, s, min or h")),
        };
        let n = u32::try_from(n).map_err(|_| format!("`{per}` is too long a period"))?;
        let rate = Rate::per(count, unit * n).with_burst(burst.unwrap_or(count));
        rate.check()?;
        Ok(rate)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}ms", self.count, self.per.as_millis())?;
        if self.burst != self.count {
            write!(f, ",burst={}", self.burst)?;
        }
        Ok(())
    }
}

/// One limit: a scope, a rate, and whether each tenant has a rate of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// What it counts.
    pub scope: RateScope,
    /// How fast.
    pub rate: Rate,
    /// Each tenant gets the whole rate (`true`), or all tenants share it.
    pub per_tenant: bool,
}

impl RateLimit {
    /// All tenants' jobs of `kind` together.
    pub fn kind(kind: impl Into<String>, rate: Rate) -> Self {
        RateLimit {
            scope: RateScope::Kind(kind.into()),
            rate,
            per_tenant: false,
        }
    }

    /// Every job on `queue` together.
    pub fn queue(queue: impl Into<String>, rate: Rate) -> Self {
        RateLimit {
            scope: RateScope::Queue(queue.into()),
            rate,
            per_tenant: false,
        }
    }

    /// The same limit for each tenant on its own.
    pub fn per_tenant(mut self) -> Self {
        self.per_tenant = true;
        self
    }

    /// Whether a job of `kind` on `queue` counts against this limit.
    pub fn applies(&self, kind: &str, queue: &str) -> bool {
        match &self.scope {
            RateScope::Kind(k) => k == kind,
            RateScope::Queue(q) => q == queue,
        }
    }

    /// The key the store keeps this limit's state under, for a job of `tenant_id`.
    pub fn key(&self, tenant_id: &str) -> String {
        let scope = match &self.scope {
            RateScope::Kind(k) => format!("kind:{k}"),
            RateScope::Queue(q) => format!("queue:{q}"),
        };
        if self.per_tenant {
            format!("{scope}|tenant:{tenant_id}")
        } else {
            scope
        }
    }

    /// Checks the rate can be enforced.
    pub fn validate(&self) -> Result<(), String> {
        self.rate.check()
    }
}

/// `kind:NAME=RATE` or `queue:NAME=RATE`, with `@tenant` after the name for a rate per tenant:
/// `kind:notification.email@tenant=10/s`, `queue:billing=100/s,burst=20`.
impl FromStr for RateLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (target, rate) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected kind:NAME=RATE or queue:NAME=RATE"))?;
        let rate: Rate = rate.parse()?;
        let (target, per_tenant) = match target.trim().strip_suffix("@tenant") {
            Some(target) => (target, true),
            None => (target.trim(), false),
        };
        let limit = match target.split_once(':') {
            Some(("kind", name)) if !name.is_empty() => RateLimit::kind(name, rate),
            Some(("queue", name)) if !name.is_empty() => RateLimit::queue(name, rate),
            _ => return Err(format!("`{target}`: expected kind:NAME or queue:NAME")),
        };
        Ok(if per_tenant {
            limit.per_tenant()
        } else {
            limit
        })
    }
}

/// The first start time each of `n` consecutive reservations may have, from the limit's state
/// after it took them (`tat`, the theoretical arrival time, in microseconds since the epoch) and
/// the store's clock: GCRA with a burst tolerance. The `i`-th reservation's own arrival time is
/// `tat - (n - i) * interval`; it may start once that is within `burst` intervals of now.
pub fn slot_starts(rate: &Rate, tat: i64, now: i64, n: u32) -> Vec<i64> {
    let interval = rate.interval_micros();
    let tolerance = interval.saturating_mul(i64::from(rate.burst.max(1)));
    (1..=i64::from(n))
        .map(|i| {
            let arrival = tat.saturating_sub((i64::from(n) - i).saturating_mul(interval));
            arrival.saturating_sub(tolerance).max(now)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn rates_parse_with_units_and_bursts() {
        let r: Rate = "10/s".parse().unwrap();
        assert_eq!((r.count, r.per, r.burst), (10, Duration::from_secs(1), 10));
        let r: Rate = "100/min,burst=1".parse().unwrap();
        assert_eq!((r.count, r.per, r.burst), (100, Duration::from_secs(60), 1));
        let r: Rate = "5/250ms".parse().unwrap();
        assert_eq!(r.interval_micros(), 50_000);
        for bad in [
            "",
            "10",
            "0/s",
            "10/0s",
            "10/day",
            "x/s",
            "10/s,burst=0",
            "10/s,b=2",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_parse_from_config_entries() {
        let l: RateLimit = "kind:notification.email@tenant=10/s".parse().unwrap();
        assert_eq!(
            l,
            RateLimit::kind("notification.email", Rate::per_second(10)).per_tenant()
        );
        let l: RateLimit = "queue:billing=100/min,burst=5".parse().unwrap();
        let want = Rate::per(100, Duration::from_secs(60)).with_burst(5);
        assert_eq!(l, RateLimit::queue("billing", want));
        for bad in ["kind:x", "x=1/s", "kind:=1/s", "queue:q=1", "job:q=1/s"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_tell_scopes_and_tenants_apart() {
        let email = RateLimit::kind("notification.email", Rate::per_second(10));
        assert_eq!(email.key("acme"), "kind:notification.email");
        assert_eq!(
            email.clone().per_tenant().key("acme"),
            "kind:notification.email|tenant:acme"
        );
        let q = RateLimit::queue("billing", Rate::per_second(100));
        assert!(q.applies("billing.charge_invoice", "billing"));
        assert!(!q.applies("billing.charge_invoice", "default"));
        assert!(email.applies("notification.email", "default"));
    }

    #[test]
    fn slots_follow_the_rate_after_the_burst() {
        // 10/s with a burst of 1: slots 100 ms apart from now on.
        let rate = Rate::per_second(10).with_burst(1);
        let now = 1_000_000;
        // Idle limit: state was `now` or older, and three reservations took it to now + 300 ms.
        let starts = slot_starts(&rate, now + 300_000, now, 3);
        assert_eq!(starts, [now, now + 100_000, now + 200_000]);
        // A burst of 3: the first three start at once, the fourth one interval later.
        let rate = Rate::per_second(10).with_burst(3);
        let starts = slot_starts(&rate, now + 400_000, now, 4);
        assert_eq!(starts, [now, now, now, now + 100_000]);
    }
}
