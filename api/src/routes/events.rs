//! Live updates: Server-Sent Events telling a tenant's pages that its jobs changed.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::auth::{JobsRead, RequiredScope, TenantOf};
use crate::AppState;

/// Changes within this long of the first one go out as one event.
const COALESCE: Duration = Duration::from_millis(100);
/// A comment this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The stream's credential is checked again this often: an expired access token or a revoked
/// key ends the stream (the page reconnects with a fresh token, or stops).
const RECHECK: Duration = Duration::from_secs(5);

/// What a stream holds between events.
struct Open {
    changes: tokio::sync::broadcast::Receiver<String>,
    tenant: String,
    headers: HeaderMap,
    recheck: tokio::time::Interval,
}

impl Open {
    /// Whether the credential the stream was opened with still admits it to its tenant.
    async fn still_admitted(&self, state: &AppState) -> bool {
        match state
            .auth()
            .authenticate(state.store().as_ref(), &self.headers)
            .await
        {
            Ok(p) => p.tenant_id == self.tenant && JobsRead::SCOPE.is_none_or(|s| p.has(s)),
            Err(_) => false,
        }
    }

    /// Waits for a change of the tenant (`None`: the store is gone, or the credential no longer
    /// admits the stream).
    async fn next(&mut self, state: &AppState) -> Option<()> {
        loop {
            tokio::select! {
                seen = next_change(&mut self.changes, &self.tenant) => return seen,
                _ = self.recheck.tick() => {
                    if !self.still_admitted(state).await {
                        return None;
                    }
                }
            }
        }
    }
}

/// Live changes of the caller's tenant, as Server-Sent Events: `ready` once subscribed, then
/// `changed` whenever the tenant's jobs changed state (submitted, claimed, finished, cancelled,
/// retried, deleted) in any process sharing the store — at most one every 100 ms, within about
/// half a second of the change. The data is `{}`: a page refetches what it shows. Other
/// tenants' changes are never sent. The credential is checked again every 5 s: the stream ends
/// once it has expired or been revoked.
#[utoipa::path(get, path = "/v1/events/stream", operation_id = "streamEvents", tag = "jobs",
    responses((status = 200, description = "An event stream: `ready`, then `changed` events (data `{}`) and a keep-alive comment every 15 s", content_type = "text/event-stream", body = String)))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<JobsRead>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    recheck.reset();
    let open = Open {
        changes: state.store().changes(),
        tenant,
        headers,
        recheck,
    };
    let ended = Box::pin(state.streams_ended());
    let events = futures::stream::unfold(
        (open, state, ended, true),
        |(mut open, state, mut ended, first)| async move {
            if first {
                let ready = Event::default().event("ready").data("{}");
                return Some((Ok(ready), (open, state, ended, false)));
            }
            tokio::select! {
                () = &mut ended => return None,
                seen = open.next(&state) => seen?,
            }
            tokio::select! {
                () = &mut ended => return None,
                () = tokio::time::sleep(COALESCE) => {}
            }
            // What changed meanwhile is in this same event.
            loop {
                match open.changes.try_recv() {
                    Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return None,
                }
            }
            let changed = Event::default().event("changed").data("{}");
            Some((Ok(changed), (open, state, ended, false)))
        },
    );
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// Waits for a change of `tenant` (`None`: the store is gone). A lagging receiver may have
/// skipped one, so lagging counts as a change.
async fn next_change(
    changes: &mut tokio::sync::broadcast::Receiver<String>,
    tenant: &str,
) -> Option<()> {
    loop {
        match changes.recv().await {
            Ok(t) if t == tenant || t == pysaas_brokers::store::ANY_TENANT => return Some(()),
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return Some(()),
            Err(RecvError::Closed) => return None,
        }
    }
}
