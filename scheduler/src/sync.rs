//! Applies the schedules declared in the config file to the store. Declarative: a declared
//! schedule is created or brought up to date (keeping its pause state and fire history);
//! schedules are never deleted by a sync, because replicas may briefly run different configs.

use chrono::Utc;
use pysaas_brokers::{JobStore, StoreError};
use pysaas_jobs::{JobsError, KindRegistry, Schedule, ScheduleSource, ScheduleSpec};

/// Attempts per schedule when racing another replica's sync.
const SYNC_ATTEMPTS: usize = 5;

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A declared schedule is invalid.
    #[error("schedule `{name}`: {source}")]
    Invalid {
        /// Its name.
        name: String,
        /// What is wrong.
        source: JobsError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Other replicas kept changing the schedule.
    #[error("schedule `{0}` kept changing during the sync; try again")]
    Contended(String),
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Schedules created.
    pub created: usize,
    /// Schedules whose definition changed.
    pub updated: usize,
    /// Schedules already up to date.
    pub unchanged: usize,
}

/// Validates every spec (all or nothing), then creates or updates each for `tenant_id`.
pub async fn sync_schedules(
    store: &dyn JobStore,
    registry: &KindRegistry,
    tenant_id: &str,
    specs: &[ScheduleSpec],
) -> Result<SyncReport, SyncError> {
    let mut checked = Vec::with_capacity(specs.len());
    for spec in specs {
        let cron = spec
            .validate(registry)
            .map_err(|source| SyncError::Invalid {
                name: spec.name.clone(),
                source,
            })?;
        checked.push((spec, cron));
    }
    let mut report = SyncReport::default();
    'specs: for (spec, cron) in checked {
        for _ in 0..SYNC_ATTEMPTS {
            let now = store.now().await.unwrap_or_else(|_| Utc::now());
            match store.get_schedule(tenant_id, &spec.name).await? {
                None => {
                    let schedule =
                        Schedule::new(tenant_id, spec.clone(), ScheduleSource::Config, &cron, now);
                    if store.create_schedule(&schedule).await? {
                        report.created += 1;
                        continue 'specs;
                    }
                }
                Some(existing) => {
                    let mut wanted = spec.clone();
                    wanted.paused = existing.spec.paused;
                    if existing.spec == wanted && existing.source == ScheduleSource::Config {
                        report.unchanged += 1;
                        continue 'specs;
                    }
                    let mut updated = existing;
                    updated.source = ScheduleSource::Config;
                    updated
                        .apply_spec(spec.clone(), now)
                        .map_err(|source| SyncError::Invalid {
                            name: spec.name.clone(),
                            source,
                        })?;
                    if store.update_schedule(&updated).await?.is_some() {
                        report.updated += 1;
                        continue 'specs;
                    }
                }
            }
        }
        return Err(SyncError::Contended(spec.name.clone()));
    }
    Ok(report)
}
