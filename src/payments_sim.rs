//! `pysaas payments-sim`: a local payment provider speaking the subset of Stripe's PaymentIntents
//! API that billing uses, for development and tests (`pysaas dev` starts one in-process). Like
//! Stripe it charges once per `Idempotency-Key` (a repeated request answers the first answer
//! again, with `Idempotent-Replayed: true`), decides by test payment method
//! (`pm_card_visa` succeeds, `pm_card_chargeDeclined` and
//! `pm_card_chargeDeclinedInsufficientFunds` decline, `pm_card_authenticationRequired` needs
//! authentication), and answers errors in Stripe's shape. On command it fails the next requests:
//! `POST /_sim/faults` with `{"fault": "error_500" | "rate_limit" | "timeout_before" |
//! "timeout_after_capture" | "delay", "times": n, "hold_ms": ms, "retry_after": s}`; `GET /_sim/payment_intents`
//! lists what it captured.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The port `pysaas payments-sim` listens on unless told (stripe-mock's).
pub const DEFAULT_PORT: u16 = 12111;

/// A fault the next requests suffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// HTTP 500 before doing anything (not saved under the key, as Stripe does).
    #[serde(rename = "error_500")]
    Error500,
    /// HTTP 429 with `Retry-After` (`retry_after` seconds, 1 unless told).
    RateLimit,
    /// Hold the request `hold_ms`, then 503: nothing charged.
    TimeoutBefore,
    /// Charge (and save the answer under the key), then hold the answer `hold_ms`.
    TimeoutAfterCapture,
    /// Charge, then answer after `hold_ms`.
    Delay,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct Fault {
    fault: FaultKind,
    #[serde(default = "one")]
    times: u32,
    #[serde(default = "default_hold")]
    hold_ms: u64,
    #[serde(default = "one_second")]
    retry_after: u64,
}

fn one_second() -> u64 {
    1
}

fn one() -> u32 {
    1
}

fn default_hold() -> u64 {
    30_000
}

/// A PaymentIntent as the simulator keeps it.
#[derive(Debug, Clone, Serialize)]
struct Intent {
    id: String,
    object: &'static str,
    amount: i64,
    currency: String,
    status: String,
    payment_method: String,
    description: Option<String>,
    metadata: serde_json::Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_payment_error: Option<Value>,
    created: i64,
    /// Not Stripe's: the key it was created under, and whether its answer has left.
    idempotency_key: Option<String>,
    answered: bool,
}

/// The first answer to an idempotency key: the request's parameters, status and body.
type Saved = (Vec<(String, String)>, u16, Value);

#[derive(Default)]
struct Sim {
    intents: Vec<Intent>,
    /// Key → (the request's parameters, status, body) of its first answer.
    by_key: HashMap<String, Saved>,
    faults: VecDeque<Fault>,
    /// Requests answered from a saved answer.
    replays: u64,
}

#[derive(Clone)]
struct SimState {
    sim: Arc<Mutex<Sim>>,
    secret_key: Option<String>,
}

fn error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> (u16, Value) {
    let mut e = json!({"type": kind, "message": message});
    if let Some(code) = code {
        e["code"] = json!(code);
    }
    (status.as_u16(), json!({ "error": e }))
}

fn respond(status: u16, body: Value, replayed: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(body)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn unauthorised() -> Response {
    let (status, body) = error(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        None,
        "Invalid API Key provided",
    );
    respond(status, body, false)
}

fn authorised(state: &SimState, headers: &HeaderMap) -> bool {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (&state.secret_key, given) {
        (_, None) => false,
        (None, Some(key)) => key.starts_with("sk_"),
        (Some(want), Some(key)) => want == key,
    }
}

/// The outcome a test payment method stands for: (status, decline code, message).
fn outcome(payment_method: &str) -> Option<(&'static str, Option<&'static str>, &'static str)> {
    match payment_method {
        "pm_card_chargeDeclined" => Some((
            "requires_payment_method",
            Some("generic_decline"),
            "Your card was declined.",
        )),
        "pm_card_chargeDeclinedInsufficientFunds" => Some((
            "requires_payment_method",
            Some("insufficient_funds"),
            "Your card has insufficient funds.",
        )),
        "pm_card_authenticationRequired" => Some(("requires_action", None, "")),
        pm if pm.starts_with("pm_card_") => Some(("succeeded", None, "")),
        _ => None,
    }
}

/// Creates (and confirms) a PaymentIntent from the form; (status, body).
fn create(sim: &mut Sim, form: &[(String, String)], key: Option<&str>) -> (u16, Value) {
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let amount = match field("amount").map(str::parse::<i64>) {
        Some(Ok(a)) if a > 0 => a,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("parameter_invalid_integer"),
                "amount must be a positive integer in the currency's minor unit",
            )
        }
    };
    let currency = match field("currency") {
        Some(c) if c.len() == 3 && c.chars().all(|ch| ch.is_ascii_lowercase()) => c.to_owned(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("parameter_invalid"),
                "currency must be a three-letter ISO code in lower case",
            )
        }
    };
    let Some(payment_method) = field("payment_method") else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_missing"),
            "payment_method is required",
        );
    };
    if field("confirm") != Some("true") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid"),
            "this simulator creates confirmed PaymentIntents only (confirm=true)",
        );
    }
    let Some((status, decline, message)) = outcome(payment_method) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such PaymentMethod: '{payment_method}'"),
        );
    };
    let metadata = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), json!(v)))
        })
        .collect();
    let last_payment_error = decline.map(|code| {
        json!({"type": "card_error", "code": "card_declined", "decline_code": code, "message": message})
    });
    let intent = Intent {
        id: format!("pi_sim_{}", uuid::Uuid::new_v4().simple()),
        object: "payment_intent",
        amount,
        currency,
        status: status.to_owned(),
        payment_method: payment_method.to_owned(),
        description: field("description").map(str::to_owned),
        metadata,
        last_payment_error: last_payment_error.clone(),
        created: chrono::Utc::now().timestamp(),
        idempotency_key: key.map(str::to_owned),
        answered: false,
    };
    let body = serde_json::to_value(&intent).unwrap_or(Value::Null);
    sim.intents.push(intent);
    match last_payment_error {
        Some(mut e) => {
            e["payment_intent"] = body;
            (StatusCode::PAYMENT_REQUIRED.as_u16(), json!({ "error": e }))
        }
        None => (200, body),
    }
}

