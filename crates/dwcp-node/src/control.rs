//! Everything that changes what a node serves: deploy, delete and loading
//! the stored apps at start-up. The order is always the same: validate and
//! compile, write the artifact, commit the state, switch the app table. A
//! failure at any step undoes the steps before it, so nothing half-deployed
//! is left behind; a crash between steps leaves at worst unreferenced files,
//! which the start-up sweep removes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dwcp_runtime::{
    AppVersion, CacheOutcome, DeployError, EgressPolicy, HostRule, Runtime, VersionLabels,
    parse_cidr,
};
use dwcp_store::{
    AppId, AppLimits, AppRecord, AuditEntry, BlobStore, EgressSettings, NameError, StateStore,
    StoreError, TenantQuota, TenantRecord, VersionRecord, sha256_hex, unix_now,
};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::apps::{AppTable, Arm, Canary, LiveApp, Unavailable};
use crate::metrics::NodeMetrics;
use crate::secrets::SecretBox;
use crate::telemetry::TelemetryTable;
use crate::tenants::{TenantGate, TenantUsage};

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
    /// No such thing (a key, a checkpoint).
    #[error("{0}")]
    NotFound(String),
    /// No such tenant.
    #[error("no tenant `{0}`: `dwcp tenants list` shows the existing ones")]
    NoTenant(String),
    /// The version name is taken.
    #[error("{0} already has a version `{1}`: pick another name with --version, or leave it out")]
    VersionExists(String, String),
    /// A limit or option is out of range.
    #[error("{0}")]
    BadOption(String),
    /// The tenant exists already.
    #[error("tenant `{0}` exists already")]
    TenantExists(String),
    /// The change would take a tenant past its quota.
    #[error("{0}")]
    OverQuota(String),
    /// A secret cannot be opened.
    #[error("{0}")]
    Secret(String),
    /// A change was stored, but the app it was for still cannot serve.
    #[error("{0}")]
    StoredNotServing(String),
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
    /// Egress rules to add (`apps set` only).
    pub allow_hosts: Vec<String>,
    /// Private networks to open (`apps set` only).
    pub allow_private: Vec<String>,
    /// Remove every egress rule first (`apps set` only).
    pub clear_egress: bool,
    /// Versions to keep (`apps set` only).
    pub keep_versions: Option<u32>,
    /// Run this export once at deploy and serve the state it leaves (deploy only).
    pub preinit: Option<String>,
    /// Deploy as a stateful app with these settings (deploy only).
    pub stateful: Option<dwcp_store::StatefulSettings>,
    /// The upload's SHA-256 and the signature over it that was checked
    /// (deploy only).
    pub uploaded: Option<Uploaded>,
    /// How the new version takes over (`None`: the app's default strategy,
    /// else immediate); with `apps set`, the app's new default.
    pub strategy: Option<dwcp_release::rollout::Strategy>,
    /// The rollout analysis's settings (`None`: the app's, else the defaults).
    pub analysis: Option<dwcp_release::analysis::AnalysisConfig>,
    /// The header naming a request's user for sticky splits (`apps set` only).
    pub user_header: Option<String>,
    /// The cookie naming it when the header is absent (`apps set` only).
    pub user_cookie: Option<String>,
    /// Replicas in a cluster (`deploy --replicas`, `scale`).
    pub replicas: Option<u32>,
    /// Regions its replicas are pinned to (empty: any).
    pub regions: Option<Vec<String>>,
    /// The edge cache's default TTL in milliseconds (`apps set`; 0: none).
    pub cache_ttl_ms: Option<u64>,
}

/// An upload whose signature was checked.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
    /// The publisher key that signed it.
    pub key_id: String,
    /// The signature, base64.
    pub signature: String,
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
    /// How it takes over: `immediate`, `canary` (serving its first step
    /// now) or `blue-green` (checked, then switched or refused).
    pub strategy: &'static str,
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

/// One line of `dwcp tenants list`.
#[derive(Debug, Serialize)]
pub struct TenantSummary {
    /// The tenant.
    pub name: String,
    /// When it was created (Unix seconds).
    pub created_at: u64,
    /// How many apps it has.
    pub apps: usize,
    /// The sum of its apps' memory limits: what one instance of each needs.
    pub memory_per_instance_sum: u64,
    /// Its quota (`null`: no limit).
    pub quota: TenantQuota,
    /// What its requests use now.
    pub usage: TenantUsage,
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
    /// What its guests may reach with outgoing HTTP.
    pub egress: EgressSettings,
    /// How many versions it keeps.
    pub keep_versions: usize,
    /// What else serves besides the active version: a rollout's canary or
    /// an experiment's treatment, with its share (`None`: nothing).
    pub split: Option<SplitSummary>,
}

/// A split of an app's users, as `dwcp status` shows it.
#[derive(Debug, Serialize)]
pub struct SplitSummary {
    /// `rollout` or `experiment`.
    pub kind: &'static str,
    /// The version the split sends users to.
    pub version: String,
    /// Its share of users, in percent.
    pub percent: f64,
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
    /// The function run at deploy to pre-initialize it, if any.
    pub preinit: Option<String>,
    /// SHA-256 of the component as uploaded, when it differs from `sha256`.
    pub source_sha256: Option<String>,
    /// For a stateful app: how many keys hold state on this version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<usize>,
    /// The id of the publisher key whose signature was checked at upload.
    pub signed_by: Option<String>,
}

/// How a node's control plane behaves, as `dwcp up` sets it.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// Host suffix apps are addressed under.
    pub domain: String,
    /// The node's own addresses, out of guests' reach.
    pub node_addrs: Vec<std::net::SocketAddr>,
    /// Bytes of guest output kept per app.
    pub log_bytes: usize,
    /// Versions kept per app unless the app says otherwise.
    pub keep_versions: u32,
    /// Audit entries older than this are removed by `dwcp gc`.
    pub audit_retention: std::time::Duration,
    /// The largest artifact: an upload, or what pre-initialization makes.
    pub max_upload: usize,
    /// The edge response cache's size in bytes.
    pub cache_bytes: usize,
}

