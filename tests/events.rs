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

/// Per (kind, outcome): how many of the tenant's jobs finished so, counted in the jobs table.
async fn recount(db: &TestDb, tenant: &str) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    let filter = pysaas_brokers::JobFilter {
        tenant_id: tenant.into(),
        limit: pysaas_brokers::LIST_LIMIT_MAX,
        ..Default::default()
    };
    let mut page = db.store.list(&filter).await.unwrap();
    let mut all = Vec::new();
    while !page.is_empty() {
        let last = page.last().map(|j| j.id);
        all.append(&mut page);
        let next = pysaas_brokers::JobFilter {
            before: last,
            ..filter.clone()
        };
        page = db.store.list(&next).await.unwrap();
    }
    for job in common::own_jobs(all) {
        if job.state.is_finished() {
            *out.entry((job.kind.clone(), job.state.as_str().to_owned()))
                .or_default() += 1;
        }
    }
    out
}

/// The same from `GET /v1/analytics/jobs` over the last hour.
async fn analytics_counts(
    app: &pysaas::testing::TestApp,
    client: &reqwest::Client,
) -> (BTreeMap<(String, String), i64>, i64) {
    let r = client
        .get(app.url("/v1/analytics/jobs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let mut finished = BTreeMap::new();
    for row in body["finished"].as_array().unwrap() {
        let kind = row["kind"].as_str().unwrap().to_owned();
        if kind == "billing.generate_invoices" {
            continue;
        }
        *finished
            .entry((kind, row["outcome"].as_str().unwrap().to_owned()))
            .or_default() += row["jobs"].as_i64().unwrap();
    }
    let submitted = body["submitted"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] != "billing.generate_invoices")
        .map(|r| r["jobs"].as_i64().unwrap())
        .sum();
    (finished, submitted)
}

/// Waits until the analytics rollups of each tenant equal the recount of its jobs.
async fn wait_rollups_match(
    app: &pysaas::testing::TestApp,
    db: &TestDb,
    clients: &[reqwest::Client],
    jobs_per_tenant: i64,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for (tenant, client) in TENANTS.iter().zip(clients) {
        loop {
            let want = recount(db, tenant).await;
            let (got, submitted) = analytics_counts(app, client).await;
            if got == want && submitted == jobs_per_tenant {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{tenant}: rollups {got:?} ({submitted} submitted) differ from the recount {want:?} ({jobs_per_tenant})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Submits `n` jobs per tenant: one in five fails for good (`system.fail`, one attempt).
async fn submit_mixed(app: &pysaas::testing::TestApp, clients: &[reqwest::Client], n: usize) {
    for client in clients {
        let jobs: Vec<_> = (0..n)
            .map(|i| {
                if i % 5 == 0 {
                    json!({"kind": "system.fail", "payload": {"times": 1}, "max_attempts": 1})
                } else {
                    json!({"kind": "system.noop", "payload": {}})
                }
            })
            .collect();
        for chunk in jobs.chunks(100) {
            let r = client
                .post(app.url("/v1/jobs/batch"))
                .json(&json!({ "jobs": chunk }))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    }
}

/// The embedded default: no Kafka, the consumers read the outbox; the audit log shows each job's
/// transitions to its tenant only, and the rollups equal a recount of the jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_kafka_the_audit_log_and_analytics_come_from_the_outbox() {
    let db = TestDb::sqlite().await;
    let mut config = Config::default();
    config.store.url = Some(db.url.clone());
    config.events.enabled = true;
    let app = common::spawn(App::new(config).with_store(db.store.clone()), Roles::all()).await;
    let mut clients = Vec::new();
    for tenant in TENANTS {
        clients.push(common::tenant_client(app.store.as_ref(), tenant).await);
    }
    submit_mixed(&app, &clients, 50).await;
    wait_all_finished(&db, Duration::from_secs(60)).await;
    wait_rollups_match(&app, &db, &clients, 50).await;

    let acme = &clients[0];
    let jobs = common::json_of(acme.get(app.url("/v1/jobs?limit=1&kind=system.fail"))).await;
    let id = jobs["jobs"][0]["id"].as_str().unwrap().to_owned();
    let subject = format!("jobs/{id}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let entries = loop {
        let page = common::json_of(
            acme.get(app.url("/v1/audit"))
                .query(&[("subject", subject.as_str())]),
        )
        .await;
        let entries = page["entries"].as_array().unwrap().clone();
        if entries.len() >= 3 {
            break entries;
        }
        assert!(Instant::now() < deadline, "audit of {subject}: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["pysaas.job.dead", "pysaas.job.running", "pysaas.job.queued"]
    );
    assert!(entries.iter().all(|e| e["subject"] == subject.as_str()));
    assert_eq!(entries[0]["data"]["from"], "running");
    // Another tenant's log holds nothing of acme's.
    let globex = common::json_of(
        clients[1]
            .get(app.url("/v1/audit"))
            .query(&[("subject", subject.as_str())]),
    )
    .await;
    assert_eq!(globex["entries"], json!([]));
    // By type, newest first, a page at a time.
    let dead = common::json_of(
        acme.get(app.url("/v1/audit"))
            .query(&[("type", "pysaas.job.dead"), ("limit", "3")]),
    )
    .await;
    let dead = dead["entries"].as_array().unwrap();
    assert_eq!(dead.len(), 3);
    assert!(dead.iter().all(|e| e["type"] == "pysaas.job.dead"));
    // Bad input is a problem, never a partial answer.
    for (query, status) in [
        ("limit=0", 422),
        ("limit=501", 422),
        ("from=yesterday", 400),
        ("colour=blue", 400),
    ] {
        let r = acme
            .get(app.url(&format!("/v1/audit?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{query}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{query}"
        );
    }
    // An empty window holds nothing; a window over seven days is cut to seven.
    let empty = common::json_of(
        acme.get(app.url("/v1/audit?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z")),
    )
    .await;
    assert_eq!(empty["entries"], json!([]));
    let long = common::json_of(
        acme.get(app.url("/v1/analytics/jobs?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z")),
    )
    .await;
    assert_eq!(long["from"], "2026-01-25T00:00:00Z", "{long}");
    assert_eq!(long["finished"], json!([]));
}

/// Waits until every job of the tenants has finished.
async fn wait_all_finished(db: &TestDb, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut open = 0;
        for tenant in TENANTS {
            for queue in db.store.queue_stats(Some(tenant)).await.unwrap() {
                open += queue
                    .counts
                    .iter()
                    .filter(|(s, _)| !s.is_finished())
                    .map(|(_, n)| n)
                    .sum::<i64>();
            }
        }
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{open} jobs unfinished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `pysaas analytics` on Kafka, restarted mid-stream: it resumes from its committed offsets, and
/// its rollups equal a recount from the jobs table (nothing lost, nothing counted twice); the
/// audit consumer has every audit event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analytics_consumer_resumes_after_a_restart_and_counts_each_job_once() {
    let (db, kafka) = (TestDb::postgres().await, TestKafka::start().await);
    let config = config_for(&db, &kafka, ContentMode::Binary);
    let roles = Roles {
        consumers: false,
        ..Roles::all()
    };
    let app = common::spawn(App::new(config.clone()).with_store(db.store.clone()), roles).await;
    let mut clients = Vec::new();
    for tenant in TENANTS {
        clients.push(common::tenant_client(app.store.as_ref(), tenant).await);
    }
    let consumers = || {
        let app = App::new(config.clone()).with_store(db.store.clone());
        common::spawn(
            app,
            Roles {
                consumers: true,
                ..Roles::default()
            },
        )
    };
    let first = consumers().await;
    submit_mixed(&app, &clients, 200).await;
    wait_all_finished(&db, Duration::from_secs(60)).await;
    // Stopped mid-stream: with some of the stream read and committed, and some not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.stop().await.unwrap();
    submit_mixed(&app, &clients, 200).await;
    wait_all_finished(&db, Duration::from_secs(60)).await;
    let second = consumers().await;
    submit_mixed(&app, &clients, 100).await;
    wait_all_finished(&db, Duration::from_secs(60)).await;
    wait_published(&db, Duration::from_secs(60)).await;
    wait_rollups_match(&app, &db, &clients, 500).await;

    // The audit log: every audit event of the outbox, once.
    let audit: HashSet<Uuid> = expected_events(db.store.as_ref())
        .await
        .into_iter()
        .filter(|(s, e)| *s == Stream::Audit && TENANTS.contains(&e.tenantid.as_str()))
        .map(|(_, e)| e.id)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut logged = HashSet::new();
        for tenant in TENANTS {
            let filter = pysaas_brokers::store::AuditFilter {
                tenant_id: tenant.into(),
                limit: 100_000,
                ..Default::default()
            };
            logged.extend(
                db.store
                    .audit_log(&filter)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| e.id),
            );
        }
        if logged == audit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the audit log holds {} of {} events",
            logged.intersection(&audit).count(),
            audit.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    second.stop().await.unwrap();
    app.stop().await.unwrap();
}

/// Kafka unreachable from the start: the pruner, however eager, keeps every fact the publisher
/// has not published (its cursor is registered at start, before its first publish), and they
/// all arrive once Kafka is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_pruned_before_it_is_published() {
    let (db, kafka) = (TestDb::postgres().await, TestKafka::start().await);
    kafka.set_down(true);
    let mut config = config_for(&db, &kafka, ContentMode::Binary);
    config.events.retention_secs = 1;
    config.scheduler.prune_interval_ms = 100;
    let (app, clients) = {
        let app = common::spawn(App::new(config).with_store(db.store.clone()), Roles::all()).await;
        let mut clients = Vec::new();
        for tenant in TENANTS {
            clients.push(common::tenant_client(app.store.as_ref(), tenant).await);
        }
        (app, clients)
    };
    submit_load(&app, &clients, 20).await;
    wait_all_succeeded(&db, Duration::from_secs(30)).await;
    // Several pruning passes past the retention window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let backlog = db.store.outbox_backlog("kafka").await.unwrap();
    // Two facts per job (submitted, succeeded: the attempt's start is read from the latter).
    assert!(backlog.pending >= 2 * 20 * 3, "{backlog:?}");
    kafka.set_down(false);
    wait_published(&db, Duration::from_secs(120)).await;
    app.stop().await.unwrap();
    let on_audit: usize = on_topic(&kafka, Stream::Audit)
        .await
        .values()
        .map(Vec::len)
        .sum();
    assert!(on_audit >= 3 * 20 * 3, "{on_audit} audit events published");
}
