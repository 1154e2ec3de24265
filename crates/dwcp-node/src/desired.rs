//! The node's side of the cluster's desired state: what operators change
//! through this node's admin API is published to the `dwcp_state` bucket,
//! and what they change through any other node is applied here.
//!
//! Publishing happens after the change worked here: a deploy is checked
//! (signature, compilation, blue-green check) by the node it was sent to,
//! and only then offered to the others, each of which checks it again
//! before it serves it: the artifact's SHA-256 against the record, the
//! publisher's signature against this node's trust, and compilation.
//!
//! What does not travel: secrets are sealed to each node's own key, so a
//! record arrives without them and keeps the ones set on this node; a
//! rollout's analysis runs on each node's own traffic (promote, pause or
//! abort through any node reaches all).
//!
//! Convergence: the bucket orders every change, and each node applies the
//! value it last saw for each key. A change made here and not yet
//! published holds back older values of the same key arriving meanwhile,
//! so this node never steps back to a value it has already passed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use dwcp_cluster::{DesiredState, StateEvent, StateKey};
use dwcp_store::{AppId, AppRecord, TenantRecord};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::admin::AdminState;
use crate::cluster::{Members, Placed};
use crate::control::{Control, ControlError};

/// The schema of the values this build writes and the newest it reads.
pub const SCHEMA: u32 = 1;

/// How long a change that could not be published waits to be tried again.
const RETRY_PUBLISH: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the placing node looks again (membership, capacity, specs).
const PLACE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// An app as the cluster holds it.
#[derive(Serialize, Deserialize)]
struct AppEntry {
    v: u32,
    /// The node the change was made on.
    origin: String,
    record: AppRecord,
}

/// A tenant as the cluster holds it.
#[derive(Serialize, Deserialize)]
struct TenantEntry {
    v: u32,
    origin: String,
    record: TenantRecord,
}

/// A tenant's flag document as the cluster holds it.
#[derive(Serialize, Deserialize)]
struct FlagsEntry {
    v: u32,
    origin: String,
    document: String,
}

/// A cache purge, as the cluster holds it.
#[derive(Serialize, Deserialize)]
struct PurgeEntry {
    v: u32,
    origin: String,
    #[serde(flatten)]
    scope: crate::edge_cache::PurgeScope,
}

/// A node's admission, as the cluster holds it.
#[derive(Serialize, Deserialize)]
struct NodeEntry {
    v: u32,
    origin: String,
    admission: String,
}

/// Where an app's replicas are, as the cluster holds it.
#[derive(Serialize, Deserialize)]
struct PlacementEntry {
    v: u32,
    #[serde(flatten)]
    placed: Placed,
}

/// Reads just the schema of a value, whatever else it holds.
#[derive(Deserialize)]
struct Schema {
    v: u32,
}

/// What to publish after a change made here.
#[derive(Debug, Clone)]
enum Change {
    /// The app's record as stored now (deleted if absent).
    App(AppId),
    /// The tenant's record as stored now (deleted with its apps if absent).
    Tenant(String),
    /// The tenant's flag document as stored now.
    Flags(String),
    /// A node's admission (`None` or `active`: takes work as usual).
    Admission(String, Option<String>),
    /// A cache purge, for every node.
    Purge(crate::edge_cache::PurgeScope),
    /// A stateful app's keys moved (`dwcp migrate`): who serves which now,
    /// and why.
    Owners(AppId, crate::stateful::OwnerTable, String),
}

impl Change {
    fn key(&self) -> StateKey {
        match self {
            Change::App(id) => StateKey::App {
                tenant: id.tenant.clone(),
                app: id.app.clone(),
            },
            Change::Tenant(t) => StateKey::Tenant(t.clone()),
            Change::Flags(t) => StateKey::Flags(t.clone()),
            Change::Admission(node, _) => StateKey::Node(node.clone()),
            Change::Purge(_) => StateKey::Purge,
            Change::Owners(id, _, _) => StateKey::Placement {
                tenant: id.tenant.clone(),
                app: id.app.clone(),
            },
        }
    }
}

/// The queue of changes made here, waiting to be published.
pub struct Publisher {
    tx: mpsc::UnboundedSender<Change>,
    /// Changes queued and not yet published, by key: values of those keys
    /// arriving meanwhile are older than what this node has.
    pending: Mutex<HashMap<StateKey, usize>>,
}

impl Publisher {
    /// Sets a node's admission across the cluster (`cordoned`,
    /// `draining`, or `None` for active).
    pub fn set_admission(&self, node: &str, admission: Option<&str>) {
        self.queue(Change::Admission(
            node.to_string(),
            admission.map(str::to_string),
        ));
    }

