//! Kafka: the relay's sink ([`KafkaSink`], rdkafka's idempotent producer) and the consumers'
//! source ([`KafkaSource`], a consumer group committing by hand).
//!
//! Each stream is one topic (`<prefix>pysaas.audit.v1`, `<prefix>pysaas.analytics.v1`), keyed by
//! tenant id, so a tenant's events land on one partition in the order they were recorded.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use pysaas_jobs::events::{CloudEvent, Stream};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{ContentMode, EventSink, EventSource, Received};
use crate::{Result, StoreError};

/// The structured-mode content type.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// Where and how events go to Kafka.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: `host:port[,host:port…]`.
    pub brokers: String,
    /// Put before each topic name (isolates deployments and tests sharing a cluster).
    pub topic_prefix: String,
    /// Partitions of a topic created at start.
    pub partitions: i32,
    /// Replicas of a topic created at start.
    pub replication: i32,
    /// Binary (headers) or structured (one JSON value) messages.
    pub mode: ContentMode,
    /// How long the producer keeps retrying a message before it reports it failed
    /// (`message.timeout.ms`): an outage shorter than this costs no republishing.
    pub message_timeout: Duration,
}

impl KafkaConfig {
    /// Defaults for the cluster at `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            topic_prefix: String::new(),
            partitions: 3,
            replication: 1,
            mode: ContentMode::Binary,
            message_timeout: Duration::from_secs(300),
        }
    }

    /// The topic of `stream`.
    pub fn topic(&self, stream: Stream) -> String {
        format!("{}{}", self.topic_prefix, stream.topic())
    }

    fn stream_of(&self, topic: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| self.topic(*s) == topic)
    }

    fn client(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &self.brokers);
        client
    }
}

fn kafka_error(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Stream(format!("{what}: {err}"))
}

/// Publishes with the idempotent producer: `acks=all`, `enable.idempotence=true`, so that the
/// producer's own retries neither duplicate nor reorder a partition's messages.
pub struct KafkaSink {
    config: KafkaConfig,
    /// Each stream's topic name, made once.
    topics: Vec<(Stream, String)>,
    producer: std::sync::RwLock<EventProducer>,
    /// One publish at a time: a producer counts the acknowledgements of one batch.
    publishing: tokio::sync::Mutex<()>,
}

/// The producer: rdkafka's own thread polls it and reports each message's fate to [`Acks`].
type EventProducer = ThreadedProducer<Acks>;

/// Counts the acknowledgements of the batch being published (one callback per message, on the
/// producer's poll thread; no future or channel per message). Reports for a batch that was given
/// up on (its publish dropped) are told apart by the batch's number and ignored.
#[derive(Default)]
struct Acks {
    state: Mutex<AckState>,
    answered: tokio::sync::Notify,
}

#[derive(Default)]
struct AckState {
    /// The batch being published.
    batch: usize,
    /// Its messages answered so far.
    answered: usize,
    /// How many it holds, once all are sent: the publish is woken when the last is answered.
    sent: Option<usize>,
    /// Its first failure.
    failed: Option<KafkaError>,
}

impl Acks {
    fn state(&self) -> std::sync::MutexGuard<'_, AckState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a new batch: its number, for each of its messages.
    fn begin(&self) -> usize {
        let mut state = self.state();
        state.batch = state.batch.wrapping_add(1);
        state.answered = 0;
        state.sent = None;
        state.failed = None;
        state.batch
    }

