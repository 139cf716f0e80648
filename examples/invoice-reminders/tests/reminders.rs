//! The example's kind through PySaaS's public test helpers: inline through its real handler, then
//! end to end (HTTP submission, worker, stored result) on the embedded default.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::{Duration, Instant};

use pysaas::testing::{assert_enqueued, perform, spawn_app};
use pysaas::{Config, HandlerError, Roles};
use pysaas_example_reminders::{app, InvoiceOverdue};
use serde_json::{json, Value};

fn overdue(days: u32) -> InvoiceOverdue {
    InvoiceOverdue {
        invoice: "INV-2026-0042".into(),
        email: "billing@example.com".into(),
        amount_cents: 12_345,
        currency: "EUR".into(),
        days_overdue: days,
    }
}

#[tokio::test]
async fn the_handler_renders_fails_and_cancels_inline() {
    let app = app(Config::default());
    let handlers = app.handlers();
    let result = perform(handlers, &overdue(12)).await.unwrap().unwrap();
    assert_eq!(
        result["subject"],
        "Invoice INV-2026-0042 is 12 days overdue"
    );
    assert_eq!(
        result["body"],
        "This is a second reminder: 123.45 EUR is due on invoice INV-2026-0042."
    );
    let nothing_due = InvoiceOverdue {
        amount_cents: 0,
        ..overdue(3)
    };
    assert!(matches!(
        perform(handlers, &nothing_due).await,
        Err(HandlerError::Fail { .. })
    ));
    assert!(matches!(
        perform(handlers, &overdue(120)).await,
        Err(HandlerError::Cancel { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_reminder_runs_end_to_end() {
    let app = spawn_app(app(Config::default()), Roles::all())
        .await
        .unwrap();
    let (_, http) = app.admin_client().await.unwrap();

    // The kind's schema guards the edge: a wrong type is a 422 problem, nothing stored.
    let submit = |payload: Value| {
        let request = http.post(app.url("/v1/jobs")).json(&json!({
            "kind": "reminders.invoice_overdue",
            "payload": payload,
        }));
        async move { request.send().await.unwrap() }
    };
    let bad = submit(json!({"invoice": 7})).await;
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");

    let accepted = submit(serde_json::to_value(overdue(3)).unwrap()).await;
    assert_eq!(accepted.status(), 202);
    let submitted: Value = accepted.json().await.unwrap();
    let id = submitted["id"].as_str().unwrap().to_owned();
    assert_eq!(submitted["queue"], "reminders", "{submitted}");
    let job = assert_enqueued::<InvoiceOverdue>(app.store.as_ref(), pysaas::DEFAULT_TENANT, |j| {
        j.days_overdue == 3
    })
    .await;
    assert_eq!(job.id.to_string(), id);

    // The app's worker consumes the kind's queue without being told about it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let finished = loop {
        let response = http.get(app.url(&format!("/v1/jobs/{id}"))).send();
        let job: Value = response.await.unwrap().json().await.unwrap();
        if job["state"] == "succeeded" {
            break job;
        }
        assert!(Instant::now() < deadline, "not finished: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        finished["result"]["body"],
        "This is a friendly reminder: 123.45 EUR is due on invoice INV-2026-0042."
    );
    app.stop().await.unwrap();
}