    /// Writes where a stateful app's keys are after a migration into its
    /// placement (older placements arriving meanwhile are held back).
    pub fn moved(&self, id: AppId, table: crate::stateful::OwnerTable, reason: String) {
        self.queue(Change::Owners(id, table, reason));
    }

    /// Has every node purge its cache of `scope`.
    pub fn purge(&self, scope: crate::edge_cache::PurgeScope) {
        self.queue(Change::Purge(scope));
    }

    /// Queues `change` again after [`RETRY_PUBLISH`]; meanwhile older
    /// values of its key are held back, as for any change not yet out.
    fn retry_later(self: &Arc<Self>, change: Change) {
        *lock(&self.pending).entry(change.key()).or_default() += 1;
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RETRY_PUBLISH).await;
            let key = change.key();
            this.queue(change);
            this.done(&key);
        });
    }

    fn queue(&self, change: Change) {
        let key = change.key();
        *lock(&self.pending).entry(key).or_default() += 1;
        let _ = self.tx.send(change);
    }

    fn done(&self, key: &StateKey) {
        let mut pending = lock(&self.pending);
        if let Some(n) = pending.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                pending.remove(key);
            }
        }
    }

    fn holds_back(&self, key: &StateKey) -> bool {
        lock(&self.pending).contains_key(key)
    }
}

/// A publisher and the receiving end its sync loop drains.
pub fn publisher() -> (Arc<Publisher>, PublishQueue) {
    let (tx, rx) = mpsc::unbounded_channel();
    let publisher = Arc::new(Publisher {
        tx,
        pending: Mutex::default(),
    });
    (publisher, PublishQueue(rx))
}

/// The changes made here, as the sync loop receives them.
pub struct PublishQueue(mpsc::UnboundedReceiver<Change>);

/// Admin middleware: after a change that worked, queues what it touched
/// for publishing. Reads, failures and per-node actions (snapshots,
/// restarts, keys, tokens) are not the cluster's desired state.
pub async fn publish_changes(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let change = match &state.publisher {
        Some(_) if method != Method::GET && method != Method::HEAD => {
            change_of(request.uri().path())
        }
        _ => None,
    };
    let response = next.run(request).await;
    if let (Some(change), Some(publisher)) = (change, &state.publisher)
        && response.status().is_success()
    {
        publisher.queue(change);
    }
    response
}

/// The desired-state entity an admin path changes.
fn change_of(path: &str) -> Option<Change> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v1", "apps", _, _, "snapshots", ..]
        | ["v1", "apps", _, _, "restart"]
        | ["v1", "apps", _, _, "migrate"] => None,
        ["v1", "apps", tenant, app, ..] => AppId::new(tenant, app).ok().map(Change::App),
        ["v1", "tenants", tenant, ..] => dwcp_store::validate_label(tenant)
            .ok()
            .map(|_| Change::Tenant(tenant.to_string())),
        ["v1", "flags", tenant, ..] => dwcp_store::validate_label(tenant)
            .ok()
            .map(|_| Change::Flags(tenant.to_string())),
        _ => None,
    }
}

/// What the sync loop works with.
pub struct Sync {
    /// The control plane it applies to and publishes from.
    pub control: Arc<Control>,
    /// The trust signatures are checked against.
    pub trust: Arc<crate::trust::TrustStore>,
    /// The tenants' flags.
    pub flags: Arc<crate::flags::FlagStore>,
    /// The queue of local changes.
    pub publisher: Arc<Publisher>,
    /// This node's id (the origin of what it publishes).
    pub node_id: String,
    /// The members and placements, once joined.
    pub members: Option<Arc<Members>>,
    /// The demand window: demand moves an app's replicas at most once per
    /// tenth of it.
    pub demand_window: std::time::Duration,
    /// Artifacts this node has put in the object store (by SHA-256): an
    /// app's later changes (config, limits) need not read and offer its
    /// versions' bytes again.
    pub uploaded: Mutex<HashSet<String>>,
}

/// Keys this node has seen in the cluster, kept in the data directory: a
/// local app whose key is gone from the cluster was deleted while this
/// node was away (delete it here too), one never seen is this node's own
/// (publish it).
struct SeenKeys {
    path: PathBuf,
    keys: BTreeSet<String>,
}

impl SeenKeys {
    fn open(data_dir: &std::path::Path) -> SeenKeys {
        let path = data_dir.join("cluster-seen.json");
        let keys = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        SeenKeys { path, keys }
    }

    fn contains(&self, key: &StateKey) -> bool {
        self.keys.contains(&key.to_key())
    }

