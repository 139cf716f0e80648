//! `pysaas bench`: throughput and latency of the real paths, each phase printing one line of
//! figures to stdout (logs go to stderr, errors only unless `PYSAAS_LOG` says otherwise):
//!
//! - `drain`: N no-op jobs enqueued first, drained by an in-process worker (`--runs` times);
//! - `raw`: the same store statements without the worker runtime, or the bare broker;
//! - `steady`: a fixed offered load, enqueue→start latency;
//! - `delayed`: lateness of delayed jobs on an idle system;
//! - `api`: `POST /v1/jobs` through the full gateway from in-process clients;
//! - `workers`: the drain by 1, 2, 4 … separate `pysaas worker` processes, with their memory;
//! - `history`: drain and submission with many finished jobs retained, against an empty store.
//!
//! A fresh PostgreSQL schema (or SQLite file) and broker prefix is used and removed afterwards.

mod counter;
mod phases;
mod procs;
mod raw;

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use pysaas_brokers::dispatch::amqp::{AmqpConfig, AmqpDispatcher};
use pysaas_brokers::dispatch::redis::{RedisConfig, RedisDispatcher};
use pysaas_brokers::store::{PgStore, SqliteStore, StoreConfig};
use pysaas_brokers::{Dispatcher, JobStore, StoreDispatcher};
use pysaas_jobs::{NewJob, DEFAULT_TENANT};

use crate::config::{redact, Config};

/// `pysaas bench` options.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Database to measure (default: PYSAAS_DATABASE_URL, else a temporary SQLite file).
    #[arg(long)]
    database_url: Option<String>,
    /// Dispatcher: `store`, `amqp://…` or `redis://…`.
    #[arg(long, default_value = "store")]
    broker: String,
    /// Phases to run, comma-separated: drain, raw, steady, delayed, api, workers, history.
    #[arg(long, value_delimiter = ',', default_value = "drain,steady")]
    phases: Vec<String>,
    /// Jobs pre-enqueued for each drain.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Worker concurrency.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Most jobs a worker claims ahead of free slots under a backlog of fast jobs (default 500).
    #[arg(long)]
    prefetch: Option<usize>,
    /// How many times the drain runs (each on a fresh queue); the median is printed too.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Steady-state offered load (jobs/s).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Steady-state and API phase duration (s).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Delayed jobs for the `delayed` phase (run_at spread over 5 s).
    #[arg(long, default_value_t = 200)]
    delayed: usize,
    /// Concurrent clients of the `api` phase.
    #[arg(long, default_value_t = 16)]
    api_clients: usize,
    /// Worker processes for the `workers` phase, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    workers: Vec<usize>,
    /// Finished jobs retained for the `history` phase.
    #[arg(long, default_value_t = 1_000_000)]
    history: u64,
    /// Also run the `raw` phase (same as adding it to --phases).
    #[arg(long)]
    raw: bool,
    /// Payload of the drain's jobs, a JSON object (e.g. `{"user_id":42,"plan":"pro"}`): each job
    /// is then a `bench.record` (any payload, nothing done) holding it plus a distinct `seq`
    /// member. Without it, `system.noop` jobs with `{}`.
    #[arg(long, value_parser = json_object)]
    payload: Option<serde_json::Map<String, serde_json::Value>>,
    /// Record every job transition in the event outbox (`events.enabled`), to measure what the
    /// audit and analytics streams cost.
    #[arg(long)]
    events: bool,
    /// With `--events`: the bench's leader also publishes the outbox to this Kafka
    /// (`host:port`), on topics prefixed by the bench's schema.
    #[arg(long, requires = "events")]
    kafka_brokers: Option<String>,
}

/// The `--payload` drain's kind: any JSON object as its payload, nothing done.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct Record {
    #[serde(flatten)]
    members: serde_json::Map<String, serde_json::Value>,
}

impl pysaas_jobs::JobKind for Record {
    const KIND: &'static str = "bench.record";
}

/// Succeeds at once, as `system.noop` does.
struct RecordHandler;

#[async_trait::async_trait]
impl pysaas_workers::JobHandler<Record> for RecordHandler {
    async fn handle(
        &self,
        _ctx: &pysaas_workers::JobContext,
        _job: Record,
    ) -> Result<Option<serde_json::Value>, pysaas_jobs::HandlerError> {
        Ok(None)
    }
}

