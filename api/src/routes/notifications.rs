//! `/v1/notifications`: the tenant's notification settings (its email sender).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use pysaas_brokers::EmailSender;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Admin, TenantOf};
use crate::error::{parse_json, ApiError};
use crate::AppState;

/// A tenant's email sender.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SenderBody {
    /// `From` address.
    #[schema(
        example = "billing@acme.example",
        max_length = 254,
        pattern = r"^[A-Za-z0-9_%+-]{1,64}@([A-Za-z0-9]{1,63}\.){1,4}[A-Za-z]{2,24}$"
    )]
    pub(crate) from_address: String,
    /// `From` display name (1 to 100 characters).
    #[schema(
        example = "Acme Billing",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
    )]
    pub(crate) from_name: Option<String>,
    /// `Reply-To` address.
    #[schema(
        example = "support@acme.example",
        max_length = 254,
        pattern = r"^[A-Za-z0-9_%+-]{1,64}@([A-Za-z0-9]{1,63}\.){1,4}[A-Za-z]{2,24}$"
    )]
    pub(crate) reply_to: Option<String>,
}

/// The sender the tenant's email goes out from.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SenderView {
    from_address: String,
    from_name: Option<String>,
    reply_to: Option<String>,
    updated_at: DateTime<Utc>,
}

impl From<EmailSender> for SenderView {
    fn from(s: EmailSender) -> Self {
        SenderView {
            from_address: s.from_address,
            from_name: s.from_name,
            reply_to: s.reply_to,
            updated_at: s.updated_at,
        }
    }
}

/// The tenant's email sender (404: none set, email goes out from the deployment's default).
#[utoipa::path(get, path = "/v1/notifications/sender", operation_id = "getEmailSender", tag = "notifications",
    responses((status = 200, body = SenderView), (status = 404, description = "No sender set", content_type = "application/problem+json")))]
pub(crate) async fn get_sender(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
) -> Result<Json<SenderView>, ApiError> {
    let sender = state.store().email_sender(&tenant).await?.ok_or_else(|| {
        ApiError::not_found("no sender set: email goes out from the deployment's default")
    })?;
    Ok(Json(sender.into()))
}

/// Set the tenant's email sender.
#[utoipa::path(put, path = "/v1/notifications/sender", operation_id = "setEmailSender", tag = "notifications", request_body = SenderBody,
    responses((status = 200, body = SenderView), (status = 422, description = "Malformed address or name", content_type = "application/problem+json")))]
pub(crate) async fn set_sender(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SenderView>, ApiError> {
    let body: SenderBody = parse_json(&body?)?;
    super::email_field("from_address", &body.from_address)?;
    if let Some(reply_to) = &body.reply_to {
        super::email_field("reply_to", reply_to)?;
    }
    if let Some(name) = &body.from_name {
        if name.trim().is_empty()
            || name.chars().count() > 100
            || name.chars().any(char::is_control)
        {
            return Err(ApiError::invalid_field(
                "`from_name` must be 1 to 100 printable characters",
                "from_name",
                "1 to 100 printable characters",
            ));
        }
    }
    let sender = EmailSender {
        from_address: body.from_address,
        from_name: body.from_name,
        reply_to: body.reply_to,
        updated_at: state.store().now().await?,
    };
    state
        .store()
        .set_email_sender(&tenant, Some(&sender))
        .await?;
    Ok(Json(sender.into()))
}

/// Remove the tenant's sender: email goes out from the deployment's default again.
#[utoipa::path(delete, path = "/v1/notifications/sender", operation_id = "deleteEmailSender", tag = "notifications",
    responses((status = 204, description = "Removed")))]
pub(crate) async fn delete_sender(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
) -> Result<StatusCode, ApiError> {
    state.store().set_email_sender(&tenant, None).await?;
    Ok(StatusCode::NO_CONTENT)
}
