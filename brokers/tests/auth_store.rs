//! One conformance suite for the auth store (tenants, users, memberships, API keys, refresh
//! tokens): each test runs against SQLite and against PostgreSQL (a fresh schema per test).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use chrono::{DateTime, Duration as Span, SubsecRound, Utc};
use pysaas_brokers::testing::TestDb;
use pysaas_brokers::{ApiKeyRow, AuthChange, RefreshRow, RefreshUse, TenantRow, UserRow};
use uuid::Uuid;

/// Stores keep microseconds.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn tenant(id: &str) -> TenantRow {
    TenantRow {
        id: id.into(),
        name: format!("Tenant {id}"),
        plan: "free".into(),
        created_at: now(),
    }
}

fn user(email: &str) -> UserRow {
    UserRow {
        id: Uuid::now_v7(),
        email: email.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        failed_logins: 0,
        locked_until: None,
        created_at: now(),
    }
}

fn key(tenant: &str, prefix: &str) -> ApiKeyRow {
    ApiKeyRow {
        id: Uuid::now_v7(),
        tenant_id: tenant.into(),
        prefix: prefix.into(),
        secret_hash: vec![7; 32],
        name: "ci".into(),
        scopes: vec!["jobs:read".into(), "jobs:write".into()],
        created_by: None,
        created_at: now(),
        last_used_at: None,
        revoked_at: None,
    }
}

fn refresh(user: &UserRow, tenant: &str, family: Uuid, hash: u8, ttl: Span) -> RefreshRow {
    RefreshRow {
        id: Uuid::now_v7(),
        family_id: family,
        user_id: user.id,
        tenant_id: tenant.into(),
        token_hash: vec![hash; 32],
        expires_at: now() + ttl,
        used_at: None,
        revoked_at: None,
    }
}

async fn tenants_are_created_once(db: TestDb) {
    let s = &db.store;
    let acme = tenant("acme");
    assert!(s.ensure_tenant(&acme).await.unwrap());
    assert!(!s.ensure_tenant(&tenant("acme")).await.unwrap());
    assert_eq!(s.get_tenant("acme").await.unwrap().unwrap(), acme);
    assert!(s.get_tenant("nobody").await.unwrap().is_none());
}

async fn signup_creates_tenant_user_and_owner_once_per_email(db: TestDb) {
    let s = &db.store;
    let ada = user("ada@example.com");
    assert!(s.signup(&tenant("t_ada"), &ada).await.unwrap());
    // The same email again creates nothing, not even the second tenant.
    assert!(!s
        .signup(&tenant("t_other"), &user("ada@example.com"))
        .await
        .unwrap());
    assert!(s.get_tenant("t_other").await.unwrap().is_none());
    let found = s.user_by_email("ada@example.com").await.unwrap().unwrap();
    assert_eq!(found, ada);
    assert_eq!(s.user_by_id(ada.id).await.unwrap().unwrap(), ada);
    let memberships = s.memberships_of(ada.id).await.unwrap();
    assert_eq!(memberships.len(), 1);
    assert_eq!(
        (
            memberships[0].tenant_id.as_str(),
            memberships[0].role.as_str(),
            memberships[0].email.as_str()
        ),
        ("t_ada", "owner", "ada@example.com")
    );
}

async fn failed_logins_count_lock_and_reset(db: TestDb) {
    let s = &db.store;
    let bob = user("bob@example.com");
    assert!(s.signup(&tenant("t_bob"), &bob).await.unwrap());
    assert_eq!(s.login_failed(bob.id).await.unwrap(), 1);
    assert_eq!(s.login_failed(bob.id).await.unwrap(), 2);
    let until = now() + Span::minutes(15);
    s.lock_user(bob.id, until).await.unwrap();
    let locked = s.user_by_id(bob.id).await.unwrap().unwrap();
    assert_eq!(
        (locked.failed_logins, locked.locked_until),
        (2, Some(until))
    );
    s.login_succeeded(bob.id, "t_bob").await.unwrap();
    let reset = s.user_by_id(bob.id).await.unwrap().unwrap();
    assert_eq!((reset.failed_logins, reset.locked_until), (0, None));
}

