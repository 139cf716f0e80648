//! One conformance suite for every job store: each test runs against SQLite and against
//! PostgreSQL (a fresh schema per test).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pysaas_brokers::testing::TestDb;
use pysaas_brokers::{Completion, JobFilter, JobStore, Transition};
use pysaas_jobs::{JobState, NewJob, Outcome};
use serde_json::json;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

fn job(queue: &str) -> NewJob {
    NewJob {
        max_attempts: 3,
        timeout_ms: 1000,
        ..NewJob::new("acme", "system.noop", queue, json!({"n": 1}))
    }
}

async fn insert(store: &Arc<dyn JobStore>, jobs: Vec<NewJob>) -> Vec<Uuid> {
    store
        .insert(jobs)
        .await
        .expect("insert")
        .into_iter()
        .map(|i| i.job.id)
        .collect()
}

fn done(id: Uuid, attempt: i32) -> Completion {
    Completion {
        id,
        tenant_id: "acme".into(),
        attempt,
        outcome: Outcome::Succeeded {
            result: Some(json!({"ok": true})),
        },
        detail: None,
    }
}

async fn insert_and_get_round_trip(db: TestDb) {
    let s = &db.store;
    let mut new = job("default");
    new.trace_context = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    new.priority = 7;
    let inserted = s.insert(vec![new.clone()]).await.unwrap();
    assert!(inserted[0].created);
    let got = s.get("acme", new.id).await.unwrap().expect("job");
    assert_eq!(got.state, JobState::Queued);
    assert_eq!(
        (
            got.kind.as_str(),
            got.queue.as_str(),
            got.priority,
            got.attempts,
            got.max_attempts
        ),
        ("system.noop", "default", 7, 0, 3)
    );
    assert_eq!(got.payload, json!({"n": 1}));
    assert_eq!(got.trace_context, new.trace_context);
    assert!(
        s.get("other-tenant", new.id).await.unwrap().is_none(),
        "tenants are isolated"
    );

    let mut later = job("default");
    later.run_at = Utc::now() + chrono::Duration::hours(1);
    let inserted = s.insert(vec![later]).await.unwrap();
    assert_eq!(inserted[0].job.state, JobState::Scheduled);
}

async fn idempotency_key_yields_the_same_job(db: TestDb) {
    let s = &db.store;
    let mut a = job("default");
    a.idempotency_key = Some("order-42".into());
    let mut b = job("default");
    b.idempotency_key = Some("order-42".into());
    let first = s.insert(vec![a.clone()]).await.unwrap().remove(0);
    let second = s.insert(vec![b.clone()]).await.unwrap().remove(0);
    assert!(first.created && !second.created);
    assert_eq!(second.job.id, a.id);
    // Within one batch, and per tenant.
    let mut c = job("default");
    c.idempotency_key = Some("k".into());
    let mut d = c.clone();
    d.id = Uuid::now_v7();
    let mut e = c.clone();
    e.id = Uuid::now_v7();
    e.tenant_id = "globex".into();
    let out = s.insert(vec![c.clone(), d, e.clone()]).await.unwrap();
    assert!(out[0].created && !out[1].created && out[2].created);
    assert_eq!(out[1].job.id, c.id);
    assert_eq!(out[2].job.id, e.id);
}

async fn batch_insert_is_all_or_nothing(db: TestDb) {
    let s = &db.store;
    let a = job("default");
    let mut dup = job("default");
    dup.id = a.id; // primary key clash
    assert!(s
        .insert(vec![job("default"), a.clone(), dup])
        .await
        .is_err());
    let page = s
        .list(&JobFilter {
            tenant_id: "acme".into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page.is_empty(), "a failed batch leaves nothing behind");
}

async fn claims_by_priority_then_age(db: TestDb) {
    let s = &db.store;
    let low = job("q");
    let mut high = job("q");
    high.priority = 9;
    let mid = job("q");
    let other = job("elsewhere");
    insert(s, vec![low.clone(), high.clone(), mid.clone(), other]).await;
    let claimed = s.claim("q", 2, "w1", LEASE).await.unwrap();
    let ids: Vec<Uuid> = claimed.iter().map(|j| j.id).collect();
    assert_eq!(ids, vec![high.id, low.id]);
    for j in &claimed {
        assert_eq!(
            (j.state, j.attempts, j.worker_id.as_deref()),
            (JobState::Running, 1, Some("w1"))
        );
        assert!(j.lease_expires_at.is_some() && j.started_at.is_some());
    }
    let rest = s.claim("q", 10, "w1", LEASE).await.unwrap();
    assert_eq!(rest.iter().map(|j| j.id).collect::<Vec<_>>(), vec![mid.id]);
    assert!(s.claim("q", 10, "w1", LEASE).await.unwrap().is_empty());
}

async fn concurrent_claims_never_overlap(db: TestDb) {
    let s = &db.store;
    let n = 300;
    let mut all = Vec::new();
    for _ in 0..3 {
        all.extend(insert(s, (0..n / 3).map(|_| job("race")).collect()).await);
    }
    let mut tasks = Vec::new();
    for w in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s.claim("race", 7, &format!("w{w}"), LEASE).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(seen.insert(id), "job {id} claimed twice");
        }
    }
    assert_eq!(seen, all.into_iter().collect::<HashSet<_>>());
}

