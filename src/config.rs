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

/// [`redacted_url`] for an optional URL.
fn redacted_url_opt<S: serde::Serializer>(
    url: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_some(&redact(url)),
        None => serializer.serialize_none(),
    }
}

/// Where job state lives.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// `postgres://…` or `sqlite://…` (`PYSAAS_DATABASE_URL`). `dev` defaults to SQLite in
    /// `data_dir`.
    #[serde(serialize_with = "redacted_url_opt")]
    pub url: Option<String>,
    /// PostgreSQL schema of the PySaaS tables (`PYSAAS_PG_SCHEMA`).
    pub pg_schema: String,
    /// Pool size (`PYSAAS_MAX_CONNECTIONS`).
    pub max_connections: u32,
    /// Apply migrations at start of `api`, `worker` and `dev` (`PYSAAS_AUTO_MIGRATE`).
    pub auto_migrate: bool,
    /// Where `dev` keeps its SQLite database and generated keys (`PYSAAS_DATA_DIR`).
    pub data_dir: PathBuf,
}

/// How workers learn about work.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSection {
    /// `store` (the default), `amqp://…` (RabbitMQ) or `redis://…` (Redis Streams)
    /// (`PYSAAS_BROKER_URL`).
    pub url: Broker,
    /// Prefix of the broker's exchanges, queues and keys (`PYSAAS_BROKER_PREFIX`).
    pub prefix: String,
}

/// A dispatcher, from `broker.url`.
#[derive(Clone, PartialEq, Eq)]
pub enum Broker {
    /// Workers claim straight from the store.
    Store,
    /// RabbitMQ at this `amqp://` or `amqps://` URL.
    Amqp(String),
    /// Redis Streams at this `redis://` or `rediss://` URL.
    Redis(String),
}

impl TryFrom<String> for Broker {
    type Error = String;
    fn try_from(url: String) -> std::result::Result<Self, String> {
        if url == "store" {
            Ok(Broker::Store)
        } else if url.starts_with("amqp://") || url.starts_with("amqps://") {
            Ok(Broker::Amqp(url))
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            Ok(Broker::Redis(url))
        } else {
            Err(format!(
                "must be `store`, amqp://… or redis://… (got `{}`)",
                redact(&url)
            ))
        }
    }
}

impl Broker {
    /// The URL as configured (`store` for the store).
    pub fn as_str(&self) -> &str {
        match self {
            Broker::Store => "store",
            Broker::Amqp(url) | Broker::Redis(url) => url,
        }
    }
}

impl<'de> Deserialize<'de> for Broker {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Broker::try_from(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Broker {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&redact(self.as_str()))
    }
}

/// Where rate-limit state lives.
#[derive(Clone, PartialEq, Eq)]
pub enum RateLimitBackend {
    /// In this process (one API process).
    Memory,
    /// In Redis at this URL, shared by every API replica.
    Redis(String),
}

impl<'de> Deserialize<'de> for RateLimitBackend {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        if value == "memory" {
            Ok(RateLimitBackend::Memory)
        } else if value.starts_with("redis://") || value.starts_with("rediss://") {
            Ok(RateLimitBackend::Redis(value))
        } else {
            Err(serde::de::Error::custom(format!(
                "must be `memory` or redis://… (got `{}`)",
                redact(&value)
            )))
        }
    }
}

impl Serialize for RateLimitBackend {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            RateLimitBackend::Memory => s.serialize_str("memory"),
            RateLimitBackend::Redis(url) => s.serialize_str(&redact(url)),
        }
    }
}

/// The HTTP edge.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Listen address (`PYSAAS_LISTEN`).
    pub listen: String,
    /// CORS: allowed origins (`*` for any); empty sends no CORS headers (`PYSAAS_CORS_ORIGINS`).
    pub cors_origins: Vec<String>,
    /// Requests running longer get 408 (ms; 0 disables) (`PYSAAS_REQUEST_TIMEOUT_MS`).
    pub request_timeout_ms: u64,
    /// Client address from the last `X-Forwarded-For` entry (behind a load balancer only)
    /// (`PYSAAS_TRUST_FORWARDED_FOR`).
    pub trust_forwarded_for: bool,
    /// Rate-limit state: `memory` or `redis://…` (`PYSAAS_RATE_LIMIT_BACKEND`).
    pub rate_limit_backend: RateLimitBackend,
    /// Per-API-key limit, on top of the tenant's plan (`[api.key_rate_limit]`).
    pub key_rate_limit: pysaas_api::ratelimit::Limit,
    /// Per client address on `/v1/auth/*` (`[api.auth_rate_limit]`).
    pub auth_rate_limit: pysaas_api::ratelimit::Limit,
    /// Also serve `/metrics` on the public API port, without a credential (`PYSAAS_PUBLIC_METRICS`).
    /// Off by default: the series name every tenant's queues and schedules; Prometheus scrapes
    /// `metrics_listen` instead.
    pub public_metrics: bool,
    /// The dashboard's built files (`frontend/out`), served at `/` (`PYSAAS_UI_DIR`); none: no
    /// dashboard, the JSON API only.
    pub ui_dir: Option<std::path::PathBuf>,
}