/// The built-in kinds plus the bench's own.
pub(crate) fn handlers() -> pysaas_workers::Handlers {
    let mut handlers = pysaas_workers::Handlers::builtin();
    handlers.register::<Record, _>(RecordHandler);
    handlers
}

/// A `--payload` value: a JSON object.
fn json_object(raw: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str(raw) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err("a JSON object like {\"user_id\":42}".into()),
    }
}

/// What every phase works on.
pub(crate) struct Bench {
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) dispatcher: Arc<dyn Dispatcher>,
    pub(crate) raw: Raw,
    pub(crate) args: BenchArgs,
    /// Broker prefix (isolates this run's exchanges, queues and keys).
    pub(crate) prefix: String,
    /// The store's URL and PostgreSQL schema, for child processes.
    pub(crate) url: String,
    pub(crate) schema: String,
    pub(crate) finished: &'static counter::Finished,
    /// Queues used, so that their broker queues can be deleted afterwards.
    pub(crate) queues: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The scheduler leader (promotion, rescue, relay, vacuum…), as a worker process runs it.
    leader: (
        tokio_util::sync::CancellationToken,
        tokio_util::task::TaskTracker,
    ),
}

impl Bench {
    /// Notes that `queue` is used (its broker queue is deleted at the end).
    pub(crate) fn uses(&self, queue: &str) {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.to_owned());
    }
}

/// The concrete store, for the few raw SQL statements the bench needs.
pub(crate) enum Raw {
    Pg(PgStore),
    Sqlite(SqliteStore),
}

/// A no-op job on `queue`.
pub(crate) fn noop(queue: &str) -> NewJob {
    NewJob {
        id: uuid::Uuid::now_v7(),
        tenant_id: DEFAULT_TENANT.into(),
        kind: "system.noop".into(),
        queue: queue.into(),
        payload: serde_json::json!({}),
        priority: 0,
        max_attempts: 25,
        run_at: chrono::Utc::now(),
        timeout_ms: 60_000,
        idempotency_key: None,
        trace_context: None,
        request_id: None,
    }
}

/// The value at percentile `p` of sorted `values`.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The median of `values`.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 50.0)
}

fn open_dispatcher(
    broker: &str,
    prefix: &str,
    store: &Arc<dyn JobStore>,
) -> Result<Arc<dyn Dispatcher>> {
    Ok(match broker {
        "store" => Arc::new(StoreDispatcher::new(store.clone())),
        url if url.starts_with("amqp") => Arc::new(AmqpDispatcher::new(
            AmqpConfig {
                url: url.into(),
                prefix: prefix.into(),
            },
            store.clone(),
        )),
        url if url.starts_with("redis") => Arc::new(RedisDispatcher::new(
            RedisConfig {
                url: url.into(),
                prefix: prefix.into(),
            },
            store.clone(),
        )?),
        other => anyhow::bail!("--broker must be store, amqp://… or redis://… (got `{other}`)"),
    })
}

/// Runs the chosen phases and prints one line of figures each.
pub async fn run(config: Config, mut args: BenchArgs) -> Result<()> {
    const PHASES: [&str; 7] = [
        "drain", "raw", "steady", "delayed", "api", "workers", "history",
    ];
    if let Some(unknown) = args.phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
        anyhow::bail!("unknown phase `{unknown}`: use {}", PHASES.join(", "));
    }
    if args.raw && !args.phases.iter().any(|p| p == "raw") {
        args.phases.push("raw".into());
    }
    let temp_dir = std::env::temp_dir().join(format!("pysaas-bench-{}", std::process::id()));
    let url = match args.database_url.clone().or(config.store.url.clone()) {
        Some(url) => url,
        None => {
            std::fs::create_dir_all(&temp_dir)?;
            format!("sqlite://{}", temp_dir.join("bench.db").display())
        }
    };
    let bench = Bench::open(&url, args).await?;
    println!(
        "# pysaas bench {} — {} ({}), dispatcher {}, {} jobs, concurrency {}, prefetch {}",
        env!("CARGO_PKG_VERSION"),
        bench.store.backend(),
        redact(&url),
        if bench.args.broker == "store" {
            "store".to_owned()
        } else {
            redact(&bench.args.broker)
        },
        bench.args.jobs,
        bench.args.concurrency,
        bench
            .args
            .prefetch
            .unwrap_or(pysaas_workers::DEFAULT_PREFETCH)
    );
    let result = bench.phases().await;
    bench.close().await?;
    let _ = std::fs::remove_dir_all(&temp_dir);
    result
}

