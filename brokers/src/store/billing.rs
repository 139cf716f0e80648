//! Billing's tables (migration 0016 on PostgreSQL, 0015 on SQLite): plans, subscriptions,
//! invoices numbered without gaps per tenant, and payment attempts. Every operation that moves
//! money or opens an invoice is one transaction with the jobs it causes. See `docs/domains.md`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::billing::{Cadence, Currency, Interval};
use pysaas_jobs::NewJob;
use uuid::Uuid;

use crate::Result;

macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),*
        }

        impl $name {
            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)*
                    _ => Err(format!("unknown {} `{s}`", stringify!($name))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum! {
    /// Where a subscription stands.
    SubscriptionStatus {
        /// In its free trial: no invoice yet.
        Trialing = "trialing",
        /// Paid up.
        Active = "active",
        /// An invoice's charge was declined; dunning retries it.
        PastDue = "past_due",
        /// Ended (by the tenant, at period end, or after dunning gave up).
        Cancelled = "cancelled",
    }
}

status_enum! {
    /// Where an invoice stands.
    InvoiceStatus {
        /// Being put together (not used by the cycle: invoices open finished).
        Draft = "draft",
        /// Owed; charges are attempted.
        Open = "open",
        /// Settled.
        Paid = "paid",
        /// Cancelled by the operator; nothing is owed.
        Void = "void",
        /// Dunning gave up.
        Uncollectible = "uncollectible",
    }
}

status_enum! {
    /// Where a payment attempt stands.
    PaymentStatus {
        /// Sent to the provider (or about to be) with no answer recorded: a retry reuses its
        /// idempotency key.
        Pending = "pending",
        /// Captured.
        Succeeded = "succeeded",
        /// Declined or refused.
        Failed = "failed",
    }
}

status_enum! {
    /// Why an invoice exists.
    InvoiceReason {
        /// A billing period of the subscription.
        Cycle = "cycle",
        /// The proration of a plan change mid-period.
        PlanChange = "plan_change",
    }
}

/// A plan the operator sells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Chosen by the operator (`pro-monthly`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Price per period in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: Currency,
    /// How often it bills.
    pub cadence: Cadence,
    /// Free days before the first invoice.
    pub trial_days: i32,
    /// Whether new subscriptions may choose it.
    pub active: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A subscription of a tenant to a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Id.
    pub id: Uuid,
    /// Subscriber.
    pub tenant_id: String,
    /// The plan billed.
    pub plan_id: String,
    /// Where it stands.
    pub status: SubscriptionStatus,
    /// The provider's payment method (`pm_…`).
    pub payment_method: String,
    /// Where receipts and payment notices go (none: not sent).
    pub billing_email: Option<String>,
    /// Periods are counted from here (the end of the trial, or the start).
    pub anchor: DateTime<Utc>,
    /// Index of the current period (-1 during the trial).
    pub period: i32,
    /// Current period's start.
    pub current_period_start: DateTime<Utc>,
    /// Current period's end: the next invoice is opened then.
    pub current_period_end: DateTime<Utc>,
    /// End of the trial, if it had one.
    pub trial_end: Option<DateTime<Utc>>,
    /// Ends at the current period's end instead of renewing.
    pub cancel_at_period_end: bool,
    /// Owed to the tenant; taken off the next invoice.
    pub credit_minor: i64,
    /// When it ended.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// An invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    /// Id.
    pub id: Uuid,
    /// Billed tenant.
    pub tenant_id: String,
    /// The tenant's invoice number: 1, 2, 3 … with no gaps.
    pub number: i64,
    /// The subscription billed.
    pub subscription_id: Uuid,
    /// Why it exists.
    pub reason: InvoiceReason,
    /// Where it stands.
    pub status: InvoiceStatus,
    /// ISO 4217 code of every amount on it.
    pub currency: Currency,
    /// Period billed.
    pub period_start: DateTime<Utc>,
    /// End of the period billed.
    pub period_end: DateTime<Utc>,
    /// Sum of the lines.
    pub subtotal_minor: i64,
    /// What is charged (the subtotal, never below zero: a negative one becomes credit).
    pub total_minor: i64,
    /// Declined charges so far.
    pub attempt_count: i32,
    /// When dunning charges again.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Opened.
    pub created_at: DateTime<Utc>,
    /// Settled.
    pub paid_at: Option<DateTime<Utc>>,
}

/// A line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine {
    /// Order on the invoice (0-based).
    pub line_no: i32,
    /// What it is for.
    pub description: String,
    /// Amount in minor units (negative: a credit).
    pub amount_minor: i64,
    /// Period it covers.
    pub period_start: DateTime<Utc>,
    /// End of the period it covers.
    pub period_end: DateTime<Utc>,
}

