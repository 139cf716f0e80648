//! Secrets from Vault (or OpenBao) through `vaultrs`: one KV v2 secret (default
//! `secret/pysaas`) whose fields override the configuration — `database_url`,
//! `jwt_signing_keys`, `broker_url`, `rate_limit_backend`. Token or AppRole authentication; the
//! token's lease is renewed (AppRole logs in again when renewal is refused), and the secret is
//! re-read periodically so that a signing-key rotation written to Vault reaches running APIs.
//! Secret values are never logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pysaas_api::auth::{Auth, Keyring};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};

use crate::config::Config;

/// Fields of the secret that override configuration.
const FIELDS: [&str; 6] = [
    "database_url",
    "jwt_signing_keys",
    "broker_url",
    "rate_limit_backend",
    "billing_provider_key",
    "dynamodb_secret_access_key",
];

enum Login {
    Token(String),
    /// A token another process keeps renewed and rewrites (Vault Agent's token sink, e.g.
    /// `/vault/secrets/token` from the Kubernetes injector): read again at each login.
    TokenFile(std::path::PathBuf),
    AppRole {
        mount: String,
        role_id: String,
        secret_id: String,
    },
}

struct Session {
    client: VaultClient,
    /// With `Login::TokenFile`: the token this session was opened with (the file is read again
    /// before each use, and a changed token opens a new session).
    file_token: Option<String>,
    /// When the token was obtained or last renewed, and for how long (zero: no expiry).
    renewed_at: Instant,
    lease: Duration,
}

/// A connection to Vault and the secret it reads.
pub(crate) struct VaultSource {
    addr: String,
    login: Login,
    kv_mount: String,
    path: String,
    refresh: Duration,
    session: Mutex<Session>,
}

impl std::fmt::Debug for VaultSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSource")
            .field("addr", &self.addr)
            .field("kv_mount", &self.kv_mount)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn client(addr: &str, token: &str) -> Result<VaultClient> {
    let settings = VaultClientSettingsBuilder::default()
        .address(addr)
        .token(token)
        .timeout(Some(Duration::from_secs(5)))
        .build()
        .context("Vault client settings")?;
    VaultClient::new(settings).context("Vault client")
}

