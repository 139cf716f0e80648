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
    describe_histogram!(RUN_DURATION, Unit::Seconds, "Duration of job attempts");
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "Time from a job becoming runnable to its attempt starting"
    );
}
