//! Layered configuration: built-in defaults, then a TOML file (`--config` or `PYSAAS_CONFIG`),
//! then `PYSAAS_*` environment variables. Validated once at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use pysaas_jobs::ScheduleSpec;
use serde::{Deserialize, Serialize};

/// A secret setting (a token, a private key): its `Debug` and `Serialize` say `[redacted]`, so
/// that neither logs nor `pysaas config check` can show it; [`Secret::expose`] is the one way to
/// read it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(secrecy::SecretString);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(secrecy::SecretString::from(value.into()))
    }

    /// The secret itself, for the code that must use it.
    pub fn expose(&self) -> &str {
        use secrecy::ExposeSecret;
        self.0.expose_secret()
    }
}

/// What a secret prints and serialises as.
pub const REDACTED: &str = "[redacted]";

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// A URL whose password is replaced by `***` when serialised (the value itself is unchanged).
fn redacted_url<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact(url))
}

fn redacted_url_opt<S: serde::Serializer>(
    url: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_some(&redact(url)),
        None => serializer.serialize_none(),
    }
}

/// Every setting, with its default. `Debug` and `Serialize` redact secrets and URL passwords.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `postgres://…` or `sqlite://…`. `dev` defaults to SQLite in `data_dir`.
    #[serde(serialize_with = "redacted_url_opt")]
    pub database_url: Option<String>,
    /// API listen address.
    pub listen: String,
    /// Where `dev` keeps its SQLite database.
    pub data_dir: PathBuf,
    /// PostgreSQL schema of the PySaaS tables.
    pub pg_schema: String,
    /// Store pool size.
    pub max_connections: u32,
    /// Dispatcher: `store` (the default), `amqp://…` (RabbitMQ) or `redis://…` (Redis Streams).
    #[serde(serialize_with = "redacted_url")]
    pub broker_url: String,
    /// Prefix of the broker's exchange and queue names.
    pub broker_prefix: String,
    /// Queues a worker consumes (`name` or `name=concurrency`); empty means the built-in kinds'
    /// queues.
    pub queues: Vec<String>,
    /// Concurrency per queue when a queue does not say.
    pub concurrency: usize,
    /// Most jobs a worker claims ahead of its free slots per queue under a backlog of fast jobs
    /// (at most what its slots run in 100 ms; default 500; 0 disables).
    pub prefetch: Option<usize>,
    /// Lease on a claimed job (ms).
    pub lease_ms: u64,
    /// Grace period for in-flight jobs at shutdown (ms).
    pub shutdown_grace_ms: u64,
    /// Promoter interval (ms).
    pub promote_interval_ms: u64,
    /// Rescuer interval (ms).
    pub rescue_interval_ms: u64,
    /// Leader lease (ms): a killed leader is replaced within about this long.
    pub leader_ttl_ms: u64,
    /// `worker` (and `dev`) processes also stand for scheduler leader, so that a deployment
    /// without a `pysaas scheduler` still fires cron and delayed jobs. Only the leader works.
    pub scheduler_in_workers: bool,
    /// A tick evaluated later than this (ms) is a misfire, handled by the schedule's policy.
    pub misfire_threshold_ms: u64,
    /// Pruner interval (ms).
    pub prune_interval_ms: u64,
    /// Keep `succeeded` jobs this long (seconds; 0 keeps them forever).
    pub retain_succeeded_secs: u64,
    /// Keep `cancelled` jobs this long (seconds; 0 keeps them forever).
    pub retain_cancelled_secs: u64,
    /// Keep `dead` jobs this long (seconds; 0 keeps them forever).
    pub retain_dead_secs: u64,
    /// JWT signing keys: one or more Ed25519 PKCS#8 PEM blocks; the first signs, all verify.
    /// Empty: `<data_dir>/jwt-signing-key.pem` (created when missing).
    pub jwt_signing_keys: Option<Secret>,
    /// `iss` of access tokens.
    pub jwt_issuer: String,
    /// `aud` of access tokens.
    pub jwt_audience: String,
    /// Access-token lifetime (s).
    pub access_token_ttl_secs: u64,
    /// Refresh-token lifetime (s).
    pub refresh_token_ttl_secs: u64,
    /// Rate-limit state: `memory` (one API process) or `redis://…` (shared by every replica).
    #[serde(serialize_with = "redacted_url")]
    pub rate_limit_backend: String,
    /// Per-tenant limits by plan (`[rate_limits.free] rate = 50, burst = 100`).
    pub rate_limits: std::collections::BTreeMap<String, pysaas_api::ratelimit::Limit>,
    /// Per-API-key limit, on top of the tenant's.
    pub api_key_rate_limit: pysaas_api::ratelimit::Limit,
    /// Per client address on `/v1/auth/*`.
    pub auth_rate_limit: pysaas_api::ratelimit::Limit,
    /// Client address from the last `X-Forwarded-For` entry (behind a load balancer only).
    pub trust_forwarded_for: bool,
    /// CORS: allowed origins (`*` for any); empty sends no CORS headers.
    pub cors_origins: Vec<String>,
    /// Requests running longer get 408 (ms; 0 disables).
    pub request_timeout_ms: u64,
    /// Vault (or OpenBao) address; when set, secrets come from there (see `src/vault.rs`).
    pub vault_addr: Option<String>,
    /// Vault token (token auth).
    pub vault_token: Option<Secret>,
    /// AppRole role id.
    pub vault_role_id: Option<String>,
    /// AppRole secret id.
    pub vault_secret_id: Option<Secret>,
    /// AppRole auth mount.
    pub vault_approle_mount: String,
    /// KV v2 mount.
    pub vault_kv_mount: String,
    /// Secret path in the KV mount.
    pub vault_path: String,
    /// How often the secret is re-read and the token renewed if due (s).
    pub vault_refresh_secs: u64,
    /// The live Vault connection (not a setting).
    #[serde(skip)]
    pub(crate) vault: Option<std::sync::Arc<crate::vault::VaultSource>>,
    /// `worker` and `scheduler`: serve `/metrics` and `/healthz` here (e.g. `0.0.0.0:9090`), so
    /// that Prometheus (and an HPA on queue depth) can scrape processes without the API.
    pub metrics_listen: Option<String>,
    /// Let webhooks reach loopback/private/link-local addresses (local development only: on a
    /// shared deployment tenants could reach internal services).
    pub webhook_allow_private: bool,
    /// Cron schedules (`[[schedules]]` tables), applied when a scheduler starts.
    pub schedules: Vec<ScheduleSpec>,
    /// Apply migrations at start of `api`, `worker` and `dev`.
    pub auto_migrate: bool,
    /// `text` or `json` logs.
    pub log_format: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_string(self) {
            Ok(json) => write!(f, "Config {json}"),
            Err(_) => f.write_str("Config { .. }"),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let retention = pysaas_scheduler::Retention::default();
        let limits = pysaas_api::ratelimit::Limits::default();
        Config {
            database_url: None,
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from(".pysaas"),
            pg_schema: pysaas_brokers::store::DEFAULT_PG_SCHEMA.into(),
            max_connections: pysaas_brokers::store::DEFAULT_MAX_CONNECTIONS,
            broker_url: "store".into(),
            broker_prefix: "pysaas".into(),
            queues: Vec::new(),
            concurrency: 10,
            prefetch: None,
            lease_ms: duration_ms(pysaas_workers::DEFAULT_LEASE),
            shutdown_grace_ms: duration_ms(pysaas_workers::DEFAULT_SHUTDOWN_GRACE),
            promote_interval_ms: duration_ms(pysaas_scheduler::DEFAULT_PROMOTE_INTERVAL),
            rescue_interval_ms: duration_ms(pysaas_scheduler::DEFAULT_RESCUE_INTERVAL),
            leader_ttl_ms: duration_ms(pysaas_scheduler::DEFAULT_LEADER_TTL),
            scheduler_in_workers: true,
            misfire_threshold_ms: duration_ms(pysaas_jobs::schedule::DEFAULT_MISFIRE_THRESHOLD),
            prune_interval_ms: duration_ms(pysaas_scheduler::pruner::DEFAULT_PRUNE_INTERVAL),
            retain_succeeded_secs: retention_secs(retention.succeeded),
            retain_cancelled_secs: retention_secs(retention.cancelled),
            retain_dead_secs: retention_secs(retention.dead),
            schedules: Vec::new(),
            jwt_signing_keys: None,
            metrics_listen: None,
            webhook_allow_private: false,
            vault_addr: None,
            vault_token: None,
            vault_role_id: None,
            vault_secret_id: None,
            vault_approle_mount: "approle".into(),
            vault_kv_mount: "secret".into(),
            vault_path: "pysaas".into(),
            vault_refresh_secs: 60,
            vault: None,
            rate_limit_backend: "memory".into(),
            rate_limits: limits.plans.clone(),
            api_key_rate_limit: limits.api_key,
            auth_rate_limit: limits.auth_per_ip,
            trust_forwarded_for: false,
            cors_origins: Vec::new(),
            request_timeout_ms: 30_000,
            jwt_issuer: "pysaas".into(),
            jwt_audience: "pysaas-api".into(),
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            auto_migrate: true,
            log_format: "text".into(),
        }
    }
}

