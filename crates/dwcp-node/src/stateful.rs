//! Stateful apps: one long-lived instance per key, checkpointed into the
//! node's [`CheckpointStore`], hibernated when idle and woken on demand.
//!
//! A request names its key in a header (`x-dwcp-key` unless the app says
//! otherwise). Each key has a slot behind an async mutex: requests to one
//! key run one at a time, in the order they arrived (tokio's mutex is
//! fair). The slot holds the key's live instance, if it has one; without
//! one, the next request wakes the key from its latest checkpoint into a
//! fresh instance of the version that checkpoint belongs to (keys stay on
//! their version; new keys go to the active one). With per-request
//! checkpoints (the default) the response leaves only once the state it
//! produced is durable: an acknowledged request is never lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dwcp_runtime::{AppVersion, KeyError, KeyInstance, ResponseBody, text_response};
use dwcp_store::{CheckpointMeta, CheckpointStore, StatefulSettings, key_scope, unix_now};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use serde::Serialize;

use crate::tenants::{TenantGate, TenantSlot};

mod moving;

pub use moving::{OwnerTable, Owners};

/// Longest key a request may name, in bytes.
pub const MAX_KEY_LEN: usize = 128;

/// One key's slot.
#[derive(Default)]
struct KeySlot {
    live: Option<KeyInstance>,
    /// The live instance's place in its tenant's quota, held as long as
    /// the instance lives (between requests too).
    share: Option<TenantSlot>,
    /// The key's newest checkpoint; `None` until read from the store, then
    /// `Some(None)` for a key without one.
    latest: Option<Option<CheckpointMeta>>,
    /// The checkpoint the live instance's state last matched: the base of
    /// its next delta.
    base: Option<u64>,
    /// Served requests since the last checkpoint.
    dirty: bool,
    /// The live instance was just restored from a checkpoint.
    woken: bool,
    last_used: Option<Instant>,
}

impl KeySlot {
    /// Drops the live instance and its quota share: the key's state is its
    /// last checkpoint.
    fn let_go(&mut self) {
        self.live = None;
        self.share = None;
    }
}

/// A stateful app's keys, across its versions.
pub struct KeyedApp {
    tenant: String,
    /// The tenant's quota: every live key's instance counts in it.
    gate: Arc<TenantGate>,
    app: String,
    settings: Mutex<StatefulSettings>,
    checkpoints: Arc<CheckpointStore>,
    /// Seals checkpoints before they are stored, opens them after.
    seal: Arc<crate::seal::CheckpointSeal>,
    /// Every version that serves keys: the active one and those keys stay on.
    versions: Mutex<HashMap<String, Arc<AppVersion>>>,
    keys: Mutex<HashMap<String, Arc<tokio::sync::Mutex<KeySlot>>>>,
    /// Counts the checkpoints stored and those that failed.
    metrics: crate::metrics::CheckpointMetrics,
    /// Held (shared) by every request while it is served here; a
    /// migration's pause holds it alone, so requests wait at its door.
    door: tokio::sync::RwLock<()>,
    /// Which keys other nodes serve (after, or during, a migration).
    owners: Mutex<Owners>,
}

/// How a stateful app handled a request.
pub enum Served {
    /// Served here.
    Here(hyper::Response<ResponseBody>),
    /// Its key is served by the node named: the request, untouched, goes
    /// there.
    Elsewhere(String, hyper::Request<Incoming>),
}

/// What `dwcp snapshots` lists: a key's checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct KeyCheckpoint {
    /// The key.
    pub key: String,
    /// The checkpoint.
    #[serde(flatten)]
    pub meta: CheckpointMeta,
}

