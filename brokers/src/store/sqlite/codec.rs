//! The shared statements on SQLite: ids as text, times as integer microseconds, JSON as text;
//! reads on the reader pool, writes on the one writer.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::events::Data;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Connection, Row, Sqlite};
use uuid::Uuid;

use super::{from_micros, micros, SqliteStore};
use crate::store::sql::{bind_args, plain_columns, Arg, Col, Columns, SqlBackend, Stmt};
use crate::{Result, StoreError};

fn parse_uuid(text: &str, col: &Col<'_>) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("{col:?} `{text}`: {e}")))
}

fn parse_json(text: &str, col: &Col<'_>) -> Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("{col:?}: invalid JSON: {e}")))
}

impl Columns for SqliteRow {
    plain_columns!();

    fn time<'c>(&self, i: impl Into<Col<'c>>) -> Result<DateTime<Utc>> {
        from_micros(self.try_get(i.into())?)
    }

    fn opt_time<'c>(&self, i: impl Into<Col<'c>>) -> Result<Option<DateTime<Utc>>> {
        self.try_get::<Option<i64>, _>(i.into())?
            .map(from_micros)
            .transpose()
    }

    fn uuid<'c>(&self, i: impl Into<Col<'c>>) -> Result<Uuid> {
        let i = i.into();
        parse_uuid(self.try_get(i)?, &i)
    }

    fn opt_uuid<'c>(&self, i: impl Into<Col<'c>>) -> Result<Option<Uuid>> {
        let i = i.into();
        let text: Option<&str> = self.try_get(i)?;
        text.map(|t| parse_uuid(t, &i)).transpose()
    }

    fn json<'c>(&self, i: impl Into<Col<'c>>) -> Result<serde_json::Value> {
        let i = i.into();
        parse_json(self.try_get(i)?, &i)
    }

    fn opt_json<'c>(&self, i: impl Into<Col<'c>>) -> Result<Option<serde_json::Value>> {
        let i = i.into();
        let text: Option<&str> = self.try_get(i)?;
        text.map(|t| parse_json(t, &i)).transpose()
    }

    fn data<'c>(&self, i: impl Into<Col<'c>>) -> Result<Data> {
        let i = i.into();
        let text: &str = self.try_get(i)?;
        Data::from_text(text.to_owned())
            .map_err(|e| StoreError::Corrupt(format!("{i:?}: invalid JSON: {e}")))
    }
}

/// `now`: the writer's clock for writes (microseconds).
pub(super) fn query<'q>(
    stmt: Stmt<'q>,
    args: &'q [Arg<'q>],
    now: i64,
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    bind_args!(sqlx::query(stmt.text()), args, q, {
        Arg::Time(v) => q.bind(v.map(micros)),
        Arg::Uuid(v) => q.bind(v.map(|id| id.to_string())),
        Arg::Json(v) => q.bind(v.to_string()),
        Arg::Data(v) => q.bind(v.as_str()),
        Arg::Now => q.bind(now),
    })
}

impl SqliteStore {
    /// A connection for `stmt` (a reader, or the writer) and the time of the statement.
    async fn conn_for(&self, stmt: Stmt<'_>) -> Result<(PoolConnection<Sqlite>, i64)> {
        if stmt.is_read() {
            Ok((self.reader().acquire().await?, micros(Utc::now())))
        } else {
            self.write().await
        }
    }
}

#[async_trait]
impl SqlBackend for SqliteStore {
    type Row = SqliteRow;

    const FOR_UPDATE: &'static str = "";
    const NAME: &'static str = "sqlite";
    type Tx<'a> = super::SqliteTransaction<'a>;

    async fn begin_tx(&self) -> Result<Self::Tx<'_>> {
        self.begin().await
    }

    fn server_now() -> Option<&'static str> {
        None
    }

    fn payload_contains(param: &str) -> String {
        // Containment of top-level scalars: every member of the wanted object is in the payload
        // with the same JSON type and value (keys are checked to be plain names first).
        format!(
            "NOT EXISTS (SELECT 1 FROM json_each({param}) AS w WHERE \
               json_type(payload, '$.\"' || w.key || '\"') IS NOT w.type \
               OR (w.type NOT IN ('true', 'false', 'null') \
                   AND json_extract(payload, '$.\"' || w.key || '\"') IS NOT w.value))"
        )
    }

    async fn fetch_optional(&self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<Option<SqliteRow>> {
        let (mut conn, now) = self.conn_for(stmt).await?;
        Ok(query(stmt, args, now).fetch_optional(&mut *conn).await?)
    }

    async fn fetch_all(&self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<Vec<SqliteRow>> {
        let (mut conn, now) = self.conn_for(stmt).await?;
        Ok(query(stmt, args, now).fetch_all(&mut *conn).await?)
    }

    async fn execute(&self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<u64> {
        let (mut conn, now) = self.conn_for(stmt).await?;
        Ok(query(stmt, args, now)
            .execute(&mut *conn)
            .await?
            .rows_affected())
    }

    async fn execute_all(&self, steps: &[(Stmt<'_>, &[Arg<'_>])]) -> Result<bool> {
        let (mut conn, now) = self.write().await?;
        let mut tx = conn.begin().await?;
        for (stmt, args) in steps {
            if query(*stmt, args, now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 0
            {
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}
