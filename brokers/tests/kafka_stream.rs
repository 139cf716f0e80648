//! The Kafka sink and source against a real Kafka-protocol broker (tansu): what the sink
//! publishes the source reads back, in either content mode, keyed by tenant and in order per
//! tenant; a consumer group resumes after what it committed; an outage delays a publish rather
//! than failing it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{SubsecRound, Utc};
use pysaas_brokers::stream::kafka::{KafkaSink, KafkaSource};
use pysaas_brokers::stream::{ContentMode, EventSink, EventSource};
use pysaas_brokers::testing::TestKafka;
use pysaas_jobs::events::{CloudEvent, Stream};
use uuid::Uuid;

fn event(tenant: &str, n: usize) -> CloudEvent {
    CloudEvent {
        specversion: "1.0".into(),
        id: Uuid::now_v7(),
        source: "/pysaas".into(),
        event_type: "pysaas.job.queued".into(),
        subject: format!("jobs/{n}"),
        // What the store records: microseconds (binary mode's `ce_time` carries as much).
        time: Utc::now().trunc_subsecs(6),
        datacontenttype: "application/json".into(),
        tenantid: tenant.into(),
        traceparent: (n % 2 == 0)
            .then(|| "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        data: serde_json::json!({ "n": n, "tenant": tenant }).into(),
    }
}

fn batch(n: usize) -> Vec<(Stream, CloudEvent)> {
    (0..n)
        .map(|i| {
            let tenant = ["acme", "globex", "initech"][i % 3];
            let stream = if i % 4 == 0 {
                Stream::Analytics
            } else {
                Stream::Audit
            };
            (stream, event(tenant, i))
        })
        .collect()
}

/// Reads from `source` until `n` events came.
async fn read_n(source: &mut KafkaSource, n: usize) -> Vec<(Stream, CloudEvent)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} events came",
            got.len()
        );
        for r in source
            .next_batch(500, Duration::from_secs(1))
            .await
            .unwrap()
        {
            got.push((r.stream, r.event));
        }
    }
    got
}

