//! PostgreSQL job store: `FOR UPDATE SKIP LOCKED` claims and `LISTEN/NOTIFY` wake-ups.

mod auth;
mod codec;
mod jobs;
mod rates;
mod schedules;
mod transaction;

pub use transaction::PgTransaction;

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::{Job, JobState, NewJob};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{broadcast, mpsc, watch};
use uuid::Uuid;

use super::{
    outcome_columns, sort_claimed, AuthChange, Completion, FireResult, Inserted, JobStore, Lease,
    ScheduleFire, StoreConfig, Transition, RELEASED_ERROR, RESCUED_ERROR,
};
use crate::store::sql::{job_from_row, jobs_from_rows};
use crate::{Result, StoreError};

/// How many due rows one promotion or rescue pass moves at most.
const MAINTENANCE_BATCH: i64 = 10_000;

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    schema: String,
    channel: String,
    wake: Arc<watch::Sender<u64>>,
    auth: broadcast::Sender<AuthChange>,
    listener: Arc<OnceLock<()>>,
    notifier: Arc<OnceLock<mpsc::UnboundedSender<String>>>,
    changes: broadcast::Sender<String>,
    change_notifier: Arc<OnceLock<mpsc::UnboundedSender<String>>>,
}

/// Least time between two `NOTIFY`s of changed tenants from one process: a busy worker's
/// changes go out about ten times a second, never once per batch.
const CHANGES_PACE: Duration = Duration::from_millis(100);

fn valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 48
}

impl PgStore {
    /// Connects a pool whose connections use `config.schema`.
    pub async fn connect(config: &StoreConfig) -> Result<Self> {
        if !valid_identifier(&config.schema) {
            return Err(StoreError::Config(format!(
                "schema `{}` must be lower-case letters, digits and `_`, at most 48 characters",
                config.schema
            )));
        }
        let options = PgConnectOptions::from_str(&config.url)
            .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL: {e}")))?
            .options([("search_path", config.schema.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_lazy_with(options);
        Ok(PgStore {
            pool,
            channel: format!("pysaas_{}", config.schema),
            schema: config.schema.clone(),
            wake: Arc::new(watch::Sender::new(0)),
            auth: broadcast::Sender::new(1024),
            listener: Arc::new(OnceLock::new()),
            notifier: Arc::new(OnceLock::new()),
            changes: broadcast::Sender::new(1024),
            change_notifier: Arc::new(OnceLock::new()),
        })
    }

    /// The pool (for tests and tools that need raw SQL).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The channel credential changes are announced on.
    pub(crate) fn auth_channel(&self) -> String {
        format!("{}_auth", self.channel)
    }

    /// Starts the one LISTEN connection of this store (job wake-ups and credential changes).
    pub(crate) fn start_listener(&self) {
        self.listener.get_or_init(|| {
            tokio::spawn(listen(
                self.pool.clone(),
                self.channel.clone(),
                Arc::downgrade(&self.wake),
                self.auth.clone(),
                self.changes.clone(),
            ));
        });
    }

    /// Tells this process's caches about a change at once (others hear it through NOTIFY).
    pub(crate) fn announce(&self, change: AuthChange) {
        let _ = self.auth.send(change);
    }

    pub(crate) fn auth_sender(&self) -> &broadcast::Sender<AuthChange> {
        &self.auth
    }

    /// Announces, after the change committed, that jobs of `tenants` changed state: every
    /// process's [`JobStore::changes`] hears it through a `NOTIFY` on `{channel}_changes`, sent
    /// by a background task at most every [`CHANGES_PACE`] (one statement for every tenant
    /// announced meanwhile).
    pub(crate) fn announce_tenants<'a>(&self, tenants: impl IntoIterator<Item = &'a str>) {
        let tx = self.change_notifier.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(notify_loop(
                self.pool.clone(),
                format!("{}_changes", self.channel),
                rx,
                CHANGES_PACE,
            ));
            tx
        });
        for tenant in tenants.into_iter().collect::<BTreeSet<_>>() {
            let _ = tx.send(tenant.to_owned());
        }
    }

