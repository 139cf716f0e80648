//! The deployment in `infra/`: every kustomize overlay renders offline and validates against the
//! Kubernetes 1.30 schemas with the policy checks of `tests/infra_check.py` (probes, limits,
//! non-root, grace above the drain, autoscaling and budgets on real Deployments); the config the
//! ConfigMap ships is a valid PySaaS config; each pool's HPA behaves under a load ramp; and the
//! binary serves as the non-root user the Dockerfile declares, with its health check command.
//! `scripts/test.sh` installs the tools (PYSAAS_TEST_INFRATOOLS: kubernetes-validate, hadolint).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

const OVERLAYS: [&str; 4] = [
    "base",
    "overlays/minikube",
    "overlays/production",
    "overlays/production-keda",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn infratools() -> PathBuf {
    PathBuf::from(
        std::env::var("PYSAAS_TEST_INFRATOOLS")
            .expect("PYSAAS_TEST_INFRATOOLS (scripts/test.sh installs the infra tools)"),
    )
}

/// Stdout of a command that must have succeeded (else its output, labelled `what`, fails the test).
fn succeeded(out: &std::process::Output, what: &str) -> String {
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    printed
}

fn render(overlay: &str) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join("infra/k8s").join(overlay))
        .output()
        .expect("kubectl is installed");
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_overlay_renders_validates_and_passes_the_policy_checks() {
    let tools = infratools();
    let out = Command::new(tools.join("python"))
        .arg(root().join("tests/infra_check.py"))
        .arg(root().join("infra"))
        .args(OVERLAYS)
        .env("INFRATOOLS", &tools)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    for overlay in OVERLAYS {
        assert!(
            printed.contains(&format!("{overlay}: ")),
            "{overlay} was checked: {printed}"
        );
    }
}

