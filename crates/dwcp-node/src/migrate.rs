//! Live migration of a stateful app's keys to another node
//! (`dwcp migrate TENANT/APP [--key K] --to NODE|--region R`).
//!
//! The node serving the keys (the source) drives it over the peer link
//! (HTTP/2 on post-quantum TLS, both ends pinned), with requests to a
//! host no app has (`dwcp-peer`), so a client's request can never pass
//! for one:
//!
//! 1. `prepare`: the destination makes the app's keyed state (compiling
//!    the app if it did not serve it) and sends the moving keys' requests
//!    to the source until told otherwise.
//! 2. Copy while serving: each key's newest checkpoint chain, opened by
//!    the source and sealed again to the destination's own key as it is
//!    stored (`chain`). A key changed since its last checkpoint is
//!    checkpointed first, between two of its requests.
//! 3. Pause: requests inside finish, new ones wait at the door (a lock
//!    every request holds shared). Keys changed since the copy are
//!    checkpointed, and only the checkpoints the destination lacks are
//!    sent: with a checkpoint per request, a delta or two.
//! 4. `activate`, the commit point: the destination serves the keys from
//!    what it stored. The source lets its instances go and, from then on,
//!    sends every request for the keys there, the ones that waited first:
//!    none is lost, none served twice.
//! 5. The placement record says where the keys are, so that every node
//!    sends their requests straight there; the source's copies are removed.
//!
//! A failure before step 4 aborts: the destination drops what it stored,
//! the source serves on as if nothing happened.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use dwcp_runtime::{ResponseBody, text_response};
use dwcp_store::{AppId, AppRecord, CheckpointMeta};
use http_body_util::{BodyExt, Limited};
use hyper::StatusCode;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use crate::cluster::Members;
use crate::control::Control;
use crate::desired::Publisher;
use crate::peer::Forwarder;
use crate::stateful::{KeyedApp, OwnerTable, Owners};

/// Where the cluster's own migration requests go on the peer link.
pub const INTERNAL: &str = "/_dwcp/migrate/";

/// How long the pause waits for requests inside to finish.
const PAUSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a step may take on the destination (a chain of a large key
/// included).
const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// How long a drain keeps trying to move stateful keys off its node.
const DRAIN_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Copy rounds at most before the pause.
const COPY_ROUNDS: usize = 4;

/// Changes a copy round may leave for the pause to send: a few
/// milliseconds' work.
const SMALL_DELTA: u64 = 256 << 10;

/// The largest chain one request carries (a key's whole state).
const MAX_CHAIN: usize = 4 << 30;

/// What `POST /v1/apps/{tenant}/{app}/migrate` asks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MigrateRequest {
    /// The node to move to.
    #[serde(default)]
    pub to: Option<String>,
    /// Or a region, whose emptiest active node is chosen.
    #[serde(default)]
    pub region: Option<String>,
    /// One key only (default: every key the app has on its node).
    #[serde(default)]
    pub key: Option<String>,
}

/// What a migration did, with its timings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationReport {
    /// `tenant/app`.
    pub app: String,
    /// The node the keys left.
    pub from: String,
    /// The node serving them now.
    pub to: String,
    /// The key moved, if one alone was.
    pub key: Option<String>,
    /// Keys moved.
    pub keys: usize,
    /// Checkpoint bytes copied while the keys served.
    pub copied_bytes: u64,
    /// Checkpoint bytes sent during the pause.
    pub delta_bytes: u64,
    /// How long the copy took.
    pub copy_ms: f64,
    /// How long requests inside took to finish once the pause began.
    pub drain_ms: f64,
    /// How long requests were held at the door (from the pause's start to
    /// the keys serving on the destination).
    pub pause_ms: f64,
    /// The whole migration.
    pub total_ms: f64,
}

type Refusal = (StatusCode, String);

fn refuse(status: StatusCode, why: impl Into<String>) -> Refusal {
    (status, why.into())
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

#[derive(Serialize, Deserialize)]
struct Start {
    tenant: String,
    app: String,
    request: MigrateRequest,
}

/// `prepare`, `activate` and `abort` all name the app and a table of
/// owners: the one to keep until the keys arrive, the one to serve by
/// after, the one to go back to.
#[derive(Serialize, Deserialize)]
struct Step {
    tenant: String,
    app: String,
    table: OwnerTable,
    /// `warm`: the keys live on the source (the others stay cold).
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChainHeader {
    tenant: String,
    app: String,
    key: String,
    /// The first of the key's chains: what the destination held of it
    /// before goes.
    fresh: bool,
}

/// Runs migrations from this node and receives them.
pub struct Migrations {
    control: Arc<Control>,
    members: Arc<Members>,
    forwarder: Arc<Forwarder>,
    publisher: Arc<Publisher>,
    /// Apps this node is moving keys of now.
    moving: Mutex<HashSet<String>>,
    /// Keys received, per app, by a migration not activated yet.
    incoming: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Apps whose last migration here was activated: an abort arriving
    /// after (its source missed the answer) is refused, not applied.
    activated: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Who serves the keys before and after, and why (for the placement).
struct Tables<'a> {
    before: &'a OwnerTable,
    after: &'a OwnerTable,
    reason: &'a str,
}

/// Marks an app as moving until dropped.
struct Claim<'a> {
    moving: &'a Mutex<HashSet<String>>,
    app: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(self.moving).remove(&self.app);
    }
}

