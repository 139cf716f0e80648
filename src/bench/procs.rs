//! Phases that need more than one process or a big store: the drain by separate `pysaas worker`
//! processes (1 → 2 → 4 …) with their memory, and the cost of a large retained history.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pysaas_brokers::store::GroupCommit;

use super::{median, noop, Bench, Raw};

/// `pysaas worker` children, stopped (SIGTERM, then kill) when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
        }
        for child in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A field of `/proc/<pid>/status` in MiB (`VmRSS`: now; `VmHWM`: peak).
fn memory_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

impl Bench {
    fn spawn_workers(&self, queue: &str, n: usize) -> Result<Children> {
        self.uses(queue);
        let exe = std::env::current_exe().context("locating the pysaas binary")?;
        let mut children = Children(Vec::new());
        for _ in 0..n {
            let mut cmd = Command::new(&exe);
            cmd.args([
                "worker",
                "--queues",
                &format!("{queue}={}", self.args.concurrency),
            ])
            .env("PYSAAS_DATABASE_URL", &self.url)
            .env("PYSAAS_PG_SCHEMA", &self.schema)
            .env("PYSAAS_BROKER_URL", &self.args.broker)
            .env("PYSAAS_BROKER_PREFIX", &self.prefix)
            .env("PYSAAS_SCHEDULER_IN_WORKERS", "false")
            .env("PYSAAS_AUTO_MIGRATE", "false")
            .env("PYSAAS_LOG", crate::app::LOG_QUIET)
            .env_remove("PYSAAS_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
            if let Some(prefetch) = self.args.prefetch {
                cmd.env("PYSAAS_PREFETCH", prefetch.to_string());
            }
            children
                .0
                .push(cmd.spawn().context("starting pysaas worker")?);
        }
        Ok(children)
    }

    /// Seconds from the first start to the last finish of `queue`'s jobs, as the store stamped
    /// them (process start-up left out).
    async fn span_secs(&self, queue: &str) -> Result<f64> {
        Ok(match &self.raw {
            Raw::Pg(pg) => {
                sqlx::query_scalar::<_, f64>(
                    "SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 \
                     FROM job_history WHERE queue = $1",
                )
                .bind(queue)
                .fetch_one(pg.pool())
                .await?
            }
            Raw::Sqlite(lite) => {
                let us: i64 = sqlx::query_scalar(
                    "SELECT max(finished_at) - min(started_at) FROM job_history WHERE queue = ?1",
                )
                .bind(queue)
                .fetch_one(lite.pool())
                .await?;
                us as f64 / 1e6
            }
        })
    }

    /// The drain by 1, 2, 4 … separate worker processes on the same store and broker, each
    /// with `--concurrency`; with each process's peak memory, and one idle worker's.
    pub(super) async fn worker_processes(&self) -> Result<()> {
        {
            let idle = self.spawn_workers("idle", 1)?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!(
                "worker memory, idle (concurrency {}): {:.1} MiB resident",
                self.args.concurrency,
                memory_mib(idle.0[0].id(), "VmRSS:")
            );
        }
        let mut previous: Option<f64> = None;
        for &n in &self.args.workers {
            let queue = format!("procs{n}");
            self.enqueue(self.args.jobs, || noop(&queue)).await?;
            let children = self.spawn_workers(&queue, n)?;
            self.wait_store_done(&queue, Duration::from_secs(600))
                .await?;
            let peak = children
                .0
                .iter()
                .map(|c| memory_mib(c.id(), "VmHWM:"))
                .fold(0.0, f64::max);
            drop(children);
            let rate = self.args.jobs as f64 / self.span_secs(&queue).await?;
            let change = previous.map_or_else(String::new, |p| {
                format!(" ({:+.0} %)", 100.0 * (rate / p - 1.0))
            });
            println!(
                "drain by {n} worker process{}: {rate:.0} jobs/s{change}; peak memory per process {peak:.1} MiB",
                if n == 1 { "" } else { "es" }
            );
            previous = Some(rate);
        }
        Ok(())
    }

    /// Single-job submissions through group commit from 64 concurrent in-process submitters
    /// for `--seconds` (the store side of `POST /v1/jobs`, without HTTP).
    async fn submissions(&self, queue: &str) -> Result<f64> {
        self.uses(queue);
        let group = GroupCommit::new(self.store.clone(), self.dispatcher.clone());
        let deadline = Instant::now() + Duration::from_secs(self.args.seconds);
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let (group, queue) = (group.clone(), queue.to_owned());
            tasks.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    group.insert(noop(&queue)).await?;
                    n += 1;
                }
                Ok::<_, anyhow::Error>(n)
            });
        }
        let mut total = 0;
        while let Some(n) = tasks.join_next().await {
            total += n??;
        }
        Ok(total as f64 / start.elapsed().as_secs_f64())
    }

    /// Fills the history with `n` finished jobs of the bench tenant, time-ordered ids an hour old.
    async fn fill_history(&self, n: u64) -> Result<Duration> {
        let start = Instant::now();
        match &self.raw {
            Raw::Pg(pg) => {
                sqlx::query(
                    "INSERT INTO job_history (id, tenant_id, kind, queue, state, priority, attempts, \
                         max_attempts, payload, timeout_ms, created_at, run_at, started_at, finished_at) \
                     SELECT (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(r, 1, 3) || '-8' \
                             || substr(r, 4, 3) || '-' || substr(r, 7, 12))::uuid, \
                            'default', 'system.noop', 'history', \
                            CASE WHEN g % 100 = 0 THEN 'dead' ELSE 'succeeded' END, 0, 1, 25, '{}', 60000, \
                            t, t, t, t \
                     FROM (SELECT g, lpad(to_hex(base + g / 100), 12, '0') AS h, md5(g::text) AS r, \
                                  to_timestamp((base + g / 100) / 1000.0) AS t \
                           FROM generate_series(1, $1) AS g, \
                                (SELECT (extract(epoch FROM now() - interval '2 hours') * 1000)::bigint AS base) b) x",
                )
                .bind(i64::try_from(n).unwrap_or(i64::MAX))
                .execute(pg.pool())
                .await?;
                sqlx::query("VACUUM ANALYZE job_history")
                    .execute(pg.pool())
                    .await?;
                self.checkpoint().await?;
            }
            Raw::Sqlite(lite) => {
                sqlx::query(
                    "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?1), \
                          b(base) AS (SELECT (strftime('%s', 'now') - 7200) * 1000) \
                     INSERT INTO job_history (id, tenant_id, kind, queue, state, priority, attempts, \
                         max_attempts, payload, timeout_ms, created_at, run_at, started_at, finished_at) \
                     SELECT lower(substr(printf('%012x', base + n / 100), 1, 8) || '-' || \
                            substr(printf('%012x', base + n / 100), 9, 4) || '-7' || substr(r, 1, 3) || '-8' || \
                            substr(r, 4, 3) || '-' || substr(r, 7, 12)), \
                            'default', 'system.noop', 'history', \
                            CASE WHEN n % 100 = 0 THEN 'dead' ELSE 'succeeded' END, 0, 1, 25, '{}', 60000, \
                            (base + n / 100) * 1000, (base + n / 100) * 1000, (base + n / 100) * 1000, \
                            (base + n / 100) * 1000 \
                     FROM g, b, (SELECT hex(randomblob(8)) AS r)",
                )
                .bind(i64::try_from(n).unwrap_or(i64::MAX))
                .execute(lite.pool())
                .await?;
                sqlx::query("ANALYZE").execute(lite.pool()).await?;
            }
        }
        Ok(start.elapsed())
    }

    /// Flushes dirty pages (PostgreSQL), so that a measurement after a bulk load is not one of
    /// the bulk load's write-back.
    async fn checkpoint(&self) -> Result<()> {
        if let Raw::Pg(pg) = &self.raw {
            sqlx::query("CHECKPOINT").execute(pg.pool()).await?;
        }
        Ok(())
    }

    /// Drain and submission on an empty store and on one with `--history` finished jobs
    /// retained, alternately `--runs` times each (after a checkpoint), so that both see the same
    /// machine.
    pub(super) async fn history(&self) -> Result<()> {
        let full = Bench::open(&self.url, self.args.clone()).await?;
        let filled = full.fill_history(self.args.history).await?;
        println!(
            "history: {} finished jobs retained in a second store (filled in {:.0} s)",
            self.args.history,
            filled.as_secs_f64()
        );
        let result = async {
            let (mut drains, mut submits) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
            for run in 1..=self.args.runs.max(1) {
                for (i, bench) in [self, &full].into_iter().enumerate() {
                    bench.checkpoint().await?;
                    drains[i].push(bench.drain(&format!("hist{i}r{run}")).await?.1);
                    submits[i].push(bench.submissions(&format!("histsub{i}r{run}")).await?);
                }
            }
            let (d0, d1, s0, s1) = (
                median(&drains[0]),
                median(&drains[1]),
                median(&submits[0]),
                median(&submits[1]),
            );
            println!("history 0: drain median {d0:.0} jobs/s, submission (group commit, 64 submitters) median {s0:.0} jobs/s");
            println!(
                "history {}: drain median {d1:.0} jobs/s ({:.0} % of empty), submission median {s1:.0} jobs/s ({:.0} % of empty)",
                self.args.history,
                100.0 * d1 / d0,
                100.0 * s1 / s0
            );
            Ok::<_, anyhow::Error>(())
        }
        .await;
        full.close().await?;
        result
    }
}
