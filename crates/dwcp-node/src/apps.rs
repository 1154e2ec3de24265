//! The table of apps being served, switched atomically.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use dwcp_runtime::AppVersion;
use tokio::sync::Semaphore;

use crate::host::key_of;
use crate::metrics::VersionMetrics;
use crate::tenants::TenantGate;

/// An app as the ingress sees it: the version that serves and its
/// concurrency slots. Immutable: a deploy builds a new one and swaps it in,
/// so a request in flight finishes on the version it started with.
pub struct LiveApp {
    /// The version serving new requests.
    pub version: Arc<AppVersion>,
    /// The version's request metrics, resolved once rather than per request.
    pub metrics: VersionMetrics,
    /// One permit per request that may run at once.
    pub slots: Arc<Semaphore>,
    /// The quota of the app's tenant, shared with its other apps.
    pub tenant: Arc<TenantGate>,
}

impl LiveApp {
    /// Records one response in the app's metrics and recent activity.
    pub fn observe(&self, status: u16, seconds: f64) {
        self.metrics.observe(status, seconds);
        self.version.stats().observe(status, seconds);
    }
}

/// Every live app, keyed by `app.tenant` (the form hosts name them in).
/// Readers take a snapshot with one atomic load; writers (deploys, deletes)
/// copy and swap.
#[derive(Default)]
pub struct AppTable {
    apps: ArcSwap<HashMap<String, Arc<LiveApp>>>,
}

impl AppTable {
    /// The live app with key `app.tenant`, if any.
    pub fn get(&self, key: &str) -> Option<Arc<LiveApp>> {
        self.apps.load().get(key).cloned()
    }

    /// The live `tenant/app`, if any.
    pub fn get_app(&self, tenant: &str, app: &str) -> Option<Arc<LiveApp>> {
        self.get(&key_of(tenant, app))
    }

    /// Puts `live` in place of whatever served `tenant/app`.
    pub fn insert(&self, tenant: &str, app: &str, live: Arc<LiveApp>) {
        let key = key_of(tenant, app);
        self.apps.rcu(|apps| {
            let mut apps = HashMap::clone(apps);
            apps.insert(key.clone(), live.clone());
            apps
        });
    }

    /// Stops serving `tenant/app`.
    pub fn remove(&self, tenant: &str, app: &str) {
        let key = key_of(tenant, app);
        self.apps.rcu(|apps| {
            let mut apps = HashMap::clone(apps);
            apps.remove(&key);
            apps
        });
    }

    /// How many apps are live.
    pub fn len(&self) -> usize {
        self.apps.load().len()
    }

    /// Whether no app is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
