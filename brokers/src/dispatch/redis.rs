//! Redis Streams dispatch. One stream per PySaaS queue (`{prefix}:q:{queue}`) read by one
//! consumer group (`{prefix}`); a message only announces a job id, the worker claims it through
//! the store and `XACK`s it once the outcome is recorded.
//!
//! - Publishing is pipelined: one round trip per batch (`XADD … MAXLEN ~`).
//! - Each consumer reads with its own connection (a blocking `XREADGROUP` would stall a shared
//!   one); acknowledgements and publishes share a self-reconnecting `ConnectionManager`.
//! - Entries left pending by a dead consumer for longer than the lease are taken over with
//!   `XAUTOCLAIM`; a job whose message was trimmed or lost is announced again by the relay.
//! - An entry that is not a valid envelope is copied to `{prefix}:dead` with a log line and
//!   acknowledged.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pysaas_jobs::{Envelope, Job};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::{Ack, ConsumerSpec, Delivery, Dispatcher, JobConsumer, JobStore, Result, StoreError};

/// Approximate cap on each stream's length (`XADD MAXLEN ~`). Entries past it are trimmed even
/// if unread; the relay announces such jobs again after its redispatch delay.
pub const STREAM_MAX_LEN: usize = 1_000_000;
/// How long `wait` blocks in `XREADGROUP` before it returns to let the worker check for shutdown.
const BLOCK: Duration = Duration::from_millis(1000);
/// Pause after a failed connection attempt.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);
/// Field carrying the envelope in each stream entry.
const FIELD: &str = "env";

fn broker(err: impl fmt::Display) -> StoreError {
    StoreError::Broker(err.to_string())
}

/// Redis settings.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:6379/0`.
    pub url: String,
    /// Prefix of every key (isolates deployments and tests).
    pub prefix: String,
}

/// The Redis Streams dispatcher.
#[derive(Clone)]
pub struct RedisDispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    client: redis::Client,
    store: Arc<dyn JobStore>,
    shared: Mutex<Option<ConnectionManager>>,
    groups: StdMutex<HashSet<String>>,
}

impl fmt::Debug for RedisDispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDispatcher")
            .field("prefix", &self.inner.config.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisDispatcher {
    /// A dispatcher; it connects lazily and reconnects by itself.
    pub fn new(config: RedisConfig, store: Arc<dyn JobStore>) -> Result<Self> {
        let client = redis::Client::open(config.url.as_str()).map_err(broker)?;
        Ok(RedisDispatcher {
            inner: Arc::new(Inner {
                config,
                client,
                store,
                shared: Mutex::new(None),
                groups: StdMutex::new(HashSet::new()),
            }),
        })
    }

    /// The stream carrying PySaaS queue `queue`.
    pub fn stream(&self, queue: &str) -> String {
        self.inner.stream(queue)
    }

    /// The dead-letter stream.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}:dead", self.inner.config.prefix)
    }

    /// A connection of the dispatcher's (tools and tests).
    pub async fn connection(&self) -> Result<ConnectionManager> {
        self.inner.shared().await
    }
}

impl Inner {
    fn stream(&self, queue: &str) -> String {
        format!("{}:q:{queue}", self.config.prefix)
    }

    fn group(&self) -> &str {
        &self.config.prefix
    }

    async fn shared(&self) -> Result<ConnectionManager> {
        let mut shared = self.shared.lock().await;
        if let Some(conn) = shared.as_ref() {
            return Ok(conn.clone());
        }
        let conn =
            tokio::time::timeout(Duration::from_secs(5), self.client.get_connection_manager())
                .await
                .map_err(|_| broker("connecting to Redis timed out"))?
                .map_err(broker)?;
        *shared = Some(conn.clone());
        Ok(conn)
    }

    /// Creates the consumer group (reading from the stream's start) once per queue and process.
    async fn ensure_group(&self, conn: &mut ConnectionManager, queue: &str) -> Result<()> {
        if self
            .groups
            .lock()
            .map(|g| g.contains(queue))
            .unwrap_or(false)
        {
            return Ok(());
        }
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream(queue))
            .arg(self.group())
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Ok(()) => {}
            Err(err) if err.code() == Some("BUSYGROUP") => {}
            Err(err) => return Err(broker(err)),
        }
        if let Ok(mut groups) = self.groups.lock() {
            groups.insert(queue.to_owned());
        }
        Ok(())
    }

    async fn ack(&self, queue: &str, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.shared().await?;
        redis::cmd("XACK")
            .arg(self.stream(queue))
            .arg(self.group())
            .arg(ids)
            .query_async::<()>(&mut conn)
            .await
            .map_err(broker)
    }
}

