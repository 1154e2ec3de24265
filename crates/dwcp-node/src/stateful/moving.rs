//! What a live migration needs of a stateful app's keys: who serves
//! each key, a pause that keeps requests waiting at the door, and each
//! key's checkpoints read out (opened) on one node and stored (sealed
//! again, to its own key) on the other. `crate::migrate` runs the steps.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use dwcp_runtime::AppVersion;
use dwcp_store::{Chain, CheckpointMeta};
use serde::{Deserialize, Serialize};

use super::{KeyedApp, KeyedError, lock};

/// Which node serves which key, by node id: what a placement record and a
/// migration carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerTable {
    /// The node serving every key not named in `keys`.
    pub all: String,
    /// Keys served apart from the rest, and where.
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
}

/// [`OwnerTable`] as one node sees it: `None` is this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owners {
    /// The node serving every key not named in `keys`.
    pub all: Option<String>,
    /// Keys served apart from the rest.
    pub keys: HashMap<String, Option<String>>,
}

impl Owners {
    /// The table as node `this` sees it.
    pub fn from_table(table: &OwnerTable, this: &str) -> Owners {
        let rel = |node: &String| (node != this).then(|| node.clone());
        Owners {
            all: rel(&table.all),
            keys: table
                .keys
                .iter()
                .map(|(key, node)| (key.clone(), rel(node)))
                .collect(),
        }
    }

    /// The node serving `key`, if another one does.
    pub fn of(&self, key: &str) -> Option<&str> {
        match self.keys.get(key) {
            Some(owner) => owner.as_deref(),
            None => self.all.as_deref(),
        }
    }
}

impl OwnerTable {
    /// The table after `keys` (or, `None`, every key) moved to `to`.
    pub fn moved(&self, keys: Option<&[String]>, to: &str) -> OwnerTable {
        let mut next = self.clone();
        match keys {
            Some(keys) => {
                for key in keys {
                    next.keys.insert(key.clone(), to.to_string());
                }
            }
            None => {
                // Keys held apart on the node the rest leaves go too.
                for node in next.keys.values_mut() {
                    if *node == self.all {
                        *node = to.to_string();
                    }
                }
                next.all = to.to_string();
            }
        }
        // An exception equal to the rule is no exception.
        let all = next.all.clone();
        next.keys.retain(|_, node| *node != all);
        next
    }
}

impl KeyedApp {
    /// Who serves which key, as this node sees it.
    pub fn owners(&self) -> Owners {
        lock(&self.owners).clone()
    }

    /// Sets who serves which key. Takes effect for the next request that
    /// comes in; requests inside keep going.
    pub fn set_owners(&self, owners: Owners) {
        *lock(&self.owners) = owners;
    }

    /// Keys this node serves: those with checkpoints here and those live.
    pub fn keys_here(&self) -> Result<Vec<String>, KeyedError> {
        let owners = self.owners();
        let stored = self.stored_keys(None)?;
        let live = lock(&self.keys).keys().cloned().collect::<Vec<_>>();
        Ok(stored
            .into_iter()
            .chain(live)
            .filter(|key| owners.of(key).is_none())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect())
    }

    /// Keys with a live instance here (serving, or kept between requests).
    pub fn live_keys(&self) -> Vec<String> {
        self.slots()
            .into_iter()
            .filter(|(_, slot)| slot.try_lock().map_or(true, |s| s.live.is_some()))
            .map(|(key, _)| key)
            .collect()
    }

    /// Holds every request at the door (those inside finish first) until
    /// the guard is dropped.
    pub async fn pause(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.door.write().await
    }

    /// Checkpoints `key` now if it served requests since its last
    /// checkpoint (between two of its requests, which wait meanwhile).
    pub async fn checkpoint_if_dirty(&self, key: &str) -> Result<(), KeyedError> {
        let slot = self.slot(key);
        let mut slot = slot.lock().await;
        if slot.live.is_some() && slot.dirty {
            self.checkpoint(key, &mut slot, "migrate").await?;
        }
        Ok(())
    }

    /// The checkpoints of `key`'s newest chain not in `sent`, opened: what
    /// another node needs, besides what it was sent, to restore the key's
    /// state as it is stored now. Blocking.
    pub fn export_chain(&self, key: &str, sent: &BTreeSet<u64>) -> Result<Chain, KeyedError> {
        let scope = self.scope(key);
        // Listed and read in two transactions: a checkpoint stored between
        // them may prune the chain listed; the next try reads the new one.
        let mut chain = None;
        for _ in 0..3 {
            let Some(newest) = self.checkpoints.list(&scope)?.pop() else {
                return Ok(Vec::new());
            };
            chain = self.checkpoints.chain_except(&scope, newest.seq, sent)?;
            if chain.is_some() {
                break;
            }
        }
        let missing: Chain = chain.ok_or_else(|| {
            KeyedError::Instance(format!("key `{key}`: its newest chain is incomplete"))
        })?;
        let opened = self
            .seal
            .open_chain(&self.tenant, &self.app, key, &missing)
            .map_err(KeyedError::Instance)?;
        Ok(missing
            .into_iter()
            .zip(opened)
            .map(|((meta, _), plain)| (meta, plain))
            .collect())
    }

