//! Everything that changes what a node serves: deploy, delete and loading
//! the stored apps at start-up. The order is always the same: validate and
//! compile, write the artifact, commit the state, switch the app table. A
//! failure at any step undoes the steps before it, so nothing half-deployed
//! is left behind; a crash between steps leaves at worst unreferenced files,
//! which the start-up sweep removes.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dwcp_runtime::{AppVersion, CacheOutcome, DeployError, Runtime, VersionLabels};
use dwcp_store::{
    AppId, AppLimits, AppRecord, BlobStore, NameError, StateStore, StoreError, VersionRecord,
    sha256_hex, unix_now,
};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::apps::{AppTable, LiveApp};
use crate::metrics::NodeMetrics;

/// Why a control operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A name is malformed.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The upload cannot be deployed.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// No such app.
    #[error("no app `{0}`: `dwcp apps list` shows the deployed ones")]
    NoApp(String),
    /// No such tenant.
    #[error("no tenant `{0}`: `dwcp tenants list` shows the existing ones")]
    NoTenant(String),
    /// The version name is taken.
    #[error("{0} already has a version `{1}`: pick another name with --version, or leave it out")]
    VersionExists(String, String),
    /// A limit or option is out of range.
    #[error("{0}")]
    BadOption(String),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be written or read.
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
}

/// Options of a deploy; limits left out keep the app's current ones (or
/// the defaults for a new app).
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// The version's name (default `vN`).
    pub version: Option<String>,
    /// Linear memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// Execution deadline in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Concurrent requests.
    pub concurrency: Option<u32>,
    /// Requests per instance.
    pub reuse: Option<u32>,
}

/// What a deploy did.
#[derive(Debug, Serialize)]
pub struct DeployOutcome {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app: String,
    /// The version now serving.
    pub version: String,
    /// The artifact's SHA-256.
    pub sha256: String,
    /// The artifact's size in bytes.
    pub size: u64,
    /// `hit`, `miss` or `recompiled`.
    pub aot_cache: &'static str,
    /// Compilation time in milliseconds (0 on a cache hit).
    pub compile_ms: f64,
    /// Whether the tenant was created by this deploy.
    pub tenant_created: bool,
    /// The limits the version serves under.
    pub limits: AppLimits,
}

/// One line of `dwcp apps`.
#[derive(Debug, Serialize)]
pub struct AppSummary {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app: String,
    /// The version serving.
    pub active_version: String,
    /// How many versions are stored.
    pub versions: usize,
    /// Whether the node serves it now.
    pub serving: bool,
    /// When the active version was deployed (Unix seconds).
    pub deployed_at: u64,
}

/// `dwcp status TENANT/APP`.
#[derive(Debug, Serialize)]
pub struct AppStatus {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app: String,
    /// The version serving.
    pub active_version: String,
    /// The active artifact's SHA-256.
    pub sha256: String,
    /// The active artifact's size in bytes.
    pub size: u64,
    /// The limits it serves under.
    pub limits: AppLimits,
    /// How many versions are stored.
    pub versions: usize,
    /// Whether the node serves it now.
    pub serving: bool,
    /// Requests being served now.
    pub in_flight: u32,
    /// When the app was first deployed (Unix seconds).
    pub created_at: u64,
    /// When the active version was deployed (Unix seconds).
    pub deployed_at: u64,
    /// The host name it answers to.
    pub host: String,
}

/// One line of `dwcp versions`.
#[derive(Debug, Serialize)]
pub struct VersionInfo {
    /// The version's name.
    pub version: String,
    /// Its artifact's SHA-256.
    pub sha256: String,
    /// Its artifact's size in bytes.
    pub size: u64,
    /// When it was deployed (Unix seconds).
    pub deployed_at: u64,
    /// Whether it is the one serving.
    pub active: bool,
}

/// The node's control plane.
pub struct Control {
    state: StateStore,
    artifacts: BlobStore,
    runtime: Arc<Runtime>,
    apps: Arc<AppTable>,
    metrics: Arc<NodeMetrics>,
    domain: String,
    /// Deploys and deletes run one at a time: each is a read-modify-write
    /// of an app record, and compilation would not go faster in parallel.
    /// The guard moves into the blocking task, so that a deploy whose
    /// client went away still holds it until its last write.
    serial: Arc<tokio::sync::Mutex<()>>,
}