impl Migrations {
    /// Migrations for this node.
    pub fn new(
        control: Arc<Control>,
        members: Arc<Members>,
        forwarder: Arc<Forwarder>,
        publisher: Arc<Publisher>,
    ) -> Arc<Migrations> {
        Arc::new(Migrations {
            control,
            members,
            forwarder,
            publisher,
            moving: Mutex::default(),
            incoming: Mutex::default(),
            activated: Mutex::default(),
        })
    }

    fn this(&self) -> &str {
        &self.members.identity.node_id
    }

    /// Moves `id`'s keys as `request` asks, from whichever node serves
    /// them (this one, or another asked over the peer link).
    pub async fn migrate(
        self: &Arc<Self>,
        id: &AppId,
        request: MigrateRequest,
    ) -> Result<MigrationReport, Refusal> {
        check_request(&request)?;
        let record = self.stateful_record(id)?;
        let table = self
            .members
            .placement(&id.to_string())
            .and_then(|p| p.owner_table())
            .ok_or_else(|| {
                refuse(
                    StatusCode::CONFLICT,
                    format!("{id} is not placed on a node yet; try again in a moment"),
                )
            })?;
        let owner = match &request.key {
            Some(key) => table.keys.get(key).unwrap_or(&table.all),
            None => &table.all,
        };
        if owner == self.this() {
            return self.run_detached(id, record, request).await;
        }
        let start = Start {
            tenant: id.tenant.clone(),
            app: id.app.clone(),
            request,
        };
        let answer = self.call(owner, "start", json_body(&start)?).await?;
        serde_json::from_slice(&answer).map_err(internal)
    }

    /// Moves every stateful app's keys that `node` serves to other nodes,
    /// one migration after another, in the background (`dwcp nodes drain`:
    /// placement leaves them where they are until then). Answers what
    /// goes now: `tenant/app`, or `tenant/app key K`. The work is looked
    /// at again every few seconds while `node` drains (for up to
    /// [`DRAIN_FOR`]): a migration that failed is tried again, and keys that
    /// arrived meanwhile go too.
    pub fn move_off(self: &Arc<Self>, node: &str) -> Vec<String> {
        let names = self
            .held_by(node)
            .iter()
            .map(|(id, _, key, _)| match key {
                Some(key) => format!("{id} key {key}"),
                None => id.to_string(),
            })
            .collect();
        let (this, node) = (self.clone(), node.to_string());
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                let work = this.held_by(&node);
                if work.is_empty() || this.members.admission(&node) != "draining" {
                    return;
                }
                if started.elapsed() > DRAIN_FOR {
                    tracing::warn!(%node, left = work.len(), "gave up moving stateful keys off the draining node after {DRAIN_FOR:?}: they stay there (`dwcp migrate` them)");
                    return;
                }
                for (id, record, key, prefer) in work {
                    // The first node that takes them (one may refuse: it
                    // has not received the app, say).
                    for to in this.elsewhere_than(&record, &node, &prefer) {
                        let request = MigrateRequest {
                            to: Some(to.clone()),
                            region: None,
                            key: key.clone(),
                        };
                        match this.migrate(&id, request).await {
                            Ok(report) => {
                                tracing::info!(app = %id, from = %node, %to, keys = report.keys, "moved off a draining node");
                                break;
                            }
                            Err((_, why)) => {
                                tracing::warn!(app = %id, from = %node, %to, "not moved there: {why}")
                            }
                        }
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        });
        names
    }

    /// The stateful apps (and keys moved apart) `node` serves, as this
    /// node's placements say, with where each would rather go.
    fn held_by(&self, node: &str) -> Vec<(AppId, AppRecord, Option<String>, String)> {
        let mut work = Vec::new();
        for (app, placed) in self.members.placements() {
            let (Some(table), Some((tenant, name))) = (placed.owner_table(), app.split_once('/'))
            else {
                continue;
            };
            let Ok(id) = AppId::new(tenant, name) else {
                continue;
            };
            let Ok(Some(record)) = self.control.state.app(tenant, name) else {
                continue;
            };
            if record.stateful.is_none() {
                continue;
            }
            if table.all == node {
                work.push((id.clone(), record.clone(), None, String::new()));
            }
            for (key, at) in &table.keys {
                if at == node {
                    // Back with the rest of the app, if that can take it.
                    work.push((
                        id.clone(),
                        record.clone(),
                        Some(key.clone()),
                        table.all.clone(),
                    ));
                }
            }
        }
        work
    }

