//! [`EventOutbox`] once for both backends; only what a reader may see differs (PostgreSQL's
//! transaction horizon, see the migration `0021_event_outbox.sql`), and how recording is turned
//! on and off (`0023_event_triggers_switched.sql`; on SQLite the triggers below).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::events::Fact;

use super::{args, Arg, Columns, SqlBackend, SqlTx, Stmt};
use crate::store::events::{EventOutbox, OutboxBacklog, OutboxEntry, OutboxPosition};
use crate::{Result, StoreError};

/// `$1`'s cursor as a row value, `(0, 0)` before its first commit.
macro_rules! cursor_of {
    () => {
        "(COALESCE((SELECT txid FROM event_cursors WHERE consumer = $1), 0), \
          COALESCE((SELECT seq FROM event_cursors WHERE consumer = $1), 0))"
    };
}

macro_rules! read_after {
    ($horizon:literal) => {
        Stmt::read(concat!(
            "SELECT o.txid, o.seq, o.id, o.tenant_id, o.type, o.subject, o.time, o.data, \
                    o.traceparent \
             FROM event_outbox o WHERE (o.txid, o.seq) > ",
            cursor_of!(),
            $horizon,
            " ORDER BY o.txid, o.seq LIMIT $2"
        ))
    };
}

/// Only rows of transactions older than every one still running: nothing can commit behind
/// them any more.
const READ_PG: Stmt<'static> =
    read_after!(" AND o.txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint");
/// One writer at a time: rows commit in `seq` order.
const READ_SQLITE: Stmt<'static> = read_after!("");

const SWITCH_PG: Stmt<'static> = Stmt::write("SELECT event_outbox_switch($1)");
const SET_ENABLED: Stmt<'static> = Stmt::write("UPDATE event_settings SET enabled = $1");
/// Read on the writing transaction.
const ENABLED: Stmt<'static> = Stmt::write("SELECT enabled FROM event_settings");

/// A time column (microseconds) as the RFC 3339 text a JSON document holds.
macro_rules! sqlite_json_time {
    ($col:expr) => {
        concat!(
            "strftime('%Y-%m-%dT%H:%M:%fZ', ",
            $col,
            " / 1000000.0, 'unixepoch')"
        )
    };
}

/// An `INSERT … SELECT` of a job transition's fact (SQLite), positional as on PostgreSQL
/// (`RecordedTransition`), made from the job's row `$row`
/// (`NEW`, `OLD`, or an alias): `$state` the state it is in, `$from` the one it left,
/// `$finished` when the job finished. The caller may add `FROM` / `WHERE`.
macro_rules! sqlite_job_fact {
    ($row:literal, $state:literal, $from:literal, $finished:literal) => {
        concat!(
            "INSERT INTO event_outbox (tenant_id, type, subject, data, traceparent) SELECT ",
            $row,
            ".tenant_id, 'pysaas.job.' || ",
            $state,
            ", 'jobs/' || ",
            $row,
            ".id, json_array(",
            $row,
            ".id, ",
            $row,
            ".kind, ",
            $row,
            ".queue, ",
            $state,
            ", ",
            $from,
            ", ",
            $row,
            ".attempts, ",
            $row,
            ".max_attempts, ",
            $row,
            ".worker_id, ",
            sqlite_json_time!(concat!($row, ".created_at")),
            ", ",
            sqlite_json_time!(concat!($row, ".run_at")),
            ", ",
            sqlite_json_time!(concat!($row, ".started_at")),
            ", ",
            sqlite_json_time!($finished),
            "), ",
            $row,
            ".trace_context"
        )
    };
}

/// While events are on, the start of a running job's attempt when it is cancelled (claims record
/// nothing; see the PostgreSQL migration `0025_event_claims_unrecorded.sql`): `?2` tenant, `?3`
/// id (`?1`, the cancel's time, is not needed), before the cancel moves the job.
pub(crate) const SQLITE_CANCELLED_START: &str = concat!(
    sqlite_job_fact!("j", "'running'", "'queued'", "NULL"),
    " FROM jobs j WHERE ?1 IS NOT NULL AND j.tenant_id = ?2 AND j.id = ?3 AND j.state = 'running' \
       AND EXISTS (SELECT 1 FROM event_settings WHERE enabled)"
);

/// While events are on, the start of each attempt a completion batch (`?2`, as the completer's
/// move binds it; `?1` unused) ends as `cancelled` by its handler, before the batch moves.
pub(crate) const SQLITE_HANDLER_CANCELLED_START: &str = concat!(
    sqlite_job_fact!("j", "'running'", "'queued'", "NULL"),
    " FROM json_each(?2) AS c JOIN jobs j ON j.id = c.value ->> 0 AND j.attempts = c.value ->> 1 \
       AND j.state = 'running' \
     WHERE ?1 IS NOT NULL AND c.value ->> 2 = 'cancelled' \
       AND EXISTS (SELECT 1 FROM event_settings WHERE enabled)"
);

