//! PySaaS HTTP API (axum): job submission and management, cron schedules, queue statistics, health, Prometheus
//! metrics and the OpenAPI document with Swagger UI at `/docs`.
//!
//! Every error is `application/problem+json`; `202 Accepted` is returned only after the job's row
//! is committed.

pub mod auth;
pub mod dto;
pub mod error;
mod gateway;
mod openapi;
pub mod ratelimit;
mod routes;
mod state;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use pysaas_jobs::trace::TraceParent;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

pub use error::{ApiError, PROBLEM_JSON};
pub use openapi::{document as openapi_document, ApiDoc};
pub use routes::jobs::{valid_queue_name, BATCH_MAX, LIST_LIMIT_DEFAULT, MAX_ATTEMPTS_LIMIT};
pub use state::{describe_metrics, AppState};

/// Largest request body accepted (1 MiB); larger ones get 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Gateway settings beside authentication and rate limits.
#[derive(Debug, Clone, Default)]
pub struct GatewayConfig {
    /// Origins allowed by CORS (`*` for any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Requests running longer are answered 408 (none when `None`).
    pub request_timeout: Option<std::time::Duration>,
    /// Take the client address from the last `X-Forwarded-For` entry (only behind a load
    /// balancer that sets it; otherwise clients could pick their own address).
    pub trust_forwarded_for: bool,
    /// Static files served for every path the API does not answer (the dashboard's export);
    /// `dir/` serves `dir/index.html`.
    pub ui_dir: Option<std::path::PathBuf>,
}

/// The full router with default gateway settings.
pub fn router(state: AppState) -> Router {
    router_with(state, &GatewayConfig::default())
}

