//! The shared statements on PostgreSQL: native `uuid`, `timestamptz` and `jsonb` columns.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::events::Data;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row};
use uuid::Uuid;

use super::PgStore;
use crate::store::sql::{bind_args, plain_columns, Arg, Col, Columns, SqlBackend, Stmt};
use crate::Result;

impl Columns for PgRow {
    plain_columns!();

    fn time<'c>(&self, i: impl Into<Col<'c>>) -> Result<DateTime<Utc>> {
        Ok(self.try_get(i.into())?)
    }

    fn opt_time<'c>(&self, i: impl Into<Col<'c>>) -> Result<Option<DateTime<Utc>>> {
        Ok(self.try_get(i.into())?)
    }

    fn uuid<'c>(&self, i: impl Into<Col<'c>>) -> Result<Uuid> {
        Ok(self.try_get(i.into())?)
    }

    fn opt_uuid<'c>(&self, i: impl Into<Col<'c>>) -> Result<Option<Uuid>> {
        Ok(self.try_get(i.into())?)
    }

    fn json<'c>(&self, i: impl Into<Col<'c>>) -> Result<serde_json::Value> {
        Ok(self.try_get(i.into())?)
    }

    fn opt_json<'c>(&self, i: impl Into<Col<'c>>) -> Result<Option<serde_json::Value>> {
        Ok(self.try_get(i.into())?)
    }

    fn data<'c>(&self, i: impl Into<Col<'c>>) -> Result<Data> {
        let raw: sqlx::types::Json<Box<serde_json::value::RawValue>> = self.try_get(i.into())?;
        Ok(Data::from(raw.0))
    }
}

pub(super) fn query<'q>(stmt: Stmt<'q>, args: &'q [Arg<'q>]) -> Query<'q, Postgres, PgArguments> {
    bind_args!(sqlx::query(stmt.text()), args, q, {
        Arg::Time(v) => q.bind(*v),
        Arg::Uuid(v) => q.bind(*v),
        Arg::Json(v) => q.bind(*v),
        Arg::Data(v) => q.bind(sqlx::types::Json(v.as_raw())),
        Arg::Now => q.bind(Utc::now()),
    })
}

#[async_trait]
impl SqlBackend for PgStore {
    type Row = PgRow;

    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const NAME: &'static str = "postgres";
    type Tx<'a> = super::PgTransaction<'a>;

    async fn begin_tx(&self) -> Result<Self::Tx<'_>> {
        self.begin().await
    }

    fn server_now() -> Option<&'static str> {
        Some("now()")
    }

    fn payload_contains(param: &str) -> String {
        // A non-empty search never matches `{}`: saying so lets the planner use the partial
        // GIN index (migration 0012), which leaves empty payloads out.
        format!("payload @> {param} AND payload <> '{{}}'::jsonb")
    }

    async fn fetch_optional(&self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<Option<PgRow>> {
        Ok(query(stmt, args).fetch_optional(self.pool()).await?)
    }

    async fn fetch_all(&self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<Vec<PgRow>> {
        Ok(query(stmt, args).fetch_all(self.pool()).await?)
    }

    async fn execute(&self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<u64> {
        Ok(query(stmt, args)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    async fn execute_all(&self, steps: &[(Stmt<'_>, &[Arg<'_>])]) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        for (stmt, args) in steps {
            if query(*stmt, args).execute(&mut *tx).await?.rows_affected() == 0 {
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}
