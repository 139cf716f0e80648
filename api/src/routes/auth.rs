//! Accounts and credentials: signup, login, refresh (rotating, with reuse detection), logout,
//! `/v1/me`, API keys, members, and the JWKS.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use pysaas_brokers::{ApiKeyRow, RefreshRow, RefreshUse, TenantRow, UserRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{
    create_api_key, secrets, unauthorized, Admin, Any, Authorized, Subject, TenantOf, ROLES, SCOPES,
};
use crate::error::{parse_json, ApiError, FieldError};
use crate::AppState;

const PASSWORD_MIN: usize = 12;
const PASSWORD_MAX: usize = 128;
const EMAIL_MAX: usize = 254;
/// Longest lock after repeated failed logins.
const LOCK_MAX_SECS: i64 = 15 * 60;

fn field(path: &str, message: &str) -> ApiError {
    ApiError::invalid_fields(
        format!("invalid `{path}`: {message}"),
        vec![FieldError {
            index: None,
            path: path.to_owned(),
            message: message.to_owned(),
        }],
    )
}

fn normalise_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let shape = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !shape || email.len() > EMAIL_MAX || email.chars().any(char::is_whitespace) {
        return Err(field("email", "not an email address"));
    }
    Ok(email)
}

fn bad_credentials() -> ApiError {
    // The same answer for an unknown email, a wrong password and a locked account.
    unauthorized("invalid email or password")
}

/// Runs argon2 off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}

/// Sign-up: a new user and a new tenant they own.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Signup {
    /// Email (case-insensitive, unique).
    #[schema(example = "ada@example.com", format = Email, min_length = 3, max_length = 254)]
    pub(crate) email: String,
    /// 12 to 128 characters.
    #[schema(min_length = 12, max_length = 128)]
    pub(crate) password: String,
    /// Organisation name, 1 to 100 characters.
    #[schema(example = "Acme", min_length = 1, max_length = 100, pattern = r"\S")]
    pub(crate) tenant_name: String,
}

/// Login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    /// Email.
    pub(crate) email: String,
    /// Password.
    pub(crate) password: String,
    /// Tenant to act for (default: the user's first).
    pub(crate) tenant_id: Option<String>,
}

/// A refresh token (refresh, logout).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshBody {
    /// The refresh token (`rt_…`).
    pub(crate) refresh_token: String,
}

/// A switch to another of the user's tenants.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SwitchTenant {
    /// The tenant to act for (one of `tenants` in `GET /v1/me`).
    pub(crate) tenant_id: String,
    /// The session's refresh token (`rt_…`): it is exchanged, as by a refresh.
    pub(crate) refresh_token: String,
}

/// A token pair.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Tokens {
    /// EdDSA-signed JWT for `Authorization: Bearer`.
    pub(crate) access_token: String,
    /// `Bearer`.
    pub(crate) token_type: String,
    /// Access-token lifetime in seconds.
    pub(crate) expires_in: u64,
    /// Single-use refresh token (`rt_…`); each refresh returns a new one.
    pub(crate) refresh_token: String,
    /// Tenant the tokens act for.
    pub(crate) tenant_id: String,
    /// Role there.
    pub(crate) role: String,
}

/// The caller.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Me {
    /// Tenant.
    pub(crate) tenant_id: String,
    /// `user` or `api_key`.
    pub(crate) kind: String,
    /// User id or key id.
    pub(crate) id: Uuid,
    /// Email (users).
    pub(crate) email: Option<String>,
    /// Role (users).
    pub(crate) role: Option<String>,
    /// Scopes.
    pub(crate) scopes: Vec<String>,
    /// Users: every tenant they are a member of, with their role there (switch with
    /// `POST /v1/auth/switch`); API keys: none.
    pub(crate) tenants: Vec<TenantChoice>,
}

/// A tenant a user may act for.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TenantChoice {
    /// Tenant id.
    pub(crate) id: String,
    /// Its name.
    pub(crate) name: String,
    /// The user's role there.
    pub(crate) role: String,
}

