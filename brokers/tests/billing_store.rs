//! One conformance suite for billing's tables: each test runs against SQLite and against
//! PostgreSQL (a fresh schema per test).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, SubsecRound, TimeZone, Utc};
use pysaas_brokers::store::billing::{
    BillingRefusal, ChargeFinish, ChargeResult, ChargeStart, InvoiceReason, InvoiceStatus, NewPlan,
    PaymentStatus, Renewal, Subscription, SubscriptionStatus,
};
use pysaas_brokers::testing::TestDb;
use pysaas_brokers::JobStore;
use pysaas_jobs::billing::{Cadence, Interval};
use pysaas_jobs::{JobState, NewJob};
use serde_json::json;
use uuid::Uuid;

fn plan(id: &str, amount: i64, interval: Interval, trial_days: i32) -> NewPlan {
    NewPlan {
        id: id.into(),
        name: format!("Plan {id}"),
        amount_minor: amount,
        currency: "EUR".parse().unwrap(),
        cadence: Cadence { interval, count: 1 },
        trial_days,
    }
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
}

/// Creates `plan` (if new) and subscribes `tenant` to it at `when`.
async fn subscribed(
    s: &dyn JobStore,
    plan: NewPlan,
    tenant: &str,
    when: DateTime<Utc>,
) -> pysaas_brokers::store::billing::Subscribed {
    s.create_plan(&plan).await.unwrap();
    s.subscribe(tenant, &plan.id, "pm_card_visa", None, when, vec![])
        .await
        .unwrap()
        .unwrap()
}

fn no_notice(_: &ChargeFinish, _: &Subscription) -> Vec<NewJob> {
    Vec::new()
}

/// `job` when dunning gives up, nothing otherwise.
fn give_up_notice(
    job: &NewJob,
) -> impl Fn(&ChargeFinish, &Subscription) -> Vec<NewJob> + Send + Sync {
    let job = job.clone();
    move |finish, _| match finish {
        ChargeFinish::GaveUp { .. } => vec![job.clone()],
        _ => Vec::new(),
    }
}

const DUNNING: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(120)];

async fn plans_are_created_listed_and_archived(db: TestDb) {
    let s = &db.store;
    assert!(s
        .create_plan(&plan("basic", 900, Interval::Month, 0))
        .await
        .unwrap());
    assert!(!s
        .create_plan(&plan("basic", 1, Interval::Day, 0))
        .await
        .unwrap());
    s.create_plan(&plan("pro", 2900, Interval::Month, 14))
        .await
        .unwrap();
    let plans = s.list_plans().await.unwrap();
    assert_eq!(
        plans.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["basic", "pro"]
    );
    let basic = s.get_plan("basic").await.unwrap().unwrap();
    assert_eq!((basic.amount_minor, basic.currency.code()), (900, "EUR"));
    assert_eq!(basic.cadence.interval, Interval::Month);
    let archived = s.set_plan_active("basic", false).await.unwrap().unwrap();
    assert!(!archived.active);
    assert!(s.set_plan_active("nope", false).await.unwrap().is_none());
    assert_eq!(
        s.subscribe("acme", "basic", "pm_card_visa", None, at(1, 0), vec![])
            .await
            .unwrap()
            .unwrap_err(),
        BillingRefusal::PlanInactive("basic".into())
    );
    assert_eq!(
        s.subscribe("acme", "gold", "pm_card_visa", None, at(1, 0), vec![])
            .await
            .unwrap()
            .unwrap_err(),
        BillingRefusal::UnknownPlan("gold".into())
    );
}

