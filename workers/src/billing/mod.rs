//! The billing pool's handlers (queue `billing`): the invoice run and charges through a
//! [`PaymentProvider`]. The tables and their transactions are the store's
//! ([`pysaas_brokers::store::billing`]); the model is described in `docs/domains.md`.

pub mod provider;
pub mod stripe;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pysaas_brokers::store::billing::{
    ChargeFinish, ChargeResult, ChargeStart, Renewal, Subscription,
};
use pysaas_brokers::StoreError;
use pysaas_jobs::billing::{format_amount, DEFAULT_DUNNING_DAYS};
use pysaas_jobs::kinds::billing::{ChargeInvoice, GenerateInvoices};
use pysaas_jobs::kinds::notification::{Email, EmailTemplate, InApp, WebhookEvent};
use pysaas_jobs::preferences::Category;
use pysaas_jobs::{HandlerError, NewJob};
use serde_json::{json, Value};

pub use provider::{Captured, ChargeRequest, PaymentProvider, ProviderError};
pub use stripe::StripeProvider;

use crate::{Handlers, JobContext, JobHandler};

/// Subscriptions renewed per store read by one invoice run.
const RENEW_BATCH: i64 = 100;

/// Billing's settings.
#[derive(Debug, Clone)]
pub struct BillingConfig {
    /// Where charges go.
    pub provider: Arc<dyn PaymentProvider>,
    /// Waits between a declined charge and the next (default 1, 3, 7 days); after the last,
    /// the invoice is uncollectible and the subscription cancelled.
    pub dunning: Vec<Duration>,
}

impl BillingConfig {
    /// `provider` with the default dunning schedule.
    pub fn new(provider: Arc<dyn PaymentProvider>) -> Self {
        BillingConfig {
            provider,
            dunning: DEFAULT_DUNNING_DAYS
                .iter()
                .map(|d| Duration::from_secs(d * 86_400))
                .collect(),
        }
    }
}

/// The address `pysaas payments-sim` listens on by default.
pub const LOCAL_PROVIDER_URL: &str = "http://127.0.0.1:12111";

impl BillingConfig {
    /// The local payment simulator on its default address, default dunning.
    pub fn local_default() -> Self {
        // The URL is a constant that parses.
        let provider = StripeProvider::new(
            "local",
            LOCAL_PROVIDER_URL,
            "sk_test_local",
            Duration::from_secs(20),
        )
        .map_or_else(
            |_| Arc::new(NoProvider) as Arc<dyn PaymentProvider>,
            |p| Arc::new(p) as Arc<dyn PaymentProvider>,
        );
        BillingConfig::new(provider)
    }
}

/// A provider that refuses every charge: what a deployment whose provider settings are invalid
/// runs with (the charge jobs fail visibly; nothing is captured).
#[derive(Debug, Clone, Copy)]
pub struct NoProvider;

#[async_trait]
impl PaymentProvider for NoProvider {
    fn name(&self) -> &str {
        "unconfigured"
    }

    async fn charge(&self, _request: &ChargeRequest<'_>) -> Result<Captured, ProviderError> {
        Err(ProviderError::Rejected(
            "no payment provider is configured".into(),
        ))
    }
}

/// Registers the billing kinds.
pub fn register(handlers: &mut Handlers, config: BillingConfig) {
    let charge = ChargeInvoiceHandler {
        provider: config.provider,
        dunning: config.dunning,
    };
    handlers
        .register::<GenerateInvoices, _>(GenerateInvoicesHandler)
        .register::<ChargeInvoice, _>(charge);
}

fn store_error(e: StoreError) -> HandlerError {
    HandlerError::retry(format!("billing store: {e}"))
}

/// Runs `billing.generate_invoices`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenerateInvoicesHandler;

#[async_trait]
impl JobHandler<GenerateInvoices> for GenerateInvoicesHandler {
    async fn handle(
        &self,
        ctx: &JobContext,
        _payload: GenerateInvoices,
    ) -> Result<Option<Value>, HandlerError> {
        if ctx.tenant_id != pysaas_jobs::DEFAULT_TENANT {
            // It renews every tenant's subscriptions: the operator's job, not a tenant's.
            return Err(HandlerError::fail(
                "billing.generate_invoices runs for the operator (the default tenant) only",
            ));
        }
        let store = ctx.store()?;
        let now = store.now().await.map_err(store_error)?;
        let (mut opened, mut ended) = (Vec::new(), 0_u64);
        loop {
            let due = store
                .due_subscriptions(now, RENEW_BATCH)
                .await
                .map_err(store_error)?;
            let mut progressed = false;
            for id in &due {
                match store.renew(*id, now).await.map_err(store_error)? {
                    Renewal::NotDue => {}
                    Renewal::Ended(sub) => {
                        tracing::info!(subscription = %sub.id, tenant = %sub.tenant_id, "subscription ended at period end");
                        ended += 1;
                        progressed = true;
                    }
                    Renewal::Invoiced { invoice, .. } => {
                        tracing::info!(
                            invoice = %invoice.id,
                            tenant = %invoice.tenant_id,
                            number = invoice.number,
                            total_minor = invoice.total_minor,
                            "invoice opened"
                        );
                        opened.push(invoice.id);
                        progressed = true;
                    }
                }
            }
            // Nothing due, or another run renewed all this one saw: it carries on from there.
            if !progressed {
                break;
            }
        }
        Ok(Some(
            json!({ "invoices_opened": opened, "subscriptions_ended": ended }),
        ))
    }
}

