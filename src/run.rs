//! Composition of the roles: this is the only place that ties api, workers, scheduler and
//! brokers together.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pysaas_api::AppState;
use pysaas_brokers::dispatch::amqp::{AmqpConfig, AmqpDispatcher};
use pysaas_brokers::dispatch::redis::{RedisConfig, RedisDispatcher};
use pysaas_brokers::store::{self, StoreConfig};
use pysaas_brokers::{Dispatcher, JobStore, StoreDispatcher};
use pysaas_jobs::DEFAULT_TENANT;
use pysaas_scheduler::SchedulerConfig;
use pysaas_workers::{Handlers, QueueConfig, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::config::{redact, Config};

/// Default log filter of the long-running roles.
pub(crate) const LOG_DEFAULT: &str = "info,sqlx=warn,rustify=off,vaultrs=warn";

/// Log filter of `pysaas bench` and the processes it starts: errors only, so that figures on
/// stdout are not interleaved. lapin is silenced: closing a connection under live consumers makes
/// it log "invalid channel state: Closing" as an error, which is the teardown, not a fault.
pub(crate) const LOG_QUIET: &str = "error,lapin=off";

/// Logs to stderr, filtered by `PYSAAS_LOG` or else `default`.
pub(crate) fn init_tracing(config: &Config, default: &str) {
    let filter = EnvFilter::try_from_env("PYSAAS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Cancelled on SIGTERM or SIGINT.
fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(err) => {
                        tracing::error!(error = %err, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        trigger.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => tracing::info!("SIGINT received; shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        trigger.cancel();
    });
    token
}

pub(crate) async fn open_store(config: &Config, url: &str) -> Result<Arc<dyn JobStore>> {
    let mut store_config = StoreConfig::new(url);
    store_config.schema = config.pg_schema.clone();
    store_config.max_connections = config.max_connections;
    let store = store::connect(&store_config)
        .await
        .with_context(|| format!("opening the job store at {}", redact(url)))?;
    if config.auto_migrate {
        store.migrate().await.context("applying migrations")?;
    }
    Ok(store)
}

fn worker_config(config: &Config, handlers: &Handlers) -> Result<WorkerConfig> {
    let mut queues = Vec::new();
    let names: Vec<String> = if config.queues.is_empty() {
        handlers
            .registry()
            .default_queues()
            .into_iter()
            .map(str::to_owned)
            .collect()
    } else {
        config.queues.clone()
    };
    for entry in names {
        let (name, concurrency) = match entry.split_once('=') {
            Some((name, n)) => (
                name.trim(),
                n.trim()
                    .parse()
                    .with_context(|| format!("queue `{entry}`: concurrency must be a number"))?,
            ),
            None => (entry.trim(), config.concurrency),
        };
        if !pysaas_api::valid_queue_name(name) {
            bail!("queue name `{name}` is invalid: use a-z, 0-9, `.`, `_`, `-`");
        }
        if concurrency == 0 {
            bail!("queue `{name}`: concurrency must be at least 1");
        }
        queues.push(QueueConfig {
            name: name.to_owned(),
            concurrency,
            prefetch: config.prefetch.unwrap_or(pysaas_workers::DEFAULT_PREFETCH),
        });
    }
    let mut worker = WorkerConfig::for_queues(Vec::<String>::new(), 1).with_lease(config.lease());
    worker.queues = queues;
    worker.shutdown_grace = config.shutdown_grace();
    worker.worker_id = worker_id();
    Ok(worker)
}

fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn scheduler_config(config: &Config) -> SchedulerConfig {
    let ms = |v: u64| Duration::from_millis(v.max(10));
    SchedulerConfig {
        leader_ttl: ms(config.leader_ttl_ms),
        promote_interval: ms(config.promote_interval_ms),
        rescue_interval: ms(config.rescue_interval_ms),
        prune_interval: ms(config.prune_interval_ms),
        retention: config.retention(),
        misfire_threshold: Duration::from_millis(config.misfire_threshold_ms),
        ..SchedulerConfig::new(worker_id())
    }
}

/// The dispatcher `broker_url` names.
fn open_dispatcher(config: &Config, store: &Arc<dyn JobStore>) -> Result<Arc<dyn Dispatcher>> {
    let url = config.broker_url.as_str();
    if url == "store" {
        return Ok(Arc::new(StoreDispatcher::new(store.clone())));
    }
    if url.starts_with("amqp://") || url.starts_with("amqps://") {
        let amqp = AmqpConfig {
            url: url.to_owned(),
            prefix: config.broker_prefix.clone(),
        };
        tracing::info!(broker = %redact(url), prefix = %config.broker_prefix, "dispatching through RabbitMQ");
        return Ok(Arc::new(AmqpDispatcher::new(amqp, store.clone())));
    }
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        let redis = RedisConfig {
            url: url.to_owned(),
            prefix: config.broker_prefix.clone(),
        };
        tracing::info!(broker = %redact(url), prefix = %config.broker_prefix, "dispatching through Redis Streams");
        return Ok(Arc::new(RedisDispatcher::new(redis, store.clone())?));
    }
    bail!(
        "broker_url (PYSAAS_BROKER_URL) must be `store`, amqp://… or redis://… (got `{}`)",
        redact(url)
    )
}

/// What every long-running role shares: the store, its dispatcher, the handlers and the shutdown
/// signal.
struct Roles {
    store: Arc<dyn JobStore>,
    dispatcher: Arc<dyn Dispatcher>,
    handlers: Handlers,
    shutdown: CancellationToken,
}

impl Roles {
    async fn open(config: &Config) -> Result<Self> {
        // Before anything records a metric (the leader gauge is set once, at election).
        if pysaas_api::install_metrics().is_some() {
            pysaas_workers::describe_metrics();
            pysaas_scheduler::describe_metrics();
        }
        let url = config.require_database_url()?.to_owned();
        let store = open_store(config, &url).await?;
        tracing::info!(store = %redact(&url), backend = store.backend(), "job store open");
        Ok(Roles {
            dispatcher: open_dispatcher(config, &store)?,
            store,
            handlers: Handlers::builtin_with(pysaas_workers::handlers::BuiltinConfig {
                webhook_allow_private: config.webhook_allow_private,
            }),
            shutdown: shutdown_signal(),
        })
    }

    /// Applies the config's schedules, then stands for scheduler leader until shutdown (the
    /// leader runs cron, promotion, rescue, relay, pruning and gauges).
    async fn start_scheduler(&self, config: &Config) -> Result<tokio_util::task::TaskTracker> {
        let registry = self.handlers.registry();
        let report = pysaas_scheduler::sync_schedules(
            self.store.as_ref(),
            &registry,
            DEFAULT_TENANT,
            &config.schedules,
        )
        .await
        .context("applying the schedules of the config file")?;
        if !config.schedules.is_empty() {
            tracing::info!(
                created = report.created,
                updated = report.updated,
                unchanged = report.unchanged,
                "config schedules applied"
            );
        }
        let scheduler = scheduler_config(config);
        tracing::info!(holder = %scheduler.holder, "standing for scheduler leader");
        Ok(pysaas_scheduler::spawn(
            pysaas_scheduler::Context {
                store: self.store.clone(),
                dispatcher: self.dispatcher.clone(),
                registry,
                config: scheduler,
            },
            self.shutdown.clone(),
        ))
    }

    /// Serves `/metrics` and `/healthz` on `metrics_listen`, if set (worker and scheduler roles).
    async fn serve_metrics(&self, config: &Config) -> Result<()> {
        let Some(addr) = &config.metrics_listen else {
            return Ok(());
        };
        let listener = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .with_context(|| format!("cannot listen on {addr} (metrics_listen)"))?;
        let handle = pysaas_api::install_metrics();
        let router = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let handle = handle.clone();
                    async move {
                        match handle {
                            Some(h) => (axum::http::StatusCode::OK, h.render()),
                            None => (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new()),
                        }
                    }
                }),
            )
            .route("/healthz", axum::routing::get(|| async { "ok" }));
        tracing::info!(address = %addr, "metrics on /metrics");
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(err) = served {
                tracing::warn!(error = %err, "metrics server stopped");
            }
        });
        Ok(())
    }

    /// The scheduler alone, until shutdown.
    async fn run_scheduler(&self, config: &Config) -> Result<()> {
        self.serve_metrics(config).await?;
        let scheduler = self.start_scheduler(config).await?;
        self.shutdown.cancelled().await;
        scheduler.wait().await;
        self.dispatcher.close().await;
        Ok(())
    }

    /// Runs a worker pool until shutdown (and the scheduler, if workers stand for leader).
    async fn run_worker(&self, config: &Config) -> Result<()> {
        let maintenance = if config.scheduler_in_workers {
            self.start_scheduler(config).await?
        } else {
            let idle = tokio_util::task::TaskTracker::new();
            idle.close();
            idle
        };
        let worker = Worker::new(
            self.store.clone(),
            self.dispatcher.clone(),
            self.handlers.clone(),
            worker_config(config, &self.handlers)?,
        );
        let result = worker.run(self.shutdown.clone()).await;
        self.shutdown.cancel();
        maintenance.wait().await;
        self.dispatcher.close().await;
        Ok(result?)
    }

    async fn serve_api(&self, config: &Config) -> Result<()> {
        let addr = config.listen_addr()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        crate::security::ensure_default_tenant(self.store.as_ref()).await?;
        let auth = crate::security::auth(config, config.jwt_signing_keys.as_deref())?;
        if let Some(vault) = &config.vault {
            vault
                .clone()
                .spawn_upkeep(Some(auth.clone()), self.shutdown.clone());
        }
        let limiter: Arc<dyn pysaas_api::ratelimit::RateLimiter> =
            if config.rate_limit_backend == "memory" {
                Arc::new(pysaas_api::ratelimit::MemoryLimiter::default())
            } else {
                Arc::new(
                    pysaas_api::ratelimit::RedisLimiter::connect(
                        &config.rate_limit_backend,
                        &config.broker_prefix,
                    )
                    .await
                    .context("connecting the rate limiter to Redis")?,
                )
            };
        let state = AppState::new(
            self.store.clone(),
            self.dispatcher.clone(),
            self.handlers.registry(),
            pysaas_api::install_metrics(),
            auth,
        )
        .with_rate_limits(limiter, config.limits());
        let gateway = pysaas_api::GatewayConfig {
            cors_origins: config.cors_origins.clone(),
            request_timeout: (config.request_timeout_ms > 0)
                .then(|| Duration::from_millis(config.request_timeout_ms)),
            trust_forwarded_for: config.trust_forwarded_for,
        };
        tracing::info!(address = %local, "API listening; OpenAPI at /openapi.json, Swagger UI at /docs");
        println!("PySaaS API on http://{local}  (docs: http://{local}/docs)");
        let shutdown = self.shutdown.clone();
        pysaas_api::serve(
            listener,
            pysaas_api::router_with(state, &gateway),
            async move { shutdown.cancelled().await },
        )
        .await?;
        Ok(())
    }
}