    /// Where keys leaving `from` may go, best first: `prefer` if it can
    /// take them, then active nodes of `from`'s region, then the others,
    /// the most free memory first; within the app's pinned regions.
    fn elsewhere_than(&self, record: &AppRecord, from: &str, prefer: &str) -> Vec<String> {
        let views = self.members.node_views();
        let region = views
            .iter()
            .find(|v| v.id == from)
            .map(|v| v.region.clone());
        let pinned = record.placement_spec().regions;
        let mut able: Vec<_> = views
            .iter()
            .filter(|v| v.schedulable && v.id != from && self.members.peer(&v.id).is_some())
            .filter(|v| pinned.is_empty() || pinned.contains(&v.region))
            .collect();
        able.sort_by(|a, b| {
            (b.id == prefer)
                .cmp(&(a.id == prefer))
                .then(
                    (Some(&b.region) == region.as_ref()).cmp(&(Some(&a.region) == region.as_ref())),
                )
                .then(b.free_memory.cmp(&a.free_memory))
                .then(a.id.cmp(&b.id))
        });
        able.into_iter().map(|v| v.id.clone()).collect()
    }

    /// The record of stateful app `id`.
    fn stateful_record(&self, id: &AppId) -> Result<AppRecord, Refusal> {
        let record = self
            .control
            .state
            .app(&id.tenant, &id.app)
            .map_err(internal)?
            .ok_or_else(|| refuse(StatusCode::NOT_FOUND, format!("no app {id}")))?;
        if record.stateful.is_none() {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "{id} is stateless: it has no state to move (place its replicas with `dwcp scale` or `dwcp apps set --pin-region`)"
                ),
            ));
        }
        Ok(record)
    }

    /// Runs a migration from this node on a task of its own: the client
    /// that asked going away (a timeout, Ctrl-C) must not stop it halfway,
    /// say with the door shut or the keys activated and not committed.
    async fn run_detached(
        self: &Arc<Self>,
        id: &AppId,
        record: AppRecord,
        request: MigrateRequest,
    ) -> Result<MigrationReport, Refusal> {
        let (this, id) = (self.clone(), id.clone());
        tokio::spawn(async move { this.run(&id, &record, request).await })
            .await
            .map_err(internal)?
    }

    /// Runs a migration from this node.
    async fn run(
        &self,
        id: &AppId,
        record: &AppRecord,
        request: MigrateRequest,
    ) -> Result<MigrationReport, Refusal> {
        let _claim = self.claim(id)?;
        let keyed = self
            .control
            .keyed_app(id)
            .ok()
            .filter(|_| self.control.apps.get_app(&id.tenant, &id.app).is_some())
            .ok_or_else(|| {
                refuse(
                    StatusCode::CONFLICT,
                    format!(
                        "{id} is not serving on {}; try again in a moment",
                        self.this()
                    ),
                )
            })?;
        let owners = keyed.owners();
        let elsewhere = match &request.key {
            Some(key) => owners.of(key),
            None => owners.all.as_deref(),
        };
        if let Some(node) = elsewhere {
            return Err(refuse(
                StatusCode::CONFLICT,
                format!("{id}: {node} serves it now, not {}", self.this()),
            ));
        }
        let to = self.destination(id, record, &request)?;
        let before = absolute(&owners, self.this());
        let only: Option<Vec<String>> = request.key.clone().map(|k| vec![k]);
        let after = before.moved(only.as_deref(), &to);
        let reason = format!(
            "migrated from {} to {to} by `dwcp migrate`{}",
            self.this(),
            request
                .key
                .as_ref()
                .map(|k| format!(" (key {k})"))
                .unwrap_or_default()
        );
        if let Err(e) = self.step(&to, "prepare", id, &before).await {
            self.abort(&to, id, &before).await;
            return Err(e);
        }
        let tables = Tables {
            before: &before,
            after: &after,
            reason: &reason,
        };
        let mut settled = false;
        let result = self
            .copy_and_switch(id, &keyed, &to, only.as_deref(), &tables, &mut settled)
            .await;
        match result {
            Ok(mut report) => {
                report.key = request.key;
                tracing::info!(app = %id, to = %to, keys = report.keys, pause_ms = report.pause_ms, "migrated");
                Ok(report)
            }
            Err(e) => {
                if !settled {
                    self.abort(&to, id, &before).await;
                }
                Err(e)
            }
        }
    }

    /// Asks `to` to drop what a failed migration stored there; whether it
    /// had already activated the keys (then they are its).
    async fn abort(&self, to: &str, id: &AppId, before: &OwnerTable) -> bool {
        for attempt in 0..3 {
            match self.step(to, "abort", id, before).await {
                Ok(()) => return false,
                Err((StatusCode::GONE, _)) => return true,
                Err((_, why)) => {
                    tracing::warn!(app = %id, attempt, "{to} did not take the abort: {why}");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
        // Out of reach: it cannot serve the keys either; they stay here.
        false
    }

    /// This node's side of the commit: who serves the keys now, and the
    /// placement to say so (queued before requests go on, so that no
    /// older placement arriving meanwhile gives the keys back here).
    fn commit(&self, id: &AppId, keyed: &KeyedApp, tables: &Tables<'_>) {
        keyed.set_owners(Owners::from_table(tables.after, self.this()));
        self.publisher
            .moved(id.clone(), tables.after.clone(), tables.reason.to_string());
        self.members.set_owner_table(&id.to_string(), tables.after);
    }

    /// Copies the keys while they serve, pauses, sends what changed,
    /// switches; `settled` turns true once the outcome is decided on both
    /// sides (committed, or aborted after an unclear activation).
    async fn copy_and_switch(
        &self,
        id: &AppId,
        keyed: &Arc<KeyedApp>,
        to: &str,
        only: Option<&[String]>,
        tables: &Tables<'_>,
        settled: &mut bool,
    ) -> Result<MigrationReport, Refusal> {
        let started = Instant::now();
        let keys_now = || -> Result<Vec<String>, Refusal> {
            match only {
                Some(keys) => Ok(keys.to_vec()),
                None => keyed.keys_here().map_err(internal),
            }
        };
        let mut sent: HashMap<String, BTreeSet<u64>> = HashMap::new();
        let mut copied = 0;
        // Rounds while the keys serve: the first copies their state, each
        // next one what changed during the one before, until that is little
        // enough for the pause to send quickly. Then the destination
        // restores the keys into live instances (while this node serves on),
        // and rounds again send what changed meanwhile, which those
        // instances follow: the first request there does not wait for a wake.
        copied += self
            .copy_rounds(id, keyed, to, &keys_now, &mut sent)
            .await?;
        let warm = Step {
            tenant: id.tenant.clone(),
            app: id.app.clone(),
            table: tables.before.clone(),
            keys: keyed.live_keys(),
        };
        if let Err((_, why)) = self.call(to, "warm", json_body(&warm)?).await {
            tracing::warn!(app = %id, "{to} did not warm the keys ({why}): they wake at their first request there");
        }
        copied += self
            .copy_rounds(id, keyed, to, &keys_now, &mut sent)
            .await?;
        let copy = started.elapsed();

        let paused = Instant::now();
        let door = tokio::time::timeout(PAUSE_WAIT, keyed.pause())
            .await
            .map_err(|_| {
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{id}: requests being served did not finish within {PAUSE_WAIT:?}; nothing moved, try again"
                    ),
                )
            })?;
        let drain = paused.elapsed();
        // Keys made during the copy move too.
        let keys = keys_now()?;
        let mut delta = 0;
        for key in &keys {
            keyed.checkpoint_if_dirty(key).await.map_err(internal)?;
            delta += self.send_chain(id, keyed, to, key, &mut sent).await?;
        }
        if let Err(e) = self.step(to, "activate", id, tables.after).await {
            // The answer may be what was lost: the abort says whether the
            // keys are the destination's already. The door stays shut
            // until that is known.
            *settled = true;
            if !self.abort(to, id, tables.before).await {
                return Err(e);
            }
        }
        *settled = true;
        // The destination serves the keys: what waited at the door goes there.
        self.commit(id, keyed, tables);
        keyed.forget_keys(&keys).await;
        drop(door);
        let pause = paused.elapsed();

        let gone = keyed.clone();
        let removed = keys.clone();
        match tokio::task::spawn_blocking(move || gone.remove_checkpoints(&removed)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(app = %id, "the moved keys' checkpoints stay here: {e}"),
            Err(e) => tracing::warn!(app = %id, "the moved keys' checkpoints stay here: {e}"),
        }
        Ok(MigrationReport {
            app: id.to_string(),
            from: self.this().to_string(),
            to: to.to_string(),
            key: None,
            keys: keys.len(),
            copied_bytes: copied,
            delta_bytes: delta,
            copy_ms: ms(copy),
            drain_ms: ms(drain),
            pause_ms: ms(pause),
            total_ms: ms(started.elapsed()),
        })
    }

    /// Copies what changed since the last round until a round leaves
    /// little (or [`COPY_ROUNDS`] have gone); the bytes sent.
    async fn copy_rounds(
        &self,
        id: &AppId,
        keyed: &Arc<KeyedApp>,
        to: &str,
        keys_now: &(dyn Fn() -> Result<Vec<String>, Refusal> + Sync),
        sent: &mut HashMap<String, BTreeSet<u64>>,
    ) -> Result<u64, Refusal> {
        let mut copied = 0;
        for _ in 0..COPY_ROUNDS {
            let mut round = 0;
            for key in keys_now()? {
                keyed.checkpoint_if_dirty(&key).await.map_err(internal)?;
                round += self.send_chain(id, keyed, to, &key, sent).await?;
            }
            copied += round;
            if round <= SMALL_DELTA {
                break;
            }
        }
        Ok(copied)
    }

    /// Sends the checkpoints of `key`'s newest chain that `to` lacks;
    /// answers their bytes.
    async fn send_chain(
        &self,
        id: &AppId,
        keyed: &Arc<KeyedApp>,
        to: &str,
        key: &str,
        sent: &mut HashMap<String, BTreeSet<u64>>,
    ) -> Result<u64, Refusal> {
        let fresh = !sent.contains_key(key);
        let had = sent.get(key).cloned().unwrap_or_default();
        let chain = {
            let (keyed, key) = (keyed.clone(), key.to_string());
            tokio::task::spawn_blocking(move || keyed.export_chain(&key, &had))
                .await
                .map_err(internal)?
                .map_err(internal)?
        };
        let seqs = sent.entry(key.to_string()).or_default();
        if chain.is_empty() && !fresh {
            return Ok(0);
        }
        let header = ChainHeader {
            tenant: id.tenant.clone(),
            app: id.app.clone(),
            key: key.to_string(),
            fresh,
        };
        let bytes: u64 = chain.iter().map(|(_, b)| b.len() as u64).sum();
        let body = encode_chain(&header, &chain)?;
        self.call(to, "chain", body).await?;
        seqs.extend(chain.iter().map(|(m, _)| m.seq));
        Ok(bytes)
    }

    /// The node `request` names, checked: live, active, not this one,
    /// within the app's pinned regions.
    fn destination(
        &self,
        id: &AppId,
        record: &AppRecord,
        request: &MigrateRequest,
    ) -> Result<String, Refusal> {
        let active = self.members.schedulable();
        let pinned = record.placement_spec().regions;
        let (node, region) = match (&request.to, &request.region) {
            (Some(node), _) => {
                if node == self.this() {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        format!("{node} serves {id} already"),
                    ));
                }
                if self.members.peer(node).is_none() {
                    return Err(refuse(
                        StatusCode::NOT_FOUND,
                        format!("no live node `{node}` in this cluster (`dwcp nodes` lists them)"),
                    ));
                }
                let Some((_, region)) = active.iter().find(|(n, _)| n == node) else {
                    return Err(refuse(
                        StatusCode::CONFLICT,
                        format!(
                            "{node} is {}: it takes no new work (`dwcp nodes uncordon {node}`, or choose another)",
                            self.members.admission(node)
                        ),
                    ));
                };
                (node.clone(), region.clone())
            }
            (None, Some(region)) => {
                let views = self.members.node_views();
                let best = views
                    .iter()
                    .filter(|v| v.schedulable && &v.region == region && v.id != self.this())
                    .filter(|v| self.members.peer(&v.id).is_some())
                    .max_by(|a, b| a.free_memory.cmp(&b.free_memory).then(b.id.cmp(&a.id)));
                let Some(best) = best else {
                    return Err(refuse(
                        StatusCode::NOT_FOUND,
                        format!(
                            "no active node in region `{region}` other than {} (`dwcp nodes` lists them)",
                            self.this()
                        ),
                    ));
                };
                (best.id.clone(), region.clone())
            }
            (None, None) => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "name --to NODE or --region R",
                ));
            }
        };
        if !pinned.is_empty() && !pinned.contains(&region) {
            return Err(refuse(
                StatusCode::CONFLICT,
                format!(
                    "{id} is pinned to {} and {node} is in {region}: change the pin first (`dwcp apps set {id} --pin-region {region}`)",
                    pinned.join(", ")
                ),
            ));
        }
        Ok(node)
    }

    fn claim(&self, id: &AppId) -> Result<Claim<'_>, Refusal> {
        let app = id.to_string();
        if !lock(&self.moving).insert(app.clone()) {
            return Err(refuse(
                StatusCode::CONFLICT,
                format!("a migration of {id} is under way; wait for it to end"),
            ));
        }
        Ok(Claim {
            moving: &self.moving,
            app,
        })
    }

    async fn step(
        &self,
        to: &str,
        what: &str,
        id: &AppId,
        table: &OwnerTable,
    ) -> Result<(), Refusal> {
        let step = Step {
            tenant: id.tenant.clone(),
            app: id.app.clone(),
            table: table.clone(),
            keys: Vec::new(),
        };
        self.call(to, what, json_body(&step)?).await.map(drop)
    }

    /// One request to `node`'s migration endpoint `what`; its body when it
    /// succeeded, else its reason.
    async fn call(&self, node: &str, what: &str, body: Bytes) -> Result<Bytes, Refusal> {
        let path = format!("{INTERNAL}{what}");
        let (status, answer) =
            tokio::time::timeout(STEP_TIMEOUT, self.forwarder.call(node, &path, body))
                .await
                .map_err(|_| {
                    refuse(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("{node}: no answer to `{what}` within {STEP_TIMEOUT:?}"),
                    )
                })?
                .map_err(|e| refuse(StatusCode::BAD_GATEWAY, format!("{node}: {e}")))?;
        if !status.is_success() {
            let why = String::from_utf8_lossy(&answer).trim().to_string();
            return Err(refuse(status, format!("{node}: {why}")));
        }
        Ok(answer)
    }

    /// Answers a migration request from a peer.
    pub async fn serve_internal(
        self: &Arc<Self>,
        request: hyper::Request<Incoming>,
    ) -> hyper::Response<ResponseBody> {
        let what = request
            .uri()
            .path()
            .strip_prefix(INTERNAL)
            .unwrap_or_default()
            .to_string();
        let body = match Limited::new(request.into_body(), MAX_CHAIN).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return text_response(413, &format!("migration request: {e}")),
        };
        let answer = match what.as_str() {
            "start" => self.start(&body).await,
            "prepare" => self.prepare_here(&body).await,
            "chain" => self.receive_chain(body).await,
            "activate" => self.activate_here(&body).await,
            "warm" => self.warm_here(&body).await,
            "abort" => self.abort_here(&body).await,
            other => Err(refuse(
                StatusCode::NOT_FOUND,
                format!("no migration step `{other}`"),
            )),
        };
        match answer {
            Ok(json) => text_response(200, &json),
            Err((status, why)) => text_response(status.as_u16(), &why),
        }
    }

    async fn start(self: &Arc<Self>, body: &[u8]) -> Result<String, Refusal> {
        let start: Start = parse(body)?;
        let id = app_id(&start.tenant, &start.app)?;
        check_request(&start.request)?;
        let record = self.stateful_record(&id)?;
        let report = self.run_detached(&id, record, start.request).await?;
        serde_json::to_string(&report).map_err(internal)
    }

    /// The destination's first step: the app's keyed state, made if need
    /// be, sends the moving keys' requests to the source until `activate`.
    async fn prepare_here(&self, body: &[u8]) -> Result<String, Refusal> {
        let step: Step = parse(body)?;
        let id = app_id(&step.tenant, &step.app)?;
        let record = self
            .control
            .state
            .app(&id.tenant, &id.app)
            .map_err(internal)?
            .ok_or_else(|| {
                refuse(
                    StatusCode::CONFLICT,
                    format!(
                        "{} has not received {id} from the cluster yet; try again in a moment",
                        self.this()
                    ),
                )
            })?;
        let keyed = self.control.keyed_entry(&record).ok_or_else(|| {
            refuse(
                StatusCode::BAD_REQUEST,
                format!("{id} is not stateful here"),
            )
        })?;
        // Before anything serves: the keys are the source's until they move.
        keyed.set_owners(Owners::from_table(&step.table, self.this()));
        lock(&self.incoming).insert(id.to_string(), BTreeSet::new());
        lock(&self.activated).remove(&id.to_string());
        if self.control.apps.get_app(&id.tenant, &id.app).is_none() {
            self.load_here(&id, record).await?;
        }
        Ok("{}".into())
    }

    /// Serves `record` here (the versions its keys hold state on loaded).
    async fn load_here(&self, id: &AppId, record: AppRecord) -> Result<(), Refusal> {
        self.control
            .apply_cluster_record(record, true)
            .await
            .map_err(|e| {
                refuse(
                    StatusCode::CONFLICT,
                    format!("{id} does not load here: {e}"),
                )
            })
    }

    /// The refusal of a migration step for `id` that nothing prepared here.
    fn none_under_way(&self, id: &AppId) -> Refusal {
        refuse(
            StatusCode::CONFLICT,
            format!("no migration of {id} to {} is under way", self.this()),
        )
    }

    async fn receive_chain(&self, body: Bytes) -> Result<String, Refusal> {
        let (header, entries) = decode_chain(body)?;
        let id = app_id(&header.tenant, &header.app)?;
        if !lock(&self.incoming).contains_key(&id.to_string()) {
            return Err(self.none_under_way(&id));
        }
        let keyed = self.control.keyed_app(&id).map_err(internal)?;
        let key = header.key.clone();
        let versions: BTreeSet<String> = entries.iter().map(|(m, _)| m.version.clone()).collect();
        let (entries, stored) = {
            let keyed = keyed.clone();
            tokio::task::spawn_blocking(move || {
                keyed
                    .import_chain(&header.key, header.fresh, &entries)
                    .map(|stored| (entries, stored))
            })
            .await
            .map_err(internal)?
            .map_err(internal)?
        };
        // A warm instance follows what arrived.
        keyed.follow_import(&key, &entries, &stored).await;
        let stored = stored.len();
        // Versions the keys' state belongs to load now, not in the pause.
        if versions.iter().any(|v| !keyed.has_version(v)) {
            let record = self.stateful_record(&id)?;
            self.load_here(&id, record).await?;
            // This node's record may be behind (a deploy on its way).
            if let Some(missing) = versions.iter().find(|v| !keyed.has_version(v)) {
                return Err(refuse(
                    StatusCode::CONFLICT,
                    format!(
                        "{}: key `{key}` holds state of version {missing} of {id}, which it has not received yet; try again in a moment",
                        self.this()
                    ),
                ));
            }
        }
        if let Some(keys) = lock(&self.incoming).get_mut(&id.to_string()) {
            keys.insert(key);
        }
        Ok(format!("{{\"stored\":{stored}}}"))
    }

    /// The commit point: the keys received serve here from now on.
    async fn activate_here(&self, body: &[u8]) -> Result<String, Refusal> {
        let step: Step = parse(body)?;
        let id = app_id(&step.tenant, &step.app)?;
        let keys = lock(&self.incoming)
            .remove(&id.to_string())
            .ok_or_else(|| self.none_under_way(&id))?;
        let keyed = self.control.keyed_app(&id).map_err(internal)?;
        // The slots are as the imports left them: warm instances that
        // followed every change, or none (the store has it all).
        drop(keys);
        keyed.set_owners(Owners::from_table(&step.table, self.this()));
        self.members.set_owner_table(&id.to_string(), &step.table);
        lock(&self.activated).insert(id.to_string());
        Ok("{}".into())
    }

    /// Restores the keys received into live instances while the source
    /// still serves them (their later changes follow as they arrive).
    async fn warm_here(&self, body: &[u8]) -> Result<String, Refusal> {
        let step: Step = parse(body)?;
        let id = app_id(&step.tenant, &step.app)?;
        let app = id.to_string();
        let keys: Vec<String> = lock(&self.incoming)
            .get(&app)
            .map(|received| {
                step.keys
                    .iter()
                    .filter(|k| received.contains(*k))
                    .cloned()
                    .collect()
            })
            .ok_or_else(|| self.none_under_way(&id))?;
        let keyed = self.control.keyed_app(&id).map_err(internal)?;
        let active = self
            .control
            .apps
            .get_app(&id.tenant, &id.app)
            .map(|live| live.version().clone())
            .ok_or_else(|| refuse(StatusCode::CONFLICT, format!("{id} is not loaded here")))?;
        let mut warmed = 0;
        for key in &keys {
            // Aborted meanwhile (the source stopped waiting): no more.
            if !lock(&self.incoming).contains_key(&app) {
                break;
            }
            match keyed.warm(key, &active).await {
                Ok(woke) => warmed += usize::from(woke),
                // Not fatal: the key wakes at its first request instead.
                Err(e) => tracing::warn!(app = %id, key, "not warmed: {e}"),
            }
        }
        Ok(format!("{{\"warmed\":{warmed}}}"))
    }

    /// Drops what a failed migration stored here.
    async fn abort_here(&self, body: &[u8]) -> Result<String, Refusal> {
        let step: Step = parse(body)?;
        let id = app_id(&step.tenant, &step.app)?;
        if lock(&self.activated).contains(&id.to_string()) {
            return Err(refuse(
                StatusCode::GONE,
                format!("{}: the keys of {id} serve here already", self.this()),
            ));
        }
        let Some(keys) = lock(&self.incoming).remove(&id.to_string()) else {
            return Ok("{}".into());
        };
        let keyed = self.control.keyed_app(&id).map_err(internal)?;
        keyed.set_owners(Owners::from_table(&step.table, self.this()));
        let keys: Vec<String> = keys.into_iter().collect();
        keyed.forget_keys(&keys).await;
        let dropped = keyed.clone();
        tokio::task::spawn_blocking(move || dropped.remove_checkpoints(&keys))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        Ok("{}".into())
    }
}

