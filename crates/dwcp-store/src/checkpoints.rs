//! Checkpoints of stateful apps' keys, in their own redb file.
//!
//! They live apart from `state.redb` because they are written on every
//! request of a stateful app and can be large: the control state stays small
//! to back up and quick to read. Each write is one redb transaction, durable
//! when `put` returns (redb syncs on commit), so an acknowledged request's
//! checkpoint survives a killed process.
//!
//! A key's checkpoints form a chain: a full snapshot now and then, each
//! other one a delta of the one before it. Pruning keeps the last K and
//! whatever their chains need.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::state::StoreError;

/// Checkpoint metadata by (`tenant/app/key`, sequence number).
const META: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("checkpoint_meta");
/// Snapshot bytes, same keys.
const DATA: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("checkpoint_data");

/// The snapshots a restore decodes, oldest (the full one) first.
pub type Chain = Vec<(CheckpointMeta, Vec<u8>)>;

/// Memory redb may cache of the checkpoints file.
const CACHE_BYTES: usize = 64 << 20;

/// What one checkpoint is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Its sequence number within the key, from 1.
    pub seq: u64,
    /// The app version whose instance it was taken from.
    pub version: String,
    /// The SHA-256 of the compiled artifact it restores into.
    pub artifact_sha256: String,
    /// The checkpoint it is a delta of (`None`: a full snapshot).
    pub base: Option<u64>,
    /// The snapshot's id (its checksum), what a delta names as its base.
    pub snapshot_id: u64,
    /// Encoded size in bytes.
    pub bytes: u64,
    /// Bytes of linear memory it holds.
    pub memory_bytes: u64,
    /// When it was taken (seconds since the epoch).
    pub taken_at: u64,
    /// Why: `request`, `interval`, `hibernate`, `drain`, `manual`, `restore`.
    pub reason: String,
    /// The guest held host resources when it was taken (handles a snapshot
    /// does not carry; a wake from it may fail on their first use).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resources: bool,
}

/// The checkpoints of every stateful key of a node, in `checkpoints.redb`.
pub struct CheckpointStore {
    db: Database,
    /// Checkpoints waiting for the next group commit.
    queue: Mutex<Queue>,
    /// Signalled after each group commit.
    committed: Condvar,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// A caller is committing a batch now.
    committing: bool,
}

/// A checkpoint waiting to be committed.
struct Pending {
    scope: String,
    seq: u64,
    meta: Vec<u8>,
    data: Vec<u8>,
    keep: usize,
    done: Arc<Done>,
}

/// The outcome of the commit a checkpoint went into.
#[derive(Default)]
struct Done {
    outcome: OnceLock<Result<(), String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `tenant/app/key`: tenant and app names hold no `/`, so this splits back.
pub fn key_scope(tenant: &str, app: &str, key: &str) -> String {
    format!("{tenant}/{app}/{key}")
}

impl CheckpointStore {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // A bounded cache: hibernated keys cost disk, not memory. Wakes read
        // a key's chain once; what they need is the key's latest pages.
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(StoreError::db)?;
        let txn = db.begin_write().map_err(StoreError::db)?;
        txn.open_table(META).map_err(StoreError::db)?;
        txn.open_table(DATA).map_err(StoreError::db)?;
        txn.commit().map_err(StoreError::db)?;
        Ok(Self {
            db,
            queue: Mutex::default(),
            committed: Condvar::new(),
        })
    }

