//! Broker fault tests. They stop and start the shared RabbitMQ, so they live in a test binary of
//! their own (cargo runs test binaries one after another) and run one at a time.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pysaas_brokers::dispatch::amqp::{AmqpConfig, AmqpDispatcher};
use pysaas_brokers::dispatch::redis::{RedisConfig, RedisDispatcher};
use pysaas_brokers::testing::{amqp_url, redis_url, TestAmqpPrefix, TestDb, TestRedisPrefix};
use pysaas_brokers::{Dispatcher, JobFilter};
use pysaas_jobs::{JobState, DEFAULT_TENANT};
use serde_json::json;

fn rabbitmqctl(args: &[&str]) {
    let status = Command::new("rabbitmqctl")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("rabbitmqctl");
    assert!(status.success(), "rabbitmqctl {args:?} failed");
}

/// Starts RabbitMQ's app again however the test ends.
struct RestartGuard;

impl Drop for RestartGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .arg("start_app")
            .stdout(Stdio::null())
            .status();
    }
}

/// A `pysaas worker` child on `broker_url` under `prefix`.
fn worker(db: &TestDb, broker_url: &str, prefix: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pysaas"))
        .args(["worker", "--queues", "default", "--concurrency", "8"])
        .env("PYSAAS_DATABASE_URL", &db.url)
        .env("PYSAAS_PG_SCHEMA", &db.schema)
        .env("PYSAAS_BROKER_URL", broker_url)
        .env("PYSAAS_BROKER_PREFIX", prefix)
        .env("PYSAAS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn worker")
}

/// The API in-process on port 0, publishing through `dispatcher`.
async fn spawn_api(db: &TestDb, dispatcher: Arc<dyn Dispatcher>) -> pysaas::testing::TestApp {
    let app = pysaas::App::new(pysaas::Config::default())
        .with_store(db.store.clone())
        .with_dispatcher(dispatcher)
        .with_auth(Arc::new(pysaas_api::auth::Auth::ephemeral()));
    common::spawn(app, common::api_only()).await
}

/// An HTTP client carrying an `admin` API key of the default tenant.
async fn authorised_client(db: &TestDb) -> reqwest::Client {
    let key = pysaas_api::auth::admin_key_for(db.store.as_ref(), DEFAULT_TENANT, "test")
        .await
        .unwrap();
    common::bearer_client(&key)
}

/// Submits a `system.sleep` job through the API: it must be accepted (202) without hanging, even
/// while a broker is down. Returns its id.
async fn submit_sleep(http: &reqwest::Client, base: &str, ms: u64) -> uuid::Uuid {
    let started = Instant::now();
    let r = http
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"kind": "system.sleep", "payload": {"ms": ms}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "submission must not hang"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    uuid::Uuid::parse_str(body["id"].as_str().unwrap()).unwrap()
}

