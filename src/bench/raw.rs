//! Ceilings: the store's own claim and complete statements without the worker runtime, and the
//! bare broker (raw lapin publish+confirm / consume+ack, raw XADD / XREADGROUP / XACK); plus the
//! removal of what the bench created on a broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use pysaas_brokers::JobStore;

/// Claims up to `batch` queued `raw` jobs and records them succeeded, with the store's own
/// statements but without the worker runtime (no handler, task, lease renewal or completer
/// channel), until none is left. Returns how many it completed.
pub(super) async fn raw_loop(store: Arc<dyn JobStore>, batch: usize) -> Result<u64> {
    let mut done = 0u64;
    loop {
        let jobs = store
            .claim("raw", batch, "raw-loop", Duration::from_secs(30))
            .await?;
        if jobs.is_empty() {
            return Ok(done);
        }
        let completions: Vec<pysaas_brokers::Completion> = jobs
            .iter()
            .map(|j| pysaas_brokers::Completion {
                id: j.id,
                tenant_id: j.tenant_id.clone(),
                attempt: j.attempts,
                outcome: pysaas_jobs::Outcome::Succeeded { result: None },
                detail: None,
            })
            .collect();
        done += store.complete(&completions).await?;
    }
}

/// Raw lapin: `n` persistent messages published with confirms (awaited per 1,000), then consumed
/// with a prefetch of `concurrency` and acknowledged one by one. Returns the consume rate.
pub(super) async fn raw_amqp(url: &str, prefix: &str, n: usize, concurrency: usize) -> Result<f64> {
    use futures::StreamExt;
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    let properties = lapin::ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    let conn = lapin::Connection::connect(url, properties).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let queue = format!("{prefix}.raw");
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(&queue, durable, FieldTable::default())
        .await?;
    let body = br#"{"v":1,"id":"00000000-0000-0000-0000-000000000000"}"#;
    let start = Instant::now();
    for chunk in 0..n.div_ceil(1000) {
        let mut confirms = Vec::new();
        for _ in 0..(n - chunk * 1000).min(1000) {
            let props = lapin::BasicProperties::default().with_delivery_mode(2);
            confirms.push(
                channel
                    .basic_publish("", &queue, BasicPublishOptions::default(), body, props)
                    .await?,
            );
        }
        for confirm in confirms {
            confirm.await?;
        }
    }
    println!(
        "raw lapin publish+confirm:  {:>9.0} msgs/s",
        n as f64 / start.elapsed().as_secs_f64()
    );
    let consumer_channel = conn.create_channel().await?;
    consumer_channel
        .basic_qos(
            u16::try_from(concurrency).unwrap_or(u16::MAX),
            BasicQosOptions::default(),
        )
        .await?;
    let mut consumer = consumer_channel
        .basic_consume(
            &queue,
            "raw",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let Some(delivery) = consumer.next().await else {
            break;
        };
        delivery?.ack(BasicAckOptions::default()).await?;
        done += 1;
    }
    let rate = done as f64 / start.elapsed().as_secs_f64();
    let _ = conn.close(200, "bench done").await;
    Ok(rate)
}

/// Raw Redis Streams: `n` entries added with pipelined XADD, then read by one consumer group in
/// batches of `concurrency` and acknowledged with one XACK per batch. Returns the consume rate.
pub(super) async fn raw_redis(
    url: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> Result<f64> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let key = format!("{prefix}:raw");
    let start = Instant::now();
    for chunk in 0..n.div_ceil(1000) {
        let mut pipe = redis::pipe();
        for _ in 0..(n - chunk * 1000).min(1000) {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("env")
                .arg("{}")
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    println!(
        "raw XADD (pipelined):       {:>9.0} msgs/s",
        n as f64 / start.elapsed().as_secs_f64()
    );
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&key)
        .arg("raw")
        .arg("0")
        .query_async::<()>(&mut conn)
        .await?;
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("raw")
            .arg("c")
            .arg("COUNT")
            .arg(concurrency)
            .arg("STREAMS")
            .arg(&key)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        let ids: Vec<String> = reply
            .map(|r| {
                r.keys
                    .into_iter()
                    .flat_map(|k| k.ids)
                    .map(|i| i.id)
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            break;
        }
        redis::cmd("XACK")
            .arg(&key)
            .arg("raw")
            .arg(&ids)
            .query_async::<()>(&mut conn)
            .await?;
        done += ids.len();
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// Removes what the bench created on its broker.
pub(super) async fn cleanup_broker(broker: &str, prefix: &str, queues: &[String]) {
    if broker.starts_with("amqp") {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let properties = lapin::ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        if let Ok(conn) = lapin::Connection::connect(broker, properties).await {
            if let Ok(channel) = conn.create_channel().await {
                let fixed = ["raw", "dead"].map(str::to_owned);
                for queue in queues.iter().chain(fixed.iter()) {
                    let _ = channel
                        .queue_delete(&format!("{prefix}.{queue}"), QueueDeleteOptions::default())
                        .await;
                }
                for exchange in ["jobs", "dlx"] {
                    let _ = channel
                        .exchange_delete(
                            &format!("{prefix}.{exchange}"),
                            ExchangeDeleteOptions::default(),
                        )
                        .await;
                }
            }
            let _ = conn.close(200, "bench done").await;
        }
    } else if broker.starts_with("redis") {
        if let Ok(client) = redis::Client::open(broker) {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{prefix}:*"))
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _ = redis::cmd("DEL")
                        .arg(keys)
                        .query_async::<()>(&mut conn)
                        .await;
                }
            }
        }
    }
}
