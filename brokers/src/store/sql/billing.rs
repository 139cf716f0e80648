//! [`BillingStore`] once for both backends. Each operation that opens an invoice or records a
//! payment is one transaction that locks the row it changes (PostgreSQL `FOR UPDATE`; SQLite's
//! transactions hold the write lock) and enqueues the jobs it causes.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::billing::{Cadence, Proration};
use pysaas_jobs::events::{
    InvoiceEvent, PaymentAttempted, INVOICE_ISSUED, INVOICE_PAID as INVOICE_PAID_EVENT,
    INVOICE_UNCOLLECTIBLE as INVOICE_UNCOLLECTIBLE_EVENT, INVOICE_VOIDED, PAYMENT_ATTEMPTED,
};
use pysaas_jobs::kinds::billing::ChargeInvoice;
use pysaas_jobs::NewJob;
use uuid::Uuid;

use super::events::record_event;
use super::{args, Columns, SqlBackend, SqlTx, Stmt};
use crate::store::billing::{
    parse_interval, terms, BillingRefusal, BillingStore, ChargeFinish, ChargeResult, ChargeStart,
    Invoice, InvoiceLine, InvoiceReason, InvoiceStatus, NewPlan, Notify, Payment, PaymentStatus,
    Plan, PlanChanged, Renewal, Subscribed, Subscription, SubscriptionStatus, VoidOutcome,
};
use crate::{Result, StoreError};

const INSERT_PLAN: Stmt<'static> = Stmt::write(
    "INSERT INTO billing_plans \
       (id, name, amount_minor, currency, period_unit, period_count, trial_days, active, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, true, $8) ON CONFLICT (id) DO NOTHING",
);
const LIST_PLANS: Stmt<'static> = Stmt::read("SELECT * FROM billing_plans ORDER BY created_at, id");
const GET_PLAN: Stmt<'static> = Stmt::read("SELECT * FROM billing_plans WHERE id = $1");
const SET_PLAN_ACTIVE: Stmt<'static> =
    Stmt::write("UPDATE billing_plans SET active = $2 WHERE id = $1 RETURNING *");
const LIVE_SUBSCRIPTION: Stmt<'static> = Stmt::write(
    "SELECT id FROM billing_subscriptions WHERE tenant_id = $1 AND status <> 'cancelled'",
);
const INSERT_SUBSCRIPTION: Stmt<'static> = Stmt::write(
    "INSERT INTO billing_subscriptions \
       (id, tenant_id, plan_id, status, payment_method, anchor, period, current_period_start, \
        current_period_end, trial_end, cancel_at_period_end, credit_minor, created_at, updated_at, \
        billing_email) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, false, 0, $11, $11, $12) \
     ON CONFLICT DO NOTHING RETURNING *",
);
const GET_SUBSCRIPTION: Stmt<'static> =
    Stmt::read("SELECT * FROM billing_subscriptions WHERE tenant_id = $1 AND id = $2");
const LIST_SUBSCRIPTIONS: Stmt<'static> = Stmt::read(
    "SELECT * FROM billing_subscriptions WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC",
);
const CANCEL_AT_PERIOD_END: Stmt<'static> = Stmt::write(
    "UPDATE billing_subscriptions SET cancel_at_period_end = true, updated_at = $3 \
     WHERE tenant_id = $1 AND id = $2 AND status <> 'cancelled' RETURNING *",
);
const CANCEL_NOW: Stmt<'static> = Stmt::write(
    "UPDATE billing_subscriptions SET status = 'cancelled', cancelled_at = $3, updated_at = $3 \
     WHERE tenant_id = $1 AND id = $2 AND status <> 'cancelled' RETURNING *",
);
const DUE_SUBSCRIPTIONS: Stmt<'static> = Stmt::read(
    "SELECT id FROM billing_subscriptions \
     WHERE status <> 'cancelled' AND current_period_end <= $1 \
     ORDER BY current_period_end LIMIT $2",
);
const END_SUBSCRIPTION: Stmt<'static> = Stmt::write(
    "UPDATE billing_subscriptions \
     SET status = 'cancelled', cancelled_at = current_period_end, updated_at = $2 \
     WHERE id = $1 RETURNING *",
);
const ADVANCE_SUBSCRIPTION: Stmt<'static> = Stmt::write(
    "UPDATE billing_subscriptions \
     SET period = $2, current_period_start = $3, current_period_end = $4, \
         status = CASE WHEN status = 'trialing' THEN 'active' ELSE status END, \
         credit_minor = credit_minor - $5, updated_at = $6 \
     WHERE id = $1 RETURNING *",
);
const SWITCH_PLAN: Stmt<'static> = Stmt::write(
    "UPDATE billing_subscriptions SET plan_id = $2, credit_minor = $3, updated_at = $4 \
     WHERE id = $1 RETURNING *",
);
const REACTIVATE: Stmt<'static> = Stmt::write(
    "UPDATE billing_subscriptions SET status = 'active', updated_at = $2 \
     WHERE id = $1 AND status = 'past_due'",
);
/// Another open invoice of the subscription (`$2`: the one just settled).
const OTHER_OPEN: Stmt<'static> = Stmt::write(
    "SELECT id FROM billing_invoices WHERE subscription_id = $1 AND id <> $2 AND status = 'open' \
     LIMIT 1",
);
const MARK_PAST_DUE: Stmt<'static> = Stmt::write(
    "UPDATE billing_subscriptions SET status = 'past_due', updated_at = $2 \
     WHERE id = $1 AND status = 'active'",
);
const CANCEL_UNPAID: Stmt<'static> = Stmt::write(
    "UPDATE billing_subscriptions SET status = 'cancelled', cancelled_at = $2, updated_at = $2 \
     WHERE id = $1 AND status <> 'cancelled'",
);
const PAYMENT_METHOD: Stmt<'static> =
    Stmt::write("SELECT payment_method FROM billing_subscriptions WHERE id = $1");