/// One attempt to charge an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Id.
    pub id: Uuid,
    /// The invoice charged.
    pub invoice_id: Uuid,
    /// Billed tenant.
    pub tenant_id: String,
    /// 1, 2, … per invoice.
    pub attempt: i32,
    /// Amount asked for.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: Currency,
    /// Where it stands.
    pub status: PaymentStatus,
    /// Provider name (`stripe`, `local`).
    pub provider: String,
    /// Sent with every request of this attempt: the provider charges once per key.
    pub idempotency_key: String,
    /// The provider's id for it (`pi_…`).
    pub provider_ref: Option<String>,
    /// The provider's decline or error code.
    pub error_code: Option<String>,
    /// The provider's message.
    pub error_message: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Answered.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A plan to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlan {
    /// Id (`pro-monthly`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Price per period in minor units (not negative).
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: Currency,
    /// How often it bills.
    pub cadence: Cadence,
    /// Free days before the first invoice.
    pub trial_days: i32,
}

/// Why a billing operation was refused (the request's fault, not the store's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingRefusal {
    /// No plan has this id.
    #[error("no plan `{0}`")]
    UnknownPlan(String),
    /// The plan is archived.
    #[error("plan `{0}` is archived and takes no new subscriptions")]
    PlanInactive(String),
    /// The tenant has a live subscription already.
    #[error("this tenant already has a live subscription ({0})")]
    AlreadySubscribed(Uuid),
    /// No live subscription of this tenant has this id.
    #[error("no live subscription {0}")]
    NoSubscription(Uuid),
    /// The subscription is on that plan already.
    #[error("the subscription is on plan `{0}` already")]
    SamePlan(String),
    /// Plans of different currencies or cadences cannot be prorated against each other.
    #[error("plan `{to}` bills {to_terms}, the current plan {from_terms}: change to a plan with the same currency and interval")]
    Incompatible {
        /// The plan asked for.
        to: String,
        /// Its currency and interval.
        to_terms: String,
        /// The current plan's.
        from_terms: String,
    },
}

/// A subscription created, with its first invoice unless it starts with a trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribed {
    /// The subscription.
    pub subscription: Subscription,
    /// The first period's invoice (its charge is enqueued with it).
    pub invoice: Option<Invoice>,
    /// Every job the transaction created (the charge and the caller's).
    pub jobs: Vec<pysaas_jobs::Job>,
}

/// A plan change.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanChanged {
    /// The subscription on its new plan.
    pub subscription: Subscription,
    /// The proration invoice (none during a trial).
    pub invoice: Option<Invoice>,
    /// The jobs created (the proration's charge, when something is owed).
    pub jobs: Vec<pysaas_jobs::Job>,
}

/// What the invoice run did to one subscription.
#[derive(Debug, Clone, PartialEq)]
pub enum Renewal {
    /// Its period has not ended (or another run renewed it first).
    NotDue,
    /// It was set to end at its period's end, and now has.
    Ended(Subscription),
    /// The next period's invoice, opened (and its charge enqueued, unless nothing was owed).
    Invoiced {
        /// The subscription in its new period.
        subscription: Subscription,
        /// The invoice.
        invoice: Invoice,
        /// The jobs created.
        jobs: Vec<pysaas_jobs::Job>,
    },
}

/// The start of a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeStart {
    /// No such invoice.
    Missing,
    /// The invoice is not open (paid, void, uncollectible): nothing to charge.
    Settled(InvoiceStatus),
    /// Charge this attempt (`resumed`: an earlier run sent it and never recorded the answer;
    /// sending it again under the same idempotency key cannot charge twice).
    Attempt {
        /// The payment row, `pending`.
        payment: Box<Payment>,
        /// The subscription's payment method.
        payment_method: String,
        /// Whether the attempt existed before this call.
        resumed: bool,
    },
}

/// The provider's final answer to an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    /// Captured.
    Succeeded {
        /// The provider's id (`pi_…`).
        provider_ref: String,
    },
    /// Declined or refused for good.
    Declined {
        /// The provider's id, if it made one.
        provider_ref: Option<String>,
        /// The decline code (`card_declined`, `insufficient_funds`).
        code: String,
        /// The provider's message.
        message: String,
    },
}

/// What recording an answer did.
#[derive(Debug, Clone, PartialEq)]
pub enum ChargeFinish {
    /// The attempt was recorded before (a duplicate run): nothing changed.
    AlreadyRecorded(PaymentStatus),
    /// The invoice is paid.
    Paid(Invoice),
    /// Declined; dunning charges again at `next_attempt_at` (a job scheduled then).
    Retrying {
        /// The invoice, still open.
        invoice: Invoice,
        /// Its next charge.
        next_attempt_at: DateTime<Utc>,
    },
    /// Declined for the last time: the invoice is uncollectible and the subscription cancelled.
    GaveUp {
        /// The invoice.
        invoice: Invoice,
        /// The jobs created (the caller's notices; empty when passed to `notify`).
        jobs: Vec<pysaas_jobs::Job>,
    },
}

/// What voiding an invoice did.
#[derive(Debug, Clone, PartialEq)]
pub enum VoidOutcome {
    /// No such invoice.
    Missing,
    /// Voided now.
    Voided(Invoice),
    /// Not open (paid, void or uncollectible already): unchanged.
    NotOpen(InvoiceStatus),
    /// A charge is in flight (its answer not yet recorded): voiding now could void an invoice
    /// the provider is capturing, so it waits for the answer.
    ChargeInFlight,
}