pub(crate) async fn dev(mut config: Config) -> Result<()> {
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        config.database_url = Some(format!(
            "sqlite://{}",
            config.data_dir.join("pysaas.db").display()
        ));
    }
    let roles = Roles::open(&config).await?;
    println!(
        "PySaaS dev: embedded store in {}",
        config.data_dir.display()
    );
    crate::security::ensure_default_tenant(roles.store.as_ref()).await?;
    crate::security::bootstrap_admin_key(roles.store.as_ref(), &config).await?;
    let (api, worker) = tokio::join!(
        async {
            let result = roles.serve_api(&config).await;
            roles.shutdown.cancel();
            result
        },
        roles.run_worker(&config),
    );
    api.and(worker)
}

pub(crate) async fn api(config: Config) -> Result<()> {
    let roles = Roles::open(&config).await?;
    let result = roles.serve_api(&config).await;
    roles.dispatcher.close().await;
    result
}

pub(crate) async fn worker(config: Config) -> Result<()> {
    let roles = Roles::open(&config).await?;
    roles.serve_metrics(&config).await?;
    roles.run_worker(&config).await
}

pub(crate) async fn scheduler(config: Config) -> Result<()> {
    Roles::open(&config).await?.run_scheduler(&config).await
}

/// `pysaas admin create-key`: an API key for a tenant, printed once.
pub(crate) async fn create_key(
    config: Config,
    tenant: String,
    name: String,
    scopes: Vec<String>,
) -> Result<()> {
    for scope in &scopes {
        if !pysaas_api::auth::SCOPES.contains(&scope.as_str()) {
            bail!(
                "unknown scope `{scope}`: use {}",
                pysaas_api::auth::SCOPES.join(", ")
            );
        }
    }
    let url = config.require_database_url()?.to_owned();
    let store = open_store(&config, &url).await?;
    crate::security::ensure_default_tenant(store.as_ref()).await?;
    if store.get_tenant(&tenant).await?.is_none() {
        bail!("no tenant `{tenant}`");
    }
    let (row, key) =
        pysaas_api::auth::create_api_key(store.as_ref(), &tenant, &name, &scopes, None).await?;
    eprintln!(
        "API key {} ({}) for tenant {tenant}, scopes {}; shown once:",
        row.id,
        row.prefix,
        scopes.join(" ")
    );
    println!("{key}");
    Ok(())
}

pub(crate) async fn migrate(mut config: Config) -> Result<()> {
    let url = config.require_database_url()?.to_owned();
    config.auto_migrate = true;
    let store = open_store(&config, &url).await?;
    println!(
        "migrations applied to {} ({})",
        redact(&url),
        store.backend()
    );
    Ok(())
}
