//! [`EventOutbox`] once for both backends; only what a reader may see differs (PostgreSQL's
//! transaction horizon, see the migration `0021_event_outbox.sql`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::events::Fact;

use super::{args, Arg, Columns, SqlBackend, SqlTx, Stmt};
use crate::store::events::{EventOutbox, OutboxBacklog, OutboxEntry, OutboxPosition};
use crate::Result;

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

const SET_ENABLED: Stmt<'static> = Stmt::write("UPDATE event_settings SET enabled = $1");
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
            data: row.json(7)?,
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
        self.execute(SET_ENABLED, &args![enabled]).await?;
        Ok(())
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

    async fn outbox_prune(&self, before: DateTime<Utc>, n: usize) -> Result<u64> {
        self.execute(PRUNE, &args![before, limit(n)]).await
    }
}
