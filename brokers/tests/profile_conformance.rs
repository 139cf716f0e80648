//! One conformance suite for profile stores: each test runs against SQLite, PostgreSQL (a
//! fresh schema) and DynamoDB (the moto server, a fresh table).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use pysaas_brokers::testing::{TestDb, TestDynamo};
use pysaas_brokers::{ProfileItem, ProfileStore};
use serde_json::json;
use uuid::Uuid;

/// Runs `$body` (an async fn taking the store) on every backend.
macro_rules! on_every_backend {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let db = TestDb::sqlite().await;
                $body(db.store.clone()).await;
            }

            #[tokio::test]
            async fn postgres() {
                let db = TestDb::postgres().await;
                $body(db.store.clone()).await;
            }

            #[tokio::test]
            async fn dynamodb() {
                let db = TestDynamo::new().await;
                $body(db.store.clone()).await;
            }
        }
    };
}

async fn versions_guard_every_write(s: Arc<dyn ProfileStore>) {
    let user = Uuid::now_v7();
    let now = Utc::now().trunc_subsecs(3);
    assert_eq!(s.get_item(user, ProfileItem::Profile).await.unwrap(), None);
    // Only the first create wins; an update must name the version it read.
    let v1 = json!({"display_name": "Ada", "locale": "en-GB"});
    assert_eq!(
        s.put_item(user, ProfileItem::Profile, &v1, 0, now)
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        s.put_item(user, ProfileItem::Profile, &json!({"x": 1}), 0, now)
            .await
            .unwrap(),
        None,
        "a second create is stale"
    );
    let v2 = json!({"display_name": "Ada L.", "locale": "en-GB", "timezone": "Europe/London"});
    assert_eq!(
        s.put_item(user, ProfileItem::Profile, &v2, 1, now)
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        s.put_item(user, ProfileItem::Profile, &json!({}), 1, now)
            .await
            .unwrap(),
        None,
        "a write against version 1 after version 2 is stale"
    );
    assert_eq!(
        s.put_item(user, ProfileItem::Profile, &json!({}), 7, now)
            .await
            .unwrap(),
        None,
        "a version never written is stale too"
    );
    let stored = s
        .get_item(user, ProfileItem::Profile)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.data, v2);
    assert_eq!(stored.version, 2);
    assert_eq!(stored.updated_at, now);
    // Items are separate: the user's preferences are untouched.
    assert_eq!(
        s.get_item(user, ProfileItem::Preferences).await.unwrap(),
        None
    );
    // Another user's item is another item.
    assert_eq!(
        s.get_item(Uuid::now_v7(), ProfileItem::Profile)
            .await
            .unwrap(),
        None
    );
}
on_every_backend!(versions_guard_every_write, versions_guard_every_write);

async fn one_of_concurrent_writers_wins(s: Arc<dyn ProfileStore>) {
    let user = Uuid::now_v7();
    let now = Utc::now();
    s.put_item(
        user,
        ProfileItem::Preferences,
        &json!({"opt_outs": []}),
        0,
        now,
    )
    .await
    .unwrap();
    let writers = (0..8).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            let data = json!({"opt_outs": [{"channel": "email", "category": "product"}], "n": i});
            s.put_item(user, ProfileItem::Preferences, &data, 1, Utc::now())
                .await
                .unwrap()
        })
    });
    let mut won = 0;
    for w in writers {
        if w.await.unwrap() == Some(2) {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one write against version 1 lands");
    let stored = s
        .get_item(user, ProfileItem::Preferences)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(
        stored.data["opt_outs"],
        json!([{"channel": "email", "category": "product"}]),
        "nested documents round-trip"
    );
}
on_every_backend!(
    one_of_concurrent_writers_wins,
    one_of_concurrent_writers_wins
);

async fn erasing_removes_every_item(s: Arc<dyn ProfileStore>) {
    let (user, other) = (Uuid::now_v7(), Uuid::now_v7());
    let now = Utc::now();
    for item in ProfileItem::ALL {
        s.put_item(user, item, &json!({"a": true}), 0, now)
            .await
            .unwrap();
        s.put_item(other, item, &json!({"b": 1.5}), 0, now)
            .await
            .unwrap();
    }
    assert_eq!(s.erase_items(user).await.unwrap(), 2);
    assert_eq!(s.erase_items(user).await.unwrap(), 0, "again: nothing left");
    for item in ProfileItem::ALL {
        assert_eq!(s.get_item(user, item).await.unwrap(), None);
        assert_eq!(
            s.get_item(other, item).await.unwrap().unwrap().data,
            json!({"b": 1.5})
        );
    }
    // Preparing again (another process starting) changes nothing.
    s.prepare_profiles().await.unwrap();
    assert!(s
        .get_item(other, ProfileItem::Profile)
        .await
        .unwrap()
        .is_some());
}
on_every_backend!(erasing_removes_every_item, erasing_removes_every_item);
