//! PySaaS transports: the durable job store and the dispatchers that hand job ids to workers.
//!
//! The store ([`JobStore`]) is the source of truth: a job exists once its row is committed, and
//! every state change is a conditional update, so a duplicate delivery can never run a finished
//! job again. Dispatchers ([`Dispatcher`]) only make workers find work fast.
//!
//! Backends: [`store::PgStore`] (PostgreSQL, production) and [`store::SqliteStore`] (embedded
//! default). Open one from a URL with [`store::connect`].

// A build with only some backends leaves helpers that only the others use.
#![cfg_attr(
    not(all(
        feature = "postgres",
        feature = "sqlite",
        feature = "amqp",
        feature = "redis"
    )),
    allow(dead_code, unused_macros)
)]

pub mod dispatch;
mod error;
pub mod gauges;
pub mod store;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;

pub use dispatch::{
    Ack, ConsumerSpec, Delivery, Dispatcher, JobConsumer, StoreDispatcher, STORE_POLL_INTERVAL,
};
pub use error::{Result, StoreError};
pub use store::{
    ApiKeyRow, AuthChange, AuthStore, BillingStore, Completion, Deferral, EmailSender, EventOutbox,
    FireResult, InAppNotification, InboxFilter, InboxStore, Inserted, JobFilter, JobReads,
    JobStats, JobStore, Lease, MembershipRow, MinuteStats, NotificationStore, OutboxBacklog,
    OutboxEntry, OutboxPosition, PausedQueue, PrivacyStore, ProfileItem, ProfileStore, QueuePauses,
    QueueStats, RateLimits, RefreshRow, RefreshUse, ScheduleFire, SchedulerStore, StoreConfig,
    TenantRow, Transition, UserRow, WebhookStore, WorkerInfo, WorkerRegistry, LIST_LIMIT_MAX,
};
