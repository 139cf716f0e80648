//! Billing kinds (queue `billing`). Their rules and tables: `docs/domains.md`, "Billing".

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{JobKind, RetryPolicy};

/// Opens the invoices of every subscription whose period has ended (run by cron; any number of
/// runs at once, or twice for one tick, open each period's invoice once), ends the trials and
/// the cancellations due at period end, and enqueues a charge for each invoice opened.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateInvoices {}

impl JobKind for GenerateInvoices {
    const KIND: &'static str = "billing.generate_invoices";
    const QUEUE: &'static str = "billing";

    fn timeout() -> Duration {
        Duration::from_secs(300)
    }
}

/// Charges an open invoice through the payment provider. A decline schedules the next dunning
/// attempt (or, after the last, marks the invoice uncollectible and cancels the subscription);
/// a provider outage or timeout retries the same payment attempt under the same idempotency
/// key, so an invoice is never captured twice.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeInvoice {
    /// The invoice.
    pub invoice_id: Uuid,
}

impl JobKind for ChargeInvoice {
    const KIND: &'static str = "billing.charge_invoice";
    const QUEUE: &'static str = "billing";

    fn timeout() -> Duration {
        Duration::from_secs(60)
    }

    fn retry_policy() -> RetryPolicy {
        // Retries are for provider outages (declines are dunning's, on their own schedule):
        // keep trying for about a day.
        RetryPolicy::about_a_day()
    }
}