    /// Stores a checkpoint of `scope` and prunes all but the last `keep`
    /// (and what their chains need); durable when it returns.
    ///
    /// Checkpoints of different keys that arrive together are committed in
    /// one transaction (group commit): the first caller to find no commit
    /// running commits everything queued, the others wait for its outcome.
    /// A sync per request would otherwise cap a node's stateful requests at
    /// one per sync, whatever the number of keys. Blocking.
    pub fn put(
        &self,
        scope: &str,
        meta: &CheckpointMeta,
        data: &[u8],
        keep: usize,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_vec(meta).map_err(|source| StoreError::Decode {
            key: scope.to_string(),
            source,
        })?;
        let done = Arc::new(Done::default());
        let mut queue = lock(&self.queue);
        queue.pending.push(Pending {
            scope: scope.to_string(),
            seq: meta.seq,
            meta: value,
            data: data.to_vec(),
            keep: keep.max(1),
            done: done.clone(),
        });
        if queue.committing {
            // Another caller commits; ours goes in its next batch.
            while done.outcome.get().is_none() {
                queue = self
                    .committed
                    .wait(queue)
                    .unwrap_or_else(|e| e.into_inner());
            }
        } else {
            queue.committing = true;
            while !queue.pending.is_empty() {
                let batch = std::mem::take(&mut queue.pending);
                drop(queue);
                let outcome = self.commit(&batch).map_err(|e| e.to_string());
                for pending in &batch {
                    let _ = pending.done.outcome.set(outcome.clone());
                }
                queue = lock(&self.queue);
                self.committed.notify_all();
            }
            queue.committing = false;
        }
        drop(queue);
        match done.outcome.get() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(StoreError::Commit(e.clone())),
            None => Err(StoreError::Commit("the commit went missing".into())),
        }
    }

    /// Stores checkpoints of `scope` in order (a chain another node sent),
    /// in one durable transaction; prunes as [`CheckpointStore::put`] does.
    /// Blocking.
    pub fn put_chain(
        &self,
        scope: &str,
        chain: &[(CheckpointMeta, Vec<u8>)],
        keep: usize,
    ) -> Result<(), StoreError> {
        let batch = chain
            .iter()
            .map(|(meta, data)| {
                Ok(Pending {
                    scope: scope.to_string(),
                    seq: meta.seq,
                    meta: serde_json::to_vec(meta).map_err(|source| StoreError::Decode {
                        key: scope.to_string(),
                        source,
                    })?,
                    data: data.clone(),
                    keep: keep.max(1),
                    done: Arc::default(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.commit(&batch)
    }

    /// One durable transaction with every checkpoint of `batch`.
    fn commit(&self, batch: &[Pending]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        {
            let mut metas = txn.open_table(META).map_err(StoreError::db)?;
            let mut datas = txn.open_table(DATA).map_err(StoreError::db)?;
            for p in batch {
                let scope = p.scope.as_str();
                metas
                    .insert((scope, p.seq), p.meta.as_slice())
                    .map_err(StoreError::db)?;
                datas
                    .insert((scope, p.seq), p.data.as_slice())
                    .map_err(StoreError::db)?;
                let all = list_in(&metas, scope)?;
                for seq in prunable(&all, p.keep) {
                    metas.remove((scope, seq)).map_err(StoreError::db)?;
                    datas.remove((scope, seq)).map_err(StoreError::db)?;
                }
            }
        }
        txn.commit().map_err(StoreError::db)
    }

    /// Writes every checkpoint, read in one transaction, to `out` as
    /// records (`scope`, `seq`, metadata, snapshot: each length-prefixed,
    /// little-endian); answers how many. What `dwcp backup` carries.
    pub fn export(&self, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let metas = txn.open_table(META).map_err(StoreError::db)?;
        let datas = txn.open_table(DATA).map_err(StoreError::db)?;
        let mut n = 0;
        for entry in metas.iter().map_err(StoreError::db)? {
            let (k, meta) = entry.map_err(StoreError::db)?;
            let (scope, seq) = k.value();
            let Some(data) = datas.get((scope, seq)).map_err(StoreError::db)? else {
                continue;
            };
            let io = |e: std::io::Error| StoreError::Commit(format!("export: {e}"));
            out.write_all(&(scope.len() as u32).to_le_bytes())
                .map_err(io)?;
            out.write_all(scope.as_bytes()).map_err(io)?;
            out.write_all(&seq.to_le_bytes()).map_err(io)?;
            out.write_all(&(meta.value().len() as u32).to_le_bytes())
                .map_err(io)?;
            out.write_all(meta.value()).map_err(io)?;
            out.write_all(&(data.value().len() as u64).to_le_bytes())
                .map_err(io)?;
            out.write_all(data.value()).map_err(io)?;
            n += 1;
        }
        Ok(n)
    }

    /// Reads records [`CheckpointStore::export`] wrote and stores them, a
    /// batch per transaction; answers how many. Every length is checked
    /// before it is used, and every record's metadata must decode.
    pub fn import(&self, input: &mut dyn std::io::Read) -> Result<u64, String> {
        fn exact(input: &mut dyn std::io::Read, n: usize) -> Result<Vec<u8>, String> {
            use std::io::Read as _;
            // Grows as bytes arrive: a length is not trusted for an allocation.
            let mut buf = Vec::new();
            std::io::Read::take(input, n as u64)
                .read_to_end(&mut buf)
                .map_err(|e| e.to_string())?;
            if buf.len() != n {
                return Err("the checkpoints end early".into());
            }
            Ok(buf)
        }
        fn le<const N: usize>(input: &mut dyn std::io::Read) -> Result<[u8; N], String> {
            let mut b = [0u8; N];
            input.read_exact(&mut b).map_err(|e| e.to_string())?;
            Ok(b)
        }
        let mut n = 0u64;
        let mut batch: Vec<(String, u64, Vec<u8>, Vec<u8>)> = Vec::new();
        loop {
            let mut first = [0u8; 1];
            if input.read(&mut first).map_err(|e| e.to_string())? == 0 {
                break;
            }
            let rest: [u8; 3] = le(input)?;
            let scope_len = u32::from_le_bytes([first[0], rest[0], rest[1], rest[2]]) as usize;
            if scope_len > 1024 {
                return Err(format!("a key name of {scope_len} bytes"));
            }
            let scope = String::from_utf8(exact(input, scope_len)?)
                .map_err(|_| "a key name that is not UTF-8".to_string())?;
            let seq = u64::from_le_bytes(le(input)?);
            let meta_len = u32::from_le_bytes(le(input)?) as usize;
            if meta_len > 1 << 20 {
                return Err(format!("checkpoint metadata of {meta_len} bytes"));
            }
            let meta = exact(input, meta_len)?;
            decode(&scope, &meta).map_err(|e| e.to_string())?;
            let data_len = u64::from_le_bytes(le(input)?);
            if data_len > 8 << 30 {
                return Err(format!("a checkpoint of {data_len} bytes"));
            }
            let data = exact(input, data_len as usize)?;
            batch.push((scope, seq, meta, data));
            n += 1;
            if batch.len() >= 256 {
                self.insert_all(&std::mem::take(&mut batch))
                    .map_err(|e| e.to_string())?;
            }
        }
        self.insert_all(&batch).map_err(|e| e.to_string())?;
        Ok(n)
    }

    fn insert_all(&self, batch: &[(String, u64, Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        {
            let mut metas = txn.open_table(META).map_err(StoreError::db)?;
            let mut datas = txn.open_table(DATA).map_err(StoreError::db)?;
            for (scope, seq, meta, data) in batch {
                metas
                    .insert((scope.as_str(), *seq), meta.as_slice())
                    .map_err(StoreError::db)?;
                datas
                    .insert((scope.as_str(), *seq), data.as_slice())
                    .map_err(StoreError::db)?;
            }
        }
        txn.commit().map_err(StoreError::db)
    }

    /// A key's checkpoints, oldest first.
    pub fn list(&self, scope: &str) -> Result<Vec<CheckpointMeta>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let metas = txn.open_table(META).map_err(StoreError::db)?;
        list_in(&metas, scope)
    }

    /// Whether the store holds no checkpoint at all.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let metas = txn.open_table(META).map_err(StoreError::db)?;
        Ok(metas.first().map_err(StoreError::db)?.is_none())
    }

    /// Every key of `tenant/app` with its latest checkpoint.
    pub fn keys(
        &self,
        tenant: &str,
        app: &str,
    ) -> Result<Vec<(String, CheckpointMeta)>, StoreError> {
        let prefix = format!("{tenant}/{app}/");
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let metas = txn.open_table(META).map_err(StoreError::db)?;
        let mut out: Vec<(String, CheckpointMeta)> = Vec::new();
        for entry in metas
            .range((prefix.as_str(), 0)..)
            .map_err(StoreError::db)?
        {
            let (k, v) = entry.map_err(StoreError::db)?;
            let (scope, _) = k.value();
            let Some(key) = scope.strip_prefix(&prefix) else {
                break;
            };
            let meta: CheckpointMeta = decode(scope, v.value())?;
            match out.last_mut() {
                Some((last, latest)) if last == key => *latest = meta,
                _ => out.push((key.to_string(), meta)),
            }
        }
        Ok(out)
    }

    /// The versions any stored checkpoint of `tenant/app` belongs to (a
    /// restore may go back to any of them).
    pub fn versions(
        &self,
        tenant: &str,
        app: &str,
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let prefix = format!("{tenant}/{app}/");
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let metas = txn.open_table(META).map_err(StoreError::db)?;
        let mut out = std::collections::BTreeSet::new();
        for entry in metas
            .range((prefix.as_str(), 0)..)
            .map_err(StoreError::db)?
        {
            let (k, v) = entry.map_err(StoreError::db)?;
            let (scope, _) = k.value();
            if !scope.starts_with(&prefix) {
                break;
            }
            out.insert(decode(scope, v.value())?.version);
        }
        Ok(out)
    }

    /// The snapshots to decode, in order, to restore checkpoint `seq`: the
    /// full one its chain starts from, then each delta.
    pub fn chain(&self, scope: &str, seq: u64) -> Result<Option<Chain>, StoreError> {
        self.chain_except(scope, seq, &std::collections::BTreeSet::new())
    }

    /// The checkpoints of `seq`'s chain (as [`CheckpointStore::chain`])
    /// whose sequence numbers are not in `have`, read in one transaction;
    /// `None` if the chain is incomplete. Only their bytes are read: what
    /// another node already holds is not copied again.
    pub fn chain_except(
        &self,
        scope: &str,
        seq: u64,
        have: &std::collections::BTreeSet<u64>,
    ) -> Result<Option<Chain>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let metas = txn.open_table(META).map_err(StoreError::db)?;
        let datas = txn.open_table(DATA).map_err(StoreError::db)?;
        let mut chain = Vec::new();
        let mut next = Some(seq);
        while let Some(seq) = next {
            let Some(meta) = metas.get((scope, seq)).map_err(StoreError::db)? else {
                return Ok(None);
            };
            let meta: CheckpointMeta = decode(scope, meta.value())?;
            // A base must be older: a loop would be a damaged store.
            if meta.base.is_some_and(|base| base >= seq) {
                return Ok(None);
            }
            next = meta.base;
            if have.contains(&seq) {
                continue;
            }
            let Some(data) = datas.get((scope, seq)).map_err(StoreError::db)? else {
                return Ok(None);
            };
            chain.push((meta, data.value().to_vec()));
        }
        chain.reverse();
        Ok(Some(chain))
    }

    /// Removes every checkpoint of `scope`; answers how many there were.
    pub fn remove_key(&self, scope: &str) -> Result<usize, StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        let n = {
            let mut metas = txn.open_table(META).map_err(StoreError::db)?;
            let mut datas = txn.open_table(DATA).map_err(StoreError::db)?;
            let all = list_in(&metas, scope)?;
            for meta in &all {
                metas.remove((scope, meta.seq)).map_err(StoreError::db)?;
                datas.remove((scope, meta.seq)).map_err(StoreError::db)?;
            }
            all.len()
        };
        txn.commit().map_err(StoreError::db)?;
        Ok(n)
    }
}

fn list_in(
    metas: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    scope: &str,
) -> Result<Vec<CheckpointMeta>, StoreError> {
    let mut out = Vec::new();
    for entry in metas
        .range((scope, 0)..=(scope, u64::MAX))
        .map_err(StoreError::db)?
    {
        let (_, v) = entry.map_err(StoreError::db)?;
        out.push(decode(scope, v.value())?);
    }
    Ok(out)
}

/// The sequence numbers to drop so that the last `keep` remain restorable:
/// everything older than the oldest full snapshot their chains reach.
fn prunable(all: &[CheckpointMeta], keep: usize) -> Vec<u64> {
    if all.len() <= keep {
        return Vec::new();
    }
    let oldest_kept = all.len() - keep;
    // Walk back from the oldest kept one to the full snapshot it needs.
    let mut start = oldest_kept;
    while let Some(base) = all[start].base {
        match all[..start].iter().rposition(|m| m.seq == base) {
            Some(i) => start = i,
            None => break,
        }
    }
    all[..start].iter().map(|m| m.seq).collect()
}

fn decode(key: &str, bytes: &[u8]) -> Result<CheckpointMeta, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64, base: Option<u64>) -> CheckpointMeta {
        CheckpointMeta {
            seq,
            version: "v1".into(),
            artifact_sha256: "a".into(),
            base,
            snapshot_id: seq,
            bytes: 1,
            memory_bytes: 65536,
            taken_at: 0,
            reason: "request".into(),
            resources: false,
        }
    }

    #[test]
    fn pruning_keeps_what_the_last_chains_need() {
        // 1 full, 2..4 deltas, 5 full, 6 delta.
        let all = vec![
            meta(1, None),
            meta(2, Some(1)),
            meta(3, Some(2)),
            meta(4, Some(3)),
            meta(5, None),
            meta(6, Some(5)),
        ];
        assert_eq!(prunable(&all, 2), vec![1, 2, 3, 4]);
        // Keeping 3 keeps 4, whose chain goes back to 1.
        assert!(prunable(&all, 3).is_empty());
        assert!(prunable(&all, 10).is_empty());
    }

    #[test]
    fn export_then_import_gives_the_same_checkpoints_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let from = CheckpointStore::open(&dir.path().join("a.redb")).unwrap();
        for (key, n) in [("k1", 3u64), ("k/2", 2)] {
            let scope = key_scope("t", "a", key);
            for seq in 1..=n {
                let base = (seq > 1).then(|| seq - 1);
                from.put(&scope, &meta(seq, base), &[seq as u8; 100], 10)
                    .unwrap();
            }
        }
        let mut bytes = Vec::new();
        assert_eq!(from.export(&mut bytes).unwrap(), 5);
        let to = CheckpointStore::open(&dir.path().join("b.redb")).unwrap();
        assert_eq!(to.import(&mut bytes.as_slice()).unwrap(), 5);
        assert_eq!(to.keys("t", "a").unwrap(), from.keys("t", "a").unwrap());
        let scope = key_scope("t", "a", "k1");
        assert_eq!(to.chain(&scope, 3).unwrap(), from.chain(&scope, 3).unwrap());
        let cut = &bytes[..bytes.len() - 10];
        let other = CheckpointStore::open(&dir.path().join("c.redb")).unwrap();
        assert!(other.import(&mut &cut[..]).is_err());
        let mut garbage = bytes.clone();
        garbage[0] = 0xff;
        garbage[1] = 0xff;
        assert!(other.import(&mut garbage.as_slice()).is_err());
    }

    #[test]
    fn concurrent_puts_are_all_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CheckpointStore::open(&dir.path().join("c.redb")).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let scope = key_scope("t", "a", &format!("k{t}"));
                    for seq in 1..=20u64 {
                        let base = (seq > 1).then(|| seq - 1);
                        store
                            .put(&scope, &meta(seq, base), &[t as u8], 100)
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for t in 0..8u8 {
            let scope = key_scope("t", "a", &format!("k{t}"));
            let chain = store.chain(&scope, 20).unwrap().unwrap();
            assert_eq!(chain.len(), 20);
            assert!(chain.iter().all(|(_, d)| d == &[t]));
        }
    }

    #[test]
    fn a_chain_put_at_once_reads_back_and_only_what_is_missing_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(&dir.path().join("c.redb")).unwrap();
        let scope = key_scope("t", "a", "k");
        let chain: Chain = (1..=4u64)
            .map(|seq| {
                (
                    meta(seq, seq.checked_sub(1).filter(|b| *b > 0)),
                    vec![seq as u8; 10],
                )
            })
            .collect();
        store.put_chain(&scope, &chain, 1).unwrap();
        assert_eq!(store.chain(&scope, 4).unwrap().unwrap(), chain);
        let have = std::collections::BTreeSet::from([1, 2]);
        let rest = store.chain_except(&scope, 4, &have).unwrap().unwrap();
        assert_eq!(rest, chain[2..].to_vec());
        // A chain with a gap is incomplete, whatever is held elsewhere.
        store.remove_key(&scope).unwrap();
        store.put_chain(&scope, &chain[2..], 1).unwrap();
        assert!(
            store
                .chain_except(&scope, 4, &Default::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn put_prunes_and_chain_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(&dir.path().join("c.redb")).unwrap();
        let scope = key_scope("t", "a", "k/1");
        for seq in 1..=6u64 {
            let base = if seq == 1 || seq == 5 {
                None
            } else {
                Some(seq - 1)
            };
            store
                .put(&scope, &meta(seq, base), &[seq as u8], 2)
                .unwrap();
        }
        let seqs: Vec<u64> = store.list(&scope).unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![5, 6]);
        let chain = store.chain(&scope, 6).unwrap().unwrap();
        assert_eq!(
            chain.iter().map(|(m, d)| (m.seq, d[0])).collect::<Vec<_>>(),
            vec![(5, 5), (6, 6)]
        );
        // Another key of the same app and a key of another app stay apart.
        store
            .put(&key_scope("t", "a", "k2"), &meta(1, None), &[9], 2)
            .unwrap();
        store
            .put(&key_scope("t", "ab", "k"), &meta(1, None), &[9], 2)
            .unwrap();
        let keys = store.keys("t", "a").unwrap();
        assert_eq!(
            keys.iter()
                .map(|(k, m)| (k.as_str(), m.seq))
                .collect::<Vec<_>>(),
            vec![("k/1", 6), ("k2", 1)]
        );
        assert_eq!(store.remove_key(&scope).unwrap(), 2);
        assert!(store.chain(&scope, 6).unwrap().is_none());
    }
}
