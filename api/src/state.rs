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
    profiles: Arc<dyn pysaas_brokers::ProfileStore>,
    dispatcher: Arc<dyn Dispatcher>,
    registry: KindRegistry,
    metrics: Option<PrometheusHandle>,
    auth: Arc<Auth>,
    limiter: Arc<dyn RateLimiter>,
    limits: Limits,
    plans: Arc<PlanCache>,
    queue_gauges: Arc<pysaas_brokers::gauges::QueueGauges>,
    group_commit: pysaas_brokers::store::GroupCommit,
    consumed: Arc<ConsumedQueues>,
    /// Cancelled at shutdown: ends the open event streams, so that the server can drain.
    streams: tokio_util::sync::CancellationToken,
}

/// The queues some worker has consumed, read from the store at most once a second and only
/// when a submission names a queue not known to be consumed (a consumed queue costs nothing).
#[derive(Debug, Default)]
pub(crate) struct ConsumedQueues {
    known: std::sync::Mutex<(
        Option<std::time::Instant>,
        std::collections::BTreeSet<String>,
    )>,
}

impl ConsumedQueues {
    /// Whether a worker has ever consumed `queue` (an unreachable store counts as yes: the
    /// submission itself reports the outage).
    pub(crate) async fn consumed(&self, store: &dyn JobStore, queue: &str) -> bool {
        let stale = {
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            if known.1.contains(queue) {
                return true;
            }
            let stale = known
                .0
                .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1));
            if stale {
                // Claim this second's refresh, so that concurrent submissions do not all query.
                known.0 = Some(std::time::Instant::now());
            }
            stale
        };
        if stale {
            match store.consumed_queues().await {
                Ok(queues) => {
                    let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
                    *known = (
                        Some(std::time::Instant::now()),
                        queues.into_keys().collect(),
                    );
                    return known.1.contains(queue);
                }
                Err(_) => return true,
            }
        }
        false
    }
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
                profiles: store.clone(),
                store,
                dispatcher,
                registry,
                metrics,
                auth,
                limiter: Arc::new(MemoryLimiter::default()),
                limits: Limits::default(),
                plans: Arc::new(PlanCache::default()),
                queue_gauges: Arc::new(pysaas_brokers::gauges::QueueGauges::default()),
                consumed: Arc::new(ConsumedQueues::default()),
                streams: tokio_util::sync::CancellationToken::new(),
            }),
        }
    }

    /// Keeps profiles and preferences in `profiles` (DynamoDB, say) instead of the job store.
    pub fn with_profiles(self, profiles: Arc<dyn pysaas_brokers::ProfileStore>) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| (*shared).clone());
        inner.profiles = profiles;
        AppState {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn profiles(&self) -> &Arc<dyn pysaas_brokers::ProfileStore> {
        &self.inner.profiles
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

    /// Ends every open event stream (`GET /v1/events/stream`): call it when shutdown begins,
    /// or a graceful shutdown would wait for the browsers to hang up.
    pub fn end_streams(&self) {
        self.inner.streams.cancel();
    }

    pub(crate) fn streams_ended(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.inner.streams.clone().cancelled_owned()
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

    pub(crate) fn consumed(&self) -> &ConsumedQueues {
        &self.inner.consumed
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
        "Jobs entering queued: submitted ready (source=api), promoted when due (promoted), fired by a schedule (cron), retried by a user (retry), rescued after a lost worker (rescued), released at shutdown (released)"
    );
    pysaas_brokers::gauges::QueueGauges::describe();
}
