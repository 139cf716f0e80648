//! PySaaS as a library: the [`App`] that the `pysaas` binary runs, for applications that embed
//! PySaaS with job kinds of their own and for tests.
//!
//! A job kind is its contract (a payload type implementing [`JobKind`]), its handler (a
//! [`JobHandler`]) and one registration line:
//!
//! ```no_run
//! use pysaas::{App, Config, HandlerError, JobContext, JobHandler, JobKind};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Greet {
//!     name: String,
//! }
//!
//! impl JobKind for Greet {
//!     const KIND: &'static str = "demo.greet";
//! }
//!
//! struct GreetHandler;
//!
//! #[async_trait::async_trait]
//! impl JobHandler<Greet> for GreetHandler {
//!     async fn handle(&self, _: &JobContext, job: Greet) -> Result<Option<serde_json::Value>, HandlerError> {
//!         Ok(Some(serde_json::json!({ "greeting": format!("hello, {}", job.name) })))
//!     }
//! }
//!
//! # async fn run() -> anyhow::Result<()> {
//! App::new(Config::load(None)?).register::<Greet, _>(GreetHandler).run_dev().await
//! # }
//! ```
//!
//! See `docs/guides/writing-a-job-kind.md` and the `examples/` crate.

pub mod app;
pub mod autoscale;
pub mod bench;
pub mod client;
pub mod config;
pub mod otel;
pub mod payments_sim;
mod progress;
mod security;
pub mod testing;
mod vault;

pub use app::{App, Roles, Running};
pub use config::Config;
pub use pysaas_jobs::{HandlerError, JobKind, RetryPolicy, DEFAULT_TENANT};
pub use pysaas_workers::{Handlers, JobContext, JobHandler};

/// Reads Vault (or OpenBao) into `config` when `vault.addr` is set: the secrets it holds
/// override the file's and the environment's. Returns the connection, for [`App::with_vault`]
/// (which keeps the token renewed and follows key rotations); `None` without Vault.
pub async fn apply_vault(config: &mut Config) -> anyhow::Result<Option<Vault>> {
    Ok(vault::apply(config).await?.map(Vault))
}

/// A live Vault connection (see [`apply_vault`]).
#[derive(Debug, Clone)]
pub struct Vault(std::sync::Arc<vault::VaultSource>);
