//! RabbitMQ dispatch (lapin). The store stays the source of truth: a message only announces a
//! job id, the worker claims it through the store, and the message is acknowledged after the
//! outcome is recorded.
//!
//! Topology (declared idempotently on every connection, names prefixed by `prefix`):
//! - exchange `{prefix}.jobs` (direct, durable), routing key = PySaaS queue name;
//! - one durable queue `{prefix}.{queue}` per PySaaS queue, with `x-max-priority` and
//!   `x-dead-letter-exchange = {prefix}.dlx`;
//! - `{prefix}.dlx` (fanout) → `{prefix}.dead`, where undecodable messages end up.
//!
//! Publishing uses a small pool of long-lived channels in confirm mode; a batch is published
//! persistent and its confirms awaited together. Consumers keep a window of twice what their
//! worker holds (running and claimed ahead) unacknowledged.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use pysaas_jobs::{Envelope, Job, MAX_PRIORITY};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::{Ack, ConsumerSpec, Delivery, Dispatcher, JobConsumer, JobStore, Result, StoreError};

/// Publishing channels kept open per process.
pub const PUBLISH_CHANNELS: usize = 4;
/// How long connecting may take before the broker counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause of an idle consumer that cannot reach the broker before it tries again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

fn broker(err: impl fmt::Display) -> StoreError {
    StoreError::Broker(err.to_string())
}

/// RabbitMQ settings.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// `amqp://user:pass@host:5672/vhost`.
    pub url: String,
    /// Prefix of every exchange and queue name (isolates deployments and tests).
    pub prefix: String,
}

/// The RabbitMQ dispatcher.
#[derive(Clone)]
pub struct AmqpDispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    config: AmqpConfig,
    store: Arc<dyn JobStore>,
    connection: Mutex<Option<Arc<Connection>>>,
    publishers: Mutex<Vec<Channel>>,
    next_publisher: AtomicUsize,
    declared: StdMutex<HashSet<String>>,
}

impl fmt::Debug for AmqpDispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpDispatcher")
            .field("prefix", &self.inner.config.prefix)
            .finish_non_exhaustive()
    }
}

impl AmqpDispatcher {
    /// A dispatcher; it connects lazily and reconnects by itself.
    pub fn new(config: AmqpConfig, store: Arc<dyn JobStore>) -> Self {
        AmqpDispatcher {
            inner: Arc::new(Inner {
                config,
                store,
                connection: Mutex::new(None),
                publishers: Mutex::new(Vec::new()),
                next_publisher: AtomicUsize::new(0),
                declared: StdMutex::new(HashSet::new()),
            }),
        }
    }

    /// The RabbitMQ queue that carries PySaaS queue `queue`.
    pub fn queue_name(&self, queue: &str) -> String {
        format!("{}.{queue}", self.inner.config.prefix)
    }

    /// The dead-letter queue.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.inner.config.prefix)
    }

    /// The exchange jobs are published to.
    pub fn exchange(&self) -> String {
        format!("{}.jobs", self.inner.config.prefix)
    }

    /// Declares the exchanges and the queue for `queue` (idempotent).
    pub async fn declare(&self, queue: &str) -> Result<()> {
        let channel = self.inner.publisher().await?;
        self.inner.declare(&channel, queue).await
    }

    /// Opens a channel on the current connection (tools and tests).
    pub async fn channel(&self) -> Result<Channel> {
        self.inner
            .connection()
            .await?
            .create_channel()
            .await
            .map_err(broker)
    }
}