/// Tokens.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// JWT signing keys: one or more Ed25519 PKCS#8 PEM blocks; the first signs, all verify
    /// (`PYSAAS_JWT_SIGNING_KEYS`). Empty: `<data_dir>/jwt-signing-key.pem`, created when missing.
    pub jwt_signing_keys: Option<Secret>,
    /// `iss` of access tokens (`PYSAAS_JWT_ISSUER`).
    pub jwt_issuer: String,
    /// `aud` of access tokens (`PYSAAS_JWT_AUDIENCE`).
    pub jwt_audience: String,
    /// Access-token lifetime (s) (`PYSAAS_ACCESS_TOKEN_TTL_SECS`).
    pub access_token_ttl_secs: u64,
    /// Refresh-token lifetime (s) (`PYSAAS_REFRESH_TOKEN_TTL_SECS`).
    pub refresh_token_ttl_secs: u64,
}

/// Worker pools.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSection {
    /// Queues to consume (`name` or `name=concurrency`); empty: the registered kinds' queues
    /// (`PYSAAS_QUEUES`).
    pub queues: Vec<String>,
    /// Concurrency per queue when a queue does not say (`PYSAAS_CONCURRENCY`).
    pub concurrency: usize,
    /// Most jobs claimed ahead of free slots per queue under a backlog of fast jobs (at most what
    /// the slots run in 100 ms; default 500; 0 disables) (`PYSAAS_PREFETCH`).
    pub prefetch: Option<usize>,
    /// Lease on a claimed job (ms) (`PYSAAS_LEASE_MS`).
    pub lease_ms: u64,
    /// Grace period for in-flight jobs at shutdown (ms) (`PYSAAS_SHUTDOWN_GRACE_MS`).
    pub shutdown_grace_ms: u64,
    /// Let webhooks reach loopback, private and link-local addresses (local development only)
    /// (`PYSAAS_WEBHOOK_ALLOW_PRIVATE`).
    pub webhook_allow_private: bool,
    /// Execution rate limits beside those the kinds declare, shared by every worker process:
    /// `kind:NAME=RATE` or `queue:NAME=RATE`, `@tenant` after the name for a rate per tenant
    /// (`kind:notification.email@tenant=10/s`, `queue:billing=100/s,burst=20`)
    /// (`PYSAAS_RATE_LIMITS`, a TOML array).
    pub rate_limits: Vec<String>,
}

/// Notifications: where email goes (`docs/domains.md`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsSection {
    /// SMTP server: `smtp://host:port` (plain, or `?tls=required` for STARTTLS), `smtps://…`,
    /// with `user:password@` when needed (`PYSAAS_SMTP_URL`).
    #[serde(serialize_with = "redacted_url")]
    pub smtp_url: String,
    /// The sender of tenants that set none, `Name <address>` (`PYSAAS_EMAIL_FROM`).
    pub email_from: String,
    /// Connecting and each SMTP command give up after this (ms) (`PYSAAS_SMTP_TIMEOUT_MS`).
    pub smtp_timeout_ms: u64,
    /// A webhook endpoint is disabled after this many failed deliveries in a row, and its
    /// tenant's admins told (`PYSAAS_WEBHOOK_DISABLE_AFTER`).
    pub webhook_disable_after: u32,
}

impl Default for NotificationsSection {
    fn default() -> Self {
        NotificationsSection {
            smtp_url: pysaas_workers::notifications::DEFAULT_SMTP_URL.into(),
            email_from: pysaas_workers::notifications::DEFAULT_EMAIL_FROM.into(),
            smtp_timeout_ms: 10_000,
            webhook_disable_after: 20,
        }
    }
}

/// Where users' profiles and notification preferences live (`docs/domains.md`, "Profiles").
#[derive(Clone, Debug, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfilesBackend {
    /// The job store's own tables (SQLite in `dev`, PostgreSQL otherwise).
    Store,
    /// A DynamoDB table (or a server speaking its API, such as moto).
    Dynamodb,
}

/// Profiles: the profile store.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfilesSection {
    /// `store` or `dynamodb` (`PYSAAS_PROFILES_BACKEND`).
    pub backend: ProfilesBackend,
    /// DynamoDB endpoint; none: the region's AWS endpoint (`PYSAAS_DYNAMODB_ENDPOINT`).
    pub dynamodb_endpoint: Option<String>,
    /// DynamoDB region (`PYSAAS_DYNAMODB_REGION`).
    pub dynamodb_region: String,
    /// DynamoDB table, created at start when missing (`PYSAAS_DYNAMODB_TABLE`).
    pub dynamodb_table: String,
    /// Access key id (`PYSAAS_DYNAMODB_ACCESS_KEY_ID`).
    pub dynamodb_access_key_id: Option<String>,
    /// Secret access key (`PYSAAS_DYNAMODB_SECRET_ACCESS_KEY`, or `dynamodb_secret_access_key`
    /// in Vault).
    pub dynamodb_secret_access_key: Option<Secret>,
    /// A DynamoDB request unanswered this long fails as unavailable (ms)
    /// (`PYSAAS_DYNAMODB_TIMEOUT_MS`).
    pub dynamodb_timeout_ms: u64,
}

impl Default for ProfilesSection {
    fn default() -> Self {
        ProfilesSection {
            backend: ProfilesBackend::Store,
            dynamodb_endpoint: None,
            dynamodb_region: "us-east-1".into(),
            dynamodb_table: "pysaas-profiles".into(),
            dynamodb_access_key_id: None,
            dynamodb_secret_access_key: None,
            dynamodb_timeout_ms: 3000,
        }
    }
}