async fn completion_is_fenced_by_attempt(db: TestDb) {
    let s = &db.store;
    let id = insert(s, vec![job("q")]).await[0];
    let claimed = s.claim("q", 1, "w1", LEASE).await.unwrap();
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(
        s.complete(&[done(id, 2)]).await.unwrap(),
        0,
        "a stale attempt cannot complete the job"
    );
    assert_eq!(s.complete(&[done(id, 1)]).await.unwrap(), 1);
    let job = s.get("acme", id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.result, Some(json!({"ok": true})));
    assert!(job.finished_at.is_some() && job.lease_expires_at.is_none());
    assert_eq!(
        s.complete(&[done(id, 1)]).await.unwrap(),
        0,
        "a duplicate outcome changes nothing"
    );
    assert!(
        s.claim_ids(&[id], "w2", LEASE).await.unwrap().is_empty(),
        "a finished job is never claimed again"
    );
}

async fn claim_ids_makes_duplicate_delivery_harmless(db: TestDb) {
    let s = &db.store;
    let ids = insert(s, vec![job("q"), job("q")]).await;
    let first = s.claim_ids(&ids, "w1", LEASE).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(s.claim_ids(&ids, "w2", LEASE).await.unwrap().is_empty());
}

async fn failed_attempts_retry_after_backoff(db: TestDb) {
    let s = &db.store;
    let id = insert(s, vec![job("q")]).await[0];
    s.claim("q", 1, "w", LEASE).await.unwrap();
    let retry = Outcome::Retrying {
        error: "boom".into(),
        run_at: Utc::now() + chrono::Duration::milliseconds(300),
    };
    assert_eq!(
        s.complete(&[Completion {
            id,
            tenant_id: "acme".into(),
            attempt: 1,
            outcome: retry,
            detail: Some(json!({"status": 503})),
        }])
        .await
        .unwrap(),
        1
    );
    let j = s.get("acme", id).await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.last_error.as_deref()),
        (JobState::Retrying, Some("boom"))
    );
    assert!(s.promote_due().await.unwrap().is_empty(), "not due yet");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.promote_due().await.unwrap().len(), 1);
    let again = s.claim("q", 1, "w", LEASE).await.unwrap();
    assert_eq!((again[0].id, again[0].attempts), (id, 2));
    let dead = Outcome::Dead {
        error: "gave up".into(),
    };
    s.complete(&[Completion {
        id,
        tenant_id: "acme".into(),
        attempt: 2,
        outcome: dead,
        detail: None,
    }])
    .await
    .unwrap();
    let j = s.get("acme", id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Dead);
    assert!(j.finished_at.is_some());
    // Every failed attempt is kept, each with the handler's detail (or none).
    assert_eq!(
        j.errors
            .iter()
            .map(|e| (e.attempt, e.error.as_str(), e.detail.clone()))
            .collect::<Vec<_>>(),
        [
            (1, "boom", Some(json!({"status": 503}))),
            (2, "gave up", None)
        ]
    );
}

async fn heartbeat_extends_only_held_leases(db: TestDb) {
    let s = &db.store;
    let ids = insert(s, vec![job("q"), job("q")]).await;
    s.claim("q", 2, "w1", Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        s.cancel("acme", ids[1]).await.unwrap(),
        Transition::Done(Box::new(s.get("acme", ids[1]).await.unwrap().unwrap()))
    );
    let held = s.heartbeat("w1", &ids, LEASE).await.unwrap();
    assert_eq!(held, vec![ids[0]], "a cancelled job is no longer held");
    assert!(
        s.heartbeat("w2", &ids, LEASE).await.unwrap().is_empty(),
        "another worker holds nothing"
    );
}

