//! Each app's log ring and activity summary, which outlive its versions:
//! a deploy or a restart keeps them, a delete drops them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dwcp_runtime::{AppLog, AppStats};

use crate::host::key_of;

/// The log and stats of one app.
#[derive(Clone)]
pub struct AppTelemetry {
    /// `tenant/app`.
    pub id: String,
    /// Its guests' recent output.
    pub log: Arc<AppLog>,
    /// Its recent requests.
    pub stats: Arc<AppStats>,
}

/// Every app's telemetry, by `app.tenant`.
pub struct TelemetryTable {
    log_bytes: usize,
    apps: Mutex<HashMap<String, AppTelemetry>>,
}

impl TelemetryTable {
    /// An empty table whose logs keep `log_bytes` each.
    pub fn new(log_bytes: usize) -> Self {
        Self {
            log_bytes,
            apps: Mutex::new(HashMap::new()),
        }
    }

    /// The telemetry of `tenant/app`, created on first use.
    pub fn for_app(&self, tenant: &str, app: &str) -> AppTelemetry {
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        apps.entry(key_of(tenant, app))
            .or_insert_with(|| AppTelemetry {
                id: format!("{tenant}/{app}"),
                log: Arc::new(AppLog::new(tenant, app, self.log_bytes)),
                stats: Arc::default(),
            })
            .clone()
    }

    /// Requests each app served since the last call, as `tenant/app` and
    /// count (apps that served none left out).
    pub fn take_served(&self) -> Vec<(String, u64)> {
        let apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        apps.values()
            .filter_map(|t| {
                let n = t.stats.take_unflushed();
                (n > 0).then(|| (t.id.clone(), n))
            })
            .collect()
    }

    /// Forgets `tenant/app` (it was deleted).
    pub fn remove(&self, tenant: &str, app: &str) {
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        apps.remove(&key_of(tenant, app));
    }
}