/// The node's control plane.
pub struct Control {
    pub(crate) state: StateStore,
    pub(crate) artifacts: BlobStore,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) apps: Arc<AppTable>,
    pub(crate) metrics: Arc<NodeMetrics>,
    pub(crate) settings: ControlSettings,
    /// Deploys and deletes run one at a time: each is a read-modify-write
    /// of an app record, and compilation would not go faster in parallel.
    /// The guard moves into the blocking task, so that a deploy whose
    /// client went away still holds it until its last write.
    pub(crate) serial: Arc<tokio::sync::Mutex<()>>,
    /// Each tenant's quota gate, shared by its live apps.
    gates: std::sync::Mutex<HashMap<String, Arc<TenantGate>>>,
    /// Seals secrets at rest.
    pub(crate) secrets: SecretBox,
    /// Each app's log and recent activity.
    pub(crate) telemetry: TelemetryTable,
    /// The data directory.
    pub(crate) data_dir: std::path::PathBuf,
    /// Pre-initializations run one at a time (each runs guest code for up
    /// to its deadline).
    preinit_lock: tokio::sync::Mutex<()>,
    /// Checkpoints of stateful apps' keys.
    pub(crate) checkpoints: Arc<dwcp_store::CheckpointStore>,
    /// Seals those checkpoints to this node's key.
    pub(crate) seal: Arc<crate::seal::CheckpointSeal>,
    /// Stateful apps' keys, by `tenant/app`: they outlive a deploy, since
    /// keys stay on the version their state belongs to.
    pub(crate) keyed: std::sync::Mutex<HashMap<String, Arc<crate::stateful::KeyedApp>>>,
    /// Apps stored here that other nodes of the cluster serve, by `tenant/app`.
    pub(crate) held_elsewhere: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The edge response cache (the ingress serves through it).
    pub(crate) cache: Arc<crate::edge_cache::NodeCache>,
    /// Tells this run of the node from earlier ones (a rollout's totals
    /// carry over a restart; the live counters do not).
    pub(crate) run_id: u64,
}

impl Control {
    /// Opens the state in `data_dir`.
    pub fn open(
        data_dir: &Path,
        runtime: Arc<Runtime>,
        apps: Arc<AppTable>,
        metrics: Arc<NodeMetrics>,
        settings: ControlSettings,
    ) -> Result<Self, ControlError> {
        std::fs::create_dir_all(data_dir)?;
        let checkpoints = dwcp_store::CheckpointStore::open(&data_dir.join("checkpoints.redb"))?;
        Ok(Self {
            state: StateStore::open(&data_dir.join("state.redb"))?,
            artifacts: BlobStore::open(data_dir.join("artifacts"), "wasm")?,
            runtime,
            apps,
            metrics,
            serial: Arc::new(tokio::sync::Mutex::new(())),
            gates: std::sync::Mutex::new(HashMap::new()),
            secrets: SecretBox::open_or_create(data_dir)?,
            seal: Arc::new(crate::seal::CheckpointSeal::open_or_create(
                data_dir,
                !checkpoints.is_empty()?,
            )?),
            telemetry: TelemetryTable::new(settings.log_bytes),
            cache: Arc::new(crate::edge_cache::NodeCache::new(settings.cache_bytes)),
            held_elsewhere: Default::default(),
            settings,
            data_dir: data_dir.to_path_buf(),
            preinit_lock: tokio::sync::Mutex::new(()),
            checkpoints: Arc::new(checkpoints),
            keyed: std::sync::Mutex::new(HashMap::new()),
            run_id: run_id(),
        })
    }

    /// Prepares the versions `record` serves (the active one, a rollout's
    /// canary, the previous one kept warm) and puts them in the table.
    pub(crate) fn activate(&self, record: &AppRecord) -> Result<CacheOutcome, ControlError> {
        let env = self.guest_env(record)?;
        self.install(record, None, env)
    }

