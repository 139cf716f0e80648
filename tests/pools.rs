//! The domain pools side by side: three `pysaas worker` processes, one per queue (`billing`,
//! `notifications`, `profiles`), on one PostgreSQL store. A subscription's charge runs in the
//! billing pool, its welcome and receipt emails (to aiosmtpd) and its `invoice.paid` webhook in
//! the notification pool, a user's data export in the profile pool; each pool runs only its
//! queue.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use pysaas_brokers::store::billing::{InvoiceStatus, NewPlan};
use pysaas_brokers::store::webhooks::Endpoint;
use pysaas_brokers::store::ProfileExport;
use pysaas_brokers::testing::TestDb;
use pysaas_brokers::{JobFilter, TenantRow, UserRow};
use pysaas_jobs::billing::{Cadence, Interval};
use pysaas_jobs::kinds::notification::{Email, EmailTemplate};
use pysaas_jobs::kinds::profile::Export;
use pysaas_jobs::{Job, JobState, NewJob};
use serde_json::json;

/// A receiver of webhook deliveries: the event types it got.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let g = g.clone();
            async move {
                let kind = headers
                    .get("pysaas-event-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                g.lock().unwrap().push(kind);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

async fn all_jobs(db: &TestDb) -> Vec<Job> {
    db.store
        .list(&JobFilter {
            tenant_id: "acme".into(),
            state: None,
            kind: None,
            queue: None,
            limit: 1000,
            before: None,
            payload: None,
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pools_each_run_their_own_queue() {
    let db = TestDb::postgres().await;
    let smtp = common::Smtp::start().await;
    let (hook_url, hooks) = receiver().await;
    let provider = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let provider_url = format!("http://{}", provider.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(pysaas::payments_sim::serve(provider, None, stop.clone()));

    let now = Utc::now();
    let ada = UserRow {
        id: uuid::Uuid::now_v7(),
        email: "ada@example.com".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        failed_logins: 0,
        locked_until: None,
        created_at: now,
    };
    let acme = TenantRow {
        id: "acme".into(),
        name: "Acme".into(),
        plan: "free".into(),
        created_at: now,
    };
    assert!(db.store.signup(&acme, &ada).await.unwrap());
    db.store
        .create_endpoint(&Endpoint {
            id: uuid::Uuid::now_v7(),
            tenant_id: "acme".into(),
            url: hook_url,
            event_types: vec!["invoice.paid".into()],
            secret: "whsec_test".into(),
            enabled: true,
            consecutive_failures: 0,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    db.store
        .create_plan(&NewPlan {
            id: "basic".into(),
            name: "Basic".into(),
            amount_minor: 900,
            currency: "EUR".parse().unwrap(),
            cadence: Cadence {
                interval: Interval::Month,
                count: 1,
            },
            trial_days: 0,
        })
        .await
        .unwrap();
    let welcome = NewJob::of(
        "acme",
        &Email {
            to: "ada@example.com".into(),
            template: EmailTemplate::Welcome,
            data: serde_json::Map::from_iter([("plan".to_owned(), json!("Basic"))]),
        },
    )
    .unwrap();
    let invoice = db
        .store
        .subscribe(
            "acme",
            "basic",
            "pm_card_visa",
            Some("ada@example.com"),
            now,
            vec![welcome],
        )
        .await
        .unwrap()
        .unwrap()
        .invoice
        .unwrap()
        .id;
    let export = ProfileExport {
        id: uuid::Uuid::now_v7(),
        tenant_id: "acme".into(),
        user_id: ada.id,
        status: "pending".into(),
        document: None,
        created_at: now,
        completed_at: None,
    };
    let export_job = NewJob::of(
        "acme",
        &Export {
            export_id: export.id,
        },
    )
    .unwrap();
    db.store.create_export(&export, export_job).await.unwrap();

    let smtp_url = format!("smtp://127.0.0.1:{}", smtp.port);
    let pools = [
        (
            "billing",
            vec![("PYSAAS_BILLING_PROVIDER_URL", provider_url.as_str())],
        ),
        (
            "notifications",
            vec![
                ("PYSAAS_SMTP_URL", smtp_url.as_str()),
                ("PYSAAS_WEBHOOK_ALLOW_PRIVATE", "true"),
            ],
        ),
        ("profiles", vec![]),
    ];
    let mut children: Vec<_> = pools
        .iter()
        .map(|(queue, env)| common::pysaas_process(&db, &["worker", "--queues", queue], env))
        .collect();

    let deadline = Instant::now() + Duration::from_secs(40);
    let jobs = loop {
        let jobs = all_jobs(&db).await;
        let done = jobs.len() >= 5 && jobs.iter().all(|j| j.state == JobState::Succeeded);
        if done && !hooks.lock().unwrap().is_empty() && smtp.messages().len() == 2 {
            break jobs;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {:?}",
            jobs.iter().map(|j| (&j.kind, j.state)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for child in &mut children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    stop.cancel();

    let (invoice_row, _) = db
        .store
        .get_invoice("acme", invoice)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(invoice_row.status, InvoiceStatus::Paid);
    assert_eq!(*hooks.lock().unwrap(), ["invoice.paid"]);
    // Each queue's jobs ran in one process, a different one per queue.
    let mut worker_of_queue = std::collections::BTreeMap::new();
    for job in &jobs {
        let worker = job.worker_id.clone().unwrap();
        let seen = worker_of_queue
            .entry(job.queue.clone())
            .or_insert(worker.clone());
        assert_eq!(*seen, worker, "{} ran in one pool", job.queue);
    }
    let queues: Vec<_> = worker_of_queue.keys().cloned().collect();
    assert_eq!(queues, ["billing", "notifications", "profiles"]);
    let workers: std::collections::BTreeSet<_> = worker_of_queue.values().collect();
    assert_eq!(workers.len(), 3, "three processes: {worker_of_queue:?}");
    let kinds: std::collections::BTreeSet<_> = jobs.iter().map(|j| j.kind.as_str()).collect();
    assert!(kinds.is_superset(&std::collections::BTreeSet::from([
        "billing.charge_invoice",
        "notification.email",
        "notification.webhook_event",
        "notification.webhook_delivery",
        "profile.export",
    ])));
    let export = db.store.get_export(export.id).await.unwrap().unwrap();
    assert_eq!(export.status, "ready");
    let document = export.document.unwrap();
    assert_eq!(document["user"]["email"], "ada@example.com");
    assert_eq!(document["subscriptions"][0]["plan_id"], "basic");
    smtp.stop().await;
}
