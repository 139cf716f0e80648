//! Conformance of the scheduler's store operations (schedules, leader leases with fencing
//! tokens, pruning): each test runs against SQLite and against PostgreSQL.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pysaas_brokers::testing::TestDb;
use pysaas_brokers::{Completion, FireResult, JobFilter, Lease, ScheduleFire};
use pysaas_jobs::schedule::tick_key;
use pysaas_jobs::{
    JobState, KindRegistry, Misfire, Outcome, Schedule, ScheduleSource, ScheduleSpec,
};
use serde_json::json;

const TTL: Duration = Duration::from_secs(30);

fn spec(name: &str) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        cron: "* * * * * *".into(),
        timezone: "UTC".into(),
        kind: "system.noop".into(),
        payload: json!({}),
        queue: None,
        priority: None,
        max_attempts: None,
        misfire: Misfire::CatchUp,
        catch_up_max: 10,
        paused: false,
    }
}

/// The one kind these schedules fire.
fn registry() -> KindRegistry {
    let mut registry = KindRegistry::new();
    registry.register::<pysaas_jobs::kinds::system::Noop>();
    registry
}

async fn create(db: &TestDb, name: &str) -> Schedule {
    let spec = spec(name);
    let cron = spec.validate(&registry()).unwrap();
    let now = db.store.now().await.unwrap();
    let schedule = Schedule::new("acme", spec, ScheduleSource::Api, &cron, now);
    assert!(db.store.create_schedule(&schedule).await.unwrap());
    db.store.get_schedule("acme", name).await.unwrap().unwrap()
}

fn fire_for(schedule: &Schedule, ticks: &[DateTime<Utc>]) -> ScheduleFire {
    let registry = registry();
    let through = ticks.last().copied().unwrap_or(schedule.fired_through);
    ScheduleFire {
        tenant_id: schedule.tenant_id.clone(),
        name: schedule.spec.name.clone(),
        version: schedule.version,
        previous_fired_through: schedule.fired_through,
        fired_through: through,
        next_fire_at: Some(through + chrono::Duration::seconds(1)),
        jobs: ticks
            .iter()
            .map(|t| schedule.spec.new_job(&registry, "acme", *t).unwrap())
            .collect(),
    }
}