    /// This process's subscription to changed tenants (starting the listener).
    pub(crate) fn subscribe_changes(&self) -> broadcast::Receiver<String> {
        self.start_listener();
        self.changes.subscribe()
    }

    /// Announces that `queues` have jobs to claim, after the change committed: this process's
    /// consumers are woken at once, other processes by a `NOTIFY` that a background task sends,
    /// coalesced (one statement for every queue announced meanwhile). A `NOTIFY` inside the
    /// writing transaction would serialise every such transaction on PostgreSQL's notification
    /// lock until its commit is flushed (measured: inserts at 1,000/s queued behind it, tens of
    /// milliseconds each).
    pub(crate) fn announce_queues<'a>(&self, queues: impl IntoIterator<Item = &'a str>) {
        let tx = self.notifier.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(notify_loop(
                self.pool.clone(),
                self.channel.clone(),
                rx,
                Duration::ZERO,
            ));
            tx
        });
        let mut any = false;
        for queue in queues {
            any = true;
            let _ = tx.send(queue.to_owned());
        }
        if any {
            self.wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Inserts jobs on `conn` in one statement (within the caller's transaction, if any); the
    /// caller announces the queued ones' queues once committed ([`Self::announce_queues`]).
    /// A job whose idempotency key its tenant used before is not inserted: the existing job is
    /// returned with `created: false`.
    pub(crate) async fn insert_in(
        &self,
        conn: &mut PgConnection,
        jobs: &[NewJob],
    ) -> Result<Vec<Inserted>> {
        let n = jobs.len();
        let mut ids = Vec::with_capacity(n);
        let mut tenants = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut queues = Vec::with_capacity(n);
        let mut priorities = Vec::with_capacity(n);
        let mut max_attempts = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        let mut timeouts = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        let mut traces = Vec::with_capacity(n);
        let mut request_ids = Vec::with_capacity(n);
        let mut run_ats = Vec::with_capacity(n);
        for job in jobs {
            ids.push(job.id);
            tenants.push(job.tenant_id.as_str());
            kinds.push(job.kind.as_str());
            queues.push(job.queue.as_str());
            priorities.push(job.priority);
            max_attempts.push(job.max_attempts);
            payloads.push(job.payload.to_string());
            timeouts.push(job.timeout_ms);
            keys.push(job.idempotency_key.as_deref());
            traces.push(job.trace_context.as_deref());
            request_ids.push(job.request_id.as_deref());
            run_ats.push(job.run_at);
        }
        let keyed = jobs.iter().any(|j| j.idempotency_key.is_some());
        // Keys first: a job is inserted only if its key (when it has one) is new for its tenant.
        let sql = if keyed { INSERT_KEYED_SQL } else { INSERT_SQL };
        let rows = sqlx::query(sql)
            .bind(&ids)
            .bind(&tenants)
            .bind(&kinds)
            .bind(&queues)
            .bind(&priorities)
            .bind(&max_attempts)
            .bind(&payloads)
            .bind(&timeouts)
            .bind(&keys)
            .bind(&traces)
            .bind(&run_ats)
            .bind(&request_ids)
            .fetch_all(&mut *conn)
            .await?;
        let mut created: HashMap<Uuid, Job> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let job = job_from_row(row)?;
            created.insert(job.id, job);
        }
        let mut existing: HashMap<(String, String), Job> = HashMap::new();
        if created.len() < n {
            let (lookup_tenants, lookup_keys): (Vec<&str>, Vec<&str>) = jobs
                .iter()
                .filter(|j| !created.contains_key(&j.id))
                .filter_map(|j| Some((j.tenant_id.as_str(), j.idempotency_key.as_deref()?)))
                .unzip();
            let rows = sqlx::query(concat!(
                "WITH k AS (SELECT k.job_id FROM job_keys k \
                            JOIN unnest($1::text[], $2::text[]) AS l(tenant_id, key) \
                            ON k.tenant_id = l.tenant_id AND k.key = l.key) \
                 SELECT ",
                job_columns!(),
                " FROM jobs WHERE id IN (SELECT job_id FROM k) \
                 UNION ALL SELECT ",
                job_columns!(),
                " FROM job_history WHERE id IN (SELECT job_id FROM k)"
            ))
            .bind(&lookup_tenants)
            .bind(&lookup_keys)
            .fetch_all(&mut *conn)
            .await?;
            for row in &rows {
                let job = job_from_row(row)?;
                if let Some(key) = job.idempotency_key.clone() {
                    existing.insert((job.tenant_id.clone(), key), job);
                }
            }
        }
        jobs.iter()
            .map(|new| {
                if let Some(job) = created.remove(&new.id) {
                    return Ok(Inserted { job, created: true });
                }
                let key = (
                    new.tenant_id.clone(),
                    new.idempotency_key.clone().unwrap_or_default(),
                );
                existing
                    .get(&key)
                    .map(|job| Inserted {
                        job: job.clone(),
                        created: false,
                    })
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("job {} neither inserted nor found", new.id))
                    })
            })
            .collect()
    }
}

