//! Transactional enqueue on SQLite: the caller's own writes and the jobs they cause commit
//! together, or neither does.

use pysaas_jobs::{Job, NewJob};
use sqlx::{Sqlite, SqliteConnection};

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;

use super::codec::query;
use super::{insert_in, micros, SqliteStore};
use crate::store::sql::{Arg, SqlTx, Stmt};
use crate::store::Inserted;
use crate::Result;

/// A transaction on the store's one writer connection in which the caller writes its own rows
/// (through [`SqliteTransaction::conn`]) and enqueues jobs ([`SqliteTransaction::enqueue`]);
/// [`SqliteTransaction::commit`] makes both durable at once. Dropped without a commit, it rolls
/// back. SQLite has one writer: every other write of the process waits while it is open, so
/// keep it short (no network calls inside).
#[derive(Debug)]
pub struct SqliteTransaction<'s> {
    store: &'s SqliteStore,
    tx: sqlx::Transaction<'static, Sqlite>,
    created: Vec<Job>,
    ready: bool,
}

impl SqliteStore {
    /// Begins a transaction for the caller's writes and the jobs they cause (see
    /// [`SqliteTransaction`]).
    pub async fn begin(&self) -> Result<SqliteTransaction<'_>> {
        Ok(SqliteTransaction {
            store: self,
            // IMMEDIATE: the write lock now (waiting out another process's writer), so a read
            // followed by a write cannot fail on a snapshot another process moved on from.
            tx: self.writer.begin_with("BEGIN IMMEDIATE").await?,
            created: Vec::new(),
            ready: false,
        })
    }
}

impl SqliteTransaction<'_> {
    /// The transaction's connection, for the caller's own statements.
    pub fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    /// Inserts jobs within the transaction, as [`crate::JobStore::insert`] does (idempotency
    /// keys included). No worker sees them before the commit.
    pub async fn enqueue(&mut self, jobs: Vec<NewJob>) -> Result<Vec<Inserted>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let (inserted, ready) = insert_in(&mut self.tx, &jobs, chrono::Utc::now()).await?;
        self.ready |= ready;
        self.created
            .extend(inserted.iter().filter(|i| i.created).map(|i| i.job.clone()));
        Ok(inserted)
    }

    /// Commits the caller's writes and the jobs together, then wakes the workers and announces
    /// the change to live pages. Returns the jobs created (for an external dispatcher: the queued ones).
    pub async fn commit(self) -> Result<Vec<Job>> {
        self.tx.commit().await?;
        if self.ready {
            self.store.wake();
        }
        self.store
            .changed(self.created.iter().map(|j| j.tenant_id.as_str()));
        Ok(self.created)
    }

    /// Rolls back: none of the caller's writes and none of the jobs remain.
    pub async fn rollback(self) -> Result<()> {
        Ok(self.tx.rollback().await?)
    }
}

#[async_trait]
impl SqlTx for SqliteTransaction<'_> {
    type Row = SqliteRow;

    async fn fetch_optional(
        &mut self,
        stmt: Stmt<'_>,
        args: &[Arg<'_>],
    ) -> Result<Option<SqliteRow>> {
        let now = micros(chrono::Utc::now());
        Ok(query(stmt, args, now).fetch_optional(&mut *self.tx).await?)
    }

    async fn fetch_all(&mut self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<Vec<SqliteRow>> {
        let now = micros(chrono::Utc::now());
        Ok(query(stmt, args, now).fetch_all(&mut *self.tx).await?)
    }

    async fn execute(&mut self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<u64> {
        let now = micros(chrono::Utc::now());
        Ok(query(stmt, args, now)
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
