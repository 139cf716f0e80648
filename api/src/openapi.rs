//! The OpenAPI 3.1 document.

use pysaas_jobs::{KindRegistry, KindSpec};
use serde_json::{json, Map, Value};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto;
use crate::error::FieldError;
use crate::routes::{
    audit, auth, billing, events, inbox, jobs, notifications, profiles, schedules, stats, system,
    webhooks,
};

/// PySaaS's HTTP API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "PySaaS", description = "Typed background jobs over HTTP: submit, inspect, cancel, retry; cron schedules."),
    modifiers(&SecuritySchemes, &CommonResponses),
    security(("bearer" = []), ("api_key" = [])),
    paths(
        auth::signup, auth::login, auth::refresh, auth::switch_tenant, auth::logout, auth::me, auth::list_keys,
        auth::create_key, auth::revoke_key, auth::list_members, auth::set_member, auth::remove_member,
        auth::jwks,
        jobs::submit, jobs::submit_batch, jobs::bulk, jobs::get, jobs::list, jobs::cancel, jobs::retry,
        schedules::preview, schedules::list, schedules::create, schedules::get, schedules::patch, schedules::delete,
        schedules::pause, schedules::resume, schedules::trigger,
        billing::create_plan, billing::list_plans, billing::archive_plan, billing::subscribe, billing::list_subscriptions,
        billing::get_subscription, billing::cancel_subscription, billing::change_plan, billing::list_invoices,
        billing::get_invoice, billing::list_payments, billing::void_invoice,
        notifications::get_sender, notifications::set_sender, notifications::delete_sender,
        inbox::list_inbox, inbox::mark_read, inbox::mark_all_read,
        profiles::get_profile, profiles::patch_profile, profiles::delete_profile, profiles::get_user_profile,
        profiles::get_preferences, profiles::set_preferences, profiles::create_export, profiles::get_export,
        profiles::download_export, profiles::get_erasure,
        webhooks::create_endpoint, webhooks::list_endpoints, webhooks::delete_endpoint, webhooks::rotate_secret,
        webhooks::enable_endpoint, webhooks::list_deliveries, webhooks::replay_delivery, webhooks::send_event,
        audit::list_audit, audit::job_analytics, audit::revenue_analytics,
        events::stream, stats::stats, system::queues, system::pause_queue, system::resume_queue, system::workers, system::kinds, system::healthz, system::readyz, system::metrics,
    ),
    components(schemas(
        dto::SubmitJob, dto::SubmitBatch, dto::BulkRequest, dto::BulkFilter, dto::BulkVerb, dto::BulkResult, dto::JobView, dto::AttemptView, dto::AttemptRun, dto::AttemptOutcome, dto::BatchAccepted, dto::JobPage, dto::QueueView,
        dto::QueueList, dto::QueuePause, stats::StatsView, stats::StatsPoint, stats::QueueRate, stats::Window, dto::WorkerView, dto::WorkerList, dto::KindView, dto::KindList, dto::Health, dto::CreateSchedule,
        dto::ScheduleView, dto::ScheduleList, dto::SchedulePatch, dto::CronPreview, dto::CronTimes, FieldError, auth::Signup, auth::SignupAccepted, auth::Login,
        auth::RefreshBody, auth::SwitchTenant, auth::Tokens, auth::Me, auth::TenantChoice, auth::CreateApiKey, auth::ApiKeyView,
        auth::ApiKeyList, auth::SetMember, auth::MemberView, auth::MemberList, auth::ScopeName,
        auth::RoleName,
        billing::CreatePlan, billing::CurrencyCode, billing::PlanView, billing::PlanList, billing::PlanInterval, billing::Subscribe, billing::SubscriptionView,
        billing::SubscriptionChange, billing::SubscriptionList, billing::Cancel, billing::ChangePlan, billing::InvoiceView,
        billing::LineView, billing::InvoiceDetail, billing::InvoiceList, billing::PaymentView, billing::PaymentList,
        notifications::SenderBody, notifications::SenderView,
        inbox::NotificationView, inbox::InboxPage, inbox::MarkedRead,
        profiles::ProfileView, profiles::ProfilePatch, profiles::PreferencesView, profiles::PreferencesBody,
        profiles::OptOutView, profiles::OptionalCategory, profiles::ChannelName, profiles::ExportView, profiles::ErasureView,
        webhooks::CreateEndpoint, webhooks::EventTypeName, webhooks::EndpointView, webhooks::EndpointList, webhooks::DeliveryView,
        webhooks::DeliveryList, webhooks::SendEvent, webhooks::EventAccepted,
        audit::AuditEntryView, audit::AuditPage, audit::JobRollupView, audit::SubmissionRollupView, audit::JobAnalytics, audit::RevenueDayView, audit::RevenueAnalytics,
    )),
    tags(
        (name = "auth", description = "Accounts, tokens, API keys and members"),
        (name = "jobs", description = "Submit and manage jobs"),
        (name = "schedules", description = "Cron schedules, fired exactly once per tick"),
        (name = "queues", description = "Queue statistics"),
        (name = "billing", description = "Plans, subscriptions, invoices and payments"),
        (name = "notifications", description = "Notification settings and users' in-app inboxes"),
        (name = "profiles", description = "Users' profiles and preferences, data exports and erasure"),
        (name = "webhooks", description = "Webhook endpoints, their delivery log and replays"),
        (name = "audit", description = "The audit log and job analytics, from the event streams"),
        (name = "system", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document of a deployment: [`ApiDoc`] with the payload of every kind in `registry`
/// stated exactly. A submission (`SubmitJob`, also inside batches) and a schedule
/// (`CreateSchedule`) become a `oneOf` with one variant per kind, discriminated by `kind`, whose
/// `payload` is the kind's JSON Schema; so generated clients and forms send only what the server
/// accepts.
pub fn document(registry: &KindRegistry) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return doc;
    };
    // Options whose schema is written by hand (enums) take null like every other option, and
    // the ~600 zone names are stated once, referenced by every schema with a zone.
    for name in ["CreateSchedule", "CronPreview", "ProfilePatch"] {
        let Some(props) = schemas
            .get_mut(name)
            .and_then(|c| c.get_mut("properties"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for field in ["timezone", "misfire"] {
            props.get_mut(field).into_iter().for_each(make_nullable);
        }
        let zones = props
            .get_mut("timezone")
            .map(|tz| std::mem::replace(tz, json!({ "$ref": "#/components/schemas/TimeZone" })));
        if let Some(zones) = zones {
            schemas.insert("TimeZone".into(), zones);
        }
    }
    // Every currency a plan accepts, listed (the codes with a minor unit).
    schemas.insert(
        "CurrencyCode".into(),
        json!({
            "type": "string",
            "description": "An ISO 4217 currency code with a minor unit",
            "enum": pysaas_jobs::billing::currency_codes().collect::<Vec<_>>(),
        }),
    );
    schemas.insert(
        "EventTypeName".into(),
        json!({
            "type": "string",
            "description": "An event type (dot-separated lower-case words), or `*` for every type",
            "pattern": r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$",
            "minLength": 1,
            "maxLength": 100,
        }),
    );
    if let Some(create) = schemas.get("CreateSchedule").cloned() {
        let patch = schedule_patch(schemas, registry, &create);
        schemas.insert("SchedulePatch".into(), patch);
    }
    for name in ["SubmitJob", "CreateSchedule"] {
        let Some(base) = schemas.remove(name) else {
            continue;
        };
        let mut variants = Vec::new();
        let mut mapping = Map::new();
        for spec in registry.specs().filter(|s| !s.internal) {
            let variant = format!("{name}.{}", spec.kind);
            let schema = per_kind(&base, spec, payload_schema(schemas, spec));
            let reference = format!("#/components/schemas/{variant}");
            schemas.insert(variant, schema);
            mapping.insert(spec.kind.to_owned(), Value::String(reference.clone()));
            variants.push(json!({ "$ref": reference }));
        }
        let description = base.get("description").cloned().unwrap_or(Value::Null);
        let one_of = json!({
            "description": description,
            "oneOf": variants,
            "discriminator": { "propertyName": "kind", "mapping": mapping },
        });
        schemas.insert(name.to_owned(), one_of);
    }
    doc
}

/// The merge patch of a schedule, from `create`'s fields: either the plain fields alone, or a
/// new `kind` together with its `payload` (one variant per kind). `name` cannot change.
fn schedule_patch(
    schemas: &mut Map<String, Value>,
    registry: &KindRegistry,
    create: &Value,
) -> Value {
    let mut plain = create.clone();
    if let Some(props) = plain.get_mut("properties").and_then(Value::as_object_mut) {
        for field in ["name", "kind", "payload"] {
            props.remove(field);
        }
    }
    if let Some(object) = plain.as_object_mut() {
        object.remove("required");
        object.remove("description");
    }
    plain["additionalProperties"] = Value::Bool(false);
    // In a merge patch `null` removes a field, which puts back its default: every field with one
    // takes null (`cron` has none).
    if let Some(props) = plain.get_mut("properties").and_then(Value::as_object_mut) {
        for (field, schema) in props.iter_mut() {
            if field != "cron" {
                make_nullable(schema);
            }
        }
    }
    let mut variants = vec![json!({ "$ref": "#/components/schemas/SchedulePatch.fields" })];
    for spec in registry.specs().filter(|s| !s.internal) {
        let mut variant = plain.clone();
        let payload = payload_schema(schemas, spec);
        if let Some(props) = variant.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(
                "kind".into(),
                json!({ "type": "string", "const": spec.kind }),
            );
            props.insert("payload".into(), payload);
        }
        variant["required"] = json!(["kind", "payload"]);
        let name = format!("SchedulePatch.{}", spec.kind);
        variants.push(json!({ "$ref": format!("#/components/schemas/{name}") }));
        schemas.insert(name, variant);
    }
    schemas.insert("SchedulePatch.fields".into(), plain);
    json!({
        "description": "Fields of a schedule to change (a JSON merge patch): the plain fields, \
                        and `kind` and `payload` together (the payload replaced as a whole).",
        "oneOf": variants,
    })
}

/// Lets `schema` also take `null`.
fn make_nullable(schema: &mut Value) {
    let null = json!("null");
    match schema.get_mut("type") {
        Some(Value::String(t)) => {
            let t = Value::String(t.clone());
            schema["type"] = json!([t, "null"]);
        }
        Some(Value::Array(types)) => {
            if !types.contains(&null) {
                types.push(null);
            }
        }
        _ => {
            *schema = json!({ "anyOf": [schema.take(), { "type": "null" }] });
            return;
        }
    }
    if let Some(Value::Array(values)) = schema.get_mut("enum") {
        if !values.contains(&Value::Null) {
            values.push(Value::Null);
        }
    }
}

/// `base` for one kind: `kind` fixed to it, `payload` its schema (required when the schema
/// requires fields), nothing else allowed.
fn per_kind(base: &Value, spec: &KindSpec, payload: Value) -> Value {
    let mut schema = base.clone();
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert(
            "kind".into(),
            json!({ "type": "string", "const": spec.kind }),
        );
        props.insert("payload".into(), payload);
    }
    let mut required = vec![json!("kind")];
    if let Some(existing) = schema.get("required").and_then(Value::as_array) {
        required.extend(existing.iter().filter(|r| *r != "kind").cloned());
    }
    if requires_fields(spec) {
        required.push(json!("payload"));
    }
    schema["required"] = Value::Array(required);
    schema["additionalProperties"] = Value::Bool(false);
    schema
}