/// The columns of an insert, from `unnest` of the bound arrays `$1 ..= $12`.
macro_rules! insert_input {
    () => {
        "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int2[], \
                              $6::int4[], $7::text[], $8::int8[], $9::text[], $10::text[], \
                              $11::timestamptz[], $12::text[]) \
              AS t(id, tenant_id, kind, queue, priority, max_attempts, payload, timeout_ms, \
                   idempotency_key, trace_context, run_at, request_id)"
    };
}

/// Inserts the rows of `input` (a CTE) that pass `filter`. The statement's own time, not
/// `now()`: inside a caller's longer transaction ([`PgTransaction`]) `now()` is when it began,
/// which would make a job due now look scheduled.
macro_rules! insert_jobs {
    ($filter:literal) => {
        concat!(
            "INSERT INTO jobs (id, tenant_id, kind, queue, state, priority, max_attempts, payload, \
                               timeout_ms, idempotency_key, trace_context, run_at, created_at, request_id) \
             SELECT id, tenant_id, kind, queue, \
                    CASE WHEN run_at > statement_timestamp() THEN 'scheduled' ELSE 'queued' END, \
                    priority, max_attempts, payload::jsonb, timeout_ms, idempotency_key, trace_context, \
                    run_at, statement_timestamp(), request_id \
             FROM input ",
            $filter,
            " RETURNING ",
            job_columns!()
        )
    };
}

const INSERT_SQL: &str = concat!("WITH input AS (", insert_input!(), ") ", insert_jobs!(""));

const INSERT_KEYED_SQL: &str = concat!(
    "WITH input AS (",
    insert_input!(),
    "), keys AS (INSERT INTO job_keys (tenant_id, key, job_id) \
                 SELECT tenant_id, idempotency_key, id FROM input WHERE idempotency_key IS NOT NULL \
                 ON CONFLICT DO NOTHING RETURNING job_id) ",
    insert_jobs!("WHERE idempotency_key IS NULL OR id IN (SELECT job_id FROM keys)")
);

/// Moves the rows a CTE named `moved` returned (hot-table columns plus `new_state`,
/// `new_result`, `new_error`) to the history, finished now. `$attempt_error` is the JSON of the
/// failed attempt to append to `errors`, or NULL.
macro_rules! into_history {
    () => {
        "INSERT INTO job_history (id, tenant_id, kind, queue, state, priority, attempts, max_attempts, \
                                  payload, result, last_error, timeout_ms, idempotency_key, \
                                  trace_context, request_id, worker_id, created_at, run_at, \
                                  started_at, finished_at, lease_expires_at, errors) \
         SELECT id, tenant_id, kind, queue, new_state, priority, attempts, max_attempts, payload, \
                new_result, CASE WHEN new_state = 'succeeded' THEN NULL ELSE COALESCE(new_error, last_error) END, timeout_ms, idempotency_key, \
                trace_context, request_id, worker_id, created_at, run_at, started_at, now(), NULL, \
                CASE WHEN new_error IS NULL OR started_at IS NULL THEN errors \
                     ELSE COALESCE(errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object( \
                          'attempt', attempts, 'error', new_error, 'worker_id', worker_id, \
                          'started_at', started_at, 'finished_at', now(), 'detail', new_detail)) END \
         FROM moved"
    };
}
pub(crate) use into_history;

