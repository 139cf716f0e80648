//! `/v1/profile`, `/v1/users/{id}/profile`, `/v1/erasures`: users' profiles and notification
//! preferences (in the profile store: DynamoDB or the job store), their data exports and
//! erasures. Writes are conditional on the item's version: `ETag` on every answer, `If-Match`
//! on a write answers `412` when another write came first.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use pysaas_brokers::store::Versioned;
use pysaas_brokers::store::{Erasure, ProfileExport};
use pysaas_brokers::ProfileItem;
use pysaas_jobs::events::{ProfileEvent, PROFILE_UPDATED};
use pysaas_jobs::kinds::profile::{Delete, Export};
use pysaas_jobs::preferences::{Category, Channel, OptOut, Preferences};
use pysaas_jobs::NewJob;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Admin, Any, Authorized, Principal, TenantOf};
use crate::error::{parse_json, ApiError};
use crate::AppState;

/// How often a write without `If-Match` re-reads and tries again when another write came first.
const WRITE_TRIES: usize = 3;

use super::user_of;

/// `Some(missing)` for a member present (even as `null`), `None` for one absent: a JSON merge
/// patch's two meanings of "no value".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A user's profile.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ProfileView {
    /// The user.
    user_id: Uuid,
    /// Sign-in email (changed through the account, not here).
    email: String,
    /// Display name.
    display_name: Option<String>,
    /// BCP 47 language tag (`en-GB`).
    locale: Option<String>,
    /// IANA time zone.
    timezone: Option<String>,
    /// Writes so far (0: never written); the `ETag`.
    version: i64,
    /// Last written.
    updated_at: Option<DateTime<Utc>>,
}

/// A JSON merge patch (RFC 7396) of the profile: a member set changes it, `null` clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfilePatch {
    /// 1 to 100 printable characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        example = "Ada Lovelace",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
    )]
    display_name: Option<Option<String>>,
    /// BCP 47 language tag: a language, optionally a region (`en`, `en-GB`, `es-419`).
    #[serde(default, deserialize_with = "present")]
    #[schema(example = "en-GB", pattern = r"^[a-z]{2,3}(-([A-Z]{2}|[0-9]{3}))?$")]
    locale: Option<Option<String>>,
    /// IANA time zone.
    #[serde(default, deserialize_with = "present")]
    #[schema(example = "Europe/London", schema_with = crate::dto::time_zone_schema)]
    timezone: Option<Option<String>>,
}

/// The schema's pattern: a language, optionally a region.
fn valid_locale(s: &str) -> bool {
    let (lang, region) = match s.split_once('-') {
        Some((lang, region)) => (lang, Some(region)),
        None => (s, None),
    };
    (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_lowercase())
        && region.is_none_or(|r| {
            (r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()))
                || (r.len() == 3 && r.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// The schema's pattern and length: printable, not starting with a space.
fn valid_display_name(s: &str) -> bool {
    !s.starts_with(char::is_whitespace)
        && (1..=100).contains(&s.chars().count())
        && !s.chars().any(|c| c.is_ascii_control())
}

/// One change a patch makes: a member set to a checked value, or cleared.
type Change = (&'static str, Option<String>);

impl ProfilePatch {
    /// The members the patch sets or clears, each checked.
    fn checked(self) -> Result<Vec<Change>, ApiError> {
        let fields = [
            ("display_name", self.display_name),
            ("locale", self.locale),
            ("timezone", self.timezone),
        ];
        let mut changes = Vec::new();
        for (name, value) in fields {
            let Some(value) = value else { continue };
            if let Some(v) = &value {
                let (ok, expected) = match name {
                    "display_name" => (valid_display_name(v), "1 to 100 printable characters"),
                    "locale" => (valid_locale(v), "a language tag like en or en-GB"),
                    _ => (
                        pysaas_jobs::time_zone_names().any(|z| z == v),
                        "an IANA time zone like Europe/London",
                    ),
                };
                if !ok {
                    return Err(ApiError::invalid_field(
                        format!("`{name}` must be {expected}"),
                        name,
                        expected,
                    ));
                }
            }
            changes.push((name, value));
        }
        Ok(changes)
    }
}

/// A user's notification preferences.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PreferencesView {
    /// What the user does not want, by channel and category.
    opt_outs: Vec<OptOutView>,
    /// Categories sent whatever the preferences say.
    transactional: Vec<String>,
    /// Writes so far (0: never written); the `ETag`.
    version: i64,
    /// Last written.
    updated_at: Option<DateTime<Utc>>,
}

/// A category a user can opt out of (billing and security messages are always sent).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OptionalCategory {
    /// Operational alerts.
    Alerts,
    /// Welcome messages, news, tips.
    Product,
}

/// How a message reaches a user.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ChannelName {
    /// Email.
    Email,
    /// The dashboard's inbox.
    InApp,
}

/// One opt-out.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OptOutView {
    /// The channel.
    channel: ChannelName,
    /// The category.
    category: OptionalCategory,
}