async fn memberships_are_set_changed_and_removed(db: TestDb) {
    let s = &db.store;
    let owner = user("owner@example.com");
    let member = user("member@example.com");
    assert!(s.signup(&tenant("t_team"), &owner).await.unwrap());
    assert!(s.signup(&tenant("t_member"), &member).await.unwrap());
    s.set_membership("t_team", member.id, "viewer", "user x")
        .await
        .unwrap();
    s.set_membership("t_team", member.id, "admin", "user x")
        .await
        .unwrap();
    let members = s.members("t_team").await.unwrap();
    let roles: Vec<_> = members
        .iter()
        .map(|m| (m.email.as_str(), m.role.as_str()))
        .collect();
    assert_eq!(
        roles,
        [
            ("owner@example.com", "owner"),
            ("member@example.com", "admin")
        ]
    );
    assert_eq!(s.memberships_of(member.id).await.unwrap().len(), 2);
    assert!(s
        .remove_membership("t_team", member.id, "user x")
        .await
        .unwrap());
    assert!(!s
        .remove_membership("t_team", member.id, "user x")
        .await
        .unwrap());
    assert_eq!(s.members("t_team").await.unwrap().len(), 1);
}

async fn api_keys_are_per_tenant_and_revocation_is_announced(db: TestDb) {
    let s = &db.store;
    s.ensure_tenant(&tenant("acme")).await.unwrap();
    s.ensure_tenant(&tenant("globex")).await.unwrap();
    let mut changes = s.auth_changes();
    let a = key("acme", "pk_acme000001");
    let g = key("globex", "pk_globex0001");
    s.insert_api_key(&a, None).await.unwrap();
    s.insert_api_key(&g, None).await.unwrap();
    // A prefix is unique across tenants.
    assert!(s
        .insert_api_key(&key("globex", "pk_acme000001"), None)
        .await
        .is_err());
    assert_eq!(
        s.api_key_by_prefix("pk_acme000001").await.unwrap().unwrap(),
        a
    );
    assert!(s.api_key_by_prefix("pk_none").await.unwrap().is_none());
    let listed = s.api_keys("acme").await.unwrap();
    assert_eq!(listed, vec![a.clone()]);

    s.touch_api_key(a.id).await.unwrap();
    let touched = s.api_key_by_prefix("pk_acme000001").await.unwrap().unwrap();
    assert!(touched.last_used_at.is_some());

    // Another tenant cannot revoke it; its own tenant can, once.
    assert!(!s.revoke_api_key("globex", a.id, "user x").await.unwrap());
    assert!(s.revoke_api_key("acme", a.id, "user x").await.unwrap());
    assert!(!s.revoke_api_key("acme", a.id, "user x").await.unwrap());
    let revoked = s.api_key_by_prefix("pk_acme000001").await.unwrap().unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(s
        .api_key_by_prefix("pk_globex0001")
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_none());

    // Caches hear of it (PostgreSQL: through NOTIFY, so allow a moment).
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match changes.recv().await {
                Ok(AuthChange::KeyRevoked(prefix)) => break prefix,
                Ok(AuthChange::Reset) => continue,
                Err(err) => panic!("auth changes closed: {err}"),
            }
        }
    })
    .await
    .expect("revocation announced");
    assert_eq!(heard, "pk_acme000001");
    assert!(s.auth_cache_ttl() > Duration::ZERO);
}

async fn refresh_tokens_rotate_once_and_reuse_revokes_the_family(db: TestDb) {
    let s = &db.store;
    let eve = user("eve@example.com");
    assert!(s.signup(&tenant("t_eve"), &eve).await.unwrap());
    let family = Uuid::now_v7();
    let first = refresh(&eve, "t_eve", family, 1, Span::days(30));
    s.insert_refresh(&first).await.unwrap();
    match s.use_refresh(&first.token_hash).await.unwrap() {
        RefreshUse::Rotated(row) => assert_eq!((row.id, row.family_id), (first.id, family)),
        other => panic!("expected a rotation, got {other:?}"),
    }
    let second = refresh(&eve, "t_eve", family, 2, Span::days(30));
    s.insert_refresh(&second).await.unwrap();
    // The used token presented again: theft signal, the whole family goes.
    assert!(matches!(
        s.use_refresh(&first.token_hash).await.unwrap(),
        RefreshUse::Reused(_)
    ));
    assert!(matches!(
        s.use_refresh(&second.token_hash).await.unwrap(),
        RefreshUse::Reused(_)
    ));
    // Unknown and expired tokens are invalid.
    assert_eq!(s.use_refresh(&[9; 32]).await.unwrap(), RefreshUse::Invalid);
    let expired = refresh(&eve, "t_eve", Uuid::now_v7(), 3, Span::seconds(-1));
    s.insert_refresh(&expired).await.unwrap();
    assert_eq!(
        s.use_refresh(&expired.token_hash).await.unwrap(),
        RefreshUse::Invalid
    );
    // An explicit family revocation (logout) ends a family no one reused.
    let other = refresh(&eve, "t_eve", Uuid::now_v7(), 4, Span::days(1));
    s.insert_refresh(&other).await.unwrap();
    s.revoke_family(other.family_id).await.unwrap();
    assert!(matches!(
        s.use_refresh(&other.token_hash).await.unwrap(),
        RefreshUse::Reused(_)
    ));
}

