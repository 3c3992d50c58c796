//! Prometheus metrics of the snapshotter daemon, and the HTTP endpoint that serves them.
//!
//! [`Metrics`] owns a prometheus-client registry with the metrics the daemon updates as it
//! works (snapshot operations, remote fetch latencies) and collectors that read counters owned
//! elsewhere at scrape time (per-layer fetch figures, snapshot counts, the chunk cache). The
//! text format is Prometheus 0.0.4, served at `/metrics` by [`serve_http`].
//!
//! ```
//! use std::time::Duration;
//! use lazypull_snapshotter::metrics::Metrics;
//!
//! let metrics = Metrics::new();
//! metrics.observe_operation("prepare", "ok", Duration::from_millis(3));
//! let text = metrics.encode();
//! assert!(text.contains("lazypull_snapshot_operations_total{operation=\"prepare\",code=\"ok\"} 1"));
//! ```

mod http;

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use http::{MetricsServerError, serve_http};

/// Labels of one snapshot operation outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
    code: &'static str,
}

/// Labels of one snapshot operation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationName {
    operation: &'static str,
}

/// Labels of one remote fetch outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchOutcome {
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The daemon's metrics. Shared behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    operations: Family<OperationLabels, Counter>,
    operation_seconds: HistogramFamily<OperationName>,
    fetch_seconds: HistogramFamily<FetchOutcome>,
    fetch_bytes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// 100 µs to about 105 s in factors of 2.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

impl Metrics {
    /// Creates the registry with the metrics the daemon updates itself.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let operations = Family::<OperationLabels, Counter>::default();
        registry.register(
            "lazypull_snapshot_operations",
            "Snapshot API calls by operation and result code",
            operations.clone(),
        );
        let operation_seconds: HistogramFamily<OperationName> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "lazypull_snapshot_operation_duration_seconds",
            "Time to answer a snapshot API call",
            operation_seconds.clone(),
        );
        let fetch_seconds: HistogramFamily<FetchOutcome> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "lazypull_fetch_duration_seconds",
            "Time of one range read from a registry or blob file, by outcome",
            fetch_seconds.clone(),
        );
        let fetch_bytes = Counter::default();
        registry.register(
            "lazypull_fetched_bytes",
            "Compressed bytes read from registries and blob files",
            fetch_bytes.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            operations,
            operation_seconds,
            fetch_seconds,
            fetch_bytes,
        }
    }

    /// Counts one snapshot API call and its latency. `code` is `ok` or the gRPC code name.
    pub fn observe_operation(
        &self,
        operation: &'static str,
        code: &'static str,
        elapsed: Duration,
    ) {
        self.operations
            .get_or_create(&OperationLabels { operation, code })
            .inc();
        self.operation_seconds
            .get_or_create(&OperationName { operation })
            .observe(elapsed.as_secs_f64());
    }

    /// Records one range read of `bytes` bytes (0 when it failed).
    pub fn observe_fetch(&self, ok: bool, bytes: u64, elapsed: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.fetch_seconds
            .get_or_create(&FetchOutcome { outcome })
            .observe(elapsed.as_secs_f64());
        self.fetch_bytes.inc_by(bytes);
    }

    /// Adds a collector that reads its values at each scrape.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.lock().register_collector(collector);
    }

    /// Renders every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.lock();
        if let Err(error) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        {
            // Writing to a String cannot fail; a collector can, and then the scrape is partial.
            tracing::warn!(%error, "failed to encode some metrics");
        }
        text
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
