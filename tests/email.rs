//! `notification.email` against a real SMTP server (aiosmtpd, `tests/smtp_sink.py`, from the
//! test tools' venv): the delivered message is read back and its parts and headers checked;
//! 4xx answers are retried, 5xx ones are final, an unreachable server is retried with a message
//! that says so. On SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::time::{Duration, Instant};

use pysaas::testing::{spawn_app, TestApp};
use pysaas::{App, Config, Roles};
use pysaas_brokers::testing::TestDb;
use pysaas_brokers::JobStore;
use pysaas_jobs::{Job, JobState};
use serde_json::{json, Value};
use uuid::Uuid;

async fn app_on(db: &TestDb, smtp_port: u16) -> TestApp {
    let mut config = Config::default();
    config.store.url = Some(db.url.clone());
    config.store.pg_schema = db.schema.clone();
    config.notifications.smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
    config.notifications.smtp_timeout_ms = 2_000;
    spawn_app(App::new(config).with_store(db.store.clone()), Roles::all())
        .await
        .unwrap()
}

/// Submits an email job; (status, body).
async fn submit(app: &TestApp, http: &reqwest::Client, payload: Value) -> (u16, Value) {
    let response = http
        .post(app.url("/v1/jobs"))
        .json(&json!({"kind": "notification.email", "payload": payload}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn wait_job(store: &dyn JobStore, id: Uuid, what: &str, done: impl Fn(&Job) -> bool) -> Job {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(job) = store.get("acme", id).await.unwrap() {
            if done(&job) {
                return job;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn job_id(body: &Value) -> Uuid {
    body["id"].as_str().unwrap().parse().unwrap()
}

fn header(mail: &mailparse::ParsedMail<'_>, name: &str) -> String {
    use mailparse::MailHeaderMap;
    mail.headers.get_first_value(name).unwrap_or_default()
}

async fn email_is_rendered_and_delivered_from_the_tenants_sender(db: TestDb) {
    let smtp = common::Smtp::start().await;
    let app = app_on(&db, smtp.port).await;
    let acme = common::tenant_client(app.store.as_ref(), "acme").await;
    let sender = app.url("/v1/notifications/sender");
    // A malformed sender is refused, naming the field.
    let response = acme
        .put(&sender)
        .json(&json!({"from_address": "billing at acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["path"], "from_address");
    let response = acme
        .put(&sender)
        .json(&json!({"from_address": "billing@acme.example", "from_name": "Acme Billing", "reply_to": "support@acme.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Bad submissions: 422 naming the field, nothing stored.
    for (payload, field) in [
        (
            json!({"to": "not-an-address", "template": "notice", "data": {}}),
            "to",
        ),
        (
            json!({"to": "Ada <ada@example.com>", "template": "notice"}),
            "to",
        ),
        (
            json!({"to": "ada@example.com", "template": "no_such_template"}),
            "template",
        ),
        (
            json!({"to": "ada@example.com", "template": "notice", "data": {"body": "x".repeat(20_000)}}),
            "data",
        ),
    ] {
        let (status, body) = submit(&app, &acme, payload).await;
        assert_eq!(status, 422, "{body}");
        assert!(
            body["errors"][0]["path"].as_str().unwrap().contains(field),
            "{field}: {body}"
        );
    }

    let (status, body) = submit(
        &app,
        &acme,
        json!({"to": "ada@example.com", "template": "welcome", "data": {"plan": "Pro", "name": "Ada <b>"}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = job_id(&body);
    let job = wait_job(app.store.as_ref(), id, "the email sent", |j| {
        j.state == JobState::Succeeded
    })
    .await;
    assert_eq!(job.result.as_ref().unwrap()["smtp_code"], "250");
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1);
    let mail = mailparse::parse_mail(&messages[0]).unwrap();
    assert_eq!(
        header(&mail, "From"),
        "\"Acme Billing\" <billing@acme.example>"
    );
    assert_eq!(header(&mail, "Reply-To"), "support@acme.example");
    assert_eq!(header(&mail, "To"), "ada@example.com");
    assert_eq!(header(&mail, "Subject"), "Welcome to Pro");
    assert_eq!(header(&mail, "Message-ID"), format!("<{id}@pysaas>"));
    assert_eq!(mail.ctype.mimetype, "multipart/alternative");
    let parts: Vec<_> = mail
        .subparts
        .iter()
        .map(|p| (p.ctype.mimetype.clone(), p.get_body().unwrap()))
        .collect();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].0, "text/plain");
    assert!(parts[0].1.contains("Hello Ada <b>,"), "{}", parts[0].1);
    assert_eq!(parts[1].0, "text/html");
    assert!(
        parts[1].1.contains("Hello Ada &lt;b&gt;,"),
        "escaped in HTML: {}",
        parts[1].1
    );
    assert!(
        parts[1].1.contains("<strong>Pro</strong>"),
        "{}",
        parts[1].1
    );

    // Without a sender of its own, a tenant sends from the deployment's default.
    let globex = common::tenant_client(app.store.as_ref(), "globex").await;
    let (_, body) = submit(
        &app,
        &globex,
        json!({"to": "bob@example.com", "template": "notice", "data": {"subject": "Hi", "body": "Hello"}}),
    )
    .await;
    let id = job_id(&body);
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.store.get("globex", id).await.unwrap().unwrap().state != JobState::Succeeded {
        assert!(Instant::now() < deadline, "globex's email sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mail = smtp.messages().pop().unwrap();
    let mail = mailparse::parse_mail(&mail).unwrap();
    assert_eq!(header(&mail, "From"), "PySaaS <no-reply@pysaas.localhost>");
    assert_eq!(header(&mail, "Subject"), "Hi");
    app.stop().await.unwrap();
    smtp.stop().await;
}

async fn smtp_failures_retry_when_temporary_and_end_when_permanent(db: TestDb) {
    let smtp = common::Smtp::start().await;
    let app = app_on(&db, smtp.port).await;
    let acme = common::tenant_client(app.store.as_ref(), "acme").await;
    let notice =
        |to: &str| json!({"to": to, "template": "notice", "data": {"subject": "S", "body": "B"}});
    let (_, temp) = submit(&app, &acme, notice("temp-fail@example.com")).await;
    let (_, perm) = submit(&app, &acme, notice("perm-fail@example.com")).await;
    let (_, missing) = submit(
        &app,
        &acme,
        json!({"to": "ada@example.com", "template": "welcome", "data": {}}),
    )
    .await;
    let temp = wait_job(
        app.store.as_ref(),
        job_id(&temp),
        "a retry after 451",
        |j| j.state == JobState::Retrying,
    )
    .await;
    assert!(
        temp.last_error.as_deref().unwrap().contains("for now"),
        "{temp:?}"
    );
    let perm = wait_job(app.store.as_ref(), job_id(&perm), "dead after 550", |j| {
        j.state == JobState::Dead
    })
    .await;
    assert_eq!(perm.attempts, 1);
    assert!(
        perm.last_error.as_deref().unwrap().contains("for good"),
        "{perm:?}"
    );
    let missing = wait_job(
        app.store.as_ref(),
        job_id(&missing),
        "dead: no `plan`",
        |j| j.state == JobState::Dead,
    )
    .await;
    assert!(
        missing
            .last_error
            .as_deref()
            .unwrap()
            .contains("template `welcome`"),
        "{missing:?}"
    );
    assert!(smtp.messages().is_empty(), "nothing was delivered");

    // The server gone: retried, saying so.
    smtp.stop().await;
    let (_, gone) = submit(&app, &acme, notice("ada@example.com")).await;
    let gone = wait_job(
        app.store.as_ref(),
        job_id(&gone),
        "a retry while unreachable",
        |j| j.state == JobState::Retrying,
    )
    .await;
    assert!(
        gone.last_error.as_deref().unwrap().contains("unreachable"),
        "{gone:?}"
    );
    app.stop().await.unwrap();
}

macro_rules! each_store {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(super::TestDb::sqlite().await).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(super::TestDb::postgres().await).await })*
        }
    };
}

each_store!(
    email_is_rendered_and_delivered_from_the_tenants_sender,
    smtp_failures_retry_when_temporary_and_end_when_permanent,
);
