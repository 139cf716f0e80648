//! The audit and analytics streams end to end, on a real Kafka-protocol broker (tansu, one per
//! test behind a forwarder that can cut it off): PySaaS with events on publishes every outbox fact
//! through its leader; a 30 s Kafka outage under a load of a few thousand jobs stalls neither the
//! API nor the workers, grows the outbox, and afterwards every event is on its topic exactly
//! once, each tenant's in the order they were recorded — checked here and by an independent
//! client (kafka-python) against the published schemas.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use pysaas::config::Config;
use pysaas::{App, Roles};
use pysaas_brokers::stream::kafka::decode;
use pysaas_brokers::stream::ContentMode;
use pysaas_brokers::testing::{TestDb, TestKafka};
use pysaas_brokers::EventOutbox;
use pysaas_jobs::events::{events_of, CloudEvent, Stream};
use serde_json::json;
use uuid::Uuid;

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

fn config_for(db: &TestDb, kafka: &TestKafka, mode: ContentMode) -> Config {
    let mut config = Config::default();
    config.store.url = Some(db.url.clone());
    config.store.pg_schema = db.schema.clone();
    config.events.enabled = true;
    config.events.kafka_brokers = Some(kafka.bootstrap.clone());
    config.events.kafka_topic_prefix = kafka.prefix.clone();
    config.events.kafka_mode = mode;
    config.worker.concurrency = 16;
    config
}

/// Submits `n` `system.noop` jobs for each tenant in batches, each request timed: returns the
/// slowest.
async fn submit_load(
    app: &pysaas::testing::TestApp,
    clients: &[reqwest::Client],
    n: usize,
) -> Duration {
    let mut slowest = Duration::ZERO;
    for client in clients {
        for chunk in 0..n.div_ceil(100) {
            let size = 100.min(n - chunk * 100);
            let jobs: Vec<_> = (0..size)
                .map(|_| json!({"kind": "system.noop", "payload": {}}))
                .collect();
            let began = Instant::now();
            let r = client
                .post(app.url("/v1/jobs/batch"))
                .json(&json!({ "jobs": jobs }))
                .send()
                .await
                .unwrap();
            slowest = slowest.max(began.elapsed());
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    }
    slowest
}

/// Waits until none of the tenants' jobs is left unfinished, and returns how many there are.
async fn wait_all_succeeded(db: &TestDb, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let mut total = 0;
        let mut open = 0;
        for tenant in TENANTS {
            for queue in db.store.queue_stats(Some(tenant)).await.unwrap() {
                let all: i64 = queue.counts.values().sum();
                let done = queue
                    .counts
                    .get(&pysaas_jobs::JobState::Succeeded)
                    .copied()
                    .unwrap_or(0);
                total += all;
                open += all - done;
            }
        }
        if open == 0 {
            return total as usize;
        }
        assert!(
            Instant::now() < deadline,
            "{open} of {total} jobs unfinished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every event the outbox's facts stand for, in outbox order (read through a cursor of the
/// test's own).
async fn expected_events(outbox: &dyn EventOutbox) -> Vec<(Stream, CloudEvent)> {
    let mut out = Vec::new();
    loop {
        let entries = outbox.outbox_read("test-check", 5000).await.unwrap();
        let Some(last) = entries.last() else {
            return out;
        };
        for entry in &entries {
            out.extend(events_of(&entry.fact).unwrap());
        }
        outbox
            .outbox_commit("test-check", last.position)
            .await
            .unwrap();
    }
}

/// The topic's events in partition order: per partition, by offset.
async fn on_topic(kafka: &TestKafka, stream: Stream) -> BTreeMap<i32, Vec<CloudEvent>> {
    let mut by_partition: BTreeMap<i32, Vec<(i64, CloudEvent)>> = BTreeMap::new();
    let topic = kafka.config().topic(stream);
    for (partition, offset, headers, value) in kafka.read_topic(&topic).await {
        by_partition
            .entry(partition)
            .or_default()
            .push((offset, decode(&headers, &value).unwrap()));
    }
    by_partition
        .into_iter()
        .map(|(p, mut v)| {
            v.sort_by_key(|(o, _)| *o);
            (p, v.into_iter().map(|(_, e)| e).collect())
        })
        .collect()
}

/// Checks the topics against the outbox: the same events, none twice, a tenant on one partition
/// in outbox order. Returns the number of events per stream.
async fn check_topics(kafka: &TestKafka, db: &TestDb) -> BTreeMap<Stream, usize> {
    let expected = expected_events(db.store.as_ref()).await;
    let mut counts = BTreeMap::new();
    for stream in Stream::ALL {
        let want: Vec<&CloudEvent> = expected
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, e)| e)
            .collect();
        let got = on_topic(kafka, stream).await;
        let all: Vec<&CloudEvent> = got.values().flatten().collect();
        let ids: HashSet<Uuid> = all.iter().map(|e| e.id).collect();
        assert_eq!(
            ids.len(),
            all.len(),
            "{stream:?}: an event is on the topic twice"
        );
        let want_ids: HashSet<Uuid> = want.iter().map(|e| e.id).collect();
        let missing: Vec<_> = want
            .iter()
            .filter(|e| !ids.contains(&e.id))
            .take(3)
            .collect();
        let extra: Vec<_> = all
            .iter()
            .filter(|e| !want_ids.contains(&e.id))
            .take(3)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{stream:?}: the topic holds {} events, the outbox {}; missing e.g. {missing:?}, \
             extra e.g. {extra:?}",
            ids.len(),
            want_ids.len()
        );
        for tenant in TENANTS {
            let partitions: Vec<i32> = got
                .iter()
                .filter(|(_, v)| v.iter().any(|e| e.tenantid == tenant))
                .map(|(p, _)| *p)
                .collect();
            assert!(
                partitions.len() <= 1,
                "{tenant} spans partitions {partitions:?}"
            );
            let order: Vec<Uuid> = got
                .values()
                .flatten()
                .filter(|e| e.tenantid == tenant)
                .map(|e| e.id)
                .collect();
            let want_order: Vec<Uuid> = want
                .iter()
                .filter(|e| e.tenantid == tenant)
                .map(|e| e.id)
                .collect();
            assert_eq!(
                order, want_order,
                "{stream:?}: {tenant}'s events out of order"
            );
        }
        // What is on the topic is what the outbox recorded, attribute for attribute.
        let by_id: BTreeMap<Uuid, &CloudEvent> = want.iter().map(|e| (e.id, *e)).collect();
        for e in all {
            assert_eq!(
                Some(&e),
                by_id.get(&e.id),
                "{stream:?}: event {} differs",
                e.id
            );
        }
        counts.insert(stream, want.len());
    }
    counts
}

