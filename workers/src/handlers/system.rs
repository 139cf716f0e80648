use std::time::Duration;

use async_trait::async_trait;
use pysaas_jobs::kinds::system::{Fail, Noop, Sleep};
use pysaas_jobs::HandlerError;
use serde_json::{json, Value};

use crate::{JobContext, JobHandler};

/// Runs `system.noop`.
#[derive(Debug, Clone, Copy)]
pub struct NoopHandler;

#[async_trait]
impl JobHandler<Noop> for NoopHandler {
    async fn handle(
        &self,
        _ctx: &JobContext,
        _payload: Noop,
    ) -> Result<Option<Value>, HandlerError> {
        Ok(None)
    }
}

/// Runs `system.sleep`.
#[derive(Debug, Clone, Copy)]
pub struct SleepHandler;

#[async_trait]
impl JobHandler<Sleep> for SleepHandler {
    async fn handle(
        &self,
        _ctx: &JobContext,
        payload: Sleep,
    ) -> Result<Option<Value>, HandlerError> {
        tokio::time::sleep(Duration::from_millis(payload.ms)).await;
        Ok(Some(json!({ "slept_ms": payload.ms })))
    }
}

/// Runs `system.fail`: attempts `1..=times` fail, the next succeeds.
#[derive(Debug, Clone, Copy)]
pub struct FailHandler;

#[async_trait]
impl JobHandler<Fail> for FailHandler {
    async fn handle(&self, ctx: &JobContext, payload: Fail) -> Result<Option<Value>, HandlerError> {
        let attempt = u32::try_from(ctx.attempt).unwrap_or(0);
        if attempt <= payload.times {
            return Err(HandlerError::retry(format!(
                "system.fail: failing attempt {attempt} of {} planned failures",
                payload.times
            ))
            .with_detail(json!({ "attempt": attempt, "planned_failures": payload.times })));
        }
        Ok(Some(json!({ "succeeded_on_attempt": attempt })))
    }
}
