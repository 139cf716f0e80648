//! A metrics recorder that only counts finished jobs per queue, so that the bench knows when a
//! drain is done without asking the database (whose polling would slow the drain it measures).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// Succeeded attempts per queue since the process started.
#[derive(Debug, Default)]
pub(crate) struct Finished(Mutex<HashMap<String, Arc<Count>>>);

#[derive(Debug, Default)]
pub(crate) struct Count(AtomicU64);

impl CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl Finished {
    fn count(&self, queue: &str) -> Arc<Count> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(queue.to_owned())
            .or_default()
            .clone()
    }

    /// Jobs of `queue` that succeeded so far.
    pub(crate) fn of(&self, queue: &str) -> u64 {
        self.count(queue).0.load(Ordering::Relaxed)
    }
}

struct Counting(&'static Finished);

impl Recorder for Counting {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        if key.name() != "pysaas_jobs_succeeded_total" {
            return Counter::noop();
        }
        match key.labels().find(|l| l.key() == "queue") {
            Some(queue) => Counter::from_arc(self.0.count(queue.value())),
            None => Counter::noop(),
        }
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Installs the counting recorder (once) and returns its counts.
pub(crate) fn install() -> &'static Finished {
    static FINISHED: OnceLock<&'static Finished> = OnceLock::new();
    FINISHED.get_or_init(|| {
        let finished: &'static Finished = Box::leak(Box::default());
        let _ = metrics::set_global_recorder(Counting(finished));
        finished
    })
}
