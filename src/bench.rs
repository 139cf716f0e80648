//! `pysaas bench`: drain throughput, steady-state enqueue→start latency, and with `--raw` the
//! bare store ceiling (the same `SKIP LOCKED` claim loop without the framework), in one run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use pysaas_brokers::dispatch::amqp::{AmqpConfig, AmqpDispatcher};
use pysaas_brokers::dispatch::redis::{RedisConfig, RedisDispatcher};
use pysaas_brokers::store::{PgStore, SqliteStore, StoreConfig};
use pysaas_brokers::{Dispatcher, JobFilter, JobStore, StoreDispatcher};
use pysaas_jobs::{NewJob, DEFAULT_TENANT};
use pysaas_workers::{Handlers, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

use crate::config::{redact, Config};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Database to measure (default: PYSAAS_DATABASE_URL, else a temporary SQLite file). A fresh
    /// schema (PostgreSQL) or file (SQLite) is used and removed afterwards.
    #[arg(long)]
    database_url: Option<String>,
    /// Jobs pre-enqueued for the drain test.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Worker concurrency.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Steady-state offered load (jobs/s).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Steady-state duration (s).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Also measure the bare ceiling of the transport: the store's claim loop, or raw lapin
    /// (persistent publish with confirms, consume with ack), or raw XADD/XREADGROUP/XACK.
    #[arg(long)]
    raw: bool,
    /// Dispatcher: `store`, `amqp://…` or `redis://…` (default: `store`).
    #[arg(long, default_value = "store")]
    broker: String,
    /// Delayed jobs for the timing test (run_at spread over 5 s, system otherwise idle; 0 skips).
    #[arg(long, default_value_t = 200)]
    delayed: usize,
    /// Also measure `POST /v1/jobs` through the HTTP API (API-key auth, rate limiter, validation,
    /// insert) with this many concurrent clients for `--seconds` (0 skips).
    #[arg(long, default_value_t = 0)]
    api_clients: usize,
}

enum Raw {
    Pg(PgStore),
    Sqlite(SqliteStore),
}

fn noop(queue: &str) -> NewJob {
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

/// Inserts `n` no-op jobs in batches of 1,000 and announces them, as `POST /v1/jobs/batch` does.
async fn enqueue(
    store: &Arc<dyn JobStore>,
    dispatcher: &Arc<dyn Dispatcher>,
    queue: &str,
    n: usize,
) -> Result<Duration> {
    let start = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(pysaas_api::BATCH_MAX);
        let jobs: Vec<_> = store
            .insert((0..batch).map(|_| noop(queue)).collect())
            .await?
            .into_iter()
            .map(|i| i.job)
            .collect();
        dispatcher.dispatch(&jobs).await?;
        left -= batch;
    }
    Ok(start.elapsed())
}

/// Whether any job of `queue` is still unfinished: an index probe of the hot table, cheap
/// enough to poll often without disturbing the run (finished jobs live in the history).
async fn unfinished(raw: &Raw, queue: &str) -> Result<bool> {
    // Queued jobs through the claim index, the others (few) through their partial indexes.
    let sql = "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND queue = $1) \
                   OR EXISTS (SELECT 1 FROM jobs WHERE lease_expires_at IS NOT NULL AND queue = $1) \
                   OR EXISTS (SELECT 1 FROM jobs WHERE state IN ('scheduled', 'retrying') AND queue = $1)";
    Ok(match raw {
        Raw::Pg(pg) => {
            sqlx::query_scalar(sql)
                .bind(queue)
                .fetch_one(pg.pool())
                .await?
        }
        Raw::Sqlite(lite) => {
            sqlx::query_scalar(&sql.replace("$1", "?1"))
                .bind(queue)
                .fetch_one(lite.pool())
                .await?
        }
    })
}

