//! Test helpers: a store on a fresh PostgreSQL schema or SQLite file, removed when dropped (also
//! when the test panics), so that tests run in parallel and leave nothing behind.

use std::path::PathBuf;
use std::sync::Arc;

use crate::store::{PgStore, SqliteStore, StoreConfig};
use crate::JobStore;

/// Where PostgreSQL tests connect (override with `PYSAAS_TEST_DATABASE_URL`).
pub const DEFAULT_TEST_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Where RabbitMQ tests connect (override with `PYSAAS_TEST_AMQP_URL`).
pub const DEFAULT_TEST_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Where Redis tests connect (override with `PYSAAS_TEST_REDIS_URL`).
pub const DEFAULT_TEST_REDIS_URL: &str = "redis://127.0.0.1:6379/0";

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// The PostgreSQL URL tests use.
pub fn pg_url() -> String {
    env_or("PYSAAS_TEST_DATABASE_URL", DEFAULT_TEST_PG_URL)
}

/// The RabbitMQ URL tests use.
pub fn amqp_url() -> String {
    env_or("PYSAAS_TEST_AMQP_URL", DEFAULT_TEST_AMQP_URL)
}

/// The Redis URL tests use.
pub fn redis_url() -> String {
    env_or("PYSAAS_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
}

/// An isolated, migrated store.
#[derive(Debug)]
pub struct TestDb {
    /// The store.
    pub store: Arc<dyn JobStore>,
    /// The same store as its own type, for what only one backend offers (transactions on it).
    pub backend: Backend,
    /// Its URL (`sqlite://…` file, or the PostgreSQL URL).
    pub url: String,
    /// The PostgreSQL schema (empty for SQLite).
    pub schema: String,
    sqlite_dir: Option<PathBuf>,
}

/// Runs async cleanup to the end from a `Drop` (which may run inside a test's runtime, or after
/// it has gone) on a thread and runtime of its own.
fn cleanup_on_own_thread(cleanup: impl std::future::Future<Output = ()> + Send + 'static) {
    let thread = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            runtime.block_on(cleanup);
        }
    });
    let _ = thread.join();
}

/// A test store as its own type.
#[derive(Debug, Clone)]
pub enum Backend {
    /// PostgreSQL.
    Pg(PgStore),
    /// SQLite.
    Sqlite(SqliteStore),
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

impl TestDb {
    /// A store on a fresh schema `t_<uuid>` of the test PostgreSQL database.
    pub async fn postgres() -> Self {
        let schema = unique("t");
        let url = pg_url();
        let mut config = StoreConfig::new(&url);
        config.schema = schema.clone();
        config.max_connections = 8;
        let store = PgStore::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        TestDb::migrated(store.clone(), Backend::Pg(store), url, schema, None).await
    }

