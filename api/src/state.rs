use std::sync::{Arc, OnceLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use pysaas_brokers::{Dispatcher, JobStore};
use pysaas_jobs::{KindRegistry, DEFAULT_TENANT};

use crate::ApiError;

/// Shared state of the API.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn JobStore>,
    dispatcher: Arc<dyn Dispatcher>,
    registry: KindRegistry,
    metrics: Option<PrometheusHandle>,
}

impl AppState {
    /// State over a store, a dispatcher and the kinds the API accepts.
    pub fn new(
        store: Arc<dyn JobStore>,
        dispatcher: Arc<dyn Dispatcher>,
        registry: KindRegistry,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                store,
                dispatcher,
                registry,
                metrics,
            }),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn JobStore> {
        &self.inner.store
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

/// The tenant a request acts for. Until authentication lands every request acts for the default
/// tenant; every store query already filters by it.
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        _parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Tenant(DEFAULT_TENANT.to_owned()))
    }
}

/// Histogram buckets (seconds) for run durations and queue waits: 1 ms to 5 min.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
pub fn install_metrics() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS);
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => Some(handle),
                Err(err) => {
                    tracing::warn!(error = %err, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}
