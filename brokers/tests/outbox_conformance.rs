//! The event outbox on both stores: every job transition recorded with its change, read in
//! commit order by consumers with cursors of their own, pruned only once read by all.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pysaas_brokers::testing::{Backend, TestDb};
use pysaas_brokers::{Completion, JobStore, OutboxEntry, OutboxPosition};
use pysaas_jobs::events::{events_of, Stream, JOB_FINISHED, JOB_SUBMITTED};
use pysaas_jobs::{NewJob, Outcome};
use serde_json::json;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

macro_rules! on_both {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                $body(enabled(TestDb::sqlite().await).await).await;
            }

            #[tokio::test]
            async fn postgres() {
                $body(enabled(TestDb::postgres().await).await).await;
            }
        }
    };
}

/// `db` with the outbox recording (it starts off).
async fn enabled(db: TestDb) -> TestDb {
    assert_eq!(db.store.outbox_backlog("any").await.unwrap().pending, 0);
    db.store.set_events_enabled(true).await.unwrap();
    db
}

fn job(queue: &str) -> NewJob {
    NewJob::new(
        "acme",
        "system.noop",
        queue,
        json!({"secret": "not in any event"}),
    )
}

async fn insert(s: &Arc<dyn JobStore>, queue: &str) -> Uuid {
    s.insert(vec![job(queue)]).await.unwrap()[0].job.id
}

async fn finish(s: &Arc<dyn JobStore>, id: Uuid, attempt: i32, outcome: Outcome) {
    let c = Completion {
        id,
        tenant_id: "acme".into(),
        attempt,
        outcome,
        detail: None,
    };
    assert_eq!(s.complete(&[c]).await.unwrap(), 1);
}

/// Up to `n` entries after `consumer`'s cursor, waiting while fewer are readable than `expect`:
/// on PostgreSQL nothing is readable past a transaction still running anywhere on the server
/// (other tests' included), so a read may come back short for a moment.
async fn read(s: &Arc<dyn JobStore>, consumer: &str, n: usize, expect: usize) -> Vec<OutboxEntry> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = s.outbox_read(consumer, n).await.unwrap();
        if got.len() >= expect || std::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything recorded, read to the end by `consumer` in small batches.
async fn read_all(s: &Arc<dyn JobStore>, consumer: &str) -> Vec<OutboxEntry> {
    let mut out = Vec::new();
    while s.outbox_backlog(consumer).await.unwrap().pending > 0 {
        let batch = read(s, consumer, 3, 1).await;
        let last = batch.last().expect("the backlog becomes readable");
        s.outbox_commit(consumer, last.position).await.unwrap();
        out.extend(batch);
    }
    out
}