/// The full router.
pub fn router_with(state: AppState, gateway: &GatewayConfig) -> Router {
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    let protected = Router::new()
        .route("/v1/me", get(routes::auth::me))
        .route("/v1/auth/switch", post(routes::auth::switch_tenant))
        .route(
            "/v1/api-keys",
            get(routes::auth::list_keys).post(routes::auth::create_key),
        )
        .route("/v1/api-keys/{id}", delete(routes::auth::revoke_key))
        .route(
            "/v1/members",
            get(routes::auth::list_members).put(routes::auth::set_member),
        )
        .route("/v1/members/{user_id}", delete(routes::auth::remove_member))
        .route(
            "/v1/jobs",
            post(routes::jobs::submit).get(routes::jobs::list),
        )
        .route("/v1/jobs/batch", post(routes::jobs::submit_batch))
        .route("/v1/jobs/bulk", post(routes::jobs::bulk))
        .route("/v1/jobs/{id}", get(routes::jobs::get))
        .route("/v1/jobs/{id}/cancel", post(routes::jobs::cancel))
        .route("/v1/jobs/{id}/retry", post(routes::jobs::retry))
        .route(
            "/v1/schedules",
            get(routes::schedules::list).post(routes::schedules::create),
        )
        .route(
            "/v1/schedules/{name}",
            get(routes::schedules::get)
                .patch(routes::schedules::patch)
                .delete(routes::schedules::delete),
        )
        .route("/v1/schedules/{name}/pause", post(routes::schedules::pause))
        .route(
            "/v1/schedules/{name}/resume",
            post(routes::schedules::resume),
        )
        .route(
            "/v1/schedules/{name}/trigger",
            post(routes::schedules::trigger),
        )
        .route("/v1/cron/preview", post(routes::schedules::preview))
        .route(
            "/v1/billing/plans",
            get(routes::billing::list_plans).post(routes::billing::create_plan),
        )
        .route(
            "/v1/billing/plans/{id}/archive",
            post(routes::billing::archive_plan),
        )
        .route(
            "/v1/billing/subscriptions",
            get(routes::billing::list_subscriptions).post(routes::billing::subscribe),
        )
        .route(
            "/v1/billing/subscriptions/{id}",
            get(routes::billing::get_subscription),
        )
        .route(
            "/v1/billing/subscriptions/{id}/cancel",
            post(routes::billing::cancel_subscription),
        )
        .route(
            "/v1/billing/subscriptions/{id}/change-plan",
            post(routes::billing::change_plan),
        )
        .route("/v1/billing/invoices", get(routes::billing::list_invoices))
        .route(
            "/v1/billing/invoices/{id}",
            get(routes::billing::get_invoice),
        )
        .route(
            "/v1/billing/invoices/{id}/payments",
            get(routes::billing::list_payments),
        )
        .route(
            "/v1/billing/invoices/{id}/void",
            post(routes::billing::void_invoice),
        )
        .route(
            "/v1/notifications/sender",
            get(routes::notifications::get_sender)
                .put(routes::notifications::set_sender)
                .delete(routes::notifications::delete_sender),
        )
        .route(
            "/v1/webhooks/endpoints",
            get(routes::webhooks::list_endpoints).post(routes::webhooks::create_endpoint),
        )
        .route(
            "/v1/webhooks/endpoints/{id}",
            delete(routes::webhooks::delete_endpoint),
        )
        .route(
            "/v1/webhooks/endpoints/{id}/rotate",
            post(routes::webhooks::rotate_secret),
        )
        .route(
            "/v1/webhooks/endpoints/{id}/enable",
            post(routes::webhooks::enable_endpoint),
        )
        .route(
            "/v1/webhooks/endpoints/{id}/deliveries",
            get(routes::webhooks::list_deliveries),
        )
        .route(
            "/v1/webhooks/deliveries/{id}/replay",
            post(routes::webhooks::replay_delivery),
        )
        .route("/v1/webhooks/events", post(routes::webhooks::send_event))
        .route(
            "/v1/profile",
            get(routes::profiles::get_profile)
                .patch(routes::profiles::patch_profile)
                .delete(routes::profiles::delete_profile),
        )
        .route(
            "/v1/profile/preferences",
            get(routes::profiles::get_preferences).put(routes::profiles::set_preferences),
        )
        .route("/v1/profile/exports", post(routes::profiles::create_export))
        .route(
            "/v1/profile/exports/{id}",
            get(routes::profiles::get_export),
        )
        .route(
            "/v1/profile/exports/{id}/download",
            get(routes::profiles::download_export),
        )
        .route(
            "/v1/users/{id}/profile",
            get(routes::profiles::get_user_profile),
        )
        .route("/v1/erasures/{id}", get(routes::profiles::get_erasure))
        .route("/v1/inbox", get(routes::inbox::list_inbox))
        .route("/v1/inbox/read-all", post(routes::inbox::mark_all_read))
        .route("/v1/inbox/{id}/read", post(routes::inbox::mark_read))
        .route("/v1/events/stream", get(routes::events::stream))
        .route("/v1/stats", get(routes::stats::stats))
        .route("/v1/audit", get(routes::audit::list_audit))
        .route("/v1/analytics/jobs", get(routes::audit::job_analytics))
        .route(
            "/v1/analytics/revenue",
            get(routes::audit::revenue_analytics),
        )
        .route("/v1/queues", get(routes::system::queues))
        .route("/v1/queues/{name}/pause", post(routes::system::pause_queue))
        .route(
            "/v1/queues/{name}/resume",
            post(routes::system::resume_queue),
        )
        .route("/v1/kinds", get(routes::system::kinds))
        .route("/v1/workers", get(routes::system::workers))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            gateway::authenticate_and_limit,
        ));
    let accounts = Router::new()
        .route("/v1/auth/signup", post(routes::auth::signup))
        .route("/v1/auth/login", post(routes::auth::login))
        .route("/v1/auth/refresh", post(routes::auth::refresh))
        .route("/v1/auth/logout", post(routes::auth::logout))
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), gateway.trust_forwarded_for),
            gateway::limit_auth_by_ip,
        ));
    let mut router = Router::new()
        .merge(protected)
        .merge(accounts)
        .route("/.well-known/jwks.json", get(routes::auth::jwks))
        .route("/healthz", get(routes::system::healthz))
        .route("/readyz", get(routes::system::readyz))
        .route("/metrics", get(routes::system::metrics))
        .merge(
            SwaggerUi::new("/docs")
                .external_url_unchecked("/openapi.json", openapi::document(state.registry())),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    router = match &gateway.ui_dir {
        Some(dir) => {
            let files = tower_http::services::ServeDir::new(dir)
                .append_index_html_on_directories(true)
                .call_fallback_on_method_not_allowed(true)
                .not_found_service(axum::routing::any(not_found));
            // The dashboard loads nothing from elsewhere and is never framed (its tokens sit in
            // the page's storage). Next's export inlines its bootstrap scripts and styles, and
            // Ajv compiles each kind's schema into a validator function (`unsafe-eval`).
            let csp = HeaderValue::from_static(
                "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; \
                 img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
                 form-action 'self'",
            );
            router.fallback_service(
                tower::ServiceBuilder::new()
                    .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
                        header::CONTENT_SECURITY_POLICY,
                        csp,
                    ))
                    .service(files),
            )
        }
        None => router.fallback(not_found),
    };
    if let Some(timeout) = gateway.request_timeout {
        router = router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    }
    if !gateway.cors_origins.is_empty() {
        router = router.layer(cors(&gateway.cors_origins));
    }
    router
        .layer(tower_http::set_header::SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(tower_http::set_header::SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(middleware::from_fn(require_json_bodies))
        .layer(middleware::from_fn(problem_for_bare_errors))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    // Access log: method, path, request id, tenant, status, latency. Never headers
                    // (they carry credentials) and never the query string.
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    // This request's span, as `trace_context` (the layer outside) made it.
                    let trace = req.extensions().get::<TraceParent>();
                    let (trace_id, span_id) = trace.map_or(("", ""), |t| (t.trace_id(), t.span_id()));
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id, trace_id, span_id, tenant = tracing::field::Empty)
                })
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(tower_http::LatencyUnit::Micros),
                ),
        )
        .layer(middleware::from_fn(trace_context))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// W3C Trace Context: this request's span is a child of the caller's `traceparent`, or starts a
