//! Where the API's secrets come from, and the first credential of a fresh deployment.
//!
//! Signing keys, in order: `jwt_signing_keys` (one or more PEM blocks: config file,
//! `PYSAAS_JWT_SIGNING_KEYS`, or Vault), then `<data_dir>/jwt-signing-key.pem` (created, mode
//! 0600, when missing — fine for one process; replicas must share keys through configuration).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use pysaas_api::auth::{create_api_key, generate_pem, Auth, AuthSettings, Keyring};
use pysaas_brokers::{JobStore, TenantRow};
use pysaas_jobs::DEFAULT_TENANT;

use crate::config::Config;

const KEY_FILE: &str = "jwt-signing-key.pem";
const ADMIN_KEY_FILE: &str = "admin.key";

/// Splits concatenated PEM blocks.
pub(crate) fn pem_blocks(text: &str) -> Vec<String> {
    text.split("-----BEGIN")
        .filter(|b| b.contains("-----END"))
        .map(|b| format!("-----BEGIN{b}").trim().to_owned())
        .collect()
}

/// Writes `contents` to a new file only its owner can read.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// The signing keys: configured ones, else the data dir's key file (created when missing).
pub(crate) fn keyring(config: &Config, configured: Option<&str>) -> Result<Keyring> {
    let pems = match configured.filter(|k| !k.trim().is_empty()) {
        Some(keys) => pem_blocks(keys),
        None => {
            let path = config.store.data_dir.join(KEY_FILE);
            if !path.exists() {
                std::fs::create_dir_all(&config.store.data_dir)?;
                // Written aside, then linked into place: two processes starting at once never
                // see half a key, and the first one's key wins.
                let tmp = config
                    .store
                    .data_dir
                    .join(format!(".{KEY_FILE}.{}", std::process::id()));
                write_private(&tmp, &generate_pem())?;
                let linked = std::fs::hard_link(&tmp, &path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        tracing::warn!(path = %path.display(), "generated a JWT signing key; API replicas must share keys (set jwt_signing_keys or Vault)")
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(err) => {
                        return Err(err).with_context(|| format!("creating {}", path.display()))
                    }
                }
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            pem_blocks(&text)
        }
    };
    let ring = Keyring::from_pems(&pems).context("jwt_signing_keys")?;
    tracing::info!(
        active_kid = ring.active_kid(),
        keys = pems.len(),
        "JWT signing keys loaded"
    );
    Ok(ring)
}

/// The credential checker the API uses.
pub(crate) fn auth(config: &Config, keys: Option<&str>) -> Result<Arc<Auth>> {
    let settings = AuthSettings {
        issuer: config.auth.jwt_issuer.clone(),
        audience: config.auth.jwt_audience.clone(),
        access_ttl: Duration::from_secs(config.auth.access_token_ttl_secs.max(1)),
        refresh_ttl: Duration::from_secs(config.auth.refresh_token_ttl_secs.max(1)),
        ..AuthSettings::default()
    };
    Ok(Arc::new(Auth::new(keyring(config, keys)?, settings)))
}

/// Makes sure the default tenant exists (jobs of a deployment without accounts belong to it).
pub(crate) async fn ensure_default_tenant(store: &dyn JobStore) -> Result<()> {
    store
        .ensure_tenant(&TenantRow {
            id: DEFAULT_TENANT.into(),
            name: "Default".into(),
            plan: "free".into(),
            created_at: Utc::now(),
        })
        .await?;
    Ok(())
}

/// `dev` on first start: an `admin` API key for the default tenant, printed once and written to
/// `<data_dir>/admin.key` (0600).
pub(crate) async fn bootstrap_admin_key(store: &dyn JobStore, config: &Config) -> Result<()> {
    let path = config.store.data_dir.join(ADMIN_KEY_FILE);
    if path.exists() {
        println!("admin API key: in {}", path.display());
        return Ok(());
    }
    let (_, key) = create_api_key(
        store,
        DEFAULT_TENANT,
        "bootstrap admin",
        &["admin".to_owned()],
        None,
    )
    .await?;
    write_private(&path, &format!("{key}\n"))?;
    println!(
        "admin API key (shown once; also in {}):\n  {key}",
        path.display()
    );
    Ok(())
}

/// The key `pysaas enqueue`/`jobs` use when none is given: `<data_dir>/admin.key`.
pub(crate) fn local_admin_key(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join(ADMIN_KEY_FILE))
        .ok()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
}
