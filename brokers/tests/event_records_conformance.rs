//! What the event consumers keep, on both stores: the audit log and the analytics rollups take
//! each event id once however often it comes, read back per tenant with their filters.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use pysaas_brokers::store::AuditFilter;
use pysaas_brokers::testing::TestDb;
use pysaas_jobs::events::{CloudEvent, JOB_FINISHED, JOB_SUBMITTED};
use pysaas_jobs::JobState;
use serde_json::{json, Value};
use uuid::Uuid;

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(pysaas_brokers::testing::TestDb::sqlite().await).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$name(pysaas_brokers::testing::TestDb::postgres().await).await;
            }
        })*
    };
}

on_both!(
    the_audit_log_keeps_each_event_once_and_filters,
    rollups_count_each_event_once_with_durations,
    revenue_is_rolled_up_per_day_and_currency_once_per_event
);

fn event(
    tenant: &str,
    event_type: &str,
    subject: &str,
    time: DateTime<Utc>,
    data: Value,
) -> CloudEvent {
    CloudEvent {
        specversion: "1.0".into(),
        id: Uuid::new_v4(),
        source: "/pysaas".into(),
        event_type: event_type.into(),
        subject: subject.into(),
        time,
        datacontenttype: "application/json".into(),
        tenantid: tenant.into(),
        traceparent: None,
        data: data.into(),
    }
}

