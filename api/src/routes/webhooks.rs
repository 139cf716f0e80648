//! `/v1/webhooks`: a tenant's endpoints (URL, event types, a secret shown once), their delivery
//! log and replays, and events of the tenant's own to fan out.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use pysaas_brokers::store::webhooks::{Delivery, Endpoint};
use pysaas_jobs::kinds::notification::{valid_event_type, WebhookEvent};
use pysaas_jobs::NewJob;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Admin, TenantOf};
use crate::error::{parse_json, ApiError};
use crate::AppState;

/// Endpoints a tenant may register.
const ENDPOINTS_MAX: usize = 20;
/// Deliveries per page.
const DELIVERY_PAGE_MAX: i64 = 100;

/// An endpoint to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateEndpoint {
    /// Absolute `http(s)` URL (at most 2048 characters). The schema's pattern is the plain-host
    /// subset a form or generated client can build safely; any http(s) URL with a host is
    /// accepted.
    #[schema(
        example = "https://hooks.acme.example/pysaas",
        max_length = 2048,
        pattern = r"^https?://([a-z0-9-]+\.)*[a-z][a-z0-9-]*(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~-]*)*$"
    )]
    pub(crate) url: String,
    /// Event types it takes (`invoice.paid`), or `["*"]` for all.
    #[schema(example = json!(["invoice.paid", "invoice.payment_failed"]), min_items = 1, max_items = 50, value_type = Vec<EventTypeName>)]
    pub(crate) event_types: Vec<String>,
}

/// An endpoint (its secret only when created or rotated).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct EndpointView {
    id: Uuid,
    url: String,
    event_types: Vec<String>,
    enabled: bool,
    consecutive_failures: i32,
    disabled_reason: Option<String>,
    created_at: DateTime<Utc>,
    /// Signs every delivery: shown in the creation and rotation answers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl EndpointView {
    fn new(e: Endpoint, show_secret: bool) -> Self {
        EndpointView {
            secret: show_secret.then_some(e.secret),
            id: e.id,
            url: e.url,
            event_types: e.event_types,
            enabled: e.enabled,
            consecutive_failures: e.consecutive_failures,
            disabled_reason: e.disabled_reason,
            created_at: e.created_at,
        }
    }
}

/// A tenant's endpoints.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct EndpointList {
    endpoints: Vec<EndpointView>,
}

/// A delivery of an event to an endpoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeliveryView {
    id: Uuid,
    endpoint_id: Uuid,
    event_id: Uuid,
    event_type: String,
    /// `pending`, `succeeded` or `failed`.
    status: String,
    attempts: i32,
    /// The last attempt's HTTP status.
    response_code: Option<i32>,
    /// The last attempt's time to the answer.
    latency_ms: Option<i32>,
    last_error: Option<String>,
    /// The delivery this one replays.
    replay_of: Option<Uuid>,
    created_at: DateTime<Utc>,
    last_attempt_at: Option<DateTime<Utc>>,
    /// The JSON body sent.
    payload: serde_json::Value,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        DeliveryView {
            id: d.id,
            endpoint_id: d.endpoint_id,
            event_id: d.event_id,
            event_type: d.event_type,
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            response_code: d.response_code,
            latency_ms: d.latency_ms,
            last_error: d.last_error,
            replay_of: d.replay_of,
            created_at: d.created_at,
            last_attempt_at: d.last_attempt_at,
            payload: d.payload,
        }
    }
}

/// An endpoint's delivery log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeliveryList {
    /// Newest first.
    deliveries: Vec<DeliveryView>,
}

/// Page size.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveryPage {
    /// 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// An event of the tenant's own, for its endpoints.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendEvent {
    /// Dot-separated lower-case words (`order.shipped`).
    #[schema(
        example = "order.shipped",
        min_length = 3,
        max_length = 100,
        pattern = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
    )]
    pub(crate) event_type: String,
    /// The event's body (at most 64 KiB as JSON; default `{}`).
    #[schema(value_type = Option<Object>)]
    pub(crate) data: Option<serde_json::Map<String, serde_json::Value>>,
}