fn requires_fields(spec: &KindSpec) -> bool {
    spec.schema
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty())
}

/// A reference to a kind's payload schema, put into `schemas` once as `Payload.<kind>`: its
/// `$defs` moved beside it (named `<kind>.<def>`) with references rewritten, `$schema` and
/// `title` dropped (generated clients name models after the component, and two kinds' payload
/// types may share a Rust name), and integer formats given their bounds.
fn payload_schema(schemas: &mut Map<String, Value>, spec: &KindSpec) -> Value {
    let name = format!("Payload.{}", spec.kind);
    let reference = json!({ "$ref": format!("#/components/schemas/{name}") });
    if schemas.contains_key(&name) {
        return reference;
    }
    let mut schema = spec.schema.clone();
    let defs = schema.as_object_mut().and_then(|object| {
        object.remove("$schema");
        object.remove("title");
        object.remove("$defs")
    });
    let prefix = format!("{}.", spec.kind);
    rewrite_refs(&mut schema, &prefix);
    bound_integers(&mut schema);
    if let Some(Value::Object(defs)) = defs {
        for (def_name, mut def) in defs {
            rewrite_refs(&mut def, &prefix);
            bound_integers(&mut def);
            schemas.insert(format!("{prefix}{def_name}"), def);
        }
    }
    schemas.insert(name, schema);
    reference
}

