//! Where this node's requests come from: each app's requests entering the
//! cluster here, counted over a sliding window and carried on the node's
//! heartbeat, so that the placing node sees every region's demand.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use dwcp_mesh::demand::DemandWindow;

/// The slot the window moves by.
const SLOT_SECS: u64 = 10;

/// Requests entering through this node, per app, over a window.
pub struct DemandCounter {
    region: String,
    window_secs: u64,
    apps: Mutex<HashMap<String, DemandWindow>>,
}

impl DemandCounter {
    /// Counts for a node of `region` over `window_secs`.
    pub fn new(region: &str, window_secs: u64) -> DemandCounter {
        DemandCounter {
            region: region.to_string(),
            window_secs,
            apps: Mutex::default(),
        }
    }

    /// One request for the app with host key `key` (`app.tenant`) entered
    /// here: the key the ingress has already, so that counting allocates
    /// nothing per request once the app is known.
    pub fn record(&self, key: &str) {
        let now = dwcp_store::unix_now();
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        match apps.get_mut(key) {
            Some(window) => window.record(now, &self.region, 1),
            None => {
                let mut window = DemandWindow::new(self.window_secs, SLOT_SECS);
                window.record(now, &self.region, 1);
                apps.insert(key.to_string(), window);
            }
        }
    }

    /// Requests per app (`tenant/app`, as heartbeats carry them) within
    /// the window; apps with none left are dropped.
    pub fn totals(&self) -> BTreeMap<String, u64> {
        let now = dwcp_store::unix_now();
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeMap::new();
        apps.retain(|key, window| {
            let n: u64 = window.totals(now).values().sum();
            if n > 0 {
                let (tenant, app) = crate::host::split_key(key);
                out.insert(format!("{tenant}/{app}"), n);
            }
            n > 0
        });
        out
    }
}