/// The JSON entry for a failed attempt of the row aliased `j`, ended now with error `$err` and
/// the handler's detail `$detail` (jsonb, or NULL).
macro_rules! attempt_error {
    ($err:literal, $detail:literal) => {
        concat!(
            "COALESCE(j.errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(\
             'attempt', j.attempts, 'error', ",
            $err,
            "::text, 'worker_id', j.worker_id, 'started_at', j.started_at, 'finished_at', now(), \
             'detail', ",
            $detail,
            "))"
        )
    };
}
pub(crate) use attempt_error;

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

/// Sends the coalesced `NOTIFY`s of [`PgStore::announce_queues`] and
/// [`PgStore::announce_tenants`] until the store is dropped: one statement for every payload
/// announced meanwhile, then a pause of `pace` (none for wake-ups, which claims wait on).
async fn notify_loop(
    pool: PgPool,
    channel: String,
    mut rx: mpsc::UnboundedReceiver<String>,
    pace: Duration,
) {
    let mut pending = Vec::new();
    while rx.recv_many(&mut pending, 1024).await > 0 {
        let payloads: Vec<String> = pending
            .drain(..)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if let Err(err) = sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .bind(&channel)
            .bind(&payloads)
            .execute(&pool)
            .await
        {
            // Only a wake-up or a live update is lost: consumers and pages also poll.
            tracing::debug!(error = %err, channel = %channel, "NOTIFY failed");
        }
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
}

/// Keeps one LISTEN connection open for as long as the store lives: job wake-ups bump `wake`
/// (also after every reconnect, as notifications sent while disconnected are lost), credential
/// changes go to `auth` (a reconnect sends [`AuthChange::Reset`], for the same reason).
async fn listen(
    pool: PgPool,
    channel: String,
    wake: Weak<watch::Sender<u64>>,
    auth: broadcast::Sender<AuthChange>,
    changes: broadcast::Sender<String>,
) {
    let auth_channel = format!("{channel}_auth");
    let changes_channel = format!("{channel}_changes");
    let mut backoff = pysaas_jobs::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener
                .listen_all([
                    channel.as_str(),
                    auth_channel.as_str(),
                    changes_channel.as_str(),
                ])
                .await
            {
                Ok(()) => {
                    backoff.reset();
                    let _ = auth.send(AuthChange::Reset);
                    // Changes announced while disconnected are lost: every tenant may have some.
                    let _ = changes.send(crate::store::ANY_TENANT.to_owned());
                    let Some(w) = wake.upgrade() else { return };
                    w.send_modify(|n| *n = n.wrapping_add(1));
                    drop(w);
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(note)) if note.channel() == auth_channel => {
                                let _ =
                                    auth.send(AuthChange::KeyRevoked(note.payload().to_owned()));
                            }
                            Ok(Some(note)) if note.channel() == changes_channel => {
                                let _ = changes.send(note.payload().to_owned());
                            }
                            Ok(_) => {
                                let Some(w) = wake.upgrade() else { return };
                                w.send_modify(|n| *n = n.wrapping_add(1));
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "job store listener failed");
                                break;
                            }
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "LISTEN failed"),
            },
            Err(err) => tracing::warn!(error = %err, "job store listener cannot connect"),
        }
        if wake.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff.next_wait()).await;
    }
}