/// An event accepted for fan-out.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct EventAccepted {
    /// The event's id (`id` in every delivery's body).
    event_id: Uuid,
}

fn secret() -> Result<String, ApiError> {
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no randomness"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("whsec_{hex}"))
}

fn not_found(what: &str, id: Uuid) -> ApiError {
    ApiError::not_found(format!("no {what} {id}"))
}

/// An event type, or `*` for every type (its pattern is stated in the document).
#[derive(Debug, ToSchema)]
#[schema(example = "invoice.paid")]
pub(crate) struct EventTypeName(#[allow(dead_code)] String);

fn check_endpoint(body: &CreateEndpoint) -> Result<(), ApiError> {
    let url_ok = body.url.len() <= 2048
        && url::Url::parse(&body.url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !url_ok {
        return Err(ApiError::invalid_field(
            "`url` must be an absolute http or https URL",
            "url",
            "an absolute http(s) URL of at most 2048 characters",
        ));
    }
    let types_ok = (1..=50).contains(&body.event_types.len())
        && body
            .event_types
            .iter()
            .all(|t| t == "*" || valid_event_type(t));
    if !types_ok {
        return Err(ApiError::invalid_field(
            "`event_types` must list 1 to 50 event types like invoice.paid, or `*`",
            "event_types",
            "1 to 50 of dot-separated lower-case words, or `*`",
        ));
    }
    Ok(())
}

/// Register an endpoint; its signing secret is in this answer only.
#[utoipa::path(post, path = "/v1/webhooks/endpoints", operation_id = "createWebhookEndpoint", tag = "webhooks", request_body = CreateEndpoint,
    responses((status = 201, body = EndpointView),
        (status = 409, description = "The tenant has the most endpoints it may", content_type = "application/problem+json"),
        (status = 422, description = "Bad URL or event types", content_type = "application/problem+json")))]
pub(crate) async fn create_endpoint(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: CreateEndpoint = parse_json(&body?)?;
    check_endpoint(&body)?;
    if state.store().list_endpoints(&tenant).await?.len() >= ENDPOINTS_MAX {
        return Err(ApiError::conflict(format!(
            "a tenant has at most {ENDPOINTS_MAX} endpoints"
        )));
    }
    let now = state.store().now().await?;
    let endpoint = Endpoint {
        id: Uuid::now_v7(),
        tenant_id: tenant,
        url: body.url,
        event_types: body.event_types,
        secret: secret()?,
        enabled: true,
        consecutive_failures: 0,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    state.store().create_endpoint(&endpoint).await?;
    Ok((StatusCode::CREATED, Json(EndpointView::new(endpoint, true))).into_response())
}

/// The tenant's endpoints.
#[utoipa::path(get, path = "/v1/webhooks/endpoints", operation_id = "listWebhookEndpoints", tag = "webhooks",
    responses((status = 200, body = EndpointList)))]
pub(crate) async fn list_endpoints(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
) -> Result<Json<EndpointList>, ApiError> {
    let endpoints = state.store().list_endpoints(&tenant).await?;
    Ok(Json(EndpointList {
        endpoints: endpoints
            .into_iter()
            .map(|e| EndpointView::new(e, false))
            .collect(),
    }))
}

/// Remove an endpoint and its delivery log.
#[utoipa::path(delete, path = "/v1/webhooks/endpoints/{id}", operation_id = "deleteWebhookEndpoint", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")), responses((status = 204, description = "Removed"), (status = 404, description = "No such endpoint", content_type = "application/problem+json")))]
pub(crate) async fn delete_endpoint(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = super::parse_id("endpoint", &id)?;
    if state.store().delete_endpoint(&tenant, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found("endpoint", id))
    }
}

/// Replace an endpoint's secret; the new one is in this answer only.
#[utoipa::path(post, path = "/v1/webhooks/endpoints/{id}/rotate", operation_id = "rotateWebhookSecret", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")), responses((status = 200, body = EndpointView), (status = 404, description = "No such endpoint", content_type = "application/problem+json")))]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let id = super::parse_id("endpoint", &id)?;
    let endpoint = state
        .store()
        .rotate_secret(&tenant, id, &secret()?)
        .await?
        .ok_or_else(|| not_found("endpoint", id))?;
    Ok(Json(EndpointView::new(endpoint, true)))
}