    /// A store on a fresh SQLite file in a temporary directory.
    pub async fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(unique("pysaas_test"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let url = format!("sqlite://{}", dir.join("jobs.db").display());
        let store = SqliteStore::connect(&StoreConfig::new(&url))
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        TestDb::migrated(
            store.clone(),
            Backend::Sqlite(store),
            url,
            String::new(),
            Some(dir),
        )
        .await
    }

    async fn migrated<S: JobStore>(
        store: S,
        backend: Backend,
        url: String,
        schema: String,
        sqlite_dir: Option<PathBuf>,
    ) -> Self {
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrate {url}: {e}"));
        TestDb {
            store: Arc::new(store),
            backend,
            url,
            schema,
            sqlite_dir,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.sqlite_dir {
            let _ = std::fs::remove_dir_all(dir);
            return;
        }
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Drop runs inside the test's runtime; do the async cleanup on a thread of its own.
        cleanup_on_own_thread(async move {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .execute(&mut conn)
                    .await;
            }
        });
    }
}

/// Every fact `store`'s outbox holds behind the cursor `consumer`, once all of them are
/// readable (PostgreSQL shows none behind a transaction still running anywhere on the server,
/// another test's for one), within 20 s.
pub async fn recorded_facts(
    store: &dyn JobStore,
    consumer: &str,
) -> Vec<pysaas_jobs::events::Fact> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let pending = store
            .outbox_backlog(consumer)
            .await
            .map_or(0, |b| usize::try_from(b.pending).unwrap_or(usize::MAX));
        let got = store
            .outbox_read(consumer, 10_000)
            .await
            .unwrap_or_default();
        if got.len() >= pending || std::time::Instant::now() > deadline {
            return got.into_iter().map(|e| e.fact).collect();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A unique RabbitMQ name prefix whose exchanges and queues are deleted when dropped.
#[derive(Debug)]
pub struct TestAmqpPrefix {
    /// The prefix (`t<uuid>`).
    pub prefix: String,
    /// PySaaS queues whose RabbitMQ queues to delete.
    pub queues: Vec<String>,
}

impl TestAmqpPrefix {
    /// A fresh prefix; list the PySaaS queues the test uses so that they are deleted after.
    pub fn new(queues: &[&str]) -> Self {
        TestAmqpPrefix {
            prefix: unique("t").replace('_', ""),
            queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        }
    }
}

impl Drop for TestAmqpPrefix {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let queues = self.queues.clone();
        cleanup_on_own_thread(async move {
            use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
            let properties = lapin::ConnectionProperties::default()
                .with_executor(tokio_executor_trait::Tokio::current())
                .with_reactor(tokio_reactor_trait::Tokio);
            let Ok(conn) = lapin::Connection::connect(&amqp_url(), properties).await else {
                return;
            };
            let Ok(channel) = conn.create_channel().await else {
                return;
            };
            for queue in queues
                .iter()
                .map(|q| format!("{prefix}.{q}"))
                .chain([format!("{prefix}.dead")])
            {
                let _ = channel
                    .queue_delete(&queue, QueueDeleteOptions::default())
                    .await;
            }
            for exchange in [format!("{prefix}.jobs"), format!("{prefix}.dlx")] {
                let _ = channel
                    .exchange_delete(&exchange, ExchangeDeleteOptions::default())
                    .await;
            }
            let _ = conn.close(200, "test cleanup").await;
        });
    }
}

/// A unique Redis key prefix whose keys are deleted when dropped.
#[derive(Debug)]
pub struct TestRedisPrefix {
    /// The prefix (`t<uuid>`).
    pub prefix: String,
}

impl TestRedisPrefix {
    /// A fresh prefix.
    pub fn new() -> Self {
        TestRedisPrefix {
            prefix: unique("t").replace('_', ""),
        }
    }
}

impl Default for TestRedisPrefix {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestRedisPrefix {
    fn drop(&mut self) {
        let pattern = format!("{}:*", self.prefix);
        cleanup_on_own_thread(async move {
            let Ok(client) = redis::Client::open(redis_url()) else {
                return;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> =
                    redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
            }
        });
    }
}

/// Declares each listed `async fn(TestDb)` as two tests, `sqlite::<name>` and
/// `postgres::<name>`: one conformance suite for every store.
#[macro_export]
macro_rules! each_store {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test($crate::testing::TestDb::sqlite().await).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test($crate::testing::TestDb::postgres().await).await })*
        }
    };
}

/// The DynamoDB endpoint tests use (the moto server the test script starts).
pub fn dynamodb_url() -> String {
    env_or("PYSAAS_TEST_DYNAMODB_URL", "http://127.0.0.1:4566")
}

/// A DynamoDB profile store on a table of its own, deleted when dropped.
#[derive(Debug)]
pub struct TestDynamo {
    /// The store, its table created.
    pub store: Arc<crate::store::DynamoProfileStore>,
}

impl TestDynamo {
    /// A fresh table `t_<uuid>` on the test endpoint.
    pub async fn new() -> Self {
        use crate::store::ProfileStore;
        let config = crate::store::DynamoConfig {
            endpoint_url: Some(dynamodb_url()),
            region: "us-east-1".into(),
            table: unique("t"),
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
            timeout: std::time::Duration::from_secs(5),
        };
        let store = crate::store::DynamoProfileStore::new(&config)
            .unwrap_or_else(|e| panic!("DynamoDB client: {e}"));
        store
            .prepare_profiles()
            .await
            .unwrap_or_else(|e| panic!("create table at {}: {e}", dynamodb_url()));
        TestDynamo {
            store: Arc::new(store),
        }
    }
}

impl TestDynamo {
    /// Its table's name.
    pub fn table(&self) -> &str {
        self.store.table()
    }
}

impl Drop for TestDynamo {
    fn drop(&mut self) {
        let store = self.store.clone();
        cleanup_on_own_thread(async move {
            let _ = store.delete_table().await;
        });
    }
}

