//! `/v1/billing`: plans (the operator's), a tenant's subscription, its invoices and their
//! payments. The model and its guarantees: `docs/domains.md`, "Billing".

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use pysaas_brokers::store::billing::{
    BillingRefusal, Invoice, InvoiceLine, NewPlan, Payment, Plan, Subscription, VoidOutcome,
};
use pysaas_jobs::billing::{format_amount, Cadence, Currency, Interval};
use pysaas_jobs::kinds::notification::{Email, EmailTemplate};
use pysaas_jobs::{NewJob, DEFAULT_TENANT};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Admin, Any, Authorized, TenantOf};
use crate::error::{parse_json, ApiError};
use crate::AppState;

/// Largest price a plan may have, in minor units (10 billion of the major unit at two digits).
const AMOUNT_MAX: i64 = 1_000_000_000_000;
/// Invoices per page.
const INVOICE_PAGE_MAX: i64 = 100;

/// How often a plan bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PlanInterval {
    /// Every day.
    Day,
    /// Every week.
    Week,
    /// Every calendar month.
    Month,
    /// Every calendar year.
    Year,
}

impl From<PlanInterval> for Interval {
    fn from(i: PlanInterval) -> Self {
        match i {
            PlanInterval::Day => Interval::Day,
            PlanInterval::Week => Interval::Week,
            PlanInterval::Month => Interval::Month,
            PlanInterval::Year => Interval::Year,
        }
    }
}

impl From<Interval> for PlanInterval {
    fn from(i: Interval) -> Self {
        match i {
            Interval::Day => PlanInterval::Day,
            Interval::Week => PlanInterval::Week,
            Interval::Month => PlanInterval::Month,
            Interval::Year => PlanInterval::Year,
        }
    }
}

/// An ISO 4217 currency code (the document lists every accepted one).
#[derive(Debug, ToSchema)]
#[schema(example = "EUR")]
pub(crate) struct CurrencyCode(#[allow(dead_code)] String);

/// A plan to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePlan {
    /// Id: 1 to 64 of a-z, 0-9, `.`, `_`, `-`.
    #[schema(example = "pro-monthly", pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    pub(crate) id: String,
    /// Display name, 1 to 200 characters, not only spaces.
    #[schema(example = "Pro", min_length = 1, max_length = 200, pattern = r"\S")]
    pub(crate) name: String,
    /// Price per period in the currency's minor unit (cents for EUR), not negative.
    #[schema(example = 2900, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub(crate) amount_minor: i64,
    /// ISO 4217 code, upper case (one with a minor unit: not XAU or XDR).
    #[schema(example = "EUR", value_type = CurrencyCode)]
    pub(crate) currency: String,
    /// How often it bills.
    pub(crate) interval: PlanInterval,
    /// Intervals per period (1 to 36; default 1).
    #[schema(minimum = 1, maximum = 36)]
    pub(crate) interval_count: Option<u32>,
    /// Free days before the first invoice (0 to 730; default 0).
    #[schema(minimum = 0, maximum = 730)]
    pub(crate) trial_days: Option<i32>,
}

/// A plan.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PlanView {
    id: String,
    name: String,
    amount_minor: i64,
    currency: String,
    /// The price as text (`29.00 EUR`).
    amount: String,
    interval: PlanInterval,
    interval_count: u32,
    trial_days: i32,
    /// Archived plans take no new subscriptions.
    active: bool,
    created_at: DateTime<Utc>,
}

impl From<Plan> for PlanView {
    fn from(p: Plan) -> Self {
        PlanView {
            amount: format_amount(p.amount_minor, p.currency),
            id: p.id,
            name: p.name,
            amount_minor: p.amount_minor,
            currency: p.currency.code().to_owned(),
            interval: p.cadence.interval.into(),
            interval_count: p.cadence.count,
            trial_days: p.trial_days,
            active: p.active,
            created_at: p.created_at,
        }
    }
}