/// `owners` with this node named.
fn absolute(owners: &Owners, this: &str) -> OwnerTable {
    let name = |o: &Option<String>| o.clone().unwrap_or_else(|| this.to_string());
    OwnerTable {
        all: name(&owners.all),
        keys: owners
            .keys
            .iter()
            .map(|(k, o)| (k.clone(), name(o)))
            .collect(),
    }
}

fn check_request(request: &MigrateRequest) -> Result<(), Refusal> {
    match (&request.to, &request.region) {
        (Some(_), Some(_)) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "name --to NODE or --region R, not both",
            ));
        }
        (None, None) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "name --to NODE or --region R",
            ));
        }
        _ => {}
    }
    if let Some(key) = &request.key {
        let ok = !key.is_empty()
            && key.len() <= crate::stateful::MAX_KEY_LEN
            && key.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "--key must be 1 to {} visible ASCII characters",
                    crate::stateful::MAX_KEY_LEN
                ),
            ));
        }
    }
    Ok(())
}

fn app_id(tenant: &str, app: &str) -> Result<AppId, Refusal> {
    AppId::new(tenant, app).map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("migration request: {e}")))
}

fn json_body<T: Serialize>(value: &T) -> Result<Bytes, Refusal> {
    serde_json::to_vec(value).map(Bytes::from).map_err(internal)
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A chain on the wire: the header, then each checkpoint's metadata and
/// (opened) bytes, each length-prefixed, little-endian.
fn encode_chain(header: &ChainHeader, chain: &dwcp_store::Chain) -> Result<Bytes, Refusal> {
    let header = serde_json::to_vec(header).map_err(internal)?;
    let size: usize = chain.iter().map(|(_, b)| b.len() + 256).sum();
    let mut out = BytesMut::with_capacity(4 + header.len() + size);
    out.put_u32_le(header.len() as u32);
    out.put_slice(&header);
    for (meta, bytes) in chain {
        let meta = serde_json::to_vec(meta).map_err(internal)?;
        out.put_u32_le(meta.len() as u32);
        out.put_slice(&meta);
        out.put_u64_le(bytes.len() as u64);
        out.put_slice(bytes);
    }
    Ok(out.freeze())
}

fn decode_chain(mut body: Bytes) -> Result<(ChainHeader, dwcp_store::Chain), Refusal> {
    fn take(body: &mut Bytes, len: usize) -> Result<Bytes, Refusal> {
        if body.remaining() < len {
            return Err(refuse(StatusCode::BAD_REQUEST, "the chain is cut short"));
        }
        Ok(body.split_to(len))
    }
    fn len32(body: &mut Bytes) -> Result<usize, Refusal> {
        let bytes = take(body, 4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
    }
    let n = len32(&mut body)?;
    let header: ChainHeader = parse(&take(&mut body, n)?)?;
    let mut entries = Vec::new();
    while body.has_remaining() {
        let n = len32(&mut body)?;
        let meta: CheckpointMeta = parse(&take(&mut body, n)?)?;
        let len = take(&mut body, 8)?;
        let len = u64::from_le_bytes(len[..8].try_into().unwrap_or([0xff; 8]));
        let len = usize::try_from(len)
            .map_err(|_| refuse(StatusCode::BAD_REQUEST, "a checkpoint is too large"))?;
        entries.push((meta, take(&mut body, len)?.to_vec()));
    }
    Ok((header, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64) -> CheckpointMeta {
        CheckpointMeta {
            seq,
            version: "v1".into(),
            artifact_sha256: "ab".into(),
            base: seq.checked_sub(1).filter(|b| *b > 0),
            snapshot_id: seq * 7,
            bytes: 3,
            memory_bytes: 65536,
            taken_at: 1,
            reason: "request".into(),
            resources: false,
        }
    }

    #[test]
    fn a_chain_reads_back_as_written_and_a_cut_one_is_refused() {
        let header = ChainHeader {
            tenant: "t".into(),
            app: "a".into(),
            key: "k".into(),
            fresh: true,
        };
        let chain = vec![(meta(1), vec![1, 2, 3]), (meta(2), vec![4; 1000])];
        let body = encode_chain(&header, &chain).expect("encodes");
        let (back, entries) = decode_chain(body.clone()).expect("decodes");
        assert_eq!((back.key.as_str(), back.fresh), ("k", true));
        assert_eq!(entries, chain);
        for cut in [1, 10, body.len() - 1] {
            let err = decode_chain(body.slice(..cut)).expect_err("cut short");
            assert_eq!(err.0, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn a_request_names_one_destination_and_a_usable_key() {
        let to = |to: Option<&str>, region: Option<&str>, key: Option<&str>| MigrateRequest {
            to: to.map(Into::into),
            region: region.map(Into::into),
            key: key.map(Into::into),
        };
        assert!(check_request(&to(Some("b"), None, Some("alice"))).is_ok());
        assert!(check_request(&to(None, Some("eu"), None)).is_ok());
        assert!(check_request(&to(None, None, None)).is_err());
        assert!(check_request(&to(Some("b"), Some("eu"), None)).is_err());
        assert!(check_request(&to(Some("b"), None, Some(""))).is_err());
        assert!(check_request(&to(Some("b"), None, Some("a b"))).is_err());
    }
}
