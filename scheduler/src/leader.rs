//! Leader election on a lease row: whoever holds the unexpired lease `scheduler` leads. The lease
//! carries a fencing token that grows with every change of holder; the cron service writes only
//! in a transaction that re-checks the token, so a deposed leader that has not noticed yet (a
//! long pause, a partition) cannot enqueue anything.

use std::time::Duration;

use pysaas_brokers::Lease;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Context;

/// The lease's name.
pub const LEADER_LEASE: &str = "scheduler";
/// Default lease length. A leader killed without warning is replaced within about this long
/// plus one follower poll; one that shuts down cleanly releases the lease at once.
pub const DEFAULT_LEADER_TTL: Duration = Duration::from_secs(3);
/// How often a follower tries to take the lease.
pub const DEFAULT_FOLLOWER_POLL: Duration = Duration::from_millis(500);

struct Leading {
    lease: watch::Sender<Option<Lease>>,
    /// Local deadline by which the lease must be renewed (conservative: measured from before
    /// the renewing statement was sent).
    deadline: Instant,
    stop: CancellationToken,
    services: TaskTracker,
}

impl Leading {
    async fn step_down(self) {
        self.lease.send_replace(None);
        self.stop.cancel();
        self.services.wait().await;
        metrics::gauge!("pysaas_scheduler_leader").set(0.0);
    }
}

/// Campaigns for the lease until `shutdown`, running the services while leading.
pub(crate) async fn run(context: Context, shutdown: CancellationToken) {
    let config = &context.config;
    let renew_every = config.leader_ttl / 3;
    let mut leading: Option<Leading> = None;
    metrics::gauge!("pysaas_scheduler_leader").set(0.0);
    loop {
        let sent = Instant::now();
        match context
            .store
            .acquire_lease(LEADER_LEASE, &config.holder, config.leader_ttl)
            .await
        {
            Ok(Some(lease)) => match &mut leading {
                Some(current) => {
                    current.deadline = sent + config.leader_ttl;
                    current.lease.send_replace(Some(lease));
                }
                None => {
                    tracing::info!(holder = %config.holder, token = lease.token, "scheduler leadership acquired");
                    metrics::gauge!("pysaas_scheduler_leader").set(1.0);
                    let (tx, rx) = watch::channel(Some(lease));
                    let stop = shutdown.child_token();
                    let services = crate::spawn_services(&context, rx, stop.clone());
                    leading = Some(Leading {
                        lease: tx,
                        deadline: sent + config.leader_ttl,
                        stop,
                        services,
                    });
                }
            },
            Ok(None) => {
                if let Some(current) = leading.take() {
                    tracing::warn!(holder = %config.holder, "scheduler leadership lost to another replica");
                    current.step_down().await;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "scheduler lease check failed");
                if leading
                    .as_ref()
                    .is_some_and(|l| Instant::now() >= l.deadline)
                {
                    tracing::warn!(holder = %config.holder, "scheduler lease lapsed; stepping down");
                    if let Some(current) = leading.take() {
                        current.step_down().await;
                    }
                }
            }
        }
        let pause = if leading.is_some() {
            renew_every
        } else {
            config.follower_poll
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    if let Some(current) = leading.take() {
        let lease = current.lease.borrow().clone();
        current.step_down().await;
        if let Some(lease) = lease {
            match context.store.release_lease(&lease).await {
                Ok(()) => tracing::info!(holder = %config.holder, "scheduler leadership released"),
                Err(err) => {
                    tracing::warn!(error = %err, "scheduler lease not released; it lapses on its own")
                }
            }
        }
    }
}