async fn create_intent(
    State(state): State<SimState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if !authorised(&state, &headers) {
        return unauthorised();
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (fault, replay, answer) = {
        let Ok(mut sim) = state.sim.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        if let Some((params, status, body)) = key.as_ref().and_then(|k| sim.by_key.get(k)) {
            if *params != form {
                let (status, body) = error(
                    StatusCode::BAD_REQUEST,
                    "idempotency_error",
                    None,
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                );
                return respond(status, body, false);
            }
            let (status, body) = (*status, body.clone());
            sim.replays += 1;
            return respond(status, body, true);
        }
        let fault = match sim.faults.front_mut() {
            Some(f) => {
                let taken = *f;
                f.times = f.times.saturating_sub(1);
                if f.times == 0 {
                    sim.faults.pop_front();
                }
                Some(taken)
            }
            None => None,
        };
        match fault.map(|f| (f.fault, f.retry_after)) {
            Some((FaultKind::Error500, _)) => {
                let (s, b) = error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    None,
                    "An unknown error occurred",
                );
                return respond(s, b, false);
            }
            Some((FaultKind::RateLimit, retry_after)) => {
                let (s, b) = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    Some("rate_limit"),
                    "Too many requests",
                );
                let mut response = respond(s, b, false);
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(retry_after));
                return response;
            }
            Some((FaultKind::TimeoutBefore, _)) => (fault, false, None),
            _ => {
                let (status, body) = create(&mut sim, &form, key.as_deref());
                if let Some(k) = &key {
                    sim.by_key
                        .insert(k.clone(), (form.clone(), status, body.clone()));
                }
                (fault, false, Some((status, body)))
            }
        }
    };
    if let Some(f) = fault {
        tokio::time::sleep(Duration::from_millis(f.hold_ms)).await;
    }
    let Some((status, body)) = answer else {
        let (s, b) = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            None,
            "timed out before processing",
        );
        return respond(s, b, replay);
    };
    let id = body
        .get("id")
        .or_else(|| body.pointer("/error/payment_intent/id"))
        .and_then(Value::as_str);
    if let (Ok(mut sim), Some(id)) = (state.sim.lock(), id) {
        if let Some(intent) = sim.intents.iter_mut().find(|i| i.id == id) {
            intent.answered = true;
        }
    }
    respond(status, body, replay)
}

async fn get_intent(
    State(state): State<SimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorised(&state, &headers) {
        return unauthorised();
    }
    let found = state
        .sim
        .lock()
        .ok()
        .and_then(|sim| sim.intents.iter().find(|i| i.id == id).cloned());
    match found {
        Some(intent) => respond(
            200,
            serde_json::to_value(intent).unwrap_or(Value::Null),
            false,
        ),
        None => {
            let (s, b) = error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("resource_missing"),
                &format!("No such payment_intent: '{id}'"),
            );
            respond(s, b, false)
        }
    }
}

async fn add_fault(State(state): State<SimState>, Json(fault): Json<Fault>) -> StatusCode {
    match state.sim.lock() {
        Ok(mut sim) => {
            sim.faults.push_back(fault);
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn clear_faults(State(state): State<SimState>) -> StatusCode {
    match state.sim.lock() {
        Ok(mut sim) => {
            sim.faults.clear();
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn list_intents(State(state): State<SimState>) -> Response {
    let (intents, replays) = state
        .sim
        .lock()
        .map(|sim| (sim.intents.clone(), sim.replays))
        .unwrap_or_default();
    Json(json!({ "data": intents, "replays": replays })).into_response()
}

/// The simulator's routes; `secret_key`: the one key it accepts (any `sk_…` when `None`).
pub fn router(secret_key: Option<String>) -> Router {
    let state = SimState {
        sim: Arc::new(Mutex::new(Sim::default())),
        secret_key,
    };
    Router::new()
        .route("/v1/payment_intents", post(create_intent))
        .route("/v1/payment_intents/{id}", get(get_intent))
        .route("/_sim/faults", post(add_fault).delete(clear_faults))
        .route("/_sim/payment_intents", get(list_intents))
        .with_state(state)
}

/// Serves the simulator on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    secret_key: Option<String>,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(secret_key))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