impl Inner {
    async fn connection(&self) -> Result<Arc<Connection>> {
        let mut current = self.connection.lock().await;
        if let Some(conn) = current.as_ref() {
            if conn.status().connected() {
                return Ok(conn.clone());
            }
        }
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        let conn = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(&self.config.url, properties),
        )
        .await
        .map_err(|_| broker("connecting to RabbitMQ timed out"))?
        .map_err(broker)?;
        tracing::info!(prefix = %self.config.prefix, "connected to RabbitMQ");
        let conn = Arc::new(conn);
        *current = Some(conn.clone());
        self.publishers.lock().await.clear();
        if let Ok(mut declared) = self.declared.lock() {
            declared.clear();
        }
        Ok(conn)
    }

    /// Forgets the connection after an error, so that the next call reconnects.
    async fn reset(&self) {
        if let Some(conn) = self.connection.lock().await.take() {
            let _ = conn.close(320, "resetting after an error").await;
        }
    }

    async fn publisher(&self) -> Result<Channel> {
        let conn = self.connection().await?;
        let mut pool = self.publishers.lock().await;
        pool.retain(|c| c.status().connected());
        if pool.len() < PUBLISH_CHANNELS {
            let channel = conn.create_channel().await.map_err(broker)?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(broker)?;
            pool.push(channel);
        }
        let i = self.next_publisher.fetch_add(1, Ordering::Relaxed) % pool.len();
        Ok(pool[i].clone())
    }

    /// Arguments of every job queue (they must match on every declaration).
    fn queue_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert(
            "x-max-priority".into(),
            AMQPValue::ShortShortUInt(u8::try_from(MAX_PRIORITY).unwrap_or(9) + 1),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(format!("{}.dlx", self.config.prefix).into()),
        );
        args
    }

    async fn declare(&self, channel: &Channel, queue: &str) -> Result<()> {
        let prefix = &self.config.prefix;
        let known = self
            .declared
            .lock()
            .map(|d| d.contains(queue))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let (exchange, dlx, dead) = (
            format!("{prefix}.jobs"),
            format!("{prefix}.dlx"),
            format!("{prefix}.dead"),
        );
        channel
            .exchange_declare(
                &exchange,
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        channel
            .exchange_declare(&dlx, ExchangeKind::Fanout, durable, FieldTable::default())
            .await
            .map_err(broker)?;
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(&dead, durable_queue, FieldTable::default())
            .await
            .map_err(broker)?;
        channel
            .queue_bind(
                &dead,
                &dlx,
                "",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        let name = format!("{prefix}.{queue}");
        channel
            .queue_declare(&name, durable_queue, self.queue_args())
            .await
            .map_err(broker)?;
        channel
            .queue_bind(
                &name,
                &exchange,
                queue,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        if let Ok(mut declared) = self.declared.lock() {
            declared.insert(queue.to_owned());
        }
        Ok(())
    }

    async fn publish(&self, jobs: &[Job]) -> Result<()> {
        let channel = self.publisher().await?;
        let exchange = format!("{}.jobs", self.config.prefix);
        let mut confirms = Vec::with_capacity(jobs.len());
        for job in jobs {
            self.declare(&channel, &job.queue).await?;
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(job.id.to_string().into())
                .with_priority(u8::try_from(job.priority.clamp(0, MAX_PRIORITY)).unwrap_or(0));
            let confirm = channel
                .basic_publish(
                    &exchange,
                    &job.queue,
                    BasicPublishOptions::default(),
                    &Envelope::of(job).encode(),
                    properties,
                )
                .await
                .map_err(broker)?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            match confirm.await.map_err(broker)? {
                Confirmation::Ack(_) | Confirmation::NotRequested => {}
                Confirmation::Nack(_) => return Err(broker("RabbitMQ refused a message (nack)")),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Dispatcher for AmqpDispatcher {
    fn name(&self) -> &'static str {
        "amqp"
    }

    async fn dispatch(&self, jobs: &[Job]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        if let Err(err) = self.inner.publish(jobs).await {
            self.inner.reset().await;
            return Err(err);
        }
        Ok(())
    }

    async fn backlog(&self, queue: &str) -> Result<Option<u64>> {
        let channel = self.inner.publisher().await?;
        self.inner.declare(&channel, queue).await?;
        // Declaring again (same arguments) answers with the count of ready messages.
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(
                &format!("{}.{queue}", self.inner.config.prefix),
                durable,
                self.inner.queue_args(),
            )
            .await;
        match declared {
            Ok(q) => Ok(Some(u64::from(q.message_count()))),
            Err(err) => {
                self.inner.reset().await;
                Err(broker(err))
            }
        }
    }

    async fn close(&self) {
        if let Some(conn) = self.inner.connection.lock().await.take() {
            let _ = conn.close(200, "PySaaS shutting down").await;
        }
    }

    async fn consumer(&self, spec: ConsumerSpec) -> Result<Box<dyn JobConsumer>> {
        // Messages stay unacknowledged until their job's outcome is recorded, so the window covers
        // what the worker holds (running and claimed ahead) plus as many on their way to the
        // store or waiting to be claimed: twice its capacity. The window is fixed when the
        // consumer subscribes (RabbitMQ applies `basic.qos` to consumers created after it).
        let prefetch = u16::try_from(spec.capacity.saturating_mul(2).max(1)).unwrap_or(u16::MAX);
        Ok(Box::new(AmqpConsumer {
            inner: self.inner.clone(),
            prefetch,
            spec,
            channel: None,
            stream: None,
            buffer: VecDeque::new(),
        }))
    }
}

struct AmqpConsumer {
    inner: Arc<Inner>,
    spec: ConsumerSpec,
    prefetch: u16,
    channel: Option<Channel>,
    stream: Option<lapin::Consumer>,
    buffer: VecDeque<lapin::message::Delivery>,
}

impl fmt::Debug for AmqpConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConsumer")
            .field("queue", &self.spec.queue)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

struct AmqpAck(lapin::acker::Acker);

impl fmt::Debug for AmqpAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AmqpAck")
    }
}

#[async_trait]
impl Ack for AmqpAck {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.0.ack(BasicAckOptions::default()).await.map_err(broker)
    }
}

impl AmqpConsumer {
    fn drop_stream(&mut self) {
        self.stream = None;
        self.channel = None;
        // Unacked deliveries of a dead channel are redelivered by RabbitMQ.
        self.buffer.clear();
    }

    async fn ensure(&mut self) -> Result<()> {
        let healthy = self
            .channel
            .as_ref()
            .is_some_and(|c| c.status().connected())
            && self.stream.is_some();
        if healthy {
            return Ok(());
        }
        self.drop_stream();
        let channel = match self.channel.clone() {
            Some(channel) => channel,
            None => {
                let channel = self
                    .inner
                    .connection()
                    .await?
                    .create_channel()
                    .await
                    .map_err(broker)?;
                self.inner.declare(&channel, &self.spec.queue).await?;
                channel
            }
        };
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(broker)?;
        if self.stream.is_none() {
            let queue = format!("{}.{}", self.inner.config.prefix, self.spec.queue);
            let tag = format!("{}-{}", self.spec.worker_id, self.spec.queue);
            let stream = channel
                .basic_consume(
                    &queue,
                    &tag,
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(broker)?;
            self.stream = Some(stream);
        }
        self.channel = Some(channel);
        Ok(())
    }

    /// Moves a delivery from the stream into the buffer; `None` when the stream has ended.
    fn take(&mut self, next: Option<lapin::Result<lapin::message::Delivery>>) -> bool {
        match next {
            Some(Ok(delivery)) => {
                self.buffer.push_back(delivery);
                true
            }
            Some(Err(err)) => {
                tracing::warn!(error = %err, queue = %self.spec.queue, "RabbitMQ consumer failed; reconnecting");
                self.drop_stream();
                false
            }
            None => {
                tracing::warn!(queue = %self.spec.queue, "RabbitMQ consumer was cancelled; reconnecting");
                self.drop_stream();
                false
            }
        }
    }
}

#[async_trait]
impl JobConsumer for AmqpConsumer {
    async fn poll(&mut self, max: usize) -> Result<Vec<Delivery>> {
        self.ensure().await?;
        while self.buffer.len() < max {
            let Some(stream) = self.stream.as_mut() else {
                break;
            };
            match stream.next().now_or_never() {
                Some(next) => {
                    if !self.take(next) {
                        break;
                    }
                }
                None => break,
            }
        }
        let n = self.buffer.len().min(max);
        let mut ids = Vec::with_capacity(n);
        let mut deliveries = Vec::with_capacity(n);
        for delivery in self.buffer.drain(..n) {
            match Envelope::decode(&delivery.data) {
                Ok(envelope) => {
                    ids.push(envelope.id);
                    deliveries.push((envelope.id, delivery));
                }
                Err(err) => {
                    let preview =
                        String::from_utf8_lossy(&delivery.data[..delivery.data.len().min(200)])
                            .into_owned();
                    tracing::warn!(error = %err, queue = %self.spec.queue, body = %preview, "undecodable message sent to the dead-letter queue");
                    let requeue = BasicNackOptions {
                        requeue: false,
                        multiple: false,
                    };
                    if let Err(err) = delivery.acker.nack(requeue).await {
                        tracing::warn!(error = %err, "nack failed");
                    }
                }
            }
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let claimed = match self
            .inner
            .store
            .claim_ids(&ids, &self.spec.worker_id, self.spec.lease)
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                for (_, delivery) in deliveries {
                    let _ = delivery
                        .acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            multiple: false,
                        })
                        .await;
                }
                return Err(err);
            }
        };
        let mut by_id: std::collections::HashMap<Uuid, Job> =
            claimed.into_iter().map(|j| (j.id, j)).collect();
        let mut out = Vec::with_capacity(by_id.len());
        for (id, delivery) in deliveries {
            match by_id.remove(&id) {
                Some(job) => out.push(Delivery {
                    job,
                    ack: Some(Box::new(AmqpAck(delivery.acker))),
                }),
                None => {
                    // Already claimed, finished or cancelled: a duplicate delivery, nothing to run.
                    tracing::debug!(job_id = %id, "message for a job that is not queued; acknowledged");
                    let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                }
            }
        }
        crate::store::sort_claimed_deliveries(&mut out);
        Ok(out)
    }

    async fn pause(&mut self) {
        // Closing the channel hands its unacknowledged deliveries back to the queue (acks of
        // jobs claimed from it fail harmlessly: their messages are redelivered and found done).
        if let Some(channel) = self.channel.take() {
            let _ = channel.close(200, "queue paused").await;
        }
        self.drop_stream();
    }

    async fn wait(&mut self) {
        if !self.buffer.is_empty() {
            return;
        }
        if let Err(err) = self.ensure().await {
            tracing::warn!(error = %err, queue = %self.spec.queue, "RabbitMQ unreachable; retrying");
            self.inner.reset().await;
            tokio::time::sleep(RECONNECT_PAUSE).await;
            return;
        }
        if let Some(stream) = self.stream.as_mut() {
            let next = stream.next().await;
            self.take(next);
        }
    }
}
