//! `pysaas autoscale simulate`: replays a load ramp through a worker pool's HorizontalPodAutoscaler
//! as shipped (`infra/k8s/base/autoscaling.yaml`) and prints the replica count over time.
//!
//! Each simulated second, a fluid model of the pool's queue (arrivals, `concurrency` slots per
//! ready replica, jobs of `job_secs`) yields per-state counts and the oldest queued job. Every
//! `gauge_secs` they are published through the real queue gauges ([`QueueGauges::publish`]) into a
//! Prometheus recorder and rendered as the exposition text a scrape returns; every 15 s the HPA
//! controller reads that text as prometheus-adapter's external rules would (`sum by (queue)` of
//! `max by (queue, state)` over queued and running; `max` of the oldest age) and applies the
//! Kubernetes algorithm: per-metric proposals with the 10 % tolerance, the larger of them, the
//! stabilisation windows, the scaling policies' limits per period, min and max. New replicas are
//! ready after `startup_secs`.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use pysaas_brokers::gauges::{QueueGauges, QUEUE_DEPTH, QUEUE_OLDEST_AGE};
use pysaas_brokers::QueueStats;
use pysaas_jobs::JobState;
use serde::Deserialize;

/// What `pysaas autoscale simulate` takes.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// The HPA manifest (one YAML document or many, e.g. `kubectl kustomize infra/k8s/base`).
    #[arg(long)]
    pub hpa: PathBuf,
    /// The worker pool: the HPA named `pysaas-worker-<pool>`, on the queue `<pool>`.
    #[arg(long, default_value = "default")]
    pub pool: String,
    /// Jobs queued at the start.
    #[arg(long, default_value_t = 1_000)]
    pub initial: u64,
    /// Arrivals per second during the surge.
    #[arg(long, default_value_t = 180.0)]
    pub arrival_rate: f64,
    /// How long the surge lasts (s).
    #[arg(long, default_value_t = 180)]
    pub surge_secs: u64,
    /// Slots per replica (the pool's PYSAAS_CONCURRENCY).
    #[arg(long, default_value_t = 20)]
    pub concurrency: u32,
    /// How long one job takes (s).
    #[arg(long, default_value_t = 2.0)]
    pub job_secs: f64,
    /// From a scale-up to the new replica claiming (s).
    #[arg(long, default_value_t = 20)]
    pub startup_secs: u64,
    /// Replicas at the start (default: the HPA's minimum).
    #[arg(long)]
    pub replicas: Option<u32>,
    /// How long to simulate (s).
    #[arg(long, default_value_t = 1_800)]
    pub duration_secs: u64,
    /// Print a line every this many seconds.
    #[arg(long, default_value_t = 30)]
    pub every: u64,
    /// Exit non-zero unless the run scaled up under the backlog, came back to the minimum after,
    /// never went below the minimum or above the maximum, and never flapped.
    #[arg(long)]
    pub check: bool,
}

/// The HPA controller's sync period (kube-controller-manager's default).
const SYNC_SECS: u64 = 15;
/// The controller's tolerance: a usage ratio within 10 % of 1 changes nothing.
const TOLERANCE: f64 = 0.1;
/// How often the queue gauges are published (the scheduler leader's interval).
const GAUGE_SECS: u64 = 5;

// --- the HPA's spec, as far as the algorithm reads it -------------------------------------------

#[derive(Debug, Deserialize)]
struct Manifest {
    kind: String,
    metadata: Metadata,
    #[serde(default)]
    spec: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HpaSpec {
    #[serde(default = "one")]
    min_replicas: u32,
    max_replicas: u32,
    metrics: Vec<MetricSpec>,
    #[serde(default)]
    behavior: Behavior,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
struct MetricSpec {
    #[serde(rename = "type")]
    kind: String,
    external: Option<ExternalMetric>,
}

#[derive(Debug, Clone, Deserialize)]
struct ExternalMetric {
    metric: MetricId,
    target: Target,
}

#[derive(Debug, Clone, Deserialize)]
struct MetricId {
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(rename = "type")]
    kind: String,
    value: Option<Quantity>,
    average_value: Option<Quantity>,
}

/// A Kubernetes quantity as the HPA targets use them: `"50"`, `"500m"`, `"1k"`, or a number.
#[derive(Debug, Clone, Copy)]
struct Quantity(f64);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let parsed = match &v {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => parse_quantity(s),
            _ => None,
        };
        parsed
            .map(Quantity)
            .ok_or_else(|| serde::de::Error::custom(format!("`{v}` is not a quantity")))
    }
}

