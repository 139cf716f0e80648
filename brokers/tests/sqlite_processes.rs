//! Two SQLite stores on one file, as a `pysaas api` and a `pysaas worker` process are: a change
//! made through one is announced to the other's listeners (as "any tenant"), and a store's own
//! changes are announced by tenant only.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use pysaas_brokers::store::{SqliteStore, StoreConfig, ANY_TENANT};
use pysaas_brokers::testing::TestDb;
use pysaas_brokers::JobStore;
use pysaas_jobs::NewJob;
use serde_json::json;
use tokio::sync::broadcast::error::TryRecvError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_changes_are_announced() {
    let db = TestDb::sqlite().await;
    let other = SqliteStore::connect(&StoreConfig::new(&db.url))
        .await
        .unwrap();
    let mut changes = db.store.changes();
    // The watcher's first reading.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let job = || NewJob::new("acme", "system.noop", "q", json!({}));

    other.insert(vec![job()]).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(1), changes.recv())
        .await
        .expect("announced within a second")
        .unwrap();
    assert_eq!(seen, ANY_TENANT);

    // Our own insert: by tenant, and not taken for another process's.
    db.store.insert(vec![job()]).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(1), changes.recv())
        .await
        .expect("announced")
        .unwrap();
    assert_eq!(seen, "acme");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        matches!(changes.try_recv(), Err(TryRecvError::Empty)),
        "nothing else announced"
    );
}