/// Waits until every job of `queue` has finished.
async fn wait_for(raw: &Raw, queue: &str, _n: usize) -> Result<()> {
    while unfinished(raw, queue).await? {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn start_worker(
    store: &Arc<dyn JobStore>,
    dispatcher: &Arc<dyn Dispatcher>,
    queue: &str,
    concurrency: usize,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), pysaas_workers::WorkerError>>,
) {
    let worker = Worker::new(
        store.clone(),
        dispatcher.clone(),
        Handlers::builtin(),
        WorkerConfig::for_queues([queue], concurrency),
    );
    let stop = CancellationToken::new();
    (stop.clone(), tokio::spawn(worker.run(stop)))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub(crate) async fn run(config: Config, args: BenchArgs) -> Result<()> {
    let temp_dir = std::env::temp_dir().join(format!("pysaas-bench-{}", std::process::id()));
    let url = match args.database_url.clone().or(config.database_url.clone()) {
        Some(url) => url,
        None => {
            std::fs::create_dir_all(&temp_dir)?;
            format!("sqlite://{}", temp_dir.join("bench.db").display())
        }
    };
    let schema = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
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
    let dispatcher: Arc<dyn Dispatcher> = match args.broker.as_str() {
        "store" => Arc::new(StoreDispatcher::new(store.clone())),
        url if url.starts_with("amqp") => Arc::new(AmqpDispatcher::new(
            AmqpConfig {
                url: url.into(),
                prefix: prefix.clone(),
            },
            store.clone(),
        )),
        url if url.starts_with("redis") => Arc::new(RedisDispatcher::new(
            RedisConfig {
                url: url.into(),
                prefix: prefix.clone(),
            },
            store.clone(),
        )?),
        other => anyhow::bail!("--broker must be store, amqp://… or redis://… (got `{other}`)"),
    };
    println!(
        "# pysaas bench — {} ({}), {} jobs, concurrency {}",
        store.backend(),
        redact(&url),
        args.jobs,
        args.concurrency
    );
    println!(
        "dispatcher: {}",
        if args.broker == "store" {
            "store".to_owned()
        } else {
            redact(&args.broker)
        }
    );
    let result = measure(&store, &dispatcher, &raw, &args, &prefix).await;
    cleanup_broker(&args.broker, &prefix).await;
    if let Raw::Pg(pg) = &raw {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .execute(pg.pool())
            .await?;
    }
    let _ = std::fs::remove_dir_all(&temp_dir);
    result
}

async fn measure(
    store: &Arc<dyn JobStore>,
    dispatcher: &Arc<dyn Dispatcher>,
    raw: &Raw,
    args: &BenchArgs,
    prefix: &str,
) -> Result<()> {
    // 1. Drain N pre-enqueued no-op jobs through the framework.
    let enqueue_time = enqueue(store, dispatcher, "drain", args.jobs).await?;
    println!(
        "enqueue (batches of 1,000): {:>9.0} jobs/s",
        args.jobs as f64 / enqueue_time.as_secs_f64()
    );
    let start = Instant::now();
    let (stop, worker) = start_worker(store, dispatcher, "drain", args.concurrency);
    wait_for(raw, "drain", args.jobs).await?;
    let drain = args.jobs as f64 / start.elapsed().as_secs_f64();
    stop.cancel();
    worker.await??;
    println!("drain (framework):          {drain:>9.0} jobs/s");

    // 2. The bare ceiling: the same claim query, outcomes written straight back, no runtime.
    if args.raw && args.broker != "store" {
        let ceiling = if args.broker.starts_with("amqp") {
            raw_amqp(&args.broker, prefix, args.jobs, args.concurrency).await?
        } else {
            raw_redis(&args.broker, prefix, args.jobs, args.concurrency).await?
        };
        println!("drain (raw broker ceiling): {ceiling:>9.0} jobs/s");
        println!(
            "framework / ceiling:        {:>9.0} %",
            100.0 * drain / ceiling
        );
    }
    if args.raw && args.broker == "store" {
        enqueue(store, dispatcher, "raw", args.jobs).await?;
        let start = Instant::now();
        let loops = 2;
        let mut tasks = Vec::new();
        for _ in 0..loops {
            let (store, batch) = (store.clone(), args.concurrency);
            tasks.push(tokio::spawn(async move { raw_loop(store, batch).await }));
        }
        let mut done = 0u64;
        for task in tasks {
            done += task.await??;
        }
        let ceiling = done as f64 / start.elapsed().as_secs_f64();
        println!("drain (raw store ceiling):  {ceiling:>9.0} jobs/s");
        println!(
            "framework / ceiling:        {:>9.0} %",
            100.0 * drain / ceiling
        );
    }

    // 3. Steady state: a fixed offered load, one insert per job (as the API does).
    let (stop, worker) = start_worker(store, dispatcher, "steady", args.concurrency);
    let total = args.rate * args.seconds;
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let start = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inserts = tokio::task::JoinSet::new();
    for _ in 0..total {
        ticker.tick().await;
        let (store, dispatcher) = (store.clone(), dispatcher.clone());
        inserts.spawn(async move {
            let jobs: Vec<_> = store
                .insert(vec![noop("steady")])
                .await?
                .into_iter()
                .map(|i| i.job)
                .collect();
            dispatcher.dispatch(&jobs).await
        });
        while inserts.len() > 256 {
            if let Some(r) = inserts.join_next().await {
                r??;
            }
        }
    }
    while let Some(r) = inserts.join_next().await {
        r??;
    }
    wait_for(raw, "steady", total as usize).await?;
    let elapsed = start.elapsed().as_secs_f64();
    stop.cancel();
    worker.await??;
    let mut latencies = Vec::with_capacity(total as usize);
    let mut filter = JobFilter {
        tenant_id: DEFAULT_TENANT.into(),
        queue: Some("steady".into()),
        limit: 1000,
        ..JobFilter::default()
    };
    loop {
        let page = store.list(&filter).await?;
        for job in &page {
            if let Some(started) = job.started_at {
                latencies.push(
                    (started - job.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0,
                );
            }
        }
        match page.last() {
            Some(last) if page.len() == 1000 => filter.before = Some(last.id),
            _ => break,
        }
    }
    latencies.sort_by(f64::total_cmp);
    print_steady(&latencies, total, elapsed, args);
    if args.delayed > 0 {
        delayed(store, dispatcher, args).await?;
    }
    if args.api_clients > 0 {
        api(store, dispatcher, args).await?;
    }
    Ok(())
}

/// Phase 5, the HTTP API: concurrent clients submit no-op jobs with an API key for `--seconds`
/// (limits set out of the way: this measures their cost, not their effect).
async fn api(
    store: &Arc<dyn JobStore>,
    dispatcher: &Arc<dyn Dispatcher>,
    args: &BenchArgs,
) -> Result<()> {
    use pysaas_api::ratelimit::{Limit, Limits, MemoryLimiter};
    let key = pysaas_api::auth::admin_key_for(store.as_ref(), DEFAULT_TENANT, "bench").await?;
    let wide = Limit {
        rate: 1e9,
        burst: u32::MAX,
    };
    let state = pysaas_api::AppState::new(
        store.clone(),
        dispatcher.clone(),
        Handlers::builtin().registry(),
        None,
        Arc::new(pysaas_api::auth::Auth::ephemeral()),
    )
    .with_rate_limits(
        Arc::new(MemoryLimiter::default()),
        Limits {
            plans: [("free".to_owned(), wide)].into(),
            default_plan: "free".into(),
            api_key: wide,
            auth_per_ip: wide,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/jobs", listener.local_addr()?);
    let stop = CancellationToken::new();
    let until = stop.clone();
    let server = tokio::spawn(pysaas_api::serve(
        listener,
        pysaas_api::router(state),
        async move { until.cancelled().await },
    ));
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..args.api_clients {
        let (http, url, key) = (http.clone(), url.clone(), key.clone());
        clients.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&serde_json::json!({"kind": "system.noop", "queue": "api"}))
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status() == reqwest::StatusCode::ACCEPTED,
                    "submission answered {}",
                    response.status()
                );
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = clients.join_next().await {
        latencies.extend(done??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = server.await;
    latencies.sort_by(f64::total_cmp);
    println!(
        "API submit (HTTP, API key): {:>9.0} jobs/s with {} clients; p50 {:.1} ms, p99 {:.1} ms",
        latencies.len() as f64 / elapsed,
        args.api_clients,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0)
    );
    Ok(())
}

fn print_steady(latencies: &[f64], total: u64, elapsed: f64, args: &BenchArgs) {
    println!(
        "steady state:               {:>9.0} jobs/s offered {} for {} s; enqueue→start p50 {:.1} ms, p99 {:.1} ms",
        total as f64 / elapsed,
        args.rate,
        args.seconds,
        percentile(latencies, 50.0),
        percentile(latencies, 99.0)
    );
}

/// Phase 4, delayed jobs on an idle system: each `run_at` is spread over 5 s; the scheduler's
/// leader promotes them and a worker starts them. Lateness = `started_at − run_at` (never negative).
async fn delayed(
    store: &Arc<dyn JobStore>,
    dispatcher: &Arc<dyn Dispatcher>,
    args: &BenchArgs,
) -> Result<()> {
    let stop = CancellationToken::new();
    let scheduler = pysaas_scheduler::spawn(
        pysaas_scheduler::Context {
            store: store.clone(),
            dispatcher: dispatcher.clone(),
            registry: Handlers::builtin().registry(),
            config: pysaas_scheduler::SchedulerConfig::new(format!("bench-{}", std::process::id())),
        },
        stop.clone(),
    );
    let (worker_stop, worker) = start_worker(store, dispatcher, "delayed", args.concurrency);
    let base = chrono::Utc::now() + chrono::Duration::seconds(1);
    let spread_us = 5_000_000 / args.delayed.max(1) as i64;
    let jobs: Vec<NewJob> = (0..args.delayed)
        .map(|i| NewJob {
            run_at: base + chrono::Duration::microseconds(spread_us * i as i64),
            ..noop("delayed")
        })
        .collect();
    let ids: Vec<uuid::Uuid> = store
        .insert(jobs)
        .await?
        .into_iter()
        .map(|i| i.job.id)
        .collect();
    let mut lateness = Vec::with_capacity(ids.len());
    let mut early = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in ids {
        loop {
            let job = store
                .get(DEFAULT_TENANT, id)
                .await?
                .context("delayed job vanished")?;
            if let Some(started) = job.started_at {
                let ms = (started - job.run_at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                if ms < 0.0 {
                    early += 1;
                }
                lateness.push(ms);
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "delayed job {id} never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    worker_stop.cancel();
    worker.await??;
    stop.cancel();
    scheduler.wait().await;
    lateness.sort_by(f64::total_cmp);
    println!(
        "delayed jobs:               {:>9} jobs over 5 s; run_at→start p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; started early: {early}",
        lateness.len(),
        percentile(&lateness, 50.0),
        percentile(&lateness, 99.0),
        lateness.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}

/// Claims up to `batch` queued `raw` jobs and records them succeeded, with the store's own
/// statements but without the worker runtime (no handler, task, lease renewal or completer
/// channel), until none is left. Returns how many it completed.
async fn raw_loop(store: Arc<dyn JobStore>, batch: usize) -> Result<u64> {
    let mut done = 0u64;
    loop {
        let jobs = store
            .claim("raw", batch, "raw-loop", Duration::from_secs(30))
            .await?;
        if jobs.is_empty() {
            return Ok(done);
        }
        let completions: Vec<pysaas_brokers::Completion> = jobs
            .iter()
            .map(|j| pysaas_brokers::Completion {
                id: j.id,
                attempt: j.attempts,
                outcome: pysaas_jobs::Outcome::Succeeded { result: None },
            })
            .collect();
        done += store.complete(&completions).await?;
    }
}

/// Raw lapin: `n` persistent messages published with confirms (awaited per 1,000), then consumed
/// with a prefetch of `concurrency` and acknowledged one by one. Returns the consume rate.
async fn raw_amqp(url: &str, prefix: &str, n: usize, concurrency: usize) -> Result<f64> {
    use futures::StreamExt;
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    let properties = lapin::ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    let conn = lapin::Connection::connect(url, properties).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let queue = format!("{prefix}.raw");
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(&queue, durable, FieldTable::default())
        .await?;
    let body = br#"{"v":1,"id":"00000000-0000-0000-0000-000000000000"}"#;
    let start = Instant::now();
    for chunk in 0..n.div_ceil(1000) {
        let mut confirms = Vec::new();
        for _ in 0..(n - chunk * 1000).min(1000) {
            let props = lapin::BasicProperties::default().with_delivery_mode(2);
            confirms.push(
                channel
                    .basic_publish("", &queue, BasicPublishOptions::default(), body, props)
                    .await?,
            );
        }
        for confirm in confirms {
            confirm.await?;
        }
    }
    println!(
        "raw lapin publish+confirm:  {:>9.0} msgs/s",
        n as f64 / start.elapsed().as_secs_f64()
    );
    let consumer_channel = conn.create_channel().await?;
    consumer_channel
        .basic_qos(
            u16::try_from(concurrency).unwrap_or(u16::MAX),
            BasicQosOptions::default(),
        )
        .await?;
    let mut consumer = consumer_channel
        .basic_consume(
            &queue,
            "raw",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let Some(delivery) = consumer.next().await else {
            break;
        };
        delivery?.ack(BasicAckOptions::default()).await?;
        done += 1;
    }
    let rate = done as f64 / start.elapsed().as_secs_f64();
    let _ = conn.close(200, "bench done").await;
    Ok(rate)
}

/// Raw Redis Streams: `n` entries added with pipelined XADD, then read by one consumer group in
/// batches of `concurrency` and acknowledged with one XACK per batch. Returns the consume rate.
async fn raw_redis(url: &str, prefix: &str, n: usize, concurrency: usize) -> Result<f64> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let key = format!("{prefix}:raw");
    let start = Instant::now();
    for chunk in 0..n.div_ceil(1000) {
        let mut pipe = redis::pipe();
        for _ in 0..(n - chunk * 1000).min(1000) {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("env")
                .arg("{}")
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    println!(
        "raw XADD (pipelined):       {:>9.0} msgs/s",
        n as f64 / start.elapsed().as_secs_f64()
    );
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&key)
        .arg("raw")
        .arg("0")
        .query_async::<()>(&mut conn)
        .await?;
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("raw")
            .arg("c")
            .arg("COUNT")
            .arg(concurrency)
            .arg("STREAMS")
            .arg(&key)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        let ids: Vec<String> = reply
            .map(|r| {
                r.keys
                    .into_iter()
                    .flat_map(|k| k.ids)
                    .map(|i| i.id)
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            break;
        }
        redis::cmd("XACK")
            .arg(&key)
            .arg("raw")
            .arg(&ids)
            .query_async::<()>(&mut conn)
            .await?;
        done += ids.len();
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// Removes what the bench created on its broker.
async fn cleanup_broker(broker: &str, prefix: &str) {
    if broker.starts_with("amqp") {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let properties = lapin::ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        if let Ok(conn) = lapin::Connection::connect(broker, properties).await {
            if let Ok(channel) = conn.create_channel().await {
                for queue in ["drain", "steady", "raw", "dead"] {
                    let _ = channel
                        .queue_delete(&format!("{prefix}.{queue}"), QueueDeleteOptions::default())
                        .await;
                }
                for exchange in ["jobs", "dlx"] {
                    let _ = channel
                        .exchange_delete(
                            &format!("{prefix}.{exchange}"),
                            ExchangeDeleteOptions::default(),
                        )
                        .await;
                }
            }
            let _ = conn.close(200, "bench done").await;
        }
    } else if broker.starts_with("redis") {
        if let Ok(client) = redis::Client::open(broker) {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{prefix}:*"))
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _ = redis::cmd("DEL")
                        .arg(keys)
                        .query_async::<()>(&mut conn)
                        .await;
                }
            }
        }
    }
}
