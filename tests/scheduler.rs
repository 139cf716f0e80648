//! Scheduler process tests on PostgreSQL (a fresh schema per test): real `pysaas scheduler` and
//! `pysaas worker` children, leaders killed with SIGKILL, schedulers stopped for a while.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pysaas_brokers::testing::TestDb;
use pysaas_brokers::{JobFilter, Lease};
use pysaas_jobs::{Job, JobState, NewJob, DEFAULT_TENANT};
use serde_json::json;

/// Child processes, killed when the test ends however it ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn config_file(toml: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(toml.as_bytes()).unwrap();
    file
}

fn spawn(db: &TestDb, role: &str, config: &tempfile::NamedTempFile, env: &[(&str, &str)]) -> Child {
    let args = ["--config", config.path().to_str().unwrap(), role];
    common::pysaas_process(db, &args, env)
}

fn kill9(child: &mut Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

fn sigterm(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid inside a holder id `host-pid-suffix`.
fn holder_pid(holder: &str) -> u32 {
    holder.rsplit('-').nth(1).unwrap().parse().unwrap()
}

async fn lease(db: &TestDb) -> Option<Lease> {
    db.store.current_lease("scheduler").await.unwrap()
}

/// Waits for a live lease whose token is above `above`.
async fn leader_after(db: &TestDb, above: i64, within: Duration) -> Lease {
    let deadline = Instant::now() + within;
    loop {
        if let Some(lease) = lease(db).await {
            if lease.token > above && lease.expires_at > Utc::now() {
                return lease;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader after token {above} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn all_jobs(db: &TestDb) -> Vec<Job> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = db
            .store
            .list(&JobFilter {
                tenant_id: DEFAULT_TENANT.into(),
                limit: 1000,
                before,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else {
            return common::own_jobs(out);
        };
        before = Some(last.id);
        out.extend(page);
    }
}

/// Jobs of one schedule by tick (run_at), with how many jobs each tick got.
fn ticks(jobs: &[Job], schedule: &str) -> BTreeMap<DateTime<Utc>, Vec<Job>> {
    let prefix = format!("schedule:{schedule}:");
    let mut out: BTreeMap<DateTime<Utc>, Vec<Job>> = BTreeMap::new();
    for job in jobs {
        if job
            .idempotency_key
            .as_deref()
            .is_some_and(|k| k.starts_with(&prefix))
        {
            out.entry(job.run_at).or_default().push(job.clone());
        }
    }
    out
}

fn lateness(job: &Job) -> Duration {
    (job.created_at - job.run_at)
        .to_std()
        .unwrap_or(Duration::ZERO)
}

const EVERY_SECOND: &str = r#"
[[schedules]]
name = "tick"
cron = "* * * * * *"
kind = "system.noop"
misfire = "catch_up"
catch_up_max = 100
"#;

/// Three schedulers, an every-second schedule for 20 s, the leader killed with SIGKILL twice:
/// every tick of the window has exactly one job, each failover takes under 5 s, and the ticks
/// missed during a failover are caught up once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_fire_every_tick_once_across_two_leader_kills() {
    let db = TestDb::postgres().await;
    let config = config_file(EVERY_SECOND);
    let mut children = Children(
        (0..3)
            .map(|_| spawn(&db, "scheduler", &config, &[]))
            .collect(),
    );
    let started = Instant::now();

    let mut leader = leader_after(&db, 0, Duration::from_secs(20)).await;
    let mut failovers = Vec::new();
    for kill_at in [Duration::from_secs(6), Duration::from_secs(13)] {
        tokio::time::sleep(kill_at.saturating_sub(started.elapsed())).await;
        let pid = holder_pid(&leader.holder);
        let index = children
            .0
            .iter()
            .position(|c| c.id() == pid)
            .expect("leader is one of ours");
        let killed_at = Utc::now();
        let mut dead = children.0.remove(index);
        kill9(&mut dead);
        let next = leader_after(&db, leader.token, Duration::from_secs(10)).await;
        assert_ne!(next.holder, leader.holder);
        let failover = (next.acquired_at - killed_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        assert!(
            failover < Duration::from_secs(5),
            "failover took {failover:?}"
        );
        failovers.push(failover);
        leader = next;
    }
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(started.elapsed())).await;
    // Let the last ticks be recorded, then stop the survivor cleanly.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let survivor = children.0.first_mut().unwrap();
    sigterm(survivor);

    let schedule = db
        .store
        .get_schedule(DEFAULT_TENANT, "tick")
        .await
        .unwrap()
        .unwrap();
    let jobs = all_jobs(&db).await;
    let by_tick = ticks(&jobs, "tick");
    let first = *by_tick.keys().next().expect("some ticks fired");
    let last = *by_tick.keys().last().unwrap();
    assert!(last <= schedule.fired_through);
    let window = (last - first).num_seconds();
    assert!(window >= 18, "the run covered {window} s of ticks");
    let mut tick = first;
    while tick <= last {
        let n = by_tick.get(&tick).map_or(0, Vec::len);
        assert_eq!(n, 1, "tick {tick} has {n} jobs");
        tick += chrono::Duration::seconds(1);
    }
    assert_eq!(jobs.len() as i64, window + 1, "no job outside the ticks");
    // The ticks that fell in the failovers were enqueued late, by the next leader's catch-up.
    let caught_up = by_tick
        .values()
        .flatten()
        .filter(|j| lateness(j) > Duration::from_secs(1))
        .count();
    assert!(
        caught_up >= 2,
        "{caught_up} ticks were caught up after failovers {failovers:?}"
    );
    eprintln!(
        "failovers: {failovers:?}; {} ticks, {caught_up} caught up",
        window + 1
    );
}

fn misfire_config() -> tempfile::NamedTempFile {
    let mut toml = String::new();
    for (name, misfire) in [
        ("skip", "skip"),
        ("once", "fire_once"),
        ("catchup", "catch_up"),
    ] {
        toml.push_str(&format!(
            "[[schedules]]\nname = \"{name}\"\ncron = \"* * * * * *\"\nkind = \"system.noop\"\n\
             misfire = \"{misfire}\"\ncatch_up_max = 3\n\n"
        ));
    }
    config_file(&toml)
}

/// A scheduler down for 6 s: on restart `skip` drops the missed ticks, `fire_once` fires the
/// latest of them once, `catch_up` fires the most recent `catch_up_max` (3).
///
/// The three schedules share one cron expression and are evaluated in the same passes with the
/// same clock, so their on-time ticks are the same set: the policies differ exactly by the missed
/// ticks each adds on top of `skip`. (Comparing jobs' lateness with the threshold instead would
/// flake on a tick evaluated just under the threshold but inserted just over it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misfire_policies_after_a_scheduler_was_down() {
    let db = TestDb::postgres().await;
    let config = misfire_config();
    let env = [("PYSAAS_MISFIRE_THRESHOLD_MS", "1000")];
    let mut children = Children(vec![spawn(&db, "scheduler", &config, &env)]);
    leader_after(&db, 0, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sigterm(&mut children.0[0]);
    let down_from = Utc::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    children.0.push(spawn(&db, "scheduler", &config, &env));
    leader_after(&db, 1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sigterm(&mut children.0[1]);

    let jobs = all_jobs(&db).await;
    let after_stop = |name: &str| -> std::collections::BTreeSet<DateTime<Utc>> {
        let by_tick = ticks(&jobs, name);
        assert!(
            by_tick.values().all(|j| j.len() == 1),
            "{name}: one job per tick"
        );
        assert!(
            by_tick.len() >= 4,
            "{name} ran before and after the downtime: {}",
            by_tick.len()
        );
        by_tick.into_keys().filter(|t| *t > down_from).collect()
    };
    let (skip, once, catchup) = (
        after_stop("skip"),
        after_stop("once"),
        after_stop("catchup"),
    );
    assert!(
        skip.is_subset(&once) && skip.is_subset(&catchup),
        "{skip:?} {once:?} {catchup:?}"
    );
    let once_extra: Vec<_> = once.difference(&skip).copied().collect();
    let catchup_extra: Vec<_> = catchup.difference(&skip).copied().collect();
    assert_eq!(
        once_extra.len(),
        1,
        "fire_once fires one missed tick: {once_extra:?}"
    );
    assert_eq!(
        catchup_extra.len(),
        3,
        "catch_up fires catch_up_max missed ticks: {catchup_extra:?}"
    );
    assert_eq!(
        once_extra.last(),
        catchup_extra.last(),
        "fire_once fires the most recent missed tick"
    );
    // The extra ticks are consecutive, older than every tick skip fired after the restart, and
    // were enqueued late (by the restarted scheduler).
    assert!(catchup_extra
        .windows(2)
        .all(|w| w[1] - w[0] == chrono::Duration::seconds(1)));
    let first_skip_after = skip.iter().next().copied().unwrap();
    assert!(catchup_extra.iter().all(|t| *t < first_skip_after));
    let late_job = jobs
        .iter()
        .find(|j| {
            j.run_at == once_extra[0]
                && j.idempotency_key
                    .as_deref()
                    .is_some_and(|k| k.starts_with("schedule:once:"))
        })
        .unwrap();
    assert!(lateness(late_job) > Duration::from_secs(1), "{late_job:?}");
}

fn delayed(run_in: Duration) -> NewJob {
    NewJob {
        max_attempts: 3,
        run_at: Utc::now() + chrono::Duration::from_std(run_in).unwrap(),
        timeout_ms: 10_000,
        ..NewJob::new(DEFAULT_TENANT, "system.noop", "default", json!({}))
    }
}

async fn wait_for_state(db: &TestDb, id: uuid::Uuid, state: JobState, within: Duration) -> Job {
    let deadline = Instant::now() + within;
    loop {
        let job = db.store.get(DEFAULT_TENANT, id).await.unwrap().unwrap();
        if job.state == state {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} still {} after {within:?}",
            job.state
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Delayed jobs start on time, never early, and survive a worker's SIGKILL: the next leader
/// promotes them. (Lateness on an idle system is measured by `pysaas bench delayed`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_jobs_start_on_time_and_survive_restarts() {
    let db = TestDb::postgres().await;
    let config = config_file("");
    let soon = delayed(Duration::from_secs(2));
    let later = delayed(Duration::from_secs(6));
    db.store
        .insert(vec![soon.clone(), later.clone()])
        .await
        .unwrap();
    let mut children = Children(vec![spawn(&db, "worker", &config, &[])]);

    let ran = wait_for_state(&db, soon.id, JobState::Succeeded, Duration::from_secs(15)).await;
    let started = ran.started_at.unwrap();
    assert!(
        started >= soon.run_at,
        "started early: {started} < {}",
        soon.run_at
    );
    let late = (started - soon.run_at).to_std().unwrap();
    assert!(late < Duration::from_secs(1), "started {late:?} late");

    // The process leading and holding the delayed job dies; a new one takes over.
    kill9(&mut children.0[0]);
    assert_eq!(
        db.store
            .get(DEFAULT_TENANT, later.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        JobState::Scheduled
    );
    children.0.push(spawn(&db, "worker", &config, &[]));
    let ran = wait_for_state(&db, later.id, JobState::Succeeded, Duration::from_secs(20)).await;
    assert!(ran.started_at.unwrap() >= later.run_at);
    assert_eq!(ran.attempts, 1);
}

/// A `pysaas scheduler` with `metrics_listen` exports the leader's queue-depth gauges (what a
/// Kubernetes HPA scales worker pools on) without any API process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_exports_queue_depth_gauges() {
    let db = TestDb::postgres().await;
    let mut queued: Vec<NewJob> = (0..3).map(|_| delayed(Duration::ZERO)).collect();
    for job in &mut queued {
        job.queue = "billing".into();
    }
    queued.push(NewJob {
        queue: "billing".into(),
        ..delayed(Duration::from_secs(3600))
    });
    db.store.insert(queued).await.unwrap();
    let port = common::free_port();
    let config = config_file("");
    let listen = format!("127.0.0.1:{port}");
    let _children = Children(vec![spawn(
        &db,
        "scheduler",
        &config,
        &[("PYSAAS_METRICS_LISTEN", listen.as_str())],
    )]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected = [
        "pysaas_scheduler_leader 1",
        "pysaas_queue_depth{queue=\"billing\",state=\"queued\"} 3",
        "pysaas_queue_depth{queue=\"billing\",state=\"scheduled\"} 1",
        "pysaas_queue_depth{queue=\"billing\",state=\"running\"} 0",
    ];
    loop {
        let text = match reqwest::get(format!("http://{listen}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if expected.iter().all(|line| text.lines().any(|l| l == *line)) {
            assert!(text.contains("pysaas_queue_oldest_queued_age_seconds{queue=\"billing\"}"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gauges never showed {expected:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Retention: the leader's pruner deletes finished jobs past their state's retention and keeps
/// the others (here `succeeded` after 1 s, `dead` after the default 7 days).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pruner_applies_per_state_retention() {
    use pysaas_brokers::Completion;
    use pysaas_jobs::Outcome;
    let db = TestDb::postgres().await;
    db.store
        .insert((0..4).map(|_| delayed(Duration::ZERO)).collect())
        .await
        .unwrap();
    let claimed = db
        .store
        .claim("default", 4, "test", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    let completions: Vec<Completion> = claimed
        .iter()
        .enumerate()
        .map(|(i, job)| Completion {
            id: job.id,
            tenant_id: job.tenant_id.clone(),
            attempt: 1,
            outcome: if i < 3 {
                Outcome::Succeeded { result: None }
            } else {
                Outcome::Dead {
                    error: "boom".into(),
                }
            },
            detail: None,
        })
        .collect();
    db.store.complete(&completions).await.unwrap();
    let config = config_file("");
    let _children = Children(vec![spawn(
        &db,
        "scheduler",
        &config,
        &[
            ("PYSAAS_RETAIN_SUCCEEDED_SECS", "1"),
            ("PYSAAS_PRUNE_INTERVAL_MS", "200"),
        ],
    )]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = all_jobs(&db).await;
        if left.len() == 1 {
            assert_eq!(left[0].state, JobState::Dead, "dead jobs are kept 7 days");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "succeeded jobs not pruned: {}",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