    /// Waits until `sent` messages of the current batch are answered (woken once, by the last
    /// report); the first failure, if any.
    async fn wait(&self, sent: usize) -> std::result::Result<(), KafkaError> {
        loop {
            // A report between this check and the wait leaves a permit: no wake-up is missed.
            {
                let mut state = self.state();
                state.sent = Some(sent);
                if state.answered >= sent {
                    return state.failed.take().map_or(Ok(()), Err);
                }
            }
            self.answered.notified().await;
        }
    }
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: usize) {
        let mut state = self.state();
        if state.batch != batch {
            return;
        }
        state.answered += 1;
        if let Err((err, _)) = result {
            state.failed.get_or_insert_with(|| err.clone());
        }
        let complete = state.sent.is_some_and(|sent| state.answered >= sent);
        drop(state);
        if complete {
            self.answered.notify_one();
        }
    }
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// A producer for `config` (connects lazily).
    pub fn new(config: KafkaConfig) -> Result<Self> {
        let producer = std::sync::RwLock::new(Self::producer(&config)?);
        let topics = Stream::ALL.iter().map(|s| (*s, config.topic(*s))).collect();
        Ok(KafkaSink {
            config,
            topics,
            producer,
            publishing: tokio::sync::Mutex::new(()),
        })
    }

    fn producer(config: &KafkaConfig) -> Result<EventProducer> {
        let mut client = config.client();
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set(
                "message.timeout.ms",
                config.message_timeout.as_millis().to_string(),
            );
        EventProducer::from_config_and_context(&client, Acks::default())
            .map_err(|e| kafka_error("creating the Kafka producer", e))
    }

    /// The current producer (a cheap handle).
    fn current(&self) -> EventProducer {
        self.producer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// After a failed publish: an idempotent producer that hit a fatal error (its sequence
    /// state lost, say) refuses everything from then on, so it is replaced by a new one, and
    /// the batch is published again through that.
    fn replace_if_fatal(&self, failed: &EventProducer) {
        if let Some((code, reason)) = failed.client().fatal_error() {
            tracing::error!(code = ?code, reason = %reason, "the Kafka producer hit a fatal error; replacing it");
            match Self::producer(&self.config) {
                Ok(fresh) => {
                    *self
                        .producer
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                }
                Err(err) => tracing::error!(error = %err, "could not replace the Kafka producer"),
            }
        }
    }

    /// The configuration.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }
}

/// Creates the streams' topics (an existing one is left as it is).
pub async fn ensure_topics(config: &KafkaConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config
        .client()
        .create()
        .map_err(|e| kafka_error("creating the Kafka admin client", e))?;
    let names: Vec<String> = Stream::ALL.iter().map(|s| config.topic(*s)).collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(|e| kafka_error("creating the event topics", e))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created the event topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(kafka_error(&format!("creating topic {name}"), code)),
        }
    }
    Ok(())
}

/// The message value and headers of `event` in `mode` (binary mode's value is the event's data
/// as it is).
fn encode(event: &CloudEvent, mode: ContentMode) -> Result<(Cow<'_, [u8]>, OwnedHeaders)> {
    let mut headers = OwnedHeaders::new_with_capacity(10);
    let value = match mode {
        ContentMode::Binary => {
            // `insert` takes the list and gives it back.
            let mut list = Some(headers);
            event.each_binary_header(|key, value| {
                list = list.take().map(|l| {
                    l.insert(Header {
                        key,
                        value: Some(value),
                    })
                });
            });
            headers = list.unwrap_or_default();
            Cow::Borrowed(event.data.as_str().as_bytes())
        }
        ContentMode::Structured => {
            headers = headers.insert(Header {
                key: "content-type",
                value: Some(STRUCTURED_CONTENT_TYPE),
            });
            Cow::Owned(serde_json::to_vec(event).map_err(|e| {
                StoreError::Corrupt(format!("event {} does not serialize: {e}", event.id))
            })?)
        }
    };
    Ok((value, headers))
}

/// Reads an event from a message in either mode (binary when it has `ce_*` headers).
pub fn decode(headers: &[(String, Vec<u8>)], value: &[u8]) -> Result<CloudEvent> {
    let bad = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("event message: {e}"));
    if headers.iter().any(|(k, _)| k.starts_with("ce_")) {
        CloudEvent::from_binary(headers, value).map_err(|e| bad(&e))
    } else {
        serde_json::from_slice(value).map_err(|e| bad(&e))
    }
}

/// A message's headers as owned `(name, value)` pairs (a header without a value reads as empty).
pub fn headers_of<M: Message>(message: &M) -> Vec<(String, Vec<u8>)> {
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

/// How long to wait when the producer's local queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(10);

#[async_trait]
impl EventSink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn ensure_topics(&self) -> Result<()> {
        ensure_topics(&self.config).await
    }

    async fn publish(&self, events: &[(Stream, CloudEvent)]) -> Result<()> {
        let producer = self.current();
        let published = publish_with(&producer, self, events).await;
        if published.is_err() {
            self.replace_if_fatal(&producer);
        }
        published
    }
}