/// schemars states an integer's width only as a `format` (`uint32`), which validators and
/// request generators ignore; the bounds make it a constraint (`u32` takes at most 4294967295).
fn bound_integers(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let bounds: Option<(i64, i64)> = match map.get("format").and_then(Value::as_str) {
                Some("int8") => Some((i8::MIN.into(), i8::MAX.into())),
                Some("uint8") => Some((0, u8::MAX.into())),
                Some("int16") => Some((i16::MIN.into(), i16::MAX.into())),
                Some("uint16") => Some((0, u16::MAX.into())),
                Some("int32") => Some((i32::MIN.into(), i32::MAX.into())),
                Some("uint32") => Some((0, u32::MAX.into())),
                // Beyond 2^53 JSON numbers lose precision in most clients anyway.
                Some("int64") => Some((-(1 << 53), 1 << 53)),
                Some("uint64") => Some((0, 1 << 53)),
                _ => None,
            };
            if let Some((min, max)) = bounds {
                map.entry("minimum").or_insert(min.into());
                map.entry("maximum").or_insert(max.into());
            }
            map.values_mut().for_each(bound_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

fn rewrite_refs(value: &mut Value, prefix: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/$defs/") {
                    *r = format!("#/components/schemas/{prefix}{name}");
                }
            }
            map.values_mut().for_each(|v| rewrite_refs(v, prefix));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, prefix)),
        _ => {}
    }
}

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
        assert!(seen.len() >= 34, "{seen:?}");
    }

    /// Every kind becomes one variant of the submission and schedule schemas, its payload the
    /// kind's own schema, and every reference in the document resolves.
    #[test]
    fn kinds_are_variants_and_every_reference_resolves() {
        use pysaas_jobs::kinds::{notification, system};
        let mut registry = pysaas_jobs::KindRegistry::new();
        registry
            .register::<system::Noop>()
            .register::<system::Sleep>()
            .register::<notification::Webhook>();
        let doc = super::document(&registry);
        let schemas = &doc["components"]["schemas"];
        for name in ["SubmitJob", "CreateSchedule"] {
            let one_of = schemas[name]["oneOf"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert_eq!(one_of.len(), 3, "{name}: {}", schemas[name]);
            assert_eq!(schemas[name]["discriminator"]["propertyName"], "kind");
            let webhook = &schemas[format!("{name}.notification.webhook")];
            assert_eq!(
                webhook["properties"]["kind"]["const"],
                "notification.webhook"
            );
            assert_eq!(
                webhook["properties"]["payload"]["$ref"],
                "#/components/schemas/Payload.notification.webhook"
            );
            assert!(webhook["required"]
                .as_array()
                .is_some_and(|r| r.contains(&"payload".into())));
            assert_eq!(webhook["additionalProperties"], false);
        }
        let payload = &schemas["Payload.notification.webhook"];
        assert_eq!(payload["required"], serde_json::json!(["url", "body"]));
        assert!(payload.get("title").is_none() && payload.get("$schema").is_none());
        let ms = &schemas["Payload.system.sleep"]["properties"]["ms"];
        assert_eq!(
            (ms["minimum"].as_i64(), ms["maximum"].as_i64()),
            (Some(0), Some(59_999))
        );
        assert_eq!(
            schemas["SchedulePatch"]["oneOf"].as_array().map(Vec::len),
            Some(4)
        );
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').unwrap_or_default();
            assert!(doc.pointer(pointer).is_some(), "dangling reference {r}");
        }
    }

    fn collect_refs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| collect_refs(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