#[async_trait]
impl Dispatcher for RedisDispatcher {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn dispatch(&self, jobs: &[Job]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut conn = self.inner.shared().await?;
        let queues: HashSet<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
        for queue in queues {
            self.inner.ensure_group(&mut conn, queue).await?;
        }
        let mut pipe = redis::pipe();
        for job in jobs {
            pipe.cmd("XADD")
                .arg(self.inner.stream(&job.queue))
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_MAX_LEN)
                .arg("*")
                .arg(FIELD)
                .arg(Envelope::of(job).encode())
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.map_err(broker)?;
        Ok(())
    }

    async fn backlog(&self, queue: &str) -> Result<Option<u64>> {
        let mut conn = self.inner.shared().await?;
        let groups: redis::RedisResult<Vec<HashMap<String, redis::Value>>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(self.inner.stream(queue))
            .query_async(&mut conn)
            .await;
        let groups = match groups {
            Ok(groups) => groups,
            // No stream: nothing is held for the queue.
            Err(err) if err.code() == Some("ERR") => return Ok(Some(0)),
            Err(err) => return Err(broker(err)),
        };
        let text =
            |v: Option<redis::Value>| v.and_then(|v| redis::from_redis_value::<String>(v).ok());
        let Some(mut group) = groups
            .into_iter()
            .find(|g| text(g.get("name").cloned()).as_deref() == Some(self.inner.group()))
        else {
            return Ok(Some(0));
        };
        // `lag`: entries not yet delivered to the group (Redis 7; nil when it cannot tell).
        if let Some(lag) = group
            .remove("lag")
            .and_then(|v| redis::from_redis_value::<Option<u64>>(v).ok().flatten())
        {
            return Ok(Some(lag));
        }
        let delivered = text(group.remove("last-delivered-id"));
        let mut info: HashMap<String, redis::Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(self.inner.stream(queue))
            .query_async(&mut conn)
            .await
            .map_err(broker)?;
        let generated = text(info.remove("last-generated-id"));
        Ok((delivered.is_some() && delivered == generated).then_some(0))
    }

    async fn consumer(&self, spec: ConsumerSpec) -> Result<Box<dyn JobConsumer>> {
        // The group exists before the first read or reclaim (both fail with NOGROUP otherwise);
        // if Redis is unreachable now, the first read creates it.
        if let Ok(mut conn) = self.inner.shared().await {
            if let Err(err) = self.inner.ensure_group(&mut conn, &spec.queue).await {
                tracing::debug!(error = %err, queue = %spec.queue, "consumer group not created yet");
            }
        }
        Ok(Box::new(RedisConsumer {
            inner: self.inner.clone(),
            name: format!("{}-{}", spec.worker_id, spec.queue),
            spec,
            reader: None,
            replay_pending: false,
            buffer: VecDeque::new(),
            last_reclaim: None,
        }))
    }
}

struct RedisConsumer {
    inner: Arc<Inner>,
    spec: ConsumerSpec,
    name: String,
    reader: Option<MultiplexedConnection>,
    replay_pending: bool,
    buffer: VecDeque<StreamId>,
    last_reclaim: Option<Instant>,
}

impl fmt::Debug for RedisConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConsumer")
            .field("consumer", &self.name)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

struct RedisAck {
    inner: Arc<Inner>,
    queue: String,
    entry: String,
}

impl fmt::Debug for RedisAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisAck({})", self.entry)
    }
}

#[async_trait]
impl Ack for RedisAck {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.inner
            .ack(&self.queue, std::slice::from_ref(&self.entry))
            .await
    }
}

