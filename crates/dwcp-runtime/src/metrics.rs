//! What the runtime counts, in Prometheus form.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::aot::CacheOutcome;

/// Identifies one version of one app in metrics and logs.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app: String,
    /// The version.
    pub version: String,
}

/// Why a guest was stopped.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum TrapKind {
    /// It executed a trapping instruction (`unreachable`, out of bounds, …).
    trap,
    /// Its memory limit refused a growth.
    memory_limit,
    /// Its stack overflowed.
    stack_overflow,
    /// It ran past its execution deadline.
    deadline,
    /// It streamed a response larger than its cap.
    response_too_large,
    /// It returned without ever sending a response.
    no_response,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrapLabels {
    tenant: String,
    app: String,
    version: String,
    kind: TrapKind,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    result: &'static str,
}

/// The runtime's metrics: instantiation time, the AOT cache, live
/// instances and stopped guests.
pub struct RuntimeMetrics {
    instantiate_seconds: Family<VersionLabels, Histogram, fn() -> Histogram>,
    aot_cache: Family<CacheLabels, Counter>,
    traps: Family<TrapLabels, Counter>,
    pub(crate) live_instances: Gauge,
    egress: Family<EgressLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EgressLabels {
    tenant: String,
    app: String,
    outcome: &'static str,
}

impl Default for RuntimeMetrics {
    fn default() -> Self {
        Self {
            instantiate_seconds: Family::new_with_constructor(|| {
                // 1 µs to about 0.5 s.
                Histogram::new(exponential_buckets(1e-6, 2.0, 20))
            }),
            aot_cache: Family::default(),
            traps: Family::default(),
            live_instances: Gauge::default(),
            egress: Family::default(),
        }
    }
}

impl RuntimeMetrics {
    /// Registers every metric under `registry` (prefix `dwcp_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dwcp_instantiate_seconds",
            "Time to instantiate a component for a request",
            self.instantiate_seconds.clone(),
        );
        registry.register(
            "dwcp_aot_cache",
            "AOT cache lookups by result (hit, miss, recompiled)",
            self.aot_cache.clone(),
        );
        registry.register(
            "dwcp_guest_stops",
            "Guests stopped by the node, by reason",
            self.traps.clone(),
        );
        registry.register(
            "dwcp_egress_requests",
            "Guests' outgoing HTTP requests by outcome (sent, denied, failed)",
            self.egress.clone(),
        );
        registry.register(
            "dwcp_live_instances",
            "Component instances alive now",
            self.live_instances.clone(),
        );
    }

    pub(crate) fn record_egress(&self, labels: &VersionLabels, outcome: &'static str) {
        self.egress
            .get_or_create(&EgressLabels {
                tenant: labels.tenant.clone(),
                app: labels.app.clone(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn record_cache(&self, outcome: CacheOutcome) {
        let result = match outcome {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Recompiled => "recompiled",
        };
        self.aot_cache.get_or_create(&CacheLabels { result }).inc();
    }

    /// How many AOT cache lookups ended with `result` (`hit`, `miss`,
    /// `recompiled`).
    pub fn cache_count(&self, result: &'static str) -> u64 {
        self.aot_cache.get_or_create(&CacheLabels { result }).get()
    }

    pub(crate) fn observe_instantiate(&self, labels: &VersionLabels, seconds: f64) {
        self.instantiate_seconds
            .get_or_create(labels)
            .observe(seconds);
    }

    pub(crate) fn record_stop(&self, labels: &VersionLabels, kind: TrapKind) {
        self.traps
            .get_or_create(&TrapLabels {
                tenant: labels.tenant.clone(),
                app: labels.app.clone(),
                version: labels.version.clone(),
                kind,
            })
            .inc();
    }
}
