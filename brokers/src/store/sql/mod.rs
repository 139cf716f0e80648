//! What the PostgreSQL and SQLite stores share: statements written once, values bound and rows
//! read through a small per-backend codec, and the store traits implemented once over it.
//!
//! PostgreSQL keeps ids as `uuid`, times as `timestamptz` and JSON as `jsonb`; SQLite keeps ids
//! as text, times as integer microseconds and JSON as text. [`Arg`] carries a value to bind and
//! each backend encodes it its way; [`Columns`] decodes a row's columns the same way back. SQL
//! that is the same in both dialects is written once with `$n` placeholders (SQLite reads them
//! as positional too) and [`Arg::Now`] for "the time of this write". What truly differs (claims,
//! leases, notifications) stays in the backend modules.

mod auth;
mod billing;
mod consumers;
pub(crate) mod events;
pub(crate) mod jobs;
mod notifications;
mod profiles;
mod queues;
mod rows;
mod schedules;
mod stats;
mod webhooks;
mod workers;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::{Job, JobState, NewJob};
use sqlx::ColumnIndex;
use uuid::Uuid;

pub(crate) use rows::{job_from_row, jobs_from_rows, lease_from_row};

use super::{AuthChange, FireResult, Inserted, Lease, ScheduleFire};
use crate::Result;

/// A statement written once for both dialects.
#[derive(Debug, Clone, Copy)]
pub struct Stmt<'a> {
    text: &'a str,
    read: bool,
}

impl<'a> Stmt<'a> {
    /// A statement that only reads (SQLite runs it on a reader connection).
    pub(crate) const fn read(text: &'a str) -> Self {
        Stmt { text, read: true }
    }

    /// A statement that writes (SQLite runs it on the one writer).
    pub(crate) const fn write(text: &'a str) -> Self {
        Stmt { text, read: false }
    }

    /// The SQL text.
    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// Whether it only reads.
    pub(crate) fn is_read(&self) -> bool {
        self.read
    }
}

/// A value to bind, encoded by each backend in its own column types.
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    /// Text.
    Text(Option<&'a str>),
    /// A small integer.
    Small(Option<i16>),
    /// An integer.
    Int(Option<i32>),
    /// A big integer.
    Big(Option<i64>),
    /// A flag.
    Flag(bool),
    /// Bytes.
    Bytes(&'a [u8]),
    /// A point in time.
    Time(Option<DateTime<Utc>>),
    /// An id.
    Uuid(Option<Uuid>),
    /// A JSON document.
    Json(&'a serde_json::Value),
    /// A JSON document as its text (an event's data, stored as it came).
    Data(&'a pysaas_jobs::events::Data),
    /// The time of this write: the writer's clock once it holds the write lock (SQLite), the
    /// process's clock (PostgreSQL, where these statements are not ordered by it).
    Now,
}

macro_rules! arg_from {
    ($($t:ty => $v:ident $(($conv:expr))?),* $(,)?) => {
        $(impl<'a> From<$t> for Arg<'a> {
            fn from(value: $t) -> Self {
                Arg::$v(arg_from!(@conv value $(, $conv)?))
            }
        })*
    };
    (@conv $value:ident) => { $value };
    (@conv $value:ident, $conv:expr) => { $conv($value) };
}

arg_from! {
    &'a str => Text (Some),
    &'a String => Text (|s: &'a String| Some(s.as_str())),
    Option<&'a str> => Text,
    i16 => Small (Some),
    Option<i16> => Small,
    i32 => Int (Some),
    Option<i32> => Int,
    i64 => Big (Some),
    bool => Flag,
    &'a [u8] => Bytes,
    &'a Vec<u8> => Bytes (Vec::as_slice),
    DateTime<Utc> => Time (Some),
    Option<DateTime<Utc>> => Time,
    Uuid => Uuid (Some),
    Option<Uuid> => Uuid,
    &'a serde_json::Value => Json,
    &'a pysaas_jobs::events::Data => Data,
}

/// Binds `args` to `$query`: the kinds both backends bind alike here, the rest by `$arms`
/// (naming the query `$q`).
macro_rules! bind_args {
    ($query:expr, $args:expr, $q:ident, { $($arms:tt)* }) => {
        $args.iter().fold($query, |$q, arg| match arg {
            Arg::Text(v) => $q.bind(*v),
            Arg::Small(v) => $q.bind(*v),
            Arg::Int(v) => $q.bind(*v),
            Arg::Big(v) => $q.bind(*v),
            Arg::Flag(v) => $q.bind(*v),
            Arg::Bytes(v) => $q.bind(*v),
            $($arms)*
        })
    };
}
pub(crate) use bind_args;

/// `[Arg; n]` from values that convert into [`Arg`].
macro_rules! args {
    ($($value:expr),* $(,)?) => { [$($crate::store::sql::Arg::from($value)),*] };
}
pub(crate) use args;

/// A column, by position (the hot paths) or by name.
#[derive(Debug, Clone, Copy)]
pub enum Col<'a> {
    /// The n-th column selected.
    At(usize),
    /// The column of this name.
    Named(&'a str),
}

impl From<usize> for Col<'_> {
    fn from(i: usize) -> Self {
        Col::At(i)
    }
}

impl<'a> From<&'a str> for Col<'a> {
    fn from(name: &'a str) -> Self {
        Col::Named(name)
    }
}