/// A scope.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum ScopeName {
    /// Read jobs, queues, schedules.
    #[schema(rename = "jobs:read")]
    JobsRead,
    /// Submit, cancel, retry jobs.
    #[schema(rename = "jobs:write")]
    JobsWrite,
    /// Manage schedules.
    #[schema(rename = "schedules:write")]
    SchedulesWrite,
    /// Everything, plus keys and members.
    #[schema(rename = "admin")]
    Admin,
}

/// A member role.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum RoleName {
    /// Everything; the only role that makes owners.
    Owner,
    /// Everything.
    Admin,
    /// Jobs and schedules.
    Member,
    /// Read only.
    Viewer,
}

/// A new API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateApiKey {
    /// Label, 1 to 100 characters.
    #[schema(example = "ci", min_length = 1, max_length = 100, pattern = r"\S")]
    pub(crate) name: String,
    /// Scopes: a subset of the creator's (`jobs:read`, `jobs:write`, `schedules:write`, `admin`).
    #[schema(example = json!(["jobs:write"]), min_items = 1, inline, value_type = Vec<ScopeName>)]
    pub(crate) scopes: Vec<String>,
}

/// An API key (its secret only in the creation response).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ApiKeyView {
    /// Id.
    pub(crate) id: Uuid,
    /// Label.
    pub(crate) name: String,
    /// Visible prefix (`pk_<prefix>_…`).
    pub(crate) prefix: String,
    /// Scopes.
    pub(crate) scopes: Vec<String>,
    /// Created.
    pub(crate) created_at: DateTime<Utc>,
    /// Last used (to the minute).
    pub(crate) last_used_at: Option<DateTime<Utc>>,
    /// Revoked.
    pub(crate) revoked_at: Option<DateTime<Utc>>,
    /// The full key: returned once, at creation. Store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
}

impl From<ApiKeyRow> for ApiKeyView {
    fn from(k: ApiKeyRow) -> Self {
        ApiKeyView {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
            key: None,
        }
    }
}

/// API keys.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ApiKeyList {
    /// Newest first.
    pub(crate) api_keys: Vec<ApiKeyView>,
}

/// Add a member, or change a member's role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetMember {
    /// An existing user's email.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub(crate) email: String,
    /// `owner`, `admin`, `member` or `viewer`.
    #[schema(value_type = RoleName)]
    pub(crate) role: String,
}

/// A member.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct MemberView {
    /// User id.
    pub(crate) user_id: Uuid,
    /// Email.
    pub(crate) email: String,
    /// Role.
    pub(crate) role: String,
    /// Member since.
    pub(crate) created_at: DateTime<Utc>,
}

/// Members.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct MemberList {
    /// Oldest first.
    pub(crate) members: Vec<MemberView>,
}

async fn issue(
    state: &AppState,
    user: Uuid,
    tenant: &str,
    role: &str,
    family: Option<Uuid>,
) -> Result<Tokens, ApiError> {
    let auth = state.auth();
    let access_token = auth
        .access_token(user, tenant, role)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let refresh_token = secrets::new_refresh_token();
    let ttl = chrono::Duration::from_std(auth.settings().refresh_ttl)
        .unwrap_or(chrono::Duration::days(30));
    state
        .store()
        .insert_refresh(&RefreshRow {
            id: Uuid::now_v7(),
            family_id: family.unwrap_or_else(Uuid::now_v7),
            user_id: user,
            tenant_id: tenant.to_owned(),
            token_hash: secrets::digest(&refresh_token),
            expires_at: Utc::now() + ttl,
            used_at: None,
            revoked_at: None,
        })
        .await?;
    Ok(Tokens {
        access_token,
        token_type: "Bearer".into(),
        expires_in: auth.settings().access_ttl.as_secs(),
        refresh_token,
        tenant_id: tenant.to_owned(),
        role: role.to_owned(),
    })
}

