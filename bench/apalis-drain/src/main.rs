//! apalis 1.0 + apalis-postgres draining N no-op jobs (see bench/apalis.sh).
//!
//! The same shape as `pysaas bench`'s drain: N jobs pushed first, then one worker with
//! concurrency 64 on the listener-based storage; jobs/s until the N-th handler call. (apalis
//! records outcomes after the handler returns, so stopping at the last handler call slightly
//! favours apalis.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use apalis::prelude::*;
use apalis_postgres::{Config, PgPool, PostgresStorage};
use futures::stream::{self, StreamExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::var("DATABASE_URL")?;
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let concurrency: usize = std::env::var("CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let pool = PgPool::connect(&url).await?;
    PostgresStorage::setup(&pool).await?;
    let config = Config::default().queue("drain").batch_size(concurrency);
    let mut backend = PostgresStorage::new(&pool)
        .with_config(config)
        .with_pubsub();

    let start = Instant::now();
    let mut items = stream::iter(0..n).map(|i| TaskBuilder::new(i as u64).build());
    backend.push_all(&mut items).await?;
    println!(
        "apalis enqueue (push_all):  {:>9.0} jobs/s",
        n as f64 / start.elapsed().as_secs_f64()
    );

    let done = Arc::new(AtomicUsize::new(0));
    let target = n;
    async fn noop(
        _item: u64,
        done: Data<Arc<AtomicUsize>>,
        target: Data<usize>,
        wrk: WorkerContext,
    ) -> Result<(), BoxDynError> {
        if done.fetch_add(1, Ordering::SeqCst) + 1 == *target {
            wrk.stop()?;
        }
        Ok(())
    }
    let worker = WorkerBuilder::new("apalis-drain")
        .backend(backend)
        .data(done.clone())
        .data(target)
        .concurrency(concurrency)
        .parallelize(tokio::spawn)
        .build(noop);
    let start = Instant::now();
    worker.run().await?;
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "apalis drain:               {:>9.0} jobs/s ({} handled)",
        done.load(Ordering::SeqCst) as f64 / elapsed,
        done.load(Ordering::SeqCst)
    );
    Ok(())
}