/// Enable an endpoint again (its failure count starts over).
#[utoipa::path(post, path = "/v1/webhooks/endpoints/{id}/enable", operation_id = "enableWebhookEndpoint", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")), responses((status = 200, body = EndpointView), (status = 404, description = "No such endpoint", content_type = "application/problem+json")))]
pub(crate) async fn enable_endpoint(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let id = super::parse_id("endpoint", &id)?;
    let endpoint = state
        .store()
        .set_endpoint_enabled(&tenant, id, true, None)
        .await?
        .ok_or_else(|| not_found("endpoint", id))?;
    Ok(Json(EndpointView::new(endpoint, false)))
}

/// An endpoint's delivery log, newest first.
#[utoipa::path(get, path = "/v1/webhooks/endpoints/{id}/deliveries", operation_id = "listWebhookDeliveries", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id"), DeliveryPage), responses((status = 200, body = DeliveryList), (status = 404, description = "No such endpoint", content_type = "application/problem+json"),
        (status = 422, description = "`limit` out of range", content_type = "application/problem+json")))]
pub(crate) async fn list_deliveries(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    Path(id): Path<String>,
    page: Result<Query<DeliveryPage>, QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let id = super::parse_id("endpoint", &id)?;
    let Query(page) = page?;
    let limit = page.limit.unwrap_or(50);
    if !(1..=DELIVERY_PAGE_MAX).contains(&limit) {
        return Err(ApiError::invalid_field(
            "`limit` must be between 1 and 100",
            "limit",
            "1 to 100",
        ));
    }
    if state.store().get_endpoint(&tenant, id).await?.is_none() {
        return Err(not_found("endpoint", id));
    }
    let deliveries = state.store().list_deliveries(&tenant, id, limit).await?;
    Ok(Json(DeliveryList {
        deliveries: deliveries.into_iter().map(Into::into).collect(),
    }))
}

/// Send a delivery again, as a new delivery of the same event.
#[utoipa::path(post, path = "/v1/webhooks/deliveries/{id}/replay", operation_id = "replayWebhookDelivery", tag = "webhooks",
    params(("id" = String, Path, description = "Delivery id")), responses((status = 202, body = DeliveryView),
        (status = 404, description = "No such delivery", content_type = "application/problem+json")))]
pub(crate) async fn replay_delivery(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = super::parse_id("delivery", &id)?;
    let (delivery, jobs) = state
        .store()
        .replay_delivery(&tenant, id)
        .await?
        .ok_or_else(|| not_found("delivery", id))?;
    super::dispatch_created(&state, &jobs).await;
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::from(delivery))).into_response())
}

/// Send an event of the tenant's own to every endpoint that takes its type.
#[utoipa::path(post, path = "/v1/webhooks/events", operation_id = "sendWebhookEvent", tag = "webhooks", request_body = SendEvent,
    responses((status = 202, body = EventAccepted), (status = 422, description = "Bad event type or oversized data", content_type = "application/problem+json")))]
pub(crate) async fn send_event(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: SendEvent = parse_json(&body?)?;
    let event = WebhookEvent {
        event_type: body.event_type,
        data: body.data.unwrap_or_default(),
    };
    if let Err((field, message)) = pysaas_jobs::JobKind::check(&event) {
        return Err(ApiError::invalid_field(
            format!("`{field}` {message}"),
            field,
            message,
        ));
    }
    let job = NewJob::of(tenant, &event)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let event_id = job.id;
    let inserted = state.store().insert(vec![job]).await?;
    let jobs: Vec<_> = pysaas_brokers::Inserted::created_jobs(&inserted).collect();
    super::dispatch_created(&state, &jobs).await;
    Ok((StatusCode::ACCEPTED, Json(EventAccepted { event_id })).into_response())
}