/// Billing: the payment provider, dunning and the invoice run (`docs/domains.md`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillingSection {
    /// `local` (PySaaS's payment simulator: `pysaas payments-sim`; `dev` starts one itself) or
    /// `stripe` (`PYSAAS_BILLING_PROVIDER`).
    pub provider: String,
    /// The provider's API (default: `https://api.stripe.com` for `stripe`,
    /// `http://127.0.0.1:12111` for `local`) (`PYSAAS_BILLING_PROVIDER_URL`).
    pub provider_url: Option<String>,
    /// The provider's secret key (`sk_test_…`); required for `stripe`
    /// (`PYSAAS_BILLING_PROVIDER_KEY`, or `billing_provider_key` in Vault).
    pub provider_key: Option<Secret>,
    /// A charge request unanswered this long is retried under its idempotency key (ms)
    /// (`PYSAAS_BILLING_PROVIDER_TIMEOUT_MS`).
    pub provider_timeout_ms: u64,
    /// Seconds between a declined charge and the next; after the last, the invoice is
    /// uncollectible and the subscription cancelled (default 1, 3 and 7 days)
    /// (`PYSAAS_BILLING_DUNNING_SECS`, a TOML array).
    pub dunning_secs: Vec<u64>,
    /// When the invoice run fires (six fields, seconds first; the default is every five
    /// minutes) (`PYSAAS_BILLING_INVOICE_CRON`).
    pub invoice_cron: String,
}

/// The audit and analytics event streams (`docs/events.md`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsSection {
    /// Record every job transition (and the other audited actions) in the outbox, in the
    /// changing transaction (`PYSAAS_EVENTS_ENABLED`). Shared by every process of the store.
    pub enabled: bool,
    /// Kafka's bootstrap servers (`host:port,…`); when set, the scheduler leader publishes the
    /// outbox there (`PYSAAS_KAFKA_BROKERS`). Unset: the consumers read the outbox directly.
    pub kafka_brokers: Option<String>,
    /// Put before each topic name (`PYSAAS_KAFKA_TOPIC_PREFIX`).
    pub kafka_topic_prefix: String,
    /// Partitions of each topic created at start (`PYSAAS_KAFKA_PARTITIONS`).
    pub kafka_partitions: i32,
    /// Replicas of each topic created at start (`PYSAAS_KAFKA_REPLICATION`).
    pub kafka_replication: i32,
    /// `binary` (`ce_*` headers, the data as the value) or `structured` (one JSON value)
    /// (`PYSAAS_KAFKA_MODE`).
    pub kafka_mode: pysaas_brokers::stream::ContentMode,
    /// Keep outbox facts every consumer has read this long (s; 0 keeps them)
    /// (`PYSAAS_EVENTS_RETENTION_SECS`).
    pub retention_secs: u64,
}

impl Default for EventsSection {
    fn default() -> Self {
        EventsSection {
            enabled: false,
            kafka_brokers: None,
            kafka_topic_prefix: String::new(),
            kafka_partitions: 3,
            kafka_replication: 1,
            kafka_mode: pysaas_brokers::stream::ContentMode::Binary,
            retention_secs: 3600,
        }
    }
}

/// Leader election, cron, delayed jobs and maintenance.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSection {
    /// `worker` (and `dev`) processes also stand for leader, so that a deployment without a
    /// `pysaas scheduler` still fires cron and delayed jobs (`PYSAAS_SCHEDULER_IN_WORKERS`).
    pub in_workers: bool,
    /// Leader lease (ms): a killed leader is replaced within about this long
    /// (`PYSAAS_LEADER_TTL_MS`).
    pub leader_ttl_ms: u64,
    /// Promoter interval (ms) (`PYSAAS_PROMOTE_INTERVAL_MS`).
    pub promote_interval_ms: u64,
    /// Rescuer interval (ms) (`PYSAAS_RESCUE_INTERVAL_MS`).
    pub rescue_interval_ms: u64,
    /// A tick evaluated later than this (ms) is a misfire (`PYSAAS_MISFIRE_THRESHOLD_MS`).
    pub misfire_threshold_ms: u64,
    /// Pruner interval (ms) (`PYSAAS_PRUNE_INTERVAL_MS`).
    pub prune_interval_ms: u64,
    /// Keep `succeeded` jobs this long (s; 0 keeps them) (`PYSAAS_RETAIN_SUCCEEDED_SECS`).
    pub retain_succeeded_secs: u64,
    /// Keep `cancelled` jobs this long (s; 0 keeps them) (`PYSAAS_RETAIN_CANCELLED_SECS`).
    pub retain_cancelled_secs: u64,
    /// Keep `dead` jobs this long (s; 0 keeps them) (`PYSAAS_RETAIN_DEAD_SECS`).
    pub retain_dead_secs: u64,
}

