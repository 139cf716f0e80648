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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_print_tables_json_and_one_line_errors() {
    let app = pysaas::testing::spawn_app(
        pysaas::App::new(pysaas::Config::default()),
        pysaas::Roles::all(),
    )
    .await
    .unwrap();
    let (key, _) = app.admin_client().await.unwrap();
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
