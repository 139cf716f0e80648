//! Secrets from a real OpenBao (Vault-API compatible) dev server: a `pysaas api` process logs in
//! with AppRole (a 2 s token it must keep renewing), takes its database URL and JWT signing keys
//! from KV v2, and picks up a key rotation written to OpenBao while running.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pysaas_api::auth::{generate_pem, Keyring};
use pysaas_brokers::testing::TestDb;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn vault_addr() -> String {
    std::env::var("PYSAAS_TEST_VAULT_ADDR").unwrap_or_else(|_| "http://127.0.0.1:8200".into())
}

const ROOT: &str = "root";

async fn bao(method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/v1/{path}", vault_addr()))
        .header("X-Vault-Token", ROOT);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .expect("OpenBao is reachable (scripts/test.sh starts it)");
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(
        status.is_success() || status == StatusCode::BAD_REQUEST,
        "{path}: {status} {text}"
    );
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

struct Cleanup {
    child: Child,
    path: String,
    role: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (path, role) = (self.path.clone(), self.role.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let client = reqwest::Client::new();
                for p in [
                    format!("secret/metadata/{path}"),
                    format!("auth/approle/role/{role}"),
                    format!("sys/policies/acl/{role}"),
                ] {
                    let _ = client
                        .delete(format!("{}/v1/{p}", vault_addr()))
                        .header("X-Vault-Token", ROOT)
                        .send()
                        .await;
                }
            });
        })
        .join();
    }
}

async fn write_secret(path: &str, db: &TestDb, keys: &[&String]) {
    let pems: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
    bao(
        reqwest::Method::POST,
        &format!("secret/data/{path}"),
        Some(json!({"data": {"database_url": db.url, "jwt_signing_keys": pems.join("\n")}})),
    )
    .await;
}

fn kid(pem: &str) -> String {
    Keyring::from_pems(&[pem]).unwrap().active_kid().to_owned()
}

