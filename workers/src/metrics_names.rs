//! Metric names, so that the worker and the API's `/metrics` agree.

pub(crate) const STARTED: &str = "pysaas_jobs_started_total";
pub(crate) const SUCCEEDED: &str = "pysaas_jobs_succeeded_total";
pub(crate) const FAILED: &str = "pysaas_jobs_failed_total";
pub(crate) const DEAD: &str = "pysaas_jobs_dead_total";
pub(crate) const CANCELLED: &str = "pysaas_jobs_cancelled_total";
pub(crate) const RUN_DURATION: &str = "pysaas_job_run_duration_seconds";
pub(crate) const QUEUE_WAIT: &str = "pysaas_job_queue_wait_seconds";