/// What tells of a charge's outcome: the webhook event, the email to the subscription's billing
/// contact (a receipt, a failed payment with the next attempt, or the end of the subscription)
/// and, when a payment failed, an in-app notification to the tenant's owners and admins. Keyed
/// by invoice and outcome, so a repeated transaction cannot send one twice.
fn notices(finish: &ChargeFinish, sub: &Subscription) -> Vec<NewJob> {
    let mut jobs: Vec<NewJob> = webhook_event(finish, sub).into_iter().collect();
    jobs.extend(email_notice(finish, sub));
    jobs.extend(in_app_notice(finish, sub));
    jobs
}

/// The admins' in-app notification of a failed payment or a subscription ended by dunning.
fn in_app_notice(finish: &ChargeFinish, sub: &Subscription) -> Option<NewJob> {
    let (invoice, title) = match finish {
        ChargeFinish::Retrying { invoice, .. } => (invoice, "A payment failed"),
        ChargeFinish::GaveUp { invoice, .. } => (invoice, "A subscription was cancelled"),
        ChargeFinish::Paid(_) | ChargeFinish::AlreadyRecorded(_) => return None,
    };
    let notice = InApp {
        user_id: None,
        category: Category::Billing,
        title: title.to_owned(),
        body: format!(
            "Invoice INV-{:06} ({}) of subscription {} to plan {} was declined.",
            invoice.number,
            format_amount(invoice.total_minor, invoice.currency),
            sub.id,
            sub.plan_id
        ),
        link: None,
    };
    let mut job = NewJob::of(invoice.tenant_id.clone(), &notice).ok()?;
    job.idempotency_key = Some(format!(
        "billing-in-app-{}-{}",
        invoice.id, invoice.attempt_count
    ));
    Some(job)
}