    /// Builds the live app `record` describes and swaps it in. Versions
    /// already live keep their instances (and their rollout totals, unless
    /// a new rollout begins); `fresh` is version code just compiled; the
    /// rest comes from the AOT cache. Only the stable version must load: a
    /// canary or previous version that cannot is left out and logged.
    /// Returns the stable version's cache outcome.
    pub(crate) fn install(
        &self,
        record: &AppRecord,
        fresh: Option<(&str, dwcp_runtime::Prepared)>,
        env: Vec<(String, String)>,
    ) -> Result<CacheOutcome, ControlError> {
        let live = self.apps.get_app(&record.tenant, &record.app);
        let mut fresh = fresh;
        let mut arm = |name: &str| -> Result<(Arm, CacheOutcome), ControlError> {
            if let Some((_, prepared)) = fresh.take_if(|(fresh, _)| *fresh == name) {
                let cache = prepared.cache;
                return Ok((self.new_arm(record, name, prepared, &env), cache));
            }
            if let Some(arm) = live.as_ref().and_then(|l| l.arm(name)) {
                return Ok((arm.clone(), CacheOutcome::Hit));
            }
            let stored = record
                .versions
                .iter()
                .find(|v| v.version == name)
                .ok_or_else(|| ControlError::NotFound(format!("no version `{name}` is stored")))?;
            let prepared = self.prepare_version(record, &stored.sha256)?;
            let cache = prepared.cache;
            Ok((self.new_arm(record, name, prepared, &env), cache))
        };
        if record.active_version().is_none() {
            return Err(ControlError::NoApp(format!(
                "{}/{}",
                record.tenant, record.app
            )));
        }
        let (mut stable, cache) = arm(&record.active)?;
        let mut canary_error: Option<Arc<str>> = None;
        let mut optional =
            |what: &str, name: &str, arm: Result<(Arm, CacheOutcome), ControlError>| {
                arm.map(|(arm, _)| arm)
                .inspect_err(|e| {
                    tracing::warn!(tenant = %record.tenant, app = %record.app, version = %name, "the {what} version cannot load: {e}");
                    if what != "previous" {
                        canary_error = Some(Arc::from(format!("{name} does not load: {e}")));
                    }
                })
                .ok()
            };
        let experiment = record.experiment.as_ref().filter(|e| e.running());
        let mut canary = match record.rollout.as_ref().filter(|r| r.in_progress()) {
            Some(rollout) if rollout.version != record.active => {
                optional("canary", &rollout.version, arm(&rollout.version)).map(|arm| Canary {
                    arm,
                    weight_bp: rollout.state.weight_bp(),
                    salt: crate::rollouts::rollout_salt(record, rollout),
                })
            }
            // An experiment splits like a rollout that never moves.
            _ => experiment
                .filter(|e| e.flag.is_none() && e.control == record.active)
                .and_then(|e| {
                    optional("treatment", &e.treatment, arm(&e.treatment)).map(|arm| Canary {
                        arm,
                        weight_bp: e.split_bp,
                        salt: crate::experiments::experiment_salt(record, e),
                    })
                }),
        };
        // A new rollout compares the two versions from its start only; a
        // split that ended lets go of its totals (an experiment's sets of
        // users among them).
        let live_salt = live
            .as_ref()
            .and_then(|l| l.canary.as_ref())
            .map(|c| &c.salt);
        if let Some(canary) = canary.as_mut().filter(|c| Some(&c.salt) != live_salt) {
            canary.arm.stats = Arc::default();
            stable.stats = Arc::default();
        }
        if canary.is_none() && live_salt.is_some() {
            stable.stats = Arc::default();
        }
        let previous = record
            .previous
            .as_deref()
            .filter(|p| *p != record.active && canary.as_ref().is_none_or(|c| c.arm.name() != *p))
            .filter(|p| record.versions.iter().any(|v| v.version == *p))
            .and_then(|p| optional("previous", p, arm(p)));
        let keyed = self.keyed_for(record, &stable.version, &env);
        // Keep the slots of the app being replaced when the limit is
        // unchanged, so that old and new versions together still honour it.
        let slots = match &live {
            Some(old) if old.version().limits().concurrency == record.limits.concurrency => {
                old.slots.clone()
            }
            _ => Arc::new(Semaphore::new(record.limits.concurrency as usize)),
        };
        let users = crate::release::UserKeyRule::new(
            &record.release,
            record.stateful.as_ref().map(|s| s.key_header.as_str()),
        );
        let conversion = experiment.map(|e| Arc::new(e.conversion.clone()));
        let flag_experiment = experiment.and_then(|e| {
            let flag = e.flag.clone()?;
            // The same experiment keeps its users across rebuilds.
            let same = live
                .as_ref()
                .and_then(|l| l.flag_experiment.clone())
                .filter(|x| x.flag == flag && x.started_at == e.started_at);
            Some(same.unwrap_or_else(|| {
                Arc::new(crate::apps::FlagExperiment {
                    flag,
                    control: e.control.clone(),
                    treatment: e.treatment.clone(),
                    started_at: e.started_at,
                    counters: Default::default(),
                })
            }))
        });
        let live = Arc::new(LiveApp {
            stable,
            canary,
            previous,
            users: Arc::new(users),
            conversion,
            flag_experiment,
            canary_error,
            slots,
            tenant: self.gate(&record.tenant),
            keyed,
        });
        self.apps.insert(&record.tenant, &record.app, live);
        self.cache.set_policy(
            &record.tenant,
            &record.app,
            Some(crate::edge_cache::policy_of(record)),
        );
        Ok(cache)
    }

    /// A new arm serving `prepared` as version `name` of `record`.
    fn new_arm(
        &self,
        record: &AppRecord,
        name: &str,
        prepared: dwcp_runtime::Prepared,
        env: &[(String, String)],
    ) -> Arm {
        let labels = VersionLabels {
            tenant: record.tenant.clone(),
            app: record.app.clone(),
            version: name.to_string(),
        };
        let metrics = self.metrics.for_version(&labels);
        let telemetry = self.telemetry.for_app(&record.tenant, &record.app);
        let artifact = record
            .versions
            .iter()
            .find(|v| v.version == name)
            .map_or("", |v| v.sha256.as_str());
        let version = Arc::new(
            AppVersion::new(&self.runtime, labels, prepared, record.limits)
                .with_egress(self.egress_policy(record))
                .with_env(env.to_vec())
                .with_telemetry(telemetry.log.clone(), telemetry.stats.clone())
                .with_artifact(artifact),
        );
        Arm::new(version, metrics)
    }

