//! Webhook endpoints end to end, against a real HTTP receiver on a port of the test's own: the
//! signature verified with the secret the API showed once, `Retry-After` honoured, the delivery
//! log, replay, rotation, and an endpoint disabled after failures in a row with its tenant's
//! owner told. On SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::Utc;
use pysaas::testing::{bearer_client, spawn_app, TestApp};
use pysaas::{App, Config, Roles};
use pysaas_brokers::testing::TestDb;
use pysaas_brokers::{TenantRow, UserRow};
use pysaas_jobs::kinds::notification::Email;
use serde_json::{json, Value};

/// What the receiver got: when, the headers, the body.
type Received = Arc<Mutex<Vec<(Instant, HeaderMap, Vec<u8>)>>>;
/// The answers it gives next (status, Retry-After); 200 when none is left.
type Script = Arc<Mutex<VecDeque<(u16, Option<u64>)>>>;

async fn receiver() -> (String, Received, Script) {
    let received: Received = Arc::default();
    let script: Script = Arc::default();
    let (r, s) = (received.clone(), script.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (r, s) = (r.clone(), s.clone());
            async move {
                r.lock()
                    .unwrap()
                    .push((Instant::now(), headers, body.to_vec()));
                let next = s.lock().unwrap().pop_front();
                match next {
                    Some((status, retry_after)) => {
                        let mut response =
                            (StatusCode::from_u16(status).unwrap(), "not now").into_response();
                        if let Some(after) = retry_after {
                            response
                                .headers_mut()
                                .insert("retry-after", after.to_string().parse().unwrap());
                        }
                        response
                    }
                    None => (StatusCode::OK, "ok").into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received, script)
}

/// Checks `PySaaS-Signature: t=…,v1=…` over `t.body` with `secret`, as a receiver would.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(header) = headers
        .get("pysaas-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = Some(value.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (Utc::now().timestamp() - t).abs() > 300 {
        return false;
    }
    let Ok(tag) = (0..v1.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(v1.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    ring::hmac::verify(&key, &signed, &tag).is_ok()
}

async fn wait_for<T>(within: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(
    http: &reqwest::Client,
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = app.url(path);
    let mut request = match method {
        "GET" => http.get(url),
        "DELETE" => http.delete(url),
        _ => http.post(url),
    };
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sends an `order.shipped` event.
async fn shipped(http: &reqwest::Client, app: &TestApp) {
    let (status, body) = post(
        http,
        app,
        "/v1/webhooks/events",
        Some(json!({"event_type": "order.shipped"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
}

async fn post(
    http: &reqwest::Client,
    app: &TestApp,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call(http, app, "POST", path, body).await
}

async fn get(http: &reqwest::Client, app: &TestApp, path: &str) -> (u16, Value) {
    call(http, app, "GET", path, None).await
}

/// A tenant whose owner has an email (so that a disabled endpoint has someone to tell), and an
/// admin client of it.
async fn owned_tenant(app: &TestApp) -> reqwest::Client {
    let now = Utc::now();
    let tenant = TenantRow {
        id: "acme".into(),
        name: "Acme".into(),
        plan: "free".into(),
        created_at: now,
    };
    let owner = UserRow {
        id: uuid::Uuid::now_v7(),
        email: "owner@acme.example".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        failed_logins: 0,
        locked_until: None,
        created_at: now,
    };
    assert!(app.store.signup(&tenant, &owner).await.unwrap());
    let key = pysaas_api::auth::admin_key_for(app.store.as_ref(), "acme", "test")
        .await
        .unwrap();
    bearer_client(&key).unwrap()
}

async fn endpoints_get_signed_deliveries_with_a_log_replays_and_disabling(db: TestDb) {
    let (url, received, script) = receiver().await;
    let mut config = Config::default();
    config.store.url = Some(db.url.clone());
    config.store.pg_schema = db.schema.clone();
    config.worker.webhook_allow_private = true;
    config.notifications.webhook_disable_after = 3;
    config.scheduler.promote_interval_ms = 100;
    let app = spawn_app(App::new(config).with_store(db.store.clone()), Roles::all())
        .await
        .unwrap();
    let acme = owned_tenant(&app).await;

    // Bad endpoints: 422 naming the field.
    for (body, field) in [
        (
            json!({"url": "ftp://x.example/", "event_types": ["order.shipped"]}),
            "url",
        ),
        (json!({"url": url, "event_types": []}), "event_types"),
        (
            json!({"url": url, "event_types": ["Not A Type"]}),
            "event_types",
        ),
    ] {
        let (s, b) = post(&acme, &app, "/v1/webhooks/endpoints", Some(body)).await;
        assert_eq!(
            (s, b["errors"][0]["path"].as_str()),
            (422, Some(field)),
            "{b}"
        );
    }
    let (s, created) = post(
        &acme,
        &app,
        "/v1/webhooks/endpoints",
        Some(json!({"url": url, "event_types": ["order.shipped"]})),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = created["id"].as_str().unwrap().to_owned();
    // Another endpoint that takes other events only.
    let (other_url, other_received, _) = receiver().await;
    post(
        &acme,
        &app,
        "/v1/webhooks/endpoints",
        Some(json!({"url": other_url, "event_types": ["invoice.paid"]})),
    )
    .await;
    let (_, list) = get(&acme, &app, "/v1/webhooks/endpoints").await;
    assert_eq!(list["endpoints"].as_array().unwrap().len(), 2);
    assert!(
        list["endpoints"][0].get("secret").is_none(),
        "the secret is shown once"
    );

    // An event: one signed delivery, to the endpoint that takes its type.
    let (s, accepted) = post(
        &acme,
        &app,
        "/v1/webhooks/events",
        Some(json!({"event_type": "order.shipped", "data": {"order": 42}})),
    )
    .await;
    assert_eq!(s, 202, "{accepted}");
    let (_, headers, body) = wait_for(Duration::from_secs(20), "the delivery", || {
        received.lock().unwrap().first().cloned()
    })
    .await;
    assert!(verify(&secret, &headers, &body), "the signature verifies");
    assert!(
        !verify("whsec_wrong", &headers, &body),
        "and only with the secret"
    );
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["type"], "order.shipped");
    assert_eq!(sent["data"]["order"], 42);
    assert_eq!(sent["id"], accepted["event_id"]);
    assert_eq!(headers["pysaas-event-type"], "order.shipped");
    let deliveries = format!("/v1/webhooks/endpoints/{id}/deliveries");
    let log = wait_for_log(&acme, &app, &deliveries, |d| d[0]["status"] == "succeeded").await;
    assert_eq!(
        (
            log[0]["response_code"].as_i64(),
            log[0]["attempts"].as_i64()
        ),
        (Some(200), Some(1))
    );
    assert!(log[0]["latency_ms"].as_i64().is_some());
    assert!(other_received.lock().unwrap().is_empty());
    let (s, _) = post(
        &acme,
        &app,
        "/v1/webhooks/events",
        Some(json!({"event_type": "Bad"})),
    )
    .await;
    assert_eq!(s, 422);

    // Retry-After is honoured: a 503 asking for 2 s, then success.
    script.lock().unwrap().push_back((503, Some(2)));
    shipped(&acme, &app).await;
    let times = wait_for(Duration::from_secs(20), "the retried delivery", || {
        let r = received.lock().unwrap();
        (r.len() == 3).then(|| (r[1].0, r[2].0))
    })
    .await;
    assert!(
        times.1 - times.0 >= Duration::from_millis(1900),
        "waited {:?}",
        times.1 - times.0
    );
    let log = wait_for_log(&acme, &app, &deliveries, |d| d[0]["status"] == "succeeded").await;
    assert_eq!(log[0]["attempts"], 2);

    // Replay: the same event again, as a new delivery.
    let first = log[1]["id"].as_str().unwrap().to_owned();
    let (s, replay) = post(
        &acme,
        &app,
        &format!("/v1/webhooks/deliveries/{first}/replay"),
        None,
    )
    .await;
    assert_eq!(s, 202, "{replay}");
    assert_eq!(replay["replay_of"], json!(first));
    let (_, _, body) = wait_for(Duration::from_secs(20), "the replay", || {
        let r = received.lock().unwrap();
        (r.len() == 4).then(|| r[3].clone())
    })
    .await;
    let again: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(again["id"], accepted["event_id"]);

    // Three failures in a row disable the endpoint and tell its owner.
    script
        .lock()
        .unwrap()
        .extend([(500, None), (500, None), (500, None)]);
    for _ in 0..3 {
        shipped(&acme, &app).await;
    }
    let endpoint = loop_until(&acme, &app, |list| {
        let e = list["endpoints"][0].clone();
        (e["enabled"] == false).then_some(e)
    })
    .await;
    assert!(endpoint["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("3 failed deliveries"));
    // The owner's notice follows the disabling write.
    let store = app.store.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let notices = loop {
        let notices = pysaas::testing::enqueued::<Email>(store.as_ref(), "acme")
            .await
            .unwrap();
        if !notices.is_empty() || Instant::now() > deadline {
            break notices;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].payload["to"], "owner@acme.example");
    let before = received.lock().unwrap().len();
    shipped(&acme, &app).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        received.lock().unwrap().len(),
        before,
        "a disabled endpoint gets nothing"
    );

    // Enabled again with a rotated secret: deliveries are signed with the new one.
    let (_, rotated) = post(
        &acme,
        &app,
        &format!("/v1/webhooks/endpoints/{id}/rotate"),
        None,
    )
    .await;
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let (s, enabled) = post(
        &acme,
        &app,
        &format!("/v1/webhooks/endpoints/{id}/enable"),
        None,
    )
    .await;
    assert_eq!(
        (s, enabled["consecutive_failures"].as_i64()),
        (200, Some(0))
    );
    shipped(&acme, &app).await;
    let (_, headers, body) = wait_for(Duration::from_secs(20), "a delivery after enabling", || {
        let r = received.lock().unwrap();
        (r.len() > before).then(|| r[r.len() - 1].clone())
    })
    .await;
    assert!(verify(&new_secret, &headers, &body));
    assert!(!verify(&secret, &headers, &body));

    // Another tenant sees none of it.
    let globex = common::tenant_client(app.store.as_ref(), "globex").await;
    let (s, _) = get(&globex, &app, &deliveries).await;
    assert_eq!(s, 404);
    let (s, _) = post(
        &globex,
        &app,
        &format!("/v1/webhooks/deliveries/{first}/replay"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &acme,
        &app,
        "DELETE",
        &format!("/v1/webhooks/endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    app.stop().await.unwrap();
}

/// The SSRF guard holds for endpoint deliveries: with private addresses not allowed (the
/// default), an endpoint on a loopback address literal, or on a name that resolves to loopback,
/// is never called; its delivery fails for good at once, saying why, in the log. Nothing
/// reaches the receiver.
async fn endpoint_deliveries_to_private_addresses_are_refused(db: TestDb) {
    let (url, received, _) = receiver().await;
    let by_name = url.replace("127.0.0.1", "localhost");
    let mut config = Config::default();
    config.store.url = Some(db.url.clone());
    config.store.pg_schema = db.schema.clone();
    config.scheduler.promote_interval_ms = 100;
    assert!(!config.worker.webhook_allow_private, "refused by default");
    let app = spawn_app(App::new(config).with_store(db.store.clone()), Roles::all())
        .await
        .unwrap();
    let acme = owned_tenant(&app).await;
    let mut logs = Vec::new();
    for (target, event_type) in [(&url, "order.shipped"), (&by_name, "order.returned")] {
        let (s, created) = post(
            &acme,
            &app,
            "/v1/webhooks/endpoints",
            Some(json!({"url": target, "event_types": [event_type]})),
        )
        .await;
        assert_eq!(s, 201, "{created}");
        let (s, accepted) = post(
            &acme,
            &app,
            "/v1/webhooks/events",
            Some(json!({ "event_type": event_type })),
        )
        .await;
        assert_eq!(s, 202, "{accepted}");
        logs.push(format!(
            "/v1/webhooks/endpoints/{}/deliveries",
            created["id"].as_str().unwrap()
        ));
    }
    let literal = wait_for_log(&acme, &app, &logs[0], |d| d[0]["status"] == "failed").await;
    assert_eq!(literal[0]["attempts"], 1, "{literal:?}");
    assert!(
        literal[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("non-public address")),
        "{literal:?}"
    );
    let named = wait_for_log(&acme, &app, &logs[1], |d| d[0]["status"] == "failed").await;
    assert_eq!(named[0]["attempts"], 1, "{named:?}");
    assert!(
        named[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no public address")),
        "{named:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(received.lock().unwrap().is_empty(), "nothing was sent");
    app.stop().await.unwrap();
}

async fn wait_for_log(
    http: &reqwest::Client,
    app: &TestApp,
    path: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = get(http, app, path).await;
        let log = body["deliveries"].as_array().cloned().unwrap_or_default();
        if !log.is_empty() && done(&log) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the log: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn loop_until<T>(
    http: &reqwest::Client,
    app: &TestApp,
    probe: impl Fn(&Value) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, list) = get(http, app, "/v1/webhooks/endpoints").await;
        if let Some(v) = probe(&list) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endpoints_get_signed_deliveries_with_a_log_replays_and_disabling() {
        super::endpoints_get_signed_deliveries_with_a_log_replays_and_disabling(
            super::TestDb::sqlite().await,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endpoint_deliveries_to_private_addresses_are_refused() {
        super::endpoint_deliveries_to_private_addresses_are_refused(super::TestDb::sqlite().await)
            .await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endpoints_get_signed_deliveries_with_a_log_replays_and_disabling() {
        super::endpoints_get_signed_deliveries_with_a_log_replays_and_disabling(
            super::TestDb::postgres().await,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endpoint_deliveries_to_private_addresses_are_refused() {
        super::endpoint_deliveries_to_private_addresses_are_refused(
            super::TestDb::postgres().await,
        )
        .await;
    }
}
