//! The API client commands through the built binary: flags in any position, human and JSON
//! output, one-line errors with exit codes by class.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::process::{Command, Output};

use serde_json::Value;

fn pysaas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pysaas"))
        .args(args)
        .env_remove("PYSAAS_API")
        .env_remove("PYSAAS_API_KEY")
        .env_remove("PYSAAS_CONFIG")
        // Errors must stay one line even when the environment asks for backtraces.
        .env("RUST_BACKTRACE", "1")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Asserts the exit code and that stderr is one `error: …` line (no JSON body, no backtrace);
/// returns that line.
fn fails_with(out: &Output, code: i32) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(
        !stderr.contains('{') && !stderr.contains("backtrace"),
        "{stderr}"
    );
    lines[0].to_owned()
}

/// The whole app on a fresh SQLite database, and an admin key for it.
async fn running_app() -> (pysaas::testing::TestApp, String) {
    let app = pysaas::testing::spawn_app(
        pysaas::App::new(pysaas::Config::default()),
        pysaas::Roles::all(),
    )
    .await
    .unwrap();
    let (key, _) = app.admin_client().await.unwrap();
    (app, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_print_tables_json_and_one_line_errors() {
    let (app, key) = running_app().await;
    let base = app.base.clone();
    let (b, k) = (base.as_str(), key.as_str());

    // Flags after the subcommand, as after the command group.
    let submitted = pysaas(&[
        "enqueue",
        "system.noop",
        "--api",
        b,
        "--api-key",
        k,
        "-o",
        "json",
    ]);
    assert!(submitted.status.success(), "{}", text(&submitted.stderr));
    let job: Value = serde_json::from_slice(&submitted.stdout).unwrap();
    let id = job["id"].as_str().unwrap().to_owned();

    let listed = pysaas(&["jobs", "list", "--api", b, "--api-key", k]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let table = text(&listed.stdout);
    let header = table.lines().next().unwrap();
    for column in ["ID", "KIND", "QUEUE", "STATE", "ATTEMPTS", "AGE"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("system.noop")),
        "{table}"
    );

    let as_json = pysaas(&[
        "jobs",
        "--api-key",
        k,
        "list",
        "--api",
        b,
        "--output",
        "json",
    ]);
    assert!(as_json.status.success(), "{}", text(&as_json.stderr));
    let page: Value = serde_json::from_slice(&as_json.stdout).unwrap();
    assert!(page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["id"] == id.as_str()));

    let shown = pysaas(&["jobs", "show", &id, "--api", b, "--api-key", k]);
    assert!(shown.status.success());
    let fields = text(&shown.stdout);
    assert!(
        fields
            .lines()
            .any(|l| l.starts_with("kind") && l.ends_with("system.noop")),
        "{fields}"
    );

    // Schedules as a table, with the next fire time.
    let created = pysaas(&[
        "schedules",
        "create",
        "nightly",
        "--cron",
        "0 0 3 * * *",
        "--kind",
        "system.noop",
        "--api",
        b,
        "--api-key",
        k,
    ]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let schedules = text(&pysaas(&["schedules", "list", "--api", b, "--api-key", k]).stdout);
    let row = schedules
        .lines()
        .find(|l| l.starts_with("nightly"))
        .unwrap();
    assert!(
        row.contains("0 0 3 * * *") && row.contains("T03:00:00"),
        "{schedules}"
    );

    // Not found: 3.
    let missing = pysaas(&[
        "jobs",
        "show",
        "0192c0de-0000-7000-8000-000000000000",
        "--api",
        b,
        "--api-key",
        k,
    ]);
    let line = fails_with(&missing, 3);
    assert!(line.to_lowercase().contains("not found"), "{line}");

    // Invalid payload: 2, naming the field.
    let invalid = pysaas(&[
        "enqueue",
        "system.sleep",
        "--payload",
        r#"{"ms":"x"}"#,
        "--api",
        b,
        "--api-key",
        k,
    ]);
    let line = fails_with(&invalid, 2);
    assert!(line.contains("ms"), "{line}");

    // A bad key: 4, saying where the CLI looked.
    let dir = tempfile::tempdir().unwrap();
    let bad = pysaas(&[
        "jobs",
        "list",
        "--api",
        b,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let line = fails_with(&bad, 4);
    assert!(
        line.contains("looked for a credential") && line.contains("admin.key"),
        "{line}"
    );

    // Unreachable API: 5.
    let down = pysaas(&[
        "jobs",
        "list",
        "--api",
        "http://127.0.0.1:1",
        "--api-key",
        k,
    ]);
    let line = fails_with(&down, 5);
    assert!(line.contains("cannot reach"), "{line}");

    // Bad usage: clap's 2.
    assert_eq!(pysaas(&["jobs", "show"]).status.code(), Some(2));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_a_key_and_watch_follows_a_job() {
    let (app, key) = running_app().await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials.toml");
    let empty = dir.path().join("no-dev-here");
    let with_credentials = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pysaas"))
            .args(args)
            .args(["--api", &app.base, "--data-dir", empty.to_str().unwrap()])
            .env_remove("PYSAAS_API_KEY")
            .env("PYSAAS_CREDENTIALS", &credentials)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };

    // Not logged in yet: 4, naming the credentials file among the places looked at.
    let line = fails_with(&with_credentials(&["jobs", "list"]), 4);
    assert!(line.contains("credentials.toml"), "{line}");

    // A wrong key is refused and not stored.
    let wrong = with_credentials(&[
        "login",
        "--api-key",
        "pk_abcdefghij_0123456789012345678901234567890123456789012",
    ]);
    assert_eq!(wrong.status.code(), Some(4));
    assert!(!credentials.exists());

    let login = with_credentials(&["login", "--api-key", &key]);
    assert!(login.status.success(), "{}", text(&login.stderr));
    assert!(text(&login.stderr).contains("tenant default"));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&credentials)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let listed = with_credentials(&["jobs", "list"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));

    // watch follows a job to the end: 0 when it succeeds, 1 when it ends dead.
    let sleep = with_credentials(&[
        "enqueue",
        "system.sleep",
        "--payload",
        r#"{"ms": 300}"#,
        "-o",
        "json",
    ]);
    let id = serde_json::from_slice::<Value>(&sleep.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let watched = with_credentials(&["jobs", "watch", &id, "--timeout", "20"]);
    assert!(watched.status.success(), "{}", text(&watched.stderr));
    let lines = text(&watched.stdout);
    assert!(
        lines.lines().last().unwrap().contains("succeeded"),
        "{lines}"
    );
    let fail = with_credentials(&[
        "enqueue",
        "system.fail",
        "--payload",
        r#"{"times": 5}"#,
        "--max-attempts",
        "1",
        "-o",
        "json",
    ]);
    assert!(fail.status.success(), "{}", text(&fail.stderr));
    let id = serde_json::from_slice::<Value>(&fail.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let watched = with_credentials(&["jobs", "watch", &id, "--timeout", "20"]);
    assert_eq!(watched.status.code(), Some(1), "{}", text(&watched.stderr));
    assert!(text(&watched.stderr).contains("ended dead"));

    let logout = with_credentials(&["logout"]);
    assert!(logout.status.success());
    assert_eq!(with_credentials(&["jobs", "list"]).status.code(), Some(4));
    app.stop().await.unwrap();
}

#[test]
fn admin_create_key_finds_the_dev_store_and_completions_print() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("pysaas.db").display());
    let migrated = Command::new(env!("CARGO_BIN_EXE_pysaas"))
        .arg("migrate")
        .env("PYSAAS_DATABASE_URL", &db)
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    let create = |data_dir: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_pysaas"))
            .args([
                "admin",
                "create-key",
                "--data-dir",
                data_dir.to_str().unwrap(),
            ])
            .env_remove("PYSAAS_DATABASE_URL")
            .env_remove("PYSAAS_CONFIG")
            .output()
            .unwrap()
    };
    let made = create(dir.path());
    assert!(made.status.success(), "{}", text(&made.stderr));
    assert!(
        text(&made.stdout).trim().starts_with("pk_"),
        "{}",
        text(&made.stdout)
    );
    let nowhere = tempfile::tempdir().unwrap();
    let missing = create(nowhere.path());
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("PYSAAS_DATABASE_URL"));

    let bash = pysaas(&["completions", "bash"]);
    assert!(bash.status.success());
    assert!(text(&bash.stdout).contains("complete -F _pysaas"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_enqueue_from_a_jsonl_file() {
    let (app, key) = running_app().await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, lines: Vec<String>| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n")).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let line = |i: usize| {
        format!(r#"{{"kind": "system.noop", "queue": "bulk", "idempotency_key": "k{i}"}}"#)
    };
    let run = |file: &str| {
        pysaas(&[
            "enqueue",
            "--from",
            file,
            "--api",
            &app.base,
            "--api-key",
            &key,
        ])
    };
    let count = || async {
        let filter = pysaas_brokers::JobFilter {
            tenant_id: pysaas::DEFAULT_TENANT.into(),
            state: None,
            kind: None,
            queue: Some("bulk".into()),
            limit: 1000,
            before: None,
            payload: None,
        };
        let mut n = 0;
        let mut filter = filter;
        loop {
            let page = app.store.list(&filter).await.unwrap();
            n += page.len();
            match page.last() {
                Some(last) if page.len() == 1000 => filter.before = Some(last.id),
                _ => return n,
            }
        }
    };

    // A line that is not JSON stops everything before a request is sent, naming the line.
    let mut lines: Vec<String> = (0..5).map(line).collect();
    lines[2] = "{not json".into();
    let bad = run(&write("bad.jsonl", lines));
    let message = fails_with(&bad, 2);
    assert!(message.contains("bad.jsonl:3:"), "{message}");
    assert_eq!(count().await, 0);

    let ok = run(&write("jobs.jsonl", (0..2500).map(line).collect()));
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("enqueued 2500 jobs"));
    assert_eq!(count().await, 2500);

    // A refused batch is all or nothing, and the run says how far it got.
    let mut lines: Vec<String> = (2500..5000).map(line).collect();
    lines[1500] = r#"{"kind": "nope"}"#.into();
    let refused = run(&write("partial.jsonl", lines));
    let message = fails_with(&refused, 2);
    assert!(
        message.contains("lines 1001-2000") && message.contains("1000 jobs"),
        "{message}"
    );
    assert_eq!(count().await, 3500);
    app.stop().await.unwrap();
}