/// Secrets from Vault (or OpenBao); see `src/vault.rs`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultSection {
    /// Address; when set, secrets come from there (`PYSAAS_VAULT_ADDR`).
    pub addr: Option<String>,
    /// Token auth (`PYSAAS_VAULT_TOKEN`).
    pub token: Option<Secret>,
    /// Token auth from a file another process keeps current, read at each login (Vault Agent's
    /// token sink, e.g. `/vault/secrets/token`) (`PYSAAS_VAULT_TOKEN_FILE`).
    pub token_file: Option<PathBuf>,
    /// AppRole role id (`PYSAAS_VAULT_ROLE_ID`).
    pub role_id: Option<String>,
    /// AppRole secret id (`PYSAAS_VAULT_SECRET_ID`).
    pub secret_id: Option<Secret>,
    /// AppRole auth mount (`PYSAAS_VAULT_APPROLE_MOUNT`).
    pub approle_mount: String,
    /// KV v2 mount (`PYSAAS_VAULT_KV_MOUNT`).
    pub kv_mount: String,
    /// Secret path in the KV mount (`PYSAAS_VAULT_PATH`).
    pub path: String,
    /// How often the secret is re-read and the token renewed if due (s)
    /// (`PYSAAS_VAULT_REFRESH_SECS`).
    pub refresh_secs: u64,
}

/// Logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting, by section, with its default. Loaded from defaults ← TOML file ← `PYSAAS_*`
/// environment variables (flat names, e.g. `PYSAAS_DATABASE_URL` for `store.url`: see
/// [`ENV_KEYS`]) ← the command line ← Vault, then validated once. `Debug` and `Serialize`
/// redact secrets and URL passwords.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[store]`.
    pub store: StoreSection,
    /// `[broker]`.
    pub broker: BrokerSection,
    /// `[api]`.
    pub api: ApiSection,
    /// `[auth]`.
    pub auth: AuthSection,
    /// `[worker]`.
    pub worker: WorkerSection,
    /// `[scheduler]`.
    pub scheduler: SchedulerSection,
    /// `[vault]`.
    pub vault: VaultSection,
    /// `[billing]`.
    pub billing: BillingSection,
    /// `[notifications]`.
    pub notifications: NotificationsSection,
    /// `[profiles]`.
    pub profiles: ProfilesSection,
    /// `[events]`.
    pub events: EventsSection,
    /// Per-tenant limits by plan (`[rate_limits.free] rate = 50, burst = 100`).
    pub rate_limits: std::collections::BTreeMap<String, pysaas_api::ratelimit::Limit>,
    /// `worker` and `scheduler`: serve `/metrics` and `/healthz` here (e.g. `0.0.0.0:9090`)
    /// (`PYSAAS_METRICS_LISTEN`).
    pub metrics_listen: Option<String>,
    /// Export spans (API requests, job attempts) over OTLP/HTTP to this collector, e.g.
    /// `http://otel-collector:4318` (`PYSAAS_OTLP_ENDPOINT`); none: no export.
    pub otlp_endpoint: Option<String>,
    /// `text` or `json` logs (`PYSAAS_LOG_FORMAT`); filter with `PYSAAS_LOG`.
    pub log_format: LogFormat,
    /// Cron schedules (`[[schedules]]` tables), applied when a scheduler starts.
    pub schedules: Vec<ScheduleSpec>,
}

/// `PYSAAS_*` environment variables and the setting each one sets.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("database_url", "store.url"),
    ("pg_schema", "store.pg_schema"),
    ("max_connections", "store.max_connections"),
    ("auto_migrate", "store.auto_migrate"),
    ("data_dir", "store.data_dir"),
    ("broker_url", "broker.url"),
    ("broker_prefix", "broker.prefix"),
    ("listen", "api.listen"),
    ("cors_origins", "api.cors_origins"),
    ("request_timeout_ms", "api.request_timeout_ms"),
    ("trust_forwarded_for", "api.trust_forwarded_for"),
    ("rate_limit_backend", "api.rate_limit_backend"),
    ("public_metrics", "api.public_metrics"),
    ("ui_dir", "api.ui_dir"),
    ("jwt_signing_keys", "auth.jwt_signing_keys"),
    ("jwt_issuer", "auth.jwt_issuer"),
    ("jwt_audience", "auth.jwt_audience"),
    ("access_token_ttl_secs", "auth.access_token_ttl_secs"),
    ("refresh_token_ttl_secs", "auth.refresh_token_ttl_secs"),
    ("queues", "worker.queues"),
    ("rate_limits", "worker.rate_limits"),
    ("concurrency", "worker.concurrency"),
    ("prefetch", "worker.prefetch"),
    ("lease_ms", "worker.lease_ms"),
    ("shutdown_grace_ms", "worker.shutdown_grace_ms"),
    ("webhook_allow_private", "worker.webhook_allow_private"),
    ("scheduler_in_workers", "scheduler.in_workers"),
    ("leader_ttl_ms", "scheduler.leader_ttl_ms"),
    ("promote_interval_ms", "scheduler.promote_interval_ms"),
    ("rescue_interval_ms", "scheduler.rescue_interval_ms"),
    ("misfire_threshold_ms", "scheduler.misfire_threshold_ms"),
    ("prune_interval_ms", "scheduler.prune_interval_ms"),
    ("retain_succeeded_secs", "scheduler.retain_succeeded_secs"),
    ("retain_cancelled_secs", "scheduler.retain_cancelled_secs"),
    ("retain_dead_secs", "scheduler.retain_dead_secs"),
    ("vault_addr", "vault.addr"),
    ("vault_token", "vault.token"),
    ("vault_token_file", "vault.token_file"),
    ("vault_role_id", "vault.role_id"),
    ("vault_secret_id", "vault.secret_id"),
    ("vault_approle_mount", "vault.approle_mount"),
    ("vault_kv_mount", "vault.kv_mount"),
    ("vault_path", "vault.path"),
    ("vault_refresh_secs", "vault.refresh_secs"),
    ("smtp_url", "notifications.smtp_url"),
    ("email_from", "notifications.email_from"),
    ("smtp_timeout_ms", "notifications.smtp_timeout_ms"),
    (
        "webhook_disable_after",
        "notifications.webhook_disable_after",
    ),
    ("profiles_backend", "profiles.backend"),
    ("dynamodb_endpoint", "profiles.dynamodb_endpoint"),
    ("dynamodb_region", "profiles.dynamodb_region"),
    ("dynamodb_table", "profiles.dynamodb_table"),
    ("dynamodb_access_key_id", "profiles.dynamodb_access_key_id"),
    (
        "dynamodb_secret_access_key",
        "profiles.dynamodb_secret_access_key",
    ),
    ("dynamodb_timeout_ms", "profiles.dynamodb_timeout_ms"),
    ("billing_provider", "billing.provider"),
    ("billing_provider_url", "billing.provider_url"),
    ("billing_provider_key", "billing.provider_key"),
    ("billing_provider_timeout_ms", "billing.provider_timeout_ms"),
    ("billing_dunning_secs", "billing.dunning_secs"),
    ("billing_invoice_cron", "billing.invoice_cron"),
    ("events_enabled", "events.enabled"),
    ("kafka_brokers", "events.kafka_brokers"),
    ("kafka_topic_prefix", "events.kafka_topic_prefix"),
    ("kafka_partitions", "events.kafka_partitions"),
    ("kafka_replication", "events.kafka_replication"),
    ("kafka_mode", "events.kafka_mode"),
    ("events_retention_secs", "events.retention_secs"),
    ("metrics_listen", "metrics_listen"),
    ("otlp_endpoint", "otlp_endpoint"),
    ("log_format", "log_format"),
];