/// Create an account: a user and a tenant they own. The answer is the same `202` whether the
/// email was new or already registered (so signup cannot tell anyone which emails have accounts);
/// log in next. An already-registered account is left exactly as it was.
#[utoipa::path(post, path = "/v1/auth/signup", operation_id = "signup", tag = "auth", request_body = Signup, security(()),
    responses((status = 202, description = "Accepted; log in with the email and password", body = SignupAccepted),
              (status = 422, description = "Invalid field", content_type = "application/problem+json")))]
pub(crate) async fn signup(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: Signup = parse_json(&body?)?;
    let email = normalise_email(&req.email)?;
    let chars = req.password.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&chars) {
        return Err(field(
            "password",
            &format!("{PASSWORD_MIN} to {PASSWORD_MAX} characters"),
        ));
    }
    let name = req.tenant_name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(field("tenant_name", "1 to 100 characters"));
    }
    let password = req.password;
    let hash = blocking(move || secrets::hash_password(&password))
        .await?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let now = Utc::now();
    let tenant = TenantRow {
        id: format!("t_{}", Uuid::new_v4().simple()),
        name,
        plan: "free".into(),
        created_at: now,
    };
    let user = UserRow {
        id: Uuid::now_v7(),
        email,
        password_hash: hash,
        failed_logins: 0,
        locked_until: None,
        created_at: now,
    };
    // Created or not (the email had an account), the answer is the same, after the same work
    // (the password was hashed either way).
    let created = state.store().signup(&tenant, &user).await?;
    tracing::debug!(created, "signup");
    Ok((
        StatusCode::ACCEPTED,
        Json(SignupAccepted {
            status: "accepted".into(),
            detail:
                "if this email had no account, it has one now: log in with it (POST /v1/auth/login)"
                    .into(),
        }),
    )
        .into_response())
}

/// The answer to every valid signup.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignupAccepted {
    /// Always `accepted`.
    pub(crate) status: String,
    /// What to do next.
    pub(crate) detail: String,
}

/// Log in. Unknown email, wrong password and a locked account all get the same 401.
#[utoipa::path(post, path = "/v1/auth/login", operation_id = "login", tag = "auth", request_body = Login, security(()),
    responses((status = 200, body = Tokens),
              (status = 401, description = "Invalid email or password", content_type = "application/problem+json")))]
pub(crate) async fn login(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Tokens>, ApiError> {
    let req: Login = parse_json(&body?)?;
    let email = req.email.trim().to_lowercase();
    let user = state.store().user_by_email(&email).await?;
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.auth().dummy_hash().to_owned());
    let password = req.password;
    // Always verified, even for an unknown email or a locked account, so timing tells nothing.
    let matches = blocking(move || secrets::verify_password(&password, &hash)).await?;
    let Some(user) = user else {
        return Err(bad_credentials());
    };
    let now = Utc::now();
    let locked = user.locked_until.is_some_and(|t| t > now);
    if locked {
        return Err(bad_credentials());
    }
    if !matches {
        let failures = state.store().login_failed(user.id).await?;
        let after = state.auth().settings().lockout_after;
        if failures >= after {
            let exponent = u32::try_from((failures - after).min(20)).unwrap_or(20);
            let secs = 2i64.saturating_pow(exponent).min(LOCK_MAX_SECS);
            state
                .store()
                .lock_user(user.id, now + chrono::Duration::seconds(secs))
                .await?;
            tracing::warn!(user_id = %user.id, failures, lock_secs = secs, "account locked after failed logins");
        }
        return Err(bad_credentials());
    }
    let memberships = state.store().memberships_of(user.id).await?;
    let membership = match &req.tenant_id {
        Some(t) => memberships.into_iter().find(|m| &m.tenant_id == t),
        None => memberships.into_iter().next(),
    }
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "this account is not a member of that tenant",
        )
    })?;
    state
        .store()
        .login_succeeded(user.id, &membership.tenant_id)
        .await?;
    Ok(Json(
        issue(
            &state,
            user.id,
            &membership.tenant_id,
            &membership.role,
            None,
        )
        .await?,
    ))
}