async fn round_trip(mode: ContentMode) {
    let kafka = TestKafka::start().await;
    let mut config = kafka.config();
    config.mode = mode;
    let sink = KafkaSink::new(config.clone()).unwrap();
    sink.ensure_topics().await.unwrap();
    // Creating them again is not an error.
    sink.ensure_topics().await.unwrap();
    let sent = batch(300);
    sink.publish(&sent).await.unwrap();
    // A message that is not an event (another producer's) is passed over, not fatal.
    let foreign: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .create()
        .unwrap();
    let topic = config.topic(Stream::Audit);
    foreign
        .send(
            rdkafka::producer::FutureRecord::to(&topic)
                .key("acme")
                .payload("not an event"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    let mut source = KafkaSource::new(config.clone(), "rollups", &Stream::ALL).unwrap();
    let got = read_n(&mut source, sent.len()).await;
    // Every event, whole (attributes, extensions and data), on its stream's topic.
    let mut want = sent.clone();
    let key = |(_, e): &(Stream, CloudEvent)| e.id;
    want.sort_by_key(key);
    let mut sorted = got.clone();
    sorted.sort_by_key(key);
    assert_eq!(sorted, want);
    // Each tenant's events of a stream come in the order they were published.
    for tenant in ["acme", "globex", "initech"] {
        for stream in Stream::ALL {
            let order = |v: &[(Stream, CloudEvent)]| -> Vec<Uuid> {
                v.iter()
                    .filter(|(s, e)| *s == stream && e.tenantid == tenant)
                    .map(|(_, e)| e.id)
                    .collect()
            };
            assert_eq!(order(&got), order(&sent), "{tenant} on {stream:?}");
        }
    }
    // The key is the tenant id (what keeps a tenant on one partition).
    let raw = kafka.read_topic(&config.topic(Stream::Audit)).await;
    assert!(!raw.is_empty());
    let raw: Vec<_> = raw
        .into_iter()
        .filter(|(_, _, h, v)| pysaas_brokers::stream::kafka::decode(h, v).is_ok())
        .collect();
    for (partition, _, headers, value) in &raw {
        let event = pysaas_brokers::stream::kafka::decode(headers, value).unwrap();
        let same_tenant_elsewhere = raw.iter().any(|(p, _, h, v)| {
            p != partition
                && pysaas_brokers::stream::kafka::decode(h, v)
                    .unwrap()
                    .tenantid
                    == event.tenantid
        });
        assert!(
            !same_tenant_elsewhere,
            "{} spans partitions",
            event.tenantid
        );
        let has = |k: &str| headers.iter().any(|(name, _)| name == k);
        match mode {
            ContentMode::Binary => assert!(has("ce_id") && has("ce_tenantid") && has("ce_type")),
            ContentMode::Structured => assert!(!has("ce_id") && has("content-type")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_round_trips_in_tenant_order() {
    round_trip(ContentMode::Binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_mode_round_trips_in_tenant_order() {
    round_trip(ContentMode::Structured).await;
}

/// A consumer that committed part of the stream and restarts reads on from there: nothing it
/// committed comes again, nothing after it is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_resumes_after_its_commit() {
    let kafka = TestKafka::start().await;
    let config = kafka.config();
    let sink = KafkaSink::new(config.clone()).unwrap();
    sink.ensure_topics().await.unwrap();
    let first: Vec<_> = batch(200)
        .into_iter()
        .map(|(_, e)| (Stream::Audit, e))
        .collect();
    sink.publish(&first).await.unwrap();
    {
        let mut source = KafkaSource::new(config.clone(), "audit", &[Stream::Audit]).unwrap();
        let got = read_n(&mut source, first.len()).await;
        assert_eq!(got.len(), first.len());
        source.commit().await.unwrap();
    }
    let second: Vec<_> = batch(100)
        .into_iter()
        .map(|(_, e)| (Stream::Audit, e))
        .collect();
    sink.publish(&second).await.unwrap();
    let mut source = KafkaSource::new(config.clone(), "audit", &[Stream::Audit]).unwrap();
    let got = read_n(&mut source, second.len()).await;
    let mut ids: Vec<Uuid> = got.iter().map(|(_, e)| e.id).collect();
    ids.sort();
    let mut want: Vec<Uuid> = second.iter().map(|(_, e)| e.id).collect();
    want.sort();
    assert_eq!(ids, want, "exactly the uncommitted events");
    // And nothing more is waiting.
    assert!(source
        .next_batch(100, Duration::from_secs(2))
        .await
        .unwrap()
        .is_empty());
}

/// A publish during an outage waits (the producer retries) and completes once the broker is
/// back, each event delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_during_an_outage_completes_afterwards_once() {
    let kafka = TestKafka::start().await;
    let config = kafka.config();
    let sink = std::sync::Arc::new(KafkaSink::new(config.clone()).unwrap());
    sink.ensure_topics().await.unwrap();
    sink.publish(&batch(10)).await.unwrap();
    kafka.set_down(true);
    let events = batch(500);
    let publishing = tokio::spawn({
        let (sink, events) = (sink.clone(), events.clone());
        async move { sink.publish(&events).await }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !publishing.is_finished(),
        "a publish with the broker down returned"
    );
    kafka.set_down(false);
    tokio::time::timeout(Duration::from_secs(60), publishing)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut source = KafkaSource::new(config, "all", &Stream::ALL).unwrap();
    let got = read_n(&mut source, 510).await;
    let ids: std::collections::HashSet<Uuid> = got.iter().map(|(_, e)| e.id).collect();
    assert_eq!(ids.len(), got.len(), "no event twice");
    assert!(events.iter().all(|(_, e)| ids.contains(&e.id)));
}