/// `Debug` as the redacted serialisation, so that no secret or URL password can print.
macro_rules! debug_as_redacted {
    ($($ty:ident),* $(,)?) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match serde_json::to_string(self) {
                    Ok(json) => write!(f, "{} {json}", stringify!($ty)),
                    Err(_) => write!(f, "{} {{ .. }}", stringify!($ty)),
                }
            }
        }
    )*};
}

debug_as_redacted!(
    Config,
    StoreSection,
    BrokerSection,
    Broker,
    RateLimitBackend,
    ApiSection,
    AuthSection,
    WorkerSection,
    SchedulerSection,
    VaultSection,
    BillingSection,
    NotificationsSection,
    ProfilesSection,
    EventsSection,
);

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            url: None,
            pg_schema: pysaas_brokers::store::DEFAULT_PG_SCHEMA.into(),
            max_connections: pysaas_brokers::store::DEFAULT_MAX_CONNECTIONS,
            auto_migrate: true,
            data_dir: PathBuf::from(".pysaas"),
        }
    }
}

impl Default for BrokerSection {
    fn default() -> Self {
        BrokerSection {
            url: Broker::Store,
            prefix: "pysaas".into(),
        }
    }
}

impl Default for ApiSection {
    fn default() -> Self {
        let limits = pysaas_api::ratelimit::Limits::default();
        ApiSection {
            listen: "127.0.0.1:8080".into(),
            cors_origins: Vec::new(),
            request_timeout_ms: 30_000,
            trust_forwarded_for: false,
            rate_limit_backend: RateLimitBackend::Memory,
            key_rate_limit: limits.api_key,
            auth_rate_limit: limits.auth_per_ip,
            public_metrics: false,
            ui_dir: None,
        }
    }
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            jwt_signing_keys: None,
            jwt_issuer: "pysaas".into(),
            jwt_audience: "pysaas-api".into(),
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
        }
    }
}

impl Default for WorkerSection {
    fn default() -> Self {
        WorkerSection {
            queues: Vec::new(),
            concurrency: 10,
            prefetch: None,
            lease_ms: duration_ms(pysaas_workers::DEFAULT_LEASE),
            shutdown_grace_ms: duration_ms(pysaas_workers::DEFAULT_SHUTDOWN_GRACE),
            webhook_allow_private: false,
            rate_limits: Vec::new(),
        }
    }
}

impl Default for SchedulerSection {
    fn default() -> Self {
        let retention = pysaas_scheduler::Retention::default();
        SchedulerSection {
            in_workers: true,
            leader_ttl_ms: duration_ms(pysaas_scheduler::DEFAULT_LEADER_TTL),
            promote_interval_ms: duration_ms(pysaas_scheduler::DEFAULT_PROMOTE_INTERVAL),
            rescue_interval_ms: duration_ms(pysaas_scheduler::DEFAULT_RESCUE_INTERVAL),
            misfire_threshold_ms: duration_ms(pysaas_jobs::schedule::DEFAULT_MISFIRE_THRESHOLD),
            prune_interval_ms: duration_ms(pysaas_scheduler::pruner::DEFAULT_PRUNE_INTERVAL),
            retain_succeeded_secs: retention_secs(retention.succeeded),
            retain_cancelled_secs: retention_secs(retention.cancelled),
            retain_dead_secs: retention_secs(retention.dead),
        }
    }
}

