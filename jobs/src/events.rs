//! The audit and analytics event streams: CloudEvents 1.0 (`docs/events.md`).
//!
//! What happened is recorded as an outbox [`Fact`] in the same transaction as the change itself
//! (the store's triggers record every job state transition). The relay turns each fact into the
//! events it stands for ([`events_of`]): the audit event, always, and the analytics events that
//! follow from it (a submission, a finished job). An analytics event's id is derived from its
//! fact's, so publishing a fact twice publishes the same ids twice, which consumers drop.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use crate::JobState;

/// The CloudEvents version the events follow.
pub const SPEC_VERSION: &str = "1.0";
/// Every event's `datacontenttype`.
pub const DATA_CONTENT_TYPE: &str = "application/json";
/// Every event's `source`.
pub const SOURCE: &str = "/pysaas";

/// The two streams, each a Kafka topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Who did what, when: every job transition, admin, auth, billing and profile action.
    Audit,
    /// Numbers for the dashboards: submissions, finished jobs, domain metrics.
    Analytics,
}

impl Stream {
    /// Both streams.
    pub const ALL: [Stream; 2] = [Stream::Audit, Stream::Analytics];

    /// The stream's topic name, before any deployment prefix.
    pub fn topic(self) -> &'static str {
        match self {
            Stream::Audit => "pysaas.audit.v1",
            Stream::Analytics => "pysaas.analytics.v1",
        }
    }
}

/// One event, in the CloudEvents structured-mode JSON form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always [`SPEC_VERSION`].
    pub specversion: Cow<'static, str>,
    /// Unique per event; a consumer that sees an id again drops it.
    pub id: Uuid,
    /// Always [`SOURCE`].
    pub source: Cow<'static, str>,
    /// What happened, e.g. `pysaas.job.succeeded` ([`catalog`]).
    #[serde(rename = "type")]
    pub event_type: String,
    /// What it happened to, e.g. `jobs/<id>`.
    pub subject: String,
    /// When it happened (the recording transaction's time).
    pub time: DateTime<Utc>,
    /// Always [`DATA_CONTENT_TYPE`].
    pub datacontenttype: Cow<'static, str>,
    /// The tenant (extension attribute; also the Kafka key, so a tenant's events stay in order).
    pub tenantid: String,
    /// The W3C trace context of the request that caused it, when there was one (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The event's data, of the type's schema.
    pub data: Data,
}

/// A fact's or an event's data: its JSON text as written, parsed only by whoever needs its
/// members. A publisher passes it on as the message's value, the audit log stores it as it came.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Data(Box<RawValue>);

impl Data {
    /// `value` as JSON.
    pub fn new<T: Serialize + ?Sized>(value: &T) -> Result<Data, EventError> {
        serde_json::value::to_raw_value(value)
            .map(Data)
            .map_err(|e| EventError::Invalid(e.to_string()))
    }

    /// JSON text, checked.
    pub fn from_text(text: String) -> Result<Data, EventError> {
        RawValue::from_string(text)
            .map(Data)
            .map_err(|e| EventError::Invalid(e.to_string()))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The JSON text, as serde_json's raw value.
    pub fn as_raw(&self) -> &RawValue {
        &self.0
    }

    /// The data as `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The data as a JSON value.
    pub fn to_value(&self) -> Value {
        self.parse().unwrap_or(Value::Null)
    }
}

impl From<Box<RawValue>> for Data {
    fn from(raw: Box<RawValue>) -> Self {
        Data(raw)
    }
}

impl From<&Value> for Data {
    fn from(value: &Value) -> Self {
        // A `Value` always serializes (its keys are strings).
        Data::new(value).unwrap_or_else(|_| Data(RawValue::NULL.to_owned()))
    }
}

impl From<Value> for Data {
    fn from(value: Value) -> Self {
        Data::from(&value)
    }
}

/// Equal as JSON values (the same document may be written with other spacing or key order).
impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str() || self.to_value() == other.to_value()
    }
}

impl PartialEq<Value> for Data {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CloudEvent {
    /// The Kafka protocol binding's binary-mode headers (`ce_*` and `content-type`); the value
    /// is then [`CloudEvent::data`] alone.
    pub fn binary_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(9);
        self.each_binary_header(|key, value| headers.push((key, value.to_owned())));
        headers
    }

