//! Authentication and authorization: every `/v1` request (but signup, login, refresh) carries an
//! access token (`Authorization: Bearer <JWT>`) or an API key (`Authorization: Bearer pk_…` or
//! `X-Api-Key: pk_…`). Handlers state the scope they need in their signature
//! ([`Authorized`]); the tenant comes from the credential, never from the request.

pub mod keys;
pub mod secrets;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use chrono::Utc;
use jsonwebtoken::{Algorithm, Validation};
use pysaas_brokers::{ApiKeyRow, JobStore};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use keys::{generate_pem, KeyError, Keyring};

use crate::{ApiError, AppState};

/// Scopes, from narrowest to widest. `admin` implies every other.
pub const SCOPES: [&str; 4] = ["jobs:read", "jobs:write", "schedules:write", "admin"];

/// Roles a member can have.
pub const ROLES: [&str; 4] = ["owner", "admin", "member", "viewer"];

/// The scopes a role grants.
pub fn role_scopes(role: &str) -> Vec<String> {
    let scopes: &[&str] = match role {
        "owner" | "admin" => &SCOPES,
        "member" => &["jobs:read", "jobs:write", "schedules:write"],
        "viewer" => &["jobs:read"],
        _ => &[],
    };
    scopes.iter().map(|s| (*s).to_owned()).collect()
}

/// Settings of token issuance and checking.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `iss` of issued tokens, and the only one accepted.
    pub issuer: String,
    /// `aud` of issued tokens, and the only one accepted.
    pub audience: String,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// Refresh-token lifetime.
    pub refresh_ttl: Duration,
    /// Consecutive failed logins before the account is locked (then for 1 s, doubling per
    /// further failure, at most 15 min).
    pub lockout_after: i32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            issuer: "pysaas".into(),
            audience: "pysaas-api".into(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            lockout_after: 5,
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// User id.
    pub sub: String,
    /// Tenant the token acts for.
    pub tid: String,
    /// The user's role in that tenant.
    pub role: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Token id.
    pub jti: String,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A user with an access token.
    User {
        /// User id.
        id: Uuid,
        /// Role in the tenant.
        role: String,
    },
    /// An API key.
    ApiKey {
        /// Key id.
        id: Uuid,
        /// Its visible prefix.
        prefix: String,
    },
}

/// An authenticated caller: tenant, subject, scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant every query is filtered by.
    pub tenant_id: String,
    /// User or key.
    pub subject: Subject,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

impl Principal {
    /// Who is acting, as audit events name them: `user <id>` or `key <prefix>`.
    pub fn actor(&self) -> String {
        match &self.subject {
            Subject::User { id, .. } => format!("user {id}"),
            Subject::ApiKey { prefix, .. } => format!("key {prefix}"),
        }
    }

    /// Whether the principal holds `scope` (directly, or through `admin`).
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope || s == "admin")
    }

    /// The user id, if a user is calling.
    pub fn user_id(&self) -> Option<Uuid> {
        match &self.subject {
            Subject::User { id, .. } => Some(*id),
            Subject::ApiKey { .. } => None,
        }
    }
}

/// Issues and checks credentials.
#[derive(Debug)]
pub struct Auth {
    keyring: std::sync::RwLock<Arc<Keyring>>,
    settings: AuthSettings,
    /// A hash verified when the account does not exist, so both cases take as long.
    dummy_hash: String,
    /// When each API key's use was last written, so that a busy key costs one write a minute
    /// per process, not one per request (SQLite has a single writer).
    touched: std::sync::Mutex<std::collections::HashMap<Uuid, std::time::Instant>>,
    /// API keys read from the store, by prefix, with when they were read. Revocations evict
    /// them at once (see [`Auth::follow_changes`]); the store's TTL bounds the rest.
    keys: std::sync::Mutex<std::collections::HashMap<String, (Arc<ApiKeyRow>, std::time::Instant)>>,
}

/// Most API keys cached per process.
const KEY_CACHE_MAX: usize = 10_000;

impl Auth {
    /// Over a key ring.
    pub fn new(keyring: Keyring, settings: AuthSettings) -> Self {
        let dummy_hash = secrets::hash_password("dummy password for timing").unwrap_or_default();
        Auth {
            keyring: std::sync::RwLock::new(Arc::new(keyring)),
            settings,
            dummy_hash,
            touched: std::sync::Mutex::new(std::collections::HashMap::new()),
            keys: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A ring of one freshly generated key and default settings (tests, benchmarks, one-off
    /// tools: tokens it signs die with it).
    pub fn ephemeral() -> Self {
        match Keyring::from_pems(&[generate_pem()]) {
            Ok(ring) => Auth::new(ring, AuthSettings::default()),
            Err(err) => panic!("a generated key must load: {err}"),
        }
    }

    /// The key ring in use.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps in a new key ring (a rotation read from Vault): the next token is signed with its
    /// first key; tokens of keys still in it keep verifying.
    pub fn replace_keyring(&self, keyring: Keyring) {
        *self.keyring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keyring);
    }

    /// The settings.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    pub(crate) fn dummy_hash(&self) -> &str {
        &self.dummy_hash
    }

    /// A signed access token for `user` acting in `tenant` with `role`.
    pub fn access_token(&self, user: Uuid, tenant: &str, role: &str) -> Result<String, KeyError> {
        let now = Utc::now().timestamp();
        let ttl = i64::try_from(self.settings.access_ttl.as_secs()).unwrap_or(i64::MAX);
        self.keyring().sign(&Claims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: user.to_string(),
            tid: tenant.to_owned(),
            role: role.to_owned(),
            scope: role_scopes(role).join(" "),
            iat: now,
            exp: now.saturating_add(ttl),
            jti: Uuid::new_v4().to_string(),
        })
    }

