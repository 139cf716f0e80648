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
    modifiers(&SecuritySchemes, &CommonResponses),
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
        dto::SubmitJob, dto::SubmitBatch, dto::JobView, dto::AttemptView, dto::BatchAccepted, dto::JobPage, dto::QueueView,
        dto::QueueList, dto::KindView, dto::KindList, dto::Health, dto::CreateSchedule,
        dto::ScheduleView, dto::ScheduleList, FieldError, auth::Signup, auth::SignupAccepted, auth::Login,
        auth::RefreshBody, auth::Tokens, auth::Me, auth::CreateApiKey, auth::ApiKeyView,
        auth::ApiKeyList, auth::SetMember, auth::MemberView, auth::MemberList, auth::ScopeName,
        auth::RoleName,
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

/// Documents the answers every operation can give besides its own: `401`/`403`/`429` on
/// authenticated routes, `400`/`413`/`422` where a body is read, `503` when the store is down —
/// all `application/problem+json`.
struct CommonResponses;

fn problem(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, ObjectBuilder, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            crate::PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(
                    ObjectBuilder::new().description(Some("RFC 9457 problem details")),
                ))
                .build(),
        )
        .build()
        .into()
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let public = Some(vec![
            utoipa::openapi::security::SecurityRequirement::default(),
        ]);
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let mut add = |code: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| problem(description));
                };
                let is_public = op.security == public;
                let has_body = op.request_body.is_some();
                let is_auth = op.tags.iter().flatten().any(|t| t == "auth") && is_public;
                if !is_public {
                    add("401", "Missing, malformed, expired or revoked credential");
                    add("403", "The credential lacks the required scope");
                    add(
                        "429",
                        "Rate limit exceeded (see Retry-After and RateLimit-*)",
                    );
                }
                if is_auth {
                    add(
                        "429",
                        "Too many requests from this address (see Retry-After)",
                    );
                }
                if has_body {
                    add("400", "Malformed JSON");
                    add("413", "Body over 1 MiB");
                    add("422", "Invalid field, named in `errors`");
                }
                add("503", "The job store is unreachable (see Retry-After)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    /// OpenAPI requires unique operation ids; generated clients name their methods after them.
    #[test]
    fn every_operation_has_a_unique_descriptive_id() {
        let doc = serde_json::to_value(super::ApiDoc::openapi()).unwrap_or_default();
        let mut seen = std::collections::BTreeMap::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                let id = op["operationId"].as_str().unwrap_or_default().to_owned();
                assert!(id.len() > 4, "{method} {path}: operationId `{id}`");
                if let Some(other) = seen.insert(id.clone(), format!("{method} {path}")) {
                    panic!("operationId `{id}` names both {other} and {method} {path}");
                }
            }
        }
        assert!(seen.len() >= 31, "{seen:?}");
    }
}
