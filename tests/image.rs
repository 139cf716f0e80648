//! The container image, for real: podman (daemonless; `scripts/test.sh` installs it and sets
//! CONTAINERS_CONF and CONTAINERS_STORAGE_CONF) builds `infra/Dockerfile`'s runtime stage around
//! this build's binary and dashboard (no registry of base images is reachable here, so the
//! rust and node stages are replaced by images holding their output), then runs it read-only as
//! the image's own user against the test PostgreSQL and checks what the Dockerfile promises:
//! the declared non-root user, a read-only root, the dashboard and probes served, the
//! HEALTHCHECK passing, and a clean exit on SIGTERM.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pysaas_brokers::testing::TestDb;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn podman(args: &[&str]) -> Output {
    assert!(
        std::env::var_os("CONTAINERS_CONF").is_some(),
        "CONTAINERS_CONF is not set: run through scripts/test.sh (ensure_podman)"
    );
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman is installed (scripts/test.sh: ensure_podman)")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes what the test made, whatever happens.
struct Cleanup {
    container: String,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Never panics (it may run while a failed assertion unwinds).
        let _ = Command::new("podman")
            .args(["rm", "-f", "-v", &self.container])
            .output();
        for image in &self.images {
            let _ = Command::new("podman").args(["rmi", "-f", image]).output();
        }
    }
}

/// An image `FROM scratch` holding `dir`'s contents at `/`.
fn image_of(dir: &Path, tag: &str) {
    std::fs::write(dir.join("Containerfile"), "FROM scratch\nCOPY payload/ /\n").unwrap();
    ok(
        podman(&["build", "-q", "-t", tag, dir.to_str().unwrap()]),
        &format!("building {tag}"),
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp -r {}", from.display());
}

async fn status_of(url: &str) -> Option<(u16, String)> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_builds_and_runs_read_only_as_its_declared_user() {
    let db = TestDb::postgres().await;
    let unique = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let (bin_tag, ui_tag, tag) = (
        format!("localhost/pysaas-test-bin:{unique}"),
        format!("localhost/pysaas-test-ui:{unique}"),
        format!("localhost/pysaas-test:{unique}"),
    );
    let container = format!("pysaas-test-{unique}");
    let _cleanup = Cleanup {
        container: container.clone(),
        images: vec![tag.clone(), bin_tag.clone(), ui_tag.clone()],
    };

    // What the rust and node stages would have produced, at the paths the runtime stage copies.
    let ctx = tempfile::tempdir().unwrap();
    let bin = ctx.path().join("bin");
    std::fs::create_dir_all(bin.join("payload/out")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_pysaas"), bin.join("payload/out/pysaas")).unwrap();
    image_of(&bin, &bin_tag);
    let ui_dir = PathBuf::from(
        std::env::var("PYSAAS_TEST_UI_DIR").expect("PYSAAS_TEST_UI_DIR (the built dashboard)"),
    );
    assert!(ui_dir.join("index.html").exists(), "the dashboard is built");
    let ui = ctx.path().join("ui");
    copy_tree(&ui_dir, &ui.join("payload/src/frontend/out"));
    image_of(&ui, &ui_tag);

    ok(
        podman(&[
            "build",
            "--format",
            "docker",
            "-f",
            root().join("infra/Dockerfile").to_str().unwrap(),
            "--target",
            "runtime",
            "--build-arg",
            &format!("BINARY_FROM={bin_tag}"),
            "--build-arg",
            &format!("UI_FROM={ui_tag}"),
            "-t",
            &tag,
            root().to_str().unwrap(),
        ]),
        "building infra/Dockerfile's runtime stage",
    );
    let config = ok(
        podman(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}}|{{json .Config.Healthcheck}}",
            &tag,
        ]),
        "inspecting",
    );
    let (user, healthcheck) = config.split_once('|').unwrap();
    assert_eq!(user, "65532:65532", "the image's user");
    assert!(
        healthcheck.contains("probe"),
        "a HEALTHCHECK: {healthcheck}"
    );

    // Host networking: the container reaches the test PostgreSQL on 127.0.0.1. The API on a free
    // port; metrics and probes on the image's own 9090, which the HEALTHCHECK asks.
    let api_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert!(
        std::net::TcpListener::bind("127.0.0.1:9090").is_ok(),
        "port 9090 (the image's metrics port, which its HEALTHCHECK probes) is taken on this machine"
    );
    ok(
        podman(&[
            "run",
            "-d",
            "--name",
            &container,
            "--read-only",
            "--network",
            "host",
            "-e",
            &format!("PYSAAS_DATABASE_URL={}", db.url),
            "-e",
            &format!("PYSAAS_PG_SCHEMA={}", db.schema),
            "-e",
            &format!("PYSAAS_LISTEN=127.0.0.1:{api_port}"),
            "-e",
            "PYSAAS_METRICS_LISTEN=127.0.0.1:9090",
            &tag,
            "api",
        ]),
        "running the image",
    );
    let base = format!("http://127.0.0.1:{api_port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while status_of(&format!("{base}/readyz")).await.map(|s| s.0) != Some(200) {
        if Instant::now() > deadline {
            let logs = podman(&["logs", &container]);
            panic!(
                "the container's API did not become ready: {}",
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (code, page) = status_of(&format!("{base}/")).await.unwrap();
    assert_eq!(code, 200);
    assert!(
        page.contains("<html"),
        "the dashboard is served: {page:.200}"
    );
    assert_eq!(
        status_of("http://127.0.0.1:9090/readyz").await.map(|s| s.0),
        Some(200)
    );
    ok(
        podman(&["healthcheck", "run", &container]),
        "the image's HEALTHCHECK",
    );
    let uid = ok(podman(&["exec", &container, "id", "-u"]), "id -u");
    assert_eq!(uid, "65532", "runs as the declared user");
    // As root inside the container, so that only the read-only mount can refuse it.
    let write = podman(&[
        "exec",
        "--user",
        "0",
        &container,
        "touch",
        "/usr/local/bin/x",
    ]);
    assert!(!write.status.success(), "the root filesystem is read-only");
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );
    ok(
        podman(&["exec", &container, "touch", "/var/lib/pysaas/x"]),
        "the data volume is writable",
    );
    ok(podman(&["stop", "-t", "20", &container]), "stopping");
    let exit = ok(
        podman(&["inspect", "--format", "{{.State.ExitCode}}", &container]),
        "exit code",
    );
    assert_eq!(exit, "0", "a clean exit on SIGTERM");
}