async fn acme_jobs(db: &TestDb) -> Vec<pysaas_jobs::Job> {
    db.store
        .list(&JobFilter {
            tenant_id: "acme".into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn leases_elect_one_holder_and_fence_the_old_one(db: TestDb) {
    let s = &db.store;
    let a = s
        .acquire_lease("scheduler", "a", TTL)
        .await
        .unwrap()
        .expect("a leads");
    assert!(
        s.acquire_lease("scheduler", "b", TTL)
            .await
            .unwrap()
            .is_none(),
        "b follows"
    );
    let renewed = s
        .acquire_lease("scheduler", "a", TTL)
        .await
        .unwrap()
        .expect("a renews");
    assert_eq!(renewed.token, a.token, "a renewal keeps the token");
    assert!(renewed.expires_at >= a.expires_at);

    // A clean release hands over at once, with a new token.
    s.release_lease(&renewed).await.unwrap();
    let b = s
        .acquire_lease("scheduler", "b", TTL)
        .await
        .unwrap()
        .expect("b leads");
    assert_eq!(b.token, a.token + 1);
    assert!(s
        .acquire_lease("scheduler", "a", TTL)
        .await
        .unwrap()
        .is_none());
    // A stale release does nothing.
    s.release_lease(&renewed).await.unwrap();
    assert_eq!(
        s.current_lease("scheduler").await.unwrap().unwrap().holder,
        "b"
    );

    // A lease that is not renewed lapses, and the next holder gets a new token.
    let short = Duration::from_millis(300);
    let b = s.acquire_lease("other", "b", short).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let c = s
        .acquire_lease("other", "c", TTL)
        .await
        .unwrap()
        .expect("lapsed lease taken");
    assert_eq!(c.token, b.token + 1);
}

async fn a_tick_is_recorded_once_even_with_two_leaders(db: TestDb) {
    let s = &db.store;
    let schedule = create(&db, "every-second").await;
    let tick = schedule
        .spec
        .cron_schedule()
        .unwrap()
        .next_after(schedule.fired_through)
        .unwrap();
    let old: Lease = s
        .acquire_lease("scheduler", "old", Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();

    match s
        .fire_schedule(&old, fire_for(&schedule, &[tick]))
        .await
        .unwrap()
    {
        FireResult::Fired(jobs) => {
            assert_eq!(jobs.len(), 1);
            assert!(jobs[0].created);
            assert_eq!(jobs[0].job.run_at, tick);
            assert_eq!(
                jobs[0].job.idempotency_key.as_deref(),
                Some(tick_key("every-second", tick).as_str())
            );
        }
        other => panic!("expected a fire, got {other:?}"),
    }
    // The same evaluation again (a retry, a second leader that read the same row) is stale.
    assert_eq!(
        s.fire_schedule(&old, fire_for(&schedule, &[tick]))
            .await
            .unwrap(),
        FireResult::Stale
    );

    // The old leader's lease lapses and a new one takes over: the old token writes nothing.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let new = s
        .acquire_lease("scheduler", "new", TTL)
        .await
        .unwrap()
        .unwrap();
    assert!(new.token > old.token);
    let fresh = s
        .get_schedule("acme", "every-second")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fresh.fired_through, tick);
    assert_eq!(fresh.last_fire_at, Some(tick));
    let next = tick + chrono::Duration::seconds(1);
    assert_eq!(
        s.fire_schedule(&old, fire_for(&fresh, &[next]))
            .await
            .unwrap(),
        FireResult::NotLeader
    );

    // Even a fire that passes every check cannot make a second job for a tick: its key exists.
    let mut replay = fresh.clone();
    replay.fired_through = fresh.fired_through;
    let mut fire = fire_for(&replay, &[tick, next]);
    fire.fired_through = next;
    match s.fire_schedule(&new, fire).await.unwrap() {
        FireResult::Fired(jobs) => {
            assert_eq!(
                jobs.iter().map(|j| j.created).collect::<Vec<_>>(),
                vec![false, true]
            );
        }
        other => panic!("expected a fire, got {other:?}"),
    }
    let jobs = acme_jobs(&db).await;
    assert_eq!(jobs.len(), 2, "one job per tick");
    let last = s
        .get_schedule("acme", "every-second")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.fired_through, next);
    assert_eq!(
        last.last_job_id,
        Some(jobs.iter().find(|j| j.run_at == next).unwrap().id)
    );
}

async fn schedules_update_only_from_the_version_read(db: TestDb) {
    let s = &db.store;
    let first = create(&db, "report").await;
    assert!(
        !s.create_schedule(&first).await.unwrap(),
        "names are unique per tenant"
    );
    let mut other_tenant = first.clone();
    other_tenant.tenant_id = "globex".into();
    assert!(s.create_schedule(&other_tenant).await.unwrap());
    assert_eq!(s.list_schedules("acme").await.unwrap().len(), 1);

    let mut changed = first.clone();
    changed
        .apply_spec(
            ScheduleSpec {
                cron: "0 0 * * * *".into(),
                ..first.spec.clone()
            },
            Utc::now(),
        )
        .unwrap();
    let updated = s.update_schedule(&changed).await.unwrap().expect("updated");
    assert_eq!(updated.version, first.version + 1);
    assert_eq!(updated.spec.cron, "0 0 * * * *");
    assert_eq!(updated.next_fire_at, changed.next_fire_at);
    // A writer holding the old version loses.
    assert!(s.update_schedule(&changed).await.unwrap().is_none());

    let mut paused = updated.clone();
    paused.set_paused(true, Utc::now()).unwrap();
    let paused = s.update_schedule(&paused).await.unwrap().unwrap();
    assert!(paused.spec.paused && paused.next_fire_at.is_none());
    let far = Utc::now() + chrono::Duration::days(3650);
    assert!(s
        .due_schedules(far, 10)
        .await
        .unwrap()
        .iter()
        .all(|d| d.spec.name != "report" || d.tenant_id != "acme"));

    assert!(s.delete_schedule("acme", "report").await.unwrap());
    assert!(!s.delete_schedule("acme", "report").await.unwrap());
    assert!(s.get_schedule("globex", "report").await.unwrap().is_some());
}

async fn pruning_deletes_only_old_finished_jobs(db: TestDb) {
    let s = &db.store;
    let registry = registry();
    let spec = spec("x");
    let mut jobs = Vec::new();
    for i in 0..4 {
        let mut job = spec.new_job(&registry, "acme", Utc::now()).unwrap();
        job.idempotency_key = Some(format!("k{i}"));
        jobs.push(job);
    }
    s.insert(jobs).await.unwrap();
    let claimed = s.claim("default", 3, "w", TTL).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let outcomes = [
        Outcome::Succeeded { result: None },
        Outcome::Dead {
            error: "boom".into(),
        },
        Outcome::Cancelled {
            error: "stop".into(),
        },
    ];
    let completions: Vec<Completion> = claimed
        .iter()
        .zip(outcomes)
        .map(|(j, outcome)| Completion {
            id: j.id,
            tenant_id: j.tenant_id.clone(),
            attempt: 1,
            outcome,
            detail: None,
        })
        .collect();
    s.complete(&completions).await.unwrap();

    let past = Utc::now() - chrono::Duration::hours(1);
    assert_eq!(
        s.prune_finished(JobState::Succeeded, past, 100)
            .await
            .unwrap(),
        0,
        "too recent"
    );
    let future = Utc::now() + chrono::Duration::seconds(5);
    assert_eq!(
        s.prune_finished(JobState::Succeeded, future, 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.prune_finished(JobState::Dead, future, 100).await.unwrap(),
        1
    );
    let left: Vec<JobState> = acme_jobs(&db).await.iter().map(|j| j.state).collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&JobState::Cancelled) && left.contains(&JobState::Queued));
}

pysaas_brokers::each_store!(
    leases_elect_one_holder_and_fence_the_old_one,
    a_tick_is_recorded_once_even_with_two_leaders,
    schedules_update_only_from_the_version_read,
    pruning_deletes_only_old_finished_jobs,
);