/// Every plan.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PlanList {
    plans: Vec<PlanView>,
}

/// A subscription to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Subscribe {
    /// The plan's id.
    #[schema(example = "pro-monthly")]
    pub(crate) plan: String,
    /// The provider's payment method (`pm_…`; Stripe's test cards: `pm_card_visa`,
    /// `pm_card_chargeDeclined`).
    #[schema(example = "pm_card_visa", pattern = "^pm_[A-Za-z0-9_]{1,250}$")]
    pub(crate) payment_method: String,
    /// Where the welcome email, receipts and payment notices go (none: no email).
    #[schema(
        example = "billing@acme.example",
        max_length = 254,
        pattern = r"^[A-Za-z0-9_%+-]{1,64}@([A-Za-z0-9]{1,63}\.){1,4}[A-Za-z]{2,24}$"
    )]
    pub(crate) email: Option<String>,
}

/// A subscription.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SubscriptionView {
    id: Uuid,
    plan: String,
    /// `trialing`, `active`, `past_due` or `cancelled`.
    status: String,
    payment_method: String,
    /// Where receipts and payment notices go.
    billing_email: Option<String>,
    current_period_start: DateTime<Utc>,
    current_period_end: DateTime<Utc>,
    trial_end: Option<DateTime<Utc>>,
    cancel_at_period_end: bool,
    /// Owed to the tenant, taken off the next invoice (minor units).
    credit_minor: i64,
    cancelled_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<Subscription> for SubscriptionView {
    fn from(s: Subscription) -> Self {
        SubscriptionView {
            id: s.id,
            plan: s.plan_id,
            status: s.status.as_str().to_owned(),
            payment_method: s.payment_method,
            billing_email: s.billing_email,
            current_period_start: s.current_period_start,
            current_period_end: s.current_period_end,
            trial_end: s.trial_end,
            cancel_at_period_end: s.cancel_at_period_end,
            credit_minor: s.credit_minor,
            cancelled_at: s.cancelled_at,
            created_at: s.created_at,
        }
    }
}

/// A subscription and the invoice its change opened.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SubscriptionChange {
    subscription: SubscriptionView,
    /// The first period's invoice, or a plan change's proration (none during a trial).
    invoice: Option<InvoiceView>,
}

/// A tenant's subscriptions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SubscriptionList {
    /// Newest first.
    subscriptions: Vec<SubscriptionView>,
}

/// How to cancel.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cancel {
    /// End at the current period's end (default) instead of now.
    pub(crate) at_period_end: Option<bool>,
}

/// A plan to move to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePlan {
    /// The new plan's id (same currency and interval).
    pub(crate) plan: String,
}

/// An invoice.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct InvoiceView {
    id: Uuid,
    /// The tenant's invoice number, without gaps.
    number: i64,
    /// `INV-000042`.
    display_number: String,
    subscription_id: Uuid,
    /// `cycle` or `plan_change`.
    reason: String,
    /// `draft`, `open`, `paid`, `void` or `uncollectible`.
    status: String,
    currency: String,
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    subtotal_minor: i64,
    total_minor: i64,
    /// The total as text.
    total: String,
    /// Declined charges so far.
    attempt_count: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
}

impl From<Invoice> for InvoiceView {
    fn from(i: Invoice) -> Self {
        InvoiceView {
            display_number: format!("INV-{:06}", i.number),
            total: format_amount(i.total_minor, i.currency),
            id: i.id,
            number: i.number,
            subscription_id: i.subscription_id,
            reason: i.reason.as_str().to_owned(),
            status: i.status.as_str().to_owned(),
            currency: i.currency.code().to_owned(),
            period_start: i.period_start,
            period_end: i.period_end,
            subtotal_minor: i.subtotal_minor,
            total_minor: i.total_minor,
            attempt_count: i.attempt_count,
            next_attempt_at: i.next_attempt_at,
            created_at: i.created_at,
            paid_at: i.paid_at,
        }
    }
}

