//! Request metrics of the node, and the registry `/metrics` encodes.
//!
//! Every name here (and the runtime's) is what `deploy/grafana/dwcp.json`
//! and `deploy/prometheus/alerts.yml` query; `crates/dwcp/tests/observability.rs`
//! checks that a real node exports each one they use.

use std::sync::{Arc, Mutex, OnceLock};

use dwcp_crypto::trust::TrustManifest;
use dwcp_runtime::{RuntimeMetrics, VersionLabels};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::trust::TrustStore;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    tenant: String,
    app: String,
    version: String,
    class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    tenant: String,
    app: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    tenant: String,
    app: String,
    action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    role: String,
    name: String,
    key_id: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Every metric of the node (the runtime's included), ready to encode.
pub struct NodeMetrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    duration: Family<VersionLabels, Histogram, fn() -> Histogram>,
    rollout_decisions: Family<DecisionLabels, Counter>,
    checkpoints: Family<AppLabels, Counter>,
    checkpoint_failures: Family<AppLabels, Counter>,
    key_expiry: Family<KeyLabels, Gauge>,
    /// Where the key expiry gauges are read from at each encode.
    trust: OnceLock<Arc<TrustStore>>,
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
        let rollout_decisions = Family::<DecisionLabels, Counter>::default();
        let checkpoints = Family::<AppLabels, Counter>::default();
        let checkpoint_failures = Family::<AppLabels, Counter>::default();
        let key_expiry = Family::<KeyLabels, Gauge>::default();
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
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
        registry.register(
            "dwcp_rollout_decisions",
            "Rollout decisions taken after the start (advance, hold, promote, abort, pause, resume, setweight)",
            rollout_decisions.clone(),
        );
        registry.register(
            "dwcp_checkpoints",
            "Checkpoints of stateful apps' keys stored",
            checkpoints.clone(),
        );
        registry.register(
            "dwcp_checkpoint_failures",
            "Checkpoints of stateful apps' keys that could not be taken or stored",
            checkpoint_failures.clone(),
        );
        registry.register(
            "dwcp_key_expiry_timestamp_seconds",
            "When each trusted key in use stops being accepted (Unix seconds); keys without an expiry, revoked or replaced ones are left out",
            key_expiry.clone(),
        );
        registry.register(
            "dwcp_build_info",
            "The node's version, as a label; the value is always 1",
            build_info,
        );
        runtime.register(&mut registry);
        Self {
            registry: Mutex::new(registry),
            requests,
            duration,
            rollout_decisions,
            checkpoints,
            checkpoint_failures,
            key_expiry,
            trust: OnceLock::new(),
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

    /// The handles of one stateful app's checkpoint counters.
    pub fn for_checkpoints(&self, tenant: &str, app: &str) -> CheckpointMetrics {
        let labels = AppLabels {
            tenant: tenant.to_string(),
            app: app.to_string(),
        };
        // Both series exist from the start, at 0: an alert on `increase()`
        // then sees the first failure too.
        CheckpointMetrics {
            stored: self.checkpoints.get_or_create(&labels).clone(),
            failed: self.checkpoint_failures.get_or_create(&labels).clone(),
        }
    }

    /// Counts one rollout decision (`action` as the rollout status names it).
    pub fn record_decision(&self, tenant: &str, app: &str, action: &str) {
        self.rollout_decisions
            .get_or_create(&DecisionLabels {
                tenant: tenant.to_string(),
                app: app.to_string(),
                action: action.to_string(),
            })
            .inc();
    }

    /// Exports the expiry of `trust`'s keys, read again at each encode (a
    /// change to the manifest shows at the next scrape). Only the first
    /// call counts: a node has one trust store.
    pub fn watch_trust(&self, trust: &Arc<TrustStore>) {
        let _ = self.trust.set(trust.clone());
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Under the lock, so that a concurrent scrape never sees the
            // gauges cleared and not yet set again.
            if let Some(trust) = self.trust.get() {
                self.set_key_expiry(&trust.manifest());
            }
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }

    /// Sets one gauge per key that will expire and is still meant to be
    /// used: a revoked key, or one a rotation replaced (its expiry is the
    /// end of its overlap, by design), would only raise false alarms.
    fn set_key_expiry(&self, manifest: &TrustManifest) {
        self.key_expiry.clear();
        for key in &manifest.keys {
            let Some(not_after) = key.not_after else {
                continue;
            };
            let replaced = manifest
                .keys
                .iter()
                .any(|k| k.replaces.as_deref() == Some(key.key_id.as_str()));
            if key.revoked_at.is_some() || replaced {
                continue;
            }
            self.key_expiry
                .get_or_create(&KeyLabels {
                    role: key.role.to_string(),
                    name: key.name.clone(),
                    key_id: key.key_id.clone(),
                })
                .set(i64::try_from(not_after).unwrap_or(i64::MAX));
        }
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

/// One stateful app's checkpoint counters.
#[derive(Clone)]
pub struct CheckpointMetrics {
    stored: Counter,
    failed: Counter,
}

impl CheckpointMetrics {
    /// Counts one checkpoint: stored, or failed.
    pub fn record(&self, stored: bool) {
        if stored {
            self.stored.inc();
        } else {
            self.failed.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_series_are_encoded_with_their_labels() {
        let metrics = NodeMetrics::default();
        metrics.record_decision("demo", "app", "abort");
        metrics.for_checkpoints("demo", "counter").record(false);
        let text = metrics.encode();
        for line in [
            r#"dwcp_rollout_decisions_total{tenant="demo",app="app",action="abort"} 1"#,
            r#"dwcp_checkpoint_failures_total{tenant="demo",app="counter"} 1"#,
            r#"dwcp_checkpoints_total{tenant="demo",app="counter"} 0"#,
            concat!(
                r#"dwcp_build_info{version=""#,
                env!("CARGO_PKG_VERSION"),
                r#""} 1"#
            ),
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn only_keys_that_will_expire_and_are_in_use_get_an_expiry_gauge() {
        use dwcp_crypto::composite::HybridSigningKey;
        use dwcp_crypto::keyfile::KeyRole;
        use dwcp_crypto::root::RootSigningKey;

        let root = RootSigningKey::generate().unwrap();
        let mut manifest = TrustManifest::new(&root.public_key(), 100);
        let mut trust = |name: &str, not_after: Option<u64>| {
            let key = HybridSigningKey::generate().unwrap();
            manifest
                .trust(KeyRole::Publisher, name, key.public_key(), 100, not_after)
                .unwrap()
                .key_id
                .clone()
        };
        let acme = trust("acme", Some(5_000));
        trust("forever", None);
        let lost = trust("lost", Some(6_000));
        let old = trust("old", Some(7_000));
        let new = trust("new", Some(8_000));
        manifest.revoke(&lost, 200, "laptop lost").unwrap();
        let replacing = manifest.keys.iter_mut().find(|k| k.key_id == new).unwrap();
        replacing.replaces = Some(old.clone());

        let metrics = NodeMetrics::default();
        metrics.set_key_expiry(&manifest);
        let text = metrics.encode();
        let expiries: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("dwcp_key_expiry_timestamp_seconds{"))
            .collect();
        assert_eq!(expiries.len(), 2, "{text}");
        for (name, id, at) in [("acme", &acme, 5_000), ("new", &new, 8_000)] {
            let line = format!(
                r#"dwcp_key_expiry_timestamp_seconds{{role="publisher",name="{name}",key_id="{id}"}} {at}"#
            );
            assert!(
                expiries.contains(&line.as_str()),
                "{line} missing from\n{text}"
            );
        }
    }
}
