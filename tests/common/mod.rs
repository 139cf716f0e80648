//! Helpers shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used)] // Each test binary uses a part; test code.

/// A loopback port free right now (for a child process to listen on).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP client that sends `key` (API key or access token) as a bearer credential.
pub(crate) fn bearer_client(key: &str) -> reqwest::Client {
    pysaas::testing::bearer_client(key).unwrap()
}

/// `jobs` without the built-in invoice runs: any scheduler a test starts fires
/// `billing.generate_invoices` into the default tenant every five minutes (the default
/// `billing.invoice_cron`), so a test that counts the jobs it made counts only those.
pub(crate) fn own_jobs(jobs: Vec<pysaas_jobs::Job>) -> Vec<pysaas_jobs::Job> {
    use pysaas_jobs::JobKind as _;
    jobs.into_iter()
        .filter(|j| j.kind != pysaas_jobs::kinds::billing::GenerateInvoices::KIND)
        .collect()
}

/// The one way the in-process tests assemble PySaaS: `app` started with `roles` by the public
/// test harness (API on port 0, fast maintenance, a temporary data dir), stopped on drop.
pub(crate) async fn spawn(app: pysaas::App, roles: pysaas::Roles) -> pysaas::testing::TestApp {
    pysaas::testing::spawn_app(app, roles).await.unwrap()
}

/// Only the API.
pub(crate) fn api_only() -> pysaas::Roles {
    pysaas::Roles {
        api: true,
        ..pysaas::Roles::default()
    }
}

/// The `pysaas` binary with `args`, on `db`'s store, quiet (warnings on stderr only), with
/// `env` set on top.
pub(crate) fn pysaas_process(
    db: &pysaas_brokers::testing::TestDb,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Child {
    use std::process::Stdio;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pysaas"));
    cmd.args(args)
        .env("PYSAAS_DATABASE_URL", &db.url)
        .env("PYSAAS_PG_SCHEMA", &db.schema)
        .env("PYSAAS_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd.spawn().expect("spawn pysaas")
}

/// Runs `tests/browser/<script>` with `args` in headless Chromium (through the playwright-core
/// in `PYSAAS_TEST_BROWSER`, installed by `scripts/test.sh`) and returns the JSON it printed.
pub(crate) async fn browse(script: &str, args: &[&str]) -> serde_json::Value {
    let modules = std::path::PathBuf::from(std::env::var("PYSAAS_TEST_BROWSER").expect(
        "PYSAAS_TEST_BROWSER: a directory whose node_modules holds playwright-core \
         (scripts/test.sh installs it and Debian's chromium)",
    ))
    .join("node_modules");
    let out = tokio::process::Command::new("node")
        .arg(format!(
            "{}/tests/browser/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args(args)
        .env("NODE_PATH", modules)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// Sends `request` and reads its JSON body.
pub(crate) async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// An `admin` client of tenant `id`, created if new (a real API key in the store).
#[allow(dead_code)] // Not every test binary uses every helper.
pub(crate) async fn tenant_client(
    store: &dyn pysaas_brokers::JobStore,
    id: &str,
) -> reqwest::Client {
    store
        .ensure_tenant(&pysaas_brokers::TenantRow {
            id: id.into(),
            name: id.into(),
            plan: "free".into(),
            created_at: chrono::Utc::now(),
        })
        .await
        .expect("create the tenant");
    let key = pysaas_api::auth::admin_key_for(store, id, "test")
        .await
        .expect("create its admin key");
    pysaas::testing::bearer_client(&key).expect("a client")
}

/// aiosmtpd on a port of its own, storing messages in a directory; stopped when dropped.
#[allow(dead_code)] // Not every test binary uses every helper.
pub(crate) struct Smtp {
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    dir: tempfile::TempDir,
    child: tokio::process::Child,
}

#[allow(dead_code)]
impl Smtp {
    /// Starts it (from `PYSAAS_TEST_PYTOOLS`).
    pub(crate) async fn start() -> Self {
        let python = std::path::PathBuf::from(std::env::var("PYSAAS_TEST_PYTOOLS").expect(
            "PYSAAS_TEST_PYTOOLS: the test tools' venv bin directory (scripts/test.sh installs aiosmtpd there)",
        ))
        .join("python");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_sink.py"))
            .args(["127.0.0.1", &port.to_string()])
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start tests/smtp_sink.py");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let ready = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .expect("aiosmtpd started in time")
            .unwrap();
        assert_eq!(ready.as_deref(), Some("ready"));
        Smtp { port, dir, child }
    }

    /// The messages delivered, in order.
    pub(crate) fn messages(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort_by_key(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u32>().ok())
        });
        files.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    /// Stops it.
    pub(crate) async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}
