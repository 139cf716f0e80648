//! The OpenAPI 3.1 document.

use utoipa::OpenApi;

use crate::dto;
use crate::error::FieldError;
use crate::routes::{jobs, schedules, system};

/// PySaaS's HTTP API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "PySaaS", description = "Typed background jobs over HTTP: submit, inspect, cancel, retry; cron schedules."),
    paths(
        jobs::submit, jobs::submit_batch, jobs::get, jobs::list, jobs::cancel, jobs::retry,
        schedules::list, schedules::create, schedules::get, schedules::patch, schedules::delete,
        schedules::pause, schedules::resume, schedules::trigger,
        system::queues, system::kinds, system::healthz, system::readyz, system::metrics,
    ),
    components(schemas(
        dto::SubmitJob, dto::SubmitBatch, dto::JobView, dto::BatchAccepted, dto::JobPage, dto::QueueView,
        dto::QueueList, dto::KindView, dto::KindList, dto::Health, dto::CreateSchedule,
        dto::ScheduleView, dto::ScheduleList, FieldError,
    )),
    tags(
        (name = "jobs", description = "Submit and manage jobs"),
        (name = "schedules", description = "Cron schedules, fired exactly once per tick"),
        (name = "queues", description = "Queue statistics"),
        (name = "system", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;
