//! API tests: the real router on port 0 with an in-process worker and maintenance, against
//! SQLite and PostgreSQL (isolated per test). Every bad-input case of the contract is asserted.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pysaas_brokers::store::{PgStore, StoreConfig};
use pysaas_brokers::testing::TestDb;
use pysaas_brokers::JobStore;
use reqwest::StatusCode;
use serde_json::{json, Value};

struct App {
    base: String,
    http: reqwest::Client,
    /// Stops the app when dropped (before the database goes).
    _app: pysaas::testing::TestApp,
    _db: Option<TestDb>,
}

/// The app (API, and with `with_worker` a worker on `default` and `notifications` plus the
/// scheduler) on `store`, through the shared test harness.
async fn serve(store: Arc<dyn JobStore>, with_worker: bool) -> pysaas::testing::TestApp {
    let mut config = pysaas::Config::default();
    // The test's webhook target listens on loopback.
    config.worker.webhook_allow_private = true;
    config.worker.queues = vec!["default".into(), "notifications".into()];
    config.worker.concurrency = 8;
    config.worker.lease_ms = 5_000;
    // health_metrics_and_openapi scrapes the API itself.
    config.api.public_metrics = true;
    let roles = pysaas::Roles {
        api: true,
        worker: with_worker,
        scheduler: with_worker,
        consumers: with_worker,
    };
    let app = pysaas::App::new(config)
        .with_store(store)
        .with_auth(Arc::new(pysaas_api::auth::Auth::ephemeral()));
    common::spawn(app, roles).await
}