async fn subscribing_opens_the_first_invoice_with_its_jobs_in_one_transaction(db: TestDb) {
    let s = &db.store;
    s.create_plan(&plan("basic", 900, Interval::Month, 0))
        .await
        .unwrap();
    let welcome = NewJob::new("acme", "system.noop", "notifications", json!({}));
    let sub = s
        .subscribe(
            "acme",
            "basic",
            "pm_card_visa",
            None,
            at(1, 9),
            vec![welcome.clone()],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub.subscription.status, SubscriptionStatus::Active);
    assert_eq!(
        sub.subscription.current_period_end,
        at(1, 9) + Span::days(31)
    );
    let invoice = sub.invoice.unwrap();
    assert_eq!((invoice.number, invoice.total_minor), (1, 900));
    assert_eq!(invoice.status, InvoiceStatus::Open);
    let kinds: BTreeSet<_> = sub.jobs.iter().map(|j| j.kind.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["billing.charge_invoice", "system.noop"])
    );
    let charge = sub
        .jobs
        .iter()
        .find(|j| j.kind == "billing.charge_invoice")
        .unwrap();
    assert_eq!(charge.payload, json!({"invoice_id": invoice.id}));
    assert_eq!(charge.queue, "billing");
    assert!(s.get("acme", welcome.id).await.unwrap().is_some());
    let (stored, lines) = s.get_invoice("acme", invoice.id).await.unwrap().unwrap();
    assert_eq!(stored, invoice);
    assert_eq!(lines.len(), 1);
    assert_eq!((lines[0].amount_minor, lines[0].line_no), (900, 0));
    // Other tenants see none of it.
    assert!(s.get_invoice("other", invoice.id).await.unwrap().is_none());
    assert!(s
        .get_subscription("other", sub.subscription.id)
        .await
        .unwrap()
        .is_none());
    // One live subscription per tenant.
    assert_eq!(
        s.subscribe("acme", "basic", "pm_card_visa", None, at(2, 0), vec![])
            .await
            .unwrap()
            .unwrap_err(),
        BillingRefusal::AlreadySubscribed(sub.subscription.id)
    );
    // Refused: nothing was written, not even the caller's job.
    let stray = NewJob::new("acme", "system.noop", "notifications", json!({}));
    let _ = s
        .subscribe(
            "acme",
            "basic",
            "pm_card_visa",
            None,
            at(2, 0),
            vec![stray.clone()],
        )
        .await
        .unwrap();
    assert!(s.get("acme", stray.id).await.unwrap().is_none());
    assert_eq!(s.list_invoices("acme", 10).await.unwrap().len(), 1);
}

