//! One suite for both rate limiters: the in-process GCRA and Redis's Lua script (a fresh key
//! prefix per test, deleted afterwards) must make the same decisions.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;
use std::time::Duration;

use pysaas_api::ratelimit::{Limit, MemoryLimiter, RateLimiter, RedisLimiter};
use pysaas_brokers::testing::{redis_url, TestRedisPrefix};

struct Subject {
    limiter: Arc<dyn RateLimiter>,
    _prefix: Option<TestRedisPrefix>,
}

fn memory() -> Subject {
    Subject {
        limiter: Arc::new(MemoryLimiter::default()),
        _prefix: None,
    }
}

async fn redis() -> Subject {
    let prefix = TestRedisPrefix::new();
    Subject {
        limiter: Arc::new(
            RedisLimiter::connect(&redis_url(), &prefix.prefix)
                .await
                .unwrap(),
        ),
        _prefix: Some(prefix),
    }
}

async fn a_burst_is_admitted_then_refused_with_a_wait(s: Subject) {
    let limit = Limit {
        rate: 1.0,
        burst: 3,
    };
    let mut decisions = Vec::new();
    for _ in 0..5 {
        decisions.push(s.limiter.check("t", limit).await.unwrap());
    }
    let allowed: Vec<bool> = decisions.iter().map(|d| d.allowed).collect();
    assert_eq!(allowed, [true, true, true, false, false]);
    let remaining: Vec<u32> = decisions.iter().take(3).map(|d| d.remaining).collect();
    assert_eq!(remaining, [2, 1, 0]);
    assert!(decisions.iter().all(|d| d.limit == 3));
    let refused = &decisions[4];
    assert!(
        refused.retry_after > Duration::from_millis(900)
            && refused.retry_after <= Duration::from_secs(1),
        "{refused:?}"
    );
    // Another key is independent.
    assert!(s.limiter.check("u", limit).await.unwrap().allowed);
}

async fn the_bucket_refills_at_the_rate(s: Subject) {
    let limit = Limit {
        rate: 20.0,
        burst: 1,
    };
    assert!(s.limiter.check("r", limit).await.unwrap().allowed);
    let refused = s.limiter.check("r", limit).await.unwrap();
    assert!(!refused.allowed);
    assert!(
        refused.retry_after <= Duration::from_millis(50),
        "{refused:?}"
    );
    tokio::time::sleep(refused.retry_after + Duration::from_millis(10)).await;
    assert!(s.limiter.check("r", limit).await.unwrap().allowed);
}

async fn a_huge_limit_never_refuses_under_contention(s: Subject) {
    let wide = Limit {
        rate: 1e9,
        burst: u32::MAX,
    };
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let limiter = s.limiter.clone();
            tokio::spawn(async move {
                for _ in 0..500 {
                    assert!(limiter.check("k", wide).await.unwrap().allowed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

macro_rules! limiter_suite {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(super::memory()).await })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(super::redis().await).await })*
        }
    };
}

limiter_suite!(
    a_burst_is_admitted_then_refused_with_a_wait,
    the_bucket_refills_at_the_rate,
    a_huge_limit_never_refuses_under_contention,
);
