//! Gateway concerns in front of every protected route: authentication (once, for the extractors
//! to reuse), rate limits per tenant and per API key with `RateLimit-*` headers, and the tenant in
//! the access log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::Subject;
use crate::ratelimit::Decision;
use crate::{ApiError, AppState};

/// How long a tenant's plan is cached.
const PLAN_TTL: Duration = Duration::from_secs(60);

/// Tenant → (plan, when read).
#[derive(Debug, Default)]
pub(crate) struct PlanCache(Mutex<HashMap<String, (String, Instant)>>);

impl PlanCache {
    async fn plan(&self, state: &AppState, tenant: &str) -> Result<String, ApiError> {
        if let Some((plan, at)) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(tenant) {
            if at.elapsed() < PLAN_TTL {
                return Ok(plan.clone());
            }
        }
        let plan = state
            .store()
            .get_tenant(tenant)
            .await?
            .map(|t| t.plan)
            .unwrap_or_else(|| state.limits().default_plan.clone());
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(tenant.to_owned(), (plan.clone(), Instant::now()));
        Ok(plan)
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn rate_headers(response: &mut Response, d: &Decision) {
    let headers = response.headers_mut();
    for (name, value) in [
        ("ratelimit-limit", d.limit.to_string()),
        ("ratelimit-remaining", d.remaining.to_string()),
        ("ratelimit-reset", ceil_secs(d.reset).to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// The client's address: the peer, or — behind a trusted load balancer — the last
/// `X-Forwarded-For` entry (the address the balancer saw).
fn client_ip(request: &Request, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for {
        let forwarded = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .and_then(|v| v.parse::<std::net::IpAddr>().ok());
        if let Some(ip) = forwarded {
            return ip.to_string();
        }
    }
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn too_many(what: &str, d: &Decision) -> Response {
    let wait = ceil_secs(d.retry_after).max(1);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("rate limit of this {what} exceeded; retry in {wait} s"),
    )
    .with_retry_after(wait)
    .into_response();
    rate_headers(&mut response, d);
    response
}

/// Limits `/v1/auth/*` per client address.
pub(crate) async fn limit_auth_by_ip(
    State((state, trust_forwarded_for)): State<(AppState, bool)>,
    request: Request,
    next: Next,
) -> Response {
    let ip = client_ip(&request, trust_forwarded_for);
    match state
        .limiter()
        .check(&format!("ip:{ip}"), state.limits().auth_per_ip)
        .await
    {
        Ok(d) if !d.allowed => {
            tracing::warn!(client = %ip, "auth requests rate-limited");
            too_many("client address", &d)
        }
        Ok(d) => {
            let mut response = next.run(request).await;
            rate_headers(&mut response, &d);
            response
        }
        Err(err) => {
            tracing::warn!(error = %err, "rate limit not checked");
            next.run(request).await
        }
    }
}

/// Authenticates, applies the limits, runs the handler, adds the `RateLimit-*` headers.
pub(crate) async fn authenticate_and_limit(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match state
        .auth()
        .authenticate(state.store().as_ref(), request.headers())
        .await
    {
        Ok(principal) => principal,
        Err(err) => return err.into_response(),
    };
    tracing::Span::current().record("tenant", principal.tenant_id.as_str());
    let plan = match state.plans().plan(&state, &principal.tenant_id).await {
        Ok(plan) => plan,
        Err(err) => return err.into_response(),
    };
    let limits = state.limits();
    let mut checks = vec![(
        format!("t:{}", principal.tenant_id),
        limits.for_plan(&plan),
        "tenant",
    )];
    if let Subject::ApiKey { id, .. } = &principal.subject {
        checks.push((format!("k:{id}"), limits.api_key, "API key"));
    }
    let mut tightest: Option<Decision> = None;
    for (key, limit, what) in checks {
        match state.limiter().check(&key, limit).await {
            Ok(d) if !d.allowed => return too_many(what, &d),
            Ok(d) => {
                if tightest.is_none_or(|t| d.remaining < t.remaining) {
                    tightest = Some(d);
                }
            }
            // Availability over strictness: a limiter outage does not take the API down.
            Err(err) => tracing::warn!(error = %err, "rate limit not checked"),
        }
    }
    request.extensions_mut().insert(principal);
    let mut response = next.run(request).await;
    if let Some(d) = tightest {
        rate_headers(&mut response, &d);
    }
    response
}