/// The whole set of opt-outs (replaces the stored one).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreferencesBody {
    /// At most one of each channel and category pair (4 in all).
    #[schema(max_items = 4)]
    opt_outs: Vec<OptOutView>,
}

impl From<OptOutView> for OptOut {
    fn from(o: OptOutView) -> Self {
        OptOut {
            channel: match o.channel {
                ChannelName::Email => Channel::Email,
                ChannelName::InApp => Channel::InApp,
            },
            category: match o.category {
                OptionalCategory::Alerts => Category::Alerts,
                OptionalCategory::Product => Category::Product,
            },
        }
    }
}

fn opt_out_view(o: OptOut) -> Option<OptOutView> {
    Some(OptOutView {
        channel: match o.channel {
            Channel::Email => ChannelName::Email,
            Channel::InApp => ChannelName::InApp,
        },
        category: match o.category {
            Category::Alerts => OptionalCategory::Alerts,
            Category::Product => OptionalCategory::Product,
            Category::Billing | Category::Security => return None,
        },
    })
}

/// An answer with the item's version as its `ETag`.
fn tagged<T: Serialize>(version: i64, body: T) -> Response {
    let mut response = Json(body).into_response();
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// The version `If-Match` names (`None`: no precondition); `*` is the current one.
fn if_match(headers: &HeaderMap, current: i64) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or_default().trim();
    if value == "*" {
        return if current > 0 {
            Ok(Some(current))
        } else {
            Err(precondition_failed(current))
        };
    }
    // If-Match compares strongly (RFC 9110): a weak tag never matches.
    value
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "If-Match `{value}` is not a strong ETag of this resource (like \"3\")"
            ))
        })
}

fn precondition_failed(current: i64) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "the resource changed since that version was read: fetch it again and reapply the change",
    )
    .with("current_version", current)
}

/// Reads, changes and writes an item under a conditional write: with `If-Match`, only if it
/// is still that version (else 412); without, retried over concurrent writes.
async fn write_item(
    state: &AppState,
    (tenant_id, user_id): (&str, Uuid),
    item: ProfileItem,
    headers: &HeaderMap,
    change: impl Fn(&mut Map<String, Value>) -> Result<(), ApiError>,
) -> Result<Versioned, ApiError> {
    // An erased account's session may outlive it a few minutes: it writes nothing back.
    if state.store().user_by_id(user_id).await?.is_none() {
        return Err(ApiError::not_found(format!("no user `{user_id}`")));
    }
    let profiles = state.profiles();
    for _ in 0..WRITE_TRIES {
        let stored = profiles.get_item(user_id, item).await?;
        let current = stored.as_ref().map_or(0, |v| v.version);
        let expected = if_match(headers, current)?;
        if expected.is_some_and(|e| e != current) {
            return Err(precondition_failed(current));
        }
        let mut doc = match stored.map(|v| v.data) {
            Some(Value::Object(doc)) => doc,
            _ => Map::new(),
        };
        change(&mut doc)?;
        let data = Value::Object(doc);
        let now = state.store().now().await?;
        if let Some(version) = profiles
            .put_item(user_id, item, &data, current, now)
            .await?
        {
            let event = ProfileEvent {
                item: Some(item.as_str().to_owned()),
                version: Some(version),
                request_id: None,
                counts: None,
            };
            let subject = format!("profiles/{}", item.as_str());
            // After the write: the profile store and the outbox share no transaction.
            super::record_after(state, tenant_id, PROFILE_UPDATED, &subject, &event).await;
            return Ok(Versioned {
                data,
                version,
                updated_at: now,
            });
        }
        if expected.is_some() {
            let latest = profiles.get_item(user_id, item).await?;
            return Err(precondition_failed(latest.map_or(0, |v| v.version)));
        }
    }
    Err(ApiError::conflict(
        "the item kept changing while it was written; try again",
    ))
}