    /// The environment of the app's instances: config, then secrets
    /// (opened here, never logged).
    pub(crate) fn guest_env(
        &self,
        record: &AppRecord,
    ) -> Result<Vec<(String, String)>, ControlError> {
        let mut env: Vec<(String, String)> = record
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, sealed) in &record.secrets {
            let context = format!("{}/{}/{name}", record.tenant, record.app);
            let value = self
                .secrets
                .open(&context, sealed)
                .map_err(ControlError::Secret)?;
            let value = String::from_utf8(value)
                .map_err(|_| ControlError::Secret(format!("secret {context} is not UTF-8")))?;
            env.retain(|(k, _)| k != name);
            env.push((name.clone(), value));
        }
        Ok(env)
    }

    /// Sets (`Some`) or removes (`None`) a config value; new instances see
    /// it at once, no redeploy.
    pub async fn set_config(
        self: &Arc<Self>,
        id: &AppId,
        key: &str,
        value: Option<String>,
    ) -> Result<(), ControlError> {
        validate_env_name(key)?;
        self.update_app(id, |record| match value {
            Some(value) => {
                check_env_value(key, value.as_bytes())?;
                check_env_count(record, key)?;
                record.config.insert(key.to_string(), value);
                Ok(())
            }
            None => match record.config.remove(key) {
                Some(_) => Ok(()),
                None => Err(ControlError::BadOption(format!(
                    "{id} has no config `{key}`"
                ))),
            },
        })
        .await?;
        tracing::info!(tenant = %id.tenant, app = %id.app, key, "config changed");
        Ok(())
    }

    /// Seals and stores (`Some`) or removes (`None`) a secret; new
    /// instances see it at once, no redeploy. The value is never logged.
    pub async fn set_secret(
        self: &Arc<Self>,
        id: &AppId,
        name: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), ControlError> {
        validate_env_name(name)?;
        self.update_app(id, |record| match value {
            Some(value) => {
                check_env_value(name, &value)?;
                if std::str::from_utf8(&value).is_err() {
                    return Err(ControlError::BadOption(format!(
                        "secret `{name}` is not UTF-8 text: guests read secrets as environment variables (base64-encode binary values)"
                    )));
                }
                check_env_count(record, name)?;
                let context = format!("{}/{}/{name}", id.tenant, id.app);
                record
                    .secrets
                    .insert(name.to_string(), self.secrets.seal(&context, &value)?);
                Ok(())
            }
            None => match record.secrets.remove(name) {
                Some(_) => Ok(()),
                None => Err(ControlError::BadOption(format!("{id} has no secret `{name}`"))),
            },
        })
        .await?;
        tracing::info!(tenant = %id.tenant, app = %id.app, name, "secret changed");
        Ok(())
    }

    /// Adds the requests served since the last flush to each app's stored
    /// total (what orders loading at the next start). Failures are logged:
    /// the counts only order work.
    pub fn flush_served(&self) {
        let counts = self.telemetry.take_served();
        if !counts.is_empty()
            && let Err(e) = self.state.add_served(&counts)
        {
            tracing::warn!("cannot store request counts: {e}");
        }
    }

    /// Appends an admin action to the audit log. A failure to write is
    /// logged, not returned: the action itself already happened.
    pub fn audit(&self, action: String, token: Option<String>, status: u16) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let entry = AuditEntry {
            at: now / 1_000_000,
            token,
            action,
            status,
        };
        if let Err(e) = self.state.append_audit(now, &entry) {
            tracing::error!("cannot append to the audit log: {e}; entry: {entry:?}");
        }
    }

    /// Audit entries since `since` (Unix seconds), oldest first.
    pub fn audit_since(&self, since: u64) -> Result<Vec<AuditEntry>, ControlError> {
        Ok(self.state.audit_since(since.saturating_mul(1_000_000))?)
    }

    /// An app's config values.
    pub fn config(
        &self,
        id: &AppId,
    ) -> Result<std::collections::BTreeMap<String, String>, ControlError> {
        Ok(self.record(id)?.config)
    }

    /// The names of an app's secrets (never their values).
    pub fn secret_names(&self, id: &AppId) -> Result<Vec<String>, ControlError> {
        Ok(self.record(id)?.secrets.into_keys().collect())
    }

    /// The runtime's form of an app's stored egress settings. Rules were
    /// validated when set; one that no longer parses is dropped (denying
    /// more, never less) and logged.
    pub(crate) fn egress_policy(&self, record: &AppRecord) -> EgressPolicy {
        let mut policy = EgressPolicy {
            node_addrs: self.settings.node_addrs.clone(),
            ..EgressPolicy::default()
        };
        for rule in &record.egress.allow_hosts {
            match HostRule::parse(rule) {
                Ok(rule) => policy.allow_hosts.push(rule),
                Err(e) => {
                    tracing::warn!(tenant = %record.tenant, app = %record.app, "{e}; ignored")
                }
            }
        }
        for cidr in &record.egress.allow_private {
            match parse_cidr(cidr) {
                Ok(net) => policy.allow_private.push(net),
                Err(e) => {
                    tracing::warn!(tenant = %record.tenant, app = %record.app, "{e}; ignored")
                }
            }
        }
        policy
    }

    /// The quota gate of `tenant`, made from its stored quota on first use.
    /// Whether `id` is stored here but served by other nodes of the cluster.
    pub(crate) fn is_held_elsewhere(&self, id: &AppId) -> bool {
        self.held_elsewhere
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id.to_string())
    }

    /// Every tenant's gate.
    pub(crate) fn all_gates(&self) -> Vec<Arc<TenantGate>> {
        self.gates
            .lock()
            .map(|g| g.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn gate(&self, tenant: &str) -> Arc<TenantGate> {
        let quota = || {
            self.state
                .tenant(tenant)
                .ok()
                .flatten()
                .map(|t| t.quota)
                .unwrap_or_default()
        };
        match self.gates.lock() {
            Ok(mut gates) => gates
                .entry(tenant.to_string())
                .or_insert_with(|| Arc::new(TenantGate::new(quota())))
                .clone(),
            Err(_) => Arc::new(TenantGate::new(quota())),
        }
    }

    /// The live app `record` describes, built from the one serving now:
    /// same component, new `AppVersion` (new limits, egress, environment,
    /// and no idle instances). Changes nothing yet.
    fn renew(&self, record: &AppRecord) -> Result<Arc<LiveApp>, ControlError> {
        let live = self
            .apps
            .get_app(&record.tenant, &record.app)
            .ok_or_else(|| ControlError::NoApp(format!("{}/{}", record.tenant, record.app)))?;
        let env = self.guest_env(record)?;
        // Every live version is renewed alike; rollout totals carry over.
        let renew = |arm: &Arm| Arm {
            version: Arc::new(
                arm.version
                    .renewed(record.limits)
                    .with_egress(self.egress_policy(record))
                    .with_env(env.clone()),
            ),
            ..arm.clone()
        };
        let stable = renew(&live.stable);
        let slots = if live.version().limits().concurrency == record.limits.concurrency {
            live.slots.clone()
        } else {
            Arc::new(Semaphore::new(record.limits.concurrency as usize))
        };
        if let Some(keyed) = &live.keyed {
            if let Some(settings) = &record.stateful {
                keyed.set_settings(settings.clone());
            }
            keyed.add_version(stable.version.clone());
        }
        let users = crate::release::UserKeyRule::new(
            &record.release,
            record.stateful.as_ref().map(|s| s.key_header.as_str()),
        );
        Ok(Arc::new(LiveApp {
            stable,
            canary: live.canary.as_ref().map(|c| Canary {
                arm: renew(&c.arm),
                ..c.clone()
            }),
            previous: live.previous.as_ref().map(renew),
            users: Arc::new(users),
            conversion: live.conversion.clone(),
            flag_experiment: live.flag_experiment.clone(),
            canary_error: live.canary_error.clone(),
            slots,
            tenant: live.tenant.clone(),
            keyed: live.keyed.clone(),
        }))
    }

    /// Changes a stored app under the lock, then serves it changed: the
    /// shape of every `apps set`, `config` and `secrets` change. The new
    /// live app is built before anything is written, so a change that
    /// cannot be served is refused and changes nothing.
    async fn update_app(
        self: &Arc<Self>,
        id: &AppId,
        change: impl FnOnce(&mut AppRecord) -> Result<(), ControlError>,
    ) -> Result<AppRecord, ControlError> {
        let _serial = self.serial.lock().await;
        let mut record = self.record(id)?;
        change(&mut record)?;
        let serving = self.apps.get_app(&id.tenant, &id.app).is_some();
        let live = if serving {
            Some(self.renew(&record)?)
        } else {
            None
        };
        self.state.put_app(&record)?;
        self.cache.set_policy(
            &record.tenant,
            &record.app,
            Some(crate::edge_cache::policy_of(&record)),
        );
        match live {
            Some(live) => self.apps.insert(&record.tenant, &record.app, live),
            // Placed on other nodes of the cluster: they serve the change.
            None if self.is_held_elsewhere(id) => {}
            // Not serving (it failed to load, say for a secret that no
            // longer opens): the change may be what it needed.
            None => {
                if let Err(e) = self.activate(&record) {
                    self.apps
                        .set_unavailable(&id.tenant, &id.app, Unavailable::Failed);
                    tracing::warn!(tenant = %id.tenant, app = %id.app, "still not serving: {e}");
                    return Err(ControlError::StoredNotServing(format!(
                        "{id}: the change is stored, but the app still does not serve: {e}"
                    )));
                }
            }
        }
        Ok(record)
    }

    /// Checks that `tenant`'s apps, with `app` given `memory`, fit the
    /// tenant's memory quota: every app must be able to run one instance.
    fn check_memory_quota(&self, tenant: &str, app: &str, memory: u64) -> Result<(), ControlError> {
        let Some(quota) = self
            .state
            .tenant(tenant)?
            .and_then(|t| t.quota.memory_bytes)
        else {
            return Ok(());
        };
        let others: u64 = self
            .state
            .apps(Some(tenant))?
            .iter()
            .filter(|a| a.app != app)
            .map(|a| a.limits.memory_bytes)
            .sum();
        if others + memory > quota {
            return Err(ControlError::OverQuota(format!(
                "tenant `{tenant}` has a memory quota of {quota} bytes; its other apps need {others} and this one {memory} (one instance each): lower --memory or raise the quota with `dwcp tenants quota {tenant} --memory …`"
            )));
        }
        Ok(())
    }

    /// Deploys `bytes` as a new version of `id` and switches traffic to it.
    /// Blocking work (compilation, fsync) runs on the blocking pool.
    pub async fn deploy(
        self: &Arc<Self>,
        id: &AppId,
        bytes: Vec<u8>,
        options: DeployOptions,
    ) -> Result<DeployOutcome, ControlError> {
        let (bytes, source_sha256) = match &options.preinit {
            Some(func) => {
                let source = match &options.uploaded {
                    Some(up) => up.sha256.clone(),
                    None => sha256_hex(&bytes),
                };
                let initialized = self
                    .preinitialize(id, bytes, func.clone(), &options)
                    .await?;
                (initialized, Some(source))
            }
            None => (bytes, None),
        };
        let target = id.clone();
        let outcome = self
            .blocking_under_lock("deploy", move |this| {
                this.deploy_blocking(&target, bytes, source_sha256, options)
            })
            .await?;
        // Blue-green: the deploy returns once the new version was checked.
        self.check_green(id).await?;
        if let Some(r) = self.record(id)?.rollout {
            let aborted = r.version == outcome.version
                && r.state.phase() == dwcp_release::rollout::Phase::Aborted;
            if aborted {
                let why = r.state.decisions().last().map_or("", |d| d.reason.as_str());
                return Err(ControlError::StoredNotServing(format!(
                    "{id} {} is stored but does not serve: {why}; {} still serves",
                    outcome.version, r.stable
                )));
            }
        }
        Ok(outcome)
    }

    /// Runs `work` on the blocking pool, holding the lock deploys and
    /// deletes take. The guard moves into the task: work whose client went
    /// away still holds it until its last write.
    pub(crate) async fn blocking_under_lock<T: Send + 'static>(
        self: &Arc<Self>,
        what: &str,
        work: impl FnOnce(&Control) -> Result<T, ControlError> + Send + 'static,
    ) -> Result<T, ControlError> {
        let serial = self.serial.clone().lock_owned().await;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _serial = serial;
            work(&this)
        })
        .await
        .map_err(|e| ControlError::BadOption(format!("{what} task failed: {e}")))?
    }

    /// Runs the component's initialization (`--preinit`) and returns the
    /// component with its state built in. Outside the deploy lock (guest
    /// code must not hold up other deploys), one at a time per node.
    async fn preinitialize(
        self: &Arc<Self>,
        id: &AppId,
        bytes: Vec<u8>,
        func: String,
        options: &DeployOptions,
    ) -> Result<Vec<u8>, ControlError> {
        let existing = self.state.app(&id.tenant, &id.app)?;
        let memory = self.limits_for(existing.as_ref(), options)?.memory_bytes;
        let _one_at_a_time = self.preinit_lock.lock().await;
        let this = self.clone();
        let labels = VersionLabels {
            tenant: id.tenant.clone(),
            app: id.app.clone(),
            version: "preinit".into(),
        };
        let max = self.settings.max_upload;
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let before = bytes.len();
            let out = this
                .runtime
                .preinitialize(&bytes, &func, &labels, memory, max)?;
            tracing::info!(tenant = %labels.tenant, app = %labels.app, func, ms = started.elapsed().as_millis() as u64, before, after = out.len(), "pre-initialized");
            Ok(out)
        })
        .await
        .map_err(|e| ControlError::BadOption(format!("pre-initialization task failed: {e}")))?
    }

    fn deploy_blocking(
        &self,
        id: &AppId,
        bytes: Vec<u8>,
        source_sha256: Option<String>,
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
        self.check_memory_quota(&id.tenant, &id.app, limits.memory_bytes)?;

        // The admin API hashed the upload already (its signature covers that
        // hash); a pre-initialized component is another file.
        let sha256 = match (&options.uploaded, &source_sha256) {
            (Some(up), None) => up.sha256.clone(),
            _ => sha256_hex(&bytes),
        };
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
        if options.stateful.is_some()
            && existing
                .as_ref()
                .is_some_and(|r| r.stateful.is_none() && !r.versions.is_empty())
        {
            return Err(ControlError::BadOption(format!(
                "{id} is not a stateful app: deploy a stateful one under another name"
            )));
        }
        let stateful =
            options.stateful.is_some() || existing.as_ref().is_some_and(|r| r.stateful.is_some());
        let prepared = if stateful {
            self.runtime.prepare_stateful(&sha256, || Ok(bytes.clone()))
        } else {
            self.runtime.prepare(&sha256, || Ok(bytes.clone()))
        };
        let prepared = match prepared {
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
            egress: Default::default(),
            config: Default::default(),
            secrets: Default::default(),
            keep_versions: None,
            stateful: None,
            previous: None,
            rollout: None,
            release: Default::default(),
            experiment: None,
            placement: Default::default(),
            cache_ttl_ms: None,
        });
        record.versions.push(VersionRecord {
            version: version.clone(),
            sha256: sha256.clone(),
            size,
            deployed_at: now,
            preinit: options.preinit.clone(),
            source_sha256,
            signed_by: options.uploaded.as_ref().map(|up| up.key_id.clone()),
            signature: options.uploaded.as_ref().map(|up| up.signature.clone()),
        });
        let strategy = options
            .strategy
            .clone()
            .unwrap_or_else(|| Self::default_strategy(Some(&record)));
        let strategy_name = strategy_name(&strategy);
        if let Err(e) = Self::begin_rollout(&mut record, &version, strategy, options.analysis, now)
        {
            undo();
            return Err(e);
        }
        record.limits = limits;
        let stateful_app = options.stateful.is_some() || record.stateful.is_some();
        if let Err(e) = placement_settings(&mut record.placement, stateful_app, &options) {
            undo();
            return Err(e);
        }
        if let Some(settings) = options.stateful.clone() {
            record.stateful = Some(settings);
        }
        let pruned =
            record.prune_versions_except(self.keep_for(&record), &self.pinned_versions(&record));
        let env = match self.guest_env(&record) {
            Ok(env) => env,
            Err(e) => {
                undo();
                return Err(e);
            }
        };
        let stored = self
            .artifacts
            .put(&bytes)
            .map_err(ControlError::from)
            .and_then(|_| self.state.put_app(&record).map_err(ControlError::from));
        if let Err(e) = stored {
            undo();
            return Err(e);
        }
        if let Err(e) = self.install(&record, Some((&version, prepared)), env) {
            // Stored but not served: the record is what a restart loads.
            return Err(ControlError::StoredNotServing(format!(
                "{id} {version} is stored but does not serve: {e}"
            )));
        }
        tracing::info!(tenant = %id.tenant, app = %id.app, %version, artifact = %sha256, ?cache, compile_ms, "deployed");
        self.forget_versions(&record, &pruned);
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
            strategy: strategy_name,
        })
    }

    fn limits_for(
        &self,
        existing: Option<&AppRecord>,
        options: &DeployOptions,
    ) -> Result<AppLimits, ControlError> {
        let mut limits = existing.map(|r| r.limits).unwrap_or_default();
        if let Some(ttl) = options.cache_ttl_ms
            && ttl > 30 * 86_400_000
        {
            return Err(ControlError::BadOption(
                "--cache-ttl must be at most 30d (0 or `off`: no default)".into(),
            ));
        }
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
        let Some(record) = self.state.delete_app(&id.tenant, &id.app)? else {
            return Err(self
                .record(id)
                .err()
                .unwrap_or(ControlError::NoApp(id.to_string())));
        };
        self.apps.remove(&id.tenant, &id.app);
        self.cache.set_policy(&id.tenant, &id.app, None);
        self.cache.purge(&id.tenant, Some(&id.app), None);
        self.telemetry.remove(&id.tenant, &id.app);
        self.forget_keys(&id.tenant, &id.app)?;
        self.remove_unused(record.versions.iter())?;
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

    /// The stored record of an app; says whether the tenant or the app is missing.
    pub(crate) fn record(&self, id: &AppId) -> Result<AppRecord, ControlError> {
        match self.state.app(&id.tenant, &id.app)? {
            Some(record) => Ok(record),
            None if self.state.tenant(&id.tenant)?.is_none() => {
                Err(ControlError::NoTenant(id.tenant.clone()))
            }
            None => Err(ControlError::NoApp(id.to_string())),
        }
    }

    /// Changes an app's limits without a redeploy: new requests run under
    /// them at once, requests in flight finish under the old ones.
    pub async fn set_limits(
        self: &Arc<Self>,
        id: &AppId,
        options: DeployOptions,
    ) -> Result<AppStatus, ControlError> {
        let record = self
            .update_app(id, |record| {
                record.limits = self.limits_for(Some(record), &options)?;
                record.egress = egress_settings(&record.egress, &options)?;
                if let Some(keep) = options.keep_versions {
                    if keep == 0 {
                        return Err(ControlError::BadOption(
                            "--keep-versions must be at least 1".into(),
                        ));
                    }
                    record.keep_versions = Some(keep);
                }
                if record.stateful.is_some()
                    && options
                        .strategy
                        .as_ref()
                        .is_some_and(|s| *s != dwcp_release::rollout::Strategy::Immediate)
                {
                    return Err(ControlError::BadOption(format!(
                        "{id} is stateful: its keys stay on the version their state belongs to, so it cannot split traffic (only --strategy immediate)"
                    )));
                }
                release_settings(&mut record.release, &options)?;
                placement_settings(&mut record.placement, record.stateful.is_some(), &options)?;
                if let Some(ttl) = options.cache_ttl_ms {
                    record.cache_ttl_ms = (ttl > 0).then_some(ttl);
                }
                self.check_memory_quota(&id.tenant, &id.app, record.limits.memory_bytes)
            })
            .await?;
        if options.keep_versions.is_some() {
            self.apply_retention(id).await?;
        }
        tracing::info!(tenant = %id.tenant, app = %id.app, limits = ?record.limits, egress = ?record.egress, "app settings changed");
        self.status(id)
    }

    /// Recycles an app's instances: idle ones are dropped, new requests get
    /// fresh ones, requests in flight finish.
    pub async fn restart(self: &Arc<Self>, id: &AppId) -> Result<(), ControlError> {
        self.update_app(id, |_| Ok(())).await?;
        tracing::info!(tenant = %id.tenant, app = %id.app, "restarted");
        Ok(())
    }

    /// Creates an empty tenant.
    pub async fn create_tenant(&self, name: &str) -> Result<TenantRecord, ControlError> {
        dwcp_store::validate_label(name)?;
        let _serial = self.serial.lock().await;
        if self.state.tenant(name)?.is_some() {
            return Err(ControlError::TenantExists(name.to_string()));
        }
        let record = TenantRecord {
            name: name.to_string(),
            created_at: unix_now(),
            quota: Default::default(),
        };
        self.state.put_tenant(&record)?;
        tracing::info!(tenant = name, "tenant created");
        Ok(record)
    }

    /// Every tenant with its apps, quota and live use.
    pub fn tenants(&self) -> Result<Vec<TenantSummary>, ControlError> {
        let apps = self.state.apps(None)?;
        Ok(self
            .state
            .tenants()?
            .into_iter()
            .map(|t| {
                let mine = apps.iter().filter(|a| a.tenant == t.name);
                TenantSummary {
                    apps: mine.clone().count(),
                    memory_per_instance_sum: mine.map(|a| a.limits.memory_bytes).sum(),
                    usage: self.gate(&t.name).usage(),
                    quota: t.quota,
                    created_at: t.created_at,
                    name: t.name,
                }
            })
            .collect())
    }

    /// Sets a tenant's quota. Refused, changing nothing, if its apps could
    /// not each run one instance under it.
    pub async fn set_quota(
        &self,
        name: &str,
        quota: TenantQuota,
    ) -> Result<TenantRecord, ControlError> {
        dwcp_store::validate_label(name)?;
        let _serial = self.serial.lock().await;
        let mut record = self
            .state
            .tenant(name)?
            .ok_or_else(|| ControlError::NoTenant(name.to_string()))?;
        if quota.instances == Some(0) {
            return Err(ControlError::BadOption(
                "--instances must be at least 1".into(),
            ));
        }
        if let Some(memory) = quota.memory_bytes {
            let apps = self.state.apps(Some(name))?;
            let need: u64 = apps.iter().map(|a| a.limits.memory_bytes).sum();
            if need > memory {
                return Err(ControlError::OverQuota(format!(
                    "a memory quota of {memory} bytes is below what tenant `{name}`'s {} apps need to run one instance each: {need} bytes",
                    apps.len()
                )));
            }
        }
        record.quota = quota;
        self.state.put_tenant(&record)?;
        self.gate(name).set_quota(quota);
        tracing::info!(tenant = name, ?quota, "quota set");
        Ok(record)
    }

    /// Deletes a tenant with all its apps, their artifacts and compiled code
    /// (unless another tenant's app uses the same bytes).
    pub async fn delete_tenant(&self, name: &str) -> Result<usize, ControlError> {
        dwcp_store::validate_label(name)?;
        let _serial = self.serial.lock().await;
        let (_, apps) = self
            .state
            .delete_tenant(name)?
            .ok_or_else(|| ControlError::NoTenant(name.to_string()))?;
        self.cache.purge(name, None, None);
        for app in &apps {
            self.apps.remove(&app.tenant, &app.app);
            self.cache.set_policy(&app.tenant, &app.app, None);
            self.telemetry.remove(&app.tenant, &app.app);
            self.forget_keys(&app.tenant, &app.app)?;
        }
        self.remove_unused(apps.iter().flat_map(|a| &a.versions))?;
        if let Ok(mut gates) = self.gates.lock() {
            gates.remove(name);
        }
        tracing::info!(tenant = name, apps = apps.len(), "tenant deleted");
        Ok(apps.len())
    }

    /// How many versions `record` keeps.
    pub(crate) fn keep_for(&self, record: &AppRecord) -> usize {
        record
            .keep_versions
            .unwrap_or(self.settings.keep_versions)
            .max(1) as usize
    }

    /// Prunes one app's versions to its retention setting now.
    async fn apply_retention(&self, id: &AppId) -> Result<(), ControlError> {
        let _serial = self.serial.lock().await;
        let mut record = self.record(id)?;
        let pruned =
            record.prune_versions_except(self.keep_for(&record), &self.pinned_versions(&record));
        if !pruned.is_empty() {
            self.state.put_app(&record)?;
            self.forget_versions(&record, &pruned);
        }
        Ok(())
    }

    /// After `pruned` left `record` (already stored): their files go unless
    /// still used. A file that cannot be removed is logged, not returned:
    /// the change that pruned them is done, and `dwcp gc` retries.
    pub(crate) fn forget_versions(&self, record: &AppRecord, pruned: &[VersionRecord]) {
        if pruned.is_empty() {
            return;
        }
        let names: Vec<&str> = pruned.iter().map(|v| v.version.as_str()).collect();
        tracing::info!(tenant = %record.tenant, app = %record.app, versions = ?names, "old versions removed (retention)");
        if let Err(e) = self.remove_unused(pruned.iter()) {
            tracing::warn!(tenant = %record.tenant, app = %record.app, "files of old versions not removed ({e}); `dwcp gc` will");
        }
    }

    /// Removes the artifacts and compiled code of `versions` that no stored
    /// version uses any more.
    fn remove_unused<'a>(
        &self,
        versions: impl Iterator<Item = &'a VersionRecord>,
    ) -> Result<(), ControlError> {
        for version in versions {
            if !self.state.artifact_in_use(&version.sha256)? {
                self.artifacts.remove(&version.sha256)?;
                self.runtime.aot_cache().remove(&version.sha256)?;
            }
        }
        Ok(())
    }

    /// The status of one app.
    pub fn status(&self, id: &AppId) -> Result<AppStatus, ControlError> {
        let r = self.record(id)?;
        let live = self.apps.get_app(&id.tenant, &id.app);
        let in_flight = live.as_ref().map_or(0, |l| {
            l.version().limits().concurrency - l.slots.available_permits() as u32
        });
        let active = r.active_version().cloned();
        let split = live.as_ref().and_then(|l| {
            let canary = l.canary.as_ref()?;
            let kind = if l.conversion.is_some() {
                "experiment"
            } else {
                "rollout"
            };
            Some(SplitSummary {
                kind,
                version: canary.arm.name().to_string(),
                percent: dwcp_release::split::percent(canary.weight_bp),
            })
        });
        Ok(AppStatus {
            split,
            host: format!("{}.{}.{}", r.app, r.tenant, self.settings.domain),
            sha256: active
                .as_ref()
                .map_or_else(String::new, |v| v.sha256.clone()),
            size: active.as_ref().map_or(0, |v| v.size),
            deployed_at: active.as_ref().map_or(0, |v| v.deployed_at),
            serving: live.is_some(),
            in_flight,
            limits: r.limits,
            egress: r.egress.clone(),
            keep_versions: self.keep_for(&r),
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
        let keys = match r.stateful {
            Some(_) => Some(self.keys_per_version(&r)?),
            None => None,
        };
        Ok(r.versions
            .iter()
            .map(|v| VersionInfo {
                keys: keys
                    .as_ref()
                    .map(|k| k.get(&v.version).copied().unwrap_or(0)),
                preinit: v.preinit.clone(),
                source_sha256: v.source_sha256.clone(),
                signed_by: v.signed_by.clone(),
                active: v.version == r.active,
                version: v.version.clone(),
                sha256: v.sha256.clone(),
                size: v.size,
                deployed_at: v.deployed_at,
            })
            .collect())
    }
}

/// The egress settings after an `apps set`: cleared first if asked, then
/// the new rules added (each validated, duplicates dropped).
fn egress_settings(
    current: &EgressSettings,
    options: &DeployOptions,
) -> Result<EgressSettings, ControlError> {
    let mut settings = if options.clear_egress {
        EgressSettings::default()
    } else {
        current.clone()
    };
    for rule in &options.allow_hosts {
        HostRule::parse(rule).map_err(ControlError::BadOption)?;
        if !settings.allow_hosts.contains(rule) {
            settings.allow_hosts.push(rule.clone());
        }
    }
    for cidr in &options.allow_private {
        parse_cidr(cidr).map_err(ControlError::BadOption)?;
        if !settings.allow_private.contains(cidr) {
            settings.allow_private.push(cidr.clone());
        }
    }
    Ok(settings)
}

/// Most config values and secrets one app may have together.
const MAX_ENV_ENTRIES: usize = 256;
/// Largest config value or secret, in bytes.
const MAX_ENV_VALUE: usize = 64 << 10;

/// Config and secret names are environment variable names.
/// Applies `apps set`'s release options to `settings`.
/// Applies `--replicas` and `--region`/`--pin-region` to an app's spec.
fn placement_settings(
    spec: &mut dwcp_store::PlacementSpec,
    stateful: bool,
    options: &DeployOptions,
) -> Result<(), ControlError> {
    if let Some(replicas) = options.replicas {
        if stateful && replicas > 1 {
            return Err(ControlError::BadOption(
                "a stateful app runs one replica in a cluster (each key's state lives with one instance); leave out --replicas".into(),
            ));
        }
        if replicas == 0 || replicas > 1000 {
            return Err(ControlError::BadOption(
                "--replicas must be between 1 and 1000".into(),
            ));
        }
        spec.replicas = Some(replicas);
    }
    if let Some(regions) = &options.regions {
        for region in regions {
            let valid = region.len() <= 64
                && region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if region.is_empty() || !valid {
                return Err(ControlError::BadOption(format!(
                    "region `{region}`: use letters, digits, `-`, `_` and `.` (or `any` to unpin)"
                )));
            }
        }
        spec.regions = regions.clone();
    }
    Ok(())
}

fn release_settings(
    settings: &mut dwcp_store::ReleaseSettings,
    options: &DeployOptions,
) -> Result<(), ControlError> {
    if let Some(strategy) = &options.strategy {
        settings.strategy = Some(strategy.clone());
    }
    if let Some(analysis) = options.analysis {
        settings.analysis = Some(analysis);
    }
    if let Some(header) = &options.user_header {
        let header = header.trim().to_ascii_lowercase();
        if hyper::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return Err(ControlError::BadOption(format!(
                "--user-header `{header}` is not a valid header name"
            )));
        }
        settings.user_header = Some(header);
    }
    if let Some(cookie) = &options.user_cookie {
        let cookie = cookie.trim();
        let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
        if cookie.is_empty() || !cookie.chars().all(token) {
            return Err(ControlError::BadOption(format!(
                "--user-cookie `{cookie}` is not a valid cookie name"
            )));
        }
        settings.user_cookie = Some(cookie.to_string());
    }
    Ok(())
}