async fn the_audit_log_keeps_each_event_once_and_filters(db: TestDb) {
    let t0 = Utc::now().trunc_subsecs(6) - TimeDelta::minutes(10);
    let events: Vec<CloudEvent> = (0..6)
        .map(|i| {
            let tenant = if i == 5 { "globex" } else { "acme" };
            let ty = if i % 2 == 0 {
                "pysaas.job.queued"
            } else {
                "pysaas.job.succeeded"
            };
            event(
                tenant,
                ty,
                &format!("jobs/{}", i / 2),
                t0 + TimeDelta::minutes(i),
                json!({"i": i}),
            )
        })
        .collect();
    assert_eq!(db.store.record_audit(&events).await.unwrap(), 6);
    // Again, as after a redelivery: nothing new.
    assert_eq!(db.store.record_audit(&events[..3]).await.unwrap(), 0);
    let page = |f: AuditFilter| {
        let store = db.store.clone();
        async move { store.audit_log(&f).await.unwrap() }
    };
    let all = page(AuditFilter {
        tenant_id: "acme".into(),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(all.len(), 5, "another tenant's entry is not shown");
    let times: Vec<_> = all.iter().map(|e| e.time).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert_eq!(all[0].data, json!({"i": 4}));
    assert_eq!(all[4].id, events[0].id);
    let of_job = page(AuditFilter {
        tenant_id: "acme".into(),
        subject: Some("jobs/1".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(of_job.len(), 2);
    let succeeded = page(AuditFilter {
        tenant_id: "acme".into(),
        event_type: Some("pysaas.job.succeeded".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(succeeded.len(), 2);
    let window = page(AuditFilter {
        tenant_id: "acme".into(),
        from: Some(t0 + TimeDelta::minutes(1)),
        to: Some(t0 + TimeDelta::minutes(3)),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(
        window
            .iter()
            .map(|e| e.data.to_value()["i"].clone())
            .collect::<Vec<_>>(),
        [json!(2), json!(1)]
    );
    let first = page(AuditFilter {
        tenant_id: "acme".into(),
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(first.len(), 2);
    // Entries sharing one time (a batch's transaction) page through by (time, id): none skipped,
    // none twice.
    let at = t0 + TimeDelta::hours(1);
    let same: Vec<CloudEvent> = (0..5)
        .map(|i| {
            event(
                "initech",
                "pysaas.job.queued",
                &format!("jobs/s{i}"),
                at,
                json!({}),
            )
        })
        .collect();
    db.store.record_audit(&same).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<(DateTime<Utc>, Uuid)> = None;
    loop {
        let page = page(AuditFilter {
            tenant_id: "initech".into(),
            to: cursor.map(|c| c.0),
            before: cursor.map(|c| c.1),
            limit: 2,
            ..Default::default()
        })
        .await;
        let Some(last) = page.last() else { break };
        cursor = Some((last.time, last.id));
        seen.extend(page.iter().map(|e| e.id));
    }
    let mut want: Vec<Uuid> = same.iter().map(|e| e.id).collect();
    want.sort();
    want.reverse();
    assert_eq!(seen, want);
}

fn finished(
    tenant: &str,
    at: DateTime<Utc>,
    outcome: &str,
    duration_ms: Option<i64>,
) -> CloudEvent {
    event(
        tenant,
        JOB_FINISHED,
        "jobs/x",
        at,
        json!({"job_id": Uuid::new_v4(), "kind": "system.noop", "queue": "default",
               "outcome": outcome, "attempts": 2, "duration_ms": duration_ms, "total_ms": 10}),
    )
}

async fn rollups_count_each_event_once_with_durations(db: TestDb) {
    let minute = pysaas_brokers::store::stats::minute_of(Utc::now()) - TimeDelta::minutes(5);
    let mut events = vec![
        finished("acme", minute + TimeDelta::seconds(1), "succeeded", Some(3)),
        finished(
            "acme",
            minute + TimeDelta::seconds(2),
            "succeeded",
            Some(40),
        ),
        finished(
            "acme",
            minute + TimeDelta::seconds(3),
            "succeeded",
            Some(40),
        ),
        finished("acme", minute + TimeDelta::seconds(4), "cancelled", None),
        finished("acme", minute + TimeDelta::seconds(65), "dead", Some(7)),
        finished("globex", minute, "succeeded", Some(1)),
    ];
    for i in 0..3 {
        events.push(event(
            "acme",
            JOB_SUBMITTED,
            "jobs/y",
            minute + TimeDelta::seconds(i),
            json!({"job_id": Uuid::new_v4(), "kind": "system.noop", "queue": "default", "scheduled": false}),
        ));
    }
    assert_eq!(db.store.record_analytics(&events).await.unwrap(), 9);
    assert_eq!(
        db.store.record_analytics(&events).await.unwrap(),
        0,
        "seen ids count nothing"
    );

    let (from, to) = (minute - TimeDelta::hours(1), minute + TimeDelta::hours(1));
    let rollups = db.store.job_rollups("acme", from, to).await.unwrap();
    let of = |outcome: JobState| rollups.iter().find(|r| r.outcome == outcome).unwrap();
    let ok = of(JobState::Succeeded);
    assert_eq!(
        (ok.minute, ok.jobs, ok.attempts, ok.duration_ms),
        (minute, 3, 6, 83)
    );
    // 3 ms in the 5 ms bucket, both 40s in the 50 ms one.
    assert_eq!(
        pysaas_brokers::store::stats::wait_quantile_ms(&ok.durations, 0.5),
        Some(50)
    );
    assert_eq!(
        pysaas_brokers::store::stats::wait_quantile_ms(&ok.durations, 0.2),
        Some(5)
    );
    let cancelled = of(JobState::Cancelled);
    assert_eq!(
        (cancelled.jobs, cancelled.durations.iter().sum::<i64>()),
        (1, 0)
    );
    assert_eq!(of(JobState::Dead).minute, minute + TimeDelta::minutes(1));
    assert_eq!(rollups.len(), 3);
    let submitted = db.store.submission_rollups("acme", from, to).await.unwrap();
    assert_eq!(submitted.len(), 1);
    assert_eq!((submitted[0].minute, submitted[0].jobs), (minute, 3));
    assert_eq!(
        db.store
            .job_rollups("globex", from, to)
            .await
            .unwrap()
            .len(),
        1
    );
    // Outside the window: nothing.
    assert!(db
        .store
        .job_rollups("acme", to, to + TimeDelta::hours(1))
        .await
        .unwrap()
        .is_empty());
    // Forgetting old ids leaves the counts as they are.
    db.store
        .prune_analytics_seen(Utc::now() + TimeDelta::seconds(1))
        .await
        .unwrap();
    assert_eq!(
        db.store.job_rollups("acme", from, to).await.unwrap(),
        rollups
    );
}

/// Revenue per UTC day and currency, over every tenant, each event once however often it
/// comes; a day outside the window is not in it.
async fn revenue_is_rolled_up_per_day_and_currency_once_per_event(db: TestDb) {
    let day = |d: u32, h: u32| -> DateTime<Utc> {
        format!("2026-03-{d:02}T{h:02}:30:00Z").parse().unwrap()
    };
    let paid = |tenant: &str, at: DateTime<Utc>, currency: &str, amount: i64| {
        event(
            tenant,
            pysaas_jobs::events::REVENUE_RECOGNISED,
            "invoices/x",
            at,
            json!({"invoice_id": Uuid::now_v7(), "currency": currency, "amount_minor": amount}),
        )
    };
    let events = vec![
        paid("acme", day(1, 1), "EUR", 900),
        paid("globex", day(1, 23), "EUR", 1_100),
        paid("acme", day(1, 5), "USD", 500),
        paid("acme", day(2, 0), "EUR", 900),
        paid("acme", day(9, 0), "EUR", 7),
    ];
    let s = &db.store;
    assert_eq!(s.record_analytics(&events).await.unwrap(), 5);
    assert_eq!(
        s.record_analytics(&events[..2]).await.unwrap(),
        0,
        "counted once"
    );
    let (from, to) = ("2026-03-01T00:00:00Z", "2026-03-03T00:00:00Z");
    let rows = s
        .revenue_rollups(from.parse().unwrap(), to.parse().unwrap())
        .await
        .unwrap();
    let got: Vec<(String, &str, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.day.to_rfc3339(),
                r.currency.as_str(),
                r.invoices,
                r.amount_minor,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("2026-03-01T00:00:00+00:00".to_owned(), "EUR", 2, 2_000),
            ("2026-03-01T00:00:00+00:00".to_owned(), "USD", 1, 500),
            ("2026-03-02T00:00:00+00:00".to_owned(), "EUR", 1, 900),
        ]
    );
}