/// trace. It replaces the header, so the access log line and every job the request submits
/// carry it (the job's worker span is its child in turn).
async fn trace_context(mut req: Request, next: Next) -> Response {
    let caller = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let ours = caller
        .as_ref()
        .map_or_else(TraceParent::new_root, TraceParent::child);
    if let Ok(value) = HeaderValue::from_str(&ours.to_string()) {
        req.headers_mut().insert("traceparent", value);
    }
    req.extensions_mut().insert(ours.clone());
    // Exported: calls of the API, not probes, metrics or the dashboard's files.
    if !pysaas_jobs::trace::exporting() || !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let start = std::time::SystemTime::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let status = response.status();
    pysaas_jobs::trace::export(pysaas_jobs::trace::FinishedSpan {
        context: ours,
        parent_span_id: caller.map(|c| c.span_id().to_owned()),
        name: method.clone(),
        kind: pysaas_jobs::trace::SpanKind::Server,
        start,
        end: std::time::SystemTime::now(),
        attributes: vec![
            ("http.request.method", method),
            ("url.path", path),
            ("http.response.status_code", status.as_u16().to_string()),
        ],
        error: status.is_server_error().then(|| {
            status
                .canonical_reason()
                .unwrap_or("server error")
                .to_owned()
        }),
    });
    response
}

fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PATCH,
            axum::http::Method::PUT,
            axum::http::Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            axum::http::HeaderName::from_static("x-api-key"),
            axum::http::HeaderName::from_static("idempotency-key"),
            axum::http::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            axum::http::HeaderName::from_static("x-request-id"),
            axum::http::HeaderName::from_static("ratelimit-limit"),
            axum::http::HeaderName::from_static("ratelimit-remaining"),
            axum::http::HeaderName::from_static("ratelimit-reset"),
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(600))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// A request with a body must say it is JSON (`application/json` or `application/…+json`):
/// anything else is `415`, not parsed as JSON regardless.
async fn require_json_bodies(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > 0)
        || headers.contains_key(header::TRANSFER_ENCODING);
    if has_body {
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        let json = media.as_deref().is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        });
        if !json {
            let detail = match media {
                Some(m) => {
                    format!("the body is `{m}`; send JSON with `Content-Type: application/json`")
                }
                None => {
                    "the body has no Content-Type; send JSON with `Content-Type: application/json`"
                        .into()
                }
            };
            return ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, detail).into_response();
        }
    }
    next.run(request).await
}

/// Turns error responses that axum produced without a body (405, for example) into problems.
async fn problem_for_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if (status.is_client_error() || status.is_server_error())
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        let mut problem =
            ApiError::new(status, status.canonical_reason().unwrap_or("error")).into_response();
        if let Some(allow) = response.headers().get(header::ALLOW) {
            problem.headers_mut().insert(header::ALLOW, allow.clone());
        }
        return problem;
    }
    response
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains open requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
