//! `pysaas config check`: the effective configuration, validated once, secrets redacted.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::process::Command;

const TOKEN: &str = "hvs.check-token-must-not-print";
const SECRET_ID: &str = "check-approle-secret-must-not-print";
const PASSWORD: &str = "check-password-must-not-print";

fn check(env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pysaas"));
    cmd.args(["config", "check"]).env_remove("PYSAAS_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let pem = pysaas_api::auth::generate_pem();
    let out = check(&[
        ("PYSAAS_VAULT_TOKEN", TOKEN.into()),
        ("PYSAAS_VAULT_ROLE_ID", "pysaas".into()),
        ("PYSAAS_VAULT_SECRET_ID", SECRET_ID.into()),
        ("PYSAAS_JWT_SIGNING_KEYS", pem.clone()),
        (
            "PYSAAS_DATABASE_URL",
            format!("postgres://app:{PASSWORD}@127.0.0.1:5432/app"),
        ),
        ("PYSAAS_CONCURRENCY", "33".into()),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    // Sections, with the values the environment gave.
    let parsed: toml::Value = toml::from_str(&stdout).unwrap();
    assert_eq!(
        parsed["worker"]["concurrency"].as_integer(),
        Some(33),
        "{stdout}"
    );
    assert_eq!(
        parsed["vault"]["token"].as_str(),
        Some("[redacted]"),
        "{stdout}"
    );
    assert_eq!(
        parsed["vault"]["secret_id"].as_str(),
        Some("[redacted]"),
        "{stdout}"
    );
    assert_eq!(
        parsed["vault"]["role_id"].as_str(),
        Some("pysaas"),
        "{stdout}"
    );
    assert_eq!(
        parsed["auth"]["jwt_signing_keys"].as_str(),
        Some("[redacted]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("postgres://app:***@127.0.0.1:5432/app"),
        "{stdout}"
    );
    let key_body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    for secret in [TOKEN, SECRET_ID, PASSWORD, key_body.as_str()] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} printed"
        );
    }
}

#[test]
fn config_check_names_the_bad_setting() {
    for (var, value, key) in [
        ("PYSAAS_CONCURRENCY", "0", "worker.concurrency"),
        ("PYSAAS_BROKER_URL", "kafka://x", "broker.url"),
        (
            "PYSAAS_RATE_LIMIT_BACKEND",
            "memcached",
            "api.rate_limit_backend",
        ),
        ("PYSAAS_LOG_FORMAT", "xml", "log_format"),
        (
            "PYSAAS_RATE_LIMITS",
            r#"["kind:system.sleep=0/s"]"#,
            "worker.rate_limits",
        ),
    ] {
        let out = check(&[(var, value.into())]);
        assert!(!out.status.success(), "{var}={value} accepted");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains(var) && stderr.contains(key),
            "{var}: {stderr}"
        );
    }
}

#[test]
fn a_config_file_in_sections_is_read_and_unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pysaas.toml");
    std::fs::write(
        &file,
        "[worker]\nqueues = [\"billing=64\"]\n[scheduler]\nin_workers = false\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pysaas"))
        .args(["--config", file.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: toml::Value = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(parsed["worker"]["queues"][0].as_str(), Some("billing=64"));
    assert_eq!(parsed["scheduler"]["in_workers"].as_bool(), Some(false));

    std::fs::write(&file, "[worker]\nconcurency = 3\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pysaas"))
        .args(["--config", file.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("concurency"), "{stderr}");
}

/// Every configuration the project shows or writes — the `toml` blocks of the README and docs,
/// the files the bench scripts generate — is one `pysaas config check` accepts, so none of them
/// goes stale when a key moves.
#[test]
fn configs_in_docs_and_scripts_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut sources: Vec<std::path::PathBuf> = vec![format!("{root}/README.md").into()];
    for dir in ["docs", "docs/guides", "bench"] {
        for entry in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
            let path = entry.unwrap().path();
            if matches!(path.extension().and_then(|e| e.to_str()), Some("md" | "sh")) {
                sources.push(path);
            }
        }
    }
    let mut checked = 0;
    let dir = tempfile::tempdir().unwrap();
    for source in sources {
        let text = std::fs::read_to_string(&source).unwrap();
        for (n, block) in config_blocks(&text).into_iter().enumerate() {
            let file = dir.path().join(format!("{n}.toml"));
            // The bench scripts' heredocs interpolate shell variables; none sits in a value
            // `config check` looks into.
            std::fs::write(&file, block.replace('$', "")).unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_pysaas"))
                .args(["--config", file.to_str().unwrap(), "config", "check"])
                .env_remove("PYSAAS_CONFIG")
                .env_remove("PYSAAS_DATABASE_URL")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} block {n}:\n{block}\n{}",
                source.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "found only {checked} configurations");
}

/// The fenced ```toml blocks of a Markdown file (Cargo manifests excepted) and the
/// `pysaas.toml` heredocs of a shell script.
fn config_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    let mut heredoc = false;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start().starts_with("```toml") => current = Some(String::new()),
            None if line.contains("pysaas.toml\" <<EOF") => {
                heredoc = true;
                current = Some(String::new());
            }
            None => {}
            Some(block) => {
                let end = if heredoc {
                    line == "EOF"
                } else {
                    line.trim_start().starts_with("```")
                };
                if end {
                    if !block.contains("[package]") && !block.contains("[dependencies]") {
                        blocks.push(std::mem::take(block));
                    }
                    current = None;
                    heredoc = false;
                } else {
                    block.push_str(line);
                    block.push('\n');
                }
            }
        }
    }
    blocks
}