// The counter row stays locked until the transaction ends, so a tenant's invoices are numbered
// one at a time, and a transaction that rolls back gives its number back: no gaps.
const NEXT_NUMBER: Stmt<'static> = Stmt::write(
    "INSERT INTO billing_invoice_counters (tenant_id, last_number) VALUES ($1, 1) \
     ON CONFLICT (tenant_id) DO UPDATE \
     SET last_number = billing_invoice_counters.last_number + 1 RETURNING last_number",
);
const INSERT_INVOICE: Stmt<'static> = Stmt::write(
    "INSERT INTO billing_invoices \
       (id, tenant_id, number, subscription_id, reason, status, currency, period_start, \
        period_end, subtotal_minor, total_minor, attempt_count, created_at, paid_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $13) \
     ON CONFLICT DO NOTHING RETURNING *",
);
const INSERT_LINE: Stmt<'static> = Stmt::write(
    "INSERT INTO billing_invoice_lines \
       (invoice_id, line_no, description, amount_minor, period_start, period_end) \
     VALUES ($1, $2, $3, $4, $5, $6)",
);
const LIST_INVOICES: Stmt<'static> =
    Stmt::read("SELECT * FROM billing_invoices WHERE tenant_id = $1 ORDER BY number DESC LIMIT $2");
const GET_INVOICE: Stmt<'static> =
    Stmt::read("SELECT * FROM billing_invoices WHERE tenant_id = $1 AND id = $2");
const INVOICE_LINES: Stmt<'static> =
    Stmt::read("SELECT * FROM billing_invoice_lines WHERE invoice_id = $1 ORDER BY line_no");
const LIST_PAYMENTS: Stmt<'static> = Stmt::read(
    "SELECT * FROM billing_payments WHERE tenant_id = $1 AND invoice_id = $2 ORDER BY attempt",
);
const PENDING_PAYMENT: Stmt<'static> =
    Stmt::write("SELECT * FROM billing_payments WHERE invoice_id = $1 AND status = 'pending'");
const NEXT_ATTEMPT: Stmt<'static> = Stmt::write(
    "SELECT COALESCE(MAX(attempt), 0) + 1 AS next FROM billing_payments WHERE invoice_id = $1",
);
const INSERT_PAYMENT: Stmt<'static> = Stmt::write(
    "INSERT INTO billing_payments \
       (id, invoice_id, tenant_id, attempt, amount_minor, currency, status, provider, \
        idempotency_key, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9) RETURNING *",
);
const PAYMENT_SUCCEEDED: Stmt<'static> = Stmt::write(
    "UPDATE billing_payments SET status = 'succeeded', provider_ref = $2, finished_at = $3 \
     WHERE id = $1",
);
const PAYMENT_FAILED: Stmt<'static> = Stmt::write(
    "UPDATE billing_payments \
     SET status = 'failed', provider_ref = $2, error_code = $3, error_message = $4, \
         finished_at = $5 \
     WHERE id = $1",
);
const INVOICE_PAID: Stmt<'static> = Stmt::write(
    "UPDATE billing_invoices SET status = 'paid', paid_at = $2, next_attempt_at = NULL \
     WHERE id = $1 RETURNING *",
);
const INVOICE_DECLINED: Stmt<'static> = Stmt::write(
    "UPDATE billing_invoices SET attempt_count = attempt_count + 1, next_attempt_at = $2 \
     WHERE id = $1 RETURNING *",
);
const INVOICE_VOID: Stmt<'static> = Stmt::write(
    "UPDATE billing_invoices SET status = 'void', next_attempt_at = NULL \
     WHERE id = $1 RETURNING *",
);
const INVOICE_UNCOLLECTIBLE: Stmt<'static> = Stmt::write(
    "UPDATE billing_invoices SET status = 'uncollectible', next_attempt_at = NULL \
     WHERE id = $1 RETURNING *",
);