fn retention_secs(keep: Option<Duration>) -> u64 {
    keep.map_or(0, |d| d.as_secs())
}

fn keep_for(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Config {
    /// Loads defaults ← file ← environment and validates the result. The binary instead calls
    /// [`Config::load_unvalidated`], merges the command line and Vault, then [`Config::validate`]
    /// once.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let config = Self::load_unvalidated(file)?;
        config.validate()?;
        Ok(config)
    }

    /// Loads defaults ← file ← environment; call [`Config::validate`] once everything is merged.
    pub fn load_unvalidated(file: Option<&Path>) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        let figment = figment.merge(
            Env::prefixed("PYSAAS_")
                .ignore(&["config", "api", "schedules"])
                .map(|k| k.as_str().to_lowercase().into()),
        );
        figment.extract().context("invalid configuration")
    }

    /// The effective configuration as TOML, secrets and URL passwords redacted
    /// (`pysaas config check`).
    pub fn to_redacted_toml(&self) -> Result<String> {
        toml::to_string(self).context("rendering the configuration")
    }

    /// Checks every setting, naming the one at fault.
    pub fn validate(&self) -> Result<()> {
        if let Some(url) = &self.database_url {
            if !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
            {
                bail!("database_url (PYSAAS_DATABASE_URL) must start with postgres:// or sqlite:// (got `{}`)", redact(url));
            }
        }
        self.listen_addr()?;
        if self.concurrency == 0 {
            bail!("concurrency (PYSAAS_CONCURRENCY) must be at least 1");
        }
        if self.lease_ms < 100 {
            bail!("lease_ms (PYSAAS_LEASE_MS) must be at least 100");
        }
        let broker = self.broker_url.as_str();
        let schemes = ["amqp://", "amqps://", "redis://", "rediss://"];
        if !(broker == "store" || schemes.iter().any(|s| broker.starts_with(s))) {
            bail!(
                "broker_url (PYSAAS_BROKER_URL) must be `store`, amqp://… or redis://… (got `{}`)",
                redact(broker)
            );
        }
        if !pysaas_api::valid_queue_name(&self.broker_prefix) {
            bail!("broker_prefix (PYSAAS_BROKER_PREFIX) must be a-z, 0-9, `.`, `_`, `-`");
        }
        let backend = self.rate_limit_backend.as_str();
        if !(backend == "memory"
            || backend.starts_with("redis://")
            || backend.starts_with("rediss://"))
        {
            bail!("rate_limit_backend (PYSAAS_RATE_LIMIT_BACKEND) must be `memory` or redis://… (got `{}`)", redact(backend));
        }
        for (plan, limit) in self
            .rate_limits
            .iter()
            .map(|(p, l)| (p.as_str(), l))
            .chain([
                ("api key", &self.api_key_rate_limit),
                ("auth per address", &self.auth_rate_limit),
            ])
        {
            if !(limit.rate > 0.0 && limit.burst >= 1) {
                bail!("rate limit `{plan}`: rate must be > 0 and burst at least 1");
            }
        }
        if let Some(addr) = &self.metrics_listen {
            addr.parse::<SocketAddr>().with_context(|| {
                format!("metrics_listen (PYSAAS_METRICS_LISTEN) `{addr}` is not an address like 0.0.0.0:9090")
            })?;
        }
        if self.leader_ttl_ms < 300 {
            bail!("leader_ttl_ms (PYSAAS_LEADER_TTL_MS) must be at least 300");
        }
        let mut names = std::collections::BTreeSet::new();
        for schedule in &self.schedules {
            if !names.insert(schedule.name.as_str()) {
                bail!("schedules: `{}` is declared twice", schedule.name);
            }
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!("log_format (PYSAAS_LOG_FORMAT) must be `text` or `json`");
        }
        Ok(())
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        self.listen.parse().with_context(|| {
            format!(
                "listen (PYSAAS_LISTEN) `{}` is not an address like 127.0.0.1:8080",
                self.listen
            )
        })
    }

    /// The database URL, or the error saying how to set it.
    pub fn require_database_url(&self) -> Result<&str> {
        self.database_url
            .as_deref()
            .context("no database configured: set PYSAAS_DATABASE_URL (postgres://… or sqlite://…) or database_url in the config file")
    }

    /// Lease on a running job.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    /// Time in-flight jobs get after SIGTERM.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// Rate limits per plan and per key.
    pub fn limits(&self) -> pysaas_api::ratelimit::Limits {
        pysaas_api::ratelimit::Limits {
            plans: self.rate_limits.clone(),
            default_plan: "free".into(),
            api_key: self.api_key_rate_limit,
            auth_per_ip: self.auth_rate_limit,
        }
    }

    /// Retention per finished state.
    pub fn retention(&self) -> pysaas_scheduler::Retention {
        pysaas_scheduler::Retention {
            succeeded: keep_for(self.retain_succeeded_secs),
            cancelled: keep_for(self.retain_cancelled_secs),
            dead: keep_for(self.retain_dead_secs),
        }
    }
}

