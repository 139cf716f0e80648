//! Composition of the roles: the only place that ties api, workers, scheduler and brokers
//! together. [`App`] is built from a [`Config`] and the [`Handlers`] of the kinds it runs (the
//! built-in ones unless told otherwise, plus any an application registers) and runs one role
//! (`api`, `worker`, `scheduler`), all of them (`dev`), or any mix in the background
//! ([`App::start`], which tests use with port 0).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pysaas_api::auth::Auth;
use pysaas_api::AppState;
use pysaas_brokers::dispatch::amqp::{AmqpConfig, AmqpDispatcher};
use pysaas_brokers::dispatch::redis::{RedisConfig, RedisDispatcher};
use pysaas_brokers::store::{self, StoreConfig};
use pysaas_brokers::stream::kafka::{KafkaSink, KafkaSource};
use pysaas_brokers::stream::{EventSink, EventSource, OutboxSource};
use pysaas_brokers::ProfileStore;
use pysaas_brokers::{Dispatcher, JobStore, StoreDispatcher};
use pysaas_jobs::JobKind;
use pysaas_jobs::DEFAULT_TENANT;
use pysaas_scheduler::SchedulerConfig;
use pysaas_workers::{Handlers, JobHandler, QueueConfig, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing_subscriber::EnvFilter;

use crate::config::{redact, Broker, Config, RateLimitBackend};

/// Default log filter of the long-running roles.
pub const LOG_DEFAULT: &str = "info,sqlx=warn,rustify=off,vaultrs=warn";

/// Log filter of `pysaas bench` and the processes it starts: errors only, so that figures on
/// stdout are not interleaved. lapin is silenced: closing a connection under live consumers makes
/// it log "invalid channel state: Closing" as an error, which is the teardown, not a fault.
pub const LOG_QUIET: &str = "error,lapin=off";

/// Logs to stderr, filtered by `PYSAAS_LOG` or else `default`.
pub fn init_tracing(config: &Config, default: &str) {
    let filter = EnvFilter::try_from_env("PYSAAS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.log_format == crate::config::LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Cancelled on SIGTERM or SIGINT.
pub fn shutdown_signal() -> CancellationToken {
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

/// Opens the store `url` names with the config's pool settings (and migrates it if
/// `auto_migrate`).
pub async fn open_store(config: &Config, url: &str) -> Result<Arc<dyn JobStore>> {
    let mut store_config = StoreConfig::new(url);
    store_config.schema = config.store.pg_schema.clone();
    store_config.max_connections = config.store.max_connections;
    let store = store::connect(&store_config)
        .await
        .with_context(|| format!("opening the job store at {}", redact(url)))?;
    if config.store.auto_migrate {
        store.migrate().await.context("applying migrations")?;
    }
    Ok(store)
}

/// The profile store the config names: the job store itself, or a DynamoDB table (created if
/// missing).
pub async fn open_profiles(
    config: &Config,
    store: &Arc<dyn JobStore>,
) -> Result<Arc<dyn pysaas_brokers::ProfileStore>> {
    let Some(dynamo) = config.dynamodb()? else {
        return Ok(store.clone());
    };
    let profiles = pysaas_brokers::store::DynamoProfileStore::new(&dynamo)
        .context("opening the DynamoDB profile store")?;
    profiles.prepare_profiles().await.with_context(|| {
        format!(
            "preparing the DynamoDB profile table {} at {}",
            dynamo.table,
            dynamo.endpoint_url.as_deref().unwrap_or("AWS")
        )
    })?;
    tracing::info!(table = %dynamo.table, "DynamoDB profile store ready");
    Ok(Arc::new(profiles))
}

fn worker_config(config: &Config, handlers: &Handlers) -> Result<WorkerConfig> {
    let mut queues = Vec::new();
    let names: Vec<String> = if config.worker.queues.is_empty() {
        handlers
            .registry()
            .default_queues()
            .into_iter()
            .map(str::to_owned)
            .collect()
    } else {
        config.worker.queues.clone()
    };
    for entry in names {
        let (name, concurrency) = match entry.split_once('=') {
            Some((name, n)) => (
                name.trim(),
                n.trim()
                    .parse()
                    .with_context(|| format!("queue `{entry}`: concurrency must be a number"))?,
            ),
            None => (entry.trim(), config.worker.concurrency),
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
            prefetch: config
                .worker
                .prefetch
                .unwrap_or(pysaas_workers::DEFAULT_PREFETCH),
        });
    }
    let mut worker = WorkerConfig::for_queues(Vec::<String>::new(), 1).with_lease(config.lease());
    worker.queues = queues;
    worker.shutdown_grace = config.shutdown_grace();
    worker.worker_id = worker_id();
    worker.rate_limits = config.rate_limits()?;
    Ok(worker)
}

fn worker_id() -> String {
    let host = pysaas_workers::hostname();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn scheduler_config(config: &Config) -> SchedulerConfig {
    let ms = |v: u64| Duration::from_millis(v.max(10));
    SchedulerConfig {
        leader_ttl: ms(config.scheduler.leader_ttl_ms),
        promote_interval: ms(config.scheduler.promote_interval_ms),
        rescue_interval: ms(config.scheduler.rescue_interval_ms),
        prune_interval: ms(config.scheduler.prune_interval_ms),
        retention: config.retention(),
        misfire_threshold: Duration::from_millis(config.scheduler.misfire_threshold_ms),
        ..SchedulerConfig::new(worker_id())
    }
}

/// The dispatcher `broker.url` names.
fn open_dispatcher(config: &Config, store: &Arc<dyn JobStore>) -> Result<Arc<dyn Dispatcher>> {
    let prefix = config.broker.prefix.clone();
    Ok(match &config.broker.url {
        Broker::Store => Arc::new(StoreDispatcher::new(store.clone())),
        Broker::Amqp(url) => {
            tracing::info!(broker = %redact(url), prefix = %prefix, "dispatching through RabbitMQ");
            let amqp = AmqpConfig {
                url: url.clone(),
                prefix,
            };
            Arc::new(AmqpDispatcher::new(amqp, store.clone()))
        }
        Broker::Redis(url) => {
            tracing::info!(broker = %redact(url), prefix = %prefix, "dispatching through Redis Streams");
            let redis = RedisConfig {
                url: url.clone(),
                prefix,
            };
            Arc::new(RedisDispatcher::new(redis, store.clone())?)
        }
    })
}

/// Which roles [`App::start`] runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Roles {
    /// The HTTP API on `listen` (port 0 picks a free one: see [`Running::api_addr`]).
    pub api: bool,
    /// A worker pool on the configured queues.
    pub worker: bool,
    /// Stand for scheduler leader (cron, promotion, rescue, relay, pruning, gauges).
    pub scheduler: bool,
    /// The audit and analytics consumers (when `events.enabled`): from Kafka when configured,
    /// else from the outbox.
    pub consumers: bool,
}

impl Roles {
    /// Every role, as `pysaas dev` runs them.
    pub fn all() -> Self {
        Roles {
            api: true,
            worker: true,
            scheduler: true,
            consumers: true,
        }
    }
}

/// PySaaS, ready to run: a config, the handlers of its kinds and, optionally, parts supplied by
/// the embedding application or a test instead of the ones the config names.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// let app = pysaas::App::new(pysaas::Config::load(None)?);
/// app.run_worker().await
/// # }
/// ```
pub struct App {
    config: Config,
    handlers: Handlers,
    store: Option<Arc<dyn JobStore>>,
    dispatcher: Option<Arc<dyn Dispatcher>>,
    auth: Option<Arc<Auth>>,
    limits: Option<pysaas_api::ratelimit::Limits>,
    /// `dev`: create and print an admin key on first start.
    bootstrap_admin_key: bool,
    vault: Option<crate::Vault>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .field("handlers", &self.handlers)
            .finish_non_exhaustive()
    }
}

impl App {
    /// The built-in kinds on `config`.
    pub fn new(config: Config) -> Self {
        let billing = config.billing().unwrap_or_else(|err| {
            tracing::error!(error = %format!("{err:#}"), "billing settings are invalid: charges are refused");
            pysaas_workers::billing::BillingConfig::new(Arc::new(pysaas_workers::billing::NoProvider))
        });
        let email = config.email().unwrap_or_else(|err| {
            tracing::error!(error = %format!("{err:#}"), "email settings are invalid: using the defaults");
            pysaas_workers::notifications::EmailConfig::default()
        });
        let handlers = Handlers::builtin_with(pysaas_workers::handlers::BuiltinConfig {
            webhook_allow_private: config.worker.webhook_allow_private,
            billing,
            email,
            webhook_disable_after: i32::try_from(config.notifications.webhook_disable_after)
                .unwrap_or(i32::MAX),
        });
        App {
            config,
            handlers,
            store: None,
            dispatcher: None,
            auth: None,
            limits: None,
            bootstrap_admin_key: false,
            vault: None,
        }
    }

    /// Keeps the Vault connection that filled the config alive: its token renewed, the API's
    /// signing keys replaced when they change in Vault.
    pub fn with_vault(mut self, vault: Option<crate::Vault>) -> Self {
        self.vault = vault;
        self
    }

    /// Adds kind `K`, run by `handler`: the API accepts it, workers run it, schedules may fire
    /// it. The one registration line a new kind needs.
    pub fn register<K: JobKind, H: JobHandler<K>>(mut self, handler: H) -> Self {
        self.handlers.register::<K, H>(handler);
        self
    }

    /// Registers the billing kinds again with the config's provider (after changing it).
    pub fn register_billing(&mut self) -> Result<()> {
        let billing = self.config.billing()?;
        pysaas_workers::billing::register(&mut self.handlers, billing);
        Ok(())
    }

    /// Replaces the handlers (and so the kinds) altogether.
    pub fn with_handlers(mut self, handlers: Handlers) -> Self {
        self.handlers = handlers;
        self
    }

    /// Uses `store` instead of opening `database_url`.
    pub fn with_store(mut self, store: Arc<dyn JobStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Uses `dispatcher` instead of the one `broker.url` names.
    pub fn with_dispatcher(mut self, dispatcher: Arc<dyn Dispatcher>) -> Self {
        self.dispatcher = Some(dispatcher);
        self
    }

    /// Uses `auth` (token keys and settings) instead of the configured signing keys.
    pub fn with_auth(mut self, auth: Arc<Auth>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Uses `limits` instead of the configured rate limits.
    pub fn with_limits(mut self, limits: pysaas_api::ratelimit::Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The config, to adjust before starting.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Whether a store was supplied ([`App::with_store`]).
    pub fn store_given(&self) -> bool {
        self.store.is_some()
    }

    /// The handlers, by kind (the one list of the kinds this app runs).
    pub fn handlers(&self) -> &Handlers {
        &self.handlers
    }

    /// Opens what the roles share and starts `roles` in the background until `shutdown` is
    /// cancelled (or one role fails, which cancels the others).
    pub async fn start(self, roles: Roles, shutdown: CancellationToken) -> Result<Running> {
        let parts = Parts::open(self, shutdown).await?;
        parts.register_cursors(roles).await?;
        let tasks = TaskTracker::new();
        let (failed_tx, failed_rx) = tokio::sync::watch::channel(None::<String>);
        let failed_tx = Arc::new(failed_tx);
        let parts = Arc::new(parts);
        let api_addr = if roles.api {
            let listener = parts.bind_api().await?;
            let addr = listener.local_addr()?;
            let p = parts.clone();
            let f = failed_tx.clone();
            tasks.spawn(async move { p.finish("api", p.serve_api(listener).await, &f) });
            Some(addr)
        } else {
            None
        };
        let started = async {
            let worker = if roles.worker {
                Some(worker_config(&parts.config, &parts.handlers)?)
            } else {
                None
            };
            let maintenance = if roles.scheduler {
                parts.start_scheduler().await?
            } else {
                let idle = TaskTracker::new();
                idle.close();
                idle
            };
            parts.serve_metrics().await?;
            Ok::<_, anyhow::Error>((worker, maintenance))
        }
        .await;
        let (worker, maintenance) = match started {
            Ok(started) => started,
            Err(err) => {
                // Stop what already runs (the API) before reporting.
                parts.shutdown.cancel();
                tasks.close();
                tasks.wait().await;
                parts.stopped.cancel();
                return Err(err);
            }
        };
        if let Some(config) = worker {
            let p = parts.clone();
            let f = failed_tx.clone();
            tasks.spawn(async move {
                let worker = Worker::new(
                    p.store.clone(),
                    p.dispatcher.clone(),
                    p.handlers.clone(),
                    config,
                )
                .with_profiles(p.profiles.clone());
                let result = worker.run(p.shutdown.clone()).await.map_err(Into::into);
                p.finish("worker", result, &f)
            });
        }
        if roles.consumers && parts.config.events.enabled {
            for consumer in pysaas_workers::consumers::Consumer::ALL {
                let source = parts.event_source(consumer)?;
                tasks.spawn(pysaas_workers::consumers::run(
                    consumer,
                    source,
                    parts.store.clone(),
                    parts.shutdown.clone(),
                ));
            }
        }
        {
            let p = parts.clone();
            tasks.spawn(async move {
                p.shutdown.cancelled().await;
                maintenance.wait().await;
            });
        }
        tasks.close();
        Ok(Running {
            api_addr,
            store: parts.store.clone(),
            dispatcher: parts.dispatcher.clone(),
            shutdown: parts.shutdown.clone(),
            stopped: parts.stopped.clone(),
            tasks,
            failed: failed_rx,
        })
    }

    /// `pysaas dev`: every role in one process, on SQLite in `data_dir` unless a database is
    /// configured; bootstraps an admin key on first start. Runs until SIGTERM/SIGINT.
    pub async fn run_dev(mut self) -> Result<()> {
        if self.config.store.url.is_none() && self.store.is_none() {
            std::fs::create_dir_all(&self.config.store.data_dir).with_context(|| {
                format!("creating data dir {}", self.config.store.data_dir.display())
            })?;
            self.config.store.url = Some(format!(
                "sqlite://{}",
                self.config.store.data_dir.join("pysaas.db").display()
            ));
        }
        self.bootstrap_admin_key = true;
        let shutdown = shutdown_signal();
        if self.config.billing.provider == "local" && self.config.billing.provider_url.is_none() {
            // Billing charges through a payment simulator of its own, in this process.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding the local payment simulator")?;
            let url = format!("http://{}", listener.local_addr()?);
            tokio::spawn(crate::payments_sim::serve(listener, None, shutdown.clone()));
            println!("PySaaS dev: payments through the local simulator at {url}");
            self.config.billing.provider_url = Some(url);
            if self
                .handlers
                .registry()
                .get(pysaas_jobs::kinds::billing::ChargeInvoice::KIND)
                .is_ok()
            {
                self.register_billing()?;
            }
        }
        let data_dir = self.config.store.data_dir.clone();
        let running = self.start(Roles::all(), shutdown).await?;
        println!("PySaaS dev: embedded store in {}", data_dir.display());
        running.wait().await
    }

    /// `pysaas api`: the HTTP API until SIGTERM/SIGINT.
    pub async fn run_api(self) -> Result<()> {
        let roles = Roles {
            api: true,
            ..Roles::default()
        };
        self.start(roles, shutdown_signal()).await?.wait().await
    }

    /// `pysaas worker`: a worker pool (and a scheduler candidate if `scheduler_in_workers`)
    /// until SIGTERM/SIGINT.
    pub async fn run_worker(self) -> Result<()> {
        let roles = Roles {
            worker: true,
            scheduler: self.config.scheduler.in_workers,
            ..Roles::default()
        };
        self.start(roles, shutdown_signal()).await?.wait().await
    }

    /// `pysaas analytics`: the audit and analytics consumers until SIGTERM/SIGINT.
    pub async fn run_consumers(self) -> Result<()> {
        if !self.config.events.enabled {
            bail!(
                "events.enabled (PYSAAS_EVENTS_ENABLED) is false: there are no events to consume"
            );
        }
        let roles = Roles {
            consumers: true,
            ..Roles::default()
        };
        self.start(roles, shutdown_signal()).await?.wait().await
    }

    /// `pysaas scheduler`: a scheduler candidate until SIGTERM/SIGINT.
    pub async fn run_scheduler(self) -> Result<()> {
        let roles = Roles {
            scheduler: true,
            ..Roles::default()
        };
        self.start(roles, shutdown_signal()).await?.wait().await
    }
}

/// Roles started by [`App::start`].
#[derive(Debug)]
pub struct Running {
    /// Where the API listens, if it runs.
    pub api_addr: Option<std::net::SocketAddr>,
    /// The job store every role uses.
    pub store: Arc<dyn JobStore>,
    /// The dispatcher every role uses.
    pub dispatcher: Arc<dyn Dispatcher>,
    shutdown: CancellationToken,
    stopped: CancellationToken,
    tasks: TaskTracker,
    failed: tokio::sync::watch::Receiver<Option<String>>,
}

impl Running {
    /// `http://<api_addr>`, if the API runs.
    pub fn base_url(&self) -> Option<String> {
        self.api_addr.map(|a| format!("http://{a}"))
    }

    /// The token that stops every role.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until every role has stopped (after shutdown, or after one of them failed), closes
    /// the dispatcher and reports the first failure.
    pub async fn wait(self) -> Result<()> {
        self.tasks.wait().await;
        self.stopped.cancel();
        self.dispatcher.close().await;
        match self.failed.borrow().clone() {
            Some(message) => bail!(message),
            None => Ok(()),
        }
    }

    /// Stops every role gracefully and waits for them.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// What every role shares once opened.
struct Parts {
    config: Config,
    store: Arc<dyn JobStore>,
    /// Where profiles live: the job store, or DynamoDB.
    profiles: Arc<dyn pysaas_brokers::ProfileStore>,
    dispatcher: Arc<dyn Dispatcher>,
    handlers: Handlers,
    auth: Option<Arc<Auth>>,
    limits: Option<pysaas_api::ratelimit::Limits>,
    bootstrap_admin_key: bool,
    vault: Option<crate::Vault>,
    shutdown: CancellationToken,
    /// Cancelled once every role has stopped (after `shutdown`): ends the probe server.
    stopped: CancellationToken,
}

impl Parts {
    async fn open(app: App, shutdown: CancellationToken) -> Result<Self> {
        // Before anything records a metric (the leader gauge is set once, at election).
        install_metrics();
        let store = match app.store {
            Some(store) => store,
            None => {
                let url = app.config.require_database_url()?.to_owned();
                let store = open_store(&app.config, &url).await?;
                tracing::info!(store = %redact(&url), backend = store.backend(), "job store open");
                store
            }
        };
        let dispatcher = match app.dispatcher {
            Some(dispatcher) => dispatcher,
            None => open_dispatcher(&app.config, &store)?,
        };
        let profiles = open_profiles(&app.config, &store).await?;
        // Only ever on: a process started without `events.enabled` (a stray one, an old
        // config) must not stop the recording for all the others (`pysaas admin
        // disable-events` does that, deliberately).
        if app.config.events.enabled {
            store
                .set_events_enabled(true)
                .await
                .context("applying events.enabled")?;
        }
        Ok(Parts {
            config: app.config,
            store,
            profiles,
            dispatcher,
            handlers: app.handlers,
            auth: app.auth,
            limits: app.limits,
            bootstrap_admin_key: app.bootstrap_admin_key,
            vault: app.vault,
            shutdown,
            stopped: CancellationToken::new(),
        })
    }

    /// Records a role's end: a failure is logged, kept for [`Running::wait`] and stops the rest.
    fn finish(
        &self,
        role: &str,
        result: Result<()>,
        failed: &tokio::sync::watch::Sender<Option<String>>,
    ) {
        if let Err(err) = result {
            tracing::error!(
                role,
                error = format!("{err:#}"),
                "role failed; shutting down"
            );
            failed.send_if_modified(|slot| {
                let first = slot.is_none();
                if first {
                    *slot = Some(format!("{role}: {err:#}"));
                }
                first
            });
        }
        self.shutdown.cancel();
    }

    /// Applies the config's schedules, then stands for scheduler leader until shutdown (the
    /// leader runs cron, promotion, rescue, relay, pruning and gauges).
    async fn start_scheduler(&self) -> Result<TaskTracker> {
        let config = &self.config;
        let registry = self.handlers.registry();
        let mut schedules = config.schedules.clone();
        // The invoice run, unless the config declares a schedule of that name itself.
        let invoice_run = pysaas_jobs::kinds::billing::GenerateInvoices::KIND;
        if registry.get(invoice_run).is_ok() && !schedules.iter().any(|s| s.name == invoice_run) {
            schedules.push(pysaas_jobs::ScheduleSpec {
                name: invoice_run.to_owned(),
                cron: config.billing.invoice_cron.clone(),
                timezone: "UTC".to_owned(),
                kind: invoice_run.to_owned(),
                payload: serde_json::json!({}),
                queue: None,
                priority: None,
                max_attempts: None,
                // One run catches every subscription up: a missed tick needs no second run.
                misfire: pysaas_jobs::Misfire::FireOnce,
                catch_up_max: 1,
                paused: false,
            });
        }
        let report = pysaas_scheduler::sync_schedules(
            self.store.as_ref(),
            &registry,
            DEFAULT_TENANT,
            &schedules,
        )
        .await
        .context("applying the schedules of the config file")?;
        if !schedules.is_empty() {
            tracing::info!(
                created = report.created,
                updated = report.updated,
                unchanged = report.unchanged,
                "config schedules applied"
            );
        }
        let scheduler = scheduler_config(config);
        let events: Option<Arc<dyn EventSink>> = match config.kafka()? {
            Some(kafka) => {
                tracing::info!(brokers = %kafka.brokers, prefix = %kafka.topic_prefix, "the leader publishes events to Kafka");
                Some(Arc::new(
                    KafkaSink::new(kafka).context("opening the Kafka producer")?,
                ))
            }
            None => None,
        };
        tracing::info!(holder = %scheduler.holder, "standing for scheduler leader");
        Ok(pysaas_scheduler::spawn(
            pysaas_scheduler::Context {
                store: self.store.clone(),
                dispatcher: self.dispatcher.clone(),
                registry,
                config: scheduler,
                events,
            },
            self.shutdown.clone(),
        ))
    }

    /// Creates the outbox cursors this process's roles read with (at the start, if new), so
    /// that the pruner keeps every fact until they have passed it — also a fact recorded
    /// before their first read.
    async fn register_cursors(&self, roles: Roles) -> Result<()> {
        if !self.config.events.enabled {
            return Ok(());
        }
        let mut cursors = Vec::new();
        match self.config.kafka()? {
            Some(_) if roles.scheduler => cursors.push(pysaas_scheduler::publisher::CURSOR),
            Some(_) => {}
            None if roles.consumers => {
                cursors.extend(pysaas_workers::consumers::Consumer::ALL.map(|c| c.name()))
            }
            None => {}
        }
        for cursor in cursors {
            self.store
                .outbox_commit(cursor, pysaas_brokers::OutboxPosition::default())
                .await
                .with_context(|| format!("registering the outbox cursor {cursor}"))?;
        }
        Ok(())
    }

    /// Where `consumer` reads: its Kafka consumer group (`pysaas-<name>`) when Kafka is
    /// configured, else the outbox through its own cursor.
    fn event_source(
        &self,
        consumer: pysaas_workers::consumers::Consumer,
    ) -> Result<Box<dyn EventSource>> {
        let streams = [consumer.stream()];
        Ok(match self.config.kafka()? {
            Some(kafka) => Box::new(
                KafkaSource::new(kafka, &format!("pysaas-{}", consumer.name()), &streams)
                    .context("opening the Kafka consumer")?,
            ),
            None => Box::new(OutboxSource::new(
                self.store.clone(),
                consumer.name(),
                &streams,
            )),
        })
    }

    /// Serves `/metrics`, `/healthz`, `/readyz` and `/drain` on `metrics_listen`, if set (every
    /// role but the API's own port). It keeps serving while the roles drain, until they have
    /// stopped: `/healthz` stays 200 (a liveness probe must not kill a draining worker), `/readyz`
    /// turns 503 the moment shutdown begins, and `/drain` begins it (Kubernetes' preStop: stop
    /// claiming before SIGTERM arrives; in-flight jobs get the shutdown grace from then on).
    async fn serve_metrics(&self) -> Result<()> {
        let config = &self.config;
        let Some(addr) = &config.metrics_listen else {
            return Ok(());
        };
        let listener = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .with_context(|| format!("cannot listen on {addr} (metrics_listen)"))?;
        let handle = install_metrics();
        let draining = self.shutdown.clone();
        let shutdown = self.shutdown.clone();
        // GET too: a Kubernetes preStop hook can only GET.
        // Loopback callers only (the container's own preStop exec): a scrape port is reachable
        // from Prometheus's namespace, and a GET there must not stop a process.
        let drain = move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
            std::net::SocketAddr,
        >| {
            let shutdown = shutdown.clone();
            async move {
                if !peer.ip().is_loopback() {
                    return (
                        axum::http::StatusCode::FORBIDDEN,
                        "drain is for loopback callers only",
                    );
                }
                if !shutdown.is_cancelled() {
                    tracing::info!("drain requested: no more claims; in-flight jobs finish");
                    shutdown.cancel();
                }
                (axum::http::StatusCode::ACCEPTED, "draining")
            }
        };
        let store = self.store.clone();
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
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .route(
                "/readyz",
                axum::routing::get(move || {
                    let (draining, store) = (draining.clone(), store.clone());
                    async move {
                        use axum::http::StatusCode;
                        if draining.is_cancelled() {
                            return (StatusCode::SERVICE_UNAVAILABLE, "draining");
                        }
                        match store.ping().await {
                            Ok(()) => (StatusCode::OK, "ok"),
                            Err(err) => {
                                tracing::warn!(error = %err, "readiness check failed");
                                (StatusCode::SERVICE_UNAVAILABLE, "job store unreachable")
                            }
                        }
                    }
                }),
            )
            .route("/drain", axum::routing::get(drain.clone()).post(drain));
        tracing::info!(address = %addr, "metrics and probes on /metrics, /healthz, /readyz");
        let stopped = self.stopped.clone();
        tokio::spawn(async move {
            let served = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await;
            if let Err(err) = served {
                tracing::warn!(error = %err, "metrics server stopped");
            }
        });
        Ok(())
    }

    async fn bind_api(&self) -> Result<tokio::net::TcpListener> {
        let addr = self.config.listen_addr()?;
        tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))
    }

    async fn serve_api(&self, listener: tokio::net::TcpListener) -> Result<()> {
        let config = &self.config;
        let local = listener.local_addr()?;
        if let Err(err) = crate::security::ensure_default_tenant(self.store.as_ref()).await {
            // An unreachable store does not keep the API down: it answers 503 until the store is
            // back (the tenant is ensured again by the next start; submissions need the store).
            match err.downcast_ref::<pysaas_brokers::StoreError>() {
                Some(store) if store.is_unavailable() => {
                    tracing::warn!(error = %store, "store unreachable at start; serving 503 until it is back");
                }
                _ => return Err(err),
            }
        }
        if self.bootstrap_admin_key {
            crate::security::bootstrap_admin_key(self.store.as_ref(), config).await?;
        }
        let auth = match &self.auth {
            Some(auth) => auth.clone(),
            None => crate::security::auth(
                config,
                config
                    .auth
                    .jwt_signing_keys
                    .as_ref()
                    .map(crate::config::Secret::expose),
            )?,
        };
        if let Some(crate::Vault(vault)) = &self.vault {
            vault
                .clone()
                .spawn_upkeep(Some(auth.clone()), self.shutdown.clone());
        }
        let limiter: Arc<dyn pysaas_api::ratelimit::RateLimiter> = match &config
            .api
            .rate_limit_backend
        {
            RateLimitBackend::Memory => Arc::new(pysaas_api::ratelimit::MemoryLimiter::default()),
            RateLimitBackend::Redis(url) => Arc::new(
                pysaas_api::ratelimit::RedisLimiter::connect(url, &config.broker.prefix)
                    .await
                    .context("connecting the rate limiter to Redis")?,
            ),
        };
        let limits = self.limits.clone().unwrap_or_else(|| config.limits());
        let state = AppState::new(
            self.store.clone(),
            self.dispatcher.clone(),
            self.handlers.registry(),
            config.api.public_metrics.then(install_metrics).flatten(),
            auth,
        )
        .with_rate_limits(limiter, limits)
        .with_profiles(self.profiles.clone());
        let gateway = pysaas_api::GatewayConfig {
            cors_origins: config.api.cors_origins.clone(),
            request_timeout: (config.api.request_timeout_ms > 0)
                .then(|| Duration::from_millis(config.api.request_timeout_ms)),
            trust_forwarded_for: config.api.trust_forwarded_for,
            ui_dir: config.api.ui_dir.clone(),
        };
        tracing::info!(address = %local, "API listening; OpenAPI at /openapi.json, Swagger UI at /docs");
        if config.api.ui_dir.is_some() {
            println!("PySaaS dashboard on http://{local}/  (API docs: http://{local}/docs)");
        } else {
            println!("PySaaS API on http://{local}  (docs: http://{local}/docs)");
        }
        let shutdown = self.shutdown.clone();
        let streams = state.clone();
        pysaas_api::serve(
            listener,
            pysaas_api::router_with(state, &gateway),
            async move {
                shutdown.cancelled().await;
                streams.end_streams();
            },
        )
        .await?;
        Ok(())
    }
}

/// Histogram buckets (seconds) for run durations and queue waits: 1 ms to 5 min.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The process's Prometheus recorder, installed once with every crate's metrics described: api,
/// workers, scheduler and brokers all record into it.
pub fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS);
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => {
                    pysaas_api::describe_metrics();
                    pysaas_workers::describe_metrics();
                    pysaas_scheduler::describe_metrics();
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// `pysaas admin create-key`: an API key for a tenant, printed once.
pub async fn create_key(
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
    let url = match config.store.url.clone() {
        Some(url) => url,
        // Like `pysaas dev`: the embedded store in the data dir, if there is one.
        None => {
            let db = config.store.data_dir.join("pysaas.db");
            if !db.exists() {
                bail!(
                    "no database configured and no dev store at {}: set PYSAAS_DATABASE_URL, or pass --data-dir where `pysaas dev` keeps its data",
                    db.display()
                );
            }
            format!("sqlite://{}", db.display())
        }
    };
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

/// `pysaas admin disable-events`: stops the recording of events store-wide.
pub async fn disable_events(config: Config) -> Result<()> {
    let url = config.require_database_url()?.to_owned();
    let store = open_store(&config, &url).await?;
    store
        .set_events_enabled(false)
        .await
        .context("turning events off")?;
    println!("events are no longer recorded in {}", redact(&url));
    Ok(())
}

/// `pysaas migrate`: creates or upgrades the schema.
pub async fn migrate(mut config: Config) -> Result<()> {
    let url = config.require_database_url()?.to_owned();
    config.store.auto_migrate = true;
    let spinner = crate::progress::spinner(format!("applying migrations to {}", redact(&url)));
    let store = open_store(&config, &url).await;
    spinner.finish_and_clear();
    let store = store?;
    println!(
        "migrations applied to {} ({})",
        redact(&url),
        store.backend()
    );
    Ok(())
}