    /// [`CloudEvent::binary_headers`] one by one, borrowed (no copies: a publisher hands them
    /// straight to its client).
    pub fn each_binary_header(&self, mut header: impl FnMut(&'static str, &str)) {
        let mut id = Uuid::encode_buffer();
        let time = self
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        header("ce_specversion", &self.specversion);
        header("ce_id", self.id.hyphenated().encode_lower(&mut id));
        header("ce_source", &self.source);
        header("ce_type", &self.event_type);
        header("ce_subject", &self.subject);
        header("ce_time", &time);
        header("ce_tenantid", &self.tenantid);
        header("content-type", &self.datacontenttype);
        if let Some(tp) = &self.traceparent {
            header("ce_traceparent", tp);
        }
    }

    /// Reads an event back from binary-mode headers and value.
    pub fn from_binary(
        headers: &[(String, Vec<u8>)],
        value: &[u8],
    ) -> Result<CloudEvent, EventError> {
        let get = |name: &str| -> Result<String, EventError> {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .ok_or_else(|| EventError::Missing(name.to_owned()))
        };
        let time = get("ce_time")?;
        Ok(CloudEvent {
            specversion: get("ce_specversion")?.into(),
            id: Uuid::parse_str(&get("ce_id")?).map_err(|e| EventError::Invalid(e.to_string()))?,
            source: get("ce_source")?.into(),
            event_type: get("ce_type")?,
            subject: get("ce_subject")?,
            time: DateTime::parse_from_rfc3339(&time)
                .map_err(|e| EventError::Invalid(e.to_string()))?
                .with_timezone(&Utc),
            datacontenttype: get("content-type")?.into(),
            tenantid: get("ce_tenantid")?,
            traceparent: get("ce_traceparent").ok(),
            data: Data::from_text(
                String::from_utf8(value.to_vec())
                    .map_err(|e| EventError::Invalid(e.to_string()))?,
            )?,
        })
    }
}

/// An event that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A required attribute is missing.
    #[error("event attribute {0} is missing")]
    Missing(String),
    /// An attribute or the data does not parse, or does not fit its type's schema.
    #[error("event is invalid: {0}")]
    Invalid(String),
}

/// What the outbox holds: one fact, recorded with the change it describes.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    /// The audit event's id.
    pub id: Uuid,
    /// The tenant.
    pub tenant_id: String,
    /// The audit event's type.
    pub event_type: String,
    /// The audit event's subject.
    pub subject: String,
    /// When it was recorded.
    pub time: DateTime<Utc>,
    /// The audit event's data.
    pub data: Data,
    /// The trace context, when there was one.
    pub traceparent: Option<String>,
}

/// A job moved from one state to another (`pysaas.job.<state>`). No payload, result or error
/// text: those can hold personal data, and the job's own record keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobTransition {
    /// The job.
    pub job_id: Uuid,
    /// Its kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// The state it is now in.
    pub state: JobState,
    /// The state it left; absent when it was submitted, or re-queued by a retry of a finished job.
    pub from: Option<JobState>,
    /// Attempts started so far.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// The worker that holds or held it, when one has.
    pub worker_id: Option<String>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When it is due.
    pub run_at: DateTime<Utc>,
    /// When its latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished, once it has.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job transition as the store records it: [`JobTransition`]'s members in order, unnamed
/// (half the bytes, and cheaper for the recording statement to build).
#[derive(Debug, Deserialize)]
pub struct RecordedTransition(
    Uuid,
    String,
    String,
    JobState,
    Option<JobState>,
    i32,
    i32,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

impl From<RecordedTransition> for JobTransition {
    fn from(r: RecordedTransition) -> Self {
        JobTransition {
            job_id: r.0,
            kind: r.1,
            queue: r.2,
            state: r.3,
            from: r.4,
            attempt: r.5,
            max_attempts: r.6,
            worker_id: r.7,
            created_at: r.8,
            run_at: r.9,
            started_at: r.10,
            finished_at: r.11,
        }
    }
}

impl JobTransition {
    /// Reads a recorded transition: positional ([`RecordedTransition`]), or an object with its
    /// members named (as recorded before).
    pub fn from_recorded(data: &Data) -> Result<JobTransition, serde_json::Error> {
        if data.as_str().trim_start().starts_with('[') {
            data.parse::<RecordedTransition>().map(JobTransition::from)
        } else {
            data.parse()
        }
    }
}

/// A job was submitted, or a finished one retried by hand, which submits it again
/// (`pysaas.analytics.job_submitted`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSubmitted {
    /// The job.
    pub job_id: Uuid,
    /// Its kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// Whether it waits for a later time first.
    pub scheduled: bool,
}

/// A job finished: succeeded, died or was cancelled (`pysaas.analytics.job_finished`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobFinished {
    /// The job.
    pub job_id: Uuid,
    /// Its kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// `succeeded`, `dead` or `cancelled`.
    pub outcome: JobState,
    /// Attempts it took.
    pub attempts: i32,
    /// How long its last attempt ran, when it ran at all.
    pub duration_ms: Option<i64>,
    /// From submission to finish.
    pub total_ms: i64,
}

/// The prefix of every job transition's type.
pub const JOB_TYPE_PREFIX: &str = "pysaas.job.";
/// The analytics event of a submission.
pub const JOB_SUBMITTED: &str = "pysaas.analytics.job_submitted";
/// The analytics event of a finished job.
pub const JOB_FINISHED: &str = "pysaas.analytics.job_finished";

