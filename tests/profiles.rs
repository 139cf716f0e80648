//! Profiles end to end: a user's profile and preferences behind ETag / If-Match (412 on a
//! stale version), preferences respected by the in-app and email senders (transactional ones
//! sent anyway), the inbox, a data export downloaded by its user only, and an erasure that
//! leaves an audit record with no personal data. On SQLite (profiles in the store) and on
//! PostgreSQL with profiles in DynamoDB (the moto server).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::time::{Duration, Instant};

use pysaas::testing::{spawn_app, TestApp};
use pysaas::{App, Config, Roles};
use pysaas_brokers::testing::{TestDb, TestDynamo};
use pysaas_brokers::ProfileItem;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn app_on(db: &TestDb, dynamo: Option<&TestDynamo>, smtp_port: u16) -> TestApp {
    let mut config = Config::default();
    config.store.url = Some(db.url.clone());
    config.store.pg_schema = db.schema.clone();
    config.notifications.smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
    config.notifications.smtp_timeout_ms = 2_000;
    if let Some(d) = dynamo {
        config.profiles.backend = pysaas::config::ProfilesBackend::Dynamodb;
        config.profiles.dynamodb_endpoint = Some(pysaas_brokers::testing::dynamodb_url());
        config.profiles.dynamodb_table = d.table().to_owned();
    }
    spawn_app(App::new(config).with_store(db.store.clone()), Roles::all())
        .await
        .unwrap()
}