impl Default for VaultSection {
    fn default() -> Self {
        VaultSection {
            addr: None,
            token: None,
            token_file: None,
            role_id: None,
            secret_id: None,
            approle_mount: "approle".into(),
            kv_mount: "secret".into(),
            path: "pysaas".into(),
            refresh_secs: 60,
        }
    }
}

impl Default for BillingSection {
    fn default() -> Self {
        BillingSection {
            provider: "local".into(),
            provider_url: None,
            provider_key: None,
            provider_timeout_ms: 20_000,
            dunning_secs: pysaas_jobs::billing::DEFAULT_DUNNING_DAYS
                .iter()
                .map(|d| d * 86_400)
                .collect(),
            invoice_cron: "0 */5 * * * *".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: StoreSection::default(),
            broker: BrokerSection::default(),
            api: ApiSection::default(),
            auth: AuthSection::default(),
            worker: WorkerSection::default(),
            scheduler: SchedulerSection::default(),
            vault: VaultSection::default(),
            billing: BillingSection::default(),
            notifications: NotificationsSection::default(),
            profiles: ProfilesSection::default(),
            events: EventsSection::default(),
            rate_limits: pysaas_api::ratelimit::Limits::default().plans,
            metrics_listen: None,
            otlp_endpoint: None,
            log_format: LogFormat::Text,
            schedules: Vec::new(),
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
                .filter(|k| {
                    ENV_KEYS
                        .iter()
                        .any(|(flat, _)| k.as_str().eq_ignore_ascii_case(flat))
                })
                .map(|k| {
                    ENV_KEYS
                        .iter()
                        .find(|(flat, _)| k.as_str().eq_ignore_ascii_case(flat))
                        .map_or_else(|| k.as_str().to_lowercase(), |(_, path)| (*path).to_owned())
                        .into()
                }),
        );
        figment.extract().map_err(|err| {
            // Name the setting as the file spells it, and the variable that sets it.
            let path = err.path.join(".").to_lowercase();
            let var = ENV_KEYS
                .iter()
                .find(|(_, p)| *p == path)
                .map(|(flat, _)| format!(" (PYSAAS_{})", flat.to_uppercase()))
                .unwrap_or_default();
            if path.is_empty() {
                anyhow::anyhow!("invalid configuration: {err}")
            } else {
                anyhow::anyhow!("invalid configuration: {path}{var}: {err}")
            }
        })
    }

    /// The configured execution rate limits, parsed.
    pub fn rate_limits(&self) -> Result<Vec<pysaas_jobs::RateLimit>> {
        self.worker
            .rate_limits
            .iter()
            .map(|entry| {
                entry
                    .parse()
                    .map_err(|e| anyhow::anyhow!("worker.rate_limits (PYSAAS_RATE_LIMITS): {e}"))
            })
            .collect()
    }

    /// The effective configuration as TOML, secrets and URL passwords redacted
    /// (`pysaas config check`).
    pub fn to_redacted_toml(&self) -> Result<String> {
        toml::to_string(self).context("rendering the configuration")
    }

