//! Webhook endpoints and their delivery log (migration 0019 on PostgreSQL, 0018 on SQLite).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::Job;
use uuid::Uuid;

use crate::Result;

/// Where a tenant wants its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Id.
    pub id: Uuid,
    /// Owner.
    pub tenant_id: String,
    /// `https://…`.
    pub url: String,
    /// The event types it takes (`*`: every type).
    pub event_types: Vec<String>,
    /// Signs its deliveries.
    pub secret: String,
    /// Disabled endpoints get no deliveries.
    pub enabled: bool,
    /// Failed attempts in a row (a success resets it).
    pub consecutive_failures: i32,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    /// Whether it takes events of `event_type`.
    pub fn takes(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|t| t == "*" || t == event_type)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not yet answered with a 2xx (attempts may have failed; more follow).
    Pending,
    /// Answered 2xx.
    Succeeded,
    /// Given up on.
    Failed,
}

impl DeliveryStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// One event for one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Id.
    pub id: Uuid,
    /// Owner.
    pub tenant_id: String,
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// The event (the same for every endpoint and every replay).
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// The JSON body sent.
    pub payload: serde_json::Value,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: i32,
    /// The last attempt's HTTP status.
    pub response_code: Option<i32>,
    /// The last attempt's time to the answer.
    pub latency_ms: Option<i32>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// The delivery this one replays.
    pub replay_of: Option<Uuid>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// The last attempt.
    pub last_attempt_at: Option<DateTime<Utc>>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The HTTP status, if an answer came.
    pub response_code: Option<i32>,
    /// Time to the answer (or the failure).
    pub latency_ms: i32,
    /// Why it failed (none: a 2xx).
    pub error: Option<String>,
    /// No further attempt follows (the job is out of attempts, or the failure is final).
    pub last: bool,
}

/// What recording an attempt did to its endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecorded {
    /// The endpoint as it is now.
    pub endpoint: Endpoint,
    /// This attempt's failure disabled it.
    pub disabled_now: bool,
}

/// Webhook endpoints and deliveries.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Registers an endpoint.
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<()>;

    /// A tenant's endpoints, oldest first.
    async fn list_endpoints(&self, tenant_id: &str) -> Result<Vec<Endpoint>>;

    /// One of a tenant's endpoints.
    async fn get_endpoint(&self, tenant_id: &str, id: Uuid) -> Result<Option<Endpoint>>;

    /// Removes an endpoint and its delivery log; `false` when there was none.
    async fn delete_endpoint(&self, tenant_id: &str, id: Uuid) -> Result<bool>;

    /// Replaces an endpoint's secret.
    async fn rotate_secret(
        &self,
        tenant_id: &str,
        id: Uuid,
        secret: &str,
    ) -> Result<Option<Endpoint>>;

    /// Enables (its failure count reset) or disables an endpoint.
    async fn set_endpoint_enabled(
        &self,
        tenant_id: &str,
        id: Uuid,
        enabled: bool,
        reason: Option<&str>,
    ) -> Result<Option<Endpoint>>;

    /// Fans an event out: a delivery row and a `notification.webhook_delivery` job for each
    /// enabled endpoint of the tenant that takes the type, in one transaction (keyed by event
    /// and endpoint, so a repeated fan-out adds nothing). Returns the jobs created.
    async fn fan_out(
        &self,
        tenant_id: &str,
        event_id: Uuid,
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<Vec<Job>>;

    /// A delivery with its endpoint.
    async fn delivery_target(&self, id: Uuid) -> Result<Option<(Delivery, Endpoint)>>;

    /// Records an attempt on the delivery and its endpoint: a success resets the endpoint's
    /// failure count; a failure adds one, and the `disable_after`-th in a row disables it.
    async fn record_attempt(
        &self,
        delivery_id: Uuid,
        attempt: &Attempt,
        disable_after: i32,
    ) -> Result<Option<AttemptRecorded>>;

    /// An endpoint's deliveries, newest first.
    async fn list_deliveries(
        &self,
        tenant_id: &str,
        endpoint_id: Uuid,
        limit: i64,
    ) -> Result<Vec<Delivery>>;

    /// Sends a delivery again: a new delivery row of the same event and its job. `None` when the
    /// tenant has no such delivery.
    async fn replay_delivery(
        &self,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<(Delivery, Vec<Job>)>>;
}