impl VaultSource {
    async fn open_session(addr: &str, login: &Login) -> Result<Session> {
        match login {
            Login::TokenFile(path) => {
                let token = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the Vault token file {}", path.display()))?;
                let token = token.trim();
                if token.is_empty() {
                    bail!("the Vault token file {} is empty", path.display());
                }
                let mut session =
                    Box::pin(Self::open_session(addr, &Login::Token(token.to_owned()))).await?;
                session.file_token = Some(token.to_owned());
                Ok(session)
            }
            Login::Token(token) => {
                let client = client(addr, token)?;
                let lease = match vaultrs::token::lookup_self(&client).await {
                    Ok(info) => Duration::from_secs(info.ttl),
                    Err(err) => bail!("Vault token rejected: {err}"),
                };
                Ok(Session {
                    client,
                    file_token: None,
                    renewed_at: Instant::now(),
                    lease,
                })
            }
            Login::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let mut client = client(addr, "")?;
                let auth = vaultrs::auth::approle::login(&client, mount, role_id, secret_id)
                    .await
                    .context("Vault AppRole login")?;
                client.set_token(&auth.client_token);
                tracing::info!(
                    lease_secs = auth.lease_duration,
                    "logged in to Vault with AppRole"
                );
                Ok(Session {
                    client,
                    file_token: None,
                    renewed_at: Instant::now(),
                    lease: Duration::from_secs(auth.lease_duration),
                })
            }
        }
    }

    /// Connects when `vault_addr` is set.
    pub(crate) async fn connect(config: &Config) -> Result<Option<Arc<Self>>> {
        let Some(addr) = config.vault.addr.clone() else {
            return Ok(None);
        };
        let login = match (
            &config.vault.role_id,
            &config.vault.secret_id,
            &config.vault.token,
        ) {
            (Some(role_id), Some(secret_id), _) => Login::AppRole {
                mount: config.vault.approle_mount.clone(),
                role_id: role_id.clone(),
                secret_id: secret_id.expose().to_owned(),
            },
            (_, _, Some(token)) => Login::Token(token.expose().to_owned()),
            _ => match &config.vault.token_file {
                Some(path) => Login::TokenFile(path.clone()),
                None => bail!(
                    "vault_addr is set: also set vault_token, vault_token_file, or vault_role_id and vault_secret_id"
                ),
            },
        };
        let session = Self::open_session(&addr, &login).await?;
        Ok(Some(Arc::new(VaultSource {
            addr,
            login,
            kv_mount: config.vault.kv_mount.clone(),
            path: config.vault.path.clone(),
            refresh: Duration::from_secs(config.vault.refresh_secs.max(1)),
            session: Mutex::new(session),
        })))
    }

    /// Renews the token once half its lease is gone (AppRole logs in again if refused); with a
    /// token file, takes up the token the file holds now.
    async fn keep_token_alive(&self) -> Result<()> {
        let mut session = self.session.lock().await;
        if let Login::TokenFile(path) = &self.login {
            // The agent owns the token: it renews it and rewrites the file when it logs in
            // again. Use whatever the file holds now; never renew it ourselves. A file missing
            // or empty for a moment (a writer that truncates first) keeps the current session.
            let current = match std::fs::read_to_string(path) {
                Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
                Ok(_) | Err(_) => {
                    tracing::debug!(path = %path.display(), "Vault token file unreadable or empty; keeping the current token");
                    return Ok(());
                }
            };
            if session.file_token.as_deref() != Some(current.as_str()) {
                tracing::info!("the Vault token file changed; using the new token");
                let mut fresh =
                    Self::open_session(&self.addr, &Login::Token(current.clone())).await?;
                fresh.file_token = Some(current);
                *session = fresh;
            }
            return Ok(());
        }
        if session.lease.is_zero() || session.renewed_at.elapsed() < session.lease / 2 {
            return Ok(());
        }
        match vaultrs::token::renew_self(&session.client, None).await {
            Ok(auth) => {
                session.renewed_at = Instant::now();
                session.lease = Duration::from_secs(auth.lease_duration);
                tracing::debug!(lease_secs = auth.lease_duration, "Vault token renewed");
            }
            Err(err) => {
                tracing::warn!(error = %err, "Vault token renewal refused; logging in again");
                *session = Self::open_session(&self.addr, &self.login).await?;
            }
        }
        Ok(())
    }

    /// The secret's string fields.
    pub(crate) async fn read(&self) -> Result<HashMap<String, String>> {
        self.keep_token_alive().await?;
        let session = self.session.lock().await;
        let data: HashMap<String, serde_json::Value> =
            vaultrs::kv2::read(&session.client, &self.kv_mount, &self.path)
                .await
                .with_context(|| format!("reading Vault secret {}/{}", self.kv_mount, self.path))?;
        Ok(data
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect())
    }

    /// Renews the token and re-reads the secret every `vault_refresh_secs`; a changed
    /// `jwt_signing_keys` replaces `auth`'s key ring.
    pub(crate) fn spawn_upkeep(
        self: Arc<Self>,
        auth: Option<Arc<Auth>>,
        shutdown: CancellationToken,
    ) {
        tokio::spawn(async move {
            let mut current = self
                .read()
                .await
                .ok()
                .and_then(|s| s.get("jwt_signing_keys").cloned());
            loop {
                // Wake often enough to renew the token at half its lease.
                let lease = self.session.lock().await.lease;
                let pause = if lease.is_zero() {
                    self.refresh
                } else {
                    self.refresh.min(lease / 4)
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause.max(Duration::from_millis(200))) => {}
                }
                match self.read().await {
                    Ok(secret) => {
                        let keys = secret.get("jwt_signing_keys").cloned();
                        if keys != current {
                            if let (Some(auth), Some(pems)) = (&auth, &keys) {
                                match Keyring::from_pems(&crate::security::pem_blocks(pems)) {
                                    Ok(ring) => {
                                        tracing::info!(
                                            active_kid = ring.active_kid(),
                                            "JWT signing keys rotated from Vault"
                                        );
                                        auth.replace_keyring(ring);
                                        current = keys;
                                    }
                                    Err(err) => {
                                        tracing::error!(error = %err, "jwt_signing_keys in Vault are invalid; keeping the current keys")
                                    }
                                }
                            }
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "Vault refresh failed; keeping the current secrets")
                    }
                }
            }
        });
    }
}

/// Connects to Vault if configured and lets the secret's fields override the configuration.
pub(crate) async fn apply(config: &mut Config) -> Result<Option<Arc<VaultSource>>> {
    let Some(vault) = VaultSource::connect(config).await? else {
        return Ok(None);
    };
    let secret = vault.read().await?;
    let mut applied = Vec::new();
    for field in FIELDS {
        if let Some(value) = secret.get(field) {
            match field {
                "database_url" => config.store.url = Some(value.clone()),
                "jwt_signing_keys" => {
                    config.auth.jwt_signing_keys = Some(crate::config::Secret::new(value.clone()));
                }
                "broker_url" => {
                    config.broker.url = crate::config::Broker::try_from(value.clone())
                        .map_err(|e| anyhow::anyhow!("broker_url from Vault {e}"))?;
                }
                "billing_provider_key" => {
                    config.billing.provider_key = Some(crate::config::Secret::new(value.clone()));
                }
                "dynamodb_secret_access_key" => {
                    config.profiles.dynamodb_secret_access_key =
                        Some(crate::config::Secret::new(value.clone()));
                }
                "rate_limit_backend" => {
                    config.api.rate_limit_backend =
                        serde_json::from_value(serde_json::Value::String(value.clone()))
                            .map_err(|e| anyhow::anyhow!("rate_limit_backend from Vault {e}"))?;
                }
                _ => continue,
            }
            applied.push(field);
        }
    }
    tracing::info!(path = %format!("{}/{}", vault.kv_mount, vault.path), fields = ?applied, "secrets loaded from Vault");
    Ok(Some(vault))
}