/// A URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

    use super::*;

    const TOKEN: &str = "hvs.token-that-must-not-print";
    const SECRET_ID: &str = "approle-secret-that-must-not-print";
    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKeyThatMustNotPrint\n-----END PRIVATE KEY-----\n";
    const DB_PASSWORD: &str = "db-password-that-must-not-print";

    fn with_secrets() -> Config {
        Config {
            vault_addr: Some("http://127.0.0.1:8200".into()),
            vault_token: Some(Secret::new(TOKEN)),
            vault_role_id: Some("role".into()),
            vault_secret_id: Some(Secret::new(SECRET_ID)),
            jwt_signing_keys: Some(Secret::new(PEM)),
            database_url: Some(format!("postgres://app:{DB_PASSWORD}@127.0.0.1/db")),
            broker_url: format!("amqp://app:{DB_PASSWORD}@127.0.0.1:5672/%2f"),
            ..Config::default()
        }
    }

    fn assert_hidden(text: &str) {
        for secret in [TOKEN, SECRET_ID, "KeyThatMustNotPrint", DB_PASSWORD] {
            assert!(!text.contains(secret), "{secret} leaked into: {text}");
        }
    }

    #[test]
    fn debug_and_serialize_never_show_secrets() {
        let config = with_secrets();
        let debug = format!("{config:?}");
        assert_hidden(&debug);
        assert!(debug.contains(REDACTED), "{debug}");
        assert_hidden(&format!("{config:#?}"));
        assert_hidden(&serde_json::to_string(&config).unwrap());
        let toml = config.to_redacted_toml().unwrap();
        assert_hidden(&toml);
        assert!(toml.contains("vault_token = \"[redacted]\""), "{toml}");
        // The values themselves are intact for the code that uses them.
        assert_eq!(config.vault_token.as_ref().unwrap().expose(), TOKEN);
        assert!(config.database_url.unwrap().contains(DB_PASSWORD));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's own test-jail signature.
    fn secrets_load_from_the_environment_like_any_setting() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PYSAAS_VAULT_TOKEN", TOKEN);
            jail.set_env("PYSAAS_JWT_SIGNING_KEYS", PEM);
            let config = Config::load_unvalidated(None).unwrap();
            assert_eq!(config.vault_token.as_ref().unwrap().expose(), TOKEN);
            // The environment provider trims values; PEM parsing does not mind.
            assert_eq!(
                config.jwt_signing_keys.as_ref().unwrap().expose(),
                PEM.trim_end()
            );
            assert_hidden(&format!("{config:?}"));
            Ok(())
        });
    }
}