    fn validation(&self) -> Validation {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[&self.settings.issuer]);
        v.set_audience(&[&self.settings.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 30;
        v
    }

    /// Checks an access token and returns its principal.
    pub fn verify_access(&self, token: &str) -> Result<Principal, ApiError> {
        let claims: Claims = self
            .keyring()
            .verify(token, &self.validation())
            .map_err(|e| unauthorized(&e.to_string()))?;
        let id = Uuid::parse_str(&claims.sub).map_err(|_| unauthorized("invalid token"))?;
        Ok(Principal {
            tenant_id: claims.tid,
            subject: Subject::User {
                id,
                role: claims.role,
            },
            scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
        })
    }

    /// Keeps the API-key cache in step with the store's credential changes until the store or
    /// this `Auth` goes away. Runs once per process (the API starts it).
    pub async fn follow_changes(
        auth: std::sync::Weak<Auth>,
        mut changes: tokio::sync::broadcast::Receiver<pysaas_brokers::AuthChange>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let change = changes.recv().await;
            let Some(auth) = auth.upgrade() else { return };
            let mut keys = auth.keys.lock().unwrap_or_else(|e| e.into_inner());
            match change {
                Ok(pysaas_brokers::AuthChange::KeyRevoked(prefix)) => {
                    keys.remove(&prefix);
                }
                Ok(pysaas_brokers::AuthChange::Reset) | Err(RecvError::Lagged(_)) => keys.clear(),
                Err(RecvError::Closed) => {
                    keys.clear();
                    return;
                }
            }
        }
    }

    /// Drops the key with this id from this process's cache at once (the revoking process must
    /// not wait for its own notice to come back from the store).
    pub(crate) fn forget_key(&self, id: uuid::Uuid) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (row, _)| row.id != id);
    }

    /// The stored row of the key with `prefix`, from the cache while it is fresh.
    async fn key_row(
        &self,
        store: &dyn JobStore,
        prefix: &str,
    ) -> Result<Option<Arc<ApiKeyRow>>, ApiError> {
        let ttl = store.auth_cache_ttl();
        if let Some((row, at)) = self
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(prefix)
        {
            if at.elapsed() < ttl {
                return Ok(Some(row.clone()));
            }
        }
        // Read after the clock: a revocation that lands during the read evicts what it returns.
        let read_at = std::time::Instant::now();
        let Some(row) = store.api_key_by_prefix(prefix).await? else {
            return Ok(None);
        };
        let row = Arc::new(row);
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= KEY_CACHE_MAX {
            keys.clear();
        }
        keys.insert(prefix.to_owned(), (row.clone(), read_at));
        Ok(Some(row))
    }

    /// Checks an API key (cached; revocations reach every process within moments).
    pub async fn verify_api_key(
        &self,
        store: &dyn JobStore,
        key: &str,
    ) -> Result<Principal, ApiError> {
        let (prefix, _) =
            secrets::parse_api_key(key).ok_or_else(|| unauthorized("malformed API key"))?;
        let row = self
            .key_row(store, prefix)
            .await?
            .ok_or_else(|| unauthorized("invalid API key"))?;
        if !secrets::same_digest(&row.secret_hash, &secrets::digest(key)) {
            return Err(unauthorized("invalid API key"));
        }
        if row.revoked_at.is_some() {
            return Err(unauthorized("API key revoked"));
        }
        if self.due_for_touch(row.id) {
            if let Err(err) = store.touch_api_key(row.id).await {
                tracing::debug!(error = %err, "API key last-use not recorded");
            }
        }
        Ok(Principal {
            tenant_id: row.tenant_id.clone(),
            subject: Subject::ApiKey {
                id: row.id,
                prefix: row.prefix.clone(),
            },
            scopes: row.scopes.clone(),
        })
    }

    fn due_for_touch(&self, key: Uuid) -> bool {
        let now = std::time::Instant::now();
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        match touched.get(&key) {
            Some(at) if now.duration_since(*at) < Duration::from_secs(60) => false,
            _ => {
                if touched.len() > 100_000 {
                    touched.clear();
                }
                touched.insert(key, now);
                true
            }
        }
    }

    /// Authenticates a request from its headers.
    pub async fn authenticate(
        &self,
        store: &dyn JobStore,
        headers: &HeaderMap,
    ) -> Result<Principal, ApiError> {
        let bearer = match headers.get(header::AUTHORIZATION) {
            Some(value) => {
                let value = value
                    .to_str()
                    .map_err(|_| unauthorized("malformed Authorization header"))?;
                let (scheme, token) = value
                    .split_once(' ')
                    .ok_or_else(|| unauthorized("malformed Authorization header"))?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(unauthorized("use `Authorization: Bearer <token>`"));
                }
                Some(token.trim().to_owned())
            }
            None => None,
        };
        let api_key = headers
            .get("x-api-key")
            .map(|v| v.to_str().map(str::to_owned))
            .transpose()
            .map_err(|_| unauthorized("malformed X-Api-Key header"))?;
        match (bearer, api_key) {
            (Some(token), _) if token.starts_with("pk_") => {
                self.verify_api_key(store, &token).await
            }
            (Some(token), _) => self.verify_access(&token),
            (None, Some(key)) => self.verify_api_key(store, &key).await,
            (None, None) => Err(unauthorized(
                "authentication required: `Authorization: Bearer <token or API key>`",
            )),
        }
    }
}

