//! One dispatch conformance suite for every transport: each test runs against the store
//! dispatcher, RabbitMQ and Redis Streams, each over PostgreSQL and over SQLite (a fresh schema or
//! file, and a fresh broker name prefix, per test).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pysaas_brokers::dispatch::amqp::{AmqpConfig, AmqpDispatcher};
use pysaas_brokers::dispatch::redis::{RedisConfig, RedisDispatcher};
use pysaas_brokers::testing::{amqp_url, redis_url, TestAmqpPrefix, TestDb, TestRedisPrefix};
use pysaas_brokers::{
    Completion, ConsumerSpec, Delivery, Dispatcher, JobConsumer, StoreDispatcher,
};
use pysaas_jobs::{Job, NewJob, Outcome};
use serde_json::json;
use uuid::Uuid;

const QUEUES: &[&str] = &["work", "other"];

/// `XPENDING key group`: count, lowest and highest id, pending per consumer.
type XPendingSummary = (
    i64,
    Option<String>,
    Option<String>,
    Option<Vec<(String, String)>>,
);

struct Transport {
    db: TestDb,
    dispatcher: Arc<dyn Dispatcher>,
    amqp: Option<AmqpDispatcher>,
    redis: Option<RedisDispatcher>,
    _prefix: Option<TestAmqpPrefix>,
    _redis_prefix: Option<TestRedisPrefix>,
}

async fn store(db: TestDb) -> Transport {
    let dispatcher = Arc::new(
        StoreDispatcher::new(db.store.clone()).with_poll_interval(Duration::from_millis(100)),
    );
    Transport {
        db,
        dispatcher,
        amqp: None,
        redis: None,
        _prefix: None,
        _redis_prefix: None,
    }
}

async fn amqp(db: TestDb) -> Transport {
    let prefix = TestAmqpPrefix::new(QUEUES);
    let amqp = AmqpDispatcher::new(
        AmqpConfig {
            url: amqp_url(),
            prefix: prefix.prefix.clone(),
        },
        db.store.clone(),
    );
    for q in QUEUES {
        amqp.declare(q).await.unwrap();
    }
    Transport {
        db,
        dispatcher: Arc::new(amqp.clone()),
        amqp: Some(amqp),
        redis: None,
        _prefix: Some(prefix),
        _redis_prefix: None,
    }
}

async fn redis_transport(db: TestDb) -> Transport {
    let prefix = TestRedisPrefix::new();
    let config = RedisConfig {
        url: redis_url(),
        prefix: prefix.prefix.clone(),
    };
    let redis = RedisDispatcher::new(config, db.store.clone()).unwrap();
    Transport {
        db,
        dispatcher: Arc::new(redis.clone()),
        amqp: None,
        redis: Some(redis),
        _prefix: None,
        _redis_prefix: Some(prefix),
    }
}

fn job(queue: &str) -> NewJob {
    NewJob {
        max_attempts: 3,
        timeout_ms: 1000,
        ..NewJob::new("acme", "system.noop", queue, json!({}))
    }
}

impl Transport {
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Vec<Job> {
        let jobs: Vec<Job> = self
            .db
            .store
            .insert(jobs)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.job)
            .collect();
        self.dispatcher.dispatch(&jobs).await.unwrap();
        jobs
    }

    async fn consumer(&self, queue: &str, worker: &str) -> Box<dyn JobConsumer> {
        let spec = ConsumerSpec {
            queue: queue.into(),
            worker_id: worker.into(),
            lease: Duration::from_secs(30),
            capacity: 10,
        };
        self.dispatcher.consumer(spec).await.unwrap()
    }
}

/// Polls (and waits) until `n` deliveries arrived or `within` passed.
async fn collect(consumer: &mut Box<dyn JobConsumer>, n: usize, within: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        let got = consumer.poll(n - out.len()).await.unwrap();
        if got.is_empty() {
            let _ = tokio::time::timeout(Duration::from_millis(200), consumer.wait()).await;
        }
        out.extend(got);
    }
    out
}

async fn finish(t: &Transport, deliveries: Vec<Delivery>) {
    let completions: Vec<Completion> = deliveries
        .iter()
        .map(|d| Completion {
            id: d.job.id,
            tenant_id: d.job.tenant_id.clone(),
            attempt: d.job.attempts,
            outcome: Outcome::Succeeded { result: None },
            detail: None,
        })
        .collect();
    assert_eq!(
        t.db.store.complete(&completions).await.unwrap() as usize,
        completions.len()
    );
    for d in deliveries {
        if let Some(ack) = d.ack {
            ack.ack().await.unwrap();
        }
    }
}