async fn every_transition_is_recorded_in_order(db: TestDb) {
    let s = db.store.clone();
    // a: queued → running → succeeded. b: queued → running → retrying → queued → running → dead.
    // c: queued → cancelled → (retried) queued. d: queued → running → cancelled (by a user);
    // e: the same, by its handler.
    let a = insert(&s, "q").await;
    let claimed = s.claim("q", 1, "w1", LEASE).await.unwrap();
    assert_eq!(claimed[0].id, a);
    finish(&s, a, 1, Outcome::Succeeded { result: None }).await;
    let b = insert(&s, "q").await;
    s.claim("q", 1, "w1", LEASE).await.unwrap();
    let again = Utc::now() - chrono::Duration::seconds(1);
    finish(
        &s,
        b,
        1,
        Outcome::Retrying {
            error: "x".into(),
            run_at: again,
        },
    )
    .await;
    s.promote_due().await.unwrap();
    s.claim("q", 1, "w2", LEASE).await.unwrap();
    finish(&s, b, 2, Outcome::Dead { error: "x".into() }).await;
    let c = insert(&s, "q").await;
    s.cancel("acme", c).await.unwrap();
    s.retry("acme", c).await.unwrap();
    // c is queued again: d is the one claimed.
    s.cancel("acme", c).await.unwrap();
    let d = insert(&s, "q").await;
    let d_claim = s.claim("q", 1, "w3", LEASE).await.unwrap();
    assert_eq!(d_claim[0].id, d);
    s.cancel("acme", d).await.unwrap();
    let e = insert(&s, "q").await;
    assert_eq!(s.claim("q", 1, "w4", LEASE).await.unwrap()[0].id, e);
    finish(&s, e, 1, Outcome::Cancelled { error: "x".into() }).await;

    let entries = read_all(&s, "test").await;
    let positions: Vec<OutboxPosition> = entries.iter().map(|e| e.position).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(positions, sorted, "strictly increasing positions");
    // A claim records nothing of its own: the facts are the attempt's ends (and starts recorded
    // with them where the end's own fact does not hold the attempt: retried, cancelled).
    let facts = |id: Uuid| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e.fact.subject == format!("jobs/{id}"))
            .map(|e| {
                e.fact
                    .event_type
                    .trim_start_matches("pysaas.job.")
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(facts(a), ["queued", "succeeded"]);
    assert_eq!(
        facts(b),
        ["queued", "running", "retrying", "queued", "dead"]
    );
    assert_eq!(facts(c), ["queued", "cancelled", "queued", "cancelled"]);
    assert_eq!(facts(d), ["queued", "running", "cancelled"]);
    assert_eq!(facts(e), ["queued", "running", "cancelled"]);
    assert_eq!(entries.len(), 17);
    // Each fact reads as its typed events; no payload leaks into any of them; the audit stream
    // holds every transition, each attempt's start included, in order.
    let mut submitted = 0;
    let mut finished = Vec::new();
    let mut audit: Vec<pysaas_jobs::events::CloudEvent> = Vec::new();
    for e in &entries {
        assert_eq!(e.fact.tenant_id, "acme");
        let events = events_of(&e.fact).unwrap();
        assert!(!serde_json::to_string(&events)
            .unwrap()
            .contains("not in any event"));
        let mut streams: Vec<Stream> = events.iter().map(|(s, _)| *s).collect();
        streams.dedup();
        assert_eq!(streams[0], Stream::Audit, "audit events first");
        for (stream, ev) in events {
            if stream == Stream::Audit {
                audit.push(ev);
                continue;
            }
            match ev.event_type.as_str() {
                JOB_SUBMITTED => submitted += 1,
                JOB_FINISHED => {
                    finished.push(ev.data.to_value()["outcome"].as_str().unwrap().to_owned())
                }
                other => panic!("unexpected {other}"),
            }
        }
    }
    assert_eq!(submitted, 6, "five submissions and one retry by hand");
    assert_eq!(
        finished,
        [
            "succeeded",
            "dead",
            "cancelled",
            "cancelled",
            "cancelled",
            "cancelled"
        ]
    );
    let transitions = |id: Uuid| -> Vec<String> {
        audit
            .iter()
            .filter(|e| e.subject == format!("jobs/{id}"))
            .map(|e| e.event_type.trim_start_matches("pysaas.job.").to_owned())
            .collect()
    };
    assert_eq!(transitions(a), ["queued", "running", "succeeded"]);
    assert_eq!(
        transitions(b),
        ["queued", "running", "retrying", "queued", "running", "dead"]
    );
    assert_eq!(
        transitions(c),
        ["queued", "cancelled", "queued", "cancelled"]
    );
    assert_eq!(transitions(d), ["queued", "running", "cancelled"]);
    assert_eq!(transitions(e), ["queued", "running", "cancelled"]);
    let mut ids: Vec<Uuid> = audit.iter().map(|e| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), audit.len(), "every event has an id of its own");
    // Each start as it was: the attempt, its worker, its start time as the event's time.
    let starts: Vec<_> = audit
        .iter()
        .filter(|e| e.event_type == "pysaas.job.running")
        .map(|e| {
            assert_eq!(e.data.to_value()["state"], "running");
            assert_eq!(e.data.to_value()["from"], "queued");
            assert_eq!(e.data.to_value()["finished_at"], serde_json::Value::Null);
            let started: chrono::DateTime<Utc> =
                serde_json::from_value(e.data.to_value()["started_at"].clone()).unwrap();
            // (SQLite's JSON times are to the millisecond.)
            assert!((e.time - started).num_microseconds().unwrap().abs() < 1000);
            (
                e.subject.clone(),
                e.data.to_value()["attempt"].clone(),
                e.data.to_value()["worker_id"].clone(),
            )
        })
        .collect();
    let subject = |id: Uuid| format!("jobs/{id}");
    assert_eq!(
        starts,
        [
            (subject(a), json!(1), json!("w1")),
            (subject(b), json!(1), json!("w1")),
            (subject(b), json!(2), json!("w2")),
            (subject(d), json!(1), json!("w3")),
            (subject(e), json!(1), json!("w4")),
        ]
    );
}
on_both!(
    every_transition_is_recorded_in_order,
    every_transition_is_recorded_in_order
);

