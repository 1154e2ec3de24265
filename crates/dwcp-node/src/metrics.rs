//! Request metrics of the node, and the registry `/metrics` encodes.

use std::sync::{Arc, Mutex};

use dwcp_runtime::{RuntimeMetrics, VersionLabels};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    tenant: String,
    app: String,
    version: String,
    class: &'static str,
}

/// Every metric of the node (the runtime's included), ready to encode.
pub struct NodeMetrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    duration: Family<VersionLabels, Histogram, fn() -> Histogram>,
    /// The runtime's own metrics.
    pub runtime: Arc<RuntimeMetrics>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<VersionLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            // 50 µs to about 26 s.
            || Histogram::new(exponential_buckets(50e-6, 2.0, 20)),
        );
        let runtime = Arc::new(RuntimeMetrics::default());
        let mut registry = Registry::default();
        registry.register(
            "dwcp_requests",
            "Requests served, by tenant, app, version and status class",
            requests.clone(),
        );
        registry.register(
            "dwcp_request_duration_seconds",
            "Time from request to response headers",
            duration.clone(),
        );
        runtime.register(&mut registry);
        Self {
            registry: Mutex::new(registry),
            requests,
            duration,
            runtime,
        }
    }
}

impl NodeMetrics {
    /// The handles of one version's request metrics.
    pub fn for_version(&self, labels: &VersionLabels) -> VersionMetrics {
        let class = |class: &'static str| {
            self.requests
                .get_or_create(&RequestLabels {
                    tenant: labels.tenant.clone(),
                    app: labels.app.clone(),
                    version: labels.version.clone(),
                    class,
                })
                .clone()
        };
        VersionMetrics {
            by_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            duration: self.duration.get_or_create(labels).clone(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}

/// One version's request counters and latency histogram.
#[derive(Clone)]
pub struct VersionMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
}

impl VersionMetrics {
    /// Records one response.
    pub fn observe(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(seconds);
    }
}
