//! Billing end to end against real servers: the API and worker on PostgreSQL or SQLite, charges
//! through the local payment provider (`pysaas payments-sim`'s server, here on a port of the
//! test's own), and `pysaas worker --queues billing` children killed with SIGKILL between the
//! provider's answer and the state write.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use pysaas::testing::{spawn_app, TestApp};
use pysaas::{App, Config, Roles};
use pysaas_brokers::store::billing::{InvoiceStatus, NewPlan, PaymentStatus, SubscriptionStatus};
use pysaas_brokers::testing::{Backend, TestDb};
use pysaas_brokers::JobStore;
use pysaas_jobs::billing::{Cadence, Interval};
use pysaas_jobs::kinds::notification::Email;
use serde_json::{json, Value};
use uuid::Uuid;

/// The local payment provider on a port of its own; stopped when dropped.
struct Provider {
    url: String,
    http: reqwest::Client,
    stop: tokio_util::sync::CancellationToken,
}

impl Provider {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(pysaas::payments_sim::serve(listener, None, stop.clone()));
        Provider {
            url,
            http: reqwest::Client::new(),
            stop,
        }
    }

    /// Fails (or holds) the next `times` charge requests.
    async fn fault(&self, fault: &str, times: u32, hold_ms: u64) {
        let status = self
            .http
            .post(format!("{}/_sim/faults", self.url))
            .json(&json!({"fault": fault, "times": times, "hold_ms": hold_ms}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 204);
    }

    /// Answers the next charge request with a 429 asking to wait `seconds`.
    async fn rate_limit(&self, seconds: u64) {
        let status = self
            .http
            .post(format!("{}/_sim/faults", self.url))
            .json(&json!({"fault": "rate_limit", "times": 1, "retry_after": seconds}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 204);
    }

    /// Every PaymentIntent it made, and how many requests it answered from a saved answer.
    async fn intents(&self) -> (Vec<Value>, u64) {
        let body: Value = self
            .http
            .get(format!("{}/_sim/payment_intents", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            body["data"].as_array().unwrap().clone(),
            body["replays"].as_u64().unwrap(),
        )
    }

    /// The intents charged for `invoice`.
    async fn charged(&self, invoice: Uuid) -> Vec<Value> {
        let (all, _) = self.intents().await;
        all.into_iter()
            .filter(|i| i["metadata"]["invoice_id"] == json!(invoice.to_string()))
            .collect()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn monthly(id: &str, amount: i64) -> NewPlan {
    NewPlan {
        id: id.into(),
        name: format!("Plan {id}"),
        amount_minor: amount,
        currency: "EUR".parse().unwrap(),
        cadence: Cadence {
            interval: Interval::Month,
            count: 1,
        },
        trial_days: 0,
    }
}

async fn wait_for<T>(within: Duration, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `acme`'s invoice `id` is `status`.
async fn wait_status(
    store: &dyn JobStore,
    id: Uuid,
    status: InvoiceStatus,
    within_s: u64,
    what: &str,
) {
    wait_for(Duration::from_secs(within_s), what, async || {
        (invoice_status(store, "acme", id).await == status).then_some(())
    })
    .await;
}

async fn invoice_status(store: &dyn JobStore, tenant: &str, id: Uuid) -> InvoiceStatus {
    store
        .get_invoice(tenant, id)
        .await
        .unwrap()
        .unwrap()
        .0
        .status
}

/// A config for `db`, charging through `provider`.
fn config_for(db: &TestDb, provider: &Provider) -> Config {
    let mut config = Config::default();
    config.store.url = Some(db.url.clone());
    config.store.pg_schema = db.schema.clone();
    config.billing.provider_url = Some(provider.url.clone());
    config
}

/// Every role in-process on `db` with `config`.
async fn start(db: &TestDb, config: Config) -> TestApp {
    spawn_app(App::new(config).with_store(db.store.clone()), Roles::all())
        .await
        .unwrap()
}

/// The whole app in-process on `db`, charging through `provider`, dunning every second.
async fn app_on(db: &TestDb, provider: &Provider) -> TestApp {
    let mut config = config_for(db, provider);
    config.billing.dunning_secs = vec![1, 1];
    config.scheduler.promote_interval_ms = 100;
    start(db, config).await
}

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = match method {
        "GET" => http.get(url),
        _ => http.post(url),
    };
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let problem = response.headers().get("content-type").is_some_and(|v| {
        v.to_str()
            .unwrap_or("")
            .starts_with("application/problem+json")
    });
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert!(problem, "{status} is problem+json: {body}");
    }
    (status, body)
}

/// Plans, a subscription charged through the provider, a proration, refusals: all over HTTP.
async fn subscription_is_invoiced_and_charged_over_the_api(db: TestDb) {
    let provider = Provider::start().await;
    let app = app_on(&db, &provider).await;
    let (_, operator) = app.admin_client().await.unwrap();
    let acme = common::tenant_client(app.store.as_ref(), "acme").await;
    let plans = app.url("/v1/billing/plans");
    let plan = |id: &str, amount: i64| json!({"id": id, "name": format!("Plan {id}"), "amount_minor": amount, "currency": "EUR", "interval": "month"});
    let (s, body) = call(&operator, "POST", plans.clone(), Some(plan("basic", 900))).await;
    assert_eq!(
        (s, body["amount"].as_str()),
        (201, Some("9.00 EUR")),
        "{body}"
    );
    call(&operator, "POST", plans.clone(), Some(plan("pro", 2900))).await;
    // Bad input names its field; nothing is written.
    for (bad, field) in [
        (
            json!({"id": "neg", "name": "N", "amount_minor": -1, "currency": "EUR", "interval": "month"}),
            "amount_minor",
        ),
        (
            json!({"id": "xyz", "name": "N", "amount_minor": 1, "currency": "XYZ", "interval": "month"}),
            "currency",
        ),
        (
            json!({"id": "Bad Id", "name": "N", "amount_minor": 1, "currency": "EUR", "interval": "month"}),
            "id",
        ),
        (
            json!({"id": "t", "name": "N", "amount_minor": 1, "currency": "EUR", "interval": "month", "trial_days": 9999}),
            "trial_days",
        ),
    ] {
        let (s, body) = call(&operator, "POST", plans.clone(), Some(bad)).await;
        assert_eq!(s, 422, "{body}");
        assert_eq!(body["errors"][0]["path"], json!(field), "{body}");
    }
    let (s, _) = call(&operator, "POST", plans.clone(), Some(plan("basic", 1))).await;
    assert_eq!(s, 409);
    // Only the operator manages plans; anyone reads them.
    let (s, _) = call(&acme, "POST", plans.clone(), Some(plan("mine", 1))).await;
    assert_eq!(s, 403);
    let (_, list) = call(&acme, "GET", plans.clone(), None).await;
    assert_eq!(list["plans"].as_array().unwrap().len(), 2);

    let subs = app.url("/v1/billing/subscriptions");
    let (s, body) = call(
        &acme,
        "POST",
        subs.clone(),
        Some(json!({"plan": "gold", "payment_method": "pm_card_visa"})),
    )
    .await;
    assert_eq!(
        (s, body["errors"][0]["path"].as_str()),
        (404, Some("plan")),
        "{body}"
    );
    let (s, _) = call(
        &acme,
        "POST",
        subs.clone(),
        Some(json!({"plan": "basic", "payment_method": "card 4242"})),
    )
    .await;
    assert_eq!(s, 422);
    let (s, created) = call(
        &acme,
        "POST",
        subs.clone(),
        Some(json!({"plan": "basic", "payment_method": "pm_card_visa", "email": "billing@acme.example"})),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["subscription"]["status"], "active");
    assert_eq!(created["invoice"]["display_number"], "INV-000001");
    let invoice: Uuid = created["invoice"]["id"].as_str().unwrap().parse().unwrap();
    let (s, _) = call(
        &acme,
        "POST",
        subs.clone(),
        Some(json!({"plan": "pro", "payment_method": "pm_card_visa"})),
    )
    .await;
    assert_eq!(s, 409, "one live subscription per tenant");

    // The worker charges it.
    let store = app.store.clone();
    wait_status(
        store.as_ref(),
        invoice,
        InvoiceStatus::Paid,
        20,
        "the first invoice paid",
    )
    .await;
    let (_, payments) = call(
        &acme,
        "GET",
        app.url(&format!("/v1/billing/invoices/{invoice}/payments")),
        None,
    )
    .await;
    let payments = payments["payments"].as_array().unwrap().clone();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "succeeded");
    let charged = provider.charged(invoice).await;
    assert_eq!(charged.len(), 1);
    assert_eq!(charged[0]["amount"], 900);
    assert_eq!(charged[0]["currency"], "eur");
    assert_eq!(payments[0]["provider_ref"], charged[0]["id"]);

    // The welcome email committed with the subscription; the receipt with the payment.
    let emails = pysaas::testing::enqueued::<Email>(store.as_ref(), "acme")
        .await
        .unwrap();
    let mut templates: Vec<_> = emails
        .iter()
        .map(|j| {
            assert_eq!(j.payload["to"], "billing@acme.example");
            j.payload["template"].as_str().unwrap().to_owned()
        })
        .collect();
    templates.sort();
    assert_eq!(templates, ["receipt", "welcome"]);
    let receipt = emails
        .iter()
        .find(|j| j.payload["template"] == "receipt")
        .unwrap();
    assert_eq!(receipt.payload["data"]["invoice_number"], "INV-000001");
    assert_eq!(receipt.payload["data"]["total"], "9.00 EUR");
    let (s, body) = call(
        &acme,
        "POST",
        subs.clone(),
        Some(json!({"plan": "pro", "payment_method": "pm_card_visa", "email": "nope"})),
    )
    .await;
    assert_eq!(
        (s, body["errors"][0]["path"].as_str()),
        (422, Some("email"))
    );
    // An upgrade mid-period is prorated on an invoice of its own and charged.
    let sub_id = created["subscription"]["id"].as_str().unwrap().to_owned();
    let (s, changed) = call(
        &acme,
        "POST",
        app.url(&format!("/v1/billing/subscriptions/{sub_id}/change-plan")),
        Some(json!({"plan": "pro"})),
    )
    .await;
    assert_eq!(s, 200, "{changed}");
    assert_eq!(changed["invoice"]["reason"], "plan_change");
    assert_eq!(changed["invoice"]["number"], 2);
    let proration: Uuid = changed["invoice"]["id"].as_str().unwrap().parse().unwrap();
    let (_, detail) = call(
        &acme,
        "GET",
        app.url(&format!("/v1/billing/invoices/{proration}")),
        None,
    )
    .await;
    let lines = detail["lines"].as_array().unwrap();
    let sum: i64 = lines
        .iter()
        .map(|l| l["amount_minor"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, detail["subtotal_minor"].as_i64().unwrap());
    assert!(
        lines[0]["amount_minor"].as_i64().unwrap() < 0,
        "a credit for the old plan: {detail}"
    );
    wait_status(
        store.as_ref(),
        proration,
        InvoiceStatus::Paid,
        20,
        "the proration paid",
    )
    .await;
    let (s, _) = call(
        &acme,
        "POST",
        app.url(&format!("/v1/billing/subscriptions/{sub_id}/change-plan")),
        Some(json!({"plan": "pro"})),
    )
    .await;
    assert_eq!(s, 409, "already on it");
    // Another tenant sees none of it.
    let globex = common::tenant_client(app.store.as_ref(), "globex").await;
    let (s, _) = call(
        &globex,
        "GET",
        app.url(&format!("/v1/billing/invoices/{invoice}")),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (_, list) = call(&globex, "GET", app.url("/v1/billing/invoices"), None).await;
    assert!(list["invoices"].as_array().unwrap().is_empty());
    // Cancel at period end, then the invoice list of acme.
    let (s, cancelled) = call(
        &acme,
        "POST",
        app.url(&format!("/v1/billing/subscriptions/{sub_id}/cancel")),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (s, cancelled["cancel_at_period_end"].as_bool()),
        (200, Some(true))
    );
    let (_, list) = call(&acme, "GET", app.url("/v1/billing/invoices"), None).await;
    let numbers: Vec<_> = list["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [2, 1]);
    app.stop().await.unwrap();
}

/// A declined card: dunning charges again on its schedule, then gives up: the invoice is
/// uncollectible and the subscription cancelled.
async fn declines_run_dunning_to_uncollectible(db: TestDb) {
    let provider = Provider::start().await;
    let app = app_on(&db, &provider).await;
    let store = app.store.clone();
    store.create_plan(&monthly("basic", 900)).await.unwrap();
    let sub = store
        .subscribe(
            "acme",
            "basic",
            "pm_card_chargeDeclined",
            Some("ops@acme.example"),
            Utc::now(),
            vec![],
        )
        .await
        .unwrap()
        .unwrap();
    let invoice = sub.invoice.unwrap().id;
    wait_status(
        store.as_ref(),
        invoice,
        InvoiceStatus::Uncollectible,
        30,
        "dunning to give up",
    )
    .await;
    let payments = store.list_payments("acme", invoice).await.unwrap();
    assert_eq!(payments.len(), 3, "the first charge and two dunning steps");
    assert!(payments
        .iter()
        .all(|p| p.status == PaymentStatus::Failed
            && p.error_code.as_deref() == Some("generic_decline")));
    let sub = store
        .get_subscription("acme", sub.subscription.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Cancelled);
    assert_eq!(provider.charged(invoice).await.len(), 3);
    // Each decline told the billing contact; the last one that the subscription ended.
    let emails = pysaas::testing::enqueued::<Email>(store.as_ref(), "acme")
        .await
        .unwrap();
    let mut templates: Vec<_> = emails
        .iter()
        .map(|j| j.payload["template"].as_str().unwrap().to_owned())
        .collect();
    templates.sort();
    assert_eq!(
        templates,
        ["payment_failed", "payment_failed", "subscription_cancelled"]
    );
    app.stop().await.unwrap();
}

/// Starts the app, subscribes `acme` to a monthly plan and waits (up to `secs`) for the first
/// invoice to be paid, captured once by `provider`.
async fn paid_once(db: &TestDb, config: Config, provider: &Provider, secs: u64) -> (TestApp, Uuid) {
    let app = start(db, config).await;
    let store = app.store.clone();
    store.create_plan(&monthly("basic", 900)).await.unwrap();
    let invoice = store
        .subscribe("acme", "basic", "pm_card_visa", None, Utc::now(), vec![])
        .await
        .unwrap()
        .unwrap()
        .invoice
        .unwrap()
        .id;
    wait_status(
        store.as_ref(),
        invoice,
        InvoiceStatus::Paid,
        secs,
        "the invoice paid",
    )
    .await;
    assert_eq!(provider.charged(invoice).await.len(), 1, "captured once");
    (app, invoice)
}

/// The provider captures, then its answer never arrives in time: the retry sends the same
/// attempt under the same key and is answered with the first capture.
async fn a_timeout_after_capture_is_not_charged_twice(db: TestDb) {
    let provider = Provider::start().await;
    let mut config = config_for(&db, &provider);
    config.billing.provider_timeout_ms = 500;
    provider.fault("timeout_after_capture", 1, 3_000).await;
    let (app, invoice) = paid_once(&db, config, &provider, 30).await;
    let store = app.store.clone();
    let (_, replays) = provider.intents().await;
    assert!(
        replays >= 1,
        "the retry was answered from the saved capture"
    );
    let payments = store.list_payments("acme", invoice).await.unwrap();
    assert_eq!(payments.len(), 1, "one attempt, sent twice");
    let charge = pysaas::testing::enqueued::<pysaas_jobs::kinds::billing::ChargeInvoice>(
        store.as_ref(),
        "acme",
    )
    .await
    .unwrap();
    assert!(
        charge[0].attempts >= 2 && charge[0].errors[0].error.contains("timed out"),
        "{:?}",
        charge[0]
    );
    app.stop().await.unwrap();
}

/// The provider is out of order — a 500, a 429 asking for 5 s, a request that times out before
/// anything is charged — and then answers: the charge is retried under the same attempt and
/// key, waits as long as the 429 asked, and captures once.
async fn provider_errors_are_retried_and_capture_once(db: TestDb) {
    let provider = Provider::start().await;
    let mut config = config_for(&db, &provider);
    config.billing.provider_timeout_ms = 500;
    provider.fault("error_500", 1, 0).await;
    provider.rate_limit(5).await;
    provider.fault("timeout_before", 1, 1_000).await;
    let (app, invoice) = paid_once(&db, config, &provider, 60).await;
    let store = app.store.clone();
    let payments = store.list_payments("acme", invoice).await.unwrap();
    assert_eq!(payments.len(), 1, "one attempt, sent four times");
    let charge = pysaas::testing::enqueued::<pysaas_jobs::kinds::billing::ChargeInvoice>(
        store.as_ref(),
        "acme",
    )
    .await
    .unwrap();
    let errors = &charge[0].errors;
    assert_eq!(charge[0].attempts, 4, "{errors:?}");
    for (error, says) in errors.iter().zip(["HTTP 500", "HTTP 429", "timed out"]) {
        assert!(error.error.contains(says), "{says}: {errors:?}");
    }
    // The attempt after the 429 started no sooner than it asked.
    let waited = errors[2].started_at.unwrap() - errors[1].finished_at;
    assert!(
        waited >= chrono::Duration::milliseconds(4_900),
        "waited {waited} after the 429"
    );
    app.stop().await.unwrap();
}

/// kill -9 the billing worker after the provider captured and answered, before the answer is
/// written: the next worker sends the attempt again under its key, the provider answers the
/// first capture, and the invoice is paid with one capture.
async fn a_worker_killed_between_capture_and_write_never_captures_twice(db: TestDb) {
    let provider = Provider::start().await;
    db.store.create_plan(&monthly("basic", 900)).await.unwrap();
    // The answer is held a moment, so that the test can hold the payment row meanwhile.
    provider.fault("delay", 1, 1_000).await;
    let invoice = db
        .store
        .subscribe("acme", "basic", "pm_card_visa", None, Utc::now(), vec![])
        .await
        .unwrap()
        .unwrap()
        .invoice
        .unwrap()
        .id;
    let env = [
        ("PYSAAS_BILLING_PROVIDER_URL", provider.url.as_str()),
        ("PYSAAS_LEASE_MS", "1500"),
        ("PYSAAS_RESCUE_INTERVAL_MS", "200"),
        ("PYSAAS_LEADER_TTL_MS", "1000"),
    ];
    let args = ["worker", "--queues", "billing"];
    let mut first = common::pysaas_process(&db, &args, &env);
    let payment = wait_for(
        Duration::from_secs(20),
        "the attempt recorded as pending",
        async || {
            db.store
                .list_payments("acme", invoice)
                .await
                .unwrap()
                .into_iter()
                .next()
        },
    )
    .await;
    assert_eq!(payment.status, PaymentStatus::Pending);
    // Hold the payment row (PostgreSQL) or the database's write lock (SQLite): the worker's
    // write of the answer waits for it.
    let hold = match &db.backend {
        Backend::Pg(pg) => {
            let mut tx = pg.begin().await.unwrap();
            sqlx::query("SELECT 1 FROM billing_payments WHERE id = $1 FOR UPDATE")
                .bind(payment.id)
                .execute(tx.conn())
                .await
                .unwrap();
            Hold::Pg(tx)
        }
        Backend::Sqlite(lite) => Hold::Sqlite(lite.begin().await.unwrap()),
    };
    wait_for(
        Duration::from_secs(20),
        "the provider's answer sent",
        async || {
            let charged = provider.charged(invoice).await;
            (charged.len() == 1 && charged[0]["answered"] == json!(true)).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill().expect("kill -9");
    first.wait().expect("reap");
    drop(hold);
    let after_kill = db.store.list_payments("acme", invoice).await.unwrap();
    assert_eq!(
        after_kill[0].status,
        PaymentStatus::Pending,
        "the answer was never written"
    );
    assert_eq!(
        invoice_status(db.store.as_ref(), "acme", invoice).await,
        InvoiceStatus::Open
    );

    let mut second = common::pysaas_process(&db, &args, &env);
    wait_status(
        db.store.as_ref(),
        invoice,
        InvoiceStatus::Paid,
        40,
        "the invoice paid by the next worker",
    )
    .await;
    second.kill().expect("kill");
    second.wait().expect("reap");
    let charged = provider.charged(invoice).await;
    assert_eq!(charged.len(), 1, "captured once: {charged:?}");
    let (_, replays) = provider.intents().await;
    assert_eq!(
        replays, 1,
        "the resent attempt was answered from the saved capture"
    );
    let payments = db.store.list_payments("acme", invoice).await.unwrap();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, PaymentStatus::Succeeded);
    assert_eq!(
        payments[0].provider_ref.as_deref(),
        charged[0]["id"].as_str()
    );
}

/// What holds the worker's write back.
#[allow(dead_code)] // Held for its lock only.
enum Hold<'a> {
    Pg(pysaas_brokers::store::PgTransaction<'a>),
    Sqlite(pysaas_brokers::store::SqliteTransaction<'a>),
}

/// The invoice run fires from cron (every second here) and catches a subscription up on the
/// periods it missed, each invoiced once, then charged.
async fn cron_opens_the_invoices_of_ended_periods(db: TestDb) {
    let provider = Provider::start().await;
    let mut config = config_for(&db, &provider);
    config.billing.invoice_cron = "* * * * * *".into();
    let store = db.store.clone();
    let mut daily = monthly("daily", 100);
    daily.cadence.interval = Interval::Day;
    store.create_plan(&daily).await.unwrap();
    // Subscribed three days and an hour ago: three more periods have begun since.
    let began = Utc::now() - chrono::Duration::hours(73);
    let sub = store
        .subscribe("acme", "daily", "pm_card_visa", None, began, vec![])
        .await
        .unwrap()
        .unwrap()
        .subscription;
    let app = start(&db, config).await;
    let invoices = wait_for(
        Duration::from_secs(30),
        "four invoices, all paid",
        async || {
            let invoices = store.list_invoices("acme", 10).await.unwrap();
            (invoices.len() == 4 && invoices.iter().all(|i| i.status == InvoiceStatus::Paid))
                .then_some(invoices)
        },
    )
    .await;
    let numbers: Vec<_> = invoices.iter().map(|i| i.number).collect();
    assert_eq!(numbers, [4, 3, 2, 1]);
    let now = store
        .get_subscription("acme", sub.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.period, 3);
    assert!(now.current_period_end > Utc::now());
    let schedule = store
        .get_schedule(pysaas_jobs::DEFAULT_TENANT, "billing.generate_invoices")
        .await
        .unwrap()
        .unwrap();
    assert!(schedule.last_fire_at.is_some());
    app.stop().await.unwrap();
}

macro_rules! each_store {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(TestDb::sqlite().await).await })*
            use super::TestDb;
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(TestDb::postgres().await).await })*
            use super::TestDb;
        }
    };
}

each_store!(
    subscription_is_invoiced_and_charged_over_the_api,
    declines_run_dunning_to_uncollectible,
    a_timeout_after_capture_is_not_charged_twice,
    provider_errors_are_retried_and_capture_once,
    a_worker_killed_between_capture_and_write_never_captures_twice,
    cron_opens_the_invoices_of_ended_periods,
);
