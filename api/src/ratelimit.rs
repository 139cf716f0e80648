//! Rate limits per tenant (by plan) and per API key: GCRA (the generic cell rate algorithm, as in
//! ATM networks and `redis-cell`). State is one "theoretical arrival time" per key: in Redis in
//! production, so every API replica shares it (the check is one atomic Lua script using Redis's
//! clock), in memory in the embedded default.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

/// A limit: `rate` requests per second sustained, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limit {
    /// Sustained requests per second.
    pub rate: f64,
    /// Largest burst.
    pub burst: u32,
}

impl Limit {
    /// Emission interval T (µs between requests at the sustained rate; at least 1 µs).
    fn interval_us(&self) -> i64 {
        ((1_000_000.0 / self.rate.max(1e-6)) as i64).max(1)
    }

    /// Tolerance τ (µs): how far ahead of "now" the arrival time may run.
    fn tolerance_us(&self) -> i64 {
        self.interval_us()
            .saturating_mul(i64::from(self.burst.max(1)))
    }
}

/// Limits by plan, and for each API key.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Per tenant, by plan name; tenants on an unknown plan get `default_plan`'s.
    pub plans: BTreeMap<String, Limit>,
    /// Plan used when a tenant's plan is not in `plans`.
    pub default_plan: String,
    /// Per API key (on top of its tenant's).
    pub api_key: Limit,
    /// Per client address on `/v1/auth/*` (signup, login, refresh, logout): slows password
    /// guessing across accounts and account enumeration.
    pub auth_per_ip: Limit,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            plans: BTreeMap::from([
                (
                    "free".to_owned(),
                    Limit {
                        rate: 50.0,
                        burst: 100,
                    },
                ),
                (
                    "pro".to_owned(),
                    Limit {
                        rate: 500.0,
                        burst: 1000,
                    },
                ),
            ]),
            default_plan: "free".into(),
            api_key: Limit {
                rate: 50.0,
                burst: 100,
            },
            auth_per_ip: Limit {
                rate: 2.0,
                burst: 30,
            },
        }
    }
}

impl Limits {
    /// The tenant limit for `plan`.
    pub fn for_plan(&self, plan: &str) -> Limit {
        self.plans
            .get(plan)
            .or_else(|| self.plans.get(&self.default_plan))
            .copied()
            .unwrap_or(Limit {
                rate: 50.0,
                burst: 100,
            })
    }
}

/// One check's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Admitted.
    pub allowed: bool,
    /// The burst size (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests left in the current burst.
    pub remaining: u32,
    /// Until the bucket is full again (`RateLimit-Reset`).
    pub reset: Duration,
    /// When refused: how long to wait (`Retry-After`).
    pub retry_after: Duration,
}

fn decide(limit: Limit, tat_offset_us: i64, allowed: bool, retry_us: i64) -> Decision {
    let interval = limit.interval_us().max(1);
    let remaining = if allowed {
        ((limit.tolerance_us() - tat_offset_us).max(0) / interval) as u32
    } else {
        0
    };
    Decision {
        allowed,
        limit: limit.burst,
        remaining: remaining.min(limit.burst),
        reset: Duration::from_micros(tat_offset_us.max(0) as u64),
        retry_after: Duration::from_micros(retry_us.max(0) as u64),
    }
}

/// Why a check could not be made.
#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct LimiterError(pub String);

/// A shared GCRA state store.
#[async_trait]
pub trait RateLimiter: Send + Sync + std::fmt::Debug {
    /// Counts one request against `key` under `limit`.
    async fn check(&self, key: &str, limit: Limit) -> Result<Decision, LimiterError>;
}

/// In-process limiter (the embedded default: one API process).
#[derive(Debug, Default)]
pub struct MemoryLimiter {
    tats: Mutex<HashMap<String, i64>>,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn check(&self, key: &str, limit: Limit) -> Result<Decision, LimiterError> {
        let mut tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the lock: a `now` taken before it could be older than a TAT another
        // thread stored meanwhile, and be refused for it.
        let now = now_us();
        if tats.len() > 100_000 {
            // Forget keys whose bucket is full again (their state equals "no state").
            tats.retain(|_, tat| *tat > now);
        }
        let tat = tats.get(key).copied().unwrap_or(now).max(now);
        let new_tat = tat + limit.interval_us();
        let offset = new_tat - now;
        if offset > limit.tolerance_us() {
            return Ok(decide(
                limit,
                tat - now,
                false,
                offset - limit.tolerance_us(),
            ));
        }
        tats.insert(key.to_owned(), new_tat);
        Ok(decide(limit, offset, true, 0))
    }
}

/// GCRA in one atomic step on Redis's own clock. Returns {allowed, retry_us, tat_offset_us}.
const GCRA_LUA: &str = r#"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local offset = new_tat - now
if offset > tolerance then
  return {0, offset - tolerance, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(offset / 1000) + 1)
return {1, 0, offset}
"#;

/// Redis-backed limiter: every API replica sees the same buckets.
pub struct RedisLimiter {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    script: redis::Script,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Connects to `url`; keys are `<prefix>:rl:<key>`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LimiterError> {
        let client = redis::Client::open(url).map_err(|e| LimiterError(e.to_string()))?;
        let conn = redis::aio::ConnectionManager::new(client)
            .await
            .map_err(|e| LimiterError(e.to_string()))?;
        Ok(RedisLimiter {
            conn,
            prefix: prefix.to_owned(),
            script: redis::Script::new(GCRA_LUA),
        })
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, key: &str, limit: Limit) -> Result<Decision, LimiterError> {
        let mut conn = self.conn.clone();
        let (allowed, retry, offset): (i64, i64, i64) = self
            .script
            .key(format!("{}:rl:{key}", self.prefix))
            .arg(limit.interval_us())
            .arg(limit.tolerance_us())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| LimiterError(e.to_string()))?;
        Ok(decide(limit, offset, allowed == 1, retry))
    }
}