/// A queue was paused.
pub const QUEUE_PAUSED: &str = "pysaas.queue.paused";
/// A queue was resumed.
pub const QUEUE_RESUMED: &str = "pysaas.queue.resumed";

/// An operator paused or resumed a queue (`pysaas.queue.paused`, `pysaas.queue.resumed`; the
/// subject is `queues/<name>`, the tenant the operator's, `default`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueAction {
    /// The queue.
    pub queue: String,
    /// Who did it: the credential's label (`user:<id>`, `key:<prefix>`), when known.
    pub by: Option<String>,
}

/// A user signed in (`pysaas.auth.login_succeeded`; subject `users/<id>`, the tenant the
/// session is for).
pub const LOGIN_SUCCEEDED: &str = "pysaas.auth.login_succeeded";
/// A sign-in failed on a wrong password (`pysaas.auth.login_failed`; once per tenant the user
/// belongs to).
pub const LOGIN_FAILED: &str = "pysaas.auth.login_failed";
/// A used refresh token came back (`pysaas.auth.refresh_reuse_detected`): its whole family was
/// revoked.
pub const REFRESH_REUSE: &str = "pysaas.auth.refresh_reuse_detected";
/// An API key was created (`pysaas.auth.api_key_created`; subject `api-keys/<id>`).
pub const API_KEY_CREATED: &str = "pysaas.auth.api_key_created";
/// An API key was revoked (`pysaas.auth.api_key_revoked`).
pub const API_KEY_REVOKED: &str = "pysaas.auth.api_key_revoked";
/// A member was added or their role changed (`pysaas.auth.member_role_changed`).
pub const MEMBER_ROLE_CHANGED: &str = "pysaas.auth.member_role_changed";
/// A member was removed (`pysaas.auth.member_removed`).
pub const MEMBER_REMOVED: &str = "pysaas.auth.member_removed";

/// A sign-in (`pysaas.auth.login_succeeded`, `pysaas.auth.login_failed`). Ids only: no email,
/// address or user agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginEvent {
    /// The user.
    pub user_id: Uuid,
    /// Failed sign-ins in a row so far (0 after a success).
    pub failed_logins: i32,
}

/// A refresh token was presented again after use (`pysaas.auth.refresh_reuse_detected`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshReuse {
    /// The user whose token it was.
    pub user_id: Uuid,
    /// The token family revoked with it.
    pub family_id: Uuid,
}

/// An API key was created or revoked (`pysaas.auth.api_key_created`,
/// `pysaas.auth.api_key_revoked`). Never the secret; not its name either (free text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEvent {
    /// The key.
    pub key_id: Uuid,
    /// Its scopes, when created.
    pub scopes: Option<Vec<String>>,
    /// Who did it (`user <id>`, `key <prefix>`), when known.
    pub by: Option<String>,
}

/// A membership changed (`pysaas.auth.member_role_changed`, `pysaas.auth.member_removed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberEvent {
    /// The member.
    pub user_id: Uuid,
    /// Their role now (none once removed).
    pub role: Option<String>,
    /// Their role before (none when they were not a member).
    pub previous_role: Option<String>,
    /// Who did it, when known.
    pub by: Option<String>,
}

/// An invoice was issued: numbered and owed (`pysaas.billing.invoice_issued`; subject
/// `invoices/<id>`).
pub const INVOICE_ISSUED: &str = "pysaas.billing.invoice_issued";
/// An invoice was paid (`pysaas.billing.invoice_paid`).
pub const INVOICE_PAID: &str = "pysaas.billing.invoice_paid";
/// An open invoice was voided by an operator (`pysaas.billing.invoice_voided`).
pub const INVOICE_VOIDED: &str = "pysaas.billing.invoice_voided";
/// Dunning gave up on an invoice (`pysaas.billing.invoice_uncollectible`).
pub const INVOICE_UNCOLLECTIBLE: &str = "pysaas.billing.invoice_uncollectible";
/// A charge of an invoice was attempted and answered (`pysaas.billing.payment_attempted`;
/// subject `invoices/<id>`).
pub const PAYMENT_ATTEMPTED: &str = "pysaas.billing.payment_attempted";
/// Revenue was recognised: an invoice with something to pay was paid
/// (`pysaas.analytics.revenue_recognised`, derived from `pysaas.billing.invoice_paid`).
pub const REVENUE_RECOGNISED: &str = "pysaas.analytics.revenue_recognised";

/// An invoice changed state (`pysaas.billing.invoice_*`). Amounts in integer minor units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceEvent {
    /// The invoice.
    pub invoice_id: Uuid,
    /// Its number, gap-free per tenant.
    pub number: i64,
    /// The subscription it bills.
    pub subscription_id: Uuid,
    /// ISO 4217 code.
    pub currency: String,
    /// What is owed, in minor units.
    pub total_minor: i64,
    /// The period it bills.
    pub period_start: DateTime<Utc>,
    /// The period's end.
    pub period_end: DateTime<Utc>,
    /// Who did it, for an operator's action.
    pub by: Option<String>,
}