impl<R: sqlx::Row> ColumnIndex<R> for Col<'_>
where
    usize: ColumnIndex<R>,
    for<'n> &'n str: ColumnIndex<R>,
{
    fn index(&self, row: &R) -> std::result::Result<usize, sqlx::Error> {
        match *self {
            Col::At(i) => i.index(row),
            Col::Named(name) => name.index(row),
        }
    }
}

/// Reading a row's columns, each backend decoding its own column types.
pub trait Columns: sqlx::Row + Sized {
    /// Text.
    fn text<'c>(&self, i: impl Into<Col<'c>>) -> Result<String>;
    /// Nullable text.
    fn opt_text<'c>(&self, i: impl Into<Col<'c>>) -> Result<Option<String>>;
    /// A small integer.
    fn small<'c>(&self, i: impl Into<Col<'c>>) -> Result<i16>;
    /// A nullable small integer.
    fn opt_small<'c>(&self, i: impl Into<Col<'c>>) -> Result<Option<i16>>;
    /// An integer.
    fn int<'c>(&self, i: impl Into<Col<'c>>) -> Result<i32>;
    /// A nullable integer.
    fn opt_int<'c>(&self, i: impl Into<Col<'c>>) -> Result<Option<i32>>;
    /// A big integer.
    fn big<'c>(&self, i: impl Into<Col<'c>>) -> Result<i64>;
    /// A flag.
    fn flag<'c>(&self, i: impl Into<Col<'c>>) -> Result<bool>;
    /// Bytes.
    fn bytes<'c>(&self, i: impl Into<Col<'c>>) -> Result<Vec<u8>>;
    /// A point in time.
    fn time<'c>(&self, i: impl Into<Col<'c>>) -> Result<DateTime<Utc>>;
    /// A nullable point in time.
    fn opt_time<'c>(&self, i: impl Into<Col<'c>>) -> Result<Option<DateTime<Utc>>>;
    /// An id.
    fn uuid<'c>(&self, i: impl Into<Col<'c>>) -> Result<Uuid>;
    /// A nullable id.
    fn opt_uuid<'c>(&self, i: impl Into<Col<'c>>) -> Result<Option<Uuid>>;
    /// A JSON document.
    fn json<'c>(&self, i: impl Into<Col<'c>>) -> Result<serde_json::Value>;
    /// A nullable JSON document.
    fn opt_json<'c>(&self, i: impl Into<Col<'c>>) -> Result<Option<serde_json::Value>>;
    /// A JSON document as its text, checked but not parsed into a tree.
    fn data<'c>(&self, i: impl Into<Col<'c>>) -> Result<pysaas_jobs::events::Data>;
}

/// The [`Columns`] whose types both backends decode alike.
macro_rules! plain_columns {
    () => {
        fn text<'c>(&self, i: impl Into<$crate::store::sql::Col<'c>>) -> $crate::Result<String> {
            Ok(sqlx::Row::try_get(self, i.into())?)
        }
        fn opt_text<'c>(
            &self,
            i: impl Into<$crate::store::sql::Col<'c>>,
        ) -> $crate::Result<Option<String>> {
            Ok(sqlx::Row::try_get(self, i.into())?)
        }
        fn small<'c>(&self, i: impl Into<$crate::store::sql::Col<'c>>) -> $crate::Result<i16> {
            Ok(sqlx::Row::try_get(self, i.into())?)
        }
        fn opt_small<'c>(
            &self,
            i: impl Into<$crate::store::sql::Col<'c>>,
        ) -> $crate::Result<Option<i16>> {
            Ok(sqlx::Row::try_get(self, i.into())?)
        }
        fn int<'c>(&self, i: impl Into<$crate::store::sql::Col<'c>>) -> $crate::Result<i32> {
            Ok(sqlx::Row::try_get(self, i.into())?)
        }
        fn opt_int<'c>(
            &self,
            i: impl Into<$crate::store::sql::Col<'c>>,
        ) -> $crate::Result<Option<i32>> {
            Ok(sqlx::Row::try_get(self, i.into())?)
        }
        fn big<'c>(&self, i: impl Into<$crate::store::sql::Col<'c>>) -> $crate::Result<i64> {
            Ok(sqlx::Row::try_get(self, i.into())?)
        }
        fn flag<'c>(&self, i: impl Into<$crate::store::sql::Col<'c>>) -> $crate::Result<bool> {
            Ok(sqlx::Row::try_get(self, i.into())?)
        }
        fn bytes<'c>(&self, i: impl Into<$crate::store::sql::Col<'c>>) -> $crate::Result<Vec<u8>> {
            Ok(sqlx::Row::try_get(self, i.into())?)
        }
    };
}
pub(crate) use plain_columns;