async fn profile_view(
    state: &AppState,
    user_id: Uuid,
    stored: Option<Versioned>,
) -> Result<ProfileView, ApiError> {
    let user = state
        .store()
        .user_by_id(user_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user `{user_id}`")))?;
    let (data, version, updated_at) = match stored {
        Some(v) => (v.data, v.version, Some(v.updated_at)),
        None => (json!({}), 0, None),
    };
    let text = |name: &str| data.get(name).and_then(Value::as_str).map(str::to_owned);
    Ok(ProfileView {
        user_id,
        email: user.email,
        display_name: text("display_name"),
        locale: text("locale"),
        timezone: text("timezone"),
        version,
        updated_at,
    })
}

/// The caller's profile (`ETag`: its version).
#[utoipa::path(get, path = "/v1/profile", operation_id = "getProfile", tag = "profiles",
    responses((status = 200, body = ProfileView, headers(("ETag" = String, description = "The profile's version"))),
        (status = 403, description = "Called with an API key", content_type = "application/problem+json"),
        (status = 404, description = "The account is gone (erased)", content_type = "application/problem+json"),
        (status = 503, description = "The profile store is unreachable", content_type = "application/problem+json")))]
pub(crate) async fn get_profile(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Any>,
) -> Result<Response, ApiError> {
    let user_id = user_of(&principal)?;
    let stored = state
        .profiles()
        .get_item(user_id, ProfileItem::Profile)
        .await?;
    let view = profile_view(&state, user_id, stored).await?;
    Ok(tagged(view.version, view))
}

/// Change the caller's profile with a JSON merge patch. With `If-Match`, only if the profile is
/// still that version (412 otherwise).
#[utoipa::path(patch, path = "/v1/profile", operation_id = "patchProfile", tag = "profiles", request_body = ProfilePatch,
    params(("If-Match" = Option<String>, Header, description = "The ETag the change was made against")),
    responses((status = 200, body = ProfileView, headers(("ETag" = String, description = "The new version"))),
        (status = 400, description = "Malformed If-Match", content_type = "application/problem+json"),
        (status = 403, description = "Called with an API key", content_type = "application/problem+json"),
        (status = 404, description = "The account is gone (erased)", content_type = "application/problem+json"),
        (status = 409, description = "Kept changing during the write", content_type = "application/problem+json"),
        (status = 412, description = "Changed since the version in If-Match", content_type = "application/problem+json"),
        (status = 422, description = "Invalid field, named in `errors`", content_type = "application/problem+json"),
        (status = 503, description = "The profile store is unreachable", content_type = "application/problem+json")))]
pub(crate) async fn patch_profile(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Any>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let user_id = user_of(&principal)?;
    let patch: ProfilePatch = parse_json(&body?)?;
    let changes = patch.checked()?;
    let written = write_item(
        &state,
        (&principal.tenant_id, user_id),
        ProfileItem::Profile,
        &headers,
        |doc| {
            for (name, value) in &changes {
                match value {
                    Some(v) => doc.insert((*name).to_owned(), Value::String(v.clone())),
                    None => doc.remove(*name),
                };
            }
            Ok(())
        },
    )
    .await?;
    let view = profile_view(&state, user_id, Some(written)).await?;
    Ok(tagged(view.version, view))
}

/// A member's profile (admins).
#[utoipa::path(get, path = "/v1/users/{id}/profile", operation_id = "getUserProfile", tag = "profiles",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = ProfileView, headers(("ETag" = String, description = "The profile's version"))),
        (status = 404, description = "No such member of this tenant", content_type = "application/problem+json"),
        (status = 503, description = "The profile store is unreachable", content_type = "application/problem+json")))]
pub(crate) async fn get_user_profile(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user_id = super::parse_id("user", &id)?;
    // Only members of the caller's tenant: another tenant's users are not there to see.
    if !state
        .store()
        .members(&tenant)
        .await?
        .iter()
        .any(|m| m.user_id == user_id)
    {
        return Err(ApiError::not_found(format!("no member `{user_id}`")));
    }
    let stored = state
        .profiles()
        .get_item(user_id, ProfileItem::Profile)
        .await?;
    let view = profile_view(&state, user_id, stored).await?;
    Ok(tagged(view.version, view))
}

fn preferences_view(stored: Option<Versioned>) -> Result<PreferencesView, ApiError> {
    let (prefs, version, updated_at) = match stored {
        Some(v) => {
            let prefs: Preferences = serde_json::from_value(v.data).map_err(|e| {
                tracing::error!(error = %e, "stored preferences are unreadable");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            })?;
            (prefs, v.version, Some(v.updated_at))
        }
        None => (Preferences::default(), 0, None),
    };
    Ok(PreferencesView {
        opt_outs: prefs
            .opt_outs
            .into_iter()
            .filter_map(opt_out_view)
            .collect(),
        transactional: Category::ALL
            .into_iter()
            .filter(|c| c.transactional())
            .map(|c| c.as_str().to_owned())
            .collect(),
        version,
        updated_at,
    })
}

