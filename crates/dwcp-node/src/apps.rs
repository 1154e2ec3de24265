//! The table of apps being served, switched atomically.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use dwcp_release::analysis::ArmStats;
use dwcp_runtime::AppVersion;
use tokio::sync::Semaphore;

use crate::host::key_of;
use crate::metrics::VersionMetrics;
use crate::tenants::TenantGate;

/// One version as the ingress serves it: the version, its Prometheus
/// metrics and the totals a rollout's analysis reads.
#[derive(Clone)]
pub struct Arm {
    /// The version.
    pub version: Arc<AppVersion>,
    /// Its request metrics, resolved once rather than per request.
    pub metrics: VersionMetrics,
    /// Its errors and latencies since the current rollout began.
    pub stats: Arc<ArmCounter>,
}

impl Arm {
    /// An arm for `version` with fresh analysis totals.
    pub fn new(version: Arc<AppVersion>, metrics: VersionMetrics) -> Self {
        Self {
            version,
            metrics,
            stats: Arc::default(),
        }
    }

    /// The version's name.
    pub fn name(&self) -> &str {
        &self.version.labels().version
    }
}

/// A version rolling out, with its share of users.
#[derive(Clone)]
pub struct Canary {
    /// The version.
    pub arm: Arm,
    /// Its share of users, in basis points.
    pub weight_bp: u32,
    /// Salts the users' buckets: each rollout splits users afresh.
    pub salt: String,
}

/// An app as the ingress sees it: the versions that serve and its
/// concurrency slots. Immutable: a deploy or a rollout's step builds a new
/// one and swaps it in, so a request in flight finishes on the version it
/// started with.
#[derive(Clone)]
pub struct LiveApp {
    /// The stable version: every request but the canary's share.
    pub stable: Arm,
    /// The version rolling out, if a rollout splits traffic now.
    pub canary: Option<Canary>,
    /// The version before the stable one, kept warm: `dwcp rollout undo`
    /// switches back to it at once; `x-dwcp-version` reaches it.
    pub previous: Option<Arm>,
    /// How a request names its user for the split.
    pub users: Arc<crate::release::UserKeyRule>,
    /// What counts as a conversion, while an experiment runs.
    pub conversion: Option<Arc<dwcp_store::ConversionRule>>,
    /// An experiment over a flag's variants: which users to count where.
    pub flag_experiment: Option<Arc<FlagExperiment>>,
    /// Why the version a rollout or experiment splits toward is not live
    /// (it failed to load): the next look ends the rollout or experiment.
    pub canary_error: Option<Arc<str>>,
    /// One permit per request that may run at once.
    pub slots: Arc<Semaphore>,
    /// The quota of the app's tenant, shared with its other apps.
    pub tenant: Arc<TenantGate>,
    /// A stateful app's keys (`None`: a stateless app).
    pub keyed: Option<Arc<crate::stateful::KeyedApp>>,
}

impl LiveApp {
    /// The stable version.
    pub fn version(&self) -> &Arc<AppVersion> {
        &self.stable.version
    }

    /// The live arm named `version` (stable, canary or previous), if any.
    pub fn arm(&self, version: &str) -> Option<&Arm> {
        std::iter::once(&self.stable)
            .chain(self.canary.as_ref().map(|c| &c.arm))
            .chain(self.previous.as_ref())
            .find(|arm| arm.name() == version)
    }
}

/// A running experiment over two variants of a flag, with each variant's
/// users (control first).
pub struct FlagExperiment {
    /// The flag.
    pub flag: String,
    /// The control variant.
    pub control: String,
    /// The treatment variant.
    pub treatment: String,
    /// When it started: tells this experiment from a later one.
    pub started_at: u64,
    /// The control's and the treatment's users.
    pub counters: [Arc<ArmCounter>; 2],
}

/// Errors and latencies of one version, summed for a rollout's analysis,
/// and its conversions for an experiment's.
#[derive(Default)]
pub struct ArmCounter {
    stats: Mutex<ArmStats>,
    /// An experiment's users: those exposed and those converted.
    users: Mutex<ExperimentUsers>,
    /// Users and conversions already added to the stored experiment.
    flushed: Mutex<(u64, u64)>,
}

/// Distinct users of one version in an experiment.
#[derive(Default)]
struct ExperimentUsers {
    exposed: HashSet<u64>,
    converted: HashSet<u64>,
}

impl ArmCounter {
    /// Records one response: a 5xx (traps answer 500) is an error.
    pub fn record(&self, status: u16, seconds: f64) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.record(status >= 500, seconds * 1e3);
    }

    /// Records that `user` saw this version, and whether this response
    /// converted (an experiment's goal).
    pub fn expose(&self, user: u64, converted: bool) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users.exposed.insert(user);
        if converted {
            users.converted.insert(user);
        }
    }

    /// The totals so far.
    pub fn totals(&self) -> ArmStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Users exposed and converted since the last call: what the stored
    /// experiment has yet to add.
    pub fn unflushed(&self) -> (u64, u64) {
        let (exposed, converted) = {
            let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            (users.exposed.len() as u64, users.converted.len() as u64)
        };
        let mut flushed = self.flushed.lock().unwrap_or_else(|e| e.into_inner());
        let delta = (
            exposed.saturating_sub(flushed.0),
            converted.saturating_sub(flushed.1),
        );
        *flushed = (exposed, converted);
        delta
    }
}

impl Arm {
    /// Records one response in the version's metrics, its analysis totals
    /// (unless a tester's header routed it) and the app's recent activity.
    pub fn observe(&self, status: u16, seconds: f64, routed: crate::release::Routed) {
        self.metrics.observe(status, seconds);
        if routed == crate::release::Routed::Split {
            self.stats.record(status, seconds);
        }
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

    /// The live apps whose rollout splits traffic (or warms a version).
    pub fn rolling_out(&self) -> Vec<Arc<LiveApp>> {
        self.apps
            .load()
            .values()
            .filter(|app| {
                app.canary.is_some() || app.canary_error.is_some() || app.flag_experiment.is_some()
            })
            .cloned()
            .collect()
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