/// Exchange a refresh token for a new pair. Each refresh token works once: presenting a used one
/// again revokes its whole family (every session descending from that login).
#[utoipa::path(post, path = "/v1/auth/refresh", operation_id = "refreshTokens", tag = "auth", request_body = RefreshBody, security(()),
    responses((status = 200, body = Tokens),
              (status = 401, description = "Invalid, expired or reused refresh token", content_type = "application/problem+json")))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Tokens>, ApiError> {
    let req: RefreshBody = parse_json(&body?)?;
    let used = state
        .store()
        .use_refresh(&secrets::digest(&req.refresh_token))
        .await?;
    let token = match used {
        RefreshUse::Rotated(token) => token,
        RefreshUse::Reused(token) => {
            tracing::warn!(user_id = %token.user_id, family = %token.family_id, "refresh token reused; family revoked");
            return Err(unauthorized(
                "refresh token already used; every session of this login is revoked",
            ));
        }
        RefreshUse::Invalid => return Err(unauthorized("invalid or expired refresh token")),
    };
    // The role may have changed (or the membership gone) since the login.
    let membership = state
        .store()
        .memberships_of(token.user_id)
        .await?
        .into_iter()
        .find(|m| m.tenant_id == token.tenant_id)
        .ok_or_else(|| unauthorized("no longer a member of this tenant"))?;
    Ok(Json(
        issue(
            &state,
            token.user_id,
            &token.tenant_id,
            &membership.role,
            Some(token.family_id),
        )
        .await?,
    ))
}

/// Switch the signed-in user to another of their tenants: the session's refresh token is
/// exchanged (as by a refresh, in the same family) for a pair acting for `tenant_id`. The
/// membership is checked first, so a refused switch leaves the session as it was.
#[utoipa::path(post, path = "/v1/auth/switch", operation_id = "switchTenant", tag = "auth", request_body = SwitchTenant,
    responses((status = 200, body = Tokens),
              (status = 401, description = "Invalid, expired or reused refresh token, or not this user's", content_type = "application/problem+json"),
              (status = 403, description = "An API key, or not a member of that tenant", content_type = "application/problem+json")))]
pub(crate) async fn switch_tenant(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Any>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Tokens>, ApiError> {
    let req: SwitchTenant = parse_json(&body?)?;
    let user_id = principal.user_id().ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "an API key belongs to one tenant; sign in as a user to switch",
        )
    })?;
    let membership = state
        .store()
        .memberships_of(user_id)
        .await?
        .into_iter()
        .find(|m| m.tenant_id == req.tenant_id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "this account is not a member of that tenant",
            )
        })?;
    let digest = secrets::digest(&req.refresh_token);
    // Someone else's token is refused before it is touched (using it would end their session).
    let owner = state
        .store()
        .refresh_token(&digest)
        .await?
        .map(|t| t.user_id);
    if owner.is_some_and(|owner| owner != user_id) {
        return Err(unauthorized("that refresh token is not yours"));
    }
    let token = match state.store().use_refresh(&digest).await? {
        RefreshUse::Rotated(token) if token.user_id == user_id => token,
        RefreshUse::Rotated(_) => return Err(unauthorized("that refresh token is not yours")),
        RefreshUse::Reused(token) => {
            tracing::warn!(user_id = %token.user_id, family = %token.family_id, "refresh token reused; family revoked");
            return Err(unauthorized(
                "refresh token already used; every session of this login is revoked",
            ));
        }
        RefreshUse::Invalid => return Err(unauthorized("invalid or expired refresh token")),
    };
    tracing::info!(user_id = %user_id, from = %principal.tenant_id, to = %membership.tenant_id, "tenant switched");
    Ok(Json(
        issue(
            &state,
            user_id,
            &membership.tenant_id,
            &membership.role,
            Some(token.family_id),
        )
        .await?,
    ))
}

