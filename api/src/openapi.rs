//! The OpenAPI 3.1 document.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto;
use crate::error::FieldError;
use crate::routes::{auth, jobs, schedules, system};

/// PySaaS's HTTP API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "PySaaS", description = "Typed background jobs over HTTP: submit, inspect, cancel, retry; cron schedules."),
    modifiers(&SecuritySchemes),
    security(("bearer" = []), ("api_key" = [])),
    paths(
        auth::signup, auth::login, auth::refresh, auth::logout, auth::me, auth::list_keys,
        auth::create_key, auth::revoke_key, auth::list_members, auth::set_member, auth::remove_member,
        auth::jwks,
        jobs::submit, jobs::submit_batch, jobs::get, jobs::list, jobs::cancel, jobs::retry,
        schedules::list, schedules::create, schedules::get, schedules::patch, schedules::delete,
        schedules::pause, schedules::resume, schedules::trigger,
        system::queues, system::kinds, system::healthz, system::readyz, system::metrics,
    ),
    components(schemas(
        dto::SubmitJob, dto::SubmitBatch, dto::JobView, dto::BatchAccepted, dto::JobPage, dto::QueueView,
        dto::QueueList, dto::KindView, dto::KindList, dto::Health, dto::CreateSchedule,
        dto::ScheduleView, dto::ScheduleList, FieldError, auth::Signup, auth::Login,
        auth::RefreshBody, auth::Tokens, auth::Me, auth::CreateApiKey, auth::ApiKeyView,
        auth::ApiKeyList, auth::SetMember, auth::MemberView, auth::MemberList,
    )),
    tags(
        (name = "auth", description = "Accounts, tokens, API keys and members"),
        (name = "jobs", description = "Submit and manage jobs"),
        (name = "schedules", description = "Cron schedules, fired exactly once per tick"),
        (name = "queues", description = "Queue statistics"),
        (name = "system", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// Declares the two ways to authenticate; Swagger UI's "Authorize" offers both.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT access token or pk_… API key")
                    .description(Some("`Authorization: Bearer <access token or API key>`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Api-Key",
                "An API key (`pk_…`)",
            ))),
        );
    }
}