async fn cursors_are_per_consumer(db: TestDb) {
    let s = db.store.clone();
    for _ in 0..5 {
        insert(&s, "q").await;
    }
    assert_eq!(s.outbox_backlog("relay").await.unwrap().pending, 5);
    let first = read(&s, "relay", 2, 2).await;
    assert_eq!(first.len(), 2);
    // Not committed: read again from the same place.
    assert_eq!(s.outbox_read("relay", 2).await.unwrap(), first);
    s.outbox_commit("relay", first[1].position).await.unwrap();
    let rest = read(&s, "relay", 10, 3).await;
    assert_eq!(rest.len(), 3);
    assert!(rest[0].position > first[1].position);
    // A stale commit does not move the cursor back.
    s.outbox_commit("relay", rest[2].position).await.unwrap();
    s.outbox_commit("relay", first[0].position).await.unwrap();
    let backlog = s.outbox_backlog("relay").await.unwrap();
    assert_eq!((backlog.pending, backlog.oldest), (0, None));
    // Another consumer has read nothing yet.
    let other = s.outbox_backlog("audit").await.unwrap();
    assert_eq!(other.pending, 5);
    assert!(other.oldest.unwrap() <= Utc::now() + chrono::Duration::seconds(1));
    // Replay: back to the first fact recorded at or after a time.
    s.outbox_rewind("relay", first[0].fact.time - chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(read(&s, "relay", 10, 5).await.len(), 5);
}
on_both!(cursors_are_per_consumer, cursors_are_per_consumer);

async fn pruning_keeps_what_a_consumer_has_not_read(db: TestDb) {
    let s = db.store.clone();
    for _ in 0..4 {
        insert(&s, "q").await;
    }
    let all = read(&s, "relay", 10, 4).await;
    s.outbox_commit("relay", all[3].position).await.unwrap();
    s.outbox_commit("audit", all[1].position).await.unwrap();
    let later = Utc::now() + chrono::Duration::seconds(5);
    // Not older than the window: kept.
    assert_eq!(
        s.outbox_prune(all[0].fact.time - chrono::Duration::seconds(5), 100)
            .await
            .unwrap(),
        0
    );
    // Read by both: gone; the two `audit` has not read stay.
    assert_eq!(s.outbox_prune(later, 100).await.unwrap(), 2);
    let left = read(&s, "audit", 10, 2).await;
    assert_eq!(left, all[2..].to_vec());
}
on_both!(
    pruning_keeps_what_a_consumer_has_not_read,
    pruning_keeps_what_a_consumer_has_not_read
);

async fn nothing_is_recorded_while_disabled(db: TestDb) {
    let s = db.store.clone();
    s.set_events_enabled(false).await.unwrap();
    let id = insert(&s, "q").await;
    s.claim("q", 1, "w", LEASE).await.unwrap();
    finish(&s, id, 1, Outcome::Succeeded { result: None }).await;
    assert_eq!(s.outbox_backlog("relay").await.unwrap().pending, 0);
    s.set_events_enabled(true).await.unwrap();
    insert(&s, "q").await;
    assert_eq!(s.outbox_backlog("relay").await.unwrap().pending, 1);
}
on_both!(
    nothing_is_recorded_while_disabled,
    nothing_is_recorded_while_disabled
);

/// An operator's queue pause and resume are facts of their own, recorded with the change (and
/// only when something changed), published as the events of their type.
async fn queue_pauses_are_recorded(db: TestDb) {
    let s = db.store.clone();
    assert!(s.pause_queue("mail", "user:ada").await.unwrap());
    assert!(
        !s.pause_queue("mail", "user:ada").await.unwrap(),
        "already paused"
    );
    assert!(s.resume_queue("mail").await.unwrap());
    assert!(!s.resume_queue("mail").await.unwrap(), "not paused");
    let all = read_all(&s, "relay").await;
    let types: Vec<&str> = all.iter().map(|e| e.fact.event_type.as_str()).collect();
    assert_eq!(types, ["pysaas.queue.paused", "pysaas.queue.resumed"]);
    assert_eq!(all[0].fact.subject, "queues/mail");
    assert_eq!(all[0].fact.tenant_id, "default");
    assert_eq!(all[0].fact.data, json!({"queue": "mail", "by": "user:ada"}));
    let events = events_of(&all[0].fact).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, Stream::Audit);
    let schema = pysaas_jobs::events::schema_for_type("pysaas.queue.paused").unwrap();
    assert_eq!(schema["title"], "QueueAction");
    s.set_events_enabled(false).await.unwrap();
    assert!(s.pause_queue("mail", "user:ada").await.unwrap());
    assert_eq!(
        read_all(&s, "other").await.len(),
        2,
        "nothing while disabled"
    );
}
on_both!(queue_pauses_are_recorded, queue_pauses_are_recorded);

/// A transaction that began first but commits last: a reader going by sequence numbers alone
/// would pass its fact before it committed and never see it. The outbox shows nothing past it
/// until it ends, then both facts in transaction order.
#[tokio::test]
async fn a_slow_transaction_is_never_skipped_on_postgres() {
    let db = enabled(TestDb::postgres().await).await;
    let Backend::Pg(pg) = &db.backend else {
        unreachable!()
    };
    let mut slow = pg.begin().await.unwrap();
    let early = slow.enqueue(vec![job("q")]).await.unwrap()[0].job.id;
    let late = insert(&db.store, "q").await;
    assert!(
        db.store.outbox_read("relay", 10).await.unwrap().is_empty(),
        "nothing is readable past a running transaction"
    );
    slow.commit().await.unwrap();
    let entries = read(&db.store, "relay", 10, 2).await;
    let subjects: Vec<_> = entries.iter().map(|e| e.fact.subject.clone()).collect();
    assert_eq!(subjects, [format!("jobs/{early}"), format!("jobs/{late}")]);
}
