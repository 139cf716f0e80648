//! Transactional enqueue on both stores: the caller's own write and the jobs it causes commit
//! together, or neither remains (rolled back, dropped, or failed part way).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use pysaas_brokers::testing::{Backend, TestDb};
use pysaas_jobs::NewJob;
use serde_json::json;

const LEASE: Duration = Duration::from_secs(30);

fn job(queue: &str) -> NewJob {
    NewJob::new("acme", "system.noop", queue, json!({"order": 1}))
}

/// One backend's steps; `$p1` is its first placeholder (`$1` or `?1`).
macro_rules! steps {
    ($db:expr, $store:expr, $p1:literal) => {{
        let (db, store) = ($db, $store);
        let insert_order = concat!("INSERT INTO orders (id) VALUES (", $p1, ")");
        macro_rules! order {
            ($tx:expr, $id:literal) => {
                sqlx::query(insert_order)
                    .bind($id)
                    .execute($tx.conn())
                    .await
            };
        }
        let count_orders = concat!("SELECT count(*) FROM orders WHERE id = ", $p1);
        let mut tx = store.begin().await.unwrap();
        sqlx::query("CREATE TABLE orders (id TEXT PRIMARY KEY)")
            .execute(tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let orders = |id: &'static str| {
            let store = store.clone();
            async move {
                let mut tx = store.begin().await.unwrap();
                let n: i64 = sqlx::query_scalar(count_orders)
                    .bind(id)
                    .fetch_one(tx.conn())
                    .await
                    .unwrap();
                tx.rollback().await.unwrap();
                n
            }
        };

        // Committed: the order and its job, which then runs.
        let mut tx = store.begin().await.unwrap();
        order!(tx, "o1").unwrap();
        let inserted = tx.enqueue(vec![job("tx")]).await.unwrap();
        let id = inserted[0].job.id;
        let created = tx.commit().await.unwrap();
        assert_eq!(created.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
        assert_eq!(orders("o1").await, 1);
        let claimed = db.store.claim("tx", 10, "w", LEASE).await.unwrap();
        assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);

        // Dropped without a commit: neither.
        let mut tx = store.begin().await.unwrap();
        order!(tx, "o2").unwrap();
        let dropped = tx.enqueue(vec![job("tx")]).await.unwrap()[0].job.id;
        drop(tx);
        assert_eq!(orders("o2").await, 0);
        assert!(db.store.get("acme", dropped).await.unwrap().is_none());

        // The job first, then a write that fails (the order exists): rolled back, no job.
        let mut tx = store.begin().await.unwrap();
        let orphan = tx.enqueue(vec![job("tx")]).await.unwrap()[0].job.id;
        assert!(order!(tx, "o1").is_err(), "a duplicate order is refused");
        tx.rollback().await.unwrap();
        assert!(db.store.get("acme", orphan).await.unwrap().is_none());
        assert!(db
            .store
            .claim("tx", 10, "w", LEASE)
            .await
            .unwrap()
            .is_empty());

        // An idempotency key holds across transactions: the second enqueue finds the first job.
        let keyed = || NewJob {
            idempotency_key: Some("order-o3".into()),
            ..job("tx")
        };
        let mut tx = store.begin().await.unwrap();
        let first = tx.enqueue(vec![keyed()]).await.unwrap()[0].job.id;
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let again = tx.enqueue(vec![keyed()]).await.unwrap();
        assert_eq!((again[0].job.id, again[0].created), (first, false));
        assert!(tx.commit().await.unwrap().is_empty(), "nothing new created");
    }};
}

async fn the_write_and_its_jobs_commit_together(db: TestDb) {
    match db.backend.clone() {
        Backend::Pg(store) => {
            // Not visible to workers before the commit.
            let mut open = store.begin().await.unwrap();
            open.enqueue(vec![job("early")]).await.unwrap();
            assert!(db
                .store
                .claim("early", 10, "w", LEASE)
                .await
                .unwrap()
                .is_empty());
            open.commit().await.unwrap();
            assert_eq!(
                db.store.claim("early", 10, "w", LEASE).await.unwrap().len(),
                1
            );
            steps!(&db, &store, "$1");
        }
        Backend::Sqlite(store) => steps!(&db, &store, "?1"),
    }
}

pysaas_brokers::each_store!(the_write_and_its_jobs_commit_together);