async fn jwks_kids(base: &str) -> Vec<String> {
    let jwks: Value = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status_of(base: &str, token: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!("{base}/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// A `pysaas api` process with no database URL and no keys of its own: both come from the
/// OpenBao secret `path`, logged in with `login` (PYSAAS_VAULT_* variables), re-read every
/// second. Its stderr goes to `dir/api.log` at `log` level. Returns once it answers.
async fn api_from_vault(
    db: &TestDb,
    dir: &std::path::Path,
    path: &str,
    login: &[(&str, &String)],
    log: &str,
) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_pysaas"))
        .args(["api", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("PYSAAS_DATABASE_URL")
        .env_remove("PYSAAS_VAULT_TOKEN")
        .env("PYSAAS_PG_SCHEMA", &db.schema)
        .env("PYSAAS_DATA_DIR", dir)
        .env("PYSAAS_VAULT_ADDR", vault_addr())
        .envs(login.iter().map(|(k, v)| (*k, v.as_str())))
        .env("PYSAAS_VAULT_PATH", path)
        .env("PYSAAS_VAULT_REFRESH_SECS", "1")
        .env("PYSAAS_LOG", log)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("api.log")).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    until("the API starts", async || {
        reqwest::get(format!("{base}/healthz")).await.is_ok()
    })
    .await;
    (child, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_database_url_come_from_openbao_and_rotate_live() {
    let db = TestDb::postgres().await;
    let unique = format!("pysaas-test-{}", uuid::Uuid::new_v4().simple());
    let (old, new) = (generate_pem(), generate_pem());
    write_secret(&unique, &db, &[&old]).await;
    // AppRole with a policy that can read only this secret, and 2 s tokens (renewed by PySaaS).
    bao(
        reqwest::Method::POST,
        "sys/auth/approle",
        Some(json!({"type": "approle"})),
    )
    .await;
    bao(reqwest::Method::PUT, &format!("sys/policies/acl/{unique}"),
        Some(json!({"policy": format!("path \"secret/data/{unique}\" {{ capabilities = [\"read\"] }}")}))).await;
    bao(
        reqwest::Method::POST,
        &format!("auth/approle/role/{unique}"),
        Some(json!({"token_policies": [unique], "token_ttl": "2s", "token_max_ttl": "10m"})),
    )
    .await;
    let role_id = bao(
        reqwest::Method::GET,
        &format!("auth/approle/role/{unique}/role-id"),
        None,
    )
    .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = bao(
        reqwest::Method::POST,
        &format!("auth/approle/role/{unique}/secret-id"),
        Some(json!({})),
    )
    .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let dir = tempfile::tempdir().unwrap();
    // No database URL and no keys here: both come from OpenBao.
    let (child, base) = api_from_vault(
        &db,
        dir.path(),
        &unique,
        &[
            ("PYSAAS_VAULT_ROLE_ID", &role_id),
            ("PYSAAS_VAULT_SECRET_ID", &secret_id),
        ],
        "warn",
    )
    .await;
    let _cleanup = Cleanup {
        child,
        path: unique.clone(),
        role: unique.clone(),
    };

    assert_eq!(
        jwks_kids(&base).await,
        vec![kid(&old)],
        "the signing key is OpenBao's"
    );
    assert!(
        !dir.path().join("jwt-signing-key.pem").exists(),
        "no key was generated locally"
    );
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/auth/signup"))
        .json(&json!({"email": "vault@example.com", "password": "correct horse battery", "tenant_name": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"email": "vault@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the database URL from OpenBao works"
    );
    let tokens: Value = r.json().await.unwrap();
    let old_token = tokens["access_token"].as_str().unwrap().to_owned();

    // Past several 2 s token lifetimes: the renewed token still reads the secret, so a
    // rotation (new key first, old kept for verification) reaches the running API.
    tokio::time::sleep(Duration::from_secs(5)).await;
    write_secret(&unique, &db, &[&new, &old]).await;
    until("the rotation is picked up", async || {
        jwks_kids(&base).await.len() == 2
    })
    .await;
    assert_eq!(
        status_of(&base, &old_token).await,
        StatusCode::OK,
        "old tokens verify until they expire"
    );
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/auth/refresh"))
        .json(&json!({"refresh_token": tokens["refresh_token"]}))
        .send()
        .await
        .unwrap();
    let fresh: Value = r.json().await.unwrap();
    let fresh_token = fresh["access_token"].as_str().unwrap().to_owned();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            fresh_token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], kid(&new), "new tokens use the new key");

    // The old key retired: its tokens stop verifying.
    write_secret(&unique, &db, &[&new]).await;
    until("the old key is dropped", async || {
        jwks_kids(&base).await == vec![kid(&new)]
    })
    .await;
    assert_eq!(status_of(&base, &old_token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&base, &fresh_token).await, StatusCode::OK);
    // The 2 s token was renewed in time, never lost and replaced by a new login.
    let log = std::fs::read_to_string(dir.path().join("api.log")).unwrap();
    assert!(!log.contains("renewal refused"), "{log}");
}

/// Vault Agent's way (the Kubernetes injector's `agent-inject-token`): a token in a file that
/// the agent keeps renewed. `vault.token_file` logs in with it and reads the secret; a file
/// holding a revoked token is refused at start with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_written_by_an_agent_logs_in() {
    let db = TestDb::postgres().await;
    let unique = format!("pysaas-test-{}", uuid::Uuid::new_v4().simple());
    let key = generate_pem();
    write_secret(&unique, &db, &[&key]).await;
    bao(reqwest::Method::PUT, &format!("sys/policies/acl/{unique}"),
        Some(json!({"policy": format!("path \"secret/data/{unique}\" {{ capabilities = [\"read\"] }}")}))).await;
    let token = bao(
        reqwest::Method::POST,
        "auth/token/create",
        Some(json!({"policies": [unique], "ttl": "10m", "no_default_policy": false})),
    )
    .await["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let check = || {
        Command::new(env!("CARGO_BIN_EXE_pysaas"))
            .args(["config", "check"])
            .env_remove("PYSAAS_DATABASE_URL")
            .env_remove("PYSAAS_VAULT_TOKEN")
            .env("PYSAAS_VAULT_ADDR", vault_addr())
            .env("PYSAAS_VAULT_TOKEN_FILE", &file)
            .env("PYSAAS_VAULT_PATH", &unique)
            .output()
            .unwrap()
    };
    let out = check();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains(&format!("url = \"{}\"", db.url)),
        "the database URL came from Vault: {printed}"
    );
    assert!(!printed.contains(&token), "the token is never printed");

    bao(
        reqwest::Method::POST,
        "auth/token/revoke",
        Some(json!({"token": token})),
    )
    .await;
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a revoked token is refused");
    assert!(stderr.contains("Vault token rejected"), "{stderr}");
    assert!(!stderr.contains(&token), "the token is never printed");
    let _ = reqwest::Client::new()
        .delete(format!("{}/v1/secret/metadata/{unique}", vault_addr()))
        .header("X-Vault-Token", ROOT)
        .send()
        .await;
    let _ = reqwest::Client::new()
        .delete(format!("{}/v1/sys/policies/acl/{unique}", vault_addr()))
        .header("X-Vault-Token", ROOT)
        .send()
        .await;
}

/// A running process follows the agent's file: the agent logs in again and rewrites the token
/// (the old one revoked), and the process reads the secret with the new one — a key rotated
/// after the switch reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_process_takes_up_the_token_the_agent_rewrites() {
    let db = TestDb::postgres().await;
    let unique = format!("pysaas-test-{}", uuid::Uuid::new_v4().simple());
    let (old, new) = (generate_pem(), generate_pem());
    write_secret(&unique, &db, &[&old]).await;
    bao(reqwest::Method::PUT, &format!("sys/policies/acl/{unique}"),
        Some(json!({"policy": format!("path \"secret/data/{unique}\" {{ capabilities = [\"read\"] }}")}))).await;
    let token = async || {
        bao(
            reqwest::Method::POST,
            "auth/token/create",
            Some(json!({"policies": [unique], "ttl": "10m"})),
        )
        .await["auth"]["client_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first = token().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, &first).unwrap();
    let file_env = file.to_str().unwrap().to_owned();
    let (child, base) = api_from_vault(
        &db,
        dir.path(),
        &unique,
        &[("PYSAAS_VAULT_TOKEN_FILE", &file_env)],
        "info",
    )
    .await;
    let _cleanup = Cleanup {
        child,
        path: unique.clone(),
        role: unique.clone(),
    };
    assert_eq!(jwks_kids(&base).await, vec![kid(&old)]);

    // The agent's new login: a new token in the file, the old one revoked.
    let second = token().await;
    std::fs::write(&file, format!("{second}\n")).unwrap();
    bao(
        reqwest::Method::POST,
        "auth/token/revoke",
        Some(json!({"token": first})),
    )
    .await;
    write_secret(&unique, &db, &[&new, &old]).await;
    let log = dir.path().join("api.log");
    until("the rotated key, read with the new token", async || {
        let kids = jwks_kids(&base).await;
        kids.len() == 2 && kids.contains(&kid(&new))
    })
    .await;
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        !log.contains(&first) && !log.contains(&second),
        "tokens are never logged"
    );
}