/// A Kafka-protocol broker of the test's own: tansu (`PYSAAS_TEST_TANSU`, which
/// `scripts/test.sh` installs), in memory, behind a TCP forwarder in this process that is also
/// the address it advertises — so every client connection passes the forwarder, and
/// [`TestKafka::set_down`] is a real outage (connections cut, new ones refused) that loses
/// nothing. Stopped when dropped.
#[cfg(feature = "kafka")]
#[derive(Debug)]
pub struct TestKafka {
    /// `127.0.0.1:<port>`: the bootstrap address (the forwarder).
    pub bootstrap: String,
    /// A topic prefix of the test's own.
    pub prefix: String,
    down: tokio::sync::watch::Sender<bool>,
    _broker: tokio::process::Child,
}

#[cfg(feature = "kafka")]
impl TestKafka {
    /// Starts tansu and its forwarder; returns once the broker answers.
    pub async fn start() -> Self {
        let tansu = std::env::var("PYSAAS_TEST_TANSU").unwrap_or_else(|_| {
            format!(
                "{}/.cache/pysaas/tansu/bin/tansu",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        let front = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind the forwarder: {e}"));
        let bootstrap = front
            .local_addr()
            .unwrap_or_else(|e| panic!("forwarder address: {e}"))
            .to_string();
        let back = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("pick a port for tansu: {e}"))
            .to_string();
        let broker = tokio::process::Command::new(&tansu)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://{back}"),
                "--advertised-listener-url",
                &format!("tcp://{bootstrap}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .env("RUST_LOG", "error")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start tansu ({tansu}; scripts/test.sh installs it, or set PYSAAS_TEST_TANSU): {e}")
            });
        let (down, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(forward(front, back.clone(), watch));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while tokio::net::TcpStream::connect(&back).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "tansu did not listen on {back}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        TestKafka {
            bootstrap,
            prefix: format!("{}.", unique("t")),
            down,
            _broker: broker,
        }
    }

    /// Cuts every connection and refuses new ones (`true`), or lets them through again.
    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }

    /// The sink's configuration: this broker, this test's prefix.
    pub fn config(&self) -> crate::stream::kafka::KafkaConfig {
        let mut config = crate::stream::kafka::KafkaConfig::new(self.bootstrap.clone());
        config.topic_prefix = self.prefix.clone();
        config
    }

    /// Every message on `topic`, as `(partition, offset, headers, value)`: each partition read
    /// from its start until nothing more comes for a few seconds. (Not up to the high watermark:
    /// tansu 0.6 reports it as the last batch's base offset + 1, short of its last record.)
    pub async fn read_topic(
        &self,
        topic: &str,
    ) -> Vec<(i32, i64, Vec<(String, Vec<u8>)>, Vec<u8>)> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::Message;
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap_or_else(|e| panic!("reader: {e}"));
        let topic_owned = topic.to_owned();
        tokio::task::block_in_place(move || {
            let metadata = consumer
                .fetch_metadata(Some(&topic_owned), std::time::Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("metadata of {topic_owned}: {e}"));
            let mut assignment = rdkafka::TopicPartitionList::new();
            for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
                assignment
                    .add_partition_offset(&topic_owned, p.id(), rdkafka::Offset::Beginning)
                    .unwrap_or_else(|e| panic!("assign: {e}"));
            }
            consumer
                .assign(&assignment)
                .unwrap_or_else(|e| panic!("assign: {e}"));
            let idle = std::time::Duration::from_secs(3);
            let mut last = std::time::Instant::now();
            let mut out = Vec::new();
            while last.elapsed() < idle {
                let Some(message) = consumer.poll(std::time::Duration::from_millis(200)) else {
                    continue;
                };
                let message = message.unwrap_or_else(|e| panic!("read {topic_owned}: {e}"));
                last = std::time::Instant::now();
                let headers = crate::stream::kafka::headers_of(&message);
                out.push((
                    message.partition(),
                    message.offset(),
                    headers,
                    message.payload().unwrap_or_default().to_vec(),
                ));
            }
            out
        })
    }
}

/// Forwards connections accepted on `front` to `back` while `down` is false.
#[cfg(feature = "kafka")]
async fn forward(
    front: tokio::net::TcpListener,
    back: String,
    down: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let Ok((mut inbound, _)) = front.accept().await else {
            return;
        };
        if *down.borrow() {
            drop(inbound);
            continue;
        }
        let (back, mut down) = (back.clone(), down.clone());
        tokio::spawn(async move {
            let Ok(mut outbound) = tokio::net::TcpStream::connect(&back).await else {
                return;
            };
            tokio::select! {
                _ = down.wait_for(|d| *d) => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
}
