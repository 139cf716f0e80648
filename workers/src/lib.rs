//! PySaaS worker pools: the runtime that claims jobs, runs their handlers under a timeout and a
//! lease, and records outcomes through a batched completer; plus the built-in handlers.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn pysaas_brokers::JobStore>) -> Result<(), pysaas_workers::WorkerError> {
//! use std::sync::Arc;
//! use pysaas_brokers::StoreDispatcher;
//! use pysaas_workers::{Handlers, Worker, WorkerConfig};
//! let dispatcher = Arc::new(StoreDispatcher::new(store.clone()));
//! let worker = Worker::new(store, dispatcher, Handlers::builtin(), WorkerConfig::for_queues(["default"], 10));
//! worker.run(tokio_util::sync::CancellationToken::new()).await
//! # }
//! ```

mod admission;
pub mod billing;
mod completer;
mod config;
pub mod consumers;
mod handler;
pub mod handlers;
mod heartbeat;
mod metrics_names;
pub mod notifications;
mod pool;
pub mod profiles;
mod stats;

pub use config::{
    QueueConfig, WorkerConfig, DEFAULT_COMPLETER_BATCH, DEFAULT_LEASE, DEFAULT_PREFETCH,
    DEFAULT_SHUTDOWN_GRACE, PREFETCH_HORIZON,
};
pub use handler::{Handlers, JobContext, JobHandler};
pub use heartbeat::hostname;
pub use metrics_names::describe_metrics;
pub use pool::{Worker, WorkerError};