/// Runs `tests/kafka_check.py` (kafka-python) over both topics, expecting `counts` events.
async fn independent_check(kafka: &TestKafka, counts: &BTreeMap<Stream, usize>) {
    let dir = tempfile::tempdir().unwrap();
    let schemas = dir.path().join("schemas.json");
    std::fs::write(
        &schemas,
        serde_json::to_vec(&pysaas_jobs::events::catalog_document()).unwrap(),
    )
    .unwrap();
    let python = format!(
        "{}/python",
        std::env::var("PYSAAS_TEST_PYTOOLS")
            .expect("PYSAAS_TEST_PYTOOLS: the venv scripts/test.sh installs kafka-python into")
    );
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kafka_check.py"))
        .arg(&kafka.bootstrap)
        .arg(&schemas);
    for (stream, n) in counts {
        cmd.arg(format!("{}={n}", kafka.config().topic(*stream)));
    }
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "kafka_check.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"], json!([]), "kafka-python found problems");
    for (stream, n) in counts {
        let topic = kafka.config().topic(*stream);
        assert_eq!(report["topics"][&topic]["count"], json!(n), "{topic}");
    }
}

/// Every role on `db`, publishing to `kafka` in `mode`, and an admin client of each tenant.
async fn start(
    db: &TestDb,
    kafka: &TestKafka,
    mode: ContentMode,
) -> (pysaas::testing::TestApp, Vec<reqwest::Client>) {
    let app = common::spawn(
        App::new(config_for(db, kafka, mode)).with_store(db.store.clone()),
        Roles::all(),
    )
    .await;
    let mut clients = Vec::new();
    for tenant in TENANTS {
        clients.push(common::tenant_client(app.store.as_ref(), tenant).await);
    }
    (app, clients)
}

/// Waits until the publisher has published everything the outbox holds.
async fn wait_published(db: &TestDb, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let backlog = db.store.outbox_backlog("kafka").await.unwrap();
        if backlog.pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not drain: {backlog:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The outage: a load before, during and after 30 s without Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_outage_loses_reorders_and_duplicates_nothing() {
    let (db, kafka) = (TestDb::postgres().await, TestKafka::start().await);
    let (app, clients) = start(&db, &kafka, ContentMode::Binary).await;

    submit_load(&app, &clients, 300).await;
    wait_all_succeeded(&db, Duration::from_secs(60)).await;

    kafka.set_down(true);
    let down = Instant::now();
    // With Kafka gone the API takes submissions as fast as ever and the workers run them.
    let slowest = submit_load(&app, &clients, 500).await;
    assert!(
        slowest < Duration::from_secs(2),
        "a submission took {slowest:?}"
    );
    let total = wait_all_succeeded(&db, Duration::from_secs(25)).await;
    assert!(
        down.elapsed() < Duration::from_secs(30),
        "the jobs outlasted the outage"
    );
    let backlog = db.store.outbox_backlog("kafka").await.unwrap();
    assert!(
        backlog.pending >= 1500,
        "the outbox holds what Kafka has not taken: {backlog:?}"
    );
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down.elapsed())).await;
    kafka.set_down(false);

    submit_load(&app, &clients, 200).await;
    let total = total.max(wait_all_succeeded(&db, Duration::from_secs(60)).await);
    assert_eq!(total, 3 * (300 + 500 + 200));
    wait_published(&db, Duration::from_secs(120)).await;
    app.stop().await.unwrap();

    let counts = check_topics(&kafka, &db).await;
    // Each job: queued, running, succeeded on the audit stream; submitted and finished on the
    // analytics one (and the invoice run's, into the default tenant, if it fired).
    assert!(counts[&Stream::Audit] >= 3 * total, "{counts:?}");
    assert!(counts[&Stream::Analytics] >= 2 * total, "{counts:?}");
    independent_check(&kafka, &counts).await;
}

/// Structured mode: the same events, each one JSON value, read back by kafka-python too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_mode_carries_the_same_events() {
    let (db, kafka) = (TestDb::postgres().await, TestKafka::start().await);
    let (app, clients) = start(&db, &kafka, ContentMode::Structured).await;
    submit_load(&app, &clients, 50).await;
    wait_all_succeeded(&db, Duration::from_secs(60)).await;
    wait_published(&db, Duration::from_secs(60)).await;
    app.stop().await.unwrap();
    let counts = check_topics(&kafka, &db).await;
    independent_check(&kafka, &counts).await;
}