impl Control {
    /// Opens the state in `data_dir`.
    pub fn open(
        data_dir: &Path,
        runtime: Arc<Runtime>,
        apps: Arc<AppTable>,
        metrics: Arc<NodeMetrics>,
        domain: String,
    ) -> Result<Self, ControlError> {
        std::fs::create_dir_all(data_dir)?;
        Ok(Self {
            state: StateStore::open(&data_dir.join("state.redb"))?,
            artifacts: BlobStore::open(data_dir.join("artifacts"), "wasm")?,
            runtime,
            apps,
            metrics,
            domain,
            serial: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Loads every stored app into the app table (from the AOT cache, so
    /// nothing is compiled unless the cache lost a file) after removing
    /// files no app refers to. Returns how many apps serve. An app that
    /// cannot be loaded is logged and skipped: one bad app must not keep the
    /// others down.
    pub fn load_all(&self) -> Result<usize, ControlError> {
        // The admin API already answers (health checks): a deploy arriving
        // now waits until the stored apps are loaded, so that start-up never
        // installs a record older than the deploy.
        let _serial = self.serial.blocking_lock();
        let records = self.state.apps(None)?;
        self.sweep(&records)?;
        let mut loaded = 0;
        for record in &records {
            match self.activate(record) {
                Ok(_) => loaded += 1,
                Err(e) => {
                    tracing::error!(tenant = %record.tenant, app = %record.app, "not serving: {e}")
                }
            }
        }
        Ok(loaded)
    }

    /// Removes artifacts and compiled code that no stored version uses:
    /// what a crash in the middle of a deploy or delete can leave.
    fn sweep(&self, records: &[AppRecord]) -> Result<(), ControlError> {
        let used = |hash: &str| {
            records
                .iter()
                .flat_map(|r| &r.versions)
                .any(|v| v.sha256 == hash)
        };
        for hash in self.artifacts.list()? {
            if !used(&hash) {
                tracing::info!(artifact = %hash, "removing an artifact no app uses");
                self.artifacts.remove(&hash)?;
            }
        }
        for hash in self.runtime.aot_cache().hashes()? {
            if !used(&hash) {
                self.runtime.aot_cache().remove(&hash)?;
            }
        }
        Ok(())
    }

    /// Prepares the active version of `record` and puts it in the table.
    fn activate(&self, record: &AppRecord) -> Result<CacheOutcome, ControlError> {
        let active = record
            .active_version()
            .ok_or_else(|| ControlError::NoApp(format!("{}/{}", record.tenant, record.app)))?;
        let sha = active.sha256.clone();
        let prepared = self.runtime.prepare(&sha, || self.artifacts.get(&sha))?;
        let cache = prepared.cache;
        self.install(record, &active.version, prepared);
        Ok(cache)
    }

    fn install(&self, record: &AppRecord, version: &str, prepared: dwcp_runtime::Prepared) {
        let labels = VersionLabels {
            tenant: record.tenant.clone(),
            app: record.app.clone(),
            version: version.to_string(),
        };
        let metrics = self.metrics.for_version(&labels);
        let version = Arc::new(AppVersion::new(
            &self.runtime,
            labels,
            prepared,
            record.limits,
        ));
        // Keep the slots of the version being replaced when the limit is
        // unchanged, so that old and new versions together still honour it.
        let slots = match self.apps.get_app(&record.tenant, &record.app) {
            Some(old) if old.version.limits().concurrency == record.limits.concurrency => {
                old.slots.clone()
            }
            _ => Arc::new(Semaphore::new(record.limits.concurrency as usize)),
        };
        let live = Arc::new(LiveApp {
            version,
            metrics,
            slots,
        });
        self.apps.insert(&record.tenant, &record.app, live);
    }

    /// Deploys `bytes` as a new version of `id` and switches traffic to it.
    /// Blocking work (compilation, fsync) runs on the blocking pool.
    pub async fn deploy(
        self: &Arc<Self>,
        id: &AppId,
        bytes: Vec<u8>,
        options: DeployOptions,
    ) -> Result<DeployOutcome, ControlError> {
        let serial = self.serial.clone().lock_owned().await;
        let this = self.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || {
            let _serial = serial;
            this.deploy_blocking(&id, bytes, options)
        })
        .await
        .map_err(|e| ControlError::BadOption(format!("deploy task failed: {e}")))?
    }

    fn deploy_blocking(
        &self,
        id: &AppId,
        bytes: Vec<u8>,
        options: DeployOptions,
    ) -> Result<DeployOutcome, ControlError> {
        let existing = self.state.app(&id.tenant, &id.app)?;
        let tenant_created = !self.state.tenants()?.iter().any(|t| t.name == id.tenant);
        let version = match options.version.clone() {
            Some(name) => {
                validate_version_name(&name)?;
                name
            }
            None => existing
                .as_ref()
                .map_or_else(|| "v1".to_string(), AppRecord::next_version_name),
        };
        if existing
            .as_ref()
            .is_some_and(|r| r.versions.iter().any(|v| v.version == version))
        {
            return Err(ControlError::VersionExists(id.to_string(), version));
        }
        let limits = self.limits_for(existing.as_ref(), &options)?;

        let sha256 = sha256_hex(&bytes);
        let size = bytes.len() as u64;
        let had_code = self.runtime.aot_cache().path(&sha256).exists();
        let had_artifact = self.artifacts.path(&sha256).exists();
        let undo = || {
            if !had_code {
                let _ = self.runtime.aot_cache().remove(&sha256);
            }
            if !had_artifact {
                let _ = self.artifacts.remove(&sha256);
            }
        };

        let started = Instant::now();
        let prepared = match self.runtime.prepare(&sha256, || Ok(bytes.clone())) {
            Ok(prepared) => prepared,
            Err(e) => {
                undo();
                return Err(e.into());
            }
        };
        let compile_ms = if prepared.cache == CacheOutcome::Hit {
            0.0
        } else {
            started.elapsed().as_secs_f64() * 1e3
        };
        let cache = prepared.cache;

        let now = unix_now();
        let mut record = existing.unwrap_or_else(|| AppRecord {
            tenant: id.tenant.clone(),
            app: id.app.clone(),
            active: String::new(),
            versions: Vec::new(),
            limits,
            created_at: now,
        });
        record.versions.push(VersionRecord {
            version: version.clone(),
            sha256: sha256.clone(),
            size,
            deployed_at: now,
        });
        record.active = version.clone();
        record.limits = limits;
        let stored = self
            .artifacts
            .put(&bytes)
            .map_err(ControlError::from)
            .and_then(|_| self.state.put_app(&record).map_err(ControlError::from));
        if let Err(e) = stored {
            undo();
            return Err(e);
        }
        self.install(&record, &version, prepared);
        tracing::info!(tenant = %id.tenant, app = %id.app, %version, artifact = %sha256, ?cache, compile_ms, "deployed");
        Ok(DeployOutcome {
            tenant: id.tenant.clone(),
            app: id.app.clone(),
            version,
            sha256,
            size,
            aot_cache: match cache {
                CacheOutcome::Hit => "hit",
                CacheOutcome::Miss => "miss",
                CacheOutcome::Recompiled => "recompiled",
            },
            compile_ms,
            tenant_created,
            limits,
        })
    }

    fn limits_for(
        &self,
        existing: Option<&AppRecord>,
        options: &DeployOptions,
    ) -> Result<AppLimits, ControlError> {
        let mut limits = existing.map(|r| r.limits).unwrap_or_default();
        if let Some(memory) = options.memory_bytes {
            let max = self.runtime.settings().max_memory;
            if memory < 64 << 10 || memory > max {
                return Err(ControlError::BadOption(format!(
                    "--memory must be between 64KiB (one Wasm page) and this node's maximum of {max} bytes (raise it with `dwcp up --pool-max-memory`)"
                )));
            }
            limits.memory_bytes = memory;
        }
        if let Some(deadline) = options.deadline_ms {
            if deadline == 0 || deadline > 3_600_000 {
                return Err(ControlError::BadOption(
                    "--deadline must be between 1ms and 1h".into(),
                ));
            }
            limits.deadline_ms = deadline;
        }
        if let Some(concurrency) = options.concurrency {
            if concurrency == 0 || concurrency > 100_000 {
                return Err(ControlError::BadOption(
                    "--concurrency must be between 1 and 100000".into(),
                ));
            }
            limits.concurrency = concurrency;
        }
        if let Some(reuse) = options.reuse {
            if reuse == 0 {
                return Err(ControlError::BadOption(
                    "--reuse must be at least 1 (1: a fresh instance per request)".into(),
                ));
            }
            limits.reuse = reuse;
        }
        Ok(limits)
    }

    /// Deletes an app: it stops serving at once; its state goes, and its
    /// artifacts and compiled code unless another version still uses them.
    pub async fn delete(self: &Arc<Self>, id: &AppId) -> Result<AppRecord, ControlError> {
        let _serial = self.serial.lock().await;
        let record = self
            .state
            .delete_app(&id.tenant, &id.app)?
            .ok_or_else(|| ControlError::NoApp(id.to_string()))?;
        self.apps.remove(&id.tenant, &id.app);
        for version in &record.versions {
            if !self.state.artifact_in_use(&version.sha256)? {
                self.artifacts.remove(&version.sha256)?;
                self.runtime.aot_cache().remove(&version.sha256)?;
            }
        }
        tracing::info!(tenant = %id.tenant, app = %id.app, "deleted");
        Ok(record)
    }

    /// Every app, or `tenant`'s.
    pub fn list(&self, tenant: Option<&str>) -> Result<Vec<AppSummary>, ControlError> {
        if let Some(t) = tenant {
            dwcp_store::validate_label(t)?;
            if !self.state.tenants()?.iter().any(|r| r.name == t) {
                return Err(ControlError::NoTenant(t.to_string()));
            }
        }
        Ok(self
            .state
            .apps(tenant)?
            .into_iter()
            .map(|r| AppSummary {
                serving: self.apps.get_app(&r.tenant, &r.app).is_some(),
                deployed_at: r.active_version().map_or(0, |v| v.deployed_at),
                versions: r.versions.len(),
                active_version: r.active,
                tenant: r.tenant,
                app: r.app,
            })
            .collect())
    }

    fn record(&self, id: &AppId) -> Result<AppRecord, ControlError> {
        self.state
            .app(&id.tenant, &id.app)?
            .ok_or_else(|| ControlError::NoApp(id.to_string()))
    }

    /// The status of one app.
    pub fn status(&self, id: &AppId) -> Result<AppStatus, ControlError> {
        let r = self.record(id)?;
        let live = self.apps.get_app(&id.tenant, &id.app);
        let in_flight = live.as_ref().map_or(0, |l| {
            l.version.limits().concurrency - l.slots.available_permits() as u32
        });
        let active = r.active_version().cloned();
        Ok(AppStatus {
            host: format!("{}.{}.{}", r.app, r.tenant, self.domain),
            sha256: active
                .as_ref()
                .map_or_else(String::new, |v| v.sha256.clone()),
            size: active.as_ref().map_or(0, |v| v.size),
            deployed_at: active.as_ref().map_or(0, |v| v.deployed_at),
            serving: live.is_some(),
            in_flight,
            limits: r.limits,
            versions: r.versions.len(),
            created_at: r.created_at,
            active_version: r.active,
            tenant: r.tenant,
            app: r.app,
        })
    }

    /// Every version of one app, oldest first.
    pub fn versions(&self, id: &AppId) -> Result<Vec<VersionInfo>, ControlError> {
        let r = self.record(id)?;
        Ok(r.versions
            .iter()
            .map(|v| VersionInfo {
                active: v.version == r.active,
                version: v.version.clone(),
                sha256: v.sha256.clone(),
                size: v.size,
                deployed_at: v.deployed_at,
            })
            .collect())
    }
}

/// Version names appear in URLs, metrics and logs: keep them short and plain.
fn validate_version_name(name: &str) -> Result<(), ControlError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(ControlError::BadOption(format!(
            "version `{name}` is not valid: use up to 64 letters, digits, '.', '-' or '_'"
        )))
    }
}