/// SQLite's recording triggers (row triggers), created while events are on. A claim (to
/// `running`) records nothing: the attempt's start is recorded when it ends — by the reader from
/// a finished job's fact, by the move out of `running` here, or by the cancel.
const SQLITE_TRIGGERS: [Stmt<'static>; 3] = [
    Stmt::write(concat!(
        "CREATE TRIGGER IF NOT EXISTS event_outbox_submitted AFTER INSERT ON jobs BEGIN ",
        sqlite_job_fact!("NEW", "NEW.state", "NULL", "NEW.finished_at"),
        "; END"
    )),
    Stmt::write(concat!(
        "CREATE TRIGGER IF NOT EXISTS event_outbox_moved AFTER UPDATE OF state ON jobs \
         WHEN OLD.state <> NEW.state AND NEW.state <> 'running' BEGIN ",
        sqlite_job_fact!("OLD", "'running'", "'queued'", "NULL"),
        " WHERE OLD.state = 'running'; ",
        sqlite_job_fact!("NEW", "NEW.state", "OLD.state", "NEW.finished_at"),
        "; END"
    )),
    // Succeeded and dead only ever from `running`.
    Stmt::write(concat!(
        "CREATE TRIGGER IF NOT EXISTS event_outbox_finished AFTER INSERT ON job_history BEGIN ",
        sqlite_job_fact!(
            "NEW",
            "NEW.state",
            "CASE WHEN NEW.state <> 'cancelled' THEN 'running' END",
            "NEW.finished_at"
        ),
        "; END"
    )),
];
const SQLITE_DROPS: [Stmt<'static>; 3] = [
    Stmt::write("DROP TRIGGER IF EXISTS event_outbox_submitted"),
    Stmt::write("DROP TRIGGER IF EXISTS event_outbox_moved"),
    Stmt::write("DROP TRIGGER IF EXISTS event_outbox_finished"),
];
const COMMIT: Stmt<'static> = Stmt::write(
    "INSERT INTO event_cursors (consumer, txid, seq, updated_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (consumer) DO UPDATE SET txid = excluded.txid, seq = excluded.seq, \
       updated_at = excluded.updated_at \
     WHERE (event_cursors.txid, event_cursors.seq) < (excluded.txid, excluded.seq)",
);
const FIRST_FROM: Stmt<'static> =
    Stmt::read("SELECT txid, seq FROM event_outbox WHERE time >= $1 ORDER BY txid, seq LIMIT 1");
const SET_CURSOR: Stmt<'static> = Stmt::write(
    "INSERT INTO event_cursors (consumer, txid, seq, updated_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (consumer) DO UPDATE SET txid = excluded.txid, seq = excluded.seq, \
       updated_at = excluded.updated_at",
);
const BACKLOG: Stmt<'static> = Stmt::read(concat!(
    "SELECT count(*) AS n, min(o.time) AS oldest FROM event_outbox o WHERE (o.txid, o.seq) > ",
    cursor_of!()
));
const PRUNE: Stmt<'static> = Stmt::write(
    "DELETE FROM event_outbox WHERE (txid, seq) IN ( \
         SELECT o.txid, o.seq FROM event_outbox o \
         WHERE o.time < $1 AND NOT EXISTS ( \
             SELECT 1 FROM event_cursors c WHERE (c.txid, c.seq) < (o.txid, o.seq)) \
         ORDER BY o.txid, o.seq LIMIT $2)",
);

/// A fact recorded by application code (admin, auth, billing and profile actions), in the
/// caller's transaction, only while events are on.
const RECORD: Stmt<'static> = Stmt::write(
    "INSERT INTO event_outbox (id, tenant_id, type, subject, data) \
     SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM event_settings WHERE enabled)",
);

/// Records a fact in `tx` (nothing while events are off), so that it commits, or not, with the
/// change it describes.
pub(crate) async fn record_fact<T: SqlTx>(
    tx: &mut T,
    tenant_id: &str,
    event_type: &str,
    subject: &str,
    data: &serde_json::Value,
) -> Result<()> {
    tx.execute(
        RECORD,
        &[
            uuid::Uuid::now_v7().into(),
            tenant_id.into(),
            event_type.into(),
            subject.into(),
            Arg::Json(data),
        ],
    )
    .await?;
    Ok(())
}