/// The checker finds what it is there to find: a copy of `infra/` with a worker whose grace is
/// shorter than its drain, a container running as root and a Deployment without limits.
#[test]
fn the_policy_checks_catch_a_broken_deployment() {
    let tools = infratools();
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(root().join("infra"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let infra = copy.path().join("infra");
    let edit = |file: &str, from: &str, to: &str| {
        let path = infra.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has `{from}`");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    edit(
        "k8s/base/workers.yaml",
        "terminationGracePeriodSeconds: 140",
        "terminationGracePeriodSeconds: 100",
    );
    edit(
        "k8s/base/pod-defaults.yaml",
        "runAsUser: 65532",
        "runAsUser: 0",
    );
    edit(
        "k8s/base/scheduler.yaml",
        "limits: {cpu: 500m, memory: 256Mi}",
        "limits: {cpu: 500m}",
    );
    let out = Command::new(tools.join("python"))
        .arg(root().join("tests/infra_check.py"))
        .arg(&infra)
        .arg("base")
        .env("INFRATOOLS", &tools)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{printed}");
    for finding in [
        "pysaas-worker-profiles: terminationGracePeriodSeconds 100 s is not above the worker's shutdown grace 120000 ms",
        "not non-root",
        "pysaas-scheduler container scheduler: no limits.memory",
    ] {
        assert!(printed.contains(finding), "`{finding}` in {printed}");
    }
}

/// The ConfigMap's `pysaas.toml` is a config PySaaS accepts (with the database URL a Secret or
/// Vault would give).
#[test]
fn the_shipped_config_is_valid() {
    for overlay in OVERLAYS {
        let rendered = render(overlay);
        let start = rendered
            .find("pysaas.toml: |")
            .expect("the ConfigMap holds pysaas.toml");
        let body: String = rendered[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    ") || l.is_empty())
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pysaas.toml");
        std::fs::write(&file, &body).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_pysaas"))
            .args(["config", "check", "--config"])
            .arg(&file)
            .env(
                "PYSAAS_DATABASE_URL",
                "postgres://pysaas:secret@db:5432/pysaas",
            )
            .env_remove("PYSAAS_VAULT_ADDR")
            .output()
            .unwrap();
        let printed = succeeded(&out, &format!("{overlay}: {body}"));
        assert!(printed.contains("auto_migrate = false"), "{printed}");
        assert!(
            !printed.contains("secret@"),
            "the password is redacted: {printed}"
        );
    }
}

/// `pysaas autoscale simulate --check --hpa <manifest>` with `args`.
fn simulate(manifest: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pysaas"))
        .args(["autoscale", "simulate", "--check", "--hpa"])
        .arg(manifest)
        .args(args)
        .output()
        .unwrap()
}

/// Each pool's HPA, as rendered, under the default ramp (1k queued, a surge to about 20k, then
/// nothing): up under the backlog, back to the minimum, within bounds, no flapping.
#[test]
fn every_pools_hpa_scales_up_and_back_without_flapping() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("base.yaml");
    std::fs::write(&manifest, render("base")).unwrap();
    let rendered = render("base");
    for pool in ["default", "billing", "notifications", "profiles"] {
        // The pool's own concurrency, from its Deployment as rendered.
        let concurrency = serde_norway::Deserializer::from_str(&rendered)
            .filter_map(|doc| serde_json::Value::deserialize(doc).ok())
            .find(|d| {
                d["kind"] == "Deployment"
                    && d["metadata"]["name"] == format!("pysaas-worker-{pool}")
            })
            .and_then(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array()?
                    .iter()
                    .find(|e| e["name"] == "PYSAAS_CONCURRENCY")?["value"]
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("{pool}: PYSAAS_CONCURRENCY in its Deployment"));
        let out = simulate(&manifest, &["--pool", pool, "--concurrency", &concurrency]);
        let printed = succeeded(&out, pool);
        assert!(printed.contains("check passed"), "{printed}");
    }
    // And the check fails where it must: an HPA that cannot scale down never comes back.
    let stuck = render("base").replace(
        "stabilizationWindowSeconds: 300",
        "stabilizationWindowSeconds: 3600",
    );
    std::fs::write(&manifest, stuck).unwrap();
    let out = simulate(&manifest, &["--pool", "default"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did not come back to the minimum"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dockerfile() -> String {
    std::fs::read_to_string(root().join("infra/Dockerfile")).unwrap()
}

/// `USER uid:gid` and the runtime stage's `ENV` of the Dockerfile.
fn declared_user_and_env() -> ((u32, u32), Vec<(String, String)>) {
    let text = dockerfile().replace("\\\n", " ");
    let runtime = &text[text.find("AS runtime").expect("a runtime stage")..];
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage declares a USER");
    let (uid, gid) = user.trim().split_once(':').expect("USER uid:gid");
    let env = runtime
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| {
            l.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    ((uid.parse().unwrap(), gid.parse().unwrap()), env)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The binary runs as the Dockerfile's user, with the Dockerfile's environment, writing only
/// to its data directory; the image's HEALTHCHECK command (`pysaas probe`) passes against it.
#[test]
fn the_binary_serves_as_the_declared_non_root_user() {
    let ((uid, gid), env) = declared_user_and_env();
    assert_ne!(uid, 0, "the image does not run as root");
    let healthcheck = dockerfile()
        .lines()
        .find(|l| l.contains("CMD [\"/usr/local/bin/pysaas\", \"probe\""))
        .expect("HEALTHCHECK runs `pysaas probe`")
        .to_owned();
    // A copy the user can execute (the build directory is root's).
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("pysaas");
    std::fs::copy(env!("CARGO_BIN_EXE_pysaas"), &bin).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for path in [dir.path(), data.as_path()] {
        let status = Command::new("chown")
            .arg(format!("{uid}:{gid}"))
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let (api, probes) = (free_port(), free_port());
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--clear-groups",
        "--",
    ])
    .arg(&bin)
    .arg("dev")
    .env_clear()
    .env("PATH", "/usr/bin:/bin")
    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    // The image's addresses, on free loopback ports; its data directory, here.
    .env("PYSAAS_LISTEN", format!("127.0.0.1:{api}"))
    .env("PYSAAS_METRICS_LISTEN", format!("127.0.0.1:{probes}"))
    .env("PYSAAS_DATA_DIR", &data)
    .env_remove("PYSAAS_UI_DIR")
    .env("PYSAAS_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("setpriv (util-linux)");
    let probe = |url: String| {
        Command::new(&bin)
            .args(["probe", &url])
            .output()
            .unwrap()
            .status
            .success()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe(format!("http://127.0.0.1:{probes}/readyz")) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "pysaas exited as uid {uid}"
        );
        assert!(Instant::now() < deadline, "not ready as uid {uid}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The HEALTHCHECK's command, aimed at this process's probe port.
    assert!(
        healthcheck.contains("http://127.0.0.1:9090/healthz"),
        "{healthcheck}"
    );
    assert!(probe(format!("http://127.0.0.1:{probes}/healthz")));
    assert!(probe(format!("http://127.0.0.1:{api}/readyz")));
    assert!(
        !probe(format!("http://127.0.0.1:{api}/no-such-page")),
        "probe fails on a 404"
    );
    // setpriv execs the binary: the child is pysaas itself.
    let pid = child.id();
    assert_eq!(uid_of(pid), uid, "runs as the declared user");
    let created: Vec<_> = std::fs::read_dir(&data).unwrap().collect();
    assert!(!created.is_empty(), "wrote its store to the data directory");
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    assert!(Path::new(&data).exists());
}