fn parse_quantity(s: &str) -> Option<f64> {
    let (number, scale) = match s.chars().last()? {
        'm' => (&s[..s.len() - 1], 1e-3),
        'k' => (&s[..s.len() - 1], 1e3),
        'M' => (&s[..s.len() - 1], 1e6),
        _ => (s, 1.0),
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Behavior {
    scale_up: Option<Rules>,
    scale_down: Option<Rules>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rules {
    stabilization_window_seconds: Option<u64>,
    select_policy: Option<String>,
    #[serde(default)]
    policies: Vec<Policy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Policy {
    #[serde(rename = "type")]
    kind: String,
    value: u32,
    period_seconds: u64,
}

impl Rules {
    /// Kubernetes' defaults: up without a window, double or +4 pods per 15 s; down over 300 s,
    /// all pods per 15 s.
    fn default_up() -> Rules {
        Rules {
            stabilization_window_seconds: Some(0),
            select_policy: Some("Max".into()),
            policies: vec![
                Policy {
                    kind: "Percent".into(),
                    value: 100,
                    period_seconds: 15,
                },
                Policy {
                    kind: "Pods".into(),
                    value: 4,
                    period_seconds: 15,
                },
            ],
        }
    }

    fn default_down() -> Rules {
        Rules {
            stabilization_window_seconds: Some(300),
            select_policy: Some("Max".into()),
            policies: vec![Policy {
                kind: "Percent".into(),
                value: 100,
                period_seconds: 15,
            }],
        }
    }
}

/// Reads the HPA `pysaas-worker-<pool>` out of `text` (one or more YAML documents).
fn read_hpa(text: &str, pool: &str) -> Result<HpaSpec> {
    let name = format!("pysaas-worker-{pool}");
    for doc in serde_norway::Deserializer::from_str(text) {
        let Ok(manifest) = Manifest::deserialize(doc) else {
            continue;
        };
        if manifest.kind == "HorizontalPodAutoscaler" && manifest.metadata.name == name {
            let spec = manifest.spec.context("the HPA has no spec")?;
            let spec: HpaSpec = serde_json::from_value(spec)
                .with_context(|| format!("HPA {name}: not an autoscaling/v2 spec"))?;
            if spec.max_replicas < spec.min_replicas.max(1) {
                bail!("HPA {name}: maxReplicas is below minReplicas");
            }
            return Ok(spec);
        }
    }
    bail!("no HorizontalPodAutoscaler named {name} in the manifest")
}

// --- the exported metrics, read as prometheus-adapter's external rules read them ----------------

/// One sample of the exposition text.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(parts) => parts,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k.to_owned(), v.trim_matches('"').to_owned()))
            })
            .collect();
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

/// The external metric `name` for `queue`, as the adapter rules in
/// `infra/k8s/base/prometheus-adapter-rules.yaml` compute it.
fn external_metric(samples: &[Sample], name: &str, queue: &str) -> Option<f64> {
    let of_queue = |s: &&Sample| s.labels.get("queue").map(String::as_str) == Some(queue);
    match name {
        "pysaas_queue_backlog" => {
            // sum by (queue) (max by (queue, state) (depth{state=~"queued|running"}))
            let mut by_state: BTreeMap<&str, f64> = BTreeMap::new();
            for s in samples
                .iter()
                .filter(|s| s.name == QUEUE_DEPTH)
                .filter(of_queue)
            {
                let state = s.labels.get("state").map(String::as_str).unwrap_or("");
                if state == "queued" || state == "running" {
                    let slot = by_state.entry(state).or_insert(f64::MIN);
                    *slot = slot.max(s.value);
                }
            }
            (!by_state.is_empty()).then(|| by_state.values().sum())
        }
        "pysaas_queue_oldest_queued_age_seconds" => samples
            .iter()
            .filter(|s| s.name == QUEUE_OLDEST_AGE)
            .filter(of_queue)
            .map(|s| s.value)
            .reduce(f64::max),
        _ => None,
    }
}

// --- the controller ---------------------------------------------------------------------------

/// The replica count one metric asks for (`replicaCalculator` of kube-controller-manager).
fn proposal(target: &Target, value: f64, current: u32) -> Option<u32> {
    let current_f = f64::from(current.max(1));
    let ratio = match (target.kind.as_str(), target.average_value, target.value) {
        ("AverageValue", Some(avg), _) => value / (avg.0 * current_f),
        ("Value", _, Some(v)) => value / v.0,
        _ => return None,
    };
    if (ratio - 1.0).abs() <= TOLERANCE {
        return Some(current);
    }
    let desired = match target.kind.as_str() {
        // AverageValue: the total over the target per pod.
        "AverageValue" => (value / target.average_value?.0).ceil(),
        _ => (ratio * current_f).ceil(),
    };
    Some(desired.max(0.0) as u32)
}

/// A change of the replica count, for the policies' "per period" limits.
struct ScaleEvent {
    at: u64,
    delta: i64,
}

struct Controller {
    spec: HpaSpec,
    up: Rules,
    down: Rules,
    /// (time, recommendation) of every sync, for the stabilisation windows.
    recommendations: VecDeque<(u64, u32)>,
    events: Vec<ScaleEvent>,
}

impl Controller {
    fn new(spec: HpaSpec) -> Self {
        // As the API server does: what a rule leaves out comes from the defaults.
        let fill = |rules: Option<Rules>, defaults: Rules| match rules {
            None => defaults,
            Some(mut rules) => {
                if rules.policies.is_empty() {
                    rules.policies = defaults.policies;
                }
                rules.stabilization_window_seconds = rules
                    .stabilization_window_seconds
                    .or(defaults.stabilization_window_seconds);
                rules.select_policy = rules.select_policy.or(defaults.select_policy);
                rules
            }
        };
        let up = fill(spec.behavior.scale_up.clone(), Rules::default_up());
        let down = fill(spec.behavior.scale_down.clone(), Rules::default_down());
        Controller {
            spec,
            up,
            down,
            recommendations: VecDeque::new(),
            events: Vec::new(),
        }
    }

    /// One sync at `now`: the replica count to set, from the metrics `read` yields.
    fn sync(&mut self, now: u64, current: u32, read: impl Fn(&str) -> Option<f64>) -> u32 {
        let proposals = self.spec.metrics.iter().filter_map(|m| {
            let external = m.external.as_ref().filter(|_| m.kind == "External")?;
            proposal(&external.target, read(&external.metric.name)?, current)
        });
        // No metric readable: the controller leaves the count alone.
        let Some(desired) = proposals.max() else {
            return current;
        };
        let stabilised = self.stabilise(now, current, desired);
        let limited = self.limit(now, current, stabilised);
        if limited != current {
            self.events.push(ScaleEvent {
                at: now,
                delta: i64::from(limited) - i64::from(current),
            });
        }
        limited
    }

    /// `stabilizeRecommendationWithBehaviors`: up to the lowest recommendation of the up window,
    /// down to the highest of the down window.
    fn stabilise(&mut self, now: u64, current: u32, desired: u32) -> u32 {
        let up_window = self.up.stabilization_window_seconds.unwrap_or(0);
        let down_window = self.down.stabilization_window_seconds.unwrap_or(300);
        let (mut up_rec, mut down_rec) = (desired, desired);
        for &(at, rec) in &self.recommendations {
            if at + up_window > now {
                up_rec = up_rec.min(rec);
            }
            if at + down_window > now {
                down_rec = down_rec.max(rec);
            }
        }
        self.recommendations.push_back((now, desired));
        let keep = up_window.max(down_window);
        while self
            .recommendations
            .front()
            .is_some_and(|&(at, _)| at + keep < now)
        {
            self.recommendations.pop_front();
        }
        current.max(up_rec).min(down_rec)
    }

    /// `convertDesiredReplicasWithBehaviorRate`: the policies' limits, then min and max.
    fn limit(&self, now: u64, current: u32, desired: u32) -> u32 {
        let (lo, hi) = (self.spec.min_replicas.max(1), self.spec.max_replicas);
        let current_i = i64::from(current);
        // Replicas added and removed within a policy's period: its start is the count before them.
        let changed_within = |period: u64, up: bool| -> i64 {
            self.events
                .iter()
                .filter(|e| e.at + period > now && (e.delta > 0) == up)
                .map(|e| e.delta.abs())
                .sum()
        };
        let period_start =
            |period: u64| current_i - changed_within(period, true) + changed_within(period, false);
        let bounded = if desired > current {
            let limits = self.up.policies.iter().map(|p| {
                let start = period_start(p.period_seconds);
                match p.kind.as_str() {
                    "Pods" => start + i64::from(p.value),
                    _ => (start as f64 * (1.0 + f64::from(p.value) / 100.0)).ceil() as i64,
                }
            });
            let limit = match self.up.select_policy.as_deref() {
                Some("Disabled") => Some(current_i),
                Some("Min") => limits.min(),
                _ => limits.max(),
            }
            .unwrap_or(i64::from(desired))
            // A limit never turns a scale-up into a scale-down.
            .max(current_i);
            i64::from(desired).min(limit).min(i64::from(hi))
        } else if desired < current {
            let limits = self.down.policies.iter().map(|p| {
                let start = period_start(p.period_seconds);
                match p.kind.as_str() {
                    "Pods" => start - i64::from(p.value),
                    _ => (start as f64 * (1.0 - f64::from(p.value) / 100.0)) as i64,
                }
            });
            // For scale-down, `Min` is the policy that changes least: the highest limit.
            let limit = match self.down.select_policy.as_deref() {
                Some("Disabled") => Some(current_i),
                Some("Min") => limits.max(),
                _ => limits.min(),
            }
            .unwrap_or(i64::from(desired))
            .min(current_i);
            i64::from(desired).max(limit).max(i64::from(lo))
        } else {
            i64::from(desired)
        };
        bounded.clamp(i64::from(lo), i64::from(hi)) as u32
    }
}

// --- the pool -----------------------------------------------------------------------------------

/// A fluid model of one pool's queue: FIFO arrivals, `slots` running at a time.
struct Pool {
    /// (arrival second, jobs) not yet started, oldest first.
    queued: VecDeque<(u64, f64)>,
    running: f64,
    done: f64,
}

impl Pool {
    fn queued(&self) -> f64 {
        self.queued.iter().map(|(_, n)| n).sum()
    }

    fn step(&mut self, now: u64, arrivals: f64, slots: f64, job_secs: f64) {
        if arrivals > 0.0 {
            self.queued.push_back((now, arrivals));
        }
        let finished = (self.running / job_secs).min(self.running);
        self.running -= finished;
        self.done += finished;
        let mut free = (slots - self.running).max(0.0);
        while free > 1e-9 {
            let Some(front) = self.queued.front_mut() else {
                break;
            };
            let take = front.1.min(free);
            front.1 -= take;
            free -= take;
            self.running += take;
            if front.1 <= 1e-9 {
                self.queued.pop_front();
            }
        }
    }

    fn oldest(&self, now: u64) -> f64 {
        self.queued
            .front()
            .map(|(at, _)| (now - at) as f64)
            .unwrap_or(0.0)
    }
}

/// One printed line of the run.
#[derive(Debug, Clone)]
pub struct Row {
    /// Seconds since the start.
    pub t: u64,
    /// Jobs queued.
    pub queued: u64,
    /// Jobs running.
    pub running: u64,
    /// Oldest queued job (s).
    pub oldest: f64,
    /// Replicas the HPA has set.
    pub replicas: u32,
    /// Replicas claiming (started up).
    pub ready: u32,
}

/// What a run found.
#[derive(Debug)]
pub struct Outcome {
    /// Every second's state.
    pub rows: Vec<Row>,
    /// The HPA's bounds.
    pub min: u32,
    /// The HPA's bounds.
    pub max: u32,
    /// The largest backlog (queued).
    pub peak_queued: u64,
}

impl Outcome {
    /// Direction changes of the replica count (up then down is one).
    pub fn reversals(&self) -> usize {
        let mut last = 0i64;
        let mut reversals = 0;
        for pair in self.rows.windows(2) {
            let d = i64::from(pair[1].replicas) - i64::from(pair[0].replicas);
            if d != 0 {
                if last != 0 && d.signum() != last.signum() {
                    reversals += 1;
                }
                last = d;
            }
        }
        reversals
    }

    /// The properties `--check` asks for; the first one broken, if any.
    pub fn check(&self) -> std::result::Result<(), String> {
        let top = self.rows.iter().map(|r| r.replicas).max().unwrap_or(0);
        let bottom = self.rows.iter().map(|r| r.replicas).min().unwrap_or(0);
        let last = self.rows.last().ok_or("no rows")?;
        if bottom < self.min || top > self.max {
            return Err(format!(
                "replicas left {}..{}: {bottom}..{top}",
                self.min, self.max
            ));
        }
        if top <= self.min {
            return Err(format!(
                "never scaled up (peak backlog {})",
                self.peak_queued
            ));
        }
        if last.queued + last.running > 0 {
            return Err(format!(
                "backlog not drained: {} left",
                last.queued + last.running
            ));
        }
        if last.replicas != self.min {
            return Err(format!(
                "did not come back to the minimum {} (ended at {})",
                self.min, last.replicas
            ));
        }
        if self.reversals() > 1 {
            return Err(format!(
                "flapped: the replica count changed direction {} times",
                self.reversals()
            ));
        }
        Ok(())
    }
}

/// Runs the simulation `args` describes.
pub fn simulate(args: &SimulateArgs) -> Result<Outcome> {
    let text = std::fs::read_to_string(&args.hpa)
        .with_context(|| format!("reading {}", args.hpa.display()))?;
    let spec = read_hpa(&text, &args.pool)?;
    if args.job_secs <= 0.0 || args.concurrency == 0 {
        bail!("--job-secs and --concurrency must be above 0");
    }
    let (min, max) = (spec.min_replicas.max(1), spec.max_replicas);
    let mut controller = Controller::new(spec);
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let gauges = QueueGauges::default();
    let start: DateTime<Utc> = DateTime::UNIX_EPOCH;
    let mut pool = Pool {
        queued: VecDeque::from([(0, args.initial as f64)]),
        running: 0.0,
        done: 0.0,
    };
    let mut replicas = args.replicas.unwrap_or(min).clamp(min, max);
    // Replicas become ready `startup_secs` after they were asked for.
    let mut starting: VecDeque<(u64, u32)> = VecDeque::new();
    let mut ready = replicas;
    let mut exposition = String::new();
    let mut rows = Vec::new();
    let mut peak = 0u64;
    for t in 0..=args.duration_secs {
        while starting.front().is_some_and(|&(at, _)| at <= t) {
            if let Some((_, n)) = starting.pop_front() {
                ready = (ready + n).min(replicas);
            }
        }
        let arrivals = if t > 0 && t <= args.surge_secs {
            args.arrival_rate
        } else {
            0.0
        };
        let slots = f64::from(ready * args.concurrency);
        pool.step(t, arrivals, slots, args.job_secs);
        if t % GAUGE_SECS == 0 {
            let now = start + ChronoDuration::seconds(t as i64);
            let oldest = pool.oldest(t);
            let stats = QueueStats {
                queue: args.pool.clone(),
                counts: BTreeMap::from([
                    (JobState::Queued, pool.queued().round() as i64),
                    (JobState::Running, pool.running.round() as i64),
                ]),
                oldest_queued_at: (pool.queued() >= 0.5)
                    .then(|| now - ChronoDuration::milliseconds((oldest * 1000.0) as i64)),
            };
            metrics::with_local_recorder(&recorder, || gauges.publish(&[stats], now));
            exposition = handle.render();
        }
        if t > 0 && t % SYNC_SECS == 0 {
            let samples = parse_exposition(&exposition);
            let next = controller.sync(t, replicas, |name| {
                external_metric(&samples, name, &args.pool)
            });
            if next > replicas {
                starting.push_back((t + args.startup_secs, next - replicas));
            } else if next < replicas {
                // Scale-in: the drained replicas stop claiming at once.
                ready = ready.min(next);
            }
            replicas = next;
        }
        let queued = pool.queued().round() as u64;
        peak = peak.max(queued);
        rows.push(Row {
            t,
            queued,
            running: pool.running.round() as u64,
            oldest: pool.oldest(t),
            replicas,
            ready,
        });
    }
    Ok(Outcome {
        rows,
        min,
        max,
        peak_queued: peak,
    })
}

/// `pysaas autoscale simulate`: prints the run; with `--check`, fails unless it behaved.
pub fn run(args: &SimulateArgs) -> Result<()> {
    let outcome = simulate(args)?;
    println!(
        "pool {} (HPA pysaas-worker-{}: {}..{} replicas); {} queued at the start, {}/s for {} s, \
         {} slots of {} s jobs per replica, replicas ready {} s after they are asked for",
        args.pool,
        args.pool,
        outcome.min,
        outcome.max,
        args.initial,
        args.arrival_rate,
        args.surge_secs,
        args.concurrency,
        args.job_secs,
        args.startup_secs
    );
    println!(
        "{:>6} {:>8} {:>8} {:>8} {:>9} {:>6}",
        "t(s)", "queued", "running", "oldest", "replicas", "ready"
    );
    let every = args.every.max(1);
    let mut last_printed: Option<&Row> = None;
    for row in &outcome.rows {
        let changed = last_printed.is_some_and(|p| p.replicas != row.replicas);
        if row.t % every == 0 || changed {
            println!(
                "{:>6} {:>8} {:>8} {:>7.0}s {:>9} {:>6}",
                row.t, row.queued, row.running, row.oldest, row.replicas, row.ready
            );
            last_printed = Some(row);
        }
    }
    let top = outcome.rows.iter().map(|r| r.replicas).max().unwrap_or(0);
    println!(
        "peak backlog {} queued; replicas {} → {} → {}; direction changes: {}",
        outcome.peak_queued,
        outcome.rows.first().map_or(0, |r| r.replicas),
        top,
        outcome.rows.last().map_or(0, |r| r.replicas),
        outcome.reversals()
    );
    if args.check {
        outcome
            .check()
            .map_err(|e| anyhow::anyhow!("autoscaling check failed: {e}"))?;
        println!("check passed: scaled up under the backlog, back to the minimum after, within bounds, no flapping");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: &str, v: f64) -> Target {
        Target {
            kind: kind.into(),
            value: (kind == "Value").then_some(Quantity(v)),
            average_value: (kind == "AverageValue").then_some(Quantity(v)),
        }
    }

    #[test]
    fn proposals_follow_the_ratio_with_a_tolerance() {
        // 1000 jobs at 100 per pod: 10 pods, whatever the current count.
        assert_eq!(
            proposal(&target("AverageValue", 100.0), 1000.0, 2),
            Some(10)
        );
        // Within 10 %: unchanged.
        assert_eq!(
            proposal(&target("AverageValue", 100.0), 1050.0, 10),
            Some(10)
        );
        // Value: the ratio times the current count.
        assert_eq!(proposal(&target("Value", 120.0), 480.0, 3), Some(12));
        assert_eq!(proposal(&target("Value", 120.0), 0.0, 3), Some(0));
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("2k"), Some(2000.0));
        assert_eq!(parse_quantity("50"), Some(50.0));
        assert_eq!(parse_quantity("x"), None);
    }

    fn controller(min: u32, max: u32) -> Controller {
        let yaml = format!(
            "kind: HorizontalPodAutoscaler\nmetadata: {{name: pysaas-worker-p}}\nspec:\n  \
             minReplicas: {min}\n  maxReplicas: {max}\n  metrics:\n  - type: External\n    \
             external:\n      metric: {{name: pysaas_queue_backlog}}\n      target: {{type: AverageValue, averageValue: \"100\"}}\n  \
             behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 300\n      selectPolicy: Min\n      \
             policies: [{{type: Percent, value: 25, periodSeconds: 60}}, {{type: Pods, value: 2, periodSeconds: 60}}]\n"
        );
        Controller::new(read_hpa(&yaml, "p").unwrap())
    }

    #[test]
    fn scale_up_is_limited_per_period() {
        let mut c = controller(1, 50);
        // Default up rules: double or +4 per 15 s, whichever is more.
        assert_eq!(c.sync(15, 1, |_| Some(5000.0)), 5);
        assert_eq!(c.sync(30, 5, |_| Some(5000.0)), 10);
        assert_eq!(c.sync(45, 10, |_| Some(5000.0)), 20);
        assert_eq!(c.sync(60, 20, |_| Some(5000.0)), 40);
        assert_eq!(c.sync(75, 40, |_| Some(5000.0)), 50, "max bounds it");
    }

    #[test]
    fn scale_down_waits_for_the_window_and_goes_in_steps() {
        let mut c = controller(1, 20);
        assert_eq!(c.sync(15, 1, |_| Some(2000.0)), 5);
        let mut replicas = 5;
        for t in (30..=300).step_by(15) {
            replicas = c.sync(t, replicas, |_| Some(2000.0));
        }
        assert_eq!(replicas, 20);
        // The backlog is gone: nothing moves until the 300 s window has only low values in it.
        let mut t = 315;
        while t < 600 {
            assert_eq!(c.sync(t, replicas, |_| Some(0.0)), 20, "at {t}");
            t += 15;
        }
        // Then 2 pods or 25 % a minute, whichever is fewer (`Min`: the higher limit).
        let next = c.sync(615, replicas, |_| Some(0.0));
        assert_eq!(next, 18);
        assert_eq!(c.sync(630, next, |_| Some(0.0)), 18, "one step per minute");
        assert_eq!(c.sync(675, 18, |_| Some(0.0)), 16);
    }

    #[test]
    fn no_metric_no_change() {
        let mut c = controller(2, 10);
        assert_eq!(c.sync(15, 4, |_| None), 4);
    }

    #[test]
    fn the_adapter_rule_takes_one_copy_of_each_state() {
        let text = "# TYPE pysaas_queue_depth gauge\n\
            pysaas_queue_depth{queue=\"a\",state=\"queued\"} 70\n\
            pysaas_queue_depth{queue=\"a\",state=\"queued\",instance=\"2\"} 70\n\
            pysaas_queue_depth{queue=\"a\",state=\"running\"} 30\n\
            pysaas_queue_depth{queue=\"a\",state=\"retrying\"} 500\n\
            pysaas_queue_depth{queue=\"b\",state=\"queued\"} 9\n\
            pysaas_queue_oldest_queued_age_seconds{queue=\"a\"} 12.5\n";
        let samples = parse_exposition(text);
        assert_eq!(
            external_metric(&samples, "pysaas_queue_backlog", "a"),
            Some(100.0)
        );
        assert_eq!(
            external_metric(&samples, "pysaas_queue_oldest_queued_age_seconds", "a"),
            Some(12.5)
        );
        assert_eq!(external_metric(&samples, "pysaas_queue_backlog", "c"), None);
    }
}