async fn renewals_open_each_period_once_however_many_runs_race(db: TestDb) {
    let s: Arc<dyn JobStore> = db.store.clone();
    let sub = subscribed(
        s.as_ref(),
        plan("daily", 100, Interval::Day, 0),
        "acme",
        at(1, 0),
    )
    .await
    .subscription;
    // Three more periods are due; eight runs race, each renewing until none is due.
    let when = at(4, 1);
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut opened = Vec::new();
                loop {
                    let due = s.due_subscriptions(when, 10).await.unwrap();
                    if due.is_empty() {
                        return opened;
                    }
                    for id in due {
                        if let Renewal::Invoiced { invoice, .. } = s.renew(id, when).await.unwrap()
                        {
                            opened.push(invoice.number);
                        }
                    }
                }
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for run in runs {
        numbers.extend(run.await.unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        [2, 3, 4],
        "each period once, numbered without gaps"
    );
    let invoices = s.list_invoices("acme", 10).await.unwrap();
    assert_eq!(
        invoices.iter().map(|i| i.number).collect::<Vec<_>>(),
        [4, 3, 2, 1]
    );
    let starts: Vec<_> = invoices.iter().rev().map(|i| i.period_start).collect();
    assert_eq!(starts, [at(1, 0), at(2, 0), at(3, 0), at(4, 0)]);
    assert!(invoices
        .iter()
        .all(|i| i.period_end - i.period_start == Span::days(1)));
    let now = s.get_subscription("acme", sub.id).await.unwrap().unwrap();
    assert_eq!((now.period, now.current_period_end), (3, at(5, 0)));
    assert_eq!(s.renew(sub.id, when).await.unwrap(), Renewal::NotDue);
    // Another tenant numbers from 1.
    let other = s
        .subscribe("globex", "daily", "pm_card_visa", None, at(1, 0), vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.invoice.unwrap().number, 1);
}

async fn trials_end_into_the_first_invoice_and_cancellation_at_period_end(db: TestDb) {
    let s = &db.store;
    let sub = subscribed(
        s.as_ref(),
        plan("pro", 2900, Interval::Month, 14),
        "acme",
        at(1, 0),
    )
    .await;
    assert!(sub.invoice.is_none());
    assert_eq!(sub.subscription.status, SubscriptionStatus::Trialing);
    assert_eq!(sub.subscription.trial_end, Some(at(15, 0)));
    let id = sub.subscription.id;
    assert_eq!(s.renew(id, at(14, 23)).await.unwrap(), Renewal::NotDue);
    let Renewal::Invoiced {
        subscription,
        invoice,
        jobs,
    } = s.renew(id, at(15, 0)).await.unwrap()
    else {
        panic!("the trial's end opens the first invoice");
    };
    assert_eq!(subscription.status, SubscriptionStatus::Active);
    assert_eq!(
        (invoice.period_start, invoice.total_minor),
        (at(15, 0), 2900)
    );
    assert_eq!(
        invoice.period_end,
        Utc.with_ymd_and_hms(2026, 4, 15, 0, 0, 0).unwrap()
    );
    assert_eq!(jobs.len(), 1);
    // Cancelled at period end: the next run ends it instead of invoicing.
    let cancelled = s
        .cancel_subscription("acme", id, true, at(20, 0))
        .await
        .unwrap()
        .unwrap();
    assert!(cancelled.cancel_at_period_end);
    assert_eq!(cancelled.status, SubscriptionStatus::Active);
    let end = invoice.period_end;
    match s.renew(id, end).await.unwrap() {
        Renewal::Ended(sub) => {
            assert_eq!(sub.status, SubscriptionStatus::Cancelled);
            assert_eq!(sub.cancelled_at, Some(end));
        }
        other => panic!("expected the end, got {other:?}"),
    }
    assert_eq!(s.list_invoices("acme", 10).await.unwrap().len(), 1);
    // Cancelled now: the tenant may subscribe again.
    assert!(s
        .cancel_subscription("acme", id, false, end)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .subscribe("acme", "pro", "pm_card_visa", None, end, vec![])
        .await
        .unwrap()
        .is_ok());
}

async fn plan_changes_prorate_exactly_and_downgrades_become_credit(db: TestDb) {
    let s = &db.store;
    s.create_plan(&plan("small", 1000, Interval::Day, 0))
        .await
        .unwrap();
    s.create_plan(&plan("large", 3000, Interval::Day, 0))
        .await
        .unwrap();
    let mut yen = plan("yen", 1000, Interval::Day, 0);
    yen.currency = "JPY".parse().unwrap();
    s.create_plan(&yen).await.unwrap();
    let id = s
        .subscribe("acme", "small", "pm_card_visa", None, at(1, 0), vec![])
        .await
        .unwrap()
        .unwrap()
        .subscription
        .id;
    // Half the day left: credit 5.00 of the small plan, charge 15.00 of the large.
    let up = s
        .change_plan("acme", id, "large", at(1, 12))
        .await
        .unwrap()
        .unwrap();
    let invoice = up.invoice.unwrap();
    assert_eq!(invoice.reason, InvoiceReason::PlanChange);
    assert_eq!((invoice.number, invoice.total_minor), (2, 1000));
    assert_eq!(up.jobs.len(), 1, "the proration is charged");
    let (_, lines) = s.get_invoice("acme", invoice.id).await.unwrap().unwrap();
    assert_eq!(
        lines.iter().map(|l| l.amount_minor).collect::<Vec<_>>(),
        [-500, 1500]
    );
    // A third of the day left, back down: -10.00 + 3.33 = -6.67, owed to the tenant.
    let third = at(1, 16);
    let down = s
        .change_plan("acme", id, "small", third)
        .await
        .unwrap()
        .unwrap();
    let credit_invoice = down.invoice.unwrap();
    assert_eq!(
        (credit_invoice.subtotal_minor, credit_invoice.total_minor),
        (-667, 0)
    );
    assert_eq!(credit_invoice.status, InvoiceStatus::Paid);
    assert!(down.jobs.is_empty());
    assert_eq!(down.subscription.credit_minor, 667);
    // The next period's invoice takes the credit off.
    let Renewal::Invoiced { invoice, .. } = s.renew(id, at(2, 0)).await.unwrap() else {
        panic!("due");
    };
    assert_eq!((invoice.subtotal_minor, invoice.total_minor), (333, 333));
    let sub = s.get_subscription("acme", id).await.unwrap().unwrap();
    assert_eq!(sub.credit_minor, 0);
    // Refused changes.
    assert_eq!(
        s.change_plan("acme", id, "small", at(2, 1))
            .await
            .unwrap()
            .unwrap_err(),
        BillingRefusal::SamePlan("small".into())
    );
    assert!(matches!(
        s.change_plan("acme", id, "yen", at(2, 1)).await.unwrap(),
        Err(BillingRefusal::Incompatible { .. })
    ));
    assert_eq!(
        s.change_plan("other", id, "large", at(2, 1))
            .await
            .unwrap()
            .unwrap_err(),
        BillingRefusal::NoSubscription(id)
    );
}

async fn charges_are_recorded_once_and_dunning_gives_up_after_its_last_step(db: TestDb) {
    let s = &db.store;
    let sub = subscribed(
        s.as_ref(),
        plan("basic", 900, Interval::Month, 0),
        "acme",
        at(1, 0),
    )
    .await;
    let invoice = sub.invoice.unwrap();
    let now = Utc::now().trunc_subsecs(6);
    let ChargeStart::Attempt {
        payment,
        payment_method,
        resumed,
    } = s.begin_charge(invoice.id, "local", now).await.unwrap()
    else {
        panic!("an open invoice is charged");
    };
    assert!(!resumed);
    assert_eq!(payment_method, "pm_card_visa");
    assert_eq!((payment.attempt, payment.amount_minor), (1, 900));
    assert_eq!(payment.status, PaymentStatus::Pending);
    // Asked again before an answer is recorded: the same attempt and key.
    let ChargeStart::Attempt {
        payment: again,
        resumed,
        ..
    } = s.begin_charge(invoice.id, "local", now).await.unwrap()
    else {
        panic!("still open");
    };
    assert!(resumed);
    assert_eq!(again.idempotency_key, payment.idempotency_key);
    let declined = || ChargeResult::Declined {
        provider_ref: Some("pi_1".into()),
        code: "card_declined".into(),
        message: "Your card was declined.".into(),
    };
    let give_up = NewJob::new("acme", "system.noop", "notifications", json!({}));
    let first = s
        .finish_charge(payment.id, declined(), now, &DUNNING, &no_notice)
        .await
        .unwrap();
    let ChargeFinish::Retrying {
        next_attempt_at, ..
    } = first
    else {
        panic!("expected a dunning retry, got {first:?}");
    };
    assert_eq!(next_attempt_at, now + Span::seconds(60));
    // The answer is recorded once.
    assert_eq!(
        s.finish_charge(payment.id, declined(), now, &DUNNING, &no_notice)
            .await
            .unwrap(),
        ChargeFinish::AlreadyRecorded(PaymentStatus::Failed)
    );
    let scheduled = s
        .list(&pysaas_brokers::JobFilter {
            tenant_id: "acme".into(),
            state: None,
            kind: Some("billing.charge_invoice".into()),
            queue: None,
            limit: 100,
            before: None,
            payload: None,
        })
        .await
        .unwrap();
    assert!(scheduled
        .iter()
        .any(|j| j.state == JobState::Scheduled && j.run_at == next_attempt_at));
    let sub_now = s
        .get_subscription("acme", sub.subscription.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub_now.status, SubscriptionStatus::PastDue);
    // Second and third declines: the last step, then giving up.
    for n in 2..=3 {
        let ChargeStart::Attempt { payment, .. } =
            s.begin_charge(invoice.id, "local", now).await.unwrap()
        else {
            panic!("open");
        };
        assert_eq!(payment.attempt, n);
        assert_ne!(payment.idempotency_key, again.idempotency_key);
        let outcome = s
            .finish_charge(
                payment.id,
                declined(),
                now,
                &DUNNING,
                &give_up_notice(&give_up),
            )
            .await
            .unwrap();
        match (n, outcome) {
            (2, ChargeFinish::Retrying { .. }) => {}
            (3, ChargeFinish::GaveUp { invoice, jobs }) => {
                assert_eq!(invoice.status, InvoiceStatus::Uncollectible);
                assert_eq!(invoice.attempt_count, 3);
                assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [give_up.id]);
            }
            (n, other) => panic!("decline {n}: {other:?}"),
        }
    }
    let ended = s
        .get_subscription("acme", sub.subscription.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.status, SubscriptionStatus::Cancelled);
    assert_eq!(
        s.begin_charge(invoice.id, "local", now).await.unwrap(),
        ChargeStart::Settled(InvoiceStatus::Uncollectible)
    );
    let payments = s.list_payments("acme", invoice.id).await.unwrap();
    assert_eq!(
        payments.iter().map(|p| p.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(s
        .list_payments("other", invoice.id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.begin_charge(Uuid::now_v7(), "local", now).await.unwrap(),
        ChargeStart::Missing
    );
}

async fn a_captured_charge_pays_the_invoice_and_reactivates(db: TestDb) {
    let s = &db.store;
    let sub = subscribed(
        s.as_ref(),
        plan("basic", 900, Interval::Month, 0),
        "acme",
        at(1, 0),
    )
    .await;
    let invoice = sub.invoice.unwrap();
    let now = Utc::now().trunc_subsecs(6);
    let start = |s: Arc<dyn JobStore>| async move {
        match s.begin_charge(invoice.id, "local", now).await.unwrap() {
            ChargeStart::Attempt { payment, .. } => payment,
            other => panic!("{other:?}"),
        }
    };
    let first = start(db.store.clone()).await;
    s.finish_charge(
        first.id,
        ChargeResult::Declined {
            provider_ref: None,
            code: "insufficient_funds".into(),
            message: "no".into(),
        },
        now,
        &DUNNING,
        &no_notice,
    )
    .await
    .unwrap();
    let second = start(db.store.clone()).await;
    let paid = s
        .finish_charge(
            second.id,
            ChargeResult::Succeeded {
                provider_ref: "pi_2".into(),
            },
            now,
            &DUNNING,
            &no_notice,
        )
        .await
        .unwrap();
    let ChargeFinish::Paid(invoice) = paid else {
        panic!("{paid:?}");
    };
    assert_eq!(
        (invoice.status, invoice.paid_at),
        (InvoiceStatus::Paid, Some(now))
    );
    assert_eq!(invoice.next_attempt_at, None);
    let sub = s
        .get_subscription("acme", sub.subscription.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert_eq!(
        s.begin_charge(invoice.id, "local", now).await.unwrap(),
        ChargeStart::Settled(InvoiceStatus::Paid)
    );
    let payments = s.list_payments("acme", invoice.id).await.unwrap();
    assert_eq!(payments[1].provider_ref.as_deref(), Some("pi_2"));
    assert_eq!(payments[1].status, PaymentStatus::Succeeded);
}

/// With events on, billing's changes are audit facts recorded with them — issued, each
/// attempt's answer, paid (with the revenue it recognises), voided — in minor units, no card
/// details. An invoice is voided only while open and no charge of it is in flight.
async fn invoices_and_payments_are_audit_facts_and_void_only_when_open(db: TestDb) {
    use pysaas_brokers::store::billing::VoidOutcome;
    let s = &db.store;
    s.set_events_enabled(true).await.unwrap();
    let invoice = subscribed(
        s.as_ref(),
        plan("basic", 900, Interval::Month, 0),
        "acme",
        at(1, 0),
    )
    .await
    .invoice
    .unwrap();
    let now = Utc::now().trunc_subsecs(6);
    let ChargeStart::Attempt { payment, .. } =
        s.begin_charge(invoice.id, "local", now).await.unwrap()
    else {
        panic!("no attempt");
    };
    assert_eq!(
        s.void_invoice(invoice.id, "user op").await.unwrap(),
        VoidOutcome::ChargeInFlight
    );
    let declined = ChargeResult::Declined {
        provider_ref: Some("pi_0".into()),
        code: "card_declined".into(),
        message: "Your card was declined.".into(),
    };
    s.finish_charge(payment.id, declined, now, &DUNNING, &no_notice)
        .await
        .unwrap();
    let ChargeStart::Attempt { payment, .. } =
        s.begin_charge(invoice.id, "local", now).await.unwrap()
    else {
        panic!("no second attempt");
    };
    let paid = ChargeResult::Succeeded {
        provider_ref: "pi_1".into(),
    };
    s.finish_charge(payment.id, paid, now, &DUNNING, &no_notice)
        .await
        .unwrap();
    assert_eq!(
        s.void_invoice(invoice.id, "user op").await.unwrap(),
        VoidOutcome::NotOpen(InvoiceStatus::Paid)
    );
    let other = subscribed(
        s.as_ref(),
        plan("basic", 900, Interval::Month, 0),
        "globex",
        at(1, 0),
    )
    .await
    .invoice
    .unwrap();
    // Declined once: past due; voided, nothing else is owed and it is active again.
    let ChargeStart::Attempt { payment, .. } =
        s.begin_charge(other.id, "local", now).await.unwrap()
    else {
        panic!("no attempt");
    };
    let declined = ChargeResult::Declined {
        provider_ref: None,
        code: "card_declined".into(),
        message: "Your card was declined.".into(),
    };
    s.finish_charge(payment.id, declined, now, &DUNNING, &no_notice)
        .await
        .unwrap();
    let status = |s: Arc<dyn JobStore>, id| async move {
        s.get_subscription("globex", id)
            .await
            .unwrap()
            .unwrap()
            .status
    };
    assert_eq!(
        status(db.store.clone(), other.subscription_id).await,
        SubscriptionStatus::PastDue
    );
    let VoidOutcome::Voided(voided) = s.void_invoice(other.id, "user op").await.unwrap() else {
        panic!("not voided");
    };
    assert_eq!(voided.status, InvoiceStatus::Void);
    assert_eq!(
        status(db.store.clone(), other.subscription_id).await,
        SubscriptionStatus::Active
    );
    assert_eq!(
        s.begin_charge(other.id, "local", now).await.unwrap(),
        ChargeStart::Settled(InvoiceStatus::Void)
    );
    assert_eq!(
        s.void_invoice(Uuid::now_v7(), "user op").await.unwrap(),
        VoidOutcome::Missing
    );

    let facts: Vec<_> = pysaas_brokers::testing::recorded_facts(s.as_ref(), "t")
        .await
        .into_iter()
        .filter(|f| f.event_type.starts_with("pysaas.billing."))
        .collect();
    let seen: Vec<(&str, &str)> = facts
        .iter()
        .map(|f| (f.tenant_id.as_str(), f.event_type.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("acme", "pysaas.billing.invoice_issued"),
            ("acme", "pysaas.billing.payment_attempted"),
            ("acme", "pysaas.billing.payment_attempted"),
            ("acme", "pysaas.billing.invoice_paid"),
            ("globex", "pysaas.billing.invoice_issued"),
            ("globex", "pysaas.billing.payment_attempted"),
            ("globex", "pysaas.billing.invoice_voided"),
        ]
    );
    assert_eq!(facts[0].subject, format!("invoices/{}", invoice.id));
    assert_eq!(facts[0].data.to_value()["total_minor"], 900);
    assert_eq!(facts[0].data.to_value()["currency"], "EUR");
    assert_eq!(
        (
            facts[1].data.to_value()["outcome"].as_str(),
            facts[1].data.to_value()["code"].as_str()
        ),
        (Some("declined"), Some("card_declined"))
    );
    assert_eq!(facts[2].data.to_value()["attempt"], 2);
    assert_eq!(facts[6].data.to_value()["by"], "user op");
    for fact in &facts {
        assert!(!fact.data.to_string().contains("pm_card"), "{}", fact.data);
    }
    // Paid with something to pay: revenue recognised, on the analytics stream.
    let events = pysaas_jobs::events::events_of(&facts[3]).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1].1.event_type,
        "pysaas.analytics.revenue_recognised"
    );
    assert_eq!(
        events[1].1.data,
        json!({"invoice_id": invoice.id, "currency": "EUR", "amount_minor": 900})
    );
}

pysaas_brokers::each_store!(
    plans_are_created_listed_and_archived,
    subscribing_opens_the_first_invoice_with_its_jobs_in_one_transaction,
    renewals_open_each_period_once_however_many_runs_race,
    trials_end_into_the_first_invoice_and_cancellation_at_period_end,
    plan_changes_prorate_exactly_and_downgrades_become_credit,
    charges_are_recorded_once_and_dunning_gives_up_after_its_last_step,
    a_captured_charge_pays_the_invoice_and_reactivates,
    invoices_and_payments_are_audit_facts_and_void_only_when_open,
);
