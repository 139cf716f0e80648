//! Metric names, so that the worker and the API's `/metrics` agree.

pub(crate) const STARTED: &str = "pysaas_jobs_started_total";
pub(crate) const SUCCEEDED: &str = "pysaas_jobs_succeeded_total";
pub(crate) const FAILED: &str = "pysaas_jobs_failed_total";
pub(crate) const DEAD: &str = "pysaas_jobs_dead_total";
pub(crate) const CANCELLED: &str = "pysaas_jobs_cancelled_total";
pub(crate) const RUN_DURATION: &str = "pysaas_job_run_duration_seconds";
pub(crate) const QUEUE_WAIT: &str = "pysaas_job_queue_wait_seconds";

/// Registers the worker metrics' help texts with the installed recorder.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(STARTED, "Job attempts started");
    describe_counter!(SUCCEEDED, "Job attempts that succeeded");
    describe_counter!(FAILED, "Job attempts that failed (to be retried, or dead)");
    describe_counter!(DEAD, "Jobs that ran out of attempts");
    describe_counter!(CANCELLED, "Jobs cancelled while running");
    describe_counter!(
        "pysaas_events_consumed_total",
        "Events the audit and analytics consumers stored (not counting ones seen before)"
    );
    describe_histogram!(RUN_DURATION, Unit::Seconds, "Duration of job attempts");
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "Time from a job becoming runnable to its attempt starting"
    );
}

/// A queue's and kind's metric handles, looked up in the recorder once instead of per job.
#[derive(Debug)]
pub(crate) struct KindMetrics {
    pub(crate) started: metrics::Counter,
    pub(crate) succeeded: metrics::Counter,
    pub(crate) failed: metrics::Counter,
    pub(crate) dead: metrics::Counter,
    pub(crate) cancelled: metrics::Counter,
    pub(crate) run_duration: metrics::Histogram,
    pub(crate) queue_wait: metrics::Histogram,
}

impl KindMetrics {
    fn new(queue: &str, kind: &str) -> Self {
        let labels = [("kind", kind.to_owned()), ("queue", queue.to_owned())];
        KindMetrics {
            started: metrics::counter!(STARTED, &labels),
            succeeded: metrics::counter!(SUCCEEDED, &labels),
            failed: metrics::counter!(FAILED, &labels),
            dead: metrics::counter!(DEAD, &labels),
            cancelled: metrics::counter!(CANCELLED, &labels),
            run_duration: metrics::histogram!(RUN_DURATION, &labels),
            queue_wait: metrics::histogram!(QUEUE_WAIT, &labels),
        }
    }
}

/// Handles per queue, then kind (looked up by `&str`, without allocating).
#[derive(Debug, Default)]
pub(crate) struct MetricsCache(
    std::sync::RwLock<
        std::collections::HashMap<
            String,
            std::collections::HashMap<String, std::sync::Arc<KindMetrics>>,
        >,
    >,
);

impl MetricsCache {
    pub(crate) fn get(&self, queue: &str, kind: &str) -> std::sync::Arc<KindMetrics> {
        if let Some(found) = self
            .0
            .read()
            .ok()
            .and_then(|map| map.get(queue).and_then(|kinds| kinds.get(kind)).cloned())
        {
            return found;
        }
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.entry(queue.to_owned())
            .or_default()
            .entry(kind.to_owned())
            .or_insert_with(|| std::sync::Arc::new(KindMetrics::new(queue, kind)))
            .clone()
    }
}
