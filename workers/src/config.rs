use std::time::Duration;

/// Default lease on a claimed job: a worker that stops heartbeating for this long is presumed
/// dead and its jobs are rescued.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default time in-flight jobs get to finish after SIGTERM before they are released.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
/// How much work (in time) a worker may claim ahead of its free slots under a backlog: as many
/// jobs as its slots would run in this long at the queue's mean run time, at most the queue's
/// `prefetch`. Fast jobs get large claims (one statement for hundreds of jobs); slow ones get
/// none, so that no job waits in one worker's buffer while another worker idles.
pub const PREFETCH_HORIZON: Duration = Duration::from_millis(100);
/// Default cap on jobs claimed ahead per queue.
pub const DEFAULT_PREFETCH: usize = 500;
/// Most outcomes written in one completer statement.
pub const DEFAULT_COMPLETER_BATCH: usize = 1000;

/// One queue a worker consumes and how many of its jobs run at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Queue name.
    pub name: String,
    /// Concurrent jobs from this queue.
    pub concurrency: usize,
    /// Most jobs claimed ahead of free slots under a backlog (see [`PREFETCH_HORIZON`]), so
    /// that claims of fast jobs come in large batches; 0 disables it.
    pub prefetch: usize,
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Recorded on claimed jobs; unique per process.
    pub worker_id: String,
    /// Queues and their concurrency.
    pub queues: Vec<QueueConfig>,
    /// Lease on each claimed job.
    pub lease: Duration,
    /// How often leases are extended (default: a third of the lease).
    pub heartbeat_interval: Duration,
    /// Grace period at shutdown.
    pub shutdown_grace: Duration,
    /// Completer batch size.
    pub completer_batch: usize,
    /// Execution rate limits beside those the kinds declare.
    pub rate_limits: Vec<pysaas_jobs::RateLimit>,
}

impl WorkerConfig {
    /// Defaults for `queues`, each with `concurrency` slots.
    pub fn for_queues<I, S>(queues: I, concurrency: usize) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        WorkerConfig {
            worker_id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            queues: queues
                .into_iter()
                .map(|name| QueueConfig {
                    name: name.into(),
                    concurrency,
                    prefetch: DEFAULT_PREFETCH,
                })
                .collect(),
            lease: DEFAULT_LEASE,
            heartbeat_interval: DEFAULT_LEASE / 3,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            completer_batch: DEFAULT_COMPLETER_BATCH,
            rate_limits: Vec::new(),
        }
    }

    /// Sets the lease and a heartbeat of a third of it.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self.heartbeat_interval = lease / 3;
        self
    }
}