/// A charge attempt's answer (`pysaas.billing.payment_attempted`). No card details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentAttempted {
    /// The payment (one per attempt).
    pub payment_id: Uuid,
    /// The invoice.
    pub invoice_id: Uuid,
    /// The attempt's number for this invoice.
    pub attempt: i32,
    /// Minor units asked for.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// `succeeded` or `declined`.
    pub outcome: String,
    /// The provider's decline code, when declined.
    pub code: Option<String>,
}

/// Revenue recognised on payment (`pysaas.analytics.revenue_recognised`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevenueRecognised {
    /// The invoice paid.
    pub invoice_id: Uuid,
    /// ISO 4217 code.
    pub currency: String,
    /// Minor units.
    pub amount_minor: i64,
}

/// A user changed their profile or preferences (`pysaas.profile.updated`; subject
/// `profiles/<item>`).
pub const PROFILE_UPDATED: &str = "pysaas.profile.updated";
/// A data access request's document was built (`pysaas.profile.exported`; subject
/// `exports/<id>`).
pub const PROFILE_EXPORTED: &str = "pysaas.profile.exported";
/// A user's data was erased (`pysaas.profile.erased`; subject `erasures/<id>`).
pub const PROFILE_ERASED: &str = "pysaas.profile.erased";

/// A profile event (`pysaas.profile.*`). No personal data: not the user's id, email or any
/// field's value; the request's own id, the item's name, counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileEvent {
    /// The item written (`profile`, `preferences`), for an update.
    pub item: Option<String>,
    /// Its version after the write, for an update.
    pub version: Option<i64>,
    /// The export or erasure request.
    pub request_id: Option<Uuid>,
    /// What an erasure removed, by store and table.
    pub counts: Option<std::collections::BTreeMap<String, u64>>,
}

/// A schedule was created (`pysaas.schedule.created`; subject `schedules/<name>`).
pub const SCHEDULE_CREATED: &str = "pysaas.schedule.created";
/// A schedule was changed: its definition, or paused or resumed (`pysaas.schedule.updated`).
pub const SCHEDULE_UPDATED: &str = "pysaas.schedule.updated";
/// A schedule was deleted (`pysaas.schedule.deleted`).
pub const SCHEDULE_DELETED: &str = "pysaas.schedule.deleted";
/// An operator acted on many jobs at once (`pysaas.jobs.bulk_action`; subject `jobs`).
pub const BULK_ACTION: &str = "pysaas.jobs.bulk_action";

/// A schedule as it now is (`pysaas.schedule.*`; the payload left out: it can hold anything).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEvent {
    /// Its name.
    pub name: String,
    /// The kind it fires (none once deleted).
    pub kind: Option<String>,
    /// Its cron expression.
    pub cron: Option<String>,
    /// Its time zone.
    pub timezone: Option<String>,
    /// Whether it is paused.
    pub paused: Option<bool>,
    /// `config` or `api`.
    pub source: Option<String>,
}

/// A bulk action on jobs (`pysaas.jobs.bulk_action`); each job it moved has its own
/// transition event besides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkAction {
    /// `retry`, `cancel` or `delete`.
    pub action: String,
    /// Jobs that matched.
    pub matched: u64,
    /// Jobs it changed.
    pub changed: u64,
    /// The filter's state, kind and queue, when given (a payload filter is not repeated).
    pub state: Option<String>,
    /// The filter's kind.
    pub kind: Option<String>,
    /// The filter's queue.
    pub queue: Option<String>,
    /// How many ids the request named, when it named them.
    pub ids: Option<u64>,
    /// Who did it.
    pub by: Option<String>,
}

/// One event type of the catalogue.
#[derive(Debug, Clone)]
pub struct EventType {
    /// The `type` attribute.
    pub name: String,
    /// The stream it is published on.
    pub stream: Stream,
    /// What it means.
    pub description: &'static str,
    /// The JSON Schema of its data.
    pub schema: Value,
}

fn schema_of<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