/// The webhook event of a charge's outcome (`invoice.paid`, `invoice.payment_failed`,
/// `subscription.cancelled`), for the tenant's endpoints.
fn webhook_event(finish: &ChargeFinish, sub: &Subscription) -> Option<NewJob> {
    let (event_type, invoice) = match finish {
        ChargeFinish::Paid(invoice) => ("invoice.paid", invoice),
        ChargeFinish::Retrying { invoice, .. } => ("invoice.payment_failed", invoice),
        ChargeFinish::GaveUp { invoice, .. } => ("subscription.cancelled", invoice),
        ChargeFinish::AlreadyRecorded(_) => return None,
    };
    let data = json!({
        "invoice_id": invoice.id,
        "invoice_number": invoice.number,
        "subscription_id": sub.id,
        "status": invoice.status.as_str(),
        "total_minor": invoice.total_minor,
        "currency": invoice.currency.code(),
    });
    let event = WebhookEvent {
        event_type: event_type.to_owned(),
        data: match data {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
    };
    let mut job = NewJob::of(invoice.tenant_id.clone(), &event).ok()?;
    job.idempotency_key = Some(format!(
        "billing-event-{}-{event_type}-{}",
        invoice.id, invoice.attempt_count
    ));
    Some(job)
}

/// The email to the billing contact of a charge's outcome.
fn email_notice(finish: &ChargeFinish, sub: &Subscription) -> Vec<NewJob> {
    let Some(to) = &sub.billing_email else {
        return Vec::new();
    };
    let (invoice, template, mut data) = match finish {
        ChargeFinish::Paid(invoice) => (
            invoice,
            EmailTemplate::Receipt,
            json!({
                "period": format!(
                    "{} to {}",
                    invoice.period_start.format("%Y-%m-%d"),
                    invoice.period_end.format("%Y-%m-%d")
                ),
            }),
        ),
        ChargeFinish::Retrying {
            invoice,
            next_attempt_at,
        } => (
            invoice,
            EmailTemplate::PaymentFailed,
            json!({ "next_attempt_at": next_attempt_at.format("%Y-%m-%d %H:%M UTC").to_string() }),
        ),
        ChargeFinish::GaveUp { invoice, .. } => (
            invoice,
            EmailTemplate::SubscriptionCancelled,
            json!({
                "plan": sub.plan_id,
                "reason": format!(
                    "The last attempt to charge invoice INV-{:06} was declined.",
                    invoice.number
                ),
            }),
        ),
        ChargeFinish::AlreadyRecorded(_) => return Vec::new(),
    };
    data["invoice_number"] = json!(format!("INV-{:06}", invoice.number));
    data["total"] = json!(format_amount(invoice.total_minor, invoice.currency));
    let email = Email {
        to: to.clone(),
        template,
        data: match data {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
    };
    match NewJob::of(invoice.tenant_id.clone(), &email) {
        Ok(mut job) => {
            job.idempotency_key = Some(format!(
                "billing-email-{}-{}-{}",
                invoice.id,
                template.as_str(),
                invoice.attempt_count
            ));
            vec![job]
        }
        Err(err) => {
            tracing::error!(error = %err, "billing notice not built");
            Vec::new()
        }
    }
}

/// Runs `billing.charge_invoice`.
#[derive(Debug, Clone)]
pub struct ChargeInvoiceHandler {
    provider: Arc<dyn PaymentProvider>,
    dunning: Vec<Duration>,
}

#[async_trait]
impl JobHandler<ChargeInvoice> for ChargeInvoiceHandler {
    async fn handle(
        &self,
        ctx: &JobContext,
        payload: ChargeInvoice,
    ) -> Result<Option<Value>, HandlerError> {
        let store = ctx.store()?;
        let now = store.now().await.map_err(store_error)?;
        let start = store
            .begin_charge(payload.invoice_id, self.provider.name(), now)
            .await
            .map_err(store_error)?;
        let (payment, payment_method, resumed) = match start {
            ChargeStart::Missing => {
                return Err(HandlerError::fail(format!(
                    "no invoice {}",
                    payload.invoice_id
                )))
            }
            ChargeStart::Settled(status) => {
                return Ok(Some(
                    json!({ "invoice": status.as_str(), "charged": false }),
                ))
            }
            ChargeStart::Attempt {
                payment,
                payment_method,
                resumed,
            } => (payment, payment_method, resumed),
        };
        if resumed {
            tracing::info!(payment = %payment.id, attempt = payment.attempt, "resending a payment attempt that has no recorded answer, under its key");
        }
        let description = format!("Invoice {} of {}", payment.invoice_id, payment.tenant_id);
        let request = ChargeRequest {
            amount_minor: payment.amount_minor,
            currency: payment.currency.code(),
            payment_method: &payment_method,
            idempotency_key: &payment.idempotency_key,
            invoice_id: payment.invoice_id,
            tenant_id: &payment.tenant_id,
            description: &description,
        };
        let result = match self.provider.charge(&request).await {
            Ok(captured) => ChargeResult::Succeeded {
                provider_ref: captured.id,
            },
            Err(ProviderError::Declined {
                payment_intent,
                code,
                message,
            }) => ChargeResult::Declined {
                provider_ref: payment_intent,
                code,
                message,
            },
            Err(ProviderError::Unavailable {
                message,
                retry_after,
            }) => {
                // Whether it captured is unknown: the retry sends this attempt again, under the
                // same key, and the provider answers what it did the first time.
                let message = format!("payment provider: {message}");
                return Err(match retry_after {
                    Some(after) => HandlerError::retry_after(message, after),
                    None => HandlerError::retry(message),
                });
            }
            Err(ProviderError::Rejected(message)) => {
                return Err(HandlerError::fail(format!(
                    "payment provider refused the request: {message}"
                )))
            }
        };
        let now = store.now().await.map_err(store_error)?;
        let finish = store
            .finish_charge(payment.id, result, now, &self.dunning, &notices)
            .await
            .map_err(store_error)?;
        let attempt = payment.attempt;
        Ok(Some(match finish {
            ChargeFinish::AlreadyRecorded(status) => {
                json!({ "payment": status.as_str(), "attempt": attempt, "recorded_before": true })
            }
            ChargeFinish::Paid(invoice) => {
                json!({ "invoice": invoice.status.as_str(), "attempt": attempt })
            }
            ChargeFinish::Retrying {
                next_attempt_at, ..
            } => {
                json!({ "invoice": "open", "declined": true, "attempt": attempt, "next_attempt_at": next_attempt_at })
            }
            ChargeFinish::GaveUp { invoice, .. } => {
                tracing::warn!(invoice = %invoice.id, tenant = %invoice.tenant_id, "dunning gave up: invoice uncollectible, subscription cancelled");
                json!({ "invoice": invoice.status.as_str(), "declined": true, "attempt": attempt })
            }
        }))
    }
}
