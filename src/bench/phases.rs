//! The in-process phases: drain, ceilings, steady-state latency, delayed jobs, HTTP API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pysaas_brokers::store::GroupCommit;
use pysaas_brokers::JobFilter;
use pysaas_jobs::{NewJob, DEFAULT_TENANT};
use pysaas_workers::{Handlers, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

use super::{median, noop, percentile, raw, Bench, Raw};

type WorkerTask = tokio::task::JoinHandle<Result<(), pysaas_workers::WorkerError>>;

impl Bench {
    /// Inserts `n` jobs made by `make` in batches of 1,000 and announces them, as
    /// `POST /v1/jobs/batch` does; returns how long it took.
    pub(super) async fn enqueue(&self, n: usize, make: impl Fn() -> NewJob) -> Result<Duration> {
        self.uses(&make().queue);
        let start = Instant::now();
        let mut left = n;
        while left > 0 {
            let batch = left.min(pysaas_api::BATCH_MAX);
            let jobs: Vec<_> = self
                .store
                .insert((0..batch).map(|_| make()).collect())
                .await?
                .into_iter()
                .map(|i| i.job)
                .collect();
            self.dispatcher.dispatch(&jobs).await?;
            left -= batch;
        }
        Ok(start.elapsed())
    }

    /// Whether any job of `queue` is unfinished: index probes of the hot table.
    pub(super) async fn unfinished(&self, queue: &str) -> Result<bool> {
        let sql = "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND queue = $1) \
                   OR EXISTS (SELECT 1 FROM jobs WHERE lease_expires_at IS NOT NULL AND queue = $1) \
                   OR EXISTS (SELECT 1 FROM jobs WHERE state IN ('scheduled', 'retrying') AND queue = $1)";
        Ok(match &self.raw {
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

    /// Waits until `n` jobs of `queue` succeeded in this process (counted as the completer
    /// records them, without polling the database), then checks the store agrees.
    pub(super) async fn wait_done(&self, queue: &str, n: usize, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let progress = crate::progress::bar(n as u64, "jobs");
        progress.set_message(queue.to_owned());
        while self.finished.of(queue) < n as u64 {
            progress.set_position(self.finished.of(queue));
            anyhow::ensure!(
                Instant::now() < deadline,
                "queue `{queue}`: {} of {n} jobs done after {within:?}",
                self.finished.of(queue)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        progress.finish_and_clear();
        anyhow::ensure!(
            !self.unfinished(queue).await?,
            "queue `{queue}`: the store still has unfinished jobs"
        );
        Ok(())
    }

    /// Waits until no job of `queue` is unfinished in the store (jobs run by other processes).
    pub(super) async fn wait_store_done(&self, queue: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        while self.unfinished(queue).await? {
            anyhow::ensure!(
                Instant::now() < deadline,
                "queue `{queue}` not drained in {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub(super) fn worker_config(&self, queue: &str) -> WorkerConfig {
        let mut config = WorkerConfig::for_queues([queue], self.args.concurrency);
        if let Some(prefetch) = self.args.prefetch {
            config.queues.iter_mut().for_each(|q| q.prefetch = prefetch);
        }
        config
    }

    fn start_worker(&self, queue: &str) -> (CancellationToken, WorkerTask) {
        self.uses(queue);
        let worker = Worker::new(
            self.store.clone(),
            self.dispatcher.clone(),
            super::handlers(),
            self.worker_config(queue),
        );
        let stop = CancellationToken::new();
        (stop.clone(), tokio::spawn(worker.run(stop)))
    }

    /// One drain of `--jobs` jobs on `queue`: jobs/s from the worker's start until the last
    /// outcome is recorded.
    pub(super) async fn drain(&self, queue: &str) -> Result<(f64, f64)> {
        let seq = std::sync::atomic::AtomicU64::new(0);
        let enqueue = self
            .enqueue(self.args.jobs, || {
                let mut job = noop(queue);
                if let Some(payload) = &self.args.payload {
                    let mut payload = payload.clone();
                    let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    payload.insert("seq".into(), n.into());
                    job.payload = serde_json::Value::Object(payload);
                    job.kind = <super::Record as pysaas_jobs::JobKind>::KIND.into();
                }
                job
            })
            .await?;
        let start = Instant::now();
        let (stop, worker) = self.start_worker(queue);
        self.wait_done(queue, self.args.jobs, Duration::from_secs(600))
            .await?;
        let rate = self.args.jobs as f64 / start.elapsed().as_secs_f64();
        stop.cancel();
        worker.await??;
        Ok((self.args.jobs as f64 / enqueue.as_secs_f64(), rate))
    }

    pub(super) async fn drain_runs(&self) -> Result<()> {
        let mut rates = Vec::new();
        for run in 1..=self.args.runs.max(1) {
            let (enqueue, rate) = self.drain(&format!("drain{run}")).await?;
            println!(
                "drain run {run}: {rate:.0} jobs/s ({} jobs; enqueue in batches of 1,000: {enqueue:.0} jobs/s)",
                self.args.jobs
            );
            rates.push(rate);
        }
        if rates.len() > 1 {
            println!(
                "drain median of {}: {:.0} jobs/s",
                rates.len(),
                median(&rates)
            );
        }
        Ok(())
    }

    /// The store's statements without the worker runtime, or the bare broker.
    pub(super) async fn raw_ceiling(&self) -> Result<()> {
        let (label, ceiling) = if self.args.broker == "store" {
            self.enqueue(self.args.jobs, || noop("raw")).await?;
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..2 {
                let (store, batch) = (self.store.clone(), self.args.concurrency);
                tasks.push(tokio::spawn(
                    async move { raw::raw_loop(store, batch).await },
                ));
            }
            let mut done = 0u64;
            for task in tasks {
                done += task.await??;
            }
            (
                "store statements, no runtime",
                done as f64 / start.elapsed().as_secs_f64(),
            )
        } else if self.args.broker.starts_with("amqp") {
            let rate = raw::raw_amqp(
                &self.args.broker,
                &self.prefix,
                self.args.jobs,
                self.args.concurrency,
            )
            .await?;
            ("raw lapin consume+ack", rate)
        } else {
            let rate = raw::raw_redis(
                &self.args.broker,
                &self.prefix,
                self.args.jobs,
                self.args.concurrency,
            )
            .await?;
            ("raw XREADGROUP+XACK", rate)
        };
        println!("drain ceiling ({label}): {ceiling:.0} jobs/s");
        Ok(())
    }

    /// A fixed offered load, each job submitted on its own as `POST /v1/jobs` submits it (group
    /// commit: concurrent submissions share a transaction and a broker publish; each is
    /// answered once durable); enqueue→start latency of every job, both stamped by the store.
    pub(super) async fn steady(&self) -> Result<()> {
        let queue = "steady";
        let (stop, worker) = self.start_worker(queue);
        let group = GroupCommit::new(self.store.clone(), self.dispatcher.clone());
        let total = self.args.rate * self.args.seconds;
        let interval = Duration::from_secs_f64(1.0 / self.args.rate.max(1) as f64);
        let start = Instant::now();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut inserts = tokio::task::JoinSet::new();
        for _ in 0..total {
            ticker.tick().await;
            let group = group.clone();
            inserts.spawn(async move { group.insert(noop(queue)).await.map(drop) });
            while inserts.len() > 256 {
                if let Some(r) = inserts.join_next().await {
                    r??;
                }
            }
        }
        while let Some(r) = inserts.join_next().await {
            r??;
        }
        self.wait_done(queue, total as usize, Duration::from_secs(120))
            .await?;
        let elapsed = start.elapsed().as_secs_f64();
        stop.cancel();
        worker.await??;
        let mut latencies = self
            .latencies(queue, |j| (j.started_at, j.created_at))
            .await?;
        latencies.sort_by(f64::total_cmp);
        println!(
            "steady state: {:.0} jobs/s achieved of {} offered for {} s; enqueue→start p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            total as f64 / elapsed,
            self.args.rate,
            self.args.seconds,
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            latencies.last().copied().unwrap_or(f64::NAN)
        );
        Ok(())
    }

    /// `later - earlier` in ms for every job of `queue`, as `pick` names them.
    async fn latencies(
        &self,
        queue: &str,
        pick: impl Fn(
            &pysaas_jobs::Job,
        ) -> (
            Option<chrono::DateTime<chrono::Utc>>,
            chrono::DateTime<chrono::Utc>,
        ),
    ) -> Result<Vec<f64>> {
        let mut out = Vec::new();
        let mut filter = JobFilter {
            tenant_id: DEFAULT_TENANT.into(),
            queue: Some(queue.into()),
            limit: 1000,
            ..JobFilter::default()
        };
        loop {
            let page = self.store.list(&filter).await?;
            for job in &page {
                if let (Some(later), earlier) = pick(job) {
                    out.push((later - earlier).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                }
            }
            match page.last() {
                Some(last) if page.len() == 1000 => filter.before = Some(last.id),
                _ => return Ok(out),
            }
        }
    }

    /// Delayed jobs on an idle system: `run_at` spread over 5 s; the scheduler's leader promotes
    /// them and a worker starts them. Lateness = `started_at − run_at` (never negative).
    pub(super) async fn delayed(&self) -> Result<()> {
        let queue = "delayed";
        let (worker_stop, worker) = self.start_worker(queue);
        let n = self.args.delayed.max(1);
        let base = chrono::Utc::now() + chrono::Duration::seconds(1);
        let spread_us = 5_000_000 / n as i64;
        let jobs: Vec<NewJob> = (0..n)
            .map(|i| NewJob {
                run_at: base + chrono::Duration::microseconds(spread_us * i as i64),
                ..noop(queue)
            })
            .collect();
        self.store.insert(jobs).await?;
        self.wait_done(queue, n, Duration::from_secs(60)).await?;
        worker_stop.cancel();
        worker.await??;
        let mut lateness = self.latencies(queue, |j| (j.started_at, j.run_at)).await?;
        lateness.sort_by(f64::total_cmp);
        let early = lateness.iter().filter(|l| **l < 0.0).count();
        println!(
            "delayed jobs: {} over 5 s; run_at→start p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; started early: {early}",
            lateness.len(),
            percentile(&lateness, 50.0),
            percentile(&lateness, 99.0),
            lateness.last().copied().unwrap_or(f64::NAN)
        );
        Ok(())
    }

    /// `POST /v1/jobs` through the full gateway from in-process clients for `--seconds` (limits
    /// set out of the way: this measures their cost, not their effect). For a load generator
    /// in a process of its own, see `bench/http.sh`.
    pub(super) async fn api(&self) -> Result<()> {
        use pysaas_api::ratelimit::{Limit, Limits, MemoryLimiter};
        let key = pysaas_api::auth::admin_key_for(self.store.as_ref(), DEFAULT_TENANT, "bench")
            .await
            .context("creating the bench API key")?;
        let wide = Limit {
            rate: 1e9,
            burst: u32::MAX,
        };
        let state = pysaas_api::AppState::new(
            self.store.clone(),
            self.dispatcher.clone(),
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
        let deadline = Instant::now() + Duration::from_secs(self.args.seconds);
        let started = Instant::now();
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..self.args.api_clients.max(1) {
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
            "API submit (in-process clients): {:.0} jobs/s with {} clients; p50 {:.1} ms, p99 {:.1} ms",
            latencies.len() as f64 / elapsed,
            self.args.api_clients,
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0)
        );
        Ok(())
    }
}