/// A backend the shared statements run on.
#[async_trait]
pub trait SqlBackend: Send + Sync + 'static {
    /// Its row type.
    type Row: Columns + Send + Sync;

    /// At most one row.
    async fn fetch_optional(&self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<Option<Self::Row>>;

    /// Every row.
    async fn fetch_all(&self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<Vec<Self::Row>>;

    /// Runs a statement; how many rows it changed.
    async fn execute(&self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<u64>;

    /// Runs statements in one transaction, stopping (and rolling back) at the first that changes
    /// no row; `true` when all ran and committed.
    async fn execute_all(&self, steps: &[(Stmt<'_>, &[Arg<'_>])]) -> Result<bool>;

    /// The database server's clock as SQL, where there is one to agree on (PostgreSQL: several
    /// hosts write; SQLite: one file, one clock — bind [`Arg::Now`] instead).
    fn server_now() -> Option<&'static str>;

    /// A predicate: the `payload` column holds every top-level member of the JSON object bound
    /// as `param` (a non-empty object of scalars; an empty search adds no predicate).
    fn payload_contains(param: &str) -> String;

    /// What a `SELECT` appends to lock the rows it reads until the transaction ends:
    /// ` FOR UPDATE` on PostgreSQL; nothing on SQLite, whose transactions hold the write lock
    /// from their start.
    const FOR_UPDATE: &'static str;

    /// The backend's name (`postgres`, `sqlite`).
    const NAME: &'static str;

    /// A transaction of this backend.
    type Tx<'a>: SqlTx<Row = Self::Row> + 'a
    where
        Self: 'a;

    /// Begins a transaction for statements written once and the jobs they cause.
    async fn begin_tx(&self) -> Result<Self::Tx<'_>>;
}

/// A transaction the shared statements run in, which can enqueue jobs with them (the store's
/// transactional enqueue: [`super::PgTransaction`], [`super::SqliteTransaction`]). Dropped
/// without [`SqlTx::commit`], it rolls back.
#[async_trait]
pub trait SqlTx: Send {
    /// Its row type.
    type Row: Columns + Send + Sync;

    /// At most one row.
    async fn fetch_optional(
        &mut self,
        stmt: Stmt<'_>,
        args: &[Arg<'_>],
    ) -> Result<Option<Self::Row>>;

    /// Every row.
    async fn fetch_all(&mut self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<Vec<Self::Row>>;

    /// Runs a statement; how many rows it changed.
    async fn execute(&mut self, stmt: Stmt<'_>, args: &[Arg<'_>]) -> Result<u64>;

    /// Inserts jobs that commit with the transaction.
    async fn enqueue_jobs(&mut self, jobs: Vec<NewJob>) -> Result<Vec<Inserted>>;

    /// Commits; the jobs created.
    async fn commit_tx(self) -> Result<Vec<Job>>;
}

/// The credential operations whose SQL differs between the backends.
#[async_trait]
pub trait AuthDialect: SqlBackend {
    /// Credential changes made by any process on this store.
    fn changes(&self) -> tokio::sync::broadcast::Receiver<AuthChange>;

    /// How long a cached credential may be trusted without a change notice.
    fn cache_ttl(&self) -> Duration;

    /// Tells every process of the store, once `tx` commits, that the key with `prefix` was
    /// revoked (PostgreSQL: `NOTIFY` in the transaction; SQLite: nothing, one process).
    async fn notify_revoked(&self, tx: &mut Self::Tx<'_>, prefix: &str) -> Result<()>;

    /// Tells this process's credential caches that the key with `prefix` was revoked.
    fn announce_revoked(&self, prefix: String);
}

/// The scheduler operations whose SQL differs between the backends (locks, clocks, leases).
#[async_trait]
pub trait ScheduleDialect: SqlBackend {
    /// See [`super::SchedulerStore::fire_schedule`].
    async fn fire(&self, lease: &Lease, fire: ScheduleFire) -> Result<FireResult>;

    /// See [`super::SchedulerStore::acquire_lease`].
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>>;

    /// See [`super::SchedulerStore::release_lease`].
    async fn give_up(&self, lease: &Lease) -> Result<()>;

    /// See [`super::SchedulerStore::prune_finished`].
    async fn prune(&self, state: JobState, before: DateTime<Utc>, limit: i64) -> Result<u64>;
}