/// The caller's notification preferences (`ETag`: their version).
#[utoipa::path(get, path = "/v1/profile/preferences", operation_id = "getPreferences", tag = "profiles",
    responses((status = 200, body = PreferencesView, headers(("ETag" = String, description = "The preferences' version"))),
        (status = 403, description = "Called with an API key", content_type = "application/problem+json"),
        (status = 503, description = "The profile store is unreachable", content_type = "application/problem+json")))]
pub(crate) async fn get_preferences(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Any>,
) -> Result<Response, ApiError> {
    let user_id = user_of(&principal)?;
    let stored = state
        .profiles()
        .get_item(user_id, ProfileItem::Preferences)
        .await?;
    let view = preferences_view(stored)?;
    Ok(tagged(view.version, view))
}

/// Replace the caller's opt-outs. With `If-Match`, only if they are still that version.
#[utoipa::path(put, path = "/v1/profile/preferences", operation_id = "setPreferences", tag = "profiles", request_body = PreferencesBody,
    params(("If-Match" = Option<String>, Header, description = "The ETag the change was made against")),
    responses((status = 200, body = PreferencesView, headers(("ETag" = String, description = "The new version"))),
        (status = 400, description = "Malformed If-Match", content_type = "application/problem+json"),
        (status = 403, description = "Called with an API key", content_type = "application/problem+json"),
        (status = 404, description = "The account is gone (erased)", content_type = "application/problem+json"),
        (status = 409, description = "Kept changing during the write", content_type = "application/problem+json"),
        (status = 412, description = "Changed since the version in If-Match", content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", content_type = "application/problem+json"),
        (status = 503, description = "The profile store is unreachable", content_type = "application/problem+json")))]
pub(crate) async fn set_preferences(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Any>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let user_id = user_of(&principal)?;
    let body: PreferencesBody = parse_json(&body?)?;
    let prefs = Preferences {
        opt_outs: body.opt_outs.into_iter().map(OptOut::from).collect(),
    };
    let data = serde_json::to_value(&prefs).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let written = write_item(
        &state,
        (&principal.tenant_id, user_id),
        ProfileItem::Preferences,
        &headers,
        |doc| {
            if let Value::Object(new) = &data {
                doc.clone_from(new);
            }
            Ok(())
        },
    )
    .await?;
    let view = preferences_view(Some(written))?;
    Ok(tagged(view.version, view))
}

/// A data export.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ExportView {
    /// Id.
    id: Uuid,
    /// `pending` or `ready`.
    status: String,
    /// Asked.
    created_at: DateTime<Utc>,
    /// Built.
    completed_at: Option<DateTime<Utc>>,
    /// Where the document is, once ready.
    download: Option<String>,
}

impl From<ProfileExport> for ExportView {
    fn from(e: ProfileExport) -> Self {
        ExportView {
            download: (e.status == "ready")
                .then(|| format!("/v1/profile/exports/{}/download", e.id)),
            id: e.id,
            status: e.status,
            created_at: e.created_at,
            completed_at: e.completed_at,
        }
    }
}

/// Ask for everything PySaaS holds about the caller, as one JSON document built by a
/// `profile.export` job (queue `profiles`).
#[utoipa::path(post, path = "/v1/profile/exports", operation_id = "createProfileExport", tag = "profiles",
    responses((status = 202, body = ExportView),
        (status = 403, description = "Called with an API key", content_type = "application/problem+json")))]
pub(crate) async fn create_export(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Any>,
) -> Result<(StatusCode, Json<ExportView>), ApiError> {
    let user_id = user_of(&principal)?;
    let export = ProfileExport {
        id: Uuid::now_v7(),
        tenant_id: principal.tenant_id.clone(),
        user_id,
        status: "pending".into(),
        document: None,
        created_at: state.store().now().await?,
        completed_at: None,
    };
    let job = NewJob::of::<Export>(
        &principal.tenant_id,
        &Export {
            export_id: export.id,
        },
    )
    .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let jobs = state.store().create_export(&export, job).await?;
    super::dispatch_created(&state, &jobs).await;
    Ok((StatusCode::ACCEPTED, Json(export.into())))
}