    /// Checks every setting, naming the one at fault.
    pub fn validate(&self) -> Result<()> {
        if let Some(url) = &self.store.url {
            if !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
            {
                bail!("store.url (PYSAAS_DATABASE_URL) must start with postgres:// or sqlite:// (got `{}`)", redact(url));
            }
        }
        self.listen_addr()?;
        self.dynamodb()?;
        if self.worker.concurrency == 0 {
            bail!("worker.concurrency (PYSAAS_CONCURRENCY) must be at least 1");
        }
        self.rate_limits()?;
        if self.worker.lease_ms < 100 {
            bail!("worker.lease_ms (PYSAAS_LEASE_MS) must be at least 100");
        }
        if !pysaas_api::valid_queue_name(&self.broker.prefix) {
            bail!("broker.prefix (PYSAAS_BROKER_PREFIX) must be a-z, 0-9, `.`, `_`, `-`");
        }
        for (plan, limit) in self
            .rate_limits
            .iter()
            .map(|(p, l)| (format!("rate_limits.{p}"), l))
            .chain([
                ("api.key_rate_limit".to_owned(), &self.api.key_rate_limit),
                ("api.auth_rate_limit".to_owned(), &self.api.auth_rate_limit),
            ])
        {
            if !(limit.rate > 0.0 && limit.burst >= 1) {
                bail!("{plan}: rate must be > 0 and burst at least 1");
            }
        }
        if let Some(url) = &self.otlp_endpoint {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("otlp_endpoint (PYSAAS_OTLP_ENDPOINT) must be an http:// or https:// URL (got `{}`)", redact(url));
            }
        }
        if let Some(addr) = &self.metrics_listen {
            addr.parse::<SocketAddr>().with_context(|| {
                format!("metrics_listen (PYSAAS_METRICS_LISTEN) `{addr}` is not an address like 0.0.0.0:9090")
            })?;
        }
        if self.scheduler.leader_ttl_ms < 300 {
            bail!("scheduler.leader_ttl_ms (PYSAAS_LEADER_TTL_MS) must be at least 300");
        }
        let mut names = std::collections::BTreeSet::new();
        for schedule in &self.schedules {
            if !names.insert(schedule.name.as_str()) {
                bail!("schedules: `{}` is declared twice", schedule.name);
            }
        }
        self.billing()?;
        self.email()?;
        self.kafka()?;
        if self.vault.addr.is_some()
            && self.vault.token.is_none()
            && self.vault.token_file.is_none()
            && (self.vault.role_id.is_none() || self.vault.secret_id.is_none())
        {
            bail!("vault.addr is set: also set vault.token (PYSAAS_VAULT_TOKEN), vault.token_file (PYSAAS_VAULT_TOKEN_FILE), or vault.role_id and vault.secret_id");
        }
        Ok(())
    }

    /// Email's settings, checked (the URL and the default sender parse).
    pub fn email(&self) -> Result<pysaas_workers::notifications::EmailConfig> {
        let n = &self.notifications;
        if !(1..=1000).contains(&n.webhook_disable_after) {
            bail!("notifications.webhook_disable_after (PYSAAS_WEBHOOK_DISABLE_AFTER) must be between 1 and 1000");
        }
        if n.smtp_timeout_ms < 100 {
            bail!("notifications.smtp_timeout_ms (PYSAAS_SMTP_TIMEOUT_MS) must be at least 100");
        }
        let config = pysaas_workers::notifications::EmailConfig {
            smtp_url: n.smtp_url.clone(),
            default_from: n.email_from.clone(),
            timeout: Duration::from_millis(n.smtp_timeout_ms),
        };
        pysaas_workers::notifications::EmailHandler::new(&config).map_err(|e| {
            anyhow::anyhow!(
                "notifications (PYSAAS_SMTP_URL / PYSAAS_EMAIL_FROM): {}",
                redact(&e)
            )
        })?;
        Ok(config)
    }

    /// The DynamoDB profile store's settings, when `profiles.backend` is `dynamodb`.
    pub fn dynamodb(&self) -> Result<Option<pysaas_brokers::store::DynamoConfig>> {
        let p = &self.profiles;
        if p.backend != ProfilesBackend::Dynamodb {
            return Ok(None);
        }
        if p.dynamodb_table.is_empty() {
            bail!("profiles.dynamodb_table (PYSAAS_DYNAMODB_TABLE) must not be empty");
        }
        if p.dynamodb_timeout_ms < 100 {
            bail!("profiles.dynamodb_timeout_ms (PYSAAS_DYNAMODB_TIMEOUT_MS) must be at least 100");
        }
        if let Some(url) = &p.dynamodb_endpoint {
            url::Url::parse(url).with_context(|| {
                format!("profiles.dynamodb_endpoint (PYSAAS_DYNAMODB_ENDPOINT) `{url}` is not a URL like http://127.0.0.1:4566")
            })?;
        }
        let key = p.dynamodb_access_key_id.clone();
        let secret = p
            .dynamodb_secret_access_key
            .as_ref()
            .map(|s| s.expose().to_owned());
        let (access_key_id, secret_access_key) = match (key, secret) {
            (Some(k), Some(s)) => (k, s),
            // A local server (moto) takes any credentials.
            (None, None) if p.dynamodb_endpoint.is_some() => ("local".into(), "local".into()),
            _ => bail!("profiles.backend is dynamodb: set profiles.dynamodb_access_key_id and profiles.dynamodb_secret_access_key (PYSAAS_DYNAMODB_ACCESS_KEY_ID / PYSAAS_DYNAMODB_SECRET_ACCESS_KEY)"),
        };
        Ok(Some(pysaas_brokers::store::DynamoConfig {
            endpoint_url: p.dynamodb_endpoint.clone(),
            region: p.dynamodb_region.clone(),
            table: p.dynamodb_table.clone(),
            access_key_id,
            secret_access_key,
            timeout: Duration::from_millis(p.dynamodb_timeout_ms),
        }))
    }

    /// Billing's provider and dunning schedule, checked.
    pub fn billing(&self) -> Result<pysaas_workers::billing::BillingConfig> {
        let b = &self.billing;
        let (url, key) = match b.provider.as_str() {
            "local" => (
                b.provider_url.clone().unwrap_or_else(|| {
                    format!("http://127.0.0.1:{}", crate::payments_sim::DEFAULT_PORT)
                }),
                b.provider_key
                    .as_ref()
                    .map_or_else(|| "sk_test_local".to_owned(), |k| k.expose().to_owned()),
            ),
            "stripe" => (
                b.provider_url
                    .clone()
                    .unwrap_or_else(|| "https://api.stripe.com".to_owned()),
                b.provider_key
                    .as_ref()
                    .map(|k| k.expose().to_owned())
                    .context("billing.provider is stripe: set billing.provider_key (PYSAAS_BILLING_PROVIDER_KEY) to the secret key")?,
            ),
            other => bail!(
                "billing.provider (PYSAAS_BILLING_PROVIDER) must be `local` or `stripe` (got `{other}`)"
            ),
        };
        if b.provider_timeout_ms < 100 {
            bail!("billing.provider_timeout_ms (PYSAAS_BILLING_PROVIDER_TIMEOUT_MS) must be at least 100");
        }
        if b.dunning_secs.contains(&0) {
            bail!("billing.dunning_secs (PYSAAS_BILLING_DUNNING_SECS): every wait must be at least 1 s");
        }
        pysaas_jobs::CronSchedule::parse_fields(&b.invoice_cron, "UTC").map_err(|e| {
            anyhow::anyhow!("billing.invoice_cron (PYSAAS_BILLING_INVOICE_CRON): {e}")
        })?;
        let provider = pysaas_workers::billing::StripeProvider::new(
            b.provider.clone(),
            &url,
            key,
            Duration::from_millis(b.provider_timeout_ms),
        )
        .map_err(|e| anyhow::anyhow!("billing.provider_url (PYSAAS_BILLING_PROVIDER_URL): {e}"))?;
        let mut config = pysaas_workers::billing::BillingConfig::new(std::sync::Arc::new(provider));
        config.dunning = b
            .dunning_secs
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect();
        Ok(config)
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        self.api.listen.parse().with_context(|| {
            format!(
                "api.listen (PYSAAS_LISTEN) `{}` is not an address like 127.0.0.1:8080",
                self.api.listen
            )
        })
    }

    /// The database URL, or the error saying how to set it.
    pub fn require_database_url(&self) -> Result<&str> {
        self.store
            .url
            .as_deref()
            .context("no database configured: set PYSAAS_DATABASE_URL (postgres://… or sqlite://…) or store.url in the config file")
    }

    /// Lease on a running job.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.worker.lease_ms)
    }

    /// Time in-flight jobs get after SIGTERM.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.worker.shutdown_grace_ms)
    }

    /// Rate limits per plan and per key.
    pub fn limits(&self) -> pysaas_api::ratelimit::Limits {
        pysaas_api::ratelimit::Limits {
            plans: self.rate_limits.clone(),
            default_plan: "free".into(),
            api_key: self.api.key_rate_limit,
            auth_per_ip: self.api.auth_rate_limit,
        }
    }

    /// Retention per finished state.
    pub fn retention(&self) -> pysaas_scheduler::Retention {
        pysaas_scheduler::Retention {
            succeeded: keep_for(self.scheduler.retain_succeeded_secs),
            cancelled: keep_for(self.scheduler.retain_cancelled_secs),
            dead: keep_for(self.scheduler.retain_dead_secs),
            events: keep_for(self.events.retention_secs),
        }
    }

    /// Where events are published, when Kafka is configured.
    pub fn kafka(&self) -> Result<Option<pysaas_brokers::stream::kafka::KafkaConfig>> {
        let e = &self.events;
        let Some(brokers) = &e.kafka_brokers else {
            return Ok(None);
        };
        if !e.enabled {
            bail!("events.kafka_brokers (PYSAAS_KAFKA_BROKERS) is set but events.enabled (PYSAAS_EVENTS_ENABLED) is false: nothing would be recorded to publish");
        }
        if brokers.trim().is_empty() || brokers.contains("://") {
            bail!("events.kafka_brokers (PYSAAS_KAFKA_BROKERS) must be host:port[,host:port…] (got `{brokers}`)");
        }
        if e.kafka_partitions < 1 {
            bail!("events.kafka_partitions (PYSAAS_KAFKA_PARTITIONS) must be at least 1");
        }
        if e.kafka_replication < 1 {
            bail!("events.kafka_replication (PYSAAS_KAFKA_REPLICATION) must be at least 1");
        }
        if !e.kafka_topic_prefix.is_empty() && !pysaas_api::valid_queue_name(&e.kafka_topic_prefix)
        {
            bail!("events.kafka_topic_prefix (PYSAAS_KAFKA_TOPIC_PREFIX) must be a-z, 0-9, `.`, `_`, `-`");
        }
        let mut kafka = pysaas_brokers::stream::kafka::KafkaConfig::new(brokers.trim());
        kafka.topic_prefix = e.kafka_topic_prefix.clone();
        kafka.partitions = e.kafka_partitions;
        kafka.replication = e.kafka_replication;
        kafka.mode = e.kafka_mode;
        Ok(Some(kafka))
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
        let mut config = Config::default();
        config.vault.addr = Some("http://127.0.0.1:8200".into());
        config.vault.token = Some(Secret::new(TOKEN));
        config.vault.role_id = Some("role".into());
        config.vault.secret_id = Some(Secret::new(SECRET_ID));
        config.auth.jwt_signing_keys = Some(Secret::new(PEM));
        config.store.url = Some(format!("postgres://app:{DB_PASSWORD}@127.0.0.1/db"));
        config.broker.url = Broker::Amqp(format!("amqp://app:{DB_PASSWORD}@127.0.0.1:5672/%2f"));
        config
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
        assert!(toml.contains("token = \"[redacted]\""), "{toml}");
        // The values themselves are intact for the code that uses them.
        assert_eq!(config.vault.token.as_ref().unwrap().expose(), TOKEN);
        assert!(config.store.url.unwrap().contains(DB_PASSWORD));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's own test-jail signature.
    fn secrets_load_from_the_environment_like_any_setting() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PYSAAS_VAULT_TOKEN", TOKEN);
            jail.set_env("PYSAAS_JWT_SIGNING_KEYS", PEM);
            let config = Config::load_unvalidated(None).unwrap();
            assert_eq!(config.vault.token.as_ref().unwrap().expose(), TOKEN);
            // The environment provider trims values; PEM parsing does not mind.
            assert_eq!(
                config.auth.jwt_signing_keys.as_ref().unwrap().expose(),
                PEM.trim_end()
            );
            assert_hidden(&format!("{config:?}"));
            Ok(())
        });
    }
}
