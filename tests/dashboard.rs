//! The dashboard in a real browser (Debian's chromium driven by playwright-core), served by the
//! API from the built export (`PYSAAS_TEST_UI_DIR`, built by `scripts/test.sh`), on the embedded
//! default and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use pysaas_brokers::testing::TestDb;
use pysaas_brokers::JobStore;

async fn serve(store: Option<Arc<dyn JobStore>>) -> pysaas::testing::TestApp {
    serve_roles(
        store,
        pysaas::Roles {
            api: true,
            worker: true,
            scheduler: true,
            consumers: true,
        },
    )
    .await
}

async fn serve_roles(
    store: Option<Arc<dyn JobStore>>,
    roles: pysaas::Roles,
) -> pysaas::testing::TestApp {
    let ui = std::env::var("PYSAAS_TEST_UI_DIR").expect(
        "PYSAAS_TEST_UI_DIR: the dashboard's built export (scripts/test.sh builds frontend/out)",
    );
    let mut config = pysaas::Config::default();
    config.api.ui_dir = Some(PathBuf::from(ui));
    let mut app = pysaas::App::new(config);
    if let Some(store) = store {
        app = app.with_store(store);
    }
    common::spawn(app, roles).await
}

async fn a_job_submitted_through_the_form_is_followed_to_success(app: pysaas::testing::TestApp) {
    let (key, http) = app.admin_client().await.unwrap();
    let seen = common::browse("dashboard.cjs", &[&app.url(""), &key]).await;
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");
    assert_eq!(
        seen["reloaded"], false,
        "the job page updates in place: {seen}"
    );
    assert_eq!(seen["result"]["slept_ms"], 300, "{seen}");
    assert_eq!(seen["bulk"], "1 of 1 retried", "{seen}");
    assert!(seen["retriedAttempts"].as_u64().unwrap() >= 1, "{seen}");
    assert_eq!(seen["liveWorkers"], 1, "{seen}");
    assert_eq!(seen["previewed"], 5, "{seen}");
    assert_eq!(seen["foundByPayload"], 1, "{seen}");
    assert_eq!(seen["pausedSchedule"], true, "{seen}");
    assert!(seen["charted"].as_u64().unwrap() >= 5, "{seen}");
    assert_eq!(seen["canvases"], 2, "two charts drawn: {seen}");
    assert_eq!(seen["liveCount"], "1 live worker", "{seen}");
    assert_eq!(
        (
            seen["deletedSelected"].as_str(),
            seen["deletedStatus"].as_u64()
        ),
        (Some("1 of 1 deleted"), Some(404)),
        "a selected row is deleted alone: {seen}"
    );
    let dead = seen["deadAttempts"].as_str().unwrap_or_default();
    assert!(
        dead.contains("failed") && dead.contains("\"planned_failures\":99"),
        "the dead job's attempt with the handler's error detail: {seen}"
    );
    let attempts = seen["attemptRows"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{seen}");
    let row = attempts[0].as_str().unwrap();
    assert!(
        row.contains("succeeded") && row.contains(" ms"),
        "the attempt with its outcome and duration: {seen}"
    );
    assert_eq!(
        seen["triggered"], 1,
        "a trigger fires a paused schedule: {seen}"
    );
    assert_eq!(
        (seen["whilePaused"].as_str(), seen["afterResume"].as_str()),
        (Some("queued"), Some("succeeded")),
        "a paused queue's job waits, then runs once resumed: {seen}"
    );
    assert_eq!(
        (seen["savedCron"].as_str(), seen["savedZone"].as_str()),
        (Some("0 30 2 * * *"), Some("Europe/Berlin")),
        "{seen}"
    );
    let id = seen["id"].as_str().unwrap();
    let job = common::json_of(http.get(app.url(&format!("/v1/jobs/{id}")))).await;
    assert_eq!(
        (job["state"].as_str(), job["payload"]["ms"].as_u64()),
        (Some("succeeded"), Some(300)),
        "{job}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_on_the_embedded_default() {
    a_job_submitted_through_the_form_is_followed_to_success(serve(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_on_postgres() {
    let db = TestDb::postgres().await;
    a_job_submitted_through_the_form_is_followed_to_success(serve(Some(db.store.clone())).await)
        .await;
}

/// A read-only key is offered no write control (and the server refuses a forced write); the
/// admin creates and revokes keys on the account page. At phone width (390 px).
/// The domain pools' kinds and queues show like any other: the form lists every kind the API
/// says can be submitted (the billing and notification ones among them; the profile kinds are
/// listed by the API but made by PySaaS itself), generates the in-app form from its schema, and
/// the overview lists each domain queue once a job is on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_kinds_and_queues_show_like_any_other() {
    let app = serve(None).await;
    let (key, http) = app.admin_client().await.unwrap();
    for (kind, payload) in [
        (
            "notification.in_app",
            serde_json::json!({"category": "alerts", "title": "Queue billing is backing up"}),
        ),
        ("billing.generate_invoices", serde_json::json!({})),
    ] {
        let r = http
            .post(app.url("/v1/jobs"))
            .json(&serde_json::json!({"kind": kind, "payload": payload}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{kind}");
    }
    // A profile job is made by the API call that asks for it; one on the queue is enough here.
    let export = pysaas_jobs::kinds::profile::Export {
        export_id: uuid::Uuid::now_v7(),
    };
    app.store
        .insert(vec![pysaas_jobs::NewJob::of(
            pysaas_jobs::DEFAULT_TENANT,
            &export,
        )
        .unwrap()])
        .await
        .unwrap();
    let r = http
        .post(app.url("/v1/jobs"))
        .json(&serde_json::json!({"kind": "profile.export", "payload": {"export_id": export.export_id}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "internal kinds are not submitted");
    let seen = common::browse("domains.cjs", &[&app.url(""), &key]).await;
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");
    let mut form: Vec<_> = seen["formKinds"].as_array().unwrap().clone();
    let mut api: Vec<_> = seen["apiKinds"].as_array().unwrap().clone();
    form.sort_by_key(ToString::to_string);
    api.sort_by_key(ToString::to_string);
    assert_eq!(form, api, "the form offers exactly the kinds the API takes");
    for kind in [
        "billing.charge_invoice",
        "billing.generate_invoices",
        "notification.email",
        "notification.in_app",
        "notification.webhook_event",
    ] {
        assert!(form.contains(&serde_json::json!(kind)), "{kind}: {seen}");
    }
    for kind in [
        "profile.delete",
        "profile.export",
        "notification.webhook_delivery",
    ] {
        assert!(!form.contains(&serde_json::json!(kind)), "{kind}: {seen}");
    }
    let fields = seen["inAppFields"].to_string();
    for field in ["root_category", "root_title", "root_body", "root_link"] {
        assert!(fields.contains(field), "{field}: {seen}");
    }
    let rows = seen["queueRows"].to_string();
    for queue in ["billing", "notifications", "profiles"] {
        assert!(rows.contains(queue), "{queue}: {seen}");
    }
    assert_eq!(seen["inAppJobs"], 1, "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_the_controls_and_keys_are_managed() {
    let app = serve(None).await;
    let (admin, _) = app.admin_client().await.unwrap();
    let seen = common::browse("roles.cjs", &[&app.url(""), &admin]).await;
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");
    assert_eq!(
        (
            seen["readerControls"].as_u64(),
            seen["readerSubmitLink"].as_u64()
        ),
        (Some(0), Some(0)),
        "{seen}"
    );
    assert_eq!(seen["forcedStatus"], 403, "{seen}");
    assert_eq!(seen["scopes"], "jobs:read", "{seen}");
    assert_eq!(
        (
            seen["createdWorks"].as_u64(),
            seen["revokedStatus"].as_u64()
        ),
        (Some(200), Some(401)),
        "{seen}"
    );
}

/// A user in two tenants logs in with email and password and switches tenant on the account page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_switches_tenant() {
    let app = serve(None).await;
    let http = reqwest::Client::new();
    let password = "correct horse battery";
    let mut tokens = Vec::new();
    for email in ["ada@example.com", "boss@example.com"] {
        let signup =
            serde_json::json!({"email": email, "password": password, "tenant_name": email});
        let r = http
            .post(app.url("/v1/auth/signup"))
            .json(&signup)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
        let login = serde_json::json!({"email": email, "password": password});
        tokens.push(common::json_of(http.post(app.url("/v1/auth/login")).json(&login)).await);
    }
    let boss = common::bearer_client(tokens[1]["access_token"].as_str().unwrap());
    let member = serde_json::json!({"email": "ada@example.com", "role": "member"});
    let r = boss
        .put(app.url("/v1/members"))
        .json(&member)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let home = tokens[0]["tenant_id"].as_str().unwrap();
    let other = tokens[1]["tenant_id"].as_str().unwrap();
    let seen = common::browse(
        "tenants.cjs",
        &[&app.url(""), "ada@example.com", password, other],
    )
    .await;
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");
    assert_eq!(
        (
            seen["before"].as_str(),
            seen["after"].as_str(),
            seen["choices"].as_u64()
        ),
        (Some(home), Some(other), Some(2)),
        "{seen}"
    );
}

/// Paths the dashboard does not have still answer the API's 404 (problem+json), and the API
/// stays where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_stay_problem_json_beside_the_dashboard() {
    let app = serve(None).await;
    for (method, path) in [("GET", "/no/such/page"), ("POST", "/v1/nope")] {
        let r = reqwest::Client::new()
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
    }
    let index = reqwest::get(app.url("/")).await.unwrap();
    assert_eq!(index.status(), 200);
    let csp = index.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(index.headers()["x-frame-options"], "DENY");
    assert_eq!(index.headers()["x-content-type-options"], "nosniff");
    assert!(index.text().await.unwrap().contains("PySaaS"));
    let jobs = reqwest::get(app.url("/jobs/?state=dead")).await.unwrap();
    assert_eq!(jobs.status(), 200);
}

/// Live updates across processes: the page is served by this API, the job submitted through
/// another `pysaas api` process and run by a `pysaas worker` process; the page shows it finished
/// within a second, with nothing polling. On PostgreSQL through `NOTIFY`; on one SQLite file
/// through the store's `data_version` watcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_updates_cross_processes() {
    live_updates_across(TestDb::postgres().await, 4).await;
}

/// SQLite cannot say which tenant another process changed: the worker process's heartbeats and
/// statistics are announced as well, each worth a refetch (at most two a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_updates_cross_processes_on_one_sqlite_file() {
    live_updates_across(TestDb::sqlite().await, 8).await;
}

/// `most` bounds the requests for the job: a page that followed events, not one that polled.
async fn live_updates_across(db: TestDb, most: i64) {
    let served = serve_roles(Some(db.store.clone()), common::api_only()).await;
    let (key, _) = served.admin_client().await.unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let mut children = [
        common::pysaas_process(
            &db,
            &["api"],
            &[("PYSAAS_LISTEN", &listen), ("PYSAAS_DATA_DIR", data_dir)],
        ),
        common::pysaas_process(&db, &["worker", "--queues", "default"], &[]),
    ];
    let other = format!("http://{listen}");
    let ready = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while reqwest::get(format!("{other}/readyz")).await.is_err() {
        assert!(
            std::time::Instant::now() < ready,
            "the second API never came up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let seen = common::browse("live.cjs", &[&served.url(""), &key, &other]).await;
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["state"], "succeeded", "{seen}");
    let lag = seen["lagMs"].as_i64().unwrap();
    eprintln!("live update shown {lag} ms after the finish");
    assert!(
        lag < 1000,
        "the page showed the finish {lag} ms after it: {seen}"
    );
    assert!(
        seen["jobRequests"].as_i64().unwrap() <= most,
        "the job page polled instead of following events: {seen}"
    );
}

/// The dashboard with events on (the embedded default), every role, and an admin's key and client.
async fn with_events() -> (pysaas::testing::TestApp, String, reqwest::Client) {
    let ui = std::env::var("PYSAAS_TEST_UI_DIR").expect("PYSAAS_TEST_UI_DIR");
    let mut config = pysaas::Config::default();
    config.api.ui_dir = Some(PathBuf::from(ui));
    config.events.enabled = true;
    let app = common::spawn(pysaas::App::new(config), pysaas::Roles::all()).await;
    let (key, http) = app.admin_client().await.unwrap();
    (app, key, http)
}

/// The Overview's Analytics panel (events on, the embedded default): finished jobs per minute
/// from the analytics consumer's rollups, and for the operator revenue per day — charts that
/// appear once the stream has something, read from `/v1/analytics/*`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_charts_the_analytics_stream() {
    let (app, key, http) = with_events().await;
    for _ in 0..5 {
        common::json_of(
            http.post(app.url("/v1/jobs"))
                .json(&serde_json::json!({"kind": "system.noop", "payload": {}})),
        )
        .await;
    }
    // An invoice paid, as billing records it: revenue recognised on the analytics stream.
    let paid = pysaas_jobs::events::InvoiceEvent {
        invoice_id: uuid::Uuid::now_v7(),
        number: 1,
        subscription_id: uuid::Uuid::now_v7(),
        currency: "EUR".into(),
        total_minor: 1_999,
        period_start: chrono::Utc::now(),
        period_end: chrono::Utc::now(),
        by: None,
    };
    app.store
        .record_fact(
            "acme",
            pysaas_jobs::events::INVOICE_PAID,
            "invoices/x",
            &serde_json::to_value(&paid).unwrap(),
        )
        .await
        .unwrap();
    let seen = common::browse("analytics.cjs", &[&app.url(""), &key, "5"]).await;
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["finished"], 5, "{seen}");
    assert_eq!(seen["revenue"], 1_999, "{seen}");
    assert!(
        seen["legend"].as_str().unwrap().contains("succeeded"),
        "{seen}"
    );
}

/// The Audit page (events on, the embedded default): a job's transitions, newest first, found
/// by its subject and then by type through the page's filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_page_shows_a_jobs_transitions() {
    let (app, key, http) = with_events().await;
    let job = common::json_of(
        http.post(app.url("/v1/jobs"))
            .json(&serde_json::json!({"kind": "system.noop", "payload": {}})),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let seen = common::browse("audit.cjs", &[&app.url(""), &key, &id]).await;
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");
    let rows: Vec<&str> = seen["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{seen}");
    assert!(
        rows[0].contains("pysaas.job.succeeded") && rows[0].contains("running → succeeded"),
        "{seen}"
    );
    assert!(
        rows[2].contains("pysaas.job.queued") && rows[2].contains("new → queued"),
        "{seen}"
    );
    assert_eq!(seen["jobLink"], format!("/jobs/?id={id}"), "{seen}");
    assert_eq!(seen["filtered"].as_array().unwrap().len(), 1, "{seen}");
}
