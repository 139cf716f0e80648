//! Profile kinds (queue `profiles`): a user's data access and erasure requests. Their rules:
//! `docs/domains.md`, "Profiles".

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{JobKind, RetryPolicy};

/// Gathers everything PySaaS holds about a user (account, memberships, profile and preferences,
/// in-app notifications, emails sent to them, subscriptions billed to them) into one JSON
/// document, kept on the export's row for the user to download. Created with the export by
/// `POST /v1/profile/exports`; running it again rebuilds the same document.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// The export's row.
    pub export_id: Uuid,
}

impl JobKind for Export {
    const KIND: &'static str = "profile.export";
    const QUEUE: &'static str = "profiles";
    const INTERNAL: bool = true;

    fn timeout() -> Duration {
        Duration::from_secs(300)
    }
}

/// Erases the user of an erasure row (`DELETE /v1/profile`) from every store: profile and
/// preferences, in-app notifications, exports, the address on their emails and subscriptions,
/// sessions, memberships and the account itself. Each step deletes what is left, so a retry
/// finishes what an interrupted run began; once done, the row records when and how much, never
/// who (its user id is cleared with the rest).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Delete {
    /// The erasure's row.
    pub erasure_id: Uuid,
}

impl JobKind for Delete {
    const KIND: &'static str = "profile.delete";
    const QUEUE: &'static str = "profiles";
    const INTERNAL: bool = true;

    fn timeout() -> Duration {
        Duration::from_secs(300)
    }

    fn retry_policy() -> RetryPolicy {
        // An erasure must finish: keep trying through outages for about a day.
        RetryPolicy::about_a_day()
    }
}