async fn own_export(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<ProfileExport, ApiError> {
    let user_id = user_of(principal)?;
    let id = super::parse_id("export", id)?;
    state
        .store()
        .get_export(id)
        .await?
        // Only its user, in the tenant it was asked in.
        .filter(|e| e.user_id == user_id && e.tenant_id == principal.tenant_id)
        .ok_or_else(|| ApiError::not_found(format!("no export `{id}`")))
}

/// One of the caller's exports.
#[utoipa::path(get, path = "/v1/profile/exports/{id}", operation_id = "getProfileExport", tag = "profiles",
    params(("id" = String, Path, description = "Export id")),
    responses((status = 200, body = ExportView),
        (status = 403, description = "Called with an API key", content_type = "application/problem+json"),
        (status = 404, description = "No such export of the caller's", content_type = "application/problem+json")))]
pub(crate) async fn get_export(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Any>,
    Path(id): Path<String>,
) -> Result<Json<ExportView>, ApiError> {
    Ok(Json(own_export(&state, &principal, &id).await?.into()))
}

/// Download an export's document (409 while it is being built).
#[utoipa::path(get, path = "/v1/profile/exports/{id}/download", operation_id = "downloadProfileExport", tag = "profiles",
    params(("id" = String, Path, description = "Export id")),
    responses((status = 200, description = "The document", content_type = "application/json", body = Object),
        (status = 403, description = "Called with an API key", content_type = "application/problem+json"),
        (status = 404, description = "No such export of the caller's", content_type = "application/problem+json"),
        (status = 409, description = "Not built yet", content_type = "application/problem+json")))]
pub(crate) async fn download_export(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Any>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let export = own_export(&state, &principal, &id).await?;
    let Some(document) = export.document else {
        return Err(ApiError::conflict("the export is still being built").with_retry_after(2));
    };
    let mut response = Json(document).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"pysaas-export-{}.json\"",
        export.id
    )) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// An erasure's audit record: when and how much, never who.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ErasureView {
    /// Id.
    id: Uuid,
    /// `pending` or `done`.
    status: String,
    /// Rows and items removed, by store and table.
    #[schema(value_type = Option<Object>)]
    counts: Option<Value>,
    /// Asked.
    requested_at: DateTime<Utc>,
    /// Finished.
    completed_at: Option<DateTime<Utc>>,
}

impl From<Erasure> for ErasureView {
    fn from(e: Erasure) -> Self {
        ErasureView {
            id: e.id,
            status: e.status,
            counts: e.counts,
            requested_at: e.requested_at,
            completed_at: e.completed_at,
        }
    }
}

/// Erase the caller from every store (profile, preferences, notifications, exports, the
/// billing address of subscriptions, sessions, memberships, the account), by a
/// `profile.delete` job. The answer's id names the erasure's audit record.
#[utoipa::path(delete, path = "/v1/profile", operation_id = "deleteProfile", tag = "profiles",
    responses((status = 202, body = ErasureView),
        (status = 403, description = "Called with an API key", content_type = "application/problem+json")))]
pub(crate) async fn delete_profile(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Any>,
) -> Result<(StatusCode, Json<ErasureView>), ApiError> {
    let user_id = user_of(&principal)?;
    let erasure = Erasure {
        id: Uuid::now_v7(),
        tenant_id: principal.tenant_id.clone(),
        user_id: Some(user_id),
        status: "pending".into(),
        counts: None,
        requested_at: state.store().now().await?,
        completed_at: None,
    };
    let job = NewJob::of::<Delete>(
        &principal.tenant_id,
        &Delete {
            erasure_id: erasure.id,
        },
    )
    .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let jobs = state.store().create_erasure(&erasure, job).await?;
    super::dispatch_created(&state, &jobs).await;
    Ok((StatusCode::ACCEPTED, Json(erasure.into())))
}

/// An erasure's audit record (admins of the tenant it was asked in).
#[utoipa::path(get, path = "/v1/erasures/{id}", operation_id = "getErasure", tag = "profiles",
    params(("id" = String, Path, description = "Erasure id")),
    responses((status = 200, body = ErasureView),
        (status = 404, description = "No such erasure in this tenant", content_type = "application/problem+json")))]
pub(crate) async fn get_erasure(
    State(state): State<AppState>,
    TenantOf(tenant, _): TenantOf<Admin>,
    Path(id): Path<String>,
) -> Result<Json<ErasureView>, ApiError> {
    let id = super::parse_id("erasure", &id)?;
    let erasure = state
        .store()
        .get_erasure(id)
        .await?
        .filter(|e| e.tenant_id == tenant)
        .ok_or_else(|| ApiError::not_found(format!("no erasure `{id}`")))?;
    Ok(Json(erasure.into()))
}