/// A line of an invoice.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct LineView {
    description: String,
    /// Negative: a credit.
    amount_minor: i64,
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
}

impl From<InvoiceLine> for LineView {
    fn from(l: InvoiceLine) -> Self {
        LineView {
            description: l.description,
            amount_minor: l.amount_minor,
            period_start: l.period_start,
            period_end: l.period_end,
        }
    }
}

/// An invoice with its lines.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct InvoiceDetail {
    #[serde(flatten)]
    invoice: InvoiceView,
    lines: Vec<LineView>,
}

/// A page of invoices.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct InvoiceList {
    /// Newest first.
    invoices: Vec<InvoiceView>,
}

/// Page size.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InvoicePage {
    /// 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// A payment attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PaymentView {
    id: Uuid,
    attempt: i32,
    amount_minor: i64,
    currency: String,
    /// `pending`, `succeeded` or `failed`.
    status: String,
    provider: String,
    provider_ref: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<Payment> for PaymentView {
    fn from(p: Payment) -> Self {
        PaymentView {
            id: p.id,
            attempt: p.attempt,
            amount_minor: p.amount_minor,
            currency: p.currency.code().to_owned(),
            status: p.status.as_str().to_owned(),
            provider: p.provider,
            provider_ref: p.provider_ref,
            error_code: p.error_code,
            error_message: p.error_message,
            created_at: p.created_at,
            finished_at: p.finished_at,
        }
    }
}

/// An invoice's payment attempts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PaymentList {
    /// In order.
    payments: Vec<PaymentView>,
}

fn refusal(r: BillingRefusal) -> ApiError {
    let detail = r.to_string();
    let field = |e: ApiError| {
        e.with(
            "errors",
            serde_json::json!([{ "path": "plan", "message": detail.clone() }]),
        )
    };
    match r {
        // The request is well formed; what it names does not exist, or is not in a state
        // that allows it.
        BillingRefusal::UnknownPlan(_) => field(ApiError::not_found(detail.clone())),
        BillingRefusal::PlanInactive(_)
        | BillingRefusal::SamePlan(_)
        | BillingRefusal::Incompatible { .. } => field(ApiError::conflict(detail.clone())),
        BillingRefusal::AlreadySubscribed(id) => {
            ApiError::conflict(detail).with("subscription_id", id.to_string())
        }
        BillingRefusal::NoSubscription(_) => ApiError::not_found(detail),
    }
}

fn check_plan(body: CreatePlan) -> Result<NewPlan, ApiError> {
    let field = |path: &str, message: &str| {
        ApiError::invalid_field(format!("`{path}` {message}"), path, message)
    };
    let id_ok = !body.id.is_empty()
        && body.id.len() <= 64
        && body
            .id
            .starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && body
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !id_ok {
        return Err(field("id", "must be 1 to 64 of a-z, 0-9, `.`, `_`, `-`"));
    }
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(field("name", "must be 1 to 200 characters"));
    }
    if !(0..=AMOUNT_MAX).contains(&body.amount_minor) {
        return Err(field(
            "amount_minor",
            "must be between 0 and 1000000000000 (minor units)",
        ));
    }
    let currency: Currency = body
        .currency
        .parse()
        .map_err(|e: String| ApiError::invalid_field(e.clone(), "currency", e))?;
    let count = body.interval_count.unwrap_or(1);
    if !(1..=36).contains(&count) {
        return Err(field("interval_count", "must be between 1 and 36"));
    }
    let trial_days = body.trial_days.unwrap_or(0);
    if !(0..=730).contains(&trial_days) {
        return Err(field("trial_days", "must be between 0 and 730"));
    }
    Ok(NewPlan {
        id: body.id,
        name: name.to_owned(),
        amount_minor: body.amount_minor,
        currency,
        cadence: Cadence {
            interval: body.interval.into(),
            count,
        },
        trial_days,
    })
}