/// An id for this run of the node: the start time's nanoseconds and the
/// process id (unique enough: runs of one node never overlap).
fn run_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ (u64::from(std::process::id()) << 32)).max(1)
}

/// The CLI's name of a strategy.
pub(crate) fn strategy_name(strategy: &dwcp_release::rollout::Strategy) -> &'static str {
    use dwcp_release::rollout::Strategy;
    match strategy {
        Strategy::Immediate => "immediate",
        Strategy::BlueGreen => "blue-green",
        Strategy::Canary { .. } => "canary",
    }
}

fn validate_env_name(name: &str) -> Result<(), ControlError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ControlError::BadOption(format!(
            "`{name}` is not a valid name: use letters, digits and '_' (not starting with a digit), at most 128"
        )))
    }
}

fn check_env_value(name: &str, value: &[u8]) -> Result<(), ControlError> {
    if value.len() > MAX_ENV_VALUE {
        return Err(ControlError::BadOption(format!(
            "`{name}` is {} bytes; values are limited to {MAX_ENV_VALUE}",
            value.len()
        )));
    }
    Ok(())
}

fn check_env_count(record: &AppRecord, adding: &str) -> Result<(), ControlError> {
    let exists = record.config.contains_key(adding) || record.secrets.contains_key(adding);
    if !exists && record.config.len() + record.secrets.len() >= MAX_ENV_ENTRIES {
        return Err(ControlError::BadOption(format!(
            "{}/{} has {MAX_ENV_ENTRIES} config values and secrets, the most an app may have",
            record.tenant, record.app
        )));
    }
    Ok(())
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
