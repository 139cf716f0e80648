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
    assert!(stdout.contains("concurrency = 33"), "{stdout}");
    assert!(stdout.contains("vault_token = \"[redacted]\""), "{stdout}");
    assert!(
        stdout.contains("vault_secret_id = \"[redacted]\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("jwt_signing_keys = \"[redacted]\""),
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
    let out = check(&[("PYSAAS_CONCURRENCY", "0".into())]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("PYSAAS_CONCURRENCY"), "{stderr}");
}
