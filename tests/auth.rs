//! The authentication and tenant-isolation matrix, against SQLite and PostgreSQL: the real router
//! on port 0, real signup/login, real keys.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pysaas_api::auth::{generate_pem, Auth, AuthSettings, Claims, Keyring};
use pysaas_api::ratelimit::{Limit, Limits};
use pysaas_brokers::testing::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct Server {
    base: String,
    /// Stops the API when dropped.
    _app: pysaas::testing::TestApp,
}

async fn serve(db: &TestDb, pems: &[String]) -> Server {
    serve_with(db, pems, Limits::default()).await
}

async fn serve_with(db: &TestDb, pems: &[String], limits: Limits) -> Server {
    let auth = Auth::new(Keyring::from_pems(pems).unwrap(), AuthSettings::default());
    let app = pysaas::App::new(pysaas::Config::default())
        .with_store(db.store.clone())
        .with_auth(Arc::new(auth))
        .with_limits(limits);
    let app = common::spawn(app, common::api_only()).await;
    Server {
        base: app.base.clone(),
        _app: app,
    }
}

/// Status, body (JSON, or the text as a JSON string) and headers of a response.
type Response = (StatusCode, Value, reqwest::header::HeaderMap);

/// Sends a request with an optional bearer credential; errors must be problem+json.
async fn call(
    server: &Server,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", server.base));
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_client_error() {
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/problem+json",
            "{status} {body}"
        );
    }
    (status, body, headers)
}

/// A GET with a bearer credential.
async fn get(server: &Server, path: &str, bearer: &str) -> Response {
    call(server, Method::GET, path, Some(bearer), None).await
}

/// A DELETE with a bearer credential.
async fn delete(server: &Server, path: &str, bearer: &str) -> Response {
    call(server, Method::DELETE, path, Some(bearer), None).await
}

/// A POST of `body` with a bearer credential.
async fn post(server: &Server, path: &str, bearer: &str, body: Value) -> Response {
    call(server, Method::POST, path, Some(bearer), Some(body)).await
}

/// Creates an API key named `name` with `scopes` (a JSON array).
async fn create_key(server: &Server, bearer: &str, name: &str, scopes: Value) -> Response {
    let body = json!({"name": name, "scopes": scopes});
    post(server, "/v1/api-keys", bearer, body).await
}

/// Creates a `system.noop` schedule.
async fn create_schedule(server: &Server, bearer: &str, name: &str, cron: &str) -> Response {
    let body = json!({"name": name, "cron": cron, "kind": "system.noop"});
    post(server, "/v1/schedules", bearer, body).await
}

/// A POST of `body` without credentials.
async fn anon_post(server: &Server, path: &str, body: Value) -> Response {
    call(server, Method::POST, path, None, Some(body)).await
}

/// Gives the user with `email` the `role` in the bearer's tenant.
async fn set_role(server: &Server, bearer: &str, email: &str, role: &str) -> Response {
    let body = json!({"email": email, "role": role});
    call(server, Method::PUT, "/v1/members", Some(bearer), Some(body)).await
}