impl RedisConsumer {
    async fn connect_reader(&mut self) -> Result<MultiplexedConnection> {
        let mut shared = self.inner.shared().await?;
        self.inner
            .ensure_group(&mut shared, &self.spec.queue)
            .await?;
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            self.inner
                .client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| broker("connecting to Redis timed out"))?
        .map_err(broker)?;
        // A new reader first replays this consumer's own pending entries (read by an earlier,
        // interrupted read and never acknowledged).
        self.replay_pending = true;
        Ok(conn)
    }

    /// Reads up to `count` entries for this consumer, blocking up to `block` when set. The reader
    /// connection is taken out for the duration of the read: if the read is cancelled, the
    /// connection (with its server-side blocked read) is dropped and the next read opens a new one.
    async fn read(&mut self, count: usize, block: Option<Duration>) -> Result<Vec<StreamId>> {
        let mut conn = match self.reader.take() {
            Some(conn) => conn,
            None => self.connect_reader().await?,
        };
        let replay = std::mem::take(&mut self.replay_pending);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(self.inner.group())
            .arg(&self.name)
            .arg("COUNT")
            .arg(count.max(1));
        if let (Some(block), false) = (block, replay) {
            cmd.arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(1000));
        }
        cmd.arg("STREAMS")
            .arg(self.inner.stream(&self.spec.queue))
            .arg(if replay { "0" } else { ">" });
        match cmd.query_async::<Option<StreamReadReply>>(&mut conn).await {
            Ok(reply) => {
                self.reader = Some(conn);
                Ok(reply
                    .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                    .unwrap_or_default())
            }
            Err(err) => {
                if err.code() == Some("NOGROUP") {
                    // The stream or group was deleted (FLUSHALL, a Redis restart without persistence).
                    if let Ok(mut groups) = self.inner.groups.lock() {
                        groups.remove(&self.spec.queue);
                    }
                }
                Err(broker(err))
            }
        }
    }

    /// Takes over entries that another (dead) consumer left pending for longer than the lease.
    async fn reclaim(&mut self, count: usize) -> Result<Vec<StreamId>> {
        let due = self
            .last_reclaim
            .is_none_or(|t| t.elapsed() >= self.spec.lease / 2);
        if !due {
            return Ok(Vec::new());
        }
        self.last_reclaim = Some(Instant::now());
        let mut conn = self.inner.shared().await?;
        self.inner.ensure_group(&mut conn, &self.spec.queue).await?;
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(self.inner.stream(&self.spec.queue))
            .arg(self.inner.group())
            .arg(&self.name)
            .arg(u64::try_from(self.spec.lease.as_millis()).unwrap_or(u64::MAX))
            .arg("0-0")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut conn)
            .await
            .map_err(broker)?;
        if !reply.claimed.is_empty() {
            tracing::info!(queue = %self.spec.queue, entries = reply.claimed.len(), "took over entries a dead consumer left pending");
        }
        Ok(reply.claimed)
    }

    async fn dead_letter(&self, entry: &StreamId, error: &str) -> Result<()> {
        let mut conn = self.inner.shared().await?;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(format!("{}:dead", self.inner.config.prefix))
            .arg("*");
        for (field, value) in &entry.map {
            match value {
                redis::Value::BulkString(bytes) => cmd.arg(field).arg(bytes.as_slice()),
                other => cmd.arg(field).arg(format!("{other:?}")),
            };
        }
        cmd.arg("pysaas_error")
            .arg(error)
            .arg("pysaas_entry")
            .arg(&entry.id);
        cmd.query_async::<()>(&mut conn).await.map_err(broker)?;
        self.inner
            .ack(&self.spec.queue, std::slice::from_ref(&entry.id))
            .await
    }
}

fn body(entry: &StreamId) -> Option<&[u8]> {
    match entry.map.get(FIELD) {
        Some(redis::Value::BulkString(bytes)) => Some(bytes),
        _ => None,
    }
}

#[async_trait]
impl JobConsumer for RedisConsumer {
    async fn poll(&mut self, max: usize) -> Result<Vec<Delivery>> {
        if self.buffer.len() < max {
            let reclaimed = self.reclaim(max - self.buffer.len()).await?;
            self.buffer.extend(reclaimed);
        }
        if self.buffer.len() < max {
            let fresh = self.read(max - self.buffer.len(), None).await?;
            self.buffer.extend(fresh);
        }
        let n = self.buffer.len().min(max);
        let mut entries: Vec<(Uuid, String)> = Vec::with_capacity(n);
        for entry in self.buffer.drain(..n).collect::<Vec<_>>() {
            match body(&entry).map(Envelope::decode) {
                Some(Ok(envelope)) => entries.push((envelope.id, entry.id)),
                other => {
                    let error = match other {
                        Some(Err(err)) => err.to_string(),
                        _ => format!("entry has no `{FIELD}` field"),
                    };
                    tracing::warn!(error = %error, queue = %self.spec.queue, entry = %entry.id, "undecodable entry moved to the dead-letter stream");
                    self.dead_letter(&entry, &error).await?;
                }
            }
        }
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = entries.iter().map(|(id, _)| *id).collect();
        // On a store error the entries stay pending and are reclaimed after the lease.
        let claimed = self
            .inner
            .store
            .claim_ids(&ids, &self.spec.worker_id, self.spec.lease)
            .await?;
        let mut by_id: HashMap<Uuid, Job> = claimed.into_iter().map(|j| (j.id, j)).collect();
        let mut out = Vec::with_capacity(by_id.len());
        let mut stale = Vec::new();
        for (id, entry) in entries {
            match by_id.remove(&id) {
                Some(job) => out.push(Delivery {
                    job,
                    ack: Some(Box::new(RedisAck {
                        inner: self.inner.clone(),
                        queue: self.spec.queue.clone(),
                        entry,
                    })),
                }),
                None => stale.push(entry),
            }
        }
        // Entries for jobs already claimed, finished or cancelled: duplicates, nothing to run.
        self.inner.ack(&self.spec.queue, &stale).await?;
        crate::store::sort_claimed_deliveries(&mut out);
        Ok(out)
    }

    async fn wait(&mut self) {
        if !self.buffer.is_empty() {
            return;
        }
        match self.read(1, Some(BLOCK)).await {
            Ok(entries) => self.buffer.extend(entries),
            Err(err) => {
                tracing::warn!(error = %err, queue = %self.spec.queue, "Redis unreachable; retrying");
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        }
    }
}