/// Signs `email` up (a tenant of their own) and returns a client with their access token.
async fn user(app: &TestApp, email: &str) -> reqwest::Client {
    let anon = reqwest::Client::new();
    let password = "correct horse battery";
    let r = anon
        .post(app.url("/v1/auth/signup"))
        .json(&json!({"email": email, "password": password, "tenant_name": email}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = anon
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tokens: Value = r.json().await.unwrap();
    common::bearer_client(tokens["access_token"].as_str().unwrap())
}

async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits a job as `client`; its id.
async fn submit(app: &TestApp, client: &reqwest::Client, kind: &str, payload: Value) -> String {
    let r = client
        .post(app.url("/v1/jobs"))
        .json(&json!({"kind": kind, "payload": payload}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{kind}");
    let body: Value = r.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn finished(app: &TestApp, client: &reqwest::Client, id: &str) -> Value {
    until("a job to finish", async || {
        let job = common::json_of(client.get(app.url(&format!("/v1/jobs/{id}")))).await;
        (job["state"] == "succeeded").then_some(job)
    })
    .await
}

async fn profiles_end_to_end(db: TestDb, dynamo: Option<TestDynamo>) {
    let smtp = common::Smtp::start().await;
    let app = app_on(&db, dynamo.as_ref(), smtp.port).await;
    let ada = user(&app, "ada@example.com").await;
    let me = common::json_of(ada.get(app.url("/v1/me"))).await;
    assert!(me["tenant_id"].is_string(), "{me}");
    let tenant = me["tenant_id"].as_str().unwrap().to_owned();
    let ada_id = me["id"].as_str().unwrap().to_owned();
    let admin = common::tenant_client(app.store.as_ref(), &tenant).await;

    // A profile never written: version 0.
    let r = ada.get(app.url("/v1/profile")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"0\"");
    let profile: Value = r.json().await.unwrap();
    assert_eq!(profile["email"], "ada@example.com");
    assert_eq!(profile["display_name"], Value::Null);
    // A write against the version read; a second against the same version is stale.
    let patch = json!({"display_name": "Ada", "timezone": "Europe/London"});
    let r = ada
        .patch(app.url("/v1/profile"))
        .header("if-match", "\"0\"")
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"1\"");
    let r = ada
        .patch(app.url("/v1/profile"))
        .header("if-match", "\"0\"")
        .json(&json!({"display_name": "Lost update"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.json::<Value>().await.unwrap()["current_version"], 1);
    // Null clears a member; no If-Match writes the latest version.
    let r = ada
        .patch(app.url("/v1/profile"))
        .json(&json!({"timezone": null, "locale": "en-GB"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["etag"], "\"2\"");
    let profile: Value = r.json().await.unwrap();
    assert_eq!(
        (
            &profile["display_name"],
            &profile["timezone"],
            &profile["locale"]
        ),
        (&json!("Ada"), &Value::Null, &json!("en-GB"))
    );
    // Bad input names the field; nothing is written.
    for (body, field) in [
        (json!({"locale": "english"}), "locale"),
        (json!({"timezone": "Mars/Olympus"}), "timezone"),
        (json!({"display_name": ""}), "display_name"),
    ] {
        let r = ada
            .patch(app.url("/v1/profile"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["errors"][0]["path"], field, "{problem}");
    }
    let r = ada
        .patch(app.url("/v1/profile"))
        .header("if-match", "3")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "an If-Match that is no ETag"
    );
    // The stored item is the one the store holds (DynamoDB or the store's table).
    let stored = app_profiles(&app, &db, dynamo.as_ref())
        .get_item(ada_id.parse().unwrap(), ProfileItem::Profile)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.data["display_name"], "Ada");
    // Profiles belong to users: an API key is refused; an admin reads members' profiles only.
    assert_eq!(
        admin
            .get(app.url("/v1/profile"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let theirs = common::json_of(admin.get(app.url(&format!("/v1/users/{ada_id}/profile")))).await;
    assert_eq!(theirs["display_name"], "Ada");
    let stranger = common::tenant_client(app.store.as_ref(), "elsewhere").await;
    let r = stranger
        .get(app.url(&format!("/v1/users/{ada_id}/profile")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Preferences: alerts in the inbox and product email are off; billing cannot be.
    let r = ada
        .put(app.url("/v1/profile/preferences"))
        .json(&json!({"opt_outs": [{"channel": "email", "category": "billing"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "billing is transactional"
    );
    let r = ada
        .put(app.url("/v1/profile/preferences"))
        .header("if-match", "\"0\"")
        .json(&json!({"opt_outs": [
            {"channel": "in_app", "category": "alerts"},
            {"channel": "email", "category": "product"}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"1\"");
    let prefs: Value = r.json().await.unwrap();
    assert_eq!(prefs["transactional"], json!(["billing", "security"]));

    // The in-app sender skips what Ada opted out of, and sends the transactional rest.
    for (category, delivered) in [("alerts", 0), ("billing", 1), ("product", 1)] {
        let id = submit(
            &app,
            &admin,
            "notification.in_app",
            json!({"category": category, "title": format!("About {category}"), "body": "…"}),
        )
        .await;
        let job = finished(&app, &admin, &id).await;
        assert_eq!(job["result"]["delivered"], delivered, "{category}: {job}");
    }
    let inbox = common::json_of(ada.get(app.url("/v1/inbox"))).await;
    assert_eq!(inbox["unread"], 2, "{inbox}");
    let titles: Vec<_> = inbox["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles, ["About product", "About billing"], "newest first");
    let first = inbox["notifications"][0]["id"].as_str().unwrap().to_owned();
    let read = common::json_of(ada.post(app.url(&format!("/v1/inbox/{first}/read")))).await;
    assert!(read["read_at"].is_string());
    let unread = common::json_of(ada.get(app.url("/v1/inbox?unread=true"))).await;
    assert_eq!(unread["notifications"].as_array().unwrap().len(), 1);
    // Another user cannot mark Ada's notifications.
    let bob = user(&app, "bob@example.com").await;
    let r = bob
        .post(app.url(&format!("/v1/inbox/{first}/read")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let all = common::json_of(ada.post(app.url("/v1/inbox/read-all"))).await;
    assert_eq!(all["marked"], 1);

    // The email sender too: a welcome (product) is skipped, a receipt (billing) is sent.
    let welcome = submit(
        &app,
        &admin,
        "notification.email",
        json!({"to": "ada@example.com", "template": "welcome", "data": {"plan": "Basic"}}),
    )
    .await;
    let job = finished(&app, &admin, &welcome).await;
    assert!(
        job["result"]["skipped"]
            .as_str()
            .unwrap()
            .contains("opted out"),
        "{job}"
    );
    let receipt = submit(
        &app,
        &admin,
        "notification.email",
        json!({"to": "ada@example.com", "template": "receipt",
               "data": {"invoice_number": "INV-1", "total": "9.00 EUR"}}),
    )
    .await;
    finished(&app, &admin, &receipt).await;
    assert_eq!(smtp.messages().len(), 1, "only the receipt was delivered");

    // A data export: built by profile.export, downloadable by Ada only.
    let r = ada
        .post(app.url("/v1/profile/exports"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let export: Value = r.json().await.unwrap();
    let export_id = export["id"].as_str().unwrap().to_owned();
    let ready = until("the export", async || {
        let e =
            common::json_of(ada.get(app.url(&format!("/v1/profile/exports/{export_id}")))).await;
        (e["status"] == "ready").then_some(e)
    })
    .await;
    let r = ada
        .get(app.url(ready["download"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["user"]["email"], "ada@example.com");
    assert_eq!(doc["profile"]["data"]["display_name"], "Ada");
    assert_eq!(
        doc["preferences"]["data"]["opt_outs"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(doc["in_app_notifications"].as_array().unwrap().len(), 2);
    assert_eq!(
        doc["emails"].as_array().unwrap().len(),
        2,
        "{}",
        doc["emails"]
    );
    assert_eq!(doc["memberships"][0]["role"], "owner");
    let r = bob
        .get(app.url(&format!("/v1/profile/exports/{export_id}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "another user's export");
    // Her export is hers in the tenant she asked in only: signed in to another tenant she is a
    // member of, she cannot download it.
    let bob_tenant = common::json_of(bob.get(app.url("/v1/me"))).await["tenant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.store
        .set_membership(&bob_tenant, ada_id.parse().unwrap(), "viewer", "test")
        .await
        .unwrap();
    let tokens: Value = reqwest::Client::new()
        .post(app.url("/v1/auth/login"))
        .json(
            &json!({"email": "ada@example.com", "password": "correct horse battery",
                      "tenant_id": bob_tenant}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ada_elsewhere = common::bearer_client(tokens["access_token"].as_str().unwrap());
    let r = ada_elsewhere
        .get(app.url(&format!("/v1/profile/exports/{export_id}/download")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "her export, from another tenant"
    );

    // Profile jobs are made by the API calls above, never submitted: nobody can name another
    // user's export or erasure.
    let r = admin
        .post(app.url("/v1/jobs"))
        .json(&json!({"kind": "profile.delete", "payload": {"erasure_id": export_id}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Erasure: everything goes; the audit record keeps counts, not who.
    let r = ada.delete(app.url("/v1/profile")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let erasure: Value = r.json().await.unwrap();
    let erasure_id = erasure["id"].as_str().unwrap().to_owned();
    let done = until("the erasure", async || {
        let e = common::json_of(admin.get(app.url(&format!("/v1/erasures/{erasure_id}")))).await;
        (e["status"] == "done").then_some(e)
    })
    .await;
    let audit = done.to_string();
    assert!(
        !audit.contains("ada") && !audit.contains(&ada_id),
        "{audit}"
    );
    assert_eq!(done["counts"]["store.users"], 1, "{audit}");
    assert_eq!(done["counts"]["store.inbox_notifications"], 2, "{audit}");
    assert_eq!(
        done["counts"]["store.job_history.notification_email"], 2,
        "the welcome and the receipt: {audit}"
    );
    let job = common::json_of(admin.get(app.url(&format!("/v1/jobs/{receipt}")))).await;
    assert_eq!(job["payload"], json!({"erased": true}), "{job}");
    assert!(!job.to_string().contains("ada@"), "{job}");
    let backend = if dynamo.is_some() {
        "dynamodb"
    } else {
        db.store.backend()
    };
    assert_eq!(
        done["counts"][format!("{backend}.profile_items")],
        2,
        "{audit}"
    );
    let profiles = app_profiles(&app, &db, dynamo.as_ref());
    for item in ProfileItem::ALL {
        assert_eq!(
            profiles
                .get_item(ada_id.parse().unwrap(), item)
                .await
                .unwrap(),
            None
        );
    }
    assert!(app
        .store
        .user_by_email("ada@example.com")
        .await
        .unwrap()
        .is_none());
    let r = reqwest::Client::new()
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the account is gone");
    smtp.stop().await;
}

/// The profile store the app uses.
fn app_profiles(
    _app: &TestApp,
    db: &TestDb,
    dynamo: Option<&TestDynamo>,
) -> std::sync::Arc<dyn pysaas_brokers::ProfileStore> {
    match dynamo {
        Some(d) => d.store.clone(),
        None => db.store.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_on_sqlite_with_profiles_in_the_store() {
    profiles_end_to_end(TestDb::sqlite().await, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_on_postgres_with_profiles_in_dynamodb() {
    profiles_end_to_end(TestDb::postgres().await, Some(TestDynamo::new().await)).await;
}

/// A TCP forwarder to `target`: its URL, and a token that stops it (listener and connections),
/// so that the server behind it is gone as far as PySaaS can tell.
async fn forwarder(target: &str) -> (String, tokio_util::sync::CancellationToken) {
    let target = target.trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        loop {
            let (mut inbound, _) = tokio::select! {
                () = s.cancelled() => return,
                accepted = listener.accept() => accepted.unwrap(),
            };
            let (target, s) = (target.clone(), s.clone());
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(target).await.unwrap();
                tokio::select! {
                    () = s.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                }
            });
        }
    });
    (url, stop)
}

/// DynamoDB going away: the API answers 503 with Retry-After, and a sender that cannot read
/// the recipient's preferences retries instead of sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_store_outage_is_a_503_and_a_retry() {
    let db = TestDb::postgres().await;
    let dynamo = TestDynamo::new().await;
    let (url, stop) = forwarder(&pysaas_brokers::testing::dynamodb_url()).await;
    let mut config = Config::default();
    config.store.url = Some(db.url.clone());
    config.store.pg_schema = db.schema.clone();
    config.profiles.backend = pysaas::config::ProfilesBackend::Dynamodb;
    config.profiles.dynamodb_endpoint = Some(url);
    config.profiles.dynamodb_table = dynamo.table().to_owned();
    config.profiles.dynamodb_timeout_ms = 500;
    let app = spawn_app(App::new(config).with_store(db.store.clone()), Roles::all())
        .await
        .unwrap();
    let ada = user(&app, "ada@example.com").await;
    assert_eq!(
        ada.get(app.url("/v1/profile"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let me = common::json_of(ada.get(app.url("/v1/me"))).await;
    let admin = common::tenant_client(app.store.as_ref(), me["tenant_id"].as_str().unwrap()).await;

    stop.cancel();
    let r = ada.get(app.url("/v1/profile")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("profile store"),
        "{problem}"
    );

    let id = submit(
        &app,
        &admin,
        "notification.in_app",
        json!({"category": "product", "title": "News"}),
    )
    .await;
    let job = until("the send to be retried", async || {
        let job = common::json_of(admin.get(app.url(&format!("/v1/jobs/{id}")))).await;
        job["last_error"].is_string().then_some(job)
    })
    .await;
    assert_ne!(job["state"], "succeeded", "{job}");
    assert!(
        job["last_error"].as_str().unwrap().contains("preferences"),
        "{job}"
    );
    let inbox = common::json_of(ada.get(app.url("/v1/inbox"))).await;
    assert_eq!(inbox["notifications"], json!([]), "nothing sent unchecked");
}