/// Waits until `n` jobs have succeeded; returns every job.
async fn wait_all_succeeded(db: &TestDb, n: usize, within: Duration) -> Vec<pysaas_jobs::Job> {
    let filter = JobFilter {
        tenant_id: DEFAULT_TENANT.into(),
        limit: 1000,
        ..Default::default()
    };
    let deadline = Instant::now() + within;
    loop {
        let jobs = common::own_jobs(db.store.list(&filter).await.unwrap());
        if jobs
            .iter()
            .filter(|j| j.state == JobState::Succeeded)
            .count()
            == n
        {
            return jobs;
        }
        assert!(
            Instant::now() < deadline,
            "not every accepted job completed after the broker fault"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// RabbitMQ goes away in the middle of a run: the API keeps answering 202 (rows are committed;
/// the relay publishes them later), the worker reconnects by itself within 5 s of the broker's
/// return, and every accepted job completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restart_loses_nothing() {
    let db = TestDb::postgres().await;
    let prefix = TestAmqpPrefix::new(&["default"]);
    let amqp = AmqpDispatcher::new(
        AmqpConfig {
            url: amqp_url(),
            prefix: prefix.prefix.clone(),
        },
        db.store.clone(),
    );
    amqp.declare("default").await.unwrap();
    let dispatcher: Arc<dyn Dispatcher> = Arc::new(amqp);
    let api = spawn_api(&db, dispatcher).await;
    let base = api.base.clone();
    let http = authorised_client(&db).await;
    let submit = |n: usize| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(submit_sleep(&http, &base, 300).await);
            }
            ids
        }
    };

    let mut child = worker(&db, &amqp_url(), &prefix.prefix);
    submit(30).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let guard = RestartGuard;
    rabbitmqctl(&["stop_app"]);
    let during_outage = submit(20).await;
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(
        ready.status(),
        reqwest::StatusCode::OK,
        "the store is still up"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarting = chrono::Utc::now();
    rabbitmqctl(&["start_app"]);
    drop(guard);
    let back = chrono::Utc::now();

    let jobs = wait_all_succeeded(&db, 50, Duration::from_secs(90)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    api.stop().await.unwrap();
    assert_eq!(jobs.len(), 50);
    for job in &jobs {
        assert_eq!(job.state, JobState::Succeeded);
        assert!(job.attempts >= 1, "{job:?}");
    }
    // Nothing accepted during the outage ran before the broker came back (it went through the
    // relay and RabbitMQ, not around them), and work resumed within 5 s of the restart.
    let outage_starts: Vec<_> = jobs
        .iter()
        .filter(|j| during_outage.contains(&j.id))
        .filter_map(|j| j.started_at)
        .collect();
    assert_eq!(outage_starts.len(), 20);
    assert!(
        outage_starts.iter().all(|t| *t >= restarting),
        "a job ran while RabbitMQ was down"
    );
    let first = outage_starts.iter().min().copied().unwrap();
    assert!(
        first - back < chrono::Duration::seconds(5),
        "resumed {} ms after the restart",
        (first - back).num_milliseconds()
    );
}

/// Every Redis connection is killed twice in the middle of a run (`CLIENT KILL TYPE normal`):
/// the API's publishes and the worker's reads reconnect by themselves, and every accepted job
/// completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_connection_loss_loses_nothing() {
    let db = TestDb::postgres().await;
    let prefix = TestRedisPrefix::new();
    let redis = RedisDispatcher::new(
        RedisConfig {
            url: redis_url(),
            prefix: prefix.prefix.clone(),
        },
        db.store.clone(),
    )
    .unwrap();
    let dispatcher: Arc<dyn Dispatcher> = Arc::new(redis);
    let api = spawn_api(&db, dispatcher).await;
    let base = api.base.clone();
    let mut child = worker(&db, &redis_url(), &prefix.prefix);
    let http = authorised_client(&db).await;
    let kill_all = || {
        let status = Command::new("redis-cli")
            .args(["CLIENT", "KILL", "TYPE", "normal"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    };
    let mut last_kill = chrono::Utc::now();
    let mut after_last_kill = Vec::new();
    for round in 0..3 {
        for _ in 0..20 {
            let id = submit_sleep(&http, &base, 100).await;
            if round == 2 {
                after_last_kill.push(id);
            }
        }
        if round < 2 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            last_kill = chrono::Utc::now();
            kill_all();
        }
    }
    let jobs = wait_all_succeeded(&db, 60, Duration::from_secs(60)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    api.stop().await.unwrap();
    assert_eq!(jobs.len(), 60);
    assert!(jobs.iter().all(|j| j.state == JobState::Succeeded));
    // Work submitted after the last kill resumed within 5 s: the API's publishes and the
    // worker's reads reconnected by themselves.
    let first = jobs
        .iter()
        .filter(|j| after_last_kill.contains(&j.id))
        .filter_map(|j| j.started_at)
        .min()
        .expect("jobs submitted after the last kill ran");
    assert!(
        first - last_kill < chrono::Duration::seconds(5),
        "resumed {} ms after the kill",
        (first - last_kill).num_milliseconds()
    );
}
