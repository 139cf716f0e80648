//! An application that embeds PySaaS and adds a job kind of its own, outside PySaaS's crates:
//! `reminders.invoice_overdue` renders a payment reminder for an overdue invoice. The kind is its
//! contract ([`InvoiceOverdue`]), its handler ([`InvoiceOverdueHandler`]) and one registration line
//! ([`app`]).

use std::time::Duration;

use pysaas::{App, Config, HandlerError, JobContext, JobHandler, JobKind, RetryPolicy};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Reminds a customer of an unpaid invoice. The API validates submissions against this type's
/// JSON Schema: unknown fields and wrong types are refused with 422 before anything is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceOverdue {
    /// The invoice, e.g. `INV-2026-0042`.
    pub invoice: String,
    /// Where the reminder goes.
    pub email: String,
    /// Amount due, in cents.
    pub amount_cents: u64,
    /// ISO 4217 currency, e.g. `EUR`.
    pub currency: String,
    /// Days since the due date.
    pub days_overdue: u32,
}

impl JobKind for InvoiceOverdue {
    const KIND: &'static str = "reminders.invoice_overdue";
    const QUEUE: &'static str = "reminders";

    fn timeout() -> Duration {
        Duration::from_secs(10)
    }

    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            ..RetryPolicy::default()
        }
    }
}

/// Renders the reminder; its result (subject and body) is stored with the job.
#[derive(Debug, Clone, Copy, Default)]
pub struct InvoiceOverdueHandler;

/// Reminders stop after this many days: the invoice goes to collections instead.
pub const LAST_REMINDER_DAY: u32 = 90;

#[async_trait::async_trait]
impl JobHandler<InvoiceOverdue> for InvoiceOverdueHandler {
    async fn handle(
        &self,
        ctx: &JobContext,
        job: InvoiceOverdue,
    ) -> Result<Option<Value>, HandlerError> {
        if job.amount_cents == 0 {
            // Nothing is owed: retrying cannot help.
            return Err(HandlerError::fail(format!(
                "invoice {} has nothing due",
                job.invoice
            )));
        }
        if job.days_overdue > LAST_REMINDER_DAY {
            // Not an error of the job: it no longer applies.
            return Err(HandlerError::cancel(format!(
                "invoice {} is {} days overdue: handed to collections",
                job.invoice, job.days_overdue
            )));
        }
        let tone = match job.days_overdue {
            0..=7 => "a friendly reminder",
            8..=30 => "a second reminder",
            _ => "a final reminder",
        };
        let amount = format!(
            "{}.{:02} {}",
            job.amount_cents / 100,
            job.amount_cents % 100,
            job.currency
        );
        Ok(Some(json!({
            "to": job.email,
            "subject": format!("Invoice {} is {} days overdue", job.invoice, job.days_overdue),
            "body": format!("This is {tone}: {amount} is due on invoice {}.", job.invoice),
            "attempt": ctx.attempt,
        })))
    }
}

/// PySaaS with the built-in kinds plus this application's.
pub fn app(config: Config) -> App {
    App::new(config).register::<InvoiceOverdue, _>(InvoiceOverdueHandler)
}