async fn expired_leases_are_rescued(db: TestDb) {
    let s = &db.store;
    let mut last_try = job("q");
    last_try.max_attempts = 1;
    let ids = insert(s, vec![job("q"), last_try.clone()]).await;
    s.claim("q", 2, "dead-worker", Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(s.rescue_expired().await.unwrap(), 2);
    let requeued = s.get("acme", ids[0]).await.unwrap().unwrap();
    assert_eq!((requeued.state, requeued.attempts), (JobState::Queued, 1));
    assert!(requeued
        .last_error
        .unwrap_or_default()
        .contains("lease expired"));
    assert_eq!(
        s.get("acme", last_try.id).await.unwrap().unwrap().state,
        JobState::Dead
    );
    // The dead worker's late outcome is ignored once the job is claimed again.
    let again = s.claim("q", 1, "w2", LEASE).await.unwrap();
    assert_eq!(again[0].attempts, 2);
    assert_eq!(s.complete(&[done(ids[0], 1)]).await.unwrap(), 0);
    assert_eq!(s.complete(&[done(ids[0], 2)]).await.unwrap(), 1);
}

async fn release_gives_jobs_back_without_counting_the_attempt(db: TestDb) {
    let s = &db.store;
    let id = insert(s, vec![job("q")]).await[0];
    s.claim("q", 1, "w1", LEASE).await.unwrap();
    assert_eq!(s.release("other", &[id]).await.unwrap(), 0);
    assert_eq!(s.release("w1", &[id]).await.unwrap(), 1);
    let j = s.get("acme", id).await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.attempts, j.worker_id),
        (JobState::Queued, 0, None)
    );
}

