//! [`EventRecords`] once for both backends.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pysaas_jobs::events::{
    CloudEvent, JobFinished, JobSubmitted, RevenueRecognised, JOB_FINISHED, JOB_SUBMITTED,
    REVENUE_RECOGNISED,
};
use pysaas_jobs::JobState;

use super::{args, Arg, Columns, SqlBackend, SqlTx, Stmt};
use crate::store::consumers::{
    AuditEntry, AuditFilter, EventRecords, JobRollup, RevenueRollup, SubmissionRollup,
};
use crate::store::stats::{bucket_of_ms, minute_of, WAIT_BUCKETS};
use crate::{Result, StoreError};

const AUDIT_ADD: Stmt<'static> = Stmt::write(
    "INSERT INTO audit_log (event_id, tenant_id, type, subject, time, data, traceparent) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
);
const AUDIT_PAGE: Stmt<'static> = Stmt::read(
    "SELECT event_id, tenant_id, type, subject, time, data, traceparent FROM audit_log \
     WHERE tenant_id = $1 AND ($2 IS NULL OR subject = $2) AND ($3 IS NULL OR type = $3) \
       AND ($4 IS NULL OR time >= $4) \
       AND ($5 IS NULL OR time < $5 OR ($7 IS NOT NULL AND time = $5 AND event_id < $7)) \
     ORDER BY time DESC, event_id DESC LIMIT $6",
);
const SEEN: Stmt<'static> = Stmt::write(
    "INSERT INTO analytics_seen (event_id, seen_at) VALUES ($1, $2) \
     ON CONFLICT (event_id) DO NOTHING",
);
const JOBS_ADD: Stmt<'static> = Stmt::write(
    "INSERT INTO analytics_jobs \
         (tenant_id, minute, kind, queue, outcome, bucket, jobs, attempts, duration_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (tenant_id, minute, kind, queue, outcome, bucket) DO UPDATE SET \
         jobs = analytics_jobs.jobs + excluded.jobs, \
         attempts = analytics_jobs.attempts + excluded.attempts, \
         duration_ms = analytics_jobs.duration_ms + excluded.duration_ms",
);
const SUBMISSIONS_ADD: Stmt<'static> = Stmt::write(
    "INSERT INTO analytics_submissions (tenant_id, minute, kind, queue, jobs) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (tenant_id, minute, kind, queue) DO UPDATE SET \
         jobs = analytics_submissions.jobs + excluded.jobs",
);
const JOBS_RANGE: Stmt<'static> = Stmt::read(
    "SELECT minute, kind, queue, outcome, bucket, jobs, attempts, duration_ms \
     FROM analytics_jobs WHERE tenant_id = $1 AND minute >= $2 AND minute < $3 \
     ORDER BY minute, kind, queue, outcome, bucket",
);
const SUBMISSIONS_RANGE: Stmt<'static> = Stmt::read(
    "SELECT minute, kind, queue, jobs FROM analytics_submissions \
     WHERE tenant_id = $1 AND minute >= $2 AND minute < $3 ORDER BY minute, kind, queue",
);
const REVENUE_ADD: Stmt<'static> = Stmt::write(
    "INSERT INTO analytics_revenue (tenant_id, day, currency, invoices, amount_minor) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (day, currency, tenant_id) DO UPDATE SET \
         invoices = analytics_revenue.invoices + excluded.invoices, \
         amount_minor = analytics_revenue.amount_minor + excluded.amount_minor",
);
const REVENUE_RANGE: Stmt<'static> = Stmt::read(
    "SELECT day, currency, CAST(sum(invoices) AS BIGINT) AS invoices, \
            CAST(sum(amount_minor) AS BIGINT) AS amount_minor \
     FROM analytics_revenue WHERE day >= $1 AND day < $2 \
     GROUP BY day, currency ORDER BY day, currency",
);
const SEEN_PRUNE: Stmt<'static> = Stmt::write("DELETE FROM analytics_seen WHERE seen_at < $1");

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The event's data as `T`; an event that does not fit (a newer producer's, a bad one) is
/// logged and counted nowhere, rather than stopping the consumer on it for good.
fn parse<T: serde::de::DeserializeOwned>(event: &CloudEvent) -> Option<T> {
    match event.data.parse() {
        Ok(data) => Some(data),
        Err(err) => {
            tracing::error!(event_id = %event.id, event_type = %event.event_type, error = %err, "analytics event skipped: its data does not fit its type");
            None
        }
    }
}