fn operator(principal: &crate::auth::Principal) -> Result<(), ApiError> {
    if principal.tenant_id == DEFAULT_TENANT {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "plans are managed by the operator (an admin of the default tenant)",
        ))
    }
}

/// Create a plan (the operator only).
#[utoipa::path(post, path = "/v1/billing/plans", operation_id = "createPlan", tag = "billing", request_body = CreatePlan,
    responses((status = 201, body = PlanView),
              (status = 409, description = "A plan with this id exists", content_type = "application/problem+json"),
              (status = 422, description = "Invalid field (negative price, unknown currency, …), named in `errors`", content_type = "application/problem+json")))]
pub(crate) async fn create_plan(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    operator(&principal)?;
    let plan = check_plan(parse_json(&body?)?)?;
    if !state.store().create_plan(&plan).await? {
        return Err(ApiError::conflict(format!("a plan `{}` exists", plan.id)));
    }
    let created = state
        .store()
        .get_plan(&plan.id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no plan `{}`", plan.id)))?;
    Ok((StatusCode::CREATED, Json(PlanView::from(created))).into_response())
}

/// Every plan, archived ones included.
#[utoipa::path(get, path = "/v1/billing/plans", operation_id = "listPlans", tag = "billing", responses((status = 200, body = PlanList)))]
pub(crate) async fn list_plans(
    State(state): State<AppState>,
    _caller: Authorized<Any>,
) -> Result<Json<PlanList>, ApiError> {
    let plans = state.store().list_plans().await?;
    Ok(Json(PlanList {
        plans: plans.into_iter().map(PlanView::from).collect(),
    }))
}

/// Archive a plan (the operator only): it takes no new subscriptions; existing ones keep
/// billing.
#[utoipa::path(post, path = "/v1/billing/plans/{id}/archive", operation_id = "archivePlan", tag = "billing",
    params(("id" = String, Path, description = "Plan id")), responses((status = 200, body = PlanView),
        (status = 404, description = "No such plan", content_type = "application/problem+json")))]
pub(crate) async fn archive_plan(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
    Path(id): Path<String>,
) -> Result<Json<PlanView>, ApiError> {
    operator(&principal)?;
    let plan = state
        .store()
        .set_plan_active(&id, false)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no plan `{id}`")))?;
    Ok(Json(plan.into()))
}

/// Subscribe the tenant to a plan: with a trial it starts `trialing`; without, its first
/// invoice is opened and charged.
#[utoipa::path(post, path = "/v1/billing/subscriptions", operation_id = "subscribe", tag = "billing", request_body = Subscribe,
    responses((status = 201, body = SubscriptionChange),
              (status = 404, description = "No such plan", content_type = "application/problem+json"),
              (status = 409, description = "The tenant has a live subscription, or the plan is archived", content_type = "application/problem+json"),
              (status = 422, description = "Malformed payment method or email", content_type = "application/problem+json")))]
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: Subscribe = parse_json(&body?)?;
    let pm = &body.payment_method;
    let pm_ok = pm.len() <= 253
        && pm.strip_prefix("pm_").is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if !pm_ok {
        return Err(ApiError::invalid_field(
            "`payment_method` must be a payment method id like `pm_card_visa`",
            "payment_method",
            "a payment method id: `pm_` and letters, digits, `_`",
        ));
    }
    let mut jobs = Vec::new();
    if let Some(email) = &body.email {
        super::email_field("email", email)?;
        // The welcome email commits with the subscription, or neither does.
        let plan = state.store().get_plan(&body.plan).await?;
        let welcome = Email {
            to: email.clone(),
            template: EmailTemplate::Welcome,
            data: serde_json::Map::from_iter([(
                "plan".to_owned(),
                serde_json::Value::from(plan.map_or_else(|| body.plan.clone(), |p| p.name)),
            )]),
        };
        jobs.push(
            NewJob::of(tenant.clone(), &welcome)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
        );
    }
    let now = state.store().now().await?;
    let subscribed = state
        .store()
        .subscribe(&tenant, &body.plan, pm, body.email.as_deref(), now, jobs)
        .await?
        .map_err(refusal)?;
    super::dispatch_created(&state, &subscribed.jobs).await;
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionChange {
            subscription: subscribed.subscription.into(),
            invoice: subscribed.invoice.map(Into::into),
        }),
    )
        .into_response())
}