/// 401 with a `WWW-Authenticate` challenge.
pub fn unauthorized(detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, detail.to_owned())
        .with_header(header::WWW_AUTHENTICATE, "Bearer realm=\"pysaas\"")
}

/// A scope a handler requires.
pub trait RequiredScope: Send + Sync + 'static {
    /// The scope name (`None`: any authenticated caller).
    const SCOPE: Option<&'static str>;
}

macro_rules! scope {
    ($name:ident, $scope:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug)]
        pub struct $name;
        impl RequiredScope for $name {
            const SCOPE: Option<&'static str> = $scope;
        }
    };
}

scope!(Any, None, "Any authenticated caller.");
scope!(
    JobsRead,
    Some("jobs:read"),
    "`jobs:read`: read jobs, queues, schedules."
);
scope!(
    JobsWrite,
    Some("jobs:write"),
    "`jobs:write`: submit, cancel, retry jobs."
);
scope!(
    SchedulesWrite,
    Some("schedules:write"),
    "`schedules:write`: manage schedules."
);
scope!(Admin, Some("admin"), "`admin`: API keys and members.");

/// An authenticated principal holding scope `S` (401 without credentials, 403 without the scope).
#[derive(Debug)]
pub struct Authorized<S: RequiredScope>(pub Principal, pub PhantomData<S>);

impl<S: RequiredScope> FromRequestParts<AppState> for Authorized<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return check::<S>(principal.clone());
        }
        let principal = state
            .auth()
            .authenticate(state.store().as_ref(), &parts.headers)
            .await?;
        parts.extensions.insert(principal.clone());
        check::<S>(principal)
    }
}

/// Just the tenant of a principal holding scope `S`, for handlers that need nothing else.
#[derive(Debug)]
pub struct TenantOf<S: RequiredScope>(pub String, pub PhantomData<S>);

impl<S: RequiredScope> FromRequestParts<AppState> for TenantOf<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authorized(principal, _) = Authorized::<S>::from_request_parts(parts, state).await?;
        Ok(TenantOf(principal.tenant_id, PhantomData))
    }
}

fn check<S: RequiredScope>(principal: Principal) -> Result<Authorized<S>, ApiError> {
    match S::SCOPE {
        Some(scope) if !principal.has(scope) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this credential lacks the `{scope}` scope"),
        )
        .with("required_scope", scope)),
        _ => Ok(Authorized(principal, PhantomData)),
    }
}

/// Creates an API key for `tenant_id` on behalf of `creator` (none from the command line);
/// returns the stored row and the key, which is shown once.
pub async fn create_api_key(
    store: &dyn JobStore,
    tenant_id: &str,
    name: &str,
    scopes: &[String],
    creator: Option<&Principal>,
) -> Result<(ApiKeyRow, String), pysaas_brokers::StoreError> {
    let (prefix, key) = secrets::new_api_key();
    let row = ApiKeyRow {
        id: Uuid::now_v7(),
        tenant_id: tenant_id.to_owned(),
        prefix,
        secret_hash: secrets::digest(&key),
        name: name.to_owned(),
        scopes: scopes.to_vec(),
        created_by: creator.and_then(Principal::user_id),
        created_at: Utc::now(),
        last_used_at: None,
        revoked_at: None,
    };
    store
        .insert_api_key(&row, creator.map(Principal::actor).as_deref())
        .await?;
    Ok((row, key))
}

/// Makes sure `tenant_id` exists (named after its id when created), then creates an `admin` API
/// key for it; returns the key.
pub async fn admin_key_for(
    store: &dyn JobStore,
    tenant_id: &str,
    name: &str,
) -> Result<String, pysaas_brokers::StoreError> {
    store
        .ensure_tenant(&pysaas_brokers::TenantRow {
            id: tenant_id.to_owned(),
            name: tenant_id.to_owned(),
            plan: "free".into(),
            created_at: Utc::now(),
        })
        .await?;
    let (_, key) = create_api_key(store, tenant_id, name, &["admin".to_owned()], None).await?;
    Ok(key)
}

/// The shared handle.
pub type SharedAuth = Arc<Auth>;