/// Every event type, with the JSON Schema of its data (`docs/events.md` is made from it).
pub fn catalog() -> Vec<EventType> {
    let mut out: Vec<EventType> = JobState::ALL
        .iter()
        .map(|state| EventType {
            name: format!("{JOB_TYPE_PREFIX}{state}"),
            stream: Stream::Audit,
            description: transition_description(*state),
            schema: schema_of::<JobTransition>(),
        })
        .collect();
    out.push(EventType {
        name: JOB_SUBMITTED.to_owned(),
        stream: Stream::Analytics,
        description: "A job was submitted, or a finished one retried by hand (derived from a \
                      `queued` or `scheduled` with no `from`).",
        schema: schema_of::<JobSubmitted>(),
    });
    out.push(EventType {
        name: QUEUE_PAUSED.to_owned(),
        stream: Stream::Audit,
        description: "An operator paused a queue: no worker claims from it until it is resumed.",
        schema: schema_of::<QueueAction>(),
    });
    out.push(EventType {
        name: QUEUE_RESUMED.to_owned(),
        stream: Stream::Audit,
        description: "An operator resumed a paused queue.",
        schema: schema_of::<QueueAction>(),
    });
    let audit = |name: &str, description: &'static str, schema: Value| EventType {
        name: name.to_owned(),
        stream: Stream::Audit,
        description,
        schema,
    };
    out.extend([
        audit(
            LOGIN_SUCCEEDED,
            "A user signed in with their password.",
            schema_of::<LoginEvent>(),
        ),
        audit(
            LOGIN_FAILED,
            "A sign-in failed on a wrong password (recorded in each of the user's tenants, \
             with the failures in a row so far).",
            schema_of::<LoginEvent>(),
        ),
        audit(
            REFRESH_REUSE,
            "A refresh token was used twice: its family of tokens was revoked.",
            schema_of::<RefreshReuse>(),
        ),
        audit(
            API_KEY_CREATED,
            "An API key was created.",
            schema_of::<ApiKeyEvent>(),
        ),
        audit(
            API_KEY_REVOKED,
            "An API key was revoked.",
            schema_of::<ApiKeyEvent>(),
        ),
        audit(
            MEMBER_ROLE_CHANGED,
            "A user was made a member, or a member's role changed.",
            schema_of::<MemberEvent>(),
        ),
        audit(
            MEMBER_REMOVED,
            "A member was removed from the tenant.",
            schema_of::<MemberEvent>(),
        ),
        audit(
            INVOICE_ISSUED,
            "An invoice was numbered and issued (one with nothing to pay is paid at once).",
            schema_of::<InvoiceEvent>(),
        ),
        audit(
            INVOICE_PAID,
            "An invoice was paid.",
            schema_of::<InvoiceEvent>(),
        ),
        audit(
            INVOICE_VOIDED,
            "An operator voided an open invoice: nothing is owed or charged any more.",
            schema_of::<InvoiceEvent>(),
        ),
        audit(
            INVOICE_UNCOLLECTIBLE,
            "Dunning gave up on an invoice; its subscription was cancelled.",
            schema_of::<InvoiceEvent>(),
        ),
        audit(
            SCHEDULE_CREATED,
            "A schedule was created.",
            schema_of::<ScheduleEvent>(),
        ),
        audit(
            SCHEDULE_UPDATED,
            "A schedule was changed, paused or resumed.",
            schema_of::<ScheduleEvent>(),
        ),
        audit(
            SCHEDULE_DELETED,
            "A schedule was deleted.",
            schema_of::<ScheduleEvent>(),
        ),
        audit(
            BULK_ACTION,
            "Jobs were retried, cancelled or deleted in bulk (each move also has its own event; \
             recorded once the action is done).",
            schema_of::<BulkAction>(),
        ),
        audit(
            PROFILE_UPDATED,
            "A user changed their profile or preferences (the item and its new version only).",
            schema_of::<ProfileEvent>(),
        ),
        audit(
            PROFILE_EXPORTED,
            "A data access request's document was built, ready to download.",
            schema_of::<ProfileEvent>(),
        ),
        audit(
            PROFILE_ERASED,
            "A user's data was erased across every store (what was removed, counted).",
            schema_of::<ProfileEvent>(),
        ),
        audit(
            PAYMENT_ATTEMPTED,
            "A charge of an invoice was answered: succeeded or declined.",
            schema_of::<PaymentAttempted>(),
        ),
    ]);
    out.push(EventType {
        name: REVENUE_RECOGNISED.to_owned(),
        stream: Stream::Analytics,
        description: "Revenue was recognised: an invoice with something to pay was paid \
                      (derived from `pysaas.billing.invoice_paid`).",
        schema: schema_of::<RevenueRecognised>(),
    });
    out.push(EventType {
        name: JOB_FINISHED.to_owned(),
        stream: Stream::Analytics,
        description: "A job finished: succeeded, dead or cancelled, with its duration.",
        schema: schema_of::<JobFinished>(),
    });
    out
}

fn transition_description(state: JobState) -> &'static str {
    match state {
        JobState::Scheduled => "A job was submitted to run later.",
        JobState::Queued => {
            "A job is ready to run: submitted, due, retried, or released by its worker."
        }
        JobState::Running => {
            "A worker claimed a job and started an attempt. Published when the attempt ends, just \
             before the event that ends it; `time` is the attempt's start."
        }
        JobState::Succeeded => "A job finished successfully.",
        JobState::Retrying => "An attempt failed; the job waits for its backoff.",
        JobState::Dead => "A job failed for good.",
        JobState::Cancelled => "A job was cancelled.",
    }
}