/// With events on, every credential change is an audit fact of its tenant, recorded with the
/// change: ids and roles only, never an email, secret or key name.
async fn credential_changes_are_audit_facts(db: TestDb) {
    let s = &db.store;
    s.set_events_enabled(true).await.unwrap();
    let ada = user("ada@example.com");
    let bob = user("bob@example.com");
    assert!(s.signup(&tenant("t_ada"), &ada).await.unwrap());
    assert!(s.signup(&tenant("t_bob"), &bob).await.unwrap());
    s.set_membership("t_ada", bob.id, "viewer", "user ada")
        .await
        .unwrap();
    s.set_membership("t_ada", bob.id, "viewer", "user ada")
        .await
        .unwrap(); // no change
    s.set_membership("t_ada", bob.id, "admin", "user ada")
        .await
        .unwrap();
    assert_eq!(s.login_failed(bob.id).await.unwrap(), 1);
    s.login_succeeded(bob.id, "t_ada").await.unwrap();
    let k = key("t_ada", "pk_ada0000001");
    s.insert_api_key(&k, Some("key pk_ci0000001"))
        .await
        .unwrap();
    assert!(s.revoke_api_key("t_ada", k.id, "user ada").await.unwrap());
    assert!(!s.revoke_api_key("t_ada", k.id, "user ada").await.unwrap());
    let family = Uuid::now_v7();
    let token = refresh(&bob, "t_ada", family, 5, Span::days(1));
    s.insert_refresh(&token).await.unwrap();
    assert!(matches!(
        s.use_refresh(&token.token_hash).await.unwrap(),
        RefreshUse::Rotated(_)
    ));
    assert!(matches!(
        s.use_refresh(&token.token_hash).await.unwrap(),
        RefreshUse::Reused(_)
    ));
    assert!(s
        .remove_membership("t_ada", bob.id, "user ada")
        .await
        .unwrap());

    let facts = pysaas_brokers::testing::recorded_facts(s.as_ref(), "t").await;
    let seen: Vec<(&str, &str)> = facts
        .iter()
        .map(|f| (f.tenant_id.as_str(), f.event_type.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("t_ada", "pysaas.auth.member_role_changed"),
            ("t_ada", "pysaas.auth.member_role_changed"),
            // Bob belongs to both tenants: each hears of his failure.
            ("t_ada", "pysaas.auth.login_failed"),
            ("t_bob", "pysaas.auth.login_failed"),
            ("t_ada", "pysaas.auth.login_succeeded"),
            ("t_ada", "pysaas.auth.api_key_created"),
            ("t_ada", "pysaas.auth.api_key_revoked"),
            ("t_ada", "pysaas.auth.refresh_reuse_detected"),
            ("t_ada", "pysaas.auth.member_removed"),
        ]
    );
    let bob_subject = format!("users/{}", bob.id);
    assert_eq!(facts[0].subject, bob_subject);
    assert_eq!(
        facts[1].data,
        serde_json::json!({"user_id": bob.id, "role": "admin", "previous_role": "viewer",
                           "by": "user ada"})
    );
    assert_eq!(facts[2].data.to_value()["failed_logins"], 1);
    assert_eq!(facts[5].subject, format!("api-keys/{}", k.id));
    // Made by another key: the fact says which (a key has no user to name).
    assert_eq!(facts[5].data.to_value()["by"], "key pk_ci0000001");
    assert_eq!(facts[7].data.to_value()["family_id"], family.to_string());
    for fact in &facts {
        let text = fact.data.to_string();
        assert!(
            !text.contains("example.com") && !text.contains("pk_ada") && !text.contains("\"ci\""),
            "{text}"
        );
        // Each is a published type whose schema its data fits.
        let events = pysaas_jobs::events::events_of(fact).unwrap();
        assert_eq!(events[0].1.event_type, fact.event_type);
        assert!(pysaas_jobs::events::schema_for_type(&fact.event_type).is_some());
    }
}

pysaas_brokers::each_store!(
    tenants_are_created_once,
    signup_creates_tenant_user_and_owner_once_per_email,
    failed_logins_count_lock_and_reset,
    memberships_are_set_changed_and_removed,
    api_keys_are_per_tenant_and_revocation_is_announced,
    refresh_tokens_rotate_once_and_reuse_revokes_the_family,
    credential_changes_are_audit_facts,
);