async fn every_job_is_delivered_once(t: Transport) {
    let jobs = t.enqueue((0..60).map(|_| job("work")).collect()).await;
    t.enqueue(vec![job("other")]).await;
    let mut a = t.consumer("work", "wa").await;
    let mut b = t.consumer("work", "wb").await;
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < jobs.len() && Instant::now() < deadline {
        for c in [&mut a, &mut b] {
            let got = collect(c, 7, Duration::from_millis(300)).await;
            for d in &got {
                assert_eq!(d.job.queue, "work");
                assert!(seen.insert(d.job.id), "job {} delivered twice", d.job.id);
            }
            finish(&t, got).await;
        }
    }
    assert_eq!(seen, jobs.iter().map(|j| j.id).collect::<HashSet<_>>());
    let extra = collect(&mut a, 1, Duration::from_millis(500)).await;
    assert!(extra.is_empty(), "nothing left on `work`");
}

async fn duplicate_announcements_run_nothing_twice(t: Transport) {
    let jobs = t.enqueue(vec![job("work")]).await;
    t.dispatcher.dispatch(&jobs).await.unwrap();
    t.dispatcher.dispatch(&jobs).await.unwrap();
    let mut c = t.consumer("work", "w").await;
    let got = collect(&mut c, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    finish(&t, got).await;
    let again = collect(&mut c, 1, Duration::from_millis(800)).await;
    assert!(
        again.is_empty(),
        "a finished job is never delivered for running again"
    );
}

/// What the scheduler's relay does: announce stale queued jobs of queues the broker holds nothing for.
async fn relay_pass(t: &Transport) -> usize {
    let mut announced = 0;
    for queue in t.db.store.queued_queues().await.unwrap() {
        if t.dispatcher.backlog(&queue).await.unwrap() != Some(0) {
            continue;
        }
        let jobs =
            t.db.store
                .stale_queued(&queue, Duration::from_millis(500), 1000)
                .await
                .unwrap();
        t.dispatcher.dispatch(&jobs).await.unwrap();
        announced += jobs.len();
    }
    announced
}

async fn the_relay_finds_what_dispatch_missed(t: Transport) {
    // Inserted but never announced: what happens when the broker was down at enqueue time.
    let ids: HashSet<Uuid> =
        t.db.store
            .insert((0..5).map(|_| job("work")).collect())
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.job.id)
            .collect();
    let broker = t.amqp.is_some() || t.redis.is_some();
    if broker {
        assert_eq!(
            t.dispatcher.backlog("work").await.unwrap(),
            Some(0),
            "the broker holds nothing for the queue"
        );
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    if broker {
        assert_eq!(relay_pass(&t).await, 5);
        assert_eq!(t.dispatcher.backlog("work").await.unwrap(), Some(5));
        assert_eq!(
            relay_pass(&t).await,
            0,
            "nothing is announced twice while the broker still holds messages"
        );
    }
    let mut c = t.consumer("work", "w").await;
    let got = collect(&mut c, 5, Duration::from_secs(5)).await;
    assert_eq!(got.iter().map(|d| d.job.id).collect::<HashSet<_>>(), ids);
    finish(&t, got).await;
    if broker {
        assert_eq!(t.dispatcher.backlog("work").await.unwrap(), Some(0));
    }
}

async fn higher_priority_is_delivered_first(t: Transport) {
    let mut c = t.consumer("work", "w").await;
    let mut low = job("work");
    low.priority = 0;
    let mut high = job("work");
    high.priority = 9;
    t.enqueue(vec![low.clone(), high.clone()]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = collect(&mut c, 2, Duration::from_secs(5)).await;
    assert_eq!(got.first().map(|d| d.job.id), Some(high.id));
    finish(&t, got).await;
}

macro_rules! dispatch_suite {
    ($($test:ident),* $(,)?) => {
        dispatch_suite!(@on store_dispatch, store, postgres; $($test),*);
        dispatch_suite!(@on store_dispatch_sqlite, store, sqlite; $($test),*);
        dispatch_suite!(@on rabbitmq, amqp, postgres; $($test),*);
        dispatch_suite!(@on rabbitmq_sqlite, amqp, sqlite; $($test),*);
        dispatch_suite!(@on redis_streams, redis_transport, postgres; $($test),*);
        dispatch_suite!(@on redis_streams_sqlite, redis_transport, sqlite; $($test),*);
    };
    (@on $module:ident, $transport:ident, $db:ident; $($test:ident),*) => {
        mod $module {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let db = pysaas_brokers::testing::TestDb::$db().await;
                super::$test(super::$transport(db).await).await
            })*
        }
    };
}

