//! The table of apps being served, switched atomically.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    /// A stateful app's keys (`None`: a stateless app).
    pub keyed: Option<Arc<crate::stateful::KeyedApp>>,
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
    /// Stored apps that do not serve (yet), by key: consulted only when a
    /// host has no live app, to answer 503 rather than 404.
    unavailable: Mutex<HashMap<String, Unavailable>>,
}

/// Why a stored app has no live version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The node is still loading it.
    Loading,
    /// Loading it failed (the node's log says why).
    Failed,
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

    /// Why the stored app with key `app.tenant` does not serve, if it is
    /// one that should.
    pub fn unavailable(&self, key: &str) -> Option<Unavailable> {
        self.unavailable_map().get(key).copied()
    }

    /// Marks `tenant/app` as not serving for `why`.
    pub fn set_unavailable(&self, tenant: &str, app: &str, why: Unavailable) {
        self.unavailable_map().insert(key_of(tenant, app), why);
    }

    fn unavailable_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Unavailable>> {
        self.unavailable.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `live` in place of whatever served `tenant/app`.
    pub fn insert(&self, tenant: &str, app: &str, live: Arc<LiveApp>) {
        let key = key_of(tenant, app);
        self.apps.rcu(|apps| {
            let mut apps = HashMap::clone(apps);
            apps.insert(key.clone(), live.clone());
            apps
        });
        // After the insert: a request in between finds one or the other.
        self.unavailable_map().remove(&key);
    }

    /// Stops serving `tenant/app`.
    pub fn remove(&self, tenant: &str, app: &str) {
        let key = key_of(tenant, app);
        self.unavailable_map().remove(&key);
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