/// Why a key's state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyedError {
    /// No such key or checkpoint.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error("checkpoint store: {0}")]
    Store(#[from] dwcp_store::StoreError),
    /// The instance failed.
    #[error("{0}")]
    Instance(String),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl KeyedApp {
    /// The keys of `tenant/app`, checkpointed in `checkpoints`.
    pub fn new(
        tenant: &str,
        app: &str,
        settings: StatefulSettings,
        checkpoints: Arc<CheckpointStore>,
        seal: Arc<crate::seal::CheckpointSeal>,
        gate: Arc<TenantGate>,
        metrics: crate::metrics::CheckpointMetrics,
    ) -> Self {
        Self {
            tenant: tenant.to_string(),
            gate,
            app: app.to_string(),
            settings: Mutex::new(settings),
            checkpoints,
            seal,
            versions: Mutex::default(),
            keys: Mutex::default(),
            metrics,
            door: tokio::sync::RwLock::new(()),
            owners: Mutex::default(),
        }
    }

    /// Replaces the app's settings (header, checkpoint policy, hibernation).
    pub fn set_settings(&self, settings: StatefulSettings) {
        *lock(&self.settings) = settings;
    }

    fn settings(&self) -> StatefulSettings {
        lock(&self.settings).clone()
    }

    /// Makes `version` available to the keys whose state belongs to it.
    pub fn add_version(&self, version: Arc<AppVersion>) {
        lock(&self.versions).insert(version.labels().version.clone(), version);
    }

    /// Whether `name` is loaded.
    pub fn has_version(&self, name: &str) -> bool {
        lock(&self.versions).contains_key(name)
    }

    /// `tenant/app`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.tenant, self.app)
    }

    /// Every slot in memory, taken out of the map so that none is locked
    /// while the map is.
    fn slots(&self) -> Vec<(String, Arc<tokio::sync::Mutex<KeySlot>>)> {
        lock(&self.keys)
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }

    fn slot(&self, key: &str) -> Arc<tokio::sync::Mutex<KeySlot>> {
        lock(&self.keys).entry(key.to_string()).or_default().clone()
    }

    fn scope(&self, key: &str) -> String {
        key_scope(&self.tenant, &self.app, key)
    }

    /// Serves a request to the key it names; `active` serves new keys. The
    /// work runs on a task of its own: a client that goes away does not
    /// stop its guest halfway through a request (the instance would then
    /// hold a half-applied state that a later checkpoint could save).
    pub async fn handle(
        self: Arc<Self>,
        request: hyper::Request<Incoming>,
        active: Arc<AppVersion>,
    ) -> Served {
        match tokio::spawn(async move { self.serve(request, &active).await }).await {
            Ok(served) => served,
            Err(e) => Served::Here(text_response(500, &format!("the key's task failed: {e}"))),
        }
    }

    async fn serve(&self, request: hyper::Request<Incoming>, active: &Arc<AppVersion>) -> Served {
        let settings = self.settings();
        let key = match request.headers().get(settings.key_header.as_str()) {
            Some(value) => match valid_key(value) {
                Some(key) => key.to_string(),
                None => {
                    return Served::Here(text_response(
                        400,
                        &format!(
                            "the `{}` header must be 1 to {MAX_KEY_LEN} visible ASCII characters",
                            settings.key_header
                        ),
                    ));
                }
            },
            None => {
                return Served::Here(text_response(
                    400,
                    &format!(
                        "this app is stateful: name the key its state belongs to in the `{}` header",
                        settings.key_header
                    ),
                ));
            }
        };
        // Shared with every other request; a migration's pause waits for
        // those inside and keeps new ones here until the keys have moved.
        let _open = self.door.read().await;
        if let Some(node) = lock(&self.owners).of(&key) {
            return Served::Elsewhere(node.to_string(), request);
        }
        Served::Here(self.serve_key(&key, request, active, &settings).await)
    }

    /// Serves a request to `key`, which this node holds.
    async fn serve_key(
        &self,
        key: &str,
        request: hyper::Request<Incoming>,
        active: &Arc<AppVersion>,
        settings: &StatefulSettings,
    ) -> hyper::Response<ResponseBody> {
        let key = key.to_string();
        let slot = self.slot(&key);
        let mut slot = slot.lock().await;
        if slot.live.is_none()
            && let Err(response) = self.wake(&key, &mut slot, active).await
        {
            return response;
        }
        let woken_with_resources = slot.woken
            && slot
                .latest
                .as_ref()
                .and_then(Option::as_ref)
                .is_some_and(|m| m.resources);
        slot.woken = false;
        let Some(live) = slot.live.as_mut() else {
            return text_response(500, "the key has no instance");
        };
        let response = match live.serve(request).await {
            Ok(response) => response,
            Err(failure) => {
                // The state since the last checkpoint goes with the guest;
                // the next request resumes from that checkpoint.
                slot.let_go();
                if woken_with_resources {
                    return text_response(
                        500,
                        &format!(
                            "key `{key}` was woken from a checkpoint taken while its guest held host resources (a cached stdout stream, say), which a checkpoint cannot carry; the guest failed on one (see docs/stateful.md)"
                        ),
                    );
                }
                return failure;
            }
        };
        slot.last_used = Some(Instant::now());
        slot.dirty = true;
        if settings.checkpoint_interval_ms.is_none()
            && let Err(e) = self.checkpoint(&key, &mut slot, "request").await
        {
            tracing::warn!(tenant = %self.tenant, app = %self.app, key, "checkpoint failed: {e}");
            slot.let_go();
            return text_response(
                500,
                &format!("the request's state could not be saved, so it was not applied: {e}"),
            );
        }
        response
    }

    /// Gives the key a live instance: its latest checkpoint restored into
    /// a fresh instance of that checkpoint's version, or (a new key) a
    /// fresh instance of the active version.
    async fn wake(
        &self,
        key: &str,
        slot: &mut KeySlot,
        active: &Arc<AppVersion>,
    ) -> Result<(), hyper::Response<ResponseBody>> {
        let scope = self.scope(key);
        // The key's checkpoints, read once: the newest says which version
        // its state belongs to, the older ones are the fallbacks.
        let all = {
            let checkpoints = self.checkpoints.clone();
            let scope = scope.clone();
            tokio::task::spawn_blocking(move || checkpoints.list(&scope))
                .await
                .map_err(|e| text_response(500, &format!("checkpoint store task failed: {e}")))?
                .map_err(|e| text_response(500, &format!("checkpoint store: {e}")))?
        };
        let latest = all.last().cloned();
        slot.latest = Some(latest.clone());
        let version = match &latest {
            None => active.clone(),
            Some(meta) => match lock(&self.versions).get(&meta.version) {
                Some(version) => version.clone(),
                None => {
                    return Err(text_response(
                        503,
                        &format!(
                            "key `{key}` holds state of version {}, which this node has not loaded",
                            meta.version
                        ),
                    ));
                }
            },
        };
        let (mut live, mut share) = self.instance(&version).await?;
        slot.base = None;
        if let Some(meta) = &latest {
            // The newest checkpoint whose chain decodes: a damaged one is
            // passed over (and said so), the one before it used.
            let seqs: Vec<u64> = all
                .iter()
                .rev()
                .filter(|m| m.version == meta.version)
                .map(|m| m.seq)
                .collect();
            let newest = seqs.first().copied();
            let mut restored = false;
            for seq in seqs {
                match self.restore_into(key, seq, &mut live).await {
                    Ok(()) => {
                        // After passing a damaged one over, the next
                        // checkpoint is full: a delta of this older one
                        // would hang off a chain pruning does not protect.
                        slot.base = (Some(seq) == newest).then_some(seq);
                        restored = true;
                        break;
                    }
                    Err(KeyError::Damaged(e)) => {
                        tracing::warn!(tenant = %self.tenant, app = %self.app, key, seq, "checkpoint refused: {e}");
                        version.log().push(
                            &Arc::from(version.labels().version.as_str()),
                            dwcp_runtime::LogStream::Node,
                            format!(
                                "key {key}: checkpoint {seq} refused ({e}); trying the one before"
                            ),
                        );
                        // A failed restore may have written part of the
                        // state: start again from a fresh instance (the
                        // old one and its share let go first).
                        drop((live, share));
                        (live, share) = self.instance(&version).await?;
                    }
                    Err(e) => {
                        // Not damage (the store failed, the memory limit
                        // is now lower, the guest trapped): an older
                        // checkpoint would silently lose state.
                        tracing::warn!(tenant = %self.tenant, app = %self.app, key, seq, "cannot restore: {e}");
                        return Err(text_response(
                            503,
                            &format!("key `{key}` cannot be woken: {e}"),
                        ));
                    }
                }
            }
            if !restored {
                return Err(text_response(
                    500,
                    &format!(
                        "key `{key}`: none of its checkpoints can be restored (see `dwcp logs`)"
                    ),
                ));
            }
        }
        slot.woken = latest.is_some();
        slot.live = Some(live);
        slot.share = Some(share);
        slot.dirty = false;
        Ok(())
    }

    /// A fresh instance of `version` with its share of the tenant's quota;
    /// when the quota or the node's pool is full, the app's least recently
    /// used idle key is hibernated to make room, once.
    async fn instance(
        &self,
        version: &Arc<AppVersion>,
    ) -> Result<(KeyInstance, TenantSlot), hyper::Response<ResponseBody>> {
        let busy = |reason: String| {
            let mut response = text_response(503, &reason);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            response
        };
        let mut retried = false;
        let share = loop {
            match self.gate.try_enter(version.limits().memory_bytes) {
                Ok(share) => break share,
                Err(_) if !retried && self.hibernate_lru().await => retried = true,
                Err(full) => {
                    return Err(busy(format!(
                        "tenant `{}` is at {} (live keys count); retry later",
                        self.tenant,
                        full.describe()
                    )));
                }
            }
        };
        loop {
            match version.key_instance().await {
                Ok(live) => return Ok((live, share)),
                Err(KeyError::PoolFull) if !retried && self.hibernate_lru().await => {
                    retried = true;
                }
                Err(KeyError::PoolFull) => {
                    return Err(busy(
                        "the node has no free instance slot; retry later".into(),
                    ));
                }
                Err(KeyError::Stopped(kind, _)) => return Err(version.failure_response(kind)),
                Err(e) => return Err(text_response(500, &e.to_string())),
            }
        }
    }

    async fn restore_into(
        &self,
        key: &str,
        seq: u64,
        live: &mut KeyInstance,
    ) -> Result<(), KeyError> {
        // Reading the chain and opening each seal (a decapsulation each)
        // is off the ingress's event loop.
        let (checkpoints, seal) = (self.checkpoints.clone(), self.seal.clone());
        let (tenant, app, key) = (self.tenant.clone(), self.app.clone(), key.to_string());
        let scope = self.scope(&key);
        let artifact = live.version().artifact().to_string();
        let opened = tokio::task::spawn_blocking(move || {
            let chain = checkpoints
                .chain(&scope, seq)
                .map_err(|e| KeyError::Restore(e.to_string()))?
                .ok_or_else(|| KeyError::Damaged("its chain is incomplete".into()))?;
            if let Some((meta, _)) = chain.iter().find(|(m, _)| m.artifact_sha256 != artifact) {
                return Err(KeyError::Restore(format!(
                    "it was taken from artifact {}, this version runs {artifact}",
                    meta.artifact_sha256
                )));
            }
            seal.open_chain(&tenant, &app, &key, &chain)
                .map_err(KeyError::Damaged)
        })
        .await
        .map_err(|e| KeyError::Restore(e.to_string()))??;
        let bytes: Vec<&[u8]> = opened.iter().map(Vec::as_slice).collect();
        live.restore(&bytes).await
    }

    /// Checkpoints the key's live instance now, and counts how that went
    /// (a key that is not live is no failure: nothing was tried).
    async fn checkpoint(
        &self,
        key: &str,
        slot: &mut KeySlot,
        reason: &str,
    ) -> Result<CheckpointMeta, KeyedError> {
        let taken = self.take_checkpoint(key, slot, reason).await;
        if !matches!(taken, Err(KeyedError::NotFound(_))) {
            self.metrics.record(taken.is_ok());
        }
        taken
    }

    /// Captures, seals and stores the key's state.
    async fn take_checkpoint(
        &self,
        key: &str,
        slot: &mut KeySlot,
        reason: &str,
    ) -> Result<CheckpointMeta, KeyedError> {
        let Some(live) = slot.live.as_mut() else {
            return Err(KeyedError::NotFound(format!("key `{key}` is not live")));
        };
        let full = slot.base.is_none();
        // Until this checkpoint is stored, none is the base of the next:
        // the instance's image moves on as it is captured, so after a
        // failure (or a cancelled task) the next checkpoint must be full.
        let base = slot.base.take();
        let checkpoint = live
            .checkpoint(full)
            .await
            .map_err(|e| KeyedError::Instance(e.to_string()))?;
        let previous = slot.latest.clone().flatten();
        let meta = CheckpointMeta {
            seq: previous.as_ref().map_or(1, |m| m.seq + 1),
            version: live.version().labels().version.clone(),
            artifact_sha256: live.version().artifact().to_string(),
            base: if checkpoint.delta { base } else { None },
            snapshot_id: checkpoint.summary.id,
            bytes: checkpoint.bytes.len() as u64,
            memory_bytes: checkpoint.summary.input_bytes,
            taken_at: unix_now(),
            reason: reason.to_string(),
            resources: live.holds_resources(),
        };
        let keep = self.settings().keep as usize;
        let checkpoints = self.checkpoints.clone();
        let scope = self.scope(key);
        let (seal, tenant, app) = (self.seal.clone(), self.tenant.clone(), self.app.clone());
        let subject = key.to_string();
        let mut meta = meta;
        let sealed = tokio::task::spawn_blocking(move || {
            let sealed = seal
                .seal(&tenant, &app, &subject, meta.snapshot_id, &checkpoint.bytes)
                .map_err(|e| KeyedError::Instance(format!("cannot seal the checkpoint: {e}")))?;
            meta.bytes = sealed.len() as u64;
            checkpoints.put(&scope, &meta, &sealed, keep)?;
            Ok::<_, KeyedError>(meta)
        })
        .await
        .map_err(|e| KeyedError::Instance(format!("checkpoint task failed: {e}")))??;
        let meta = sealed;
        slot.base = Some(meta.seq);
        slot.latest = Some(Some(meta.clone()));
        slot.dirty = false;
        Ok(meta)
    }

    /// Checkpoints (if it changed) and drops the least recently used live
    /// key that is not busy; answers whether one was.
    async fn hibernate_lru(&self) -> bool {
        let slots = self.slots();
        let mut oldest: Option<(Instant, String, tokio::sync::OwnedMutexGuard<KeySlot>)> = None;
        for (key, slot) in slots {
            let Ok(guard) = slot.try_lock_owned() else {
                continue;
            };
            let Some(used) = guard.last_used.filter(|_| guard.live.is_some()) else {
                continue;
            };
            if oldest.as_ref().is_none_or(|(t, _, _)| used < *t) {
                oldest = Some((used, key, guard));
            }
        }
        let Some((_, key, mut guard)) = oldest else {
            return false;
        };
        self.hibernate(&key, &mut guard).await
    }

    async fn hibernate(&self, key: &str, slot: &mut KeySlot) -> bool {
        // A guest that keeps host resources would lose them: it stays live.
        if slot.live.as_ref().is_some_and(KeyInstance::holds_resources) {
            return false;
        }
        if slot.dirty
            && let Err(e) = self.checkpoint(key, slot, "hibernate").await
        {
            tracing::warn!(tenant = %self.tenant, app = %self.app, key, "cannot hibernate: {e}");
            return false;
        }
        slot.let_go();
        true
    }

    /// Periodic work: checkpoints keys changed since their last checkpoint
    /// (interval mode) and hibernates keys idle for longer than allowed.
    pub async fn maintain(&self, now: Instant, last_interval: &mut Instant) {
        let settings = self.settings();
        let interval_due = settings
            .checkpoint_interval_ms
            .is_some_and(|ms| now.duration_since(*last_interval) >= Duration::from_millis(ms));
        if interval_due {
            *last_interval = now;
        }
        let idle = Duration::from_millis(settings.hibernate_after_ms);
        let slots = self.slots();
        let mut hibernated = Vec::new();
        for (key, slot) in slots {
            let Ok(mut slot) = slot.try_lock() else {
                continue;
            };
            if slot.live.is_none() {
                continue;
            }
            if slot
                .last_used
                .is_some_and(|used| now.duration_since(used) >= idle)
            {
                if self.hibernate(&key, &mut slot).await {
                    hibernated.push(key.clone());
                }
            } else if interval_due
                && slot.dirty
                && let Err(e) = self.checkpoint(&key, &mut slot, "interval").await
            {
                tracing::warn!(tenant = %self.tenant, app = %self.app, key, "checkpoint failed: {e}");
            }
        }
        self.forget_slots(&hibernated);
    }

    /// Drops the slots of hibernated keys nobody waits on: a hibernated key
    /// is its checkpoints on disk and nothing in memory (its next request
    /// reads its latest checkpoint from the store). A slot a request holds
    /// or waits for (a reference besides the map's) stays.
    fn forget_slots(&self, keys: &[String]) {
        let mut map = lock(&self.keys);
        for key in keys {
            let idle = map.get(key).is_some_and(|slot| {
                Arc::strong_count(slot) == 1 && slot.try_lock().is_ok_and(|s| s.live.is_none())
            });
            if idle {
                map.remove(key);
            }
        }
    }

    /// Checkpoints every live key that changed since its last checkpoint
    /// (at shutdown), waiting for keys busy with a request.
    pub async fn drain(&self) -> usize {
        let slots = self.slots();
        let mut saved = 0;
        // Idle keys first, then those busy with a request: one slow key
        // does not hold the others past the drain timeout.
        let mut busy = Vec::new();
        for (key, slot) in slots {
            match slot.clone().try_lock_owned() {
                Ok(mut guard) => saved += self.drain_one(&key, &mut guard).await,
                Err(_) => busy.push((key, slot)),
            }
        }
        for (key, slot) in busy {
            let mut guard = slot.lock().await;
            saved += self.drain_one(&key, &mut guard).await;
        }
        saved
    }

    async fn drain_one(&self, key: &str, slot: &mut KeySlot) -> usize {
        if slot.live.is_none() || !slot.dirty {
            return 0;
        }
        match self.checkpoint(key, slot, "drain").await {
            Ok(_) => 1,
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, app = %self.app, key, "checkpoint at shutdown failed: {e}");
                0
            }
        }
    }

    /// Checkpoints live keys now (`key`, or every live one); answers the
    /// latest checkpoint of each key asked for.
    pub async fn snapshot(&self, key: Option<&str>) -> Result<Vec<KeyCheckpoint>, KeyedError> {
        let keys: Vec<String> = match key {
            Some(key) => vec![key.to_string()],
            // Keys with checkpoints, and live ones without one yet.
            None => self
                .stored_keys(None)?
                .into_iter()
                .chain(lock(&self.keys).keys().cloned())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
        };
        let every = key.is_none();
        let mut out = Vec::new();
        for key in keys {
            let slot = self.slot(&key);
            let mut slot = slot.lock().await;
            let meta = if slot.live.is_some() {
                self.checkpoint(&key, &mut slot, "manual").await?
            } else {
                match self.checkpoints.list(&self.scope(&key))?.pop() {
                    Some(meta) => meta,
                    // A key that never got an instance (its wake failed).
                    None if every => continue,
                    None => {
                        return Err(KeyedError::NotFound(format!("no key `{key}`")));
                    }
                }
            };
            out.push(KeyCheckpoint { key, meta });
        }
        Ok(out)
    }

    /// `key`, or every key with a stored checkpoint.
    fn stored_keys(&self, key: Option<&str>) -> Result<Vec<String>, KeyedError> {
        Ok(match key {
            Some(key) => vec![key.to_string()],
            None => self
                .checkpoints
                .keys(&self.tenant, &self.app)?
                .into_iter()
                .map(|(k, _)| k)
                .collect(),
        })
    }

    /// The stored checkpoints of `key`, or of every key.
    pub fn list(&self, key: Option<&str>) -> Result<Vec<KeyCheckpoint>, KeyedError> {
        let keys = self.stored_keys(key)?;
        let mut out = Vec::new();
        for key in keys {
            for meta in self.checkpoints.list(&self.scope(&key))? {
                out.push(KeyCheckpoint {
                    key: key.clone(),
                    meta,
                });
            }
        }
        Ok(out)
    }

    /// Puts `key` (or every key) back to checkpoint `seq` (default: its
    /// latest): the live instance is dropped, and the chosen state becomes
    /// the key's newest checkpoint, which the next request wakes from.
    pub async fn restore(
        self: &Arc<Self>,
        key: Option<&str>,
        seq: Option<u64>,
    ) -> Result<Vec<KeyCheckpoint>, KeyedError> {
        let keys = self.stored_keys(key)?;
        let mut out = Vec::new();
        for key in keys {
            let slot = self.slot(&key);
            let mut slot = slot.lock().await;
            let scope = self.scope(&key);
            let all = self.checkpoints.list(&scope)?;
            let latest = all
                .last()
                .cloned()
                .ok_or_else(|| KeyedError::NotFound(format!("key `{key}` has no checkpoint")))?;
            let target = match seq {
                None => latest.clone(),
                Some(seq) => all.iter().find(|m| m.seq == seq).cloned().ok_or_else(|| {
                    KeyedError::NotFound(format!("key `{key}` has no checkpoint {seq}"))
                })?,
            };
            if !self.has_version(&target.version) {
                return Err(KeyedError::NotFound(format!(
                    "checkpoint {} of key `{key}` belongs to version {}, which is not loaded",
                    target.seq, target.version
                )));
            }
            let meta = if target.seq == latest.seq {
                latest
            } else {
                // Re-encoding decodes and encodes a whole memory: not on
                // the admin API's event loop.
                let this = self.clone();
                let key = key.clone();
                tokio::task::spawn_blocking(move || {
                    this.reencode_as_newest(&key, target, latest.seq)
                })
                .await
                .map_err(|e| KeyedError::Instance(format!("restore task failed: {e}")))??
            };
            // Only now, with the chosen state stored, is the live one let go.
            slot.let_go();
            slot.dirty = false;
            slot.latest = Some(Some(meta.clone()));
            slot.base = None;
            out.push(KeyCheckpoint { key, meta });
        }
        Ok(out)
    }
}