dispatch_suite!(
    every_job_is_delivered_once,
    duplicate_announcements_run_nothing_twice,
    the_relay_finds_what_dispatch_missed,
    higher_priority_is_delivered_first,
);

/// A message whose body is not an envelope goes to the dead-letter queue, and the consumer keeps
/// delivering the jobs after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_poison_message_is_dead_lettered() {
    use lapin::options::{BasicGetOptions, BasicPublishOptions};
    let t = amqp(TestDb::postgres().await).await;
    let amqp = t.amqp.as_ref().unwrap();
    let channel = amqp.channel().await.unwrap();
    channel
        .basic_publish(
            &amqp.exchange(),
            "work",
            BasicPublishOptions::default(),
            b"definitely not json",
            lapin::BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let good = t.enqueue(vec![job("work")]).await;
    let mut c = t.consumer("work", "w").await;
    let got = collect(&mut c, 1, Duration::from_secs(5)).await;
    assert_eq!(
        got.iter().map(|d| d.job.id).collect::<Vec<_>>(),
        vec![good[0].id]
    );
    finish(&t, got).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(dead) = channel
            .basic_get(&amqp.dead_letter_queue(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            assert_eq!(dead.delivery.data, b"definitely not json");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "poison message not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An entry whose body is not an envelope goes to the dead-letter stream, and the consumer keeps
/// delivering the jobs after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_poison_entry_is_dead_lettered() {
    let t = redis_transport(TestDb::postgres().await).await;
    let redis = t.redis.as_ref().unwrap();
    let mut c = t.consumer("work", "w").await; // creates the group
    let mut conn = redis.connection().await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg(redis.stream("work"))
        .arg("*")
        .arg("env")
        .arg("definitely not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    let good = t.enqueue(vec![job("work")]).await;
    let got = collect(&mut c, 1, Duration::from_secs(5)).await;
    assert_eq!(
        got.iter().map(|d| d.job.id).collect::<Vec<_>>(),
        vec![good[0].id]
    );
    finish(&t, got).await;
    let dead: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(redis.dead_letter_stream())
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(dead.ids.len(), 1);
    assert_eq!(
        dead.ids[0].map.get("env"),
        Some(&redis::Value::BulkString(b"definitely not json".to_vec()))
    );
    let pending: XPendingSummary = redis::cmd("XPENDING")
        .arg(redis.stream("work"))
        .arg(redis.dead_letter_stream().replace(":dead", ""))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending.0, 0, "everything acknowledged");
}

/// Entries a dead consumer left pending are taken over once the lease has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_entries_of_a_dead_consumer_are_reclaimed() {
    let t = redis_transport(TestDb::postgres().await).await;
    let jobs = t.enqueue(vec![job("work"), job("work")]).await;
    let short = ConsumerSpec {
        queue: "work".into(),
        worker_id: "doomed".into(),
        lease: Duration::from_millis(300),
        capacity: 10,
    };
    let mut doomed = t.dispatcher.consumer(short.clone()).await.unwrap();
    let got = collect(&mut doomed, 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    drop(got); // never acknowledged: the consumer "died"
    drop(doomed);
    // The store's rescuer re-queues the jobs once their lease expires.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(t.db.store.rescue_expired().await.unwrap(), 2);
    let mut heir = t
        .dispatcher
        .consumer(ConsumerSpec {
            worker_id: "heir".into(),
            ..short
        })
        .await
        .unwrap();
    let again = collect(&mut heir, 2, Duration::from_secs(5)).await;
    assert_eq!(
        again.iter().map(|d| d.job.id).collect::<HashSet<_>>(),
        jobs.iter().map(|j| j.id).collect()
    );
    assert!(again.iter().all(|d| d.job.attempts == 2));
    finish(&t, again).await;
}