/// Creates (SQLite: the triggers are the store's, not a migration's) or drops the recording
/// triggers, and sets the flag application facts go by, in one transaction. On PostgreSQL the
/// switch takes the job tables' locks in its own order, which a transaction taking them the
/// other way round can deadlock with: it is tried again then.
async fn switch<S: SqlBackend>(store: &S, on: bool) -> Result<()> {
    if S::NAME == "postgres" {
        let mut tries = 0;
        loop {
            match store.fetch_optional(SWITCH_PG, &args![on]).await {
                Ok(_) => return Ok(()),
                Err(err) if tries < 3 && err.to_string().contains("deadlock") => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }
    let mut tx = store.begin_tx().await?;
    tx.execute(SET_ENABLED, &args![on]).await?;
    sqlite_triggers(&mut tx, on).await?;
    tx.commit_tx().await?;
    Ok(())
}

/// Drops the recording triggers, and with `on` creates them as this build records (a store
/// made by an older one gets the current ones).
async fn sqlite_triggers<T: SqlTx>(tx: &mut T, on: bool) -> Result<()> {
    let creates: &[Stmt<'static>] = if on { &SQLITE_TRIGGERS } else { &[] };
    for stmt in SQLITE_DROPS.iter().chain(creates) {
        tx.execute(*stmt, &[]).await?;
    }
    Ok(())
}

/// After migrating (SQLite): the recording triggers as the flag says, read in the same write
/// transaction, so another process turning events on meanwhile is never undone. PostgreSQL's
/// migration restores its own.
pub(crate) async fn restore_recording<S: SqlBackend>(store: &S) -> Result<()> {
    let mut tx = store.begin_tx().await?;
    let on = match tx.fetch_optional(ENABLED, &[]).await? {
        Some(row) => row.flag(0)?,
        None => false,
    };
    sqlite_triggers(&mut tx, on).await?;
    tx.commit_tx().await?;
    Ok(())
}

/// [`record_fact`] with the fact's data as a typed event.
pub(crate) async fn record_event<T: SqlTx, E: serde::Serialize>(
    tx: &mut T,
    tenant_id: &str,
    event_type: &str,
    subject: &str,
    event: &E,
) -> Result<()> {
    let data = serde_json::to_value(event)
        .map_err(|e| StoreError::Corrupt(format!("{event_type}: {e}")))?;
    record_fact(tx, tenant_id, event_type, subject, &data).await
}

fn entry<R: Columns>(row: &R) -> Result<OutboxEntry> {
    Ok(OutboxEntry {
        position: OutboxPosition {
            txid: row.big(0)?,
            seq: row.big(1)?,
        },
        fact: Fact {
            id: row.uuid(2)?,
            tenant_id: row.text(3)?,
            event_type: row.text(4)?,
            subject: row.text(5)?,
            time: row.time(6)?,
            data: row.data(7)?,
            traceparent: row.opt_text(8)?,
        },
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl<S: SqlBackend> EventOutbox for S {
    async fn set_events_enabled(&self, enabled: bool) -> Result<()> {
        switch(self, enabled).await
    }

    async fn outbox_read(&self, consumer: &str, n: usize) -> Result<Vec<OutboxEntry>> {
        let stmt = if S::NAME == "postgres" {
            READ_PG
        } else {
            READ_SQLITE
        };
        let rows = self.fetch_all(stmt, &args![consumer, limit(n)]).await?;
        rows.iter().map(entry).collect()
    }

    async fn outbox_commit(&self, consumer: &str, through: OutboxPosition) -> Result<()> {
        self.execute(
            COMMIT,
            &[
                consumer.into(),
                through.txid.into(),
                through.seq.into(),
                Arg::Now,
            ],
        )
        .await?;
        Ok(())
    }

    async fn outbox_rewind(&self, consumer: &str, from: DateTime<Utc>) -> Result<()> {
        let Some(row) = self.fetch_optional(FIRST_FROM, &args![from]).await? else {
            return Ok(());
        };
        let (txid, seq) = (row.big(0)?, row.big(1)?);
        self.execute(
            SET_CURSOR,
            &[consumer.into(), txid.into(), (seq - 1).into(), Arg::Now],
        )
        .await?;
        Ok(())
    }

    async fn outbox_backlog(&self, consumer: &str) -> Result<OutboxBacklog> {
        let row = self.fetch_optional(BACKLOG, &args![consumer]).await?;
        let Some(row) = row else {
            return Ok(OutboxBacklog::default());
        };
        Ok(OutboxBacklog {
            pending: row.big("n")?,
            oldest: row.opt_time("oldest")?,
        })
    }

    async fn record_fact(
        &self,
        tenant_id: &str,
        event_type: &str,
        subject: &str,
        data: &serde_json::Value,
    ) -> Result<()> {
        let mut tx = self.begin_tx().await?;
        record_fact(&mut tx, tenant_id, event_type, subject, data).await?;
        tx.commit_tx().await?;
        Ok(())
    }

    async fn outbox_prune(&self, before: DateTime<Utc>, n: usize) -> Result<u64> {
        self.execute(PRUNE, &args![before, limit(n)]).await
    }
}