fn parse<T: FromStr<Err = String>>(s: &str) -> Result<T> {
    s.parse().map_err(StoreError::Corrupt)
}

fn plan_from<R: Columns>(row: &R) -> Result<Plan> {
    Ok(Plan {
        id: row.text("id")?,
        name: row.text("name")?,
        amount_minor: row.big("amount_minor")?,
        currency: parse(&row.text("currency")?)?,
        cadence: Cadence {
            interval: parse_interval(&row.text("period_unit")?)?,
            count: u32::try_from(row.int("period_count")?)
                .map_err(|e| StoreError::Corrupt(format!("period_count: {e}")))?,
        },
        trial_days: row.int("trial_days")?,
        active: row.flag("active")?,
        created_at: row.time("created_at")?,
    })
}

fn subscription_from<R: Columns>(row: &R) -> Result<Subscription> {
    Ok(Subscription {
        id: row.uuid("id")?,
        tenant_id: row.text("tenant_id")?,
        plan_id: row.text("plan_id")?,
        status: parse(&row.text("status")?)?,
        payment_method: row.text("payment_method")?,
        billing_email: row.opt_text("billing_email")?,
        anchor: row.time("anchor")?,
        period: row.int("period")?,
        current_period_start: row.time("current_period_start")?,
        current_period_end: row.time("current_period_end")?,
        trial_end: row.opt_time("trial_end")?,
        cancel_at_period_end: row.flag("cancel_at_period_end")?,
        credit_minor: row.big("credit_minor")?,
        cancelled_at: row.opt_time("cancelled_at")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

fn invoice_from<R: Columns>(row: &R) -> Result<Invoice> {
    Ok(Invoice {
        id: row.uuid("id")?,
        tenant_id: row.text("tenant_id")?,
        number: row.big("number")?,
        subscription_id: row.uuid("subscription_id")?,
        reason: parse(&row.text("reason")?)?,
        status: parse(&row.text("status")?)?,
        currency: parse(&row.text("currency")?)?,
        period_start: row.time("period_start")?,
        period_end: row.time("period_end")?,
        subtotal_minor: row.big("subtotal_minor")?,
        total_minor: row.big("total_minor")?,
        attempt_count: row.int("attempt_count")?,
        next_attempt_at: row.opt_time("next_attempt_at")?,
        created_at: row.time("created_at")?,
        paid_at: row.opt_time("paid_at")?,
    })
}

fn line_from<R: Columns>(row: &R) -> Result<InvoiceLine> {
    Ok(InvoiceLine {
        line_no: row.int("line_no")?,
        description: row.text("description")?,
        amount_minor: row.big("amount_minor")?,
        period_start: row.time("period_start")?,
        period_end: row.time("period_end")?,
    })
}

fn payment_from<R: Columns>(row: &R) -> Result<Payment> {
    Ok(Payment {
        id: row.uuid("id")?,
        invoice_id: row.uuid("invoice_id")?,
        tenant_id: row.text("tenant_id")?,
        attempt: row.int("attempt")?,
        amount_minor: row.big("amount_minor")?,
        currency: parse(&row.text("currency")?)?,
        status: parse(&row.text("status")?)?,
        provider: row.text("provider")?,
        idempotency_key: row.text("idempotency_key")?,
        provider_ref: row.opt_text("provider_ref")?,
        error_code: row.opt_text("error_code")?,
        error_message: row.opt_text("error_message")?,
        created_at: row.time("created_at")?,
        finished_at: row.opt_time("finished_at")?,
    })
}

/// `SELECT * FROM table WHERE id = $1`, locking the row until the transaction ends.
fn locked(table: &str, lock: &str) -> String {
    format!("SELECT * FROM {table} WHERE id = $1{lock}")
}

/// The charge job of an invoice's `n`-th charge (keyed, so a repeated transaction cannot
/// enqueue it twice).
fn charge_job(invoice: &Invoice, n: i32, run_at: DateTime<Utc>) -> Result<NewJob> {
    let mut job = NewJob::of(
        invoice.tenant_id.clone(),
        &ChargeInvoice {
            invoice_id: invoice.id,
        },
    )
    .map_err(|e| StoreError::Corrupt(format!("charge job payload: {e}")))?;
    job.run_at = run_at;
    job.idempotency_key = Some(format!("billing-charge-{}-{n}", invoice.id));
    Ok(job)
}

/// An invoice to open.
struct Draft<'a> {
    subscription: &'a Subscription,
    reason: InvoiceReason,
    currency: &'a str,
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    lines: Vec<(String, i64)>,
    now: DateTime<Utc>,
}

/// Records `event_type` about `invoice` in `tx`.
async fn record_invoice<T: SqlTx>(
    tx: &mut T,
    invoice: &Invoice,
    event_type: &str,
    by: Option<&str>,
) -> Result<()> {
    let event = InvoiceEvent {
        invoice_id: invoice.id,
        number: invoice.number,
        subscription_id: invoice.subscription_id,
        currency: invoice.currency.code().to_owned(),
        total_minor: invoice.total_minor,
        period_start: invoice.period_start,
        period_end: invoice.period_end,
        by: by.map(str::to_owned),
    };
    let subject = format!("invoices/{}", invoice.id);
    record_event(tx, &invoice.tenant_id, event_type, &subject, &event).await
}

/// Records the answer to `payment` in `tx`.
async fn record_attempt<T: SqlTx>(
    tx: &mut T,
    payment: &Payment,
    declined: Option<&str>,
) -> Result<()> {
    let event = PaymentAttempted {
        payment_id: payment.id,
        invoice_id: payment.invoice_id,
        attempt: payment.attempt,
        amount_minor: payment.amount_minor,
        currency: payment.currency.code().to_owned(),
        outcome: if declined.is_some() {
            "declined"
        } else {
            "succeeded"
        }
        .to_owned(),
        code: declined.map(str::to_owned),
    };
    let subject = format!("invoices/{}", payment.invoice_id);
    record_event(tx, &payment.tenant_id, PAYMENT_ATTEMPTED, &subject, &event).await
}

/// Numbers and inserts an invoice with its lines; `None` when the subscription's invoice for
/// this period exists (the caller rolls back, which gives the number back).
async fn open_invoice<T: SqlTx>(tx: &mut T, draft: Draft<'_>) -> Result<Option<Invoice>> {
    let sub = draft.subscription;
    let number_row = tx
        .fetch_optional(NEXT_NUMBER, &args![sub.tenant_id.as_str()])
        .await?
        .ok_or_else(|| StoreError::Corrupt("invoice counter returned no row".into()))?;
    let number = number_row.big("last_number")?;
    let subtotal: i64 = draft.lines.iter().map(|(_, amount)| amount).sum();
    let total = subtotal.max(0);
    let (status, paid_at) = if total == 0 {
        (InvoiceStatus::Paid, Some(draft.now))
    } else {
        (InvoiceStatus::Open, None)
    };
    let id = Uuid::now_v7();
    let row = tx
        .fetch_optional(
            INSERT_INVOICE,
            &args![
                id,
                sub.tenant_id.as_str(),
                number,
                sub.id,
                draft.reason.as_str(),
                status.as_str(),
                draft.currency,
                draft.period_start,
                draft.period_end,
                subtotal,
                total,
                draft.now,
                paid_at,
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    for (no, (description, amount)) in draft.lines.iter().enumerate() {
        let no = i32::try_from(no).unwrap_or(i32::MAX);
        tx.execute(
            INSERT_LINE,
            &args![
                id,
                no,
                description.as_str(),
                *amount,
                draft.period_start,
                draft.period_end,
            ],
        )
        .await?;
    }
    let invoice = invoice_from(&row)?;
    record_invoice(tx, &invoice, INVOICE_ISSUED, None).await?;
    if invoice.status == InvoiceStatus::Paid {
        record_invoice(tx, &invoice, INVOICE_PAID_EVENT, None).await?;
    }
    Ok(Some(invoice))
}

async fn plan_in<T: SqlTx>(tx: &mut T, id: &str) -> Result<Option<Plan>> {
    // Read on the transaction's connection (a reader could lag on SQLite).
    let stmt = Stmt::write(GET_PLAN.text());
    tx.fetch_optional(stmt, &args![id])
        .await?
        .map(|r| plan_from(&r))
        .transpose()
}

fn micros_between(a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
    (b - a).num_microseconds().unwrap_or(i64::MAX)
}

#[async_trait]
impl<S: SqlBackend> BillingStore for S {
    async fn create_plan(&self, plan: &NewPlan) -> Result<bool> {
        let rows = self
            .execute(
                INSERT_PLAN,
                &args![
                    plan.id.as_str(),
                    plan.name.as_str(),
                    plan.amount_minor,
                    plan.currency.code(),
                    plan.cadence.interval.as_str(),
                    i32::try_from(plan.cadence.count).unwrap_or(i32::MAX),
                    plan.trial_days,
                    Utc::now(),
                ],
            )
            .await?;
        Ok(rows > 0)
    }

    async fn list_plans(&self) -> Result<Vec<Plan>> {
        let rows = self.fetch_all(LIST_PLANS, &[]).await?;
        rows.iter().map(plan_from).collect()
    }

    async fn get_plan(&self, id: &str) -> Result<Option<Plan>> {
        let row = self.fetch_optional(GET_PLAN, &args![id]).await?;
        row.map(|r| plan_from(&r)).transpose()
    }

    async fn set_plan_active(&self, id: &str, active: bool) -> Result<Option<Plan>> {
        let row = self
            .fetch_optional(SET_PLAN_ACTIVE, &args![id, active])
            .await?;
        row.map(|r| plan_from(&r)).transpose()
    }

    async fn subscribe(
        &self,
        tenant_id: &str,
        plan_id: &str,
        payment_method: &str,
        billing_email: Option<&str>,
        now: DateTime<Utc>,
        jobs: Vec<NewJob>,
    ) -> Result<std::result::Result<Subscribed, BillingRefusal>> {
        let mut tx = self.begin_tx().await?;
        let Some(plan) = plan_in(&mut tx, plan_id).await? else {
            return Ok(Err(BillingRefusal::UnknownPlan(plan_id.to_owned())));
        };
        if !plan.active {
            return Ok(Err(BillingRefusal::PlanInactive(plan.id)));
        }
        if let Some(row) = tx
            .fetch_optional(LIVE_SUBSCRIPTION, &args![tenant_id])
            .await?
        {
            return Ok(Err(BillingRefusal::AlreadySubscribed(row.uuid("id")?)));
        }
        let id = Uuid::now_v7();
        let trial_end =
            (plan.trial_days > 0).then(|| now + chrono::Duration::days(i64::from(plan.trial_days)));
        let (status, anchor, period, end) = match trial_end {
            Some(end) => (SubscriptionStatus::Trialing, end, -1, end),
            None => {
                let end = plan
                    .cadence
                    .period_end(now, 0)
                    .ok_or_else(|| StoreError::Corrupt("period end out of range".into()))?;
                (SubscriptionStatus::Active, now, 0, end)
            }
        };
        let Some(row) = tx
            .fetch_optional(
                INSERT_SUBSCRIPTION,
                &args![
                    id,
                    tenant_id,
                    plan.id.as_str(),
                    status.as_str(),
                    payment_method,
                    anchor,
                    period,
                    now,
                    end,
                    trial_end,
                    now,
                    billing_email,
                ],
            )
            .await?
        else {
            // A concurrent subscription of the same tenant committed first.
            let existing = self.list_subscriptions(tenant_id).await?;
            let live = existing
                .iter()
                .find(|s| s.status != SubscriptionStatus::Cancelled)
                .map_or(Uuid::nil(), |s| s.id);
            return Ok(Err(BillingRefusal::AlreadySubscribed(live)));
        };
        let subscription = subscription_from(&row)?;
        let mut all_jobs = jobs;
        let mut invoice = None;
        if trial_end.is_none() {
            let opened = open_invoice(
                &mut tx,
                Draft {
                    subscription: &subscription,
                    reason: InvoiceReason::Cycle,
                    currency: plan.currency.code(),
                    period_start: now,
                    period_end: end,
                    lines: vec![(plan.name.clone(), plan.amount_minor)],
                    now,
                },
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("a new subscription has an invoice".into()))?;
            if opened.status == InvoiceStatus::Open {
                all_jobs.push(charge_job(&opened, 1, now)?);
            }
            invoice = Some(opened);
        }
        tx.enqueue_jobs(all_jobs).await?;
        let jobs = tx.commit_tx().await?;
        Ok(Ok(Subscribed {
            subscription,
            invoice,
            jobs,
        }))
    }

    async fn get_subscription(&self, tenant_id: &str, id: Uuid) -> Result<Option<Subscription>> {
        let row = self
            .fetch_optional(GET_SUBSCRIPTION, &args![tenant_id, id])
            .await?;
        row.map(|r| subscription_from(&r)).transpose()
    }

    async fn list_subscriptions(&self, tenant_id: &str) -> Result<Vec<Subscription>> {
        let rows = self
            .fetch_all(LIST_SUBSCRIPTIONS, &args![tenant_id])
            .await?;
        rows.iter().map(subscription_from).collect()
    }

    async fn cancel_subscription(
        &self,
        tenant_id: &str,
        id: Uuid,
        at_period_end: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>> {
        let stmt = if at_period_end {
            CANCEL_AT_PERIOD_END
        } else {
            CANCEL_NOW
        };
        let row = self
            .fetch_optional(stmt, &args![tenant_id, id, now])
            .await?;
        row.map(|r| subscription_from(&r)).transpose()
    }

    async fn change_plan(
        &self,
        tenant_id: &str,
        id: Uuid,
        plan_id: &str,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<PlanChanged, BillingRefusal>> {
        let mut tx = self.begin_tx().await?;
        let select = locked("billing_subscriptions", S::FOR_UPDATE);
        let sub = match tx.fetch_optional(Stmt::write(&select), &args![id]).await? {
            Some(row) => subscription_from(&row)?,
            None => return Ok(Err(BillingRefusal::NoSubscription(id))),
        };
        if sub.tenant_id != tenant_id || sub.status == SubscriptionStatus::Cancelled {
            return Ok(Err(BillingRefusal::NoSubscription(id)));
        }
        if sub.plan_id == plan_id {
            return Ok(Err(BillingRefusal::SamePlan(sub.plan_id)));
        }
        let Some(new) = plan_in(&mut tx, plan_id).await? else {
            return Ok(Err(BillingRefusal::UnknownPlan(plan_id.to_owned())));
        };
        if !new.active {
            return Ok(Err(BillingRefusal::PlanInactive(new.id)));
        }
        let old = plan_in(&mut tx, &sub.plan_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("plan `{}` is gone", sub.plan_id)))?;
        if old.currency != new.currency || old.cadence != new.cadence {
            return Ok(Err(BillingRefusal::Incompatible {
                to: new.id.clone(),
                to_terms: terms(&new),
                from_terms: terms(&old),
            }));
        }
        let mut invoice = None;
        let mut credit = sub.credit_minor;
        let mut jobs = Vec::new();
        if sub.status != SubscriptionStatus::Trialing {
            let (start, end) = (sub.current_period_start, sub.current_period_end);
            let remaining = micros_between(now.max(start), end);
            let p = Proration::of(
                old.amount_minor,
                new.amount_minor,
                remaining,
                micros_between(start, end),
            );
            let mut lines = vec![
                (format!("Unused time on {}", old.name), p.credit_minor),
                (format!("Remaining time on {}", new.name), p.charge_minor),
            ];
            let net = p.net_minor();
            if net > 0 {
                let applied = credit.min(net);
                if applied > 0 {
                    lines.push(("Credit applied".to_owned(), -applied));
                }
                credit -= applied;
            } else {
                credit += -net;
            }
            let opened = open_invoice(
                &mut tx,
                Draft {
                    subscription: &sub,
                    reason: InvoiceReason::PlanChange,
                    currency: new.currency.code(),
                    period_start: now.max(start),
                    period_end: end,
                    lines,
                    now,
                },
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("proration invoice conflicted".into()))?;
            if opened.status == InvoiceStatus::Open {
                jobs.push(charge_job(&opened, 1, now)?);
            }
            invoice = Some(opened);
        }
        let row = tx
            .fetch_optional(SWITCH_PLAN, &args![id, new.id.as_str(), credit, now])
            .await?
            .ok_or_else(|| StoreError::Corrupt("subscription vanished".into()))?;
        let subscription = subscription_from(&row)?;
        tx.enqueue_jobs(jobs).await?;
        let jobs = tx.commit_tx().await?;
        Ok(Ok(PlanChanged {
            subscription,
            invoice,
            jobs,
        }))
    }

    async fn due_subscriptions(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>> {
        let rows = self
            .fetch_all(DUE_SUBSCRIPTIONS, &args![now, limit])
            .await?;
        rows.iter().map(|r| r.uuid("id")).collect()
    }

    async fn renew(&self, id: Uuid, now: DateTime<Utc>) -> Result<Renewal> {
        let mut tx = self.begin_tx().await?;
        let select = locked("billing_subscriptions", S::FOR_UPDATE);
        let sub = match tx.fetch_optional(Stmt::write(&select), &args![id]).await? {
            Some(row) => subscription_from(&row)?,
            None => return Ok(Renewal::NotDue),
        };
        if sub.status == SubscriptionStatus::Cancelled || sub.current_period_end > now {
            return Ok(Renewal::NotDue);
        }
        if sub.cancel_at_period_end {
            let row = tx
                .fetch_optional(END_SUBSCRIPTION, &args![id, now])
                .await?
                .ok_or_else(|| StoreError::Corrupt("subscription vanished".into()))?;
            let ended = subscription_from(&row)?;
            tx.commit_tx().await?;
            return Ok(Renewal::Ended(ended));
        }
        let plan = plan_in(&mut tx, &sub.plan_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("plan `{}` is gone", sub.plan_id)))?;
        let next = sub.period + 1;
        let start = sub.current_period_end;
        let end = u32::try_from(next)
            .ok()
            .and_then(|n| plan.cadence.period_end(sub.anchor, n))
            .ok_or_else(|| StoreError::Corrupt("period end out of range".into()))?;
        let applied = sub.credit_minor.min(plan.amount_minor);
        let mut lines = vec![(plan.name.clone(), plan.amount_minor)];
        if applied > 0 {
            lines.push(("Credit applied".to_owned(), -applied));
        }
        let Some(invoice) = open_invoice(
            &mut tx,
            Draft {
                subscription: &sub,
                reason: InvoiceReason::Cycle,
                currency: plan.currency.code(),
                period_start: start,
                period_end: end,
                lines,
                now,
            },
        )
        .await?
        else {
            // This period's invoice exists: another run opened it.
            return Ok(Renewal::NotDue);
        };
        let row = tx
            .fetch_optional(
                ADVANCE_SUBSCRIPTION,
                &args![id, next, start, end, applied, now],
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("subscription vanished".into()))?;
        let subscription = subscription_from(&row)?;
        if invoice.status == InvoiceStatus::Open {
            tx.enqueue_jobs(vec![charge_job(&invoice, 1, now)?]).await?;
        }
        let jobs = tx.commit_tx().await?;
        Ok(Renewal::Invoiced {
            subscription,
            invoice,
            jobs,
        })
    }

    async fn list_invoices(&self, tenant_id: &str, limit: i64) -> Result<Vec<Invoice>> {
        let rows = self
            .fetch_all(LIST_INVOICES, &args![tenant_id, limit])
            .await?;
        rows.iter().map(invoice_from).collect()
    }

    async fn get_invoice(
        &self,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<(Invoice, Vec<InvoiceLine>)>> {
        let Some(row) = self
            .fetch_optional(GET_INVOICE, &args![tenant_id, id])
            .await?
        else {
            return Ok(None);
        };
        let invoice = invoice_from(&row)?;
        let lines = self.fetch_all(INVOICE_LINES, &args![id]).await?;
        let lines = lines.iter().map(line_from).collect::<Result<_>>()?;
        Ok(Some((invoice, lines)))
    }

    async fn list_payments(&self, tenant_id: &str, invoice_id: Uuid) -> Result<Vec<Payment>> {
        let rows = self
            .fetch_all(LIST_PAYMENTS, &args![tenant_id, invoice_id])
            .await?;
        rows.iter().map(payment_from).collect()
    }

    async fn begin_charge(
        &self,
        invoice_id: Uuid,
        provider: &str,
        now: DateTime<Utc>,
    ) -> Result<ChargeStart> {
        let mut tx = self.begin_tx().await?;
        let select = locked("billing_invoices", S::FOR_UPDATE);
        let invoice = match tx
            .fetch_optional(Stmt::write(&select), &args![invoice_id])
            .await?
        {
            Some(row) => invoice_from(&row)?,
            None => return Ok(ChargeStart::Missing),
        };
        if invoice.status != InvoiceStatus::Open {
            return Ok(ChargeStart::Settled(invoice.status));
        }
        let payment_method = tx
            .fetch_optional(PAYMENT_METHOD, &args![invoice.subscription_id])
            .await?
            .ok_or_else(|| StoreError::Corrupt("invoice without subscription".into()))?
            .text("payment_method")?;
        if let Some(row) = tx
            .fetch_optional(PENDING_PAYMENT, &args![invoice_id])
            .await?
        {
            return Ok(ChargeStart::Attempt {
                payment: Box::new(payment_from(&row)?),
                payment_method,
                resumed: true,
            });
        }
        let attempt = tx
            .fetch_optional(NEXT_ATTEMPT, &args![invoice_id])
            .await?
            .ok_or_else(|| StoreError::Corrupt("no attempt count".into()))?
            .int("next")?;
        let key = format!("pysaas-{invoice_id}-{attempt}");
        let row = tx
            .fetch_optional(
                INSERT_PAYMENT,
                &args![
                    Uuid::now_v7(),
                    invoice_id,
                    invoice.tenant_id.as_str(),
                    attempt,
                    invoice.total_minor,
                    invoice.currency.code(),
                    provider,
                    key.as_str(),
                    now,
                ],
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("payment insert returned no row".into()))?;
        let payment = payment_from(&row)?;
        tx.commit_tx().await?;
        Ok(ChargeStart::Attempt {
            payment: Box::new(payment),
            payment_method,
            resumed: false,
        })
    }

    async fn void_invoice(&self, id: Uuid, by: &str) -> Result<VoidOutcome> {
        let mut tx = self.begin_tx().await?;
        let select = locked("billing_invoices", S::FOR_UPDATE);
        let invoice = match tx.fetch_optional(Stmt::write(&select), &args![id]).await? {
            Some(row) => invoice_from(&row)?,
            None => return Ok(VoidOutcome::Missing),
        };
        if invoice.status != InvoiceStatus::Open {
            return Ok(VoidOutcome::NotOpen(invoice.status));
        }
        if tx
            .fetch_optional(PENDING_PAYMENT, &args![id])
            .await?
            .is_some()
        {
            return Ok(VoidOutcome::ChargeInFlight);
        }
        let row = tx
            .fetch_optional(INVOICE_VOID, &args![id])
            .await?
            .ok_or_else(|| StoreError::Corrupt("invoice vanished".into()))?;
        let voided = invoice_from(&row)?;
        // Past due only for what is still open: with nothing else owed, it is active again.
        let still_owed = tx
            .fetch_optional(OTHER_OPEN, &args![voided.subscription_id, id])
            .await?
            .is_some();
        if !still_owed {
            tx.execute(REACTIVATE, &args![voided.subscription_id, Utc::now()])
                .await?;
        }
        record_invoice(&mut tx, &voided, INVOICE_VOIDED, Some(by)).await?;
        tx.commit_tx().await?;
        Ok(VoidOutcome::Voided(voided))
    }

    async fn finish_charge(
        &self,
        payment_id: Uuid,
        result: ChargeResult,
        now: DateTime<Utc>,
        dunning: &[Duration],
        notify: &Notify,
    ) -> Result<ChargeFinish> {
        let mut tx = self.begin_tx().await?;
        let select = locked("billing_payments", S::FOR_UPDATE);
        let payment = tx
            .fetch_optional(Stmt::write(&select), &args![payment_id])
            .await?
            .map(|r| payment_from(&r))
            .transpose()?
            .ok_or_else(|| StoreError::Corrupt(format!("no payment {payment_id}")))?;
        if payment.status != PaymentStatus::Pending {
            return Ok(ChargeFinish::AlreadyRecorded(payment.status));
        }
        let invoice_id = payment.invoice_id;
        let invoice_row = |row: Option<_>| -> Result<Invoice> {
            let row = row.ok_or_else(|| StoreError::Corrupt("invoice vanished".into()))?;
            invoice_from(&row)
        };
        let finish = match result {
            ChargeResult::Succeeded { provider_ref } => {
                tx.execute(
                    PAYMENT_SUCCEEDED,
                    &args![payment_id, provider_ref.as_str(), now],
                )
                .await?;
                let invoice = invoice_row(
                    tx.fetch_optional(INVOICE_PAID, &args![invoice_id, now])
                        .await?,
                )?;
                record_attempt(&mut tx, &payment, None).await?;
                record_invoice(&mut tx, &invoice, INVOICE_PAID_EVENT, None).await?;
                tx.execute(REACTIVATE, &args![invoice.subscription_id, now])
                    .await?;
                ChargeFinish::Paid(invoice)
            }
            ChargeResult::Declined {
                provider_ref,
                code,
                message,
            } => {
                tx.execute(
                    PAYMENT_FAILED,
                    &args![
                        payment_id,
                        provider_ref.as_deref(),
                        code.as_str(),
                        message.as_str(),
                        now,
                    ],
                )
                .await?;
                record_attempt(&mut tx, &payment, Some(code.as_str())).await?;
                let select = locked("billing_invoices", "");
                let current = invoice_row(
                    tx.fetch_optional(Stmt::write(&select), &args![invoice_id])
                        .await?,
                )?;
                if current.status != InvoiceStatus::Open {
                    // Voided meanwhile: the decline is recorded, nothing more is owed.
                    tx.commit_tx().await?;
                    return Ok(ChargeFinish::AlreadyRecorded(PaymentStatus::Failed));
                }
                let declines = usize::try_from(current.attempt_count).unwrap_or(0) + 1;
                match dunning.get(declines - 1) {
                    Some(wait) => {
                        let next = now
                            + chrono::Duration::from_std(*wait)
                                .unwrap_or(chrono::Duration::days(1));
                        let invoice = invoice_row(
                            tx.fetch_optional(INVOICE_DECLINED, &args![invoice_id, Some(next)])
                                .await?,
                        )?;
                        tx.execute(MARK_PAST_DUE, &args![invoice.subscription_id, now])
                            .await?;
                        let n = i32::try_from(declines).unwrap_or(i32::MAX) + 1;
                        tx.enqueue_jobs(vec![charge_job(&invoice, n, next)?])
                            .await?;
                        ChargeFinish::Retrying {
                            invoice,
                            next_attempt_at: next,
                        }
                    }
                    None => {
                        tx.execute(INVOICE_DECLINED, &args![invoice_id, None::<DateTime<Utc>>])
                            .await?;
                        let invoice = invoice_row(
                            tx.fetch_optional(INVOICE_UNCOLLECTIBLE, &args![invoice_id])
                                .await?,
                        )?;
                        record_invoice(&mut tx, &invoice, INVOICE_UNCOLLECTIBLE_EVENT, None)
                            .await?;
                        tx.execute(CANCEL_UNPAID, &args![invoice.subscription_id, now])
                            .await?;
                        ChargeFinish::GaveUp {
                            invoice,
                            jobs: Vec::new(),
                        }
                    }
                }
            }
        };
        // The caller's notices of this outcome commit with it.
        let subscription_id = match &finish {
            ChargeFinish::Paid(i)
            | ChargeFinish::Retrying { invoice: i, .. }
            | ChargeFinish::GaveUp { invoice: i, .. } => i.subscription_id,
            ChargeFinish::AlreadyRecorded(_) => Uuid::nil(),
        };
        let select = locked("billing_subscriptions", "");
        let subscription = tx
            .fetch_optional(Stmt::write(&select), &args![subscription_id])
            .await?
            .map(|r| subscription_from(&r))
            .transpose()?
            .ok_or_else(|| StoreError::Corrupt("invoice without subscription".into()))?;
        tx.enqueue_jobs(notify(&finish, &subscription)).await?;
        let created = tx.commit_tx().await?;
        Ok(match finish {
            ChargeFinish::GaveUp { invoice, .. } => ChargeFinish::GaveUp {
                invoice,
                jobs: created,
            },
            other => other,
        })
    }
}