/// Log out: revokes the refresh token's family. Access tokens expire on their own.
#[utoipa::path(post, path = "/v1/auth/logout", operation_id = "logout", tag = "auth", request_body = RefreshBody, security(()),
    responses((status = 204, description = "Logged out")))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let req: RefreshBody = parse_json(&body?)?;
    if let RefreshUse::Rotated(token) | RefreshUse::Reused(token) = state
        .store()
        .use_refresh(&secrets::digest(&req.refresh_token))
        .await?
    {
        state.store().revoke_family(token.family_id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The caller: tenant, identity, scopes.
#[utoipa::path(get, path = "/v1/me", operation_id = "getMe", tag = "auth", responses((status = 200, body = Me)))]
pub(crate) async fn me(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Any>,
) -> Result<Json<Me>, ApiError> {
    let (kind, id, role) = match &principal.subject {
        Subject::User { id, role } => ("user", *id, Some(role.clone())),
        Subject::ApiKey { id, .. } => ("api_key", *id, None),
    };
    let (email, tenants) = match principal.user_id() {
        Some(id) => {
            let mut tenants = Vec::new();
            for m in state.store().memberships_of(id).await? {
                let name = state
                    .store()
                    .get_tenant(&m.tenant_id)
                    .await?
                    .map_or_else(|| m.tenant_id.clone(), |t| t.name);
                tenants.push(TenantChoice {
                    id: m.tenant_id,
                    name,
                    role: m.role,
                });
            }
            (
                state.store().user_by_id(id).await?.map(|u| u.email),
                tenants,
            )
        }
        None => (None, Vec::new()),
    };
    Ok(Json(Me {
        tenant_id: principal.tenant_id,
        kind: kind.into(),
        id,
        email,
        role,
        scopes: principal.scopes,
        tenants,
    }))
}

/// The tenant's API keys.
#[utoipa::path(get, path = "/v1/api-keys", operation_id = "listApiKeys", tag = "auth", responses((status = 200, body = ApiKeyList)))]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    TenantOf(tenant_id, _): TenantOf<Admin>,
) -> Result<Json<ApiKeyList>, ApiError> {
    let api_keys = state
        .store()
        .api_keys(&tenant_id)
        .await?
        .into_iter()
        .map(ApiKeyView::from)
        .collect();
    Ok(Json(ApiKeyList { api_keys }))
}

/// Create an API key; its secret is in this response only.
#[utoipa::path(post, path = "/v1/api-keys", operation_id = "createApiKey", tag = "auth", request_body = CreateApiKey,
    responses((status = 201, body = ApiKeyView),
              (status = 422, description = "Unknown scope, or a scope the creator lacks", content_type = "application/problem+json")))]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CreateApiKey = parse_json(&body?)?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(field("name", "1 to 100 characters"));
    }
    if req.scopes.is_empty() {
        return Err(field("scopes", "at least one scope"));
    }
    let mut scopes = Vec::new();
    for (i, scope) in req.scopes.iter().enumerate() {
        if !SCOPES.contains(&scope.as_str()) {
            return Err(field(
                &format!("scopes[{i}]"),
                &format!("unknown scope; use {}", SCOPES.join(", ")),
            ));
        }
        if !principal.has(scope) {
            return Err(field(&format!("scopes[{i}]"), "you do not hold this scope"));
        }
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    let (row, key) = create_api_key(
        state.store().as_ref(),
        &principal.tenant_id,
        name,
        &scopes,
        Some(&principal),
    )
    .await?;
    let mut view = ApiKeyView::from(row);
    view.key = Some(key);
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Revoke an API key (at once: the next request with it gets 401).
#[utoipa::path(delete, path = "/v1/api-keys/{id}", operation_id = "revokeApiKey", tag = "auth", params(("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "No such key", content_type = "application/problem+json")))]
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let missing = || ApiError::not_found(format!("no API key `{id}`"));
    let key = Uuid::parse_str(&id).map_err(|_| missing())?;
    let by = principal.actor();
    if state
        .store()
        .revoke_api_key(&principal.tenant_id, key, &by)
        .await?
    {
        // Every other replica hears of it through the store; this one forgets it now.
        state.auth().forget_key(key);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(missing())
    }
}