/// Jobs re-entering `queued` from a dead worker's lease or a graceful release are counted in
/// `pysaas_jobs_enqueued_total` under their own source, so enqueued and started agree.
async fn rescued_and_released_jobs_count_as_enqueued(db: TestDb) {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshots = recorder.snapshotter();
    // The store counts on the thread that awaits it: this test's.
    let _local = metrics::set_default_local_recorder(&recorder);
    let s = &db.store;
    let ids = insert(s, vec![job("q"), job("q")]).await;
    s.claim("q", 1, "dead-worker", Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(s.rescue_expired().await.unwrap(), 1);
    let held = s.claim("q", 2, "w1", LEASE).await.unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(s.release("w1", &ids).await.unwrap(), 2);
    let mut by_source = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshots.snapshot().into_vec() {
        let key = key.key();
        if key.name() != "pysaas_jobs_enqueued_total" {
            continue;
        }
        let source = key
            .labels()
            .find(|l| l.key() == "source")
            .map(|l| l.value().to_owned());
        if let (Some(source), metrics_util::debugging::DebugValue::Counter(n)) = (source, value) {
            *by_source.entry(source).or_insert(0) += n;
        }
    }
    assert_eq!(by_source.get("rescued"), Some(&1), "{by_source:?}");
    assert_eq!(by_source.get("released"), Some(&2), "{by_source:?}");
}

/// Deleting finished jobs takes their keys with them and leaves unfinished and other tenants'
/// jobs alone.
async fn finished_jobs_are_deleted_with_their_keys(db: TestDb) {
    let s = &db.store;
    let mut keyed = job("q");
    keyed.idempotency_key = Some("once".into());
    let ids = insert(s, vec![keyed.clone(), job("q"), job("q")]).await;
    let claimed = s.claim("q", 2, "w1", LEASE).await.unwrap();
    let done_ids: Vec<Uuid> = claimed.iter().map(|j| j.id).collect();
    let outcomes: Vec<Completion> = done_ids.iter().map(|id| done(*id, 1)).collect();
    assert_eq!(s.complete(&outcomes).await.unwrap(), 2);
    assert_eq!(s.delete_finished("other-tenant", &ids).await.unwrap(), 0);
    assert_eq!(s.delete_finished("acme", &ids).await.unwrap(), 2);
    for id in &done_ids {
        assert!(s.get("acme", *id).await.unwrap().is_none());
    }
    let unfinished: Vec<Uuid> = ids
        .iter()
        .filter(|i| !done_ids.contains(i))
        .copied()
        .collect();
    assert_eq!(unfinished.len(), 1);
    assert!(s.get("acme", unfinished[0]).await.unwrap().is_some());
    if done_ids.contains(&keyed.id) {
        // The key is free again: the same key makes a new job.
        let again = NewJob {
            id: Uuid::now_v7(),
            ..keyed.clone()
        };
        let inserted = s.insert(vec![again.clone()]).await.unwrap();
        assert!(inserted[0].created && inserted[0].job.id == again.id);
    }
}

/// Workers report themselves; the latest report wins; silent ones are forgotten.
async fn workers_are_registered_by_their_reports(db: TestDb) {
    let s = &db.store;
    let worker = |id: &str, busy: i32| pysaas_brokers::WorkerInfo {
        id: id.into(),
        host: "host-a".into(),
        pid: 42,
        version: "0.1.0".into(),
        queues: vec!["default".into(), "mail".into()],
        concurrency: 8,
        busy,
        started_at: Utc::now(),
        last_seen: Utc::now(),
    };
    s.report_worker(&worker("w1", 0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.report_worker(&worker("w2", 1)).await.unwrap();
    s.report_worker(&worker("w2", 3)).await.unwrap();
    let seen = s.workers().await.unwrap();
    assert_eq!(
        seen.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["w2", "w1"]
    );
    assert_eq!(
        (seen[0].busy, seen[0].queues.clone()),
        (3, vec!["default".to_owned(), "mail".to_owned()])
    );
    assert!(seen[0].last_seen >= seen[1].last_seen);
    s.remove_worker("w1").await.unwrap();
    assert_eq!(s.workers().await.unwrap().len(), 1);
    let later = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(s.forget_workers(later).await.unwrap(), 1);
    assert!(s.workers().await.unwrap().is_empty());
}

/// Changes are announced per tenant: an insert, a claim and a completion each reach a
/// subscriber (through NOTIFY on PostgreSQL), naming the job's tenant.
async fn changes_are_announced_by_tenant(db: TestDb) {
    let s = &db.store;
    let mut changes = s.changes();
    // Let the listener connect (PostgreSQL) before the first change.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let next = |changes: &mut tokio::sync::broadcast::Receiver<String>| {
        let mut changes = changes.resubscribe();
        async move {
            tokio::time::timeout(Duration::from_secs(3), changes.recv())
                .await
                .expect("a change within 3 s")
                .unwrap()
        }
    };
    let seen = next(&mut changes);
    let id = insert(s, vec![job("changes")]).await[0];
    assert_eq!(seen.await, "acme");
    let seen = next(&mut changes);
    let claimed = s
        .claim("changes", 1, "w", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(seen.await, "acme");
    let seen = next(&mut changes);
    assert_eq!(s.complete(&[done(id, 1)]).await.unwrap(), 1);
    assert_eq!(seen.await, "acme");
}

/// A pause is kept once (the first wins), listed by name, and lifted by resume.
async fn queues_are_paused_and_resumed(db: TestDb) {
    let s = &db.store;
    assert!(s.paused_queues().await.unwrap().is_empty());
    assert!(s.pause_queue("mail", "user a").await.unwrap());
    assert!(!s.pause_queue("mail", "user b").await.unwrap());
    assert!(s.pause_queue("billing", "key k").await.unwrap());
    let paused = s.paused_queues().await.unwrap();
    assert_eq!(
        paused
            .iter()
            .map(|p| (p.queue.as_str(), p.paused_by.as_str()))
            .collect::<Vec<_>>(),
        [("billing", "key k"), ("mail", "user a")]
    );
    assert!((Utc::now() - paused[1].paused_at).num_seconds().abs() < 60);
    assert!(s.resume_queue("mail").await.unwrap());
    assert!(!s.resume_queue("mail").await.unwrap());
    assert_eq!(s.paused_queues().await.unwrap().len(), 1);
}

/// Listing by payload content: every wanted top-level member present with the same type and
/// value (JSON containment), on hot and finished jobs alike.
async fn list_filters_by_payload_content(db: TestDb) {
    let s = &db.store;
    let with = |payload: serde_json::Value| NewJob {
        payload,
        ..job("p")
    };
    let ids = insert(
        s,
        vec![
            with(json!({"user_id": 42, "plan": "pro"})),
            with(json!({"user_id": 7})),
            with(json!({"user_id": "42"})),
            with(json!({"flag": true, "n": null})),
            with(json!({})),
        ],
    )
    .await;
    // One of them finished: the history is searched too.
    let claimed = s.claim("p", 1, "w", LEASE).await.unwrap();
    s.complete(&[done(claimed[0].id, 1)]).await.unwrap();
    let find = |wanted: serde_json::Value| {
        let filter = JobFilter {
            tenant_id: "acme".into(),
            limit: 10,
            payload: wanted.as_object().cloned(),
            ..JobFilter::default()
        };
        async move {
            let mut found: Vec<Uuid> = s
                .list(&filter)
                .await
                .unwrap()
                .iter()
                .map(|j| j.id)
                .collect();
            found.sort();
            found
        }
    };
    assert_eq!(find(json!({"user_id": 42})).await, vec![ids[0]]);
    assert_eq!(find(json!({"user_id": "42"})).await, vec![ids[2]]);
    assert_eq!(
        find(json!({"user_id": 42, "plan": "pro"})).await,
        vec![ids[0]]
    );
    assert_eq!(find(json!({"plan": "free"})).await, Vec::<Uuid>::new());
    assert_eq!(find(json!({"flag": true})).await, vec![ids[3]]);
    assert_eq!(find(json!({"flag": false})).await, Vec::<Uuid>::new());
    assert_eq!(find(json!({"n": null})).await, vec![ids[3]]);
    // An empty search matches every job, an empty payload too.
    assert_eq!(find(json!({})).await.len(), 5);
}

async fn cancel_and_retry_follow_the_state_machine(db: TestDb) {
    let s = &db.store;
    let id = insert(s, vec![job("q")]).await[0];
    assert_eq!(
        s.retry("acme", id).await.unwrap(),
        Transition::Conflict(JobState::Queued)
    );
    let Transition::Done(j) = s.cancel("acme", id).await.unwrap() else {
        panic!("cancel")
    };
    assert_eq!(j.state, JobState::Cancelled);
    assert_eq!(
        s.cancel("acme", id).await.unwrap(),
        Transition::Conflict(JobState::Cancelled)
    );
    assert_eq!(s.cancel("globex", id).await.unwrap(), Transition::NotFound);
    assert_eq!(s.retry("globex", id).await.unwrap(), Transition::NotFound);
    assert_eq!(
        s.cancel("acme", Uuid::now_v7()).await.unwrap(),
        Transition::NotFound
    );
    let Transition::Done(j) = s.retry("acme", id).await.unwrap() else {
        panic!("retry")
    };
    assert_eq!((j.state, j.finished_at), (JobState::Queued, None));
    // A dead job that used every attempt gets one more.
    let claimed = s.claim("q", 1, "w", LEASE).await.unwrap();
    s.complete(&[Completion {
        id,
        tenant_id: "acme".into(),
        attempt: claimed[0].attempts,
        outcome: Outcome::Dead { error: "x".into() },
        detail: None,
    }])
    .await
    .unwrap();
    let Transition::Done(j) = s.retry("acme", id).await.unwrap() else {
        panic!("retry dead")
    };
    assert!(j.max_attempts > j.attempts);
}

async fn list_filters_and_pages_newest_first(db: TestDb) {
    let s = &db.store;
    let mut ids = Vec::new();
    for i in 0..25 {
        let mut j = job(if i % 2 == 0 { "even" } else { "odd" });
        if i == 3 {
            j.kind = "system.sleep".into();
        }
        ids.extend(insert(s, vec![j]).await);
    }
    let mut filter = JobFilter {
        tenant_id: "acme".into(),
        limit: 10,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = s.list(&filter).await.unwrap();
        seen.extend(page.iter().map(|j| j.id));
        match page.last() {
            Some(last) if page.len() == 10 => filter.before = Some(last.id),
            _ => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every job once, newest first");
    let odd = s
        .list(&JobFilter {
            tenant_id: "acme".into(),
            queue: Some("odd".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(odd.len(), 12);
    let sleep = s
        .list(&JobFilter {
            tenant_id: "acme".into(),
            kind: Some("system.sleep".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sleep.len(), 1);
    s.claim("even", 1, "w", LEASE).await.unwrap();
    let running = s
        .list(&JobFilter {
            tenant_id: "acme".into(),
            state: Some(JobState::Running),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    assert!(s
        .list(&JobFilter {
            tenant_id: "globex".into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty());
}

async fn queue_stats_count_by_state(db: TestDb) {
    let s = &db.store;
    insert(s, vec![job("a"), job("a"), job("a"), job("b")]).await;
    s.claim("a", 1, "w", LEASE).await.unwrap();
    let stats = s.queue_stats(Some("acme")).await.unwrap();
    let a = stats.iter().find(|q| q.queue == "a").expect("queue a");
    assert_eq!(a.counts.get(&JobState::Queued), Some(&2));
    assert_eq!(a.counts.get(&JobState::Running), Some(&1));
    assert!(a.oldest_queued_at.is_some());
    assert_eq!(
        stats
            .iter()
            .find(|q| q.queue == "b")
            .and_then(|q| q.counts.get(&JobState::Queued)),
        Some(&1)
    );
    assert!(s.queue_stats(Some("globex")).await.unwrap().is_empty());

    // Live counts: unfinished states only, the same numbers.
    let running = s.claim("b", 1, "w", LEASE).await.unwrap();
    s.complete(&[done(running[0].id, 1)]).await.unwrap();
    let mut later = job("a");
    later.run_at = Utc::now() + chrono::Duration::hours(1);
    insert(s, vec![later]).await;
    let live = s.live_queue_stats().await.unwrap();
    let a = live.iter().find(|q| q.queue == "a").expect("queue a");
    assert_eq!(a.counts.get(&JobState::Queued), Some(&2));
    assert_eq!(a.counts.get(&JobState::Running), Some(&1));
    assert_eq!(a.counts.get(&JobState::Scheduled), Some(&1));
    assert!(a.oldest_queued_at.is_some());
    assert!(
        live.iter()
            .all(|q| !q.counts.contains_key(&JobState::Succeeded)),
        "finished states are not read: {live:?}"
    );
    let b = live.iter().find(|q| q.queue == "b");
    assert!(
        b.is_none_or(|b| b.counts.values().all(|n| *n == 0)),
        "{b:?}"
    );
}

/// The finished counts the queue list reads, by (queue, state), for one tenant or all.
async fn finished_counts(
    s: &Arc<dyn JobStore>,
    tenant_id: Option<&str>,
) -> BTreeMap<(String, JobState), i64> {
    let mut counts = BTreeMap::new();
    for q in s.queue_stats(tenant_id).await.unwrap() {
        for (state, n) in q.counts {
            if state.is_finished() {
                counts.insert((q.queue.clone(), state), n);
            }
        }
    }
    counts
}

/// The same, counted from the tenant's jobs themselves.
async fn counted(s: &Arc<dyn JobStore>, tenant_id: &str) -> BTreeMap<(String, JobState), i64> {
    let jobs = s
        .list(&JobFilter {
            tenant_id: tenant_id.into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut counts = BTreeMap::new();
    for j in jobs.into_iter().filter(|j| j.state.is_finished()) {
        *counts.entry((j.queue, j.state)).or_insert(0) += 1;
    }
    counts
}

async fn assert_counts_match(s: &Arc<dyn JobStore>, step: &str) {
    for tenant in ["acme", "globex"] {
        assert_eq!(
            finished_counts(s, Some(tenant)).await,
            counted(s, tenant).await,
            "{tenant} after {step}"
        );
    }
    let mut all = counted(s, "acme").await;
    for (k, n) in counted(s, "globex").await {
        *all.entry(k).or_insert(0) += n;
    }
    assert_eq!(
        finished_counts(s, None).await,
        all,
        "all tenants after {step}"
    );
    // Folding the counters changes no count.
    s.vacuum_hot(i64::MAX).await.unwrap();
    assert_eq!(finished_counts(s, None).await, all, "folded after {step}");
}

fn finish(j: &pysaas_jobs::Job, outcome: Outcome) -> Completion {
    Completion {
        id: j.id,
        tenant_id: j.tenant_id.clone(),
        attempt: j.attempts,
        outcome,
        detail: None,
    }
}

/// Finished jobs are counted, not scanned, for the queue list: every way a job enters or leaves
/// the history keeps the counts equal to the jobs there, per tenant.
async fn finished_counts_follow_every_move(db: TestDb) {
    let s = &db.store;
    let ids = insert(s, (0..6).map(|_| job("a")).chain([job("b")]).collect()).await;
    let globex = NewJob::new("globex", "system.noop", "a", json!({}));
    insert(s, vec![globex]).await;
    assert_counts_match(s, "inserts").await;

    let claimed = s.claim("a", 4, "w", LEASE).await.unwrap();
    let error = || "x".to_string();
    let run_at = Utc::now();
    s.complete(&[
        finish(&claimed[0], Outcome::Succeeded { result: None }),
        finish(&claimed[1], Outcome::Succeeded { result: None }),
        finish(&claimed[2], Outcome::Dead { error: error() }),
        finish(
            &claimed[3],
            Outcome::Retrying {
                error: error(),
                run_at,
            },
        ),
    ])
    .await
    .unwrap();
    assert_counts_match(s, "completions").await;
    assert_eq!(
        finished_counts(s, Some("acme")).await,
        BTreeMap::from([
            (("a".into(), JobState::Succeeded), 2),
            (("a".into(), JobState::Dead), 1)
        ])
    );

    let queued_b = ids[6];
    assert!(matches!(
        s.cancel("acme", queued_b).await.unwrap(),
        Transition::Done(_)
    ));
    assert_counts_match(s, "a cancel").await;
    assert!(matches!(
        s.retry("acme", claimed[2].id).await.unwrap(),
        Transition::Done(_)
    ));
    assert_counts_match(s, "a retry of a dead job").await;
    assert_eq!(
        s.delete_finished("acme", &[claimed[0].id]).await.unwrap(),
        1
    );
    assert_counts_match(s, "a delete").await;
    let future = Utc::now() + chrono::Duration::seconds(5);
    assert_eq!(
        s.prune_finished(JobState::Succeeded, future, 100)
            .await
            .unwrap(),
        1
    );
    assert_counts_match(s, "pruning").await;

    let other = s.claim("a", 10, "w", LEASE).await.unwrap();
    let outcomes: Vec<Completion> = other
        .iter()
        .map(|j| finish(j, Outcome::Cancelled { error: error() }))
        .collect();
    s.complete(&outcomes).await.unwrap();
    assert_counts_match(s, "both tenants' completions").await;
    assert_eq!(
        finished_counts(s, Some("globex")).await,
        BTreeMap::from([(("a".into(), JobState::Cancelled), 1)])
    );
}

/// Completers in parallel with folds: every finished job is counted once.
async fn finished_counts_hold_under_concurrent_completers(db: TestDb) {
    let s = &db.store;
    let per_task = 40;
    insert(s, (0..4 * per_task).map(|_| job("c")).collect()).await;
    let folding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let folder = tokio::spawn({
        let (s, folding) = (s.clone(), folding.clone());
        async move {
            while folding.load(std::sync::atomic::Ordering::Relaxed) {
                s.vacuum_hot(i64::MAX).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let completers: Vec<_> = (0..4)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut finished = 0;
                while finished < per_task {
                    let claimed = s.claim("c", 3, &format!("w{w}"), LEASE).await.unwrap();
                    let outcomes: Vec<Completion> = claimed
                        .iter()
                        .map(|j| finish(j, Outcome::Succeeded { result: None }))
                        .collect();
                    finished += s.complete(&outcomes).await.unwrap();
                    if claimed.is_empty() {
                        break;
                    }
                }
                finished
            })
        })
        .collect();
    let mut total = 0;
    for c in completers {
        total += c.await.unwrap();
    }
    folding.store(false, std::sync::atomic::Ordering::Relaxed);
    folder.await.unwrap();
    assert_eq!(total, 4 * per_task);
    let want = BTreeMap::from([(
        ("c".to_string(), JobState::Succeeded),
        i64::try_from(total).unwrap(),
    )]);
    assert_eq!(finished_counts(s, Some("acme")).await, want);
    s.vacuum_hot(i64::MAX).await.unwrap();
    assert_eq!(finished_counts(s, Some("acme")).await, want);
}

/// Rate-limit reservations: consecutive starts one interval apart after the burst, per key;
/// a claimed job put back to its start holds a grant for the attempt it will run as, taken
/// once.
async fn rate_limited_starts_are_reserved_and_granted(db: TestDb) {
    let s = &db.store;
    let rate = pysaas_jobs::Rate::per_second(10).with_burst(2);
    let (starts, now) = s.reserve_starts("kind:k", &rate, 3).await.unwrap();
    let ms = |t: chrono::DateTime<Utc>| (t - now).num_milliseconds();
    assert_eq!(
        starts.iter().map(|t| ms(*t)).collect::<Vec<_>>(),
        [0, 0, 100]
    );
    let (more, now2) = s.reserve_starts("kind:k", &rate, 1).await.unwrap();
    let ahead = (more[0] - now2).num_milliseconds();
    assert!(
        (50..=200).contains(&ahead),
        "the fourth start {ahead} ms ahead"
    );
    let (other, now3) = s
        .reserve_starts("kind:k|tenant:acme", &rate, 1)
        .await
        .unwrap();
    assert_eq!(other, [now3], "another key has its own rate");

    insert(s, vec![job("q"), job("q")]).await;
    let claimed = s.claim("q", 2, "w", LEASE).await.unwrap();
    let start_at = Utc::now() + chrono::Duration::seconds(30);
    let run_at = start_at - chrono::Duration::seconds(1);
    let deferral = |j: &pysaas_jobs::Job| pysaas_brokers::Deferral {
        id: j.id,
        attempt: j.attempts,
        run_at,
        start_at,
    };
    assert_eq!(
        s.defer_to_starts("other-worker", &[deferral(&claimed[0])])
            .await
            .unwrap(),
        0,
        "only the claiming worker defers"
    );
    assert_eq!(
        s.defer_to_starts("w", &[deferral(&claimed[0])])
            .await
            .unwrap(),
        1
    );
    let waiting = s.get("acme", claimed[0].id).await.unwrap().unwrap();
    assert_eq!(waiting.state, JobState::Scheduled);
    assert_eq!(waiting.attempts, 0, "the attempt is not counted");
    assert_eq!(waiting.run_at.timestamp_millis(), run_at.timestamp_millis());
    assert!(waiting.worker_id.is_none());
    let pairs = [(claimed[0].id, 1), (claimed[1].id, 1), (claimed[0].id, 2)];
    let granted = s.take_grants(&pairs).await.unwrap();
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0].0, claimed[0].id);
    assert_eq!(granted[0].1.timestamp_millis(), start_at.timestamp_millis());
    assert!(
        s.take_grants(&pairs).await.unwrap().is_empty(),
        "taken once"
    );
}

async fn inserts_wake_consumers(db: TestDb) {
    let s = &db.store;
    let mut wake = s.wakeups();
    wake.borrow_and_update();
    // The PostgreSQL listener connects in the background: give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    wake.borrow_and_update();
    insert(s, vec![job("q")]).await;
    tokio::time::timeout(Duration::from_secs(2), wake.changed())
        .await
        .expect("woken")
        .expect("open");
}

async fn relay_finds_jobs_no_broker_was_told_about(db: TestDb) {
    let s = &db.store;
    assert!(s.queued_queues().await.unwrap().is_empty());
    let ids = insert(s, vec![job("q"), job("q"), job("q")]).await;
    insert(s, vec![job("other")]).await;
    let mut later = job("later");
    later.run_at = Utc::now() + chrono::Duration::seconds(60);
    insert(s, vec![later]).await;
    assert_eq!(
        s.queued_queues().await.unwrap(),
        vec!["other".to_owned(), "q".to_owned()],
        "queues with queued jobs, in order; a scheduled job's queue is not one yet"
    );
    let grace = Duration::from_millis(100);
    assert!(
        s.stale_queued("q", grace, 10).await.unwrap().is_empty(),
        "fresh jobs are the API's to announce"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let stale: Vec<Uuid> = s
        .stale_queued("q", grace, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(stale, ids, "in claim order");
    assert_eq!(s.stale_queued("q", grace, 2).await.unwrap().len(), 2);
    // Claimed jobs are not announced; rescued ones are, again.
    s.claim("q", 3, "w", Duration::from_millis(10))
        .await
        .unwrap();
    assert!(s
        .stale_queued("q", Duration::ZERO, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.queued_queues().await.unwrap(), vec!["other".to_owned()]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.rescue_expired().await.unwrap();
    assert_eq!(
        s.stale_queued("q", Duration::ZERO, 10).await.unwrap().len(),
        3
    );
}

async fn consumed_queues_are_recorded(db: TestDb) {
    let s = &db.store;
    assert!(s.consumed_queues().await.unwrap().is_empty());
    s.touch_consumed(&["billing".into(), "mail".into()])
        .await
        .unwrap();
    let first = s.consumed_queues().await.unwrap();
    assert_eq!(first.keys().collect::<Vec<_>>(), ["billing", "mail"]);
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.touch_consumed(&["billing".into()]).await.unwrap();
    let second = s.consumed_queues().await.unwrap();
    assert!(second["billing"] > first["billing"], "last_seen moves on");
    assert_eq!(second["mail"], first["mail"]);
}

pysaas_brokers::each_store!(
    consumed_queues_are_recorded,
    insert_and_get_round_trip,
    idempotency_key_yields_the_same_job,
    batch_insert_is_all_or_nothing,
    claims_by_priority_then_age,
    concurrent_claims_never_overlap,
    completion_is_fenced_by_attempt,
    claim_ids_makes_duplicate_delivery_harmless,
    failed_attempts_retry_after_backoff,
    heartbeat_extends_only_held_leases,
    expired_leases_are_rescued,
    release_gives_jobs_back_without_counting_the_attempt,
    rescued_and_released_jobs_count_as_enqueued,
    finished_jobs_are_deleted_with_their_keys,
    workers_are_registered_by_their_reports,
    queues_are_paused_and_resumed,
    changes_are_announced_by_tenant,
    list_filters_by_payload_content,
    cancel_and_retry_follow_the_state_machine,
    list_filters_and_pages_newest_first,
    queue_stats_count_by_state,
    finished_counts_follow_every_move,
    finished_counts_hold_under_concurrent_completers,
    rate_limited_starts_are_reserved_and_granted,
    inserts_wake_consumers,
    relay_finds_jobs_no_broker_was_told_about,
);