/// The tenant's subscriptions.
#[utoipa::path(get, path = "/v1/billing/subscriptions", operation_id = "listSubscriptions", tag = "billing", responses((status = 200, body = SubscriptionList)))]
pub(crate) async fn list_subscriptions(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
) -> Result<Json<SubscriptionList>, ApiError> {
    let subs = state.store().list_subscriptions(&tenant).await?;
    Ok(Json(SubscriptionList {
        subscriptions: subs.into_iter().map(Into::into).collect(),
    }))
}

/// One of the tenant's subscriptions.
#[utoipa::path(get, path = "/v1/billing/subscriptions/{id}", operation_id = "getSubscription", tag = "billing",
    params(("id" = String, Path, description = "Subscription id")), responses((status = 200, body = SubscriptionView),
        (status = 404, description = "No such subscription", content_type = "application/problem+json")))]
pub(crate) async fn get_subscription(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    Path(id): Path<String>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let id = super::parse_id("subscription", &id)?;
    let sub = state
        .store()
        .get_subscription(&tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no subscription {id}")))?;
    Ok(Json(sub.into()))
}

/// Cancel a live subscription, at its period's end (default) or now.
#[utoipa::path(post, path = "/v1/billing/subscriptions/{id}/cancel", operation_id = "cancelSubscription", tag = "billing",
    params(("id" = String, Path, description = "Subscription id")), request_body(content = Option<Cancel>, description = "Optional: the default ends it at period end"),
    responses((status = 200, body = SubscriptionView),
        (status = 404, description = "No live subscription", content_type = "application/problem+json"),
        (status = 422, description = "Malformed body", content_type = "application/problem+json")))]
pub(crate) async fn cancel_subscription(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SubscriptionView>, ApiError> {
    let id = super::parse_id("subscription", &id)?;
    let body = body?;
    // No body, or `null`: the default.
    let cancel: Cancel = match body.trim_ascii() {
        b"" | b"null" => Cancel::default(),
        _ => parse_json(&body)?,
    };
    let now = state.store().now().await?;
    let sub = state
        .store()
        .cancel_subscription(&tenant, id, cancel.at_period_end.unwrap_or(true), now)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no live subscription {id}")))?;
    Ok(Json(sub.into()))
}

/// Move a live subscription to another plan of the same currency and interval, prorating the
/// rest of the period exactly.
#[utoipa::path(post, path = "/v1/billing/subscriptions/{id}/change-plan", operation_id = "changePlan", tag = "billing",
    params(("id" = String, Path, description = "Subscription id")), request_body = ChangePlan,
    responses((status = 200, body = SubscriptionChange),
              (status = 404, description = "No live subscription, or no such plan", content_type = "application/problem+json"),
              (status = 409, description = "Archived, the same, or an incompatible plan", content_type = "application/problem+json")))]
pub(crate) async fn change_plan(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SubscriptionChange>, ApiError> {
    let id = super::parse_id("subscription", &id)?;
    let body: ChangePlan = parse_json(&body?)?;
    let now = state.store().now().await?;
    let changed = state
        .store()
        .change_plan(&tenant, id, &body.plan, now)
        .await?
        .map_err(refusal)?;
    super::dispatch_created(&state, &changed.jobs).await;
    Ok(Json(SubscriptionChange {
        subscription: changed.subscription.into(),
        invoice: changed.invoice.map(Into::into),
    }))
}

/// The tenant's invoices, newest first.
#[utoipa::path(get, path = "/v1/billing/invoices", operation_id = "listInvoices", tag = "billing", params(InvoicePage),
    responses((status = 200, body = InvoiceList), (status = 422, description = "`limit` out of range", content_type = "application/problem+json")))]
