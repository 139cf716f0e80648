//! Transactional enqueue on PostgreSQL: the caller's own writes and the jobs they cause commit
//! together, or neither does.

use pysaas_jobs::{Job, JobState, NewJob};
use sqlx::{PgConnection, Postgres};

use async_trait::async_trait;
use sqlx::postgres::PgRow;

use super::codec::query;
use super::PgStore;
use crate::store::sql::{Arg, SqlTx, Stmt};
use crate::store::Inserted;
use crate::Result;

/// A transaction on the store's database in which the caller writes its own rows (through
/// [`PgTransaction::conn`]) and enqueues jobs ([`PgTransaction::enqueue`]); [`PgTransaction::commit`]
/// makes both durable at once. Dropped without a commit, it rolls back: no row and no job.
///
/// ```no_run
/// # async fn f(store: pysaas_brokers::store::PgStore, job: pysaas_jobs::NewJob) -> pysaas_brokers::Result<()> {
/// let mut tx = store.begin().await?;
/// sqlx::query("INSERT INTO subscriptions (id) VALUES ($1)")
///     .bind(uuid::Uuid::now_v7())
///     .execute(tx.conn())
///     .await?;
/// tx.enqueue(vec![job]).await?;
/// let jobs = tx.commit().await?; // hand these to an external dispatcher, if one is used
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PgTransaction<'s> {
    store: &'s PgStore,
    tx: sqlx::Transaction<'static, Postgres>,
    created: Vec<Job>,
}

impl PgStore {
    /// Begins a transaction for the caller's writes and the jobs they cause (see
    /// [`PgTransaction`]). The connection's `search_path` is the store's schema.
    pub async fn begin(&self) -> Result<PgTransaction<'_>> {
        Ok(PgTransaction {
            store: self,
            tx: self.pool.begin().await?,
            created: Vec::new(),
        })
    }
}

impl PgTransaction<'_> {
    /// The transaction's connection, for the caller's own statements.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Inserts jobs within the transaction, as [`crate::JobStore::insert`] does (idempotency
    /// keys included: a key used before returns the existing job with `created: false`). No
    /// worker sees them before the commit.
    pub async fn enqueue(&mut self, jobs: Vec<NewJob>) -> Result<Vec<Inserted>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let inserted = self.store.insert_in(&mut self.tx, &jobs).await?;
        self.created
            .extend(inserted.iter().filter(|i| i.created).map(|i| i.job.clone()));
        Ok(inserted)
    }

    /// Commits the caller's writes and the jobs together, then wakes the workers of their
    /// queues and announces the change to live pages. Returns the jobs created (queued and scheduled; publish the queued ones), for a caller
    /// that dispatches through RabbitMQ or Redis (a crash before that dispatch is covered: the
    /// leader's relay publishes queued jobs no consumer has seen).
    pub async fn commit(self) -> Result<Vec<Job>> {
        self.tx.commit().await?;
        self.store.announce_queues(
            self.created
                .iter()
                .filter(|j| j.state == JobState::Queued)
                .map(|j| j.queue.as_str()),
        );
        self.store
            .announce_tenants(self.created.iter().map(|j| j.tenant_id.as_str()));
        Ok(self.created)
    }

    /// Rolls back: none of the caller's writes and none of the jobs remain.
    pub async fn rollback(self) -> Result<()> {
        Ok(self.tx.rollback().await?)
    }
}

#[async_trait]
impl SqlTx for PgTransaction<'_> {
    type Row = PgRow;

    async fn fetch_optional(&mut self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<Option<PgRow>> {
        Ok(query(stmt, args).fetch_optional(&mut *self.tx).await?)
    }

    async fn fetch_all(&mut self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<Vec<PgRow>> {
        Ok(query(stmt, args).fetch_all(&mut *self.tx).await?)
    }

    async fn execute(&mut self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<u64> {
        Ok(query(stmt, args)
            .execute(&mut *self.tx)
            .await?
            .rows_affected())
    }

    async fn enqueue_jobs(&mut self, jobs: Vec<NewJob>) -> Result<Vec<Inserted>> {
        self.enqueue(jobs).await
    }

    async fn commit_tx(self) -> Result<Vec<Job>> {
        self.commit().await
    }
}