/// Keys of the rows an analytics batch adds to.
type JobKey = (String, DateTime<Utc>, String, String, JobState, i16);
type SubmissionKey = (String, DateTime<Utc>, String, String);
type RevenueKey = (DateTime<Utc>, String, String);

/// The start of `t`'s UTC day.
fn day_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive().and_time(chrono::NaiveTime::MIN).and_utc()
}

#[async_trait]
impl<S: SqlBackend> EventRecords for S {
    async fn record_audit(&self, events: &[CloudEvent]) -> Result<u64> {
        let mut tx = self.begin_tx().await?;
        let mut added = 0;
        for e in events {
            added += tx
                .execute(
                    AUDIT_ADD,
                    &[
                        e.id.into(),
                        e.tenantid.as_str().into(),
                        e.event_type.as_str().into(),
                        e.subject.as_str().into(),
                        e.time.into(),
                        Arg::Data(&e.data),
                        e.traceparent.as_deref().into(),
                    ],
                )
                .await?;
        }
        tx.commit_tx().await?;
        Ok(added)
    }

    async fn audit_log(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let rows = self
            .fetch_all(
                AUDIT_PAGE,
                &[
                    f.tenant_id.as_str().into(),
                    f.subject.as_deref().into(),
                    f.event_type.as_deref().into(),
                    f.from.into(),
                    f.to.into(),
                    limit(f.limit).into(),
                    f.before.into(),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.uuid(0)?,
                    tenant_id: r.text(1)?,
                    event_type: r.text(2)?,
                    subject: r.text(3)?,
                    time: r.time(4)?,
                    data: r.data(5)?,
                    traceparent: r.opt_text(6)?,
                })
            })
            .collect()
    }

    async fn record_analytics(&self, events: &[CloudEvent]) -> Result<u64> {
        let mut tx = self.begin_tx().await?;
        let mut jobs: BTreeMap<JobKey, (i64, i64, i64)> = BTreeMap::new();
        let mut submissions: BTreeMap<SubmissionKey, i64> = BTreeMap::new();
        let mut revenue: BTreeMap<RevenueKey, (i64, i64)> = BTreeMap::new();
        let mut new = 0;
        for e in events {
            if tx.execute(SEEN, &[e.id.into(), Arg::Now]).await? == 0 {
                continue;
            }
            new += 1;
            let minute = minute_of(e.time);
            match e.event_type.as_str() {
                JOB_FINISHED => {
                    let Some(f) = parse::<JobFinished>(e) else {
                        continue;
                    };
                    let bucket = f.duration_ms.map_or(-1, |ms| {
                        i16::try_from(bucket_of_ms(u64::try_from(ms).unwrap_or(0))).unwrap_or(-1)
                    });
                    let row = jobs
                        .entry((
                            e.tenantid.clone(),
                            minute,
                            f.kind,
                            f.queue,
                            f.outcome,
                            bucket,
                        ))
                        .or_default();
                    row.0 += 1;
                    row.1 += i64::from(f.attempts);
                    row.2 += f.duration_ms.unwrap_or(0);
                }
                JOB_SUBMITTED => {
                    let Some(s) = parse::<JobSubmitted>(e) else {
                        continue;
                    };
                    *submissions
                        .entry((e.tenantid.clone(), minute, s.kind, s.queue))
                        .or_default() += 1;
                }
                REVENUE_RECOGNISED => {
                    let Some(r) = parse::<RevenueRecognised>(e) else {
                        continue;
                    };
                    let row = revenue
                        .entry((day_of(e.time), r.currency, e.tenantid.clone()))
                        .or_default();
                    row.0 += 1;
                    row.1 += r.amount_minor;
                }
                // A type this version does not count: recorded as seen, counted nowhere.
                _ => {}
            }
        }
        // Upserted in key order, so that two consumers adding to the same rows wait for each
        // other rather than deadlock.
        for ((tenant, minute, kind, queue, outcome, bucket), (n, attempts, ms)) in &jobs {
            tx.execute(
                JOBS_ADD,
                &args![
                    tenant.as_str(),
                    *minute,
                    kind.as_str(),
                    queue.as_str(),
                    outcome.as_str(),
                    *bucket,
                    *n,
                    *attempts,
                    *ms
                ],
            )
            .await?;
        }
        for ((tenant, minute, kind, queue), n) in &submissions {
            tx.execute(
                SUBMISSIONS_ADD,
                &args![tenant.as_str(), *minute, kind.as_str(), queue.as_str(), *n],
            )
            .await?;
        }
        for ((day, currency, tenant), (invoices, amount)) in &revenue {
            tx.execute(
                REVENUE_ADD,
                &args![tenant.as_str(), *day, currency.as_str(), *invoices, *amount],
            )
            .await?;
        }
        tx.commit_tx().await?;
        Ok(new)
    }

    async fn job_rollups(
        &self,
        tenant_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<JobRollup>> {
        let rows = self
            .fetch_all(JOBS_RANGE, &args![tenant_id, from, to])
            .await?;
        let mut out: Vec<JobRollup> = Vec::new();
        for r in &rows {
            let (minute, kind, queue) = (r.time(0)?, r.text(1)?, r.text(2)?);
            let outcome: JobState = r
                .text(3)?
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("analytics_jobs outcome: {e}")))?;
            let (bucket, jobs, attempts, ms) = (r.small(4)?, r.big(5)?, r.big(6)?, r.big(7)?);
            let same = out.last().is_some_and(|l| {
                l.minute == minute && l.kind == kind && l.queue == queue && l.outcome == outcome
            });
            if !same {
                out.push(JobRollup {
                    minute,
                    kind,
                    queue,
                    outcome,
                    jobs: 0,
                    attempts: 0,
                    duration_ms: 0,
                    durations: [0; WAIT_BUCKETS],
                });
            }
            if let Some(last) = out.last_mut() {
                last.jobs += jobs;
                last.attempts += attempts;
                last.duration_ms += ms;
                if let Some(slot) = usize::try_from(bucket)
                    .ok()
                    .and_then(|b| last.durations.get_mut(b))
                {
                    *slot += jobs;
                }
            }
        }
        Ok(out)
    }

    async fn submission_rollups(
        &self,
        tenant_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<SubmissionRollup>> {
        let rows = self
            .fetch_all(SUBMISSIONS_RANGE, &args![tenant_id, from, to])
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SubmissionRollup {
                    minute: r.time(0)?,
                    kind: r.text(1)?,
                    queue: r.text(2)?,
                    jobs: r.big(3)?,
                })
            })
            .collect()
    }

    async fn revenue_rollups(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RevenueRollup>> {
        let rows = self.fetch_all(REVENUE_RANGE, &args![from, to]).await?;
        rows.iter()
            .map(|r| {
                Ok(RevenueRollup {
                    day: r.time(0)?,
                    currency: r.text(1)?,
                    invoices: r.big(2)?,
                    amount_minor: r.big(3)?,
                })
            })
            .collect()
    }

    async fn prune_analytics_seen(&self, before: DateTime<Utc>) -> Result<u64> {
        self.execute(SEEN_PRUNE, &args![before]).await
    }
}