    fn set(&mut self, key: &StateKey, seen: bool) {
        let changed = if seen {
            self.keys.insert(key.to_key())
        } else {
            self.keys.remove(&key.to_key())
        };
        if changed {
            let bytes = serde_json::to_vec(&self.keys).unwrap_or_default();
            if let Err(e) = dwcp_store::write_atomically(&self.path, &bytes) {
                tracing::warn!("cannot record the cluster keys seen: {e}");
            }
        }
    }
}

impl Sync {
    /// Publishes local changes and applies the cluster's, until `events`
    /// or the queue ends.
    pub async fn run(
        self,
        state: DesiredState,
        events: impl Stream<Item = StateEvent> + Send + 'static,
        queue: PublishQueue,
    ) {
        let mut seen = SeenKeys::open(&self.control.data_dir);
        let mut queue = queue.0;
        let mut events: std::pin::Pin<Box<dyn Stream<Item = StateEvent> + Send>> = Box::pin(events);
        // Keys in the cluster during the initial load.
        let mut initial: Option<BTreeSet<StateKey>> = Some(BTreeSet::new());
        let mut placing = tokio::time::interval(PLACE_EVERY);
        placing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = placing.tick(), if initial.is_none() => self.place(&state).await,
                change = queue.recv() => {
                    let Some(change) = change else { break };
                    let key = change.key();
                    if let Err(e) = self.publish(&state, &change, &mut seen).await {
                        // The servers are out of reach, say: what is stored
                        // here goes out when they answer again.
                        tracing::warn!(key = %key.to_key(), "not published to the cluster yet ({e}); retrying in {RETRY_PUBLISH:?}");
                        self.publisher.retry_later(change.clone());
                    }
                    self.publisher.done(&key);
                    // A change made here may have installed an app this
                    // node is not placed to serve.
                    if let Change::App(id) = &change
                        && let Err(e) = self.serve_as_placed(id).await
                    {
                        tracing::warn!(app = %id, "{e}");
                    }
                }
                event = events.next() => match event {
                    // The servers went away (a leaf's hub down, say): what
                    // is applied keeps serving; watch again (the current
                    // values come again, and applying them is idempotent).
                    None => {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        match state.watch().await {
                            Ok(again) => events = Box::pin(again),
                            Err(e) => tracing::debug!("desired-state watch: {e}"),
                        }
                    }
                    Some(StateEvent::Current) => {
                        if let Some(keys) = initial.take() {
                            self.adopt_or_forget(&state, &keys, &mut seen).await;
                        }
                    }
                    Some(StateEvent::Changed { key, value, revision }) => {
                        if let Some(keys) = initial.as_mut() {
                            keys.insert(key.clone());
                        }
                        if self.publisher.holds_back(&key) {
                            continue;
                        }
                        seen.set(&key, value.is_some());
                        if let Err(e) = self.apply(&state, &key, value.as_deref(), revision).await {
                            tracing::warn!(key = %key.to_key(), revision, "not applied: {e}");
                        }
                    }
                }
            }
        }
    }

    /// After the initial load: this node's tenants, apps and flags the
    /// cluster has never had are published; those it had and no longer
    /// has were deleted while this node was away.
    async fn adopt_or_forget(
        &self,
        state: &DesiredState,
        in_cluster: &BTreeSet<StateKey>,
        seen: &mut SeenKeys,
    ) {
        let local = match self.local_keys() {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!("cannot list this node's state: {e}");
                return;
            }
        };
        for change in local {
            let key = change.key();
            if in_cluster.contains(&key) {
                continue;
            }
            let result = if seen.contains(&key) {
                tracing::info!(key = %key.to_key(), "deleted in the cluster while this node was away");
                seen.set(&key, false);
                self.apply(state, &key, None, 0).await
            } else {
                self.publish(state, &change, seen).await
            };
            if let Err(e) = result {
                tracing::warn!(key = %key.to_key(), "{e}");
            }
        }
    }

    fn local_keys(&self) -> Result<Vec<Change>, ControlError> {
        let state = &self.control.state;
        let mut out: Vec<Change> = state
            .tenants()?
            .into_iter()
            .map(|t| Change::Tenant(t.name))
            .collect();
        for r in state.apps(None)? {
            out.push(Change::App(AppId {
                tenant: r.tenant,
                app: r.app,
            }));
        }
        out.extend(
            state
                .all_flags()?
                .into_iter()
                .map(|(t, _)| Change::Flags(t)),
        );
        Ok(out)
    }

    /// Writes what this node now stores for `change` to the cluster.
    async fn publish(
        &self,
        state: &DesiredState,
        change: &Change,
        seen: &mut SeenKeys,
    ) -> anyhow::Result<()> {
        let control = &self.control;
        let origin = self.node_id.clone();
        let key = change.key();
        let value = match change {
            Change::App(id) => match control.state.app(&id.tenant, &id.app)? {
                Some(mut record) => {
                    for v in &record.versions {
                        if self.is_uploaded(&v.sha256) {
                            continue;
                        }
                        let bytes = tokio::fs::read(control.artifacts.path(&v.sha256)).await?;
                        state.put_artifact(&v.sha256, &bytes).await?;
                        self.mark_uploaded(&v.sha256);
                    }
                    record.secrets = BTreeMap::new();
                    Some(serde_json::to_vec(&AppEntry {
                        v: SCHEMA,
                        origin,
                        record,
                    })?)
                }
                None => None,
            },
            Change::Tenant(name) => match control.state.tenant(name)? {
                Some(record) => Some(serde_json::to_vec(&TenantEntry {
                    v: SCHEMA,
                    origin,
                    record,
                })?),
                None => {
                    // Its apps and flags went with it.
                    for other in state.keys().await? {
                        let of_tenant = match &other {
                            StateKey::App { tenant, .. } | StateKey::Placement { tenant, .. } => {
                                tenant == name
                            }
                            StateKey::Flags(t) => t == name,
                            StateKey::Tenant(_) | StateKey::Node(_) | StateKey::Purge => false,
                        };
                        if of_tenant {
                            state.delete(&other).await?;
                            seen.set(&other, false);
                        }
                    }
                    None
                }
            },
            Change::Purge(scope) => Some(serde_json::to_vec(&PurgeEntry {
                v: SCHEMA,
                origin,
                scope: scope.clone(),
            })?),
            Change::Admission(_, admission) => admission
                .as_ref()
                .filter(|a| *a != "active")
                .map(|a| {
                    serde_json::to_vec(&NodeEntry {
                        v: SCHEMA,
                        origin,
                        admission: a.clone(),
                    })
                })
                .transpose()?,
            // Written over what else the placement says, not in its place.
            Change::Owners(_, table, reason) => {
                return self.write_owners(state, &key, table, reason).await;
            }
            Change::Flags(tenant) => match control.state.flags(tenant)? {
                Some(document) => Some(serde_json::to_vec(&FlagsEntry {
                    v: SCHEMA,
                    origin,
                    document,
                })?),
                None => None,
            },
        };
        match value {
            Some(value) => {
                state.put(&key, value).await?;
                seen.set(&key, true);
            }
            None => {
                state.delete(&key).await?;
                seen.set(&key, false);
            }
        }
        tracing::debug!(key = %key.to_key(), "published");
        Ok(())
    }

    /// Makes this node hold what the cluster says for `key`.
    async fn apply(
        &self,
        state: &DesiredState,
        key: &StateKey,
        value: Option<&[u8]>,
        revision: u64,
    ) -> anyhow::Result<()> {
        if let Some(value) = value {
            let schema: Schema = serde_json::from_slice(value)?;
            if schema.v > SCHEMA {
                anyhow::bail!(
                    "written by a newer release (schema {} > {SCHEMA}): upgrade this node",
                    schema.v
                );
            }
        }
        let control = &self.control;
        match (key, value) {
            (StateKey::App { tenant, app }, Some(value)) => {
                let entry: AppEntry = serde_json::from_slice(value)?;
                let id = AppId::new(tenant, app)?;
                self.apply_app(state, &id, entry.record).await
            }
            (StateKey::App { tenant, app }, None) => {
                let id = AppId::new(tenant, app)?;
                match control.delete(&id).await {
                    Ok(_) | Err(ControlError::NoApp(_)) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            (StateKey::Tenant(_), Some(value)) => {
                let entry: TenantEntry = serde_json::from_slice(value)?;
                let name = entry.record.name.clone();
                let local = control.state.tenant(&name)?;
                if local.is_none() {
                    match control.create_tenant(&name).await {
                        Ok(_) | Err(ControlError::TenantExists(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                if local.is_none_or(|l| l.quota != entry.record.quota) {
                    control.set_quota(&name, entry.record.quota).await?;
                }
                Ok(())
            }
            (StateKey::Tenant(name), None) => match control.delete_tenant(name).await {
                Ok(_) => {
                    self.flags.forget(name);
                    Ok(())
                }
                Err(ControlError::NoTenant(_)) => Ok(()),
                Err(e) => Err(e.into()),
            },
            (StateKey::Flags(tenant), Some(value)) => {
                let entry: FlagsEntry = serde_json::from_slice(value)?;
                if control.state.flags(tenant)?.as_deref() != Some(entry.document.as_str()) {
                    self.flags.import(tenant, &entry.document, false)?;
                }
                Ok(())
            }
            (StateKey::Flags(tenant), None) => {
                self.flags.delete_all(tenant)?;
                Ok(())
            }
            (StateKey::Purge, Some(value)) => {
                let entry: PurgeEntry = serde_json::from_slice(value)?;
                // The node it was asked on purged at once.
                if entry.origin != self.node_id {
                    let tenants: Vec<String> = control
                        .state
                        .tenants()?
                        .into_iter()
                        .map(|t| t.name)
                        .collect();
                    let removed = entry.scope.apply(&control.cache, &tenants);
                    tracing::info!(scope = ?entry.scope, removed, "cache purged for the cluster");
                }
                Ok(())
            }
            (StateKey::Purge, None) => Ok(()),
            (StateKey::Node(node), value) => {
                let admission = match value {
                    Some(value) => Some(serde_json::from_slice::<NodeEntry>(value)?.admission),
                    None => None,
                };
                tracing::info!(%node, admission = admission.as_deref().unwrap_or("active"), "node admission");
                if let Some(members) = &self.members {
                    members.set_admission(node, admission);
                }
                Ok(())
            }
            (StateKey::Placement { tenant, app }, value) => {
                let placed = match value {
                    Some(value) => {
                        let entry: PlacementEntry = serde_json::from_slice(value)?;
                        Some(Placed {
                            revision,
                            ..entry.placed
                        })
                    }
                    None => None,
                };
                if let Some(members) = &self.members {
                    members.set_placement(&format!("{tenant}/{app}"), placed);
                }
                self.serve_as_placed(&AppId::new(tenant, app)?).await
            }
        }
    }

    /// Fetches and checks what `record` needs that this node lacks, then
    /// stores and serves it.
    async fn apply_app(
        &self,
        state: &DesiredState,
        id: &AppId,
        mut record: AppRecord,
    ) -> anyhow::Result<()> {
        let control = &self.control;
        let local = control.state.app(&id.tenant, &id.app)?;
        record.secrets = local
            .as_ref()
            .map(|l| l.secrets.clone())
            .unwrap_or_default();
        if local.as_ref() == Some(&record) {
            return Ok(());
        }
        for v in &record.versions {
            // A version this node already holds as it is was checked when
            // it came; any other is checked now, even when its bytes are
            // here already (the signature binds them to this app and name).
            let known = local.as_ref().is_some_and(|l| l.versions.contains(v));
            if !known {
                self.check_signature(id, v)?;
            }
            if control.artifacts.path(&v.sha256).exists() {
                continue;
            }
            let bytes = state
                .get_artifact(&v.sha256, control.settings.max_upload)
                .await?;
            let actual = dwcp_store::sha256_hex(&bytes);
            anyhow::ensure!(
                actual == v.sha256,
                "{id} {}: the cluster's artifact has SHA-256 {actual}, the record names {}: refused",
                v.version,
                v.sha256
            );
            control.artifacts.put(&bytes)?;
            // Came from the store: no need to offer it back.
            self.mark_uploaded(&v.sha256);
        }
        let serve = self.serves_here(&record);
        control.apply_cluster_record(record, serve).await?;
        tracing::info!(tenant = %id.tenant, app = %id.app, "applied from the cluster");
        Ok(())
    }

    fn is_uploaded(&self, sha256: &str) -> bool {
        lock(&self.uploaded).contains(sha256)
    }

    fn mark_uploaded(&self, sha256: &str) {
        lock(&self.uploaded).insert(sha256.to_string());
    }

    /// Whether this node serves `record`: every node does, unless the app
    /// asks for some replicas or regions only, when the placement decides.
    fn serves_here(&self, record: &AppRecord) -> bool {
        if record.placement_spec().is_everywhere() {
            return true;
        }
        let key = format!("{}/{}", record.tenant, record.app);
        self.members
            .as_ref()
            .and_then(|m| m.placement(&key))
            .is_some_and(|p| p.holds(&self.node_id))
    }

    /// Writes `table` into a placement record, over whatever else changed
    /// it meanwhile (compare-and-set, a few tries).
    async fn write_owners(
        &self,
        state: &DesiredState,
        key: &StateKey,
        table: &crate::stateful::OwnerTable,
        reason: &str,
    ) -> anyhow::Result<()> {
        for _ in 0..5 {
            let current = state.get(key).await?;
            let (mut placed, revision) = match &current {
                Some((bytes, revision)) => (
                    serde_json::from_slice::<PlacementEntry>(bytes)?.placed,
                    *revision,
                ),
                None => (Placed::default(), 0),
            };
            placed.nodes = vec![table.all.clone()];
            placed.keys = table.keys.clone();
            placed.reasons = vec![reason.to_string()];
            placed.decided_by = self.node_id.clone();
            placed.decided_at = dwcp_store::unix_now();
            let entry = PlacementEntry { v: SCHEMA, placed };
            if state
                .put_if(key, serde_json::to_vec(&entry)?, revision)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        anyhow::bail!("the placement kept changing under five writes")
    }

    /// Starts or stops serving `id` here, as its placement now says.
    async fn serve_as_placed(&self, id: &AppId) -> anyhow::Result<()> {
        let Some(record) = self.control.state.app(&id.tenant, &id.app)? else {
            return Ok(());
        };
        let placed = self
            .members
            .as_ref()
            .is_some_and(|m| m.placement(&format!("{}/{}", id.tenant, id.app)).is_some());
        if !record.placement_spec().is_everywhere() && !placed {
            // Not placed yet: whoever serves it now goes on until it is.
            return Ok(());
        }
        // A stateful app's keys go where the placement says, from before
        // its first request here; not while a migration's own placement
        // is on its way out (what this node has then is older).
        let moving = self.publisher.holds_back(&StateKey::Placement {
            tenant: id.tenant.clone(),
            app: id.app.clone(),
        });
        if !moving
            && let Some(table) = self
                .members
                .as_ref()
                .and_then(|m| m.placement(&format!("{}/{}", id.tenant, id.app)))
                .and_then(|p| p.owner_table())
            && let Some(keyed) = self.control.keyed_entry(&record)
        {
            keyed.set_owners(crate::stateful::Owners::from_table(&table, &self.node_id));
        }
        let serve = self.serves_here(&record);
        let live = self.control.apps.get_app(&id.tenant, &id.app).is_some();
        if serve != live {
            tracing::info!(tenant = %id.tenant, app = %id.app, serve, "placement changed");
            self.control.apply_cluster_record(record, serve).await?;
        }
        Ok(())
    }

    /// On the placing node (the live member with the smallest id): places
    /// the replicas of every app that limits them, and writes each changed
    /// decision with compare-and-set (another node that also thought it
    /// placed loses, and reads the winner's).
    async fn place(&self, state: &DesiredState) {
        let Some(members) = &self.members else {
            return;
        };
        if !members.is_leader() {
            return;
        }
        let records = match self.control.state.apps(None) {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!("placement: {e}");
                return;
            }
        };
        // Each replica placed in this pass takes its share of its node's
        // capacity here, so that apps spread rather than all choosing the
        // node that looked emptiest at the start.
        let mut views = members.node_views();
        let mut placements = members.placements();
        for record in records {
            let key = format!("{}/{}", record.tenant, record.app);
            let current = placements.remove(&key);
            let spec = record.placement_spec();
            if spec.is_everywhere() {
                if current.is_some() {
                    self.write_placement(state, &record.tenant, &record.app, None, current)
                        .await;
                }
                continue;
            }
            let spec = &spec;
            let in_regions = views
                .iter()
                .filter(|n| spec.regions.is_empty() || spec.regions.contains(&n.region))
                .count() as u32;
            let mut nodes = current.as_ref().map_or_else(Vec::new, |c| c.nodes.clone());
            let mut reasons = Vec::new();
            // A stateful app's state moves by migration only: a demand
            // move would start it afresh elsewhere.
            if let (Some(budget), Some(c), None) = (spec.replicas, &current, &record.stateful) {
                let cooled = dwcp_store::unix_now().saturating_sub(c.decided_at)
                    >= (self.demand_window.as_secs() / 10).max(1);
                if cooled {
                    let mut demand = members.demand(&key);
                    if !spec.regions.is_empty() {
                        demand.retain(|region, _| spec.regions.contains(region));
                    }
                    reasons = follow_demand(&demand, budget, &record, &views, &mut nodes);
                }
            }
            // A stateful app stays on a live node being drained until its
            // keys are migrated away (`Migrations::move_off` does that):
            // placing it elsewhere now would start them afresh there.
            let stateful_views;
            let views_here = if record.stateful.is_some() {
                stateful_views = views
                    .iter()
                    .cloned()
                    .map(|mut v| {
                        v.keeps_work |= nodes.contains(&v.id);
                        v
                    })
                    .collect::<Vec<_>>();
                &stateful_views
            } else {
                &views
            };
            let mut decided = dwcp_mesh::placement::place(
                &dwcp_mesh::placement::AppSpec {
                    replicas: spec.replicas.unwrap_or(in_regions),
                    pin_regions: spec.regions.clone(),
                    memory_bytes: record.limits.memory_bytes,
                },
                views_here,
                &nodes,
            );
            reasons.append(&mut decided.reasons);
            decided.reasons = reasons;
            for view in views.iter_mut().filter(|v| decided.nodes.contains(&v.id)) {
                view.free_memory = view.free_memory.saturating_sub(record.limits.memory_bytes);
                view.free_instances = view.free_instances.saturating_sub(1);
            }
            // Keys moved apart stay where they are, also while their node
            // is away: only a migration moves a key's state.
            let keys = current.as_ref().map(|c| c.keys.clone()).unwrap_or_default();
            if current
                .as_ref()
                .is_some_and(|c| c.nodes == decided.nodes && c.keys == keys)
            {
                continue;
            }
            let placed = Placed {
                nodes: decided.nodes,
                reasons: decided.reasons,
                decided_by: self.node_id.clone(),
                decided_at: dwcp_store::unix_now(),
                keys,
                revision: 0,
            };
            self.write_placement(state, &record.tenant, &record.app, Some(placed), current)
                .await;
        }
        // Placements of apps that are gone.
        for (key, current) in placements {
            if let Some((tenant, app)) = key.split_once('/') {
                self.write_placement(state, tenant, app, None, Some(current))
                    .await;
            }
        }
    }

    async fn write_placement(
        &self,
        state: &DesiredState,
        tenant: &str,
        app: &str,
        placed: Option<Placed>,
        current: Option<Placed>,
    ) {
        let key = StateKey::Placement {
            tenant: tenant.into(),
            app: app.into(),
        };
        let written = match &placed {
            Some(placed) => {
                let entry = PlacementEntry {
                    v: SCHEMA,
                    placed: placed.clone(),
                };
                let revision = current.as_ref().map_or(0, |c| c.revision);
                match serde_json::to_vec(&entry) {
                    Ok(bytes) => state
                        .put_if(&key, bytes, revision)
                        .await
                        .map(|r| r.is_some()),
                    Err(e) => Err(e.into()),
                }
            }
            None => state.delete(&key).await.map(|()| true),
        };
        match written {
            Ok(true) => {
                if let Some(p) = &placed {
                    tracing::info!(%tenant, %app, nodes = ?p.nodes, reasons = ?p.reasons, "placed");
                }
            }
            Ok(false) => tracing::debug!(%tenant, %app, "another node placed it first"),
            Err(e) => tracing::warn!(%tenant, %app, "placement not written: {e}"),
        }
    }

    /// The version's publisher signature, checked against this node's
    /// trust as an upload's is.
    fn check_signature(&self, id: &AppId, v: &dwcp_store::VersionRecord) -> anyhow::Result<()> {
        use base64::Engine;
        let (Some(key_id), Some(signature)) = (&v.signed_by, &v.signature) else {
            anyhow::bail!(
                "{id} {} carries no signature: refused (deploy it again, signed)",
                v.version
            );
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| anyhow::anyhow!("{id} {}: the signature is not base64", v.version))?;
        let signed = v.source_sha256.as_deref().unwrap_or(&v.sha256);
        let statement =
            dwcp_crypto::trust::artifact_statement(&id.tenant, &id.app, &v.version, signed);
        self.trust
            .verify_artifact(&statement, key_id, &signature, dwcp_store::unix_now())
            .map_err(|e| anyhow::anyhow!("{id} {}: signature refused: {e}", v.version))?;
        Ok(())
    }
}

/// Moves `nodes` (an app's replicas) toward where its requests come
/// from, as `dwcp_mesh::demand` decides; the reasons, with the numbers.
fn follow_demand(
    demand: &BTreeMap<String, u64>,
    budget: u32,
    record: &AppRecord,
    views: &[dwcp_mesh::placement::NodeView],
    nodes: &mut Vec<String>,
) -> Vec<String> {
    use dwcp_mesh::demand::{DemandPolicy, Move, moves};
    let region_of = |node: &str| {
        views
            .iter()
            .find(|v| v.id == node)
            .map(|v| v.region.clone())
    };
    let mut by_region: BTreeMap<String, u32> = BTreeMap::new();
    for node in nodes.iter() {
        if let Some(region) = region_of(node) {
            *by_region.entry(region).or_default() += 1;
        }
    }
    let total: u64 = demand.values().sum();
    let mut reasons = Vec::new();
    for step in moves(demand, &by_region, budget, &DemandPolicy::default()) {
        match step {
            Move::Remove { region, share } => {
                let at = nodes
                    .iter()
                    .rposition(|n| region_of(n).as_deref() == Some(region.as_str()));
                if let Some(at) = at {
                    let node = nodes.remove(at);
                    reasons.push(format!(
                        "demand: {region} sent {:.1}% of {total} requests in the window: its replica on {node} goes",
                        share * 100.0
                    ));
                }
            }
            Move::Add { region, share } => {
                let best = views
                    .iter()
                    .filter(|v| v.region == region && v.schedulable && !nodes.contains(&v.id))
                    .filter(|v| v.free_memory >= record.limits.memory_bytes && v.free_instances > 0)
                    .max_by(|a, b| a.free_memory.cmp(&b.free_memory).then(b.id.cmp(&a.id)));
                if let Some(v) = best {
                    nodes.push(v.id.clone());
                    reasons.push(format!(
                        "demand: {region} sent {:.1}% of {total} requests in the window with no replica: placed on {}",
                        share * 100.0,
                        v.id
                    ));
                }
            }
        }
    }
    reasons
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Control {
    /// What this node can still give instances: its pool's memory and
    /// instance slots, less what serves now.
    pub(crate) fn free_capacity(&self) -> (u64, u32) {
        let settings = self.runtime.settings();
        let (mut memory, mut instances) = (0u64, 0u32);
        for gate in self.all_gates() {
            let used = gate.usage();
            memory = memory.saturating_add(used.memory_bytes);
            instances = instances.saturating_add(used.instances);
        }
        let total = u64::from(settings.pool_instances).saturating_mul(settings.max_memory);
        (
            total.saturating_sub(memory),
            settings.pool_instances.saturating_sub(instances),
        )
    }

    /// Stores an app record that came from the cluster and serves it,
    /// removing the files of versions it no longer has.
    pub(crate) async fn apply_cluster_record(
        self: &Arc<Self>,
        record: AppRecord,
        serve: bool,
    ) -> Result<(), ControlError> {
        self.blocking_under_lock("cluster apply", move |this| {
            let before = this.state.app(&record.tenant, &record.app)?;
            if before.is_none() && this.state.tenant(&record.tenant)?.is_none() {
                tracing::info!(tenant = %record.tenant, "tenant created by the cluster");
            }
            if before.as_ref() != Some(&record) {
                this.state.put_app(&record)?;
            }
            let key = format!("{}/{}", record.tenant, record.app);
            let mut held = lock(&this.held_elsewhere);
            if serve {
                held.remove(&key);
            } else {
                held.insert(key);
            }
            drop(held);
            let served = if serve {
                this.activate(&record).map(drop)
            } else {
                // Held here (another node serves it): requests are
                // forwarded, and their answers cached here by its rules.
                this.apps.remove(&record.tenant, &record.app);
                this.cache.set_policy(
                    &record.tenant,
                    &record.app,
                    Some(crate::edge_cache::policy_of(&record)),
                );
                Ok(())
            };
            if let Some(before) = before {
                let gone: Vec<_> = before
                    .versions
                    .into_iter()
                    .filter(|v| !record.versions.iter().any(|n| n.version == v.version))
                    .collect();
                this.forget_versions(&record, &gone);
            }
            served.inspect_err(|_| {
                this.apps.set_unavailable(
                    &record.tenant,
                    &record.app,
                    crate::apps::Unavailable::Failed,
                );
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths_name_what_they_change() {
        let app = |p: &str| match change_of(p) {
            Some(Change::App(id)) => Some(id.to_string()),
            _ => None,
        };
        assert_eq!(
            app("/v1/apps/acme/shop/versions").as_deref(),
            Some("acme/shop")
        );
        assert_eq!(app("/v1/apps/acme/shop").as_deref(), Some("acme/shop"));
        assert_eq!(
            app("/v1/apps/acme/shop/rollout/promote").as_deref(),
            Some("acme/shop")
        );
        assert!(change_of("/v1/apps/acme/shop/snapshots").is_none());
        assert!(change_of("/v1/apps/acme/shop/restart").is_none());
        assert!(change_of("/v1/keys").is_none());
        assert!(change_of("/v1/apps/Bad_Name/x").is_none());
        assert!(
            matches!(change_of("/v1/tenants/acme/quota"), Some(Change::Tenant(t)) if t == "acme")
        );
        assert!(
            matches!(change_of("/v1/flags/acme/flags/x/enable"), Some(Change::Flags(t)) if t == "acme")
        );
    }
}