/// Queues every event on `producer` in order and waits for each acknowledgement.
async fn publish_with(
    producer: &EventProducer,
    sink: &KafkaSink,
    events: &[(Stream, CloudEvent)],
) -> Result<()> {
    let _one_at_a_time = sink.publishing.lock().await;
    let acks = producer.context();
    let batch = acks.begin();
    for (stream, event) in events {
        let topic = sink
            .topics
            .iter()
            .find(|(s, _)| s == stream)
            .map(|(_, t)| t.as_str())
            .unwrap_or_default();
        let (value, headers) = encode(event, sink.config.mode)?;
        let mut record = BaseRecord::with_opaque_to(topic, batch)
            .key(event.tenantid.as_str())
            .payload(value.as_ref())
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((err, _)) => return Err(kafka_error("queueing an event", err)),
            }
        }
    }
    acks.wait(events.len())
        .await
        .map_err(|err| kafka_error("publishing an event", err))
}

/// A consumer group member reading the streams' topics; offsets are committed by hand, after the
/// consumer has stored what it made of a batch.
pub struct KafkaSource {
    config: KafkaConfig,
    /// `None` only once dropped.
    consumer: Option<std::sync::Arc<StreamConsumer>>,
    /// Next offset per (topic, partition) of what was handed out and not yet committed.
    pending: BTreeMap<(String, i32), i64>,
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // Leaving the group waits for the coordinator: off the async threads, when on them.
        // The source's own reference moves into the blocking task (a commit's clone is gone by
        // now: commits are awaited).
        if let (Some(consumer), Ok(handle)) =
            (self.consumer.take(), tokio::runtime::Handle::try_current())
        {
            handle.spawn_blocking(move || drop(consumer));
        }
    }
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Joins consumer group `group` on the topics of `streams` (from the earliest offset when the
    /// group has committed none).
    pub fn new(config: KafkaConfig, group: &str, streams: &[Stream]) -> Result<Self> {
        let consumer: StreamConsumer = config
            .client()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // A member that died without leaving hands its partitions on within 10 s.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create()
            .map_err(|e| kafka_error("creating the Kafka consumer", e))?;
        let topics: Vec<String> = streams.iter().map(|s| config.topic(*s)).collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| kafka_error("subscribing to the event topics", e))?;
        Ok(KafkaSource {
            config,
            consumer: Some(std::sync::Arc::new(consumer)),
            pending: BTreeMap::new(),
        })
    }
}

#[async_trait]
impl EventSource for KafkaSource {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Received>> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while out.len() < max {
            // After the first event, take only what is already there.
            let until = if out.is_empty() {
                deadline
            } else {
                tokio::time::Instant::now() + Duration::from_millis(1)
            };
            let Some(consumer) = &self.consumer else {
                break;
            };
            let message = match tokio::time::timeout_at(until, consumer.recv()).await {
                Err(_) => break,
                // What was read so far goes to the caller (its offsets are pending); the error
                // comes again on the next read if it lasts.
                Ok(Err(err)) if !out.is_empty() => {
                    tracing::warn!(error = %err, "reading the event topics failed mid-batch");
                    break;
                }
                Ok(Err(err)) => return Err(kafka_error("reading the event topics", err)),
                Ok(Ok(message)) => message,
            };
            let topic = message.topic().to_owned();
            let (partition, offset) = (message.partition(), message.offset());
            let headers = headers_of(&message);
            let decoded = decode(&headers, message.payload().unwrap_or_default());
            self.pending.insert((topic.clone(), partition), offset + 1);
            match decoded {
                Ok(event) => {
                    if let Some(stream) = self.config.stream_of(&topic) {
                        out.push(Received { stream, event });
                    }
                }
                // Not an event (a foreign producer, a tombstone): passed over, loudly, so that
                // it cannot stop the consumer or take the batch's other events with it.
                Err(err) => {
                    tracing::error!(topic = %topic, partition, offset, error = %err, "a message that is not an event was skipped")
                }
            }
        }
        Ok(out)
    }

    async fn commit(&mut self) -> Result<()> {
        // A partition handed to another member by a rebalance since it was read is that member's
        // now: committing this member's older offset there would move the group back (its
        // events read twice). Only what is still assigned here is committed.
        if let Some(consumer) = &self.consumer {
            let assigned = consumer
                .assignment()
                .map_err(|e| kafka_error("reading the consumer's assignment", e))?;
            let assigned: std::collections::HashSet<(String, i32)> = assigned
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            self.pending.retain(|key, _| assigned.contains(key));
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &self.pending {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|e| kafka_error("recording offsets", e))?;
        }
        // A synchronous commit waits for the coordinator: off the async threads.
        let Some(consumer) = self.consumer.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
            .await
            .map_err(|e| kafka_error("committing offsets", e))?
            .map_err(|e| kafka_error("committing offsets", e))?;
        self.pending.clear();
        Ok(())
    }
}