impl Bench {
    /// A fresh, migrated store (a new PostgreSQL schema, or a new SQLite file beside `url`'s)
    /// and broker prefix.
    pub(crate) async fn open(url: &str, args: BenchArgs) -> Result<Self> {
        let schema = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let url = match url.strip_prefix("sqlite://") {
            Some(path) => {
                let path = std::path::Path::new(path);
                let dir = path.parent().unwrap_or(std::path::Path::new("."));
                format!("sqlite://{}", dir.join(format!("{schema}.db")).display())
            }
            None => url.to_owned(),
        };
        let mut store_config = StoreConfig::new(&url);
        store_config.schema = schema.clone();
        store_config.max_connections = 32;
        let (store, raw): (Arc<dyn JobStore>, Raw) = if url.starts_with("sqlite:") {
            let s = SqliteStore::connect(&store_config).await?;
            (Arc::new(s.clone()), Raw::Sqlite(s))
        } else {
            let s = PgStore::connect(&store_config).await?;
            (Arc::new(s.clone()), Raw::Pg(s))
        };
        store.migrate().await.context("migrating the bench store")?;
        let prefix = schema.replace('_', "");
        let dispatcher = open_dispatcher(&args.broker, &prefix, &store)?;
        store
            .set_events_enabled(args.events)
            .await
            .context("setting events.enabled")?;
        let events: Option<Arc<dyn pysaas_brokers::stream::EventSink>> = match &args.kafka_brokers {
            Some(brokers) => {
                let mut kafka = pysaas_brokers::stream::kafka::KafkaConfig::new(brokers.clone());
                kafka.topic_prefix = format!("{schema}.");
                Some(Arc::new(
                    pysaas_brokers::stream::kafka::KafkaSink::new(kafka)
                        .context("opening the Kafka producer")?,
                ))
            }
            None => None,
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let leader = pysaas_scheduler::spawn(
            pysaas_scheduler::Context {
                store: store.clone(),
                dispatcher: dispatcher.clone(),
                registry: handlers().registry(),
                config: pysaas_scheduler::SchedulerConfig::new(format!(
                    "bench-{}-{schema}",
                    std::process::id()
                )),
                events,
            },
            stop.clone(),
        );
        Ok(Bench {
            leader: (stop, leader),
            store,
            dispatcher,
            raw,
            args,
            prefix,
            url,
            schema,
            finished: counter::install(),
            queues: std::sync::Mutex::default(),
        })
    }

    /// Removes what [`Bench::open`] created.
    pub(crate) async fn close(self) -> Result<()> {
        self.leader.0.cancel();
        self.leader.1.wait().await;
        self.dispatcher.close().await;
        let queues: Vec<String> = self
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        raw::cleanup_broker(&self.args.broker, &self.prefix, &queues).await;
        match &self.raw {
            Raw::Pg(pg) => {
                sqlx::query(&format!(
                    "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                    self.schema
                ))
                .execute(pg.pool())
                .await?;
            }
            Raw::Sqlite(lite) => {
                lite.pool().close().await;
                if let Some(path) = self.url.strip_prefix("sqlite://") {
                    for suffix in ["", "-wal", "-shm"] {
                        let _ = std::fs::remove_file(format!("{path}{suffix}"));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Bench {
    async fn phases(&self) -> Result<()> {
        let wants = |p: &str| self.args.phases.iter().any(|x| x == p);
        if wants("drain") {
            self.drain_runs().await?;
        }
        if wants("raw") {
            self.raw_ceiling().await?;
        }
        if wants("steady") {
            self.steady().await?;
        }
        if wants("delayed") {
            self.delayed().await?;
        }
        if wants("api") {
            self.api().await?;
        }
        if wants("workers") {
            self.worker_processes().await?;
        }
        if wants("history") {
            self.history().await?;
        }
        Ok(())
    }
}