async fn signup(server: &Server, email: &str) -> Value {
    let (s, tokens, _) = anon_post(
        server,
        "/v1/auth/signup",
        json!({"email": email, "password": "correct horse battery", "tenant_name": email}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{tokens}");
    let (s, tokens, _) = anon_post(
        server,
        "/v1/auth/login",
        json!({"email": email, "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    tokens
}

fn access(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_owned()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn claims(tokens: &Value) -> Value {
    let token = access(tokens);
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn submit(server: &Server, bearer: &str) -> (StatusCode, Value) {
    let (s, b, _) = post(server, "/v1/jobs", bearer, json!({"kind": "system.noop"})).await;
    (s, b)
}

/// Every bad credential is refused with 401 (and a challenge); a good one works.
async fn bad_tokens_are_refused(db: TestDb) {
    let pem = generate_pem();
    let server = serve(&db, std::slice::from_ref(&pem)).await;
    let tokens = signup(&server, "ada@example.com").await;
    let good = access(&tokens);
    assert_eq!(submit(&server, &good).await.0, StatusCode::ACCEPTED);
    let kid = Keyring::from_pems(&[&pem]).unwrap().active_kid().to_owned();
    let body = claims(&tokens);
    let [header, payload, signature]: [&str; 3] =
        good.split('.').collect::<Vec<_>>().try_into().unwrap();

    // alg none, with and without a signature.
    let none = format!(
        "{}.{payload}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid}))
    );
    // Algorithm confusion: HS256 keyed with the public key from the JWKS.
    let (_, jwks, _) = call(&server, Method::GET, "/.well-known/jwks.json", None, None).await;
    let public = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(kid.clone());
    let hs256 =
        jsonwebtoken::encode(&hs, &body, &jsonwebtoken::EncodingKey::from_secret(&public)).unwrap();
    // Tampered payload: another tenant, the original signature.
    let mut other = body.clone();
    other["tid"] = json!("t_victim");
    let tampered = format!("{header}.{}.{signature}", b64(&other));
    // Correctly signed, but expired / for another audience / another issuer.
    let ring = Keyring::from_pems(&[&pem]).unwrap();
    let resign = |change: &dyn Fn(&mut Claims)| {
        let mut c: Claims = serde_json::from_value(body.clone()).unwrap();
        change(&mut c);
        ring.sign(&c).unwrap()
    };
    let expired = resign(&|c| {
        c.iat -= 7200;
        c.exp -= 7200;
    });
    let audience = resign(&|c| c.aud = "someone-else".into());
    let issuer = resign(&|c| c.iss = "evil".into());
    // Signed by a key the server does not have.
    let stranger = Keyring::from_pems(&[generate_pem()]).unwrap();
    let foreign = stranger
        .sign(&serde_json::from_value::<Claims>(body.clone()).unwrap())
        .unwrap();

    for (case, token) in [
        ("malformed", "not-a-jwt".to_owned()),
        ("alg none", none),
        ("HS256 with the public key", hs256),
        ("tampered payload", tampered),
        ("expired", expired),
        ("wrong audience", audience),
        ("wrong issuer", issuer),
        ("unknown key", foreign),
        ("malformed API key", "pk_short".to_owned()),
        (
            "unknown API key",
            "pk_abcdefghij_0123456789012345678901234567890123456789012".to_owned(),
        ),
    ] {
        let (s, b, h) = get(&server, "/v1/jobs", &token).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{case}: {b}");
        assert!(h.get("www-authenticate").is_some(), "{case}");
    }
    let (s, _, h) = call(&server, Method::GET, "/v1/jobs", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "missing token");
    assert_eq!(
        h.get("www-authenticate").unwrap(),
        "Bearer realm=\"pysaas\""
    );
    // Public endpoints stay public.
    assert_eq!(
        call(&server, Method::GET, "/healthz", None, None).await.0,
        StatusCode::OK
    );
}

/// API keys: created with a subset of the creator's scopes, shown once, revocable at once; a
/// missing scope is 403.
async fn api_keys_and_scopes(db: TestDb) {
    let server = serve(&db, &[generate_pem()]).await;
    let owner = access(&signup(&server, "owner@example.com").await);
    let (s, created, _) = create_key(&server, &owner, "reader", json!(["jobs:read"])).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let reader = created["key"].as_str().unwrap().to_owned();
    assert!(reader.starts_with(&format!("pk_{}_", created["prefix"].as_str().unwrap())));
    let (_, listed, _) = get(&server, "/v1/api-keys", &owner).await;
    assert!(
        listed["api_keys"][0].get("key").is_none(),
        "the secret is shown once: {listed}"
    );

    // jobs:read reads but cannot write: 403 naming the scope.
    assert_eq!(get(&server, "/v1/jobs", &reader).await.0, StatusCode::OK);
    let (s, b) = submit(&server, &reader).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["required_scope"], "jobs:write");
    let (s, _, _) = get(&server, "/v1/api-keys", &reader).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b, _) = create_schedule(&server, &reader, "x", "0 * * * * *").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // The X-Api-Key header works too.
    let r = reqwest::Client::new()
        .get(format!("{}/v1/me", server.base))
        .header("x-api-key", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    assert_eq!(
        (me["kind"].as_str(), me["scopes"].clone()),
        (Some("api_key"), json!(["jobs:read"]))
    );

    // Bad scope requests.
    for (scopes, path) in [(json!(["jobs:delete"]), "scopes[0]"), (json!([]), "scopes")] {
        let (s, b, _) = create_key(&server, &owner, "x", scopes).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["errors"][0]["path"], path);
    }

    // Use is recorded (to the minute).
    let (_, listed, _) = get(&server, "/v1/api-keys", &owner).await;
    let used = listed["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == created["id"])
        .unwrap();
    assert!(used["last_used_at"].is_string(), "{used}");

    // Revocation takes effect on the next request.
    let id = created["id"].as_str().unwrap();
    let (s, _, _) = delete(&server, &format!("/v1/api-keys/{id}"), &owner).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b, _) = get(&server, "/v1/jobs", &reader).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "revoked key: {b}");
    let (s, _, _) = delete(&server, &format!("/v1/api-keys/{id}"), &owner).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Tenant A can never read, cancel, retry or even learn of tenant B's jobs and schedules.
async fn tenants_are_isolated(db: TestDb) {
    let server = serve(&db, &[generate_pem()]).await;
    let a = access(&signup(&server, "a@example.com").await);
    let b = access(&signup(&server, "b@example.com").await);
    let (s, job) = submit(&server, &b).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let id = job["id"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, format!("/v1/jobs/{id}")),
        (Method::POST, format!("/v1/jobs/{id}/cancel")),
        (Method::POST, format!("/v1/jobs/{id}/retry")),
    ] {
        let (s, body, _) = call(&server, method.clone(), &path, Some(&a), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        // The same answer as for an id that does not exist at all.
        let (s2, _, _) = call(
            &server,
            method,
            &path.replace(id, "01a2aaaa-0000-7000-8000-000000000000"),
            Some(&a),
            None,
        )
        .await;
        assert_eq!(s2, StatusCode::NOT_FOUND);
    }
    let (_, list, _) = get(&server, "/v1/jobs", &a).await;
    assert_eq!(list["jobs"], json!([]), "A lists none of B's jobs");
    let (_, queues, _) = get(&server, "/v1/queues", &a).await;
    assert_eq!(queues["queues"], json!([]), "nor counts them");
    let (_, list, _) = get(&server, "/v1/jobs", &b).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    // Schedules too.
    let (s, _, _) = create_schedule(&server, &b, "nightly", "0 0 3 * * *").await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        get(&server, "/v1/schedules/nightly", &a).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, _, _) = create_schedule(&server, &a, "nightly", "0 0 3 * * *").await;
    assert_eq!(s, StatusCode::CREATED, "names are per tenant");
}

/// Refresh tokens rotate; a reused one revokes its whole family. Login errors do not tell whether
/// the account exists, and repeated failures lock it.
async fn refresh_rotation_and_login(db: TestDb) {
    let server = serve(&db, &[generate_pem()]).await;
    let first = signup(&server, "Eve@Example.com").await;
    assert_eq!(claims(&first)["role"], "owner");
    let again = json!({"email": "eve@example.com", "password": "another long password", "tenant_name": "x"});
    let (s, b, _) = anon_post(&server, "/v1/auth/signup", again).await;
    // Signup does not reveal that the email is registered: the same answer as for a new one …
    let fresh = json!({"email": "fresh@example.com", "password": "another long password", "tenant_name": "x"});
    let (s_new, b_new, _) = anon_post(&server, "/v1/auth/signup", fresh).await;
    assert_eq!((s, &b), (s_new, &b_new));
    assert_eq!(s, StatusCode::ACCEPTED);
    // … and emails stay case-insensitive and unique: the account is untouched, the second
    // password opens nothing.
    let (s, _, _) = anon_post(
        &server,
        "/v1/auth/login",
        json!({"email": "eve@example.com", "password": "another long password"}),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "emails are case-insensitive and unique"
    );
    let (s, _, _) = anon_post(
        &server,
        "/v1/auth/login",
        json!({"email": "EVE@example.com", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b, _) = anon_post(
        &server,
        "/v1/auth/signup",
        json!({"email": "new@example.com", "password": "short", "tenant_name": "x"}),
    )
    .await;
    assert_eq!(
        (s, b["errors"][0]["path"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("password"))
    );

    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |token: String| {
        let server = &server;
        async move { anon_post(server, "/v1/auth/refresh", json!({"refresh_token": token})).await }
    };
    let (s, second, _) = refresh(rt1.clone()).await;
    assert_eq!(s, StatusCode::OK, "{second}");
    let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    assert_eq!(
        call(&server, Method::GET, "/v1/me", Some(&access(&second)), None)
            .await
            .0,
        StatusCode::OK
    );
    // rt1 again: reuse. Refused, and rt2 (same family) dies with it.
    let (s, b, _) = refresh(rt1).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("revoked"));
    assert_eq!(
        refresh(rt2).await.0,
        StatusCode::UNAUTHORIZED,
        "family revoked"
    );
    assert_eq!(
        refresh("rt_nonsense".into()).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Logout revokes the family.
    let login = |email: &str, password: &str| {
        let server = &server;
        let body = json!({"email": email, "password": password});
        async move { call(server, Method::POST, "/v1/auth/login", None, Some(body)).await }
    };
    let (s, session, _) = login("EVE@example.com", "correct horse battery").await;
    assert_eq!(s, StatusCode::OK, "{session}");
    let rt = session["refresh_token"].as_str().unwrap().to_owned();
    let (s, _, _) = anon_post(&server, "/v1/auth/logout", json!({"refresh_token": rt})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(refresh(rt).await.0, StatusCode::UNAUTHORIZED);

    // Wrong password and unknown account: the same answer.
    let (s1, wrong, _) = login("eve@example.com", "not the password").await;
    let (s2, unknown, _) = login("nobody@example.com", "not the password").await;
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(wrong["detail"], unknown["detail"]);
    // Four more failures (five in a row) lock the account: the right password fails too.
    for _ in 0..4 {
        assert_eq!(
            login("eve@example.com", "not the password").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (s, locked, _) = login("eve@example.com", "correct horse battery").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        locked["detail"], wrong["detail"],
        "a lock looks like a wrong password"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        login("eve@example.com", "correct horse battery").await.0,
        StatusCode::OK,
        "the first lock lasts 1 s"
    );
}

/// Members: owners and admins manage them; roles map to scopes.
async fn members_and_roles(db: TestDb) {
    let server = serve(&db, &[generate_pem()]).await;
    let owner = access(&signup(&server, "boss@example.com").await);
    signup(&server, "viewer@example.com").await;
    let (s, b, _) = set_role(&server, &owner, "viewer@example.com", "viewer").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["members"].as_array().unwrap().len(), 2);
    let tenant = claims(&json!({"access_token": owner}))["tid"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({
        "email": "viewer@example.com", "password": "correct horse battery", "tenant_id": tenant
    });
    let (s, session, _) = anon_post(&server, "/v1/auth/login", body).await;
    assert_eq!(s, StatusCode::OK, "{session}");
    assert_eq!(
        (session["role"].as_str(), session["tenant_id"].as_str()),
        (Some("viewer"), Some(tenant.as_str()))
    );
    let viewer = access(&session);
    assert_eq!(get(&server, "/v1/jobs", &viewer).await.0, StatusCode::OK);
    assert_eq!(submit(&server, &viewer).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&server, "/v1/members", &viewer).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, b, _) = set_role(&server, &owner, "viewer@example.com", "emperor").await;
    assert_eq!(
        (s, b["errors"][0]["path"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("role"))
    );
    // The last owner cannot leave or be demoted.
    let (_, me, _) = get(&server, "/v1/me", &owner).await;
    let owner_id = me["id"].as_str().unwrap();
    let (s, _, _) = delete(&server, &format!("/v1/members/{owner_id}"), &owner).await;
    assert_eq!(s, StatusCode::CONFLICT);
}

/// A user in two tenants lists both on `/v1/me` and switches between them with the session's
/// refresh token; a switch to a tenant they are not in (or by an API key) is refused and leaves
/// the session usable.
async fn users_switch_between_their_tenants(db: TestDb) {
    let server = serve(&db, &[generate_pem()]).await;
    let boss = access(&signup(&server, "boss@example.com").await);
    let mine = signup(&server, "ada@example.com").await;
    let (s, b, _) = set_role(&server, &boss, "ada@example.com", "member").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let home = claims(&mine)["tid"].as_str().unwrap().to_owned();
    let boss_tenant = claims(&json!({"access_token": boss}))["tid"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, me, _) = get(&server, "/v1/me", &access(&mine)).await;
    let mut listed: Vec<(String, String)> = me["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().into(),
                t["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    listed.sort();
    let mut wanted = vec![
        (home.clone(), "owner".to_owned()),
        (boss_tenant.clone(), "member".to_owned()),
    ];
    wanted.sort();
    assert_eq!(listed, wanted, "{me}");

    // Someone else's refresh token: refused, and left usable by its owner.
    let boss_session = anon_post(
        &server,
        "/v1/auth/login",
        json!({"email": "boss@example.com", "password": "correct horse battery"}),
    )
    .await
    .1;
    let (s, b, _) = post(
        &server,
        "/v1/auth/switch",
        &access(&mine),
        json!({"tenant_id": boss_tenant, "refresh_token": boss_session["refresh_token"]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, _, _) = anon_post(
        &server,
        "/v1/auth/refresh",
        json!({"refresh_token": boss_session["refresh_token"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "the owner's token still works");
    // Not a member: refused, and the refresh token is untouched.
    let (s, b, _) = post(
        &server,
        "/v1/auth/switch",
        &access(&mine),
        json!({"tenant_id": "nowhere", "refresh_token": mine["refresh_token"]}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, switched, _) = post(
        &server,
        "/v1/auth/switch",
        &access(&mine),
        json!({"tenant_id": boss_tenant, "refresh_token": mine["refresh_token"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{switched}");
    assert_eq!(
        (switched["tenant_id"].as_str(), switched["role"].as_str()),
        (Some(boss_tenant.as_str()), Some("member"))
    );
    let (_, me, _) = get(&server, "/v1/me", &access(&switched)).await;
    assert_eq!(me["tenant_id"], json!(boss_tenant), "{me}");
    // The old refresh token was exchanged: using it again is theft, and ends the family.
    let (s, _, _) = anon_post(
        &server,
        "/v1/auth/refresh",
        json!({"refresh_token": mine["refresh_token"]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // An API key cannot switch.
    let (_, key, _) = create_key(&server, &boss, "ci", json!(["jobs:read"])).await;
    let (s, b, _) = post(
        &server,
        "/v1/auth/switch",
        key["key"].as_str().unwrap(),
        json!({"tenant_id": home, "refresh_token": "rt_x"}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
}

/// Key rotation: after a new key is put first, tokens signed by the old one verify until they
/// expire (or the old key is dropped); the JWKS publishes both.
async fn rotated_keys_verify_old_tokens(db: TestDb) {
    let (old, new) = (generate_pem(), generate_pem());
    let before = serve(&db, std::slice::from_ref(&old)).await;
    let tokens = signup(&before, "rot@example.com").await;
    let token = access(&tokens);
    let rotated = serve(&db, &[new.clone(), old.clone()]).await;
    assert_eq!(get(&rotated, "/v1/me", &token).await.0, StatusCode::OK);
    let (_, jwks, _) = call(&rotated, Method::GET, "/.well-known/jwks.json", None, None).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    // New tokens are signed with the new key.
    let (_, fresh, _) = anon_post(
        &rotated,
        "/v1/auth/refresh",
        json!({"refresh_token": tokens["refresh_token"]}),
    )
    .await;
    let kid_new = Keyring::from_pems(&[&new]).unwrap().active_kid().to_owned();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(access(&fresh).split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], kid_new);
    assert_eq!(header["alg"], "EdDSA");
    let dropped = serve(&db, std::slice::from_ref(&new)).await;
    assert_eq!(
        get(&dropped, "/v1/me", &token).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&dropped, Method::GET, "/v1/me", Some(&access(&fresh)), None)
            .await
            .0,
        StatusCode::OK
    );
}

/// A burst beyond the tenant's plan gets 429 with `Retry-After` and `RateLimit-*`; an API key
/// has a limit of its own on top.
async fn bursts_are_limited(db: TestDb) {
    let limits = Limits {
        plans: [(
            "free".to_owned(),
            Limit {
                rate: 0.2,
                burst: 5,
            },
        )]
        .into(),
        default_plan: "free".into(),
        api_key: Limit {
            rate: 0.2,
            burst: 2,
        },
        ..Limits::default()
    };
    let server = serve_with(&db, &[generate_pem()], limits).await;
    let owner = access(&signup(&server, "busy@example.com").await);
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..7 {
        let (s, b, h) = get(&server, "/v1/jobs", &owner).await;
        if s == StatusCode::OK {
            assert!(
                h.get("ratelimit-limit").is_some() && h.get("ratelimit-remaining").is_some(),
                "{h:?}"
            );
        }
        statuses.push(s);
        last = Some((s, b, h));
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    // Five fit the burst (a sixth may fit if 5 s passed meanwhile: one request per 5 s).
    assert!((5..=6).contains(&ok), "{statuses:?}");
    let (s, body, h) = last.unwrap();
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry: u64 = h
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry), "{retry}");
    assert_eq!(h.get("ratelimit-remaining").unwrap(), "0");
    assert_eq!(h.get("ratelimit-limit").unwrap(), "5");

    // The API key's own limit (burst 2) bites before its tenant's.
    let other = access(&signup(&server, "keys@example.com").await);
    let (_, key, _) = create_key(&server, &other, "k", json!(["jobs:read"])).await;
    let key = key["key"].as_str().unwrap().to_owned();
    let statuses: Vec<StatusCode> = futures::future::join_all((0..4).map(|_| {
        let (server, key) = (&server, &key);
        async move { get(server, "/v1/jobs", key).await.0 }
    }))
    .await;
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count() <= 3,
        "{statuses:?}"
    );
}

/// `/v1/auth/*` is limited per client address, whatever account is tried, and a client cannot
/// dodge it with its own `X-Forwarded-For` (not trusted unless configured).
async fn auth_attempts_are_limited_per_address(db: TestDb) {
    let limits = Limits {
        auth_per_ip: Limit {
            rate: 0.2,
            burst: 3,
        },
        ..Limits::default()
    };
    let server = serve_with(&db, &[generate_pem()], limits).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/auth/login", server.base))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(
                &json!({"email": format!("user{i}@example.com"), "password": "guess guess guess"}),
            )
            .send()
            .await
            .unwrap();
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().get("retry-after").is_some());
        }
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

pysaas_brokers::each_store!(
    auth_attempts_are_limited_per_address,
    bursts_are_limited,
    bad_tokens_are_refused,
    api_keys_and_scopes,
    tenants_are_isolated,
    refresh_rotation_and_login,
    members_and_roles,
    users_switch_between_their_tenants,
    rotated_keys_verify_old_tokens,
);

/// `pysaas api` processes on one store, killed when dropped.
struct ApiProcesses {
    ports: Vec<u16>,
    children: Vec<std::process::Child>,
    _dir: tempfile::TempDir,
}

impl Drop for ApiProcesses {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `n` `pysaas api` processes on `db` with `config` (TOML) and `env`, and waits until each
/// answers.
async fn api_processes(
    db: &TestDb,
    n: usize,
    config: &str,
    env: &[(&str, String)],
) -> ApiProcesses {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("api.toml");
    std::fs::write(&config_path, config).unwrap();
    let ports: Vec<u16> = (0..n)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let children = ports
        .iter()
        .map(|port| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_pysaas"));
            cmd.args([
                "--config",
                config_path.to_str().unwrap(),
                "api",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("PYSAAS_DATABASE_URL", &db.url)
            .env("PYSAAS_PG_SCHEMA", &db.schema)
            .env("PYSAAS_DATA_DIR", dir.path())
            .env("PYSAAS_LOG", "warn")
            .stdout(Stdio::null());
            for (k, v) in env {
                cmd.env(k, v);
            }
            cmd.spawn().unwrap()
        })
        .collect();
    let processes = ApiProcesses {
        ports,
        children,
        _dir: dir,
    };
    let http = reqwest::Client::new();
    for port in &processes.ports {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "api on {port} did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    processes
}

/// Two `pysaas api` processes with the Redis-backed limiter share one budget: a burst of 5 is 5
/// in total, not 5 per process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_processes_share_the_limit_through_redis() {
    let db = TestDb::postgres().await;
    let prefix = pysaas_brokers::testing::TestRedisPrefix::new();
    let key = pysaas_api::auth::admin_key_for(db.store.as_ref(), pysaas_jobs::DEFAULT_TENANT, "t")
        .await
        .unwrap();
    let apis = api_processes(
        &db,
        2,
        "[rate_limits.free]\nrate = 0.2\nburst = 5\n",
        &[
            (
                "PYSAAS_RATE_LIMIT_BACKEND",
                pysaas_brokers::testing::redis_url(),
            ),
            ("PYSAAS_BROKER_PREFIX", prefix.prefix.clone()),
        ],
    )
    .await;
    let ports = &apis.ports;
    let http = reqwest::Client::new();
    let mut ok = [0, 0];
    for round in 0..5 {
        for (i, port) in ports.iter().enumerate() {
            let r = http
                .get(format!("http://127.0.0.1:{port}/v1/jobs"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            if r.status() == StatusCode::OK {
                ok[i] += 1;
            } else {
                assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "round {round}");
                assert!(r.headers().get("retry-after").is_some());
            }
        }
    }
    // Alone, each process would admit 5; together they admit the one budget of 5 (6 at most if a
    // 5 s refill happened mid-test).
    let total = ok[0] + ok[1];
    assert!((5..=6).contains(&total), "admitted {ok:?}");
    assert!(ok[0] > 0 && ok[1] > 0, "both processes served: {ok:?}");
}

/// API keys are cached per process, and a revocation reaches every process at once: a key
/// revoked through one `pysaas api` is refused by the other within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_fails_on_every_replica_within_a_second() {
    let db = TestDb::postgres().await;
    let admin =
        pysaas_api::auth::admin_key_for(db.store.as_ref(), pysaas_jobs::DEFAULT_TENANT, "admin")
            .await
            .unwrap();
    let apis = api_processes(&db, 2, "", &[]).await;
    let (a, b) = (apis.ports[0], apis.ports[1]);
    let http = reqwest::Client::new();
    let created: Value = common::json_of(
        http.post(format!("http://127.0.0.1:{a}/v1/api-keys"))
            .bearer_auth(&admin)
            .json(&json!({"name": "doomed", "scopes": ["jobs:read"]})),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let get = |port: u16| {
        let (http, key) = (http.clone(), key.clone());
        async move {
            http.get(format!("http://127.0.0.1:{port}/v1/jobs"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Both processes have read (and cached) the key.
    for _ in 0..3 {
        assert_eq!(get(a).await, StatusCode::OK);
        assert_eq!(get(b).await, StatusCode::OK);
    }
    let revoked = http
        .delete(format!(
            "http://127.0.0.1:{a}/v1/api-keys/{}",
            created["id"].as_str().unwrap()
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let at = std::time::Instant::now();
    assert_eq!(
        get(a).await,
        StatusCode::UNAUTHORIZED,
        "the revoking process"
    );
    loop {
        if get(b).await == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            at.elapsed() < std::time::Duration::from_secs(1),
            "the other process still accepted the key after 1 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    eprintln!(
        "revocation seen by the other process after {:?}",
        at.elapsed()
    );
}

/// `pysaas dev` on first start: the default tenant and an admin API key, printed once and kept in
/// `<data_dir>/admin.key` (0600); a restart does not print it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_bootstraps_an_admin_key_once() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let port = common::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_pysaas"))
            .args([
                "dev",
                "--data-dir",
                dir.path().to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env_remove("PYSAAS_DATABASE_URL")
            .env("PYSAAS_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        (child, format!("http://127.0.0.1:{port}"))
    };
    let stop = |mut child: std::process::Child| {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        out
    };
    let wait_up = |base: String| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while reqwest::get(format!("{base}/healthz")).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "dev did not start");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let (child, base) = start();
    wait_up(base.clone()).await;
    let path = dir.path().join("admin.key");
    let key = std::fs::read_to_string(&path).unwrap().trim().to_owned();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let me: Value = common::json_of(
        reqwest::Client::new()
            .get(format!("{base}/v1/me"))
            .bearer_auth(&key),
    )
    .await;
    assert_eq!(
        (me["tenant_id"].as_str(), me["scopes"].clone()),
        (Some("default"), json!(["admin"]))
    );
    let first = stop(child);
    assert!(first.contains(&key), "printed once: {first}");

    let (child, base) = start();
    wait_up(base).await;
    let second = stop(child);
    assert!(!second.contains(&key), "not printed again: {second}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().trim(),
        key,
        "the same key is kept"
    );
}

/// CORS answers preflights for configured origins only, and exposes the rate-limit headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_follows_the_configured_origins() {
    let db = TestDb::sqlite().await;
    let mut config = pysaas::Config::default();
    config.api.cors_origins = vec!["https://dash.example.com".into()];
    config.api.request_timeout_ms = 5_000;
    let app = pysaas::App::new(config)
        .with_store(db.store.clone())
        .with_auth(Arc::new(Auth::ephemeral()));
    let app = common::spawn(app, common::api_only()).await;
    let base = app.base.clone();
    let preflight = |origin: &'static str| {
        let base = base.clone();
        async move {
            reqwest::Client::new()
                .request(Method::OPTIONS, format!("{base}/v1/jobs"))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type",
                )
                .send()
                .await
                .unwrap()
        }
    };
    let allowed = preflight("https://dash.example.com").await;
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://dash.example.com"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let other = preflight("https://evil.example.com").await;
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let r = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .header("origin", "https://dash.example.com")
        .send()
        .await
        .unwrap();
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        exposed.contains("ratelimit-remaining") && exposed.contains("retry-after"),
        "{exposed}"
    );
}