impl KeyedApp {
    /// Writes the state of checkpoint `target` as a new full checkpoint
    /// after `latest_seq`: it becomes the newest, and the history before
    /// it stays.
    fn reencode_as_newest(
        &self,
        key: &str,
        target: CheckpointMeta,
        latest_seq: u64,
    ) -> Result<CheckpointMeta, KeyedError> {
        let scope = self.scope(key);
        let chain = self
            .checkpoints
            .chain(&scope, target.seq)?
            .ok_or_else(|| KeyedError::NotFound("its chain is incomplete".into()))?;
        let opened = self
            .seal
            .open_chain(&self.tenant, &self.app, key, &chain)
            .map_err(KeyedError::Instance)?;
        let bytes: Vec<&[u8]> = opened.iter().map(Vec::as_slice).collect();
        let (image, globals) = dwcp_runtime::state::decode_chain(&bytes, &Default::default())
            .map_err(|e| KeyedError::Instance(format!("cannot decode it: {e:#}")))?;
        let mut encoded = Vec::new();
        let summary =
            dwcp_snapshot::encode(&mut encoded, &image.slices(), &globals, &Default::default())
                .map_err(|e| KeyedError::Instance(e.to_string()))?;
        let encoded = self
            .seal
            .seal(&self.tenant, &self.app, key, summary.id, &encoded)
            .map_err(|e| KeyedError::Instance(format!("cannot seal it: {e}")))?;
        let meta = CheckpointMeta {
            seq: latest_seq + 1,
            base: None,
            snapshot_id: summary.id,
            bytes: encoded.len() as u64,
            memory_bytes: summary.input_bytes,
            taken_at: unix_now(),
            reason: format!("restore of {}", target.seq),
            ..target
        };
        self.checkpoints
            .put(&scope, &meta, &encoded, self.settings().keep as usize + 1)?;
        Ok(meta)
    }
}

/// The key a header names, if it is a usable one.
fn valid_key(value: &HeaderValue) -> Option<&str> {
    let key = value.to_str().ok()?;
    (!key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic()))
        .then_some(key)
}
