//! The control plane's side of stateful apps: building their keyed state
//! when a version is installed, the versions keys pin, and the operator's
//! `snapshot`, `snapshots` and `restore`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use dwcp_runtime::{AppVersion, Prepared, VersionLabels};
use dwcp_store::{AppId, AppRecord, key_scope};

use crate::control::{Control, ControlError};
use crate::stateful::{KeyCheckpoint, KeyedApp, KeyedError};

impl From<KeyedError> for ControlError {
    fn from(e: KeyedError) -> Self {
        match e {
            KeyedError::NotFound(what) => ControlError::NotFound(what),
            KeyedError::Store(e) => ControlError::Store(e),
            KeyedError::Instance(what) => ControlError::StoredNotServing(what),
        }
    }
}

impl Control {
    /// Prepares version `sha256` of `record`, stateful or not as the app is.
    pub(crate) fn prepare_version(
        &self,
        record: &AppRecord,
        sha256: &str,
    ) -> Result<Prepared, ControlError> {
        let bytes = || self.artifacts.get(sha256);
        Ok(match record.stateful {
            Some(_) => self.runtime.prepare_stateful(sha256, bytes)?,
            None => self.runtime.prepare(sha256, bytes)?,
        })
    }

    /// The keyed state of stateful `record`, made empty if it has none
    /// yet (`None` for a stateless app). Its owners can be set before any
    /// version serves a request (see `crate::migrate`).
    pub(crate) fn keyed_entry(&self, record: &AppRecord) -> Option<Arc<KeyedApp>> {
        let settings = record.stateful.clone()?;
        let name = format!("{}/{}", record.tenant, record.app);
        let mut keyed = self.keyed.lock().unwrap_or_else(|e| e.into_inner());
        Some(
            keyed
                .entry(name)
                .or_insert_with(|| {
                    Arc::new(KeyedApp::new(
                        &record.tenant,
                        &record.app,
                        settings,
                        self.checkpoints.clone(),
                        self.seal.clone(),
                        self.gate(&record.tenant),
                        self.metrics.for_checkpoints(&record.tenant, &record.app),
                    ))
                })
                .clone(),
        )
    }

    /// The keyed state of a stateful app with `version` newly installed
    /// (`None` for a stateless app), and every other version its keys hold
    /// state on loaded (from the AOT cache: milliseconds each).
    pub(crate) fn keyed_for(
        &self,
        record: &AppRecord,
        version: &Arc<AppVersion>,
        env: &[(String, String)],
    ) -> Option<Arc<KeyedApp>> {
        let settings = record.stateful.clone()?;
        let keyed = self.keyed_entry(record)?;
        keyed.set_settings(settings);
        keyed.add_version(version.clone());
        let held = match self.checkpoints.versions(&record.tenant, &record.app) {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(tenant = %record.tenant, app = %record.app, "cannot list the versions the app's keys hold state on: {e}");
                Default::default()
            }
        };
        for name in &held {
            if keyed.has_version(name) {
                continue;
            }
            let Some(stored) = record.versions.iter().find(|v| &v.version == name) else {
                tracing::warn!(tenant = %record.tenant, app = %record.app, version = %name, "keys hold state on a version that is no longer stored");
                continue;
            };
            match self.prepare_version(record, &stored.sha256) {
                Ok(prepared) => {
                    let labels = VersionLabels {
                        tenant: record.tenant.clone(),
                        app: record.app.clone(),
                        version: name.clone(),
                    };
                    let telemetry = self.telemetry.for_app(&record.tenant, &record.app);
                    keyed.add_version(Arc::new(
                        AppVersion::new(&self.runtime, labels, prepared, record.limits)
                            .with_egress(self.egress_policy(record))
                            .with_env(env.to_vec())
                            .with_telemetry(telemetry.log, telemetry.stats)
                            .with_artifact(&stored.sha256),
                    ));
                }
                Err(e) => {
                    tracing::warn!(tenant = %record.tenant, app = %record.app, version = %name, "cannot load a version keys hold state on: {e}")
                }
            }
        }
        Some(keyed)
    }

    /// The versions of `record` that any checkpoint belongs to: never
    /// pruned. If the checkpoint store cannot tell, every version is.
    pub(crate) fn pinned_versions(&self, record: &AppRecord) -> Vec<String> {
        if record.stateful.is_none() {
            return Vec::new();
        }
        match self.checkpoints.versions(&record.tenant, &record.app) {
            Ok(held) => held.into_iter().collect(),
            Err(e) => {
                tracing::warn!(tenant = %record.tenant, app = %record.app, "cannot list the versions keys hold state on; pruning none: {e}");
                record.versions.iter().map(|v| v.version.clone()).collect()
            }
        }
    }

    /// How many keys hold state on each version of a stateful app.
    pub(crate) fn keys_per_version(
        &self,
        record: &AppRecord,
    ) -> Result<HashMap<String, usize>, ControlError> {
        let mut counts = HashMap::new();
        for (_, meta) in self.checkpoints.keys(&record.tenant, &record.app)? {
            *counts.entry(meta.version).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Drops a deleted app's keys and checkpoints.
    pub(crate) fn forget_keys(&self, tenant: &str, app: &str) -> Result<(), ControlError> {
        self.keyed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&format!("{tenant}/{app}"));
        for (key, _) in self.checkpoints.keys(tenant, app)? {
            self.checkpoints.remove_key(&key_scope(tenant, app, &key))?;
        }
        Ok(())
    }

    pub(crate) fn keyed_app(&self, id: &AppId) -> Result<Arc<KeyedApp>, ControlError> {
        let record = self.record(id)?;
        if record.stateful.is_none() {
            return Err(ControlError::BadOption(format!(
                "{id} is not a stateful app (deploy it with --stateful)"
            )));
        }
        self.keyed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id.to_string())
            .cloned()
            .ok_or_else(|| ControlError::StoredNotServing(format!("{id} is not serving")))
    }

    /// Checkpoints live keys now (`dwcp snapshot`).
    pub async fn snapshot_keys(
        &self,
        id: &AppId,
        key: Option<&str>,
    ) -> Result<Vec<KeyCheckpoint>, ControlError> {
        Ok(self.keyed_app(id)?.snapshot(key).await?)
    }

    /// Lists stored checkpoints (`dwcp snapshots`).
    pub fn list_snapshots(
        &self,
        id: &AppId,
        key: Option<&str>,
    ) -> Result<Vec<KeyCheckpoint>, ControlError> {
        Ok(self.keyed_app(id)?.list(key)?)
    }

    /// Puts keys back to a checkpoint (`dwcp restore`).
    pub async fn restore_keys(
        &self,
        id: &AppId,
        key: Option<&str>,
        seq: Option<u64>,
    ) -> Result<Vec<KeyCheckpoint>, ControlError> {
        Ok(self.keyed_app(id)?.restore(key, seq).await?)
    }

    fn all_keyed(&self) -> Vec<Arc<KeyedApp>> {
        self.keyed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Periodic work of every stateful app (checkpoint intervals, idle
    /// keys hibernated).
    pub async fn maintain_keys(&self, last_interval: &mut HashMap<String, Instant>) {
        let now = Instant::now();
        for keyed in self.all_keyed() {
            let last = last_interval.entry(keyed.name()).or_insert(now);
            keyed.maintain(now, last).await;
        }
    }

    /// Checkpoints every changed live key (at shutdown); answers how many.
    pub async fn drain_keys(&self) -> usize {
        let mut saved = 0;
        for keyed in self.all_keyed() {
            saved += keyed.drain().await;
        }
        saved
    }
}