    /// Stores checkpoints of `key` another node sent, sealed to this
    /// node's key; `fresh` first removes what this node held of the key
    /// (state of an earlier stay here). Answers their metadata as stored.
    /// Blocking.
    pub fn import_chain(
        &self,
        key: &str,
        fresh: bool,
        entries: &[(CheckpointMeta, Vec<u8>)],
    ) -> Result<Vec<CheckpointMeta>, KeyedError> {
        let scope = self.scope(key);
        if fresh {
            self.checkpoints.remove_key(&scope)?;
        }
        // Room for the whole chain, whatever the app keeps: pruning never
        // drops what the newest needs, but a chain longer than `keep`
        // arrives one checkpoint at a time.
        let keep = (self.settings().keep as usize).max(entries.len());
        let mut sealed = Vec::with_capacity(entries.len());
        for (meta, plain) in entries {
            let bytes = self
                .seal
                .seal(&self.tenant, &self.app, key, meta.snapshot_id, plain)
                .map_err(|e| KeyedError::Instance(format!("cannot seal the checkpoint: {e}")))?;
            let mut meta = meta.clone();
            meta.bytes = bytes.len() as u64;
            sealed.push((meta, bytes));
        }
        // One durable write for the lot: a sync each would be most of a
        // migration's pause.
        self.checkpoints.put_chain(&scope, &sealed, keep)?;
        Ok(sealed.into_iter().map(|(meta, _)| meta).collect())
    }

    /// Restores `key` into a live instance now, from its stored
    /// checkpoints, before it serves here: a migration's destination does
    /// it while the source still serves, so that the first request here
    /// does not wait for it. Answers whether it woke the key.
    pub async fn warm(&self, key: &str, active: &Arc<AppVersion>) -> Result<bool, KeyedError> {
        let slot = self.slot(key);
        let mut slot = slot.lock().await;
        if slot.live.is_some() {
            return Ok(false);
        }
        self.wake(key, &mut slot, active)
            .await
            .map_err(|response| {
                KeyedError::Instance(format!("the wake answered {}", response.status()))
            })?;
        // Idle from now: should the migration never finish (its source
        // gone), the instance is hibernated like any idle key's.
        slot.last_used = Some(std::time::Instant::now());
        Ok(true)
    }

    /// After [`KeyedApp::import_chain`]: a live instance of `key` (warmed)
    /// moves on by the deltas imported (`stored`: as stored), as a wake
    /// from them would; anything else (a full snapshot, a delta that does
    /// not follow) lets it go, and the next request here wakes the key
    /// from the store.
    pub async fn follow_import(
        &self,
        key: &str,
        entries: &[(CheckpointMeta, Vec<u8>)],
        stored: &[CheckpointMeta],
    ) {
        let slot = self.slot(key);
        let mut slot = slot.lock().await;
        if slot.live.is_some() && entries.is_empty() {
            return;
        }
        let follows = entries.first().and_then(|(m, _)| m.base).is_some()
            && entries.first().and_then(|(m, _)| m.base) == slot.base
            && entries.iter().all(|(m, _)| m.base.is_some());
        let plain: Vec<&[u8]> = entries.iter().map(|(_, b)| b.as_slice()).collect();
        let applied = match slot.live.as_mut() {
            Some(live) if follows => match live.apply(&plain).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(tenant = %self.tenant, app = %self.app, key, "the key's last changes did not apply to its warm instance ({e}); it wakes from the store");
                    false
                }
            },
            _ => false,
        };
        if applied {
            slot.latest = Some(stored.last().cloned());
            slot.base = stored.last().map(|m| m.seq);
            return;
        }
        slot.let_go();
        slot.latest = None;
        slot.base = None;
        slot.dirty = false;
    }

    /// Lets `keys`' live instances go and forgets what their slots knew of
    /// the store: the next request here reads the key's checkpoints anew.
    pub async fn forget_keys(&self, keys: &[String]) {
        for key in keys {
            let slot = self.slot(key);
            let mut slot = slot.lock().await;
            slot.let_go();
            slot.latest = None;
            slot.base = None;
            slot.dirty = false;
        }
        let gone: Vec<String> = keys.to_vec();
        self.forget_slots(&gone);
    }

    /// Removes `keys`' checkpoints from this node's store. Blocking.
    pub fn remove_checkpoints(&self, keys: &[String]) -> Result<usize, KeyedError> {
        let mut removed = 0;
        for key in keys {
            removed += self.checkpoints.remove_key(&self.scope(key))?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(all: &str, keys: &[(&str, &str)]) -> OwnerTable {
        OwnerTable {
            all: all.into(),
            keys: keys
                .iter()
                .map(|(k, n)| (k.to_string(), n.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_whole_move_takes_the_keys_held_apart_on_the_node_it_leaves() {
        let before = table("a", &[("k1", "c"), ("k2", "a")]);
        assert_eq!(before.moved(None, "b"), table("b", &[("k1", "c")]));
    }

    #[test]
    fn one_key_moves_alone_and_moving_it_back_removes_the_exception() {
        let before = table("a", &[]);
        let moved = before.moved(Some(&["k".to_string()]), "b");
        assert_eq!(moved, table("a", &[("k", "b")]));
        assert_eq!(moved.moved(Some(&["k".to_string()]), "a"), before);
    }

    #[test]
    fn each_node_sees_itself_as_none() {
        let t = table("a", &[("k", "b")]);
        let on_a = Owners::from_table(&t, "a");
        assert_eq!(on_a.of("x"), None);
        assert_eq!(on_a.of("k"), Some("b"));
        let on_b = Owners::from_table(&t, "b");
        assert_eq!(on_b.of("x"), Some("a"));
        assert_eq!(on_b.of("k"), None);
    }
}