/// The jobs that tell of a charge's outcome, given the subscription it billed (see
/// [`BillingStore::finish_charge`]).
pub type Notify = dyn Fn(&ChargeFinish, &Subscription) -> Vec<NewJob> + Send + Sync;

/// Billing's storage.
#[async_trait]
pub trait BillingStore: Send + Sync {
    /// Creates a plan; `false` when its id is taken.
    async fn create_plan(&self, plan: &NewPlan) -> Result<bool>;

    /// Every plan, oldest first.
    async fn list_plans(&self) -> Result<Vec<Plan>>;

    /// One plan.
    async fn get_plan(&self, id: &str) -> Result<Option<Plan>>;

    /// Archives (or restores) a plan: archived plans take no new subscriptions; existing ones
    /// keep billing.
    async fn set_plan_active(&self, id: &str, active: bool) -> Result<Option<Plan>>;

    /// Subscribes a tenant: with a trial, the subscription starts `trialing`; without, it
    /// starts `active` with its first invoice opened and its charge enqueued. `jobs` (a welcome
    /// email, say) commit in the same transaction.
    async fn subscribe(
        &self,
        tenant_id: &str,
        plan_id: &str,
        payment_method: &str,
        billing_email: Option<&str>,
        now: DateTime<Utc>,
        jobs: Vec<NewJob>,
    ) -> Result<std::result::Result<Subscribed, BillingRefusal>>;

    /// A tenant's subscription.
    async fn get_subscription(&self, tenant_id: &str, id: Uuid) -> Result<Option<Subscription>>;

    /// A tenant's subscriptions, newest first.
    async fn list_subscriptions(&self, tenant_id: &str) -> Result<Vec<Subscription>>;

    /// Cancels a live subscription now, or at its period's end (`at_period_end`; the invoice
    /// run then ends it instead of renewing).
    async fn cancel_subscription(
        &self,
        tenant_id: &str,
        id: Uuid,
        at_period_end: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>>;

    /// Moves a live subscription to another plan of the same currency and cadence, prorating
    /// the rest of the current period exactly (an invoice with a credit line for the old plan
    /// and a charge line for the new; a negative net becomes credit for the next invoice).
    async fn change_plan(
        &self,
        tenant_id: &str,
        id: Uuid,
        plan_id: &str,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<PlanChanged, BillingRefusal>>;

    /// Live subscriptions whose period ended by `now`, soonest first.
    async fn due_subscriptions(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>>;

    /// Renews one subscription whose period ended by `now`: one transaction that locks it,
    /// checks again that it is due, and opens the next period's invoice (numbered next for the
    /// tenant) with its charge job, or ends it if it was set to end. Concurrent or repeated
    /// calls open each period's invoice once.
    async fn renew(&self, id: Uuid, now: DateTime<Utc>) -> Result<Renewal>;

    /// A tenant's invoices, newest first.
    async fn list_invoices(&self, tenant_id: &str, limit: i64) -> Result<Vec<Invoice>>;

    /// A tenant's invoice with its lines.
    async fn get_invoice(
        &self,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<(Invoice, Vec<InvoiceLine>)>>;

    /// The payment attempts of a tenant's invoice, in order.
    async fn list_payments(&self, tenant_id: &str, invoice_id: Uuid) -> Result<Vec<Payment>>;

    /// Starts (or resumes) charging an open invoice: the pending attempt if one exists, else a
    /// new one with a fresh idempotency key, committed before the provider is called.
    async fn begin_charge(
        &self,
        invoice_id: Uuid,
        provider: &str,
        now: DateTime<Utc>,
    ) -> Result<ChargeStart>;

    /// Voids an open invoice (the operator's action, `by`): nothing is owed or charged any
    /// more; a charge already scheduled finds it settled.
    async fn void_invoice(&self, id: Uuid, by: &str) -> Result<VoidOutcome>;

    /// Records the provider's final answer to a pending attempt (once: a second call changes
    /// nothing). A decline schedules the next charge `dunning[n - 1]` after the n-th decline;
    /// after the last, the invoice is uncollectible and the subscription cancelled. The jobs
    /// `notify` makes of the outcome (a receipt, a payment-failed email) commit with it.
    async fn finish_charge(
        &self,
        payment_id: Uuid,
        result: ChargeResult,
        now: DateTime<Utc>,
        dunning: &[Duration],
        notify: &Notify,
    ) -> Result<ChargeFinish>;
}

/// The plan's terms as words (`EUR every 1 month`), for refusals.
pub(crate) fn terms(plan: &Plan) -> String {
    format!(
        "{} every {} {}",
        plan.currency,
        plan.cadence.count,
        plan.cadence.interval.as_str()
    )
}

/// Parses a stored [`Interval`].
pub(crate) fn parse_interval(s: &str) -> Result<Interval> {
    s.parse().map_err(|e: String| crate::StoreError::Corrupt(e))
}