pub(crate) async fn list_invoices(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    page: Result<Query<InvoicePage>, QueryRejection>,
) -> Result<Json<InvoiceList>, ApiError> {
    let Query(page) = page?;
    let limit = super::page_limit(page.limit, 50, INVOICE_PAGE_MAX)?;
    let invoices = state.store().list_invoices(&tenant, limit).await?;
    Ok(Json(InvoiceList {
        invoices: invoices.into_iter().map(Into::into).collect(),
    }))
}

/// One invoice with its lines.
#[utoipa::path(get, path = "/v1/billing/invoices/{id}", operation_id = "getInvoice", tag = "billing",
    params(("id" = String, Path, description = "Invoice id")), responses((status = 200, body = InvoiceDetail),
        (status = 404, description = "No such invoice", content_type = "application/problem+json")))]
pub(crate) async fn get_invoice(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    Path(id): Path<String>,
) -> Result<Json<InvoiceDetail>, ApiError> {
    let id = super::parse_id("invoice", &id)?;
    let (invoice, lines) = state
        .store()
        .get_invoice(&tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no invoice {id}")))?;
    Ok(Json(InvoiceDetail {
        invoice: invoice.into(),
        lines: lines.into_iter().map(Into::into).collect(),
    }))
}

/// The payment attempts of one invoice.
#[utoipa::path(get, path = "/v1/billing/invoices/{id}/payments", operation_id = "listPayments", tag = "billing",
    params(("id" = String, Path, description = "Invoice id")), responses((status = 200, body = PaymentList),
        (status = 404, description = "No such invoice", content_type = "application/problem+json")))]
pub(crate) async fn list_payments(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    Path(id): Path<String>,
) -> Result<Json<PaymentList>, ApiError> {
    let id = super::parse_id("invoice", &id)?;
    if state.store().get_invoice(&tenant, id).await?.is_none() {
        return Err(ApiError::not_found(format!("no invoice {id}")));
    }
    let payments = state.store().list_payments(&tenant, id).await?;
    Ok(Json(PaymentList {
        payments: payments.into_iter().map(Into::into).collect(),
    }))
}

/// Void an open invoice (the operator only): nothing is owed or charged any more.
#[utoipa::path(post, path = "/v1/billing/invoices/{id}/void", operation_id = "voidInvoice", tag = "billing",
    params(("id" = String, Path, description = "Invoice id")), responses((status = 200, body = InvoiceView),
        (status = 403, description = "Not the operator", content_type = "application/problem+json"),
        (status = 404, description = "No such invoice", content_type = "application/problem+json"),
        (status = 409, description = "Not open, or a charge of it is in flight", content_type = "application/problem+json")))]
pub(crate) async fn void_invoice(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
    Path(id): Path<String>,
) -> Result<Json<InvoiceView>, ApiError> {
    operator(&principal)?;
    let id = super::parse_id("invoice", &id)?;
    match state.store().void_invoice(id, &principal.actor()).await? {
        VoidOutcome::Voided(invoice) => Ok(Json(invoice.into())),
        VoidOutcome::Missing => Err(ApiError::not_found(format!("no invoice {id}"))),
        VoidOutcome::NotOpen(status) => Err(ApiError::conflict(format!(
            "invoice {id} is {}, not open",
            status.as_str()
        ))),
        VoidOutcome::ChargeInFlight => Err(ApiError::conflict(format!(
            "a charge of invoice {id} is in flight; try again once it is answered"
        ))),
    }
}