/// The tenant's members.
#[utoipa::path(get, path = "/v1/members", operation_id = "listMembers", tag = "auth", responses((status = 200, body = MemberList)))]
pub(crate) async fn list_members(
    State(state): State<AppState>,
    TenantOf(tenant_id, _): TenantOf<Admin>,
) -> Result<Json<MemberList>, ApiError> {
    let members = state
        .store()
        .members(&tenant_id)
        .await?
        .into_iter()
        .map(|m| MemberView {
            user_id: m.user_id,
            email: m.email,
            role: m.role,
            created_at: m.created_at,
        })
        .collect();
    Ok(Json(MemberList { members }))
}

/// Add an existing user as a member, or change a member's role. Only an owner grants `owner`.
#[utoipa::path(put, path = "/v1/members", operation_id = "setMember", tag = "auth", request_body = SetMember,
    responses((status = 200, body = MemberList), (status = 404, description = "No such user", content_type = "application/problem+json")))]
pub(crate) async fn set_member(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MemberList>, ApiError> {
    let req: SetMember = parse_json(&body?)?;
    if !ROLES.contains(&req.role.as_str()) {
        return Err(field("role", &format!("one of {}", ROLES.join(", "))));
    }
    let caller_is_owner =
        matches!(&principal.subject, Subject::User { role, .. } if role == "owner");
    if req.role == "owner" && !caller_is_owner {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only an owner can make owners",
        ));
    }
    let email = normalise_email(&req.email)?;
    let user = state
        .store()
        .user_by_email(&email)
        .await?
        .ok_or_else(|| ApiError::not_found("no user with this email; they sign up first"))?;
    let members = state.store().members(&principal.tenant_id).await?;
    guard_last_owner(&members, user.id, Some(&req.role))?;
    state
        .store()
        .set_membership(&principal.tenant_id, user.id, &req.role, &principal.actor())
        .await?;
    list_members(
        State(state),
        TenantOf(principal.tenant_id, std::marker::PhantomData),
    )
    .await
}

/// Remove a member.
#[utoipa::path(delete, path = "/v1/members/{user_id}", operation_id = "removeMember", tag = "auth", params(("user_id" = String, Path, description = "User id")),
    responses((status = 204, description = "Removed"), (status = 404, description = "Not a member", content_type = "application/problem+json")))]
pub(crate) async fn remove_member(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Admin>,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let missing = || ApiError::not_found(format!("no member `{user_id}`"));
    let id = Uuid::parse_str(&user_id).map_err(|_| missing())?;
    let tenant_id = &principal.tenant_id;
    let members = state.store().members(tenant_id).await?;
    guard_last_owner(&members, id, None)?;
    if state
        .store()
        .remove_membership(tenant_id, id, &principal.actor())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(missing())
    }
}

/// A tenant always keeps an owner.
fn guard_last_owner(
    members: &[pysaas_brokers::MembershipRow],
    user: Uuid,
    new_role: Option<&str>,
) -> Result<(), ApiError> {
    let owners: Vec<Uuid> = members
        .iter()
        .filter(|m| m.role == "owner")
        .map(|m| m.user_id)
        .collect();
    if owners == [user] && new_role != Some("owner") {
        return Err(ApiError::conflict("a tenant keeps at least one owner"));
    }
    Ok(())
}

/// The public keys that verify access tokens (JWK Set).
#[utoipa::path(get, path = "/.well-known/jwks.json", operation_id = "getJwks", tag = "auth", security(()),
    responses((status = 200, description = "JWK Set", body = Object)))]
pub(crate) async fn jwks(State(state): State<AppState>) -> Json<Value> {
    Json(state.auth().keyring().jwks())
}
