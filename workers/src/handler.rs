use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use pysaas_brokers::{JobStore, ProfileStore};
use pysaas_jobs::{HandlerError, Job, JobKind, KindRegistry, KindSpec};
use serde_json::Value;
use uuid::Uuid;

/// What a handler knows about the job it runs.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Job id.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: String,
    /// Kind name.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// This attempt (1-based).
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// W3C trace context of the submission.
    pub trace_context: Option<String>,
    /// `X-Request-Id` of the submission.
    pub request_id: Option<String>,
    /// The store the job came from (see [`JobContext::store`]).
    store: Option<Arc<dyn JobStore>>,
    /// Where profiles and preferences live (see [`JobContext::profiles`]).
    profiles: Option<Arc<dyn ProfileStore>>,
}

impl JobContext {
    /// The context of attempt 1 of a job of `kind` on `queue` for `tenant_id`, with no store
    /// (tests of a handler; [`JobContext::with_store`] gives it one). Set the public fields for
    /// other attempts.
    pub fn new(
        tenant_id: impl Into<String>,
        kind: impl Into<String>,
        queue: impl Into<String>,
        max_attempts: i32,
    ) -> Self {
        JobContext {
            id: Uuid::now_v7(),
            tenant_id: tenant_id.into(),
            kind: kind.into(),
            queue: queue.into(),
            attempt: 1,
            max_attempts,
            trace_context: None,
            request_id: None,
            store: None,
            profiles: None,
        }
    }

    /// This context with `store` as the job's store.
    pub fn with_store(mut self, store: Arc<dyn JobStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// This context with `profiles` as the profile store (the job store's own tables when not
    /// given).
    pub fn with_profiles(mut self, profiles: Arc<dyn ProfileStore>) -> Self {
        self.profiles = Some(profiles);
        self
    }

    /// Where users' profiles and notification preferences live: the deployment's profile store
    /// (DynamoDB, say), else the job store's tables.
    pub fn profiles(&self) -> Result<Arc<dyn ProfileStore>, HandlerError> {
        match (&self.profiles, &self.store) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(store)) => Ok(store.clone()),
            (None, None) => Err(HandlerError::fail("this job context has no profile store")),
        }
    }

    /// The store the job came from, for handlers whose work is the store's own tables (billing
    /// invoices, say) and jobs they cause in the same transaction. Every job a worker runs has
    /// one; a context made for a test without [`JobContext::with_store`] answers a permanent
    /// error.
    pub fn store(&self) -> Result<&Arc<dyn JobStore>, HandlerError> {
        self.store
            .as_ref()
            .ok_or_else(|| HandlerError::fail("this job context has no store"))
    }

    pub(crate) fn of(
        job: &Job,
        store: &Arc<dyn JobStore>,
        profiles: &Option<Arc<dyn ProfileStore>>,
    ) -> Self {
        JobContext {
            store: Some(store.clone()),
            profiles: profiles.clone(),
            id: job.id,
            tenant_id: job.tenant_id.clone(),
            kind: job.kind.clone(),
            queue: job.queue.clone(),
            attempt: job.attempts,
            max_attempts: job.max_attempts,
            trace_context: job.trace_context.clone(),
            request_id: job.request_id.clone(),
        }
    }
}

/// Runs jobs of kind `K`.
#[async_trait]
pub trait JobHandler<K: JobKind>: Send + Sync + 'static {
    /// Does the work. `Ok(Some(v))` stores `v` as the job's result.
    async fn handle(&self, ctx: &JobContext, payload: K) -> Result<Option<Value>, HandlerError>;
}

#[async_trait]
trait ErasedHandler: Send + Sync {
    async fn call(&self, ctx: &JobContext, payload: Value) -> Result<Option<Value>, HandlerError>;
}

struct Typed<K, H> {
    handler: H,
    kind: PhantomData<fn() -> K>,
}

#[async_trait]
impl<K: JobKind, H: JobHandler<K>> ErasedHandler for Typed<K, H> {
    async fn call(&self, ctx: &JobContext, payload: Value) -> Result<Option<Value>, HandlerError> {
        // The API validated the payload; a mismatch here means the kind changed shape since.
        let payload: K = serde_json::from_value(payload).map_err(|e| {
            HandlerError::fail(format!("payload does not match `{}`: {e}", K::KIND))
        })?;
        self.handler.handle(ctx, payload).await
    }
}

#[derive(Clone)]
pub(crate) struct Registered {
    handler: Arc<dyn ErasedHandler>,
    pub(crate) spec: KindSpec,
}

impl Registered {
    pub(crate) async fn call(
        &self,
        ctx: &JobContext,
        payload: Value,
    ) -> Result<Option<Value>, HandlerError> {
        self.handler.call(ctx, payload).await
    }
}

/// The handlers a worker process runs, by kind.
#[derive(Clone, Default)]
pub struct Handlers {
    map: HashMap<&'static str, Registered>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.map.keys()).finish()
    }
}

impl Handlers {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for kind `K`.
    pub fn register<K: JobKind, H: JobHandler<K>>(&mut self, handler: H) -> &mut Self {
        let handler = Arc::new(Typed::<K, H> {
            handler,
            kind: PhantomData,
        });
        self.map.insert(
            K::KIND,
            Registered {
                handler,
                spec: KindSpec::of::<K>(),
            },
        );
        self
    }

    /// Handlers for every built-in kind.
    pub fn builtin() -> Self {
        Self::builtin_with(crate::handlers::BuiltinConfig::default())
    }

    /// The built-in kinds with `config`.
    pub fn builtin_with(config: crate::handlers::BuiltinConfig) -> Self {
        let mut handlers = Self::new();
        crate::handlers::register_builtin(&mut handlers, config);
        handlers
    }

    /// The kinds handled, as a registry (what the API should accept).
    pub fn registry(&self) -> KindRegistry {
        let mut registry = KindRegistry::new();
        for registered in self.map.values() {
            registry.insert(registered.spec.clone());
        }
        registry
    }

    /// The registered kind names, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self.map.keys().copied().collect();
        kinds.sort_unstable();
        kinds
    }

    /// Runs the handler of `ctx.kind` on `payload` right here, as a worker would run one attempt
    /// (without its timeout, lease or outcome write): what tests of a handler call. An unknown
    /// kind or a payload that does not fit is a permanent failure, as in a worker.
    pub async fn perform(
        &self,
        ctx: &JobContext,
        payload: Value,
    ) -> Result<Option<Value>, HandlerError> {
        match self.get(&ctx.kind) {
            Some(registered) => registered.call(ctx, payload).await,
            None => Err(HandlerError::fail(format!(
                "no handler for kind `{}` (registered: {})",
                ctx.kind,
                self.kinds().join(", ")
            ))),
        }
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&Registered> {
        self.map.get(kind)
    }
}