/// The published catalogue as one JSON document (`pysaas events schemas`): per type its stream,
/// topic, description and the JSON Schema of its data; consumers validate against it.
pub fn catalog_document() -> Value {
    let types: serde_json::Map<String, Value> = catalog()
        .into_iter()
        .map(|t| {
            (
                t.name,
                serde_json::json!({
                    "stream": t.stream,
                    "topic": t.stream.topic(),
                    "description": t.description,
                    "schema": t.schema,
                }),
            )
        })
        .collect();
    serde_json::json!({
        "specversion": SPEC_VERSION,
        "source": SOURCE,
        "datacontenttype": DATA_CONTENT_TYPE,
        "types": types,
    })
}

/// `docs/events.md`'s catalogue section, generated from the types (a test checks the file).
pub fn catalog_markdown() -> String {
    let mut out = String::from(
        "<!-- Generated by `pysaas events docs` from the Rust types; a test checks it. -->\n\n",
    );
    for stream in Stream::ALL {
        out.push_str(&format!("### Topic `{}`\n\n", stream.topic()));
        out.push_str("| type | meaning |\n|---|---|\n");
        for t in catalog().iter().filter(|t| t.stream == stream) {
            out.push_str(&format!("| `{}` | {} |\n", t.name, t.description));
        }
        out.push('\n');
    }
    out.push_str("### Schemas of the data\n\n");
    let mut seen: Vec<Value> = Vec::new();
    for t in catalog() {
        if seen.contains(&t.schema) {
            continue;
        }
        let users: Vec<String> = catalog()
            .into_iter()
            .filter(|u| u.schema == t.schema)
            .map(|u| format!("`{}`", u.name))
            .collect();
        let title = t.schema["title"].as_str().unwrap_or("data").to_owned();
        let pretty = serde_json::to_string_pretty(&t.schema).unwrap_or_default();
        out.push_str(&format!(
            "#### {title}\n\nThe data of {}.\n\n```json\n{pretty}\n```\n\n",
            users.join(", ")
        ));
        seen.push(t.schema);
    }
    out
}

/// Where the generated section of `docs/events.md` begins.
pub const CATALOG_BEGIN: &str = "<!-- catalog:begin -->";
/// Where it ends.
pub const CATALOG_END: &str = "<!-- catalog:end -->";

/// `text` with the part between [`CATALOG_BEGIN`] and [`CATALOG_END`] replaced by
/// [`catalog_markdown`]; `None` without both markers.
pub fn replace_catalog_section(text: &str) -> Option<String> {
    let start = text.find(CATALOG_BEGIN)? + CATALOG_BEGIN.len();
    let end = start + text[start..].find(CATALOG_END)?;
    Some(format!(
        "{}\n{}{}",
        &text[..start],
        catalog_markdown(),
        &text[end..]
    ))
}

/// The schema of a type's data, when the type is in the catalogue.
pub fn schema_for_type(event_type: &str) -> Option<Value> {
    catalog()
        .into_iter()
        .find(|t| t.name == event_type)
        .map(|t| t.schema)
}