async fn spawn_app(db: TestDb) -> App {
    let app = serve(db.store.clone(), true).await;
    let key =
        pysaas_api::auth::admin_key_for(db.store.as_ref(), pysaas_jobs::DEFAULT_TENANT, "test")
            .await
            .unwrap();
    App {
        base: app.base.clone(),
        http: common::bearer_client(&key),
        _app: app,
        _db: Some(db),
    }
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        read(r).await
    }
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.unwrap()).await
    }
    /// A client with a new `jobs:read` key of the app's tenant.
    async fn reader(&self) -> reqwest::Client {
        let (_, key) = self
            .post(
                "/v1/api-keys",
                json!({"name": "reader", "scopes": ["jobs:read"]}),
            )
            .await;
        common::bearer_client(key["key"].as_str().unwrap())
    }
    async fn wait_state(&self, id: &str, state: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (_, job) = self.get(&format!("/v1/jobs/{id}")).await;
            if job["state"] == state {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} not {state} within {within:?}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reads a response; every error must be problem+json with the status repeated in the body.
async fn read(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(content_type, "application/problem+json", "{status}: {body}");
        assert_eq!(body["status"], status.as_u16(), "{body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    (status, body)
}

async fn submitted_noop_succeeds_quickly(app: App) {
    let r = app
        .http
        .post(app.url("/v1/jobs"))
        .header("x-request-id", "req-from-client-42")
        .json(&json!({"kind": "system.noop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["x-request-id"], "req-from-client-42");
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = app
        .wait_state(&id, "succeeded", Duration::from_secs(5))
        .await;
    assert_eq!(job["attempts"], 1);
    assert_eq!(
        job["request_id"], "req-from-client-42",
        "the request id travels with the job"
    );
    // Without one, the gateway generates it, returns it and records it.
    let r = app
        .http
        .post(app.url("/v1/jobs"))
        .json(&json!({"kind": "system.noop"}))
        .send()
        .await
        .unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(
        r.json::<Value>().await.unwrap()["request_id"],
        generated.as_str()
    );
    for field in [
        "id",
        "kind",
        "queue",
        "state",
        "priority",
        "attempts",
        "max_attempts",
        "payload",
        "result",
        "last_error",
        "created_at",
        "run_at",
        "started_at",
        "finished_at",
    ] {
        assert!(job.get(field).is_some(), "missing {field}");
    }
}

async fn bad_input_gets_precise_problems(app: App) {
    let (s, b) = app.post("/v1/jobs", json!({"kind": "nope"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        b["known_kinds"]
            .as_array()
            .unwrap()
            .contains(&json!("system.noop")),
        "{b}"
    );
    let (s, b) = app
        .post(
            "/v1/jobs",
            json!({"kind": "system.sleep", "payload": {"ms": "soon"}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["errors"][0]["path"], "payload.ms", "{b}");
    let (s, b) = app
        .post(
            "/v1/jobs",
            json!({"kind": "notification.webhook", "payload": {"url": "http://x"}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["detail"].as_str().unwrap().contains("body"), "{b}");
    let (s, _) = app.post_raw("/v1/jobs", "{\"kind\": ").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = app
        .post_raw("/v1/jobs", "{\"kind\": \"system.noop\"} trailing")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, b) = app
        .post("/v1/jobs", json!({"kind": "system.noop", "priority": 42}))
        .await;
    assert_eq!(
        (s, b["errors"][0]["path"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("priority"))
    );
    let (s, _) = app
        .post(
            "/v1/jobs",
            json!({"kind": "system.noop", "queue": "Bad Queue!"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, b) = app
        .post("/v1/jobs", json!({"kind": "system.noop", "prio": 1}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let big = format!(
        "{{\"kind\":\"system.noop\",\"payload\":{{}},\"queue\":\"{}\"}}",
        "x".repeat(1024 * 1024 + 10)
    );
    let (s, _) = app.post_raw("/v1/jobs", big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _) = app.get(&format!("/v1/jobs/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.get("/v1/jobs/not-a-uuid").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.get("/v1/jobs?limit=1001").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = app.get("/v1/jobs?state=done").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = app.get("/v1/jobs?cursor=zzz").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = app.get("/v1/nothing-here").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let r = app.http.delete(app.url("/v1/jobs")).send().await.unwrap();
    assert_eq!(read(r).await.0, StatusCode::METHOD_NOT_ALLOWED);
}

async fn batches_are_all_or_nothing(app: App) {
    let jobs: Vec<Value> = (0..1001).map(|_| json!({"kind": "system.noop"})).collect();
    let (s, _) = app.post("/v1/jobs/batch", json!({ "jobs": jobs })).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = app.post("/v1/jobs/batch", json!({ "jobs": [] })).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, b) = app
        .post("/v1/jobs/batch", json!({"jobs": [{"kind": "system.noop", "queue": "batchq"}, {"kind": "system.sleep", "payload": {}}]}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["errors"][0]["index"], 1, "{b}");
    assert_eq!(b["errors"][0]["path"], "jobs[1].payload", "{b}");
    let (_, page) = app.get("/v1/jobs?queue=batchq").await;
    assert_eq!(
        page["jobs"].as_array().unwrap().len(),
        0,
        "nothing of a rejected batch is written"
    );
    let jobs: Vec<Value> = (0..1000)
        .map(|i| json!({"kind": "system.noop", "queue": "bulk", "payload": {}, "priority": i % 10}))
        .collect();
    let (s, b) = app.post("/v1/jobs/batch", json!({ "jobs": jobs })).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(b["jobs"].as_array().unwrap().len(), 1000);
    // Keyset pagination walks every job once.
    let mut cursor = String::new();
    let mut seen = std::collections::HashSet::new();
    loop {
        let (s, page) = app
            .get(&format!("/v1/jobs?queue=bulk&limit=300{cursor}"))
            .await;
        assert_eq!(s, StatusCode::OK);
        for j in page["jobs"].as_array().unwrap() {
            assert!(seen.insert(j["id"].as_str().unwrap().to_owned()));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 1000);
    let (_, queues) = app.get("/v1/queues").await;
    let bulk = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "bulk")
        .expect("bulk queue")
        .clone();
    assert_eq!(
        bulk["counts"]["queued"], 1000,
        "no worker consumes `bulk`: {bulk}"
    );
    assert!(bulk["oldest_queued_age_seconds"].as_f64().unwrap() >= 0.0);
}

async fn idempotency_key_returns_the_same_job(app: App) {
    let send = |payload: Value| {
        app.http
            .post(app.url("/v1/jobs"))
            .header("Idempotency-Key", "charge-7")
            .json(&json!({"kind": "system.sleep", "payload": payload}))
            .send()
    };
    let first = send(json!({"ms": 1})).await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let again = send(json!({"ms": 1})).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    let (s, _) = read(send(json!({"ms": 2})).await.unwrap()).await;
    assert_eq!(s, StatusCode::CONFLICT, "same key, different job");
    let (_, page) = app.get("/v1/jobs?kind=system.sleep").await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
}

async fn cancel_retry_and_failures(app: App) {
    // Retries with backoff until success.
    let (_, job) = app
        .post(
            "/v1/jobs",
            json!({"kind": "system.fail", "payload": {"times": 2}}),
        )
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let done = app
        .wait_state(&id, "succeeded", Duration::from_secs(10))
        .await;
    assert_eq!(done["attempts"], 3);
    // The success clears last_error; the failed attempts stay in `errors`.
    assert!(done["last_error"].is_null(), "{done}");
    let errors = done["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{done}");
    assert_eq!(errors[1]["attempt"], 2);
    assert!(errors[1]["error"]
        .as_str()
        .unwrap()
        .contains("failing attempt 2"));
    // The history holds every attempt: two failed, then the one that succeeded, each timed.
    let history = done["history"].as_array().unwrap();
    assert_eq!(
        history
            .iter()
            .map(|a| (
                a["attempt"].as_i64().unwrap(),
                a["outcome"].as_str().unwrap()
            ))
            .collect::<Vec<_>>(),
        [(1, "failed"), (2, "failed"), (3, "succeeded")],
        "{done}"
    );
    assert!(
        history
            .iter()
            .all(|a| a["duration_ms"].as_i64().is_some() && a["worker_id"].is_string()),
        "{done}"
    );
    assert!(history[2]["error"].is_null() && history[0]["error"].is_string());
    // The handler's detail stays with its attempt.
    assert_eq!(
        history[0]["detail"],
        json!({"attempt": 1, "planned_failures": 2}),
        "{done}"
    );
    assert_eq!(history[1]["detail"]["attempt"], 2, "{done}");
    // Dead after max attempts, then a manual retry runs it again.
    let (_, job) = app
        .post(
            "/v1/jobs",
            json!({"kind": "system.fail", "payload": {"times": 5}, "max_attempts": 2}),
        )
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    app.wait_state(&id, "dead", Duration::from_secs(10)).await;
    let (s, _) = app.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "cancel of a finished job");
    let (s, job) = app.post(&format!("/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!((s, job["state"].clone()), (StatusCode::OK, json!("queued")));
    let again = app.wait_state(&id, "dead", Duration::from_secs(10)).await;
    assert_eq!(again["attempts"], 3);
    // A scheduled job can be cancelled and never runs.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (s, job) = app
        .post("/v1/jobs", json!({"kind": "system.noop", "run_at": later}))
        .await;
    assert_eq!(
        (s, job["state"].clone()),
        (StatusCode::ACCEPTED, json!("scheduled"))
    );
    let id = job["id"].as_str().unwrap();
    let (s, job) = app.post(&format!("/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(
        (s, job["state"].clone()),
        (StatusCode::CONFLICT, json!("scheduled"))
    );
    let (s, job) = app.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(
        (s, job["state"].clone()),
        (StatusCode::OK, json!("cancelled"))
    );
    let (s, _) = app
        .post(
            &format!("/v1/jobs/{}/cancel", uuid::Uuid::now_v7()),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A running job can be cancelled; its worker stops it.
    let (_, job) = app
        .post(
            "/v1/jobs",
            json!({"kind": "system.sleep", "payload": {"ms": 50000}}),
        )
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    app.wait_state(&id, "running", Duration::from_secs(2)).await;
    let (s, _) = app.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.get(&format!("/v1/jobs/{id}")).await.1["state"],
        "cancelled"
    );
}

/// Bulk actions by filter: retry the dead, cancel the scheduled, delete the finished; bounded per
/// request, counting what changed, never across tenants, and bad input is a precise 422.
async fn bulk_actions_by_filter(app: App) {
    let mut dead = Vec::new();
    for _ in 0..3 {
        let body = json!({"kind": "system.fail", "queue": "default", "payload": {"times": 9}, "max_attempts": 1});
        dead.push(
            app.post("/v1/jobs", body).await.1["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    for _ in 0..2 {
        app.post(
            "/v1/jobs",
            json!({"kind": "system.noop", "queue": "default", "run_at": later}),
        )
        .await;
    }
    for id in &dead {
        app.wait_state(id, "dead", Duration::from_secs(10)).await;
    }
    let bulk = |body: Value| app.post("/v1/jobs/bulk", body);
    let (s, r) =
        bulk(json!({"filter": {"state": "dead", "queue": "default"}, "action": "retry"})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (
            r["matched"].clone(),
            r["changed"].clone(),
            r["more"].clone()
        ),
        (json!(3), json!(3), json!(false))
    );
    for id in &dead {
        let job = app.wait_state(id, "dead", Duration::from_secs(10)).await;
        assert_eq!(job["attempts"], 2, "{job}");
    }
    // By payload: only jobs whose payload holds the members (numbers as stored), newest first.
    let by_payload = |times: Value, limit: u64| json!({"filter": {"state": "dead", "payload": {"times": times}}, "action": "retry", "limit": limit});
    let (_, r) = bulk(by_payload(json!(8), 10)).await;
    assert_eq!(r["matched"], json!(0), "{r}");
    let (s, r) = bulk(by_payload(json!(9.0), 1)).await;
    assert_eq!(
        (s, r["matched"].clone(), r["changed"].clone()),
        (StatusCode::OK, json!(1), json!(1)),
        "{r}"
    );
    let job = app
        .wait_state(&dead[2], "dead", Duration::from_secs(10))
        .await;
    assert_eq!(job["attempts"], 3, "the newest was retried: {job}");
    let picked = json!({"filter": {"ids": [dead[1]], "payload": {"times": 8}}, "action": "retry"});
    assert_eq!(bulk(picked).await.1["matched"], json!(0));
    let picked =
        json!({"filter": {"ids": [dead[1]], "payload": {"times": 9.0}}, "action": "retry"});
    assert_eq!(
        bulk(picked).await.1["matched"],
        json!(1),
        "selected and holding it"
    );
    let job = app
        .wait_state(&dead[1], "dead", Duration::from_secs(10))
        .await;
    assert_eq!(job["attempts"], 3, "{job}");
    // Another tenant's bulk action finds none of these jobs.
    let store = app._db.as_ref().unwrap().store.clone();
    let other_key = pysaas_api::auth::admin_key_for(store.as_ref(), "other", "t")
        .await
        .unwrap();
    let other = common::bearer_client(&other_key);
    let delete_all = json!({"filter": {}, "action": "delete"});
    let r = common::json_of(other.post(app.url("/v1/jobs/bulk")).json(&delete_all)).await;
    assert_eq!(
        (r["matched"].clone(), r["changed"].clone()),
        (json!(0), json!(0)),
        "{r}"
    );
    let (_, r) =
        bulk(json!({"filter": {"state": "scheduled", "queue": "default"}, "action": "cancel"}))
            .await;
    assert_eq!(
        (r["matched"].clone(), r["changed"].clone()),
        (json!(2), json!(2)),
        "{r}"
    );
    // Selected rows: only the ids named, and none of another tenant's.
    let picked = json!({"filter": {"ids": [dead[0]]}, "action": "delete"});
    let r = common::json_of(other.post(app.url("/v1/jobs/bulk")).json(&picked)).await;
    assert_eq!(
        r["matched"],
        json!(0),
        "another tenant's ids match nothing: {r}"
    );
    let (s, r) = bulk(picked).await;
    assert_eq!(
        (s, r["matched"].clone(), r["changed"].clone()),
        (StatusCode::OK, json!(1), json!(1)),
        "{r}"
    );
    assert_eq!(
        app.get(&format!("/v1/jobs/{}", dead[0])).await.0,
        StatusCode::NOT_FOUND
    );
    // Bounded: two at a time, `more` until none is left.
    let (_, r) =
        bulk(json!({"filter": {"queue": "default"}, "action": "delete", "limit": 2})).await;
    assert_eq!(
        (r["changed"].clone(), r["more"].clone()),
        (json!(2), json!(true)),
        "{r}"
    );
    let (_, r) = bulk(json!({"filter": {"queue": "default"}, "action": "delete"})).await;
    assert_eq!(
        (r["changed"].clone(), r["more"].clone()),
        (json!(2), json!(false)),
        "{r}"
    );
    // A state the action does not apply to matches nothing.
    for body in [
        json!({"filter": {"state": "queued"}, "action": "retry"}),
        json!({"filter": {"state": "dead"}, "action": "cancel"}),
    ] {
        let (s, r) = bulk(body.clone()).await;
        assert_eq!(
            (s, r["matched"].clone()),
            (StatusCode::OK, json!(0)),
            "{body} -> {r}"
        );
    }
    let (_, page) = app.get("/v1/jobs?queue=default").await;
    assert_eq!(page["jobs"], json!([]), "{page}");
    for (body, path) in [
        (json!({"filter": {}, "action": "explode"}), "action"),
        (
            json!({"filter": {}, "action": "retry", "limit": 0}),
            "limit",
        ),
        (
            json!({"filter": {"state": "lost"}, "action": "retry"}),
            "filter.state",
        ),
        (
            json!({"filter": {"ids": ["not-a-uuid"]}, "action": "retry"}),
            "filter.ids[0]",
        ),
        (
            json!({"filter": {"payload": {"a": {"b": 1}}}, "action": "retry"}),
            "filter.payload",
        ),
        (
            json!({"filter": {"payload": [1]}, "action": "retry"}),
            "filter.payload",
        ),
    ] {
        let (s, b) = bulk(body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {b}");
        assert_eq!(field(&b), path, "{body} -> {b}");
    }
}

/// Running workers are listed with their queues and capacity, to admins only.
async fn workers_are_listed_for_admins(app: App) {
    // The worker registers itself as it starts, which on a loaded machine may follow the API.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (s, list) = loop {
        let (s, list) = app.get("/v1/workers").await;
        if s != StatusCode::OK
            || list["workers"].as_array().is_some_and(|w| !w.is_empty())
            || std::time::Instant::now() > deadline
        {
            break (s, list);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(s, StatusCode::OK, "{list}");
    let worker = &list["workers"][0];
    assert_eq!(worker["status"], "live", "{list}");
    assert_eq!(
        worker["queues"],
        json!(["default", "notifications"]),
        "{list}"
    );
    assert!(worker["concurrency"].as_i64().unwrap() >= 1, "{list}");
    assert_eq!(worker["pid"], i64::from(std::process::id()), "{list}");
    let reader = app.reader().await;
    let r = reader.get(app.url("/v1/workers")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// The operator pauses a queue: its jobs wait (shown `paused` on every tenant's queue list), and
/// run once it is resumed; nobody else may pause one; a bad name is 422.
async fn queues_are_paused_and_resumed(app: App) {
    let (s, paused) = app
        .send(reqwest::Method::POST, "/v1/queues/default/pause", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{paused}");
    assert_eq!(paused["paused"], true, "{paused}");
    assert!(
        paused["paused_by"].as_str().unwrap().starts_with("key "),
        "{paused}"
    );
    // Pausing again keeps the first pause.
    let (_, again) = app
        .send(reqwest::Method::POST, "/v1/queues/default/pause", None)
        .await;
    assert_eq!(again["paused_at"], paused["paused_at"], "{again}");
    let (_, list) = app.get("/v1/queues").await;
    let default = list["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .cloned()
        .unwrap_or_else(|| panic!("a paused queue is listed before it has jobs: {list}"));
    assert_eq!(default["paused"], true, "{list}");
    // Workers see a pause within a second.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (s, job) = app.post("/v1/jobs", json!({"kind": "system.noop"})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, still) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(
        still["state"], "queued",
        "a paused queue's job ran: {still}"
    );

    let (s, resumed) = app
        .send(reqwest::Method::POST, "/v1/queues/default/resume", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{resumed}");
    assert_eq!(
        (&resumed["paused"], &resumed["paused_at"]),
        (&json!(false), &Value::Null),
        "{resumed}"
    );
    app.wait_state(id, "succeeded", Duration::from_secs(10))
        .await;

    let (s, bad) = app
        .send(
            reqwest::Method::POST,
            "/v1/queues/Not%20A%20Queue/pause",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert!(
        bad["detail"].as_str().unwrap().contains("queue name"),
        "{bad}"
    );

    // Neither a reader nor another tenant's admin may pause what every tenant shares.
    let reader = app.reader().await;
    let store = &app._db.as_ref().unwrap().store;
    let other = pysaas_api::auth::admin_key_for(store.as_ref(), "acme", "test")
        .await
        .unwrap();
    for who in [reader, common::bearer_client(&other)] {
        let r = who
            .post(app.url("/v1/queues/default/pause"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "a clear error"
        );
    }
    let (_, list) = app.get("/v1/queues").await;
    assert!(
        list["queues"]
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["paused"] == false),
        "{list}"
    );
}

/// The overview's statistics: what the workers finished, per minute and per queue, with the
/// wait from due to start; another tenant's are apart; a bad window is a problem.
async fn stats_follow_finished_attempts(app: App) {
    for _ in 0..3 {
        app.post("/v1/jobs", json!({"kind": "system.noop"})).await;
    }
    let (_, dead) = app
        .post(
            "/v1/jobs",
            json!({"kind": "system.fail", "payload": {"times": 9}, "max_attempts": 1}),
        )
        .await;
    app.wait_state(
        dead["id"].as_str().unwrap(),
        "dead",
        Duration::from_secs(10),
    )
    .await;
    // Workers flush their counts every few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    let stats = loop {
        let (s, stats) = app.get("/v1/stats").await;
        assert_eq!(s, StatusCode::OK, "{stats}");
        let sum = |field: &str| {
            stats["series"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[field].as_i64().unwrap())
                .sum::<i64>()
        };
        if (sum("succeeded"), sum("failed")) == (3, 1) {
            break stats;
        }
        assert!(
            Instant::now() < deadline,
            "statistics never showed the jobs: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(stats["series"].as_array().unwrap().len(), 60, "{stats}");
    assert_eq!(stats["step_seconds"], 60);
    let last = stats["series"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|p| p["succeeded"].as_i64() > Some(0))
        .unwrap();
    assert!(last["wait_p95_ms"].as_u64().is_some(), "{stats}");
    let default = &stats["queues"][0];
    assert_eq!(default["queue"], "default", "{stats}");
    assert_eq!(default["failure_rate"], json!(0.25), "{stats}");
    assert!(stats["workers_live"].as_u64().unwrap() >= 1, "{stats}");
    let (s, day) = app.get("/v1/stats?window=day").await;
    assert_eq!(s, StatusCode::OK, "{day}");
    assert_eq!(
        (
            day["series"].as_array().unwrap().len(),
            day["step_seconds"].as_i64()
        ),
        (96, Some(900))
    );
    let (s, bad) = app.get("/v1/stats?window=week").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    let store = &app._db.as_ref().unwrap().store;
    let other = pysaas_api::auth::admin_key_for(store.as_ref(), "acme", "test")
        .await
        .unwrap();
    let theirs = common::json_of(common::bearer_client(&other).get(app.url("/v1/stats"))).await;
    assert_eq!(theirs["queues"], json!([]), "{theirs}");
    assert_eq!(
        theirs["workers_live"],
        Value::Null,
        "the operator's figure: {theirs}"
    );
}

/// Reads `stream` until an event named `event` arrives (true) or `within` passes (false).
async fn sse_event(stream: &mut reqwest::Response, event: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut text = String::new();
    while !text.contains(&format!("event: {event}\n")) {
        match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => return false,
        }
    }
    true
}

/// The event stream tells a tenant's page that its jobs changed — and never another tenant's.
async fn events_stream_live_changes(app: App) {
    let mut mine = app
        .http
        .get(app.url("/v1/events/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), StatusCode::OK);
    assert_eq!(mine.headers()["content-type"], "text/event-stream");
    assert!(sse_event(&mut mine, "ready", Duration::from_secs(5)).await);
    let store = &app._db.as_ref().unwrap().store;
    let other = pysaas_api::auth::admin_key_for(store.as_ref(), "acme", "test")
        .await
        .unwrap();
    let mut theirs = common::bearer_client(&other)
        .get(app.url("/v1/events/stream"))
        .send()
        .await
        .unwrap();
    assert!(sse_event(&mut theirs, "ready", Duration::from_secs(5)).await);
    // Let PostgreSQL's listener connect.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (s, job) = app.post("/v1/jobs", json!({"kind": "system.noop"})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert!(
        sse_event(&mut mine, "changed", Duration::from_secs(2)).await,
        "no change event within 2 s"
    );
    assert!(
        !sse_event(&mut theirs, "changed", Duration::from_millis(1500)).await,
        "another tenant heard of this tenant's job"
    );
    // A revoked key's stream ends at its next check (every 5 s), not when the page closes.
    let keys = common::json_of(common::bearer_client(&other).get(app.url("/v1/api-keys"))).await;
    let id = keys["api_keys"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["name"] == "test"))
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("the key is listed: {keys}"));
    let r = common::bearer_client(&other)
        .delete(app.url(&format!("/v1/api-keys/{id}")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let ended = tokio::time::timeout(Duration::from_secs(8), async {
        while let Ok(Some(_)) = theirs.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the revoked key's stream is still open");
    // No credential: a problem, not a stream.
    let r = reqwest::get(app.url("/v1/events/stream")).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

/// A cron expression's next fire times in its zone, before anything is saved; bad fields named.
async fn cron_expressions_are_previewed(app: App) {
    let (s, r) = app
        .post(
            "/v1/cron/preview",
            json!({"cron": "0 30 2 * * *", "timezone": "Europe/Berlin", "count": 3}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let times: Vec<chrono::DateTime<chrono::Utc>> =
        serde_json::from_value(r["next_fire_times"].clone()).unwrap();
    assert_eq!(times.len(), 3);
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{r}");
    for t in &times {
        let local = t.with_timezone(&chrono_tz::Europe::Berlin);
        assert_eq!(local.format("%H:%M:%S").to_string(), "02:30:00", "{t}");
    }
    for (body, path) in [
        (json!({"cron": "61 * * * * *"}), "cron"),
        (
            json!({"cron": "* * * * * *", "timezone": "Nowhere"}),
            "timezone",
        ),
        (json!({"cron": "* * * * * *", "count": 21}), "count"),
    ] {
        let (s, b) = app.post("/v1/cron/preview", body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {b}");
        assert_eq!(field(&b), path, "{body} -> {b}");
    }
}

/// Jobs are found by payload content (`?payload={"user_id":42}`); a bad search is a 422.
async fn jobs_are_found_by_payload(app: App) {
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mut ids = Vec::new();
    for user in [42, 7] {
        let body = json!({"kind": "notification.webhook", "run_at": later,
                          "payload": {"url": "https://example.com/h", "body": {"user": user}}});
        ids.push(app.post("/v1/jobs", body).await.1["id"].clone());
    }
    let wanted = urlencode(r#"{"url":"https://example.com/h"}"#);
    let (s, page) = app.get(&format!("/v1/jobs?payload={wanted}")).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["jobs"].as_array().unwrap().len(), 2, "{page}");
    let (_, page) = app
        .get(&format!(
            "/v1/jobs?payload={}",
            urlencode(r#"{"url":"https://other"}"#)
        ))
        .await;
    assert_eq!(page["jobs"], json!([]), "{page}");
    for bad in [
        r#"[1]"#,
        r#"{"body":{"user":42}}"#,
        r#"{"a b":1}"#,
        "not json",
    ] {
        let (s, b) = app
            .get(&format!("/v1/jobs?payload={}", urlencode(bad)))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad} -> {b}");
        assert_eq!(field(&b), "payload", "{bad} -> {b}");
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn delayed_job_starts_on_time(app: App) {
    let run_at = chrono::Utc::now() + chrono::Duration::milliseconds(700);
    let (_, job) = app
        .post(
            "/v1/jobs",
            json!({"kind": "system.noop", "run_at": run_at.to_rfc3339()}),
        )
        .await;
    assert_eq!(job["state"], "scheduled");
    let id = job["id"].as_str().unwrap().to_owned();
    let done = app
        .wait_state(&id, "succeeded", Duration::from_secs(3))
        .await;
    let started: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(done["started_at"].clone()).unwrap();
    assert!(started >= run_at, "never before run_at");
    // Promotion latency is measured by `pysaas bench`; here only "on time, not early" is checked.
    assert!(
        started - run_at < chrono::Duration::seconds(3),
        "started {} ms late",
        (started - run_at).num_milliseconds()
    );
}

async fn webhook_posts_and_retries_non_2xx(app: App) {
    use axum::routing::post;
    let hits = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let seen = hits.clone();
    let hook = axum::Router::new().route(
        "/hook",
        post(move |body: axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                let mut hits = seen.lock().unwrap();
                hits.push(body.0);
                if hits.len() == 1 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });
    let (s, job) = app.post("/v1/jobs", json!({"kind": "notification.webhook", "payload": {"url": url, "body": {"event": "paid"}}})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(job["queue"], "notifications");
    let done = app
        .wait_state(
            job["id"].as_str().unwrap(),
            "succeeded",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["result"]["status"], 204);
    assert!(done["last_error"].is_null(), "{done}");
    assert!(done["errors"][0]["error"].as_str().unwrap().contains("503"));
    assert_eq!(
        *hits.lock().unwrap(),
        vec![json!({"event": "paid"}), json!({"event": "paid"})]
    );
}

async fn health_metrics_and_openapi(app: App) {
    app.post("/v1/jobs", json!({"kind": "system.noop"})).await;
    // An unfinished job on a queue of its own (the recorder is shared by the tests in this
    // binary), so the depth gauge has something to show.
    let probe = format!("probe-{}", uuid::Uuid::new_v4().simple());
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (s, _) = app
        .post(
            "/v1/jobs",
            json!({"kind": "system.noop", "queue": probe, "run_at": later}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(
        app.get("/readyz").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scheduled = format!("pysaas_queue_depth{{queue=\"{probe}\",state=\"scheduled\"}} 1");
    for name in [
        "pysaas_jobs_enqueued_total",
        scheduled.as_str(),
        "pysaas_jobs_started_total",
        "pysaas_scheduler_leader",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    promtool_accepts(&metrics);
    let (s, doc) = app.get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/v1/jobs/{id}/retry"].is_object());
    // Both ways to authenticate are declared (Swagger UI's "Authorize"), public routes opt out.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["api_key"]["name"], "X-Api-Key", "{schemes}");
    assert!(doc["security"].as_array().unwrap().len() == 2);
    assert_eq!(
        doc["paths"]["/v1/auth/login"]["post"]["security"],
        json!([{}])
    );
    for path in [
        "/v1/auth/signup",
        "/v1/me",
        "/v1/api-keys",
        "/v1/members",
        "/.well-known/jwks.json",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    let docs = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
    let (s, kinds) = app.get("/v1/kinds").await;
    assert_eq!(s, StatusCode::OK);
    assert!(kinds["kinds"].as_array().unwrap().iter().any(
        |k| k["kind"] == "system.sleep" && k["payload_schema"]["properties"]["ms"].is_object()
    ));
}

/// `promtool check metrics` (Prometheus's own linter: format, help texts, naming) accepts the
/// exposition. `scripts/test.sh` provides promtool (PYSAAS_TEST_PROMTOOL).
fn promtool_accepts(exposition: &str) {
    use std::io::Write;
    let promtool = std::env::var("PYSAAS_TEST_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{promtool}: {e} (run scripts/test.sh, which installs it)"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The 422 problem's first field path.
fn field(body: &Value) -> &str {
    body["errors"][0]["path"].as_str().unwrap_or_default()
}

async fn schedules_are_managed_and_fired(app: App) {
    use reqwest::Method;
    let every_second = json!({"name": "every-second", "cron": "* * * * * *", "kind": "system.noop", "misfire": "catch_up"});
    // Invalid input: 422 naming the field; nothing is created.
    for (body, path) in [
        (
            json!({"name": "a", "cron": "every minute", "kind": "system.noop"}),
            "cron",
        ),
        (
            json!({"name": "a", "cron": "0 * * * * *", "timezone": "Mars/Olympus", "kind": "system.noop"}),
            "timezone",
        ),
        (
            json!({"name": "a b", "cron": "0 * * * * *", "kind": "system.noop"}),
            "name",
        ),
        (
            json!({"name": "a", "cron": "0 * * * * *", "kind": "system.sleep", "payload": {"ms": "x"}}),
            "payload.ms",
        ),
        (
            json!({"name": "a", "cron": "0 * * * * *", "kind": "system.noop", "misfire": "sometimes"}),
            "misfire",
        ),
        (
            json!({"name": "a", "cron": "0 * * * * *", "kind": "system.noop", "catch_up_max": 0}),
            "catch_up_max",
        ),
        (
            json!({"name": "a", "cron": "0 * * * * *", "kind": "system.noop", "queue": "Bad Queue"}),
            "queue",
        ),
        (
            json!({"name": "a", "cron": "0 * * * * *", "kind": "system.noop", "colour": "red"}),
            "",
        ),
    ] {
        let (s, b) = app.post("/v1/schedules", body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {b}");
        if !path.is_empty() {
            assert_eq!(field(&b), path, "{b}");
        }
    }
    let (s, b) = app
        .post(
            "/v1/schedules",
            json!({"name": "a", "cron": "0 * * * * *", "kind": "nope"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["known_kinds"].is_array());
    assert_eq!(
        app.post_raw("/v1/schedules", "{not json").await.0,
        StatusCode::BAD_REQUEST
    );
    // Only the built-in invoice run, declared by the config (source `config`).
    let builtin = app.get("/v1/schedules").await.1["schedules"].clone();
    let names: Vec<_> = builtin
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["source"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("billing.generate_invoices", "config")]);

    // Create: 201 with the next five fire times, one second apart.
    let (s, created) = app.post("/v1/schedules", every_second.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["source"], "api");
    let next: Vec<chrono::DateTime<chrono::Utc>> =
        serde_json::from_value(created["next_fire_times"].clone()).unwrap();
    assert_eq!(next.len(), 5);
    assert!(
        next.windows(2)
            .all(|w| w[1] - w[0] == chrono::Duration::seconds(1)),
        "{next:?}"
    );
    assert_eq!(
        app.post("/v1/schedules", every_second).await.0,
        StatusCode::CONFLICT
    );

    // The in-process scheduler fires it: the last fire and its job show up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let fired = loop {
        let (_, s) = app.get("/v1/schedules/every-second").await;
        if s["last_job_id"].is_string() {
            break s;
        }
        assert!(Instant::now() < deadline, "never fired: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let job_id = fired["last_job_id"].as_str().unwrap();
    let (_, job) = app.get(&format!("/v1/jobs/{job_id}")).await;
    assert!(
        job["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with("schedule:every-second:"),
        "{job}"
    );
    assert_eq!(job["run_at"], fired["last_fire_at"]);

    // PATCH: a merge patch; a new cron or zone applies from now on; errors name the field.
    let (s, b) = app
        .send(
            Method::PATCH,
            "/v1/schedules/every-second",
            Some(json!({"cron": "0 30 2 * * *", "timezone": "Europe/Berlin", "kind": "system.noop", "payload": {}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["cron"].as_str(), b["timezone"].as_str()),
        (Some("0 30 2 * * *"), Some("Europe/Berlin"))
    );
    assert_eq!(b["version"], fired["version"].as_i64().unwrap() + 1);
    for t in b["next_fire_times"].as_array().unwrap() {
        let t: chrono::DateTime<chrono::Utc> = serde_json::from_value(t.clone()).unwrap();
        let local = t.with_timezone(&chrono_tz::Europe::Berlin);
        assert_eq!(local.format("%H:%M:%S").to_string(), "02:30:00", "{t}");
    }
    for (patch, path) in [
        (json!({"cron": "61 * * * * *"}), "cron"),
        (json!({"timezone": "Nowhere"}), "timezone"),
        (json!({"catch_up_max": -1}), "catch_up_max"),
        (json!({"name": "renamed"}), "name"),
        (json!({"kind": null}), "kind"),
        (json!({"payload": {"ms": 5}}), "kind"),
    ] {
        let (s, b) = app
            .send(
                Method::PATCH,
                "/v1/schedules/every-second",
                Some(patch.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{patch} -> {b}");
        if path == "kind" {
            assert!(b["detail"].as_str().unwrap().contains("kind"), "{b}");
        } else {
            assert_eq!(field(&b), path, "{patch} -> {b}");
        }
    }
    assert_eq!(
        app.send(
            Method::PATCH,
            "/v1/schedules/missing",
            Some(json!({"cron": "0 * * * * *"}))
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    // Pause, trigger by hand (a paused schedule can still be triggered), resume.
    let (s, paused) = app
        .post("/v1/schedules/every-second/pause", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (paused["paused"].clone(), paused["next_fire_times"].clone()),
        (json!(true), json!([]))
    );
    let (s, job) = app
        .post("/v1/schedules/every-second/trigger", json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert!(
        job["request_id"].is_string(),
        "a manual trigger is traced to its request: {job}"
    );
    app.wait_state(
        job["id"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(5),
    )
    .await;
    let (_, shown) = app.get("/v1/schedules/every-second").await;
    assert_eq!(shown["last_job_id"], job["id"]);
    let (s, resumed) = app
        .post("/v1/schedules/every-second/resume", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(resumed["paused"], false);
    assert_eq!(resumed["next_fire_times"].as_array().unwrap().len(), 5);
    assert_eq!(
        app.post("/v1/schedules/missing/trigger", json!({})).await.0,
        StatusCode::NOT_FOUND
    );

    // Delete.
    assert_eq!(
        app.get("/v1/schedules").await.1["schedules"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        app.send(Method::DELETE, "/v1/schedules/every-second", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/v1/schedules/every-second").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.send(Method::DELETE, "/v1/schedules/every-second", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

macro_rules! api_suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(super::spawn_app(pysaas_brokers::testing::TestDb::sqlite().await).await).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(super::spawn_app(pysaas_brokers::testing::TestDb::postgres().await).await).await })*
        }
    };
}

/// A body must be declared JSON: `text/plain` (or no type) is 415, not parsed regardless.
async fn bodies_must_be_declared_json(app: App) {
    let send = |content_type: Option<&'static str>| {
        let mut request = app
            .http
            .post(app.url("/v1/jobs"))
            .body(r#"{"kind": "system.noop"}"#);
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        async move { read(request.send().await.unwrap()).await }
    };
    let (s, b) = send(Some("text/plain")).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("text/plain"), "{b}");
    let (s, _) = send(None).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, b) = send(Some("application/json; charset=utf-8")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    // Bodiless actions need no type.
    let id = b["id"].as_str().unwrap();
    let r = app
        .http
        .post(app.url(&format!("/v1/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// A job that could never run is refused at submission, naming the field, and nothing is stored.
async fn jobs_that_can_never_run_are_refused(app: App) {
    for (payload, field) in [
        (
            json!({"kind": "notification.webhook", "payload": {"url": "ftp://files.example/x", "body": {}}}),
            "url",
        ),
        (
            json!({"kind": "notification.webhook", "payload": {"url": "not a url", "body": {}}}),
            "url",
        ),
        (
            json!({"kind": "system.sleep", "payload": {"ms": 120_000}}),
            "ms",
        ),
    ] {
        let (s, b) = app.post("/v1/jobs", payload.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{payload}: {b}");
        assert!(b.to_string().contains(field), "{b}");
    }
    let (_, page) = app.get("/v1/jobs").await;
    assert!(page["jobs"].as_array().unwrap().is_empty(), "{page}");
}

/// Errors speak the API's language (JSON types, RFC 3339), `detail` and `errors[].path` name the
/// same path, and query-string errors have the same shape as body errors.
async fn messages_speak_json_not_rust(app: App) {
    let cases = [
        (
            json!({"kind": "system.noop", "run_at": "tomorrow"}),
            "run_at",
            "RFC 3339",
        ),
        (
            json!({"kind": "system.sleep", "payload": {"ms": "x"}}),
            "payload.ms",
            "whole number",
        ),
        (
            json!({"kind": "system.noop", "priority": "high"}),
            "priority",
            "whole number",
        ),
    ];
    for (body, path, says) in cases {
        let (s, b) = app.post("/v1/jobs", body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        let detail = b["detail"].as_str().unwrap();
        assert_eq!(b["errors"][0]["path"], path, "{b}");
        assert!(
            detail.contains(&format!("`{path}`")) && detail.contains(says),
            "{b}"
        );
        for rust in [
            "u64",
            "i16",
            "struct ",
            "line 1 column",
            "invalid characters",
        ] {
            assert!(!b.to_string().contains(rust), "{rust} in {b}");
        }
    }
    // Objects only: serde would read a struct from an array, by position.
    let (s, b) = app.post_raw("/v1/jobs", "[\"system.noop\"]").await;
    assert_eq!(
        (s, b["errors"][0]["path"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(".")),
        "{b}"
    );
    let (s, b) = app
        .post("/v1/jobs", json!({"kind": "system.sleep", "payload": [5]}))
        .await;
    assert_eq!(
        (s, b["errors"][0]["path"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("payload")),
        "{b}"
    );
    // An empty filter is no filter (as a form leaves it); a bad one is a field error.
    let (s, b) = app.get("/v1/jobs?state=&kind=&queue=&cursor=").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for query in ["state=bogus", "limit=abc"] {
        let (s, b) = app.get(&format!("/v1/jobs?{query}")).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        let field = query.split('=').next().unwrap();
        assert_eq!(b["errors"][0]["path"], field, "{b}");
        assert!(
            !b["detail"]
                .as_str()
                .unwrap()
                .contains("Failed to deserialize"),
            "{b}"
        );
    }
    let (_, b) = app
        .post(
            "/v1/jobs/batch",
            json!({"jobs": [{"kind": "system.noop"}, {"kind": "nope"}]}),
        )
        .await;
    assert_eq!(
        b["detail"], "1 of the jobs is invalid; none was inserted",
        "{b}"
    );
}

/// A job for a queue no worker has ever consumed is accepted, with a warning; the queue listing
/// says which queues are consumed.
async fn unconsumed_queues_are_pointed_out(app: App) {
    let (s, job) = app
        .post(
            "/v1/jobs",
            json!({"kind": "system.noop", "queue": "nobody-here"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(
        job["warning"].as_str().unwrap().contains("nobody-here"),
        "{job}"
    );
    // The app's worker consumes `default` (it says so as it starts and every few seconds).
    let deadline = Instant::now() + Duration::from_secs(10);
    let job = loop {
        let (_, job) = app.post("/v1/jobs", json!({"kind": "system.noop"})).await;
        if job.get("warning").is_none() {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "default never seen consumed: {job}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["queue"], "default");
    let (_, list) = app.get("/v1/queues").await;
    let queue = |name: &str| {
        list["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not listed: {list}"))
    };
    assert!(queue("nobody-here")["last_consumed_at"].is_null(), "{list}");
    assert!(queue("default")["last_consumed_at"].is_string(), "{list}");
}

api_suite!(
    bulk_actions_by_filter,
    jobs_are_found_by_payload,
    cron_expressions_are_previewed,
    workers_are_listed_for_admins,
    queues_are_paused_and_resumed,
    events_stream_live_changes,
    stats_follow_finished_attempts,
    unconsumed_queues_are_pointed_out,
    messages_speak_json_not_rust,
    jobs_that_can_never_run_are_refused,
    bodies_must_be_declared_json,
    submitted_noop_succeeds_quickly,
    bad_input_gets_precise_problems,
    batches_are_all_or_nothing,
    idempotency_key_returns_the_same_job,
    cancel_retry_and_failures,
    delayed_job_starts_on_time,
    webhook_posts_and_retries_non_2xx,
    health_metrics_and_openapi,
    schedules_are_managed_and_fired,
);

/// With the store unreachable the API answers 503 problem+json promptly: never 500, never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_is_503_not_500() {
    let mut config = StoreConfig::new("postgres://postgres@127.0.0.1:1/test");
    config.acquire_timeout = Duration::from_millis(500);
    let store: Arc<dyn JobStore> = Arc::new(PgStore::connect(&config).await.unwrap());
    let served = serve(store, false).await;
    let app = App {
        base: served.base.clone(),
        // Well-formed: checking it needs the store, which is down.
        http: common::bearer_client("pk_abcdefghij_0123456789012345678901234567890123456789012"),
        _app: served,
        _db: None,
    };
    let started = Instant::now();
    let (s, b) = app.post("/v1/jobs", json!({"kind": "system.noop"})).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(app.get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.get(&format!("/v1/jobs/{}", uuid::Uuid::now_v7()))
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        app.get("/healthz").await.0,
        StatusCode::OK,
        "liveness does not depend on the store"
    );
}

/// `/metrics` names every tenant's queues and schedules, so the public port does not serve it by
/// default; `metrics_listen` does, with jobs counted as they enter `queued` by source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stay_off_the_public_port_by_default() {
    let port = common::free_port();
    let config = pysaas::Config {
        metrics_listen: Some(format!("127.0.0.1:{port}")),
        ..pysaas::Config::default()
    };
    let app = common::spawn(pysaas::App::new(config), common::api_only()).await;
    let (_, http) = app.admin_client().await.unwrap();
    let r = http
        .post(app.url("/v1/jobs"))
        .json(&json!({"kind": "system.noop", "queue": "metricsprobe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (s, b) = read(http.get(app.url("/metrics")).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert!(
        b["detail"].as_str().unwrap().contains("metrics_listen"),
        "{b}"
    );
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series =
        r#"pysaas_jobs_enqueued_total{kind="system.noop",queue="metricsprobe",source="api"} 1"#;
    assert!(text.contains(series), "{series} missing:\n{text}");
}
