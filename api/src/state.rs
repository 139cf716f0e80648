use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use pysaas_brokers::{Dispatcher, JobStore};
use pysaas_jobs::KindRegistry;

use crate::auth::Auth;
use crate::gateway::PlanCache;
use crate::ratelimit::{Limits, MemoryLimiter, RateLimiter};

/// Shared state of the API.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    store: Arc<dyn JobStore>,
    dispatcher: Arc<dyn Dispatcher>,
    registry: KindRegistry,
    metrics: Option<PrometheusHandle>,
    auth: Arc<Auth>,
    limiter: Arc<dyn RateLimiter>,
    limits: Limits,
    plans: Arc<PlanCache>,
    queue_gauges: Arc<pysaas_brokers::gauges::QueueGauges>,
    group_commit: pysaas_brokers::store::GroupCommit,
}

impl AppState {
    /// State over a store, a dispatcher, the kinds the API accepts and the credential checker.
    pub fn new(
        store: Arc<dyn JobStore>,
        dispatcher: Arc<dyn Dispatcher>,
        registry: KindRegistry,
        metrics: Option<PrometheusHandle>,
        auth: Arc<Auth>,
    ) -> Self {
        tokio::spawn(Auth::follow_changes(
            Arc::downgrade(&auth),
            store.auth_changes(),
        ));
        AppState {
            inner: Arc::new(Inner {
                group_commit: pysaas_brokers::store::GroupCommit::new(
                    store.clone(),
                    dispatcher.clone(),
                ),
                store,
                dispatcher,
                registry,
                metrics,
                auth,
                limiter: Arc::new(MemoryLimiter::default()),
                limits: Limits::default(),
                plans: Arc::new(PlanCache::default()),
                queue_gauges: Arc::new(pysaas_brokers::gauges::QueueGauges::default()),
            }),
        }
    }

    /// Uses `limiter` (shared by replicas when Redis-backed) with `limits`.
    pub fn with_rate_limits(self, limiter: Arc<dyn RateLimiter>, limits: Limits) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| (*shared).clone());
        inner.limiter = limiter;
        inner.limits = limits;
        AppState {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn limiter(&self) -> &dyn RateLimiter {
        self.inner.limiter.as_ref()
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub(crate) fn queue_gauges(&self) -> &pysaas_brokers::gauges::QueueGauges {
        &self.inner.queue_gauges
    }

    pub(crate) fn plans(&self) -> &PlanCache {
        &self.inner.plans
    }

    pub(crate) fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    pub(crate) fn store(&self) -> &Arc<dyn JobStore> {
        &self.inner.store
    }

    /// Single-job submissions share transactions (see [`pysaas_brokers::store::GroupCommit`]).
    pub(crate) fn group_commit(&self) -> &pysaas_brokers::store::GroupCommit {
        &self.inner.group_commit
    }

    pub(crate) fn dispatcher(&self) -> &Arc<dyn Dispatcher> {
        &self.inner.dispatcher
    }

    pub(crate) fn registry(&self) -> &KindRegistry {
        &self.inner.registry
    }

    pub(crate) fn metrics(&self) -> Option<&PrometheusHandle> {
        self.inner.metrics.as_ref()
    }
}

/// Describes the API's metrics (call once the process's recorder is installed; the binary
/// installs it, so that every crate records into the same one).
pub fn describe_metrics() {
    metrics::describe_counter!(
        pysaas_brokers::gauges::JOBS_ENQUEUED,
        "Jobs entering queued: submitted ready (source=api), promoted when due (promoted), fired by a schedule (cron), retried by a user (retry)"
    );
    pysaas_brokers::gauges::QueueGauges::describe();
}