fn derived_id(id: Uuid, salt: u8) -> Uuid {
    let mut bytes = *id.as_bytes();
    bytes[0] ^= 0x5a;
    bytes[15] ^= salt;
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The events `fact` stands for, on their streams: its audit event (after the start of the
/// attempt it ends, for a finished job's outcome), then the analytics events that follow from it. A job transition whose data does not fit its schema is an error (the
/// recording triggers and this reader disagree), never published half-read.
pub fn events_of(fact: &Fact) -> Result<Vec<(Stream, CloudEvent)>, EventError> {
    into_events(fact.clone())
}

/// [`events_of`], taking the fact: its data goes on as written (an application fact's becomes
/// its audit event's), and a job transition's events are written from the typed transition, with
/// no JSON tree in between.
pub fn into_events(fact: Fact) -> Result<Vec<(Stream, CloudEvent)>, EventError> {
    let Fact {
        id,
        tenant_id,
        event_type,
        subject,
        time: recorded,
        data,
        traceparent,
    } = fact;
    let mut out = Vec::with_capacity(3);
    let mut push = |stream: Stream, id: Uuid, event_type: String, data: Data, time| {
        out.push((
            stream,
            CloudEvent {
                specversion: Cow::Borrowed(SPEC_VERSION),
                id,
                source: Cow::Borrowed(SOURCE),
                event_type,
                subject: subject.clone(),
                time,
                datacontenttype: Cow::Borrowed(DATA_CONTENT_TYPE),
                tenantid: tenant_id.clone(),
                traceparent: traceparent.clone(),
                data,
            },
        ));
    };
    if let Some(state) = event_type.strip_prefix(JOB_TYPE_PREFIX) {
        let t = JobTransition::from_recorded(&data)
            .map_err(|e| EventError::Invalid(format!("{event_type}: {e}")))?;
        if t.state.as_str() != state {
            return Err(EventError::Invalid(format!(
                "{event_type} carries state {}",
                t.state
            )));
        }
        // A claim records no fact of its own (it is the drain's hottest statement): a finished
        // attempt's start is read from the fact of its end, which holds the attempt's worker,
        // start and number, and comes first. (An attempt that ended otherwise — retrying,
        // re-queued, cancelled — had its start recorded as a fact of its own when it ended.)
        if matches!(t.state, JobState::Succeeded | JobState::Dead)
            && t.from == Some(JobState::Running)
        {
            let started = JobTransition {
                state: JobState::Running,
                from: Some(JobState::Queued),
                finished_at: None,
                ..t.clone()
            };
            push(
                Stream::Audit,
                derived_id(id, 4),
                format!("{JOB_TYPE_PREFIX}running"),
                Data::new(&started)?,
                t.started_at.unwrap_or(recorded),
            );
        }
        // A start is recorded when its attempt ends: its time is the attempt's.
        let time = match t.state {
            JobState::Running => t.started_at.unwrap_or(recorded),
            _ => recorded,
        };
        // Written again from the typed transition, not passed on as recorded: PostgreSQL writes
        // the times in its session's time zone, the event carries them in UTC.
        push(Stream::Audit, id, event_type, Data::new(&t)?, time);
        if t.from.is_none() && matches!(t.state, JobState::Queued | JobState::Scheduled) {
            let s = JobSubmitted {
                job_id: t.job_id,
                kind: t.kind.clone(),
                queue: t.queue.clone(),
                scheduled: t.state == JobState::Scheduled,
            };
            push(
                Stream::Analytics,
                derived_id(id, 1),
                JOB_SUBMITTED.to_owned(),
                Data::new(&s)?,
                recorded,
            );
        }
        if t.state.is_finished() {
            let finished = t.finished_at.unwrap_or(recorded);
            let f = JobFinished {
                job_id: t.job_id,
                kind: t.kind,
                queue: t.queue,
                outcome: t.state,
                attempts: t.attempt,
                duration_ms: t
                    .started_at
                    .filter(|_| t.state != JobState::Cancelled)
                    .map(|s| (finished - s).num_milliseconds().max(0)),
                total_ms: (finished - t.created_at).num_milliseconds().max(0),
            };
            push(
                Stream::Analytics,
                derived_id(id, 2),
                JOB_FINISHED.to_owned(),
                Data::new(&f)?,
                recorded,
            );
        }
    } else {
        let paid = if event_type == INVOICE_PAID {
            Some(
                data.parse::<InvoiceEvent>()
                    .map_err(|e| EventError::Invalid(format!("{event_type}: {e}")))?,
            )
        } else {
            None
        };
        push(Stream::Audit, id, event_type, data, recorded);
        if let Some(paid) = paid.filter(|p| p.total_minor > 0) {
            let r = RevenueRecognised {
                invoice_id: paid.invoice_id,
                currency: paid.currency,
                amount_minor: paid.total_minor,
            };
            push(
                Stream::Analytics,
                derived_id(id, 3),
                REVENUE_RECOGNISED.to_owned(),
                Data::new(&r)?,
                recorded,
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn transition(state: &str, from: Option<&str>, attempt: i32) -> Fact {
        Fact {
            id: Uuid::now_v7(),
            tenant_id: "acme".into(),
            event_type: format!("pysaas.job.{state}"),
            subject: "jobs/x".into(),
            time: "2026-12-02T10:00:05Z".parse().unwrap(),
            data: Data::from(serde_json::json!({
                "job_id": Uuid::nil(), "kind": "system.noop", "queue": "default",
                "state": state, "from": from, "attempt": attempt, "max_attempts": 3,
                "worker_id": null, "created_at": "2026-12-02T10:00:00Z",
                "run_at": "2026-12-02T10:00:00Z", "started_at": "2026-12-02T10:00:04Z",
                "finished_at": "2026-12-02T10:00:05Z",
            })),
            traceparent: None,
        }
    }

    #[test]
    fn the_docs_list_the_catalogue_as_generated() {
        let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events.md");
        let text = std::fs::read_to_string(docs).unwrap();
        assert_eq!(
            replace_catalog_section(&text).as_deref(),
            Some(text.as_str()),
            "docs/events.md is stale: run `pysaas events docs --write docs/events.md`"
        );
    }

    #[test]
    fn a_submission_and_a_finish_add_analytics_events_with_stable_ids() {
        let submitted = transition("queued", None, 0);
        let events = events_of(&submitted).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].1.event_type, JOB_SUBMITTED);
        assert_eq!(events_of(&submitted).unwrap()[1].1.id, events[1].1.id);
        assert_ne!(events[0].1.id, events[1].1.id);

        let resubmitted = transition("queued", None, 1);
        assert_eq!(events_of(&resubmitted).unwrap().len(), 2);
        let requeued = transition("queued", Some("running"), 1);
        assert_eq!(events_of(&requeued).unwrap().len(), 1);

        let done = transition("succeeded", Some("running"), 1);
        let events = events_of(&done).unwrap();
        assert_eq!(events[2].1.event_type, JOB_FINISHED);
        assert_eq!(events[2].1.data.to_value()["duration_ms"], 1000);
        assert_eq!(events[2].1.data.to_value()["total_ms"], 5000);
    }

    #[test]
    fn a_finished_attempt_is_published_with_its_start_first() {
        let done = transition("succeeded", Some("running"), 2);
        let events = events_of(&done).unwrap();
        let types: Vec<&str> = events.iter().map(|(_, e)| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            ["pysaas.job.running", "pysaas.job.succeeded", JOB_FINISHED]
        );
        let (stream, start) = &events[0];
        assert_eq!(*stream, Stream::Audit);
        assert_eq!(start.time.to_rfc3339(), "2026-12-02T10:00:04+00:00");
        assert_eq!(start.data.to_value()["state"], "running");
        assert_eq!(start.data.to_value()["from"], "queued");
        assert_eq!(start.data.to_value()["attempt"], 2);
        assert_eq!(start.data.to_value()["finished_at"], Value::Null);
        assert_eq!(events_of(&done).unwrap()[0].1.id, start.id, "a stable id");
        assert!(events.iter().skip(1).all(|(_, e)| e.id != start.id));
        let typed: JobTransition = start.data.parse().unwrap();
        assert_eq!(typed.worker_id, None);
        // A cancel holds no attempt's start (one that was running had it recorded on its own);
        // neither does a move out of `running` within the hot table.
        for (state, from) in [("cancelled", None), ("retrying", Some("running"))] {
            let events = events_of(&transition(state, from, 1)).unwrap();
            assert!(events
                .iter()
                .all(|(_, e)| e.event_type != "pysaas.job.running"));
        }
    }

    #[test]
    fn a_positional_record_reads_as_the_named_one() {
        let named = transition("succeeded", Some("running"), 2);
        let mut positional = named.clone();
        positional.data = Data::from(serde_json::json!([
            Uuid::nil(),
            "system.noop",
            "default",
            "succeeded",
            "running",
            2,
            3,
            null,
            "2026-12-02T10:00:00+00:00",
            "2026-12-02T10:00:00+00:00",
            "2026-12-02T10:00:04+00:00",
            "2026-12-02T10:00:05+00:00"
        ]));
        assert_eq!(events_of(&positional).unwrap(), events_of(&named).unwrap());
        // One member too many or too few: the store and this reader disagree.
        for data in [
            serde_json::json!([
                Uuid::nil(),
                "k",
                "q",
                "succeeded",
                "running",
                2,
                3,
                null,
                "2026-12-02T10:00:00Z",
                "2026-12-02T10:00:00Z",
                null,
                null,
                1
            ]),
            serde_json::json!([Uuid::nil(), "k", "q", "succeeded", "running", 2, 3, null]),
        ] {
            positional.data = Data::from(data);
            assert!(events_of(&positional).is_err());
        }
    }

    #[test]
    fn a_transition_that_does_not_fit_its_schema_is_refused() {
        let mut fact = transition("queued", None, 0);
        let mut data = fact.data.to_value();
        data["surprise"] = serde_json::json!(1);
        fact.data = Data::from(data);
        assert!(events_of(&fact).is_err());
        let mut fact = transition("queued", None, 0);
        fact.event_type = "pysaas.job.running".into();
        assert!(events_of(&fact).is_err());
    }

    #[test]
    fn binary_mode_round_trips() {
        let (_, event) = events_of(&transition("running", Some("queued"), 1))
            .unwrap()
            .remove(0);
        let headers: Vec<(String, Vec<u8>)> = event
            .binary_headers()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_bytes()))
            .collect();
        let value = event.data.as_str().as_bytes().to_vec();
        assert_eq!(CloudEvent::from_binary(&headers, &value).unwrap(), event);
    }

    #[test]
    fn every_type_has_a_schema() {
        let catalog = catalog();
        // A transition per state; three analytics types; the queue pause and resume, seven
        // auth types, five billing, three schedule, the bulk action and three profile types.
        assert_eq!(
            catalog.len(),
            JobState::ALL.len() + 3 + 2 + 7 + 5 + 3 + 1 + 3
        );
        assert!(catalog.iter().all(|t| t.schema.is_object()));
        let names: std::collections::HashSet<_> = catalog.iter().map(|t| &t.name).collect();
        assert_eq!(names.len(), catalog.len(), "each type once");
    }
}
