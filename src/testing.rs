//! Helpers for the tests of an application that embeds PySaaS (and for PySaaS's own):
//!
//! - [`perform`]: runs one job of a kind through its real handler, inline, and returns what the
//!   handler returned (Oban's `perform_job`);
//! - [`enqueued`] / [`assert_enqueued`]: what a piece of code submitted;
//! - [`spawn_app`]: the whole app (API on port 0, worker, scheduler) on a fresh SQLite database
//!   in a temporary directory, stopped when dropped; [`TestApp::admin_client`] gives it a key.

use std::sync::Arc;

use anyhow::{Context, Result};
use pysaas_brokers::{JobFilter, JobStore};
use pysaas_jobs::{HandlerError, Job, JobKind, DEFAULT_TENANT};
use pysaas_workers::{Handlers, JobContext};
use serde_json::Value;

use crate::{App, Roles, Running};

/// The context of attempt 1 of a job of kind `K` in the default tenant.
pub fn context<K: JobKind>() -> JobContext {
    JobContext::new(
        DEFAULT_TENANT,
        K::KIND,
        K::QUEUE,
        K::retry_policy().max_attempts,
    )
}

/// Runs `payload` through the handler `handlers` has for `K`, inline: the payload goes through
/// JSON as it would from the store, so a payload that does not round-trip fails here too.
pub async fn perform<K: JobKind>(
    handlers: &Handlers,
    payload: &K,
) -> Result<Option<Value>, HandlerError> {
    perform_as(handlers, &context::<K>(), payload).await
}

/// [`perform`] with a context of the test's choosing (a later attempt, another tenant).
pub async fn perform_as<K: JobKind>(
    handlers: &Handlers,
    ctx: &JobContext,
    payload: &K,
) -> Result<Option<Value>, HandlerError> {
    let value = serde_json::to_value(payload)
        .map_err(|e| HandlerError::fail(format!("payload does not serialise: {e}")))?;
    handlers.perform(ctx, value).await
}

/// The jobs of kind `K` in `tenant`, newest first (any state).
pub async fn enqueued<K: JobKind>(store: &dyn JobStore, tenant: &str) -> Result<Vec<Job>> {
    let filter = JobFilter {
        tenant_id: tenant.into(),
        state: None,
        kind: Some(K::KIND.into()),
        queue: None,
        limit: pysaas_brokers::LIST_LIMIT_MAX,
        before: None,
        payload: None,
    };
    Ok(store.list(&filter).await?)
}

/// Asserts that a job of kind `K` whose payload matches `matches` was submitted to `tenant`,
/// and returns it; the panic message lists what was submitted instead.
pub async fn assert_enqueued<K: JobKind>(
    store: &dyn JobStore,
    tenant: &str,
    matches: impl Fn(&K) -> bool,
) -> Job {
    let jobs = match enqueued::<K>(store, tenant).await {
        Ok(jobs) => jobs,
        Err(err) => panic!("listing `{}` jobs: {err:#}", K::KIND),
    };
    let found = jobs.iter().find(|job| {
        serde_json::from_value::<K>(job.payload.clone()).is_ok_and(|payload| matches(&payload))
    });
    match found {
        Some(job) => job.clone(),
        None => panic!(
            "no `{}` job matching in tenant `{tenant}`; submitted: {:?}",
            K::KIND,
            jobs.iter().map(|j| &j.payload).collect::<Vec<_>>()
        ),
    }
}

/// An app started by [`spawn_app`]: its base URL and its store. Dropping it stops the app.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:<port>` (empty when the API does not run).
    pub base: String,
    /// The store every role uses.
    pub store: Arc<dyn JobStore>,
    running: Option<Running>,
    _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    /// Stops every role gracefully and waits for them.
    pub async fn stop(mut self) -> Result<()> {
        match self.running.take() {
            Some(running) => running.stop().await,
            None => Ok(()),
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The token that stops the app.
    pub fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.running
            .as_ref()
            .map(Running::shutdown_token)
            .unwrap_or_default()
    }

    /// A new `admin` API key of the default tenant, and an HTTP client that sends it.
    pub async fn admin_client(&self) -> Result<(String, reqwest::Client)> {
        let key = pysaas_api::auth::admin_key_for(self.store.as_ref(), DEFAULT_TENANT, "test")
            .await
            .context("creating the test's admin key")?;
        Ok((key.clone(), bearer_client(&key)?))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.shutdown_token().cancel();
        }
    }
}

/// An HTTP client that sends `credential` (API key or access token) as a bearer credential.
pub fn bearer_client(credential: &str) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {credential}")
            .parse()
            .context("a credential must be a valid header value")?,
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .context("building the HTTP client")
}

/// Starts `app` with `roles` in the background, the API on 127.0.0.1 port 0, with fast
/// maintenance (promotion every 50 ms, rescue every 200 ms). Without a store or `database_url`
/// of its own it gets a fresh SQLite database in a temporary directory (removed on drop).
pub async fn spawn_app(app: App, roles: Roles) -> Result<TestApp> {
    let mut app = app;
    // Signing keys and the like go to a temporary data dir, never into the working directory.
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let own_store = !(app.store_given() || app.config().store.url.is_some());
    let config = app.config_mut();
    config.store.data_dir = dir.path().to_path_buf();
    if own_store {
        config.store.url = Some(format!(
            "sqlite://{}",
            dir.path().join("pysaas.db").display()
        ));
    }
    {
        let config = app.config_mut();
        config.api.listen = "127.0.0.1:0".into();
        config.scheduler.promote_interval_ms = 50;
        config.scheduler.rescue_interval_ms = 200;
    }
    let running = app
        .start(roles, tokio_util::sync::CancellationToken::new())
        .await?;
    Ok(TestApp {
        base: running.base_url().unwrap_or_default(),
        store: running.store.clone(),
        running: Some(running),
        _dir: Some(dir),
    })
}
