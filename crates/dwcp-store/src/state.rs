//! Tenants and apps in one redb file.

use std::path::Path;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};

use serde::{Deserialize, Serialize};

use crate::records::{AppRecord, AuditEntry, TenantRecord, unix_now};

const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");
/// Audit entries by sequence number (microseconds since the epoch, made
/// unique): append-only.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Requests served per app (`tenant/app`), over its life: what orders the
/// loading at start, busiest first. Flushed now and then, not per request.
const SERVED: TableDefinition<&str, u64> = TableDefinition::new("served");
/// Each tenant's feature flags: one flagd flag-definition JSON document per
/// tenant, stored as the text the node validated.
const FLAGS: TableDefinition<&str, &str> = TableDefinition::new("flags");

/// An error of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("state database: {0}")]
    Db(#[from] redb::Error),
    /// A group commit of checkpoints failed (the reason, shared by every
    /// checkpoint of the batch).
    #[error("checkpoint store: {0}")]
    Commit(String),
    /// A stored record could not be decoded.
    #[error("state record `{key}` is unreadable: {source}")]
    Decode {
        /// The record's key.
        key: String,
        /// What went wrong.
        source: serde_json::Error,
    },
}

impl StoreError {
    pub(crate) fn db(e: impl Into<redb::Error>) -> Self {
        StoreError::Db(e.into())
    }
}

/// Everything in a state store, as read in one transaction: what a backup
/// holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateExport {
    /// Every tenant.
    pub tenants: Vec<TenantRecord>,
    /// Every app.
    pub apps: Vec<AppRecord>,
    /// The audit log with its keys (microseconds since the epoch).
    pub audit: Vec<(u64, AuditEntry)>,
    /// Each tenant's flag-definition document (absent in older backups).
    #[serde(default)]
    pub flags: Vec<(String, String)>,
}

/// Tenants and apps, durable in `state.redb`.
pub struct StateStore {
    db: Database,
}

impl StateStore {
    /// Opens the database at `path`, creating it (and its tables) if needed.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(StoreError::db)?;
        let txn = db.begin_write().map_err(StoreError::db)?;
        txn.open_table(TENANTS).map_err(StoreError::db)?;
        txn.open_table(APPS).map_err(StoreError::db)?;
        txn.open_table(AUDIT).map_err(StoreError::db)?;
        txn.open_table(SERVED).map_err(StoreError::db)?;
        txn.open_table(FLAGS).map_err(StoreError::db)?;
        txn.commit().map_err(StoreError::db)?;
        Ok(Self { db })
    }

    /// Every tenant, by name.
    pub fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        self.scan(TENANTS, "")
    }

    /// Every app, ordered by tenant then app; only `tenant`'s if given.
    pub fn apps(&self, tenant: Option<&str>) -> Result<Vec<AppRecord>, StoreError> {
        match tenant {
            Some(t) => self.scan(APPS, &format!("{t}/")),
            None => self.scan(APPS, ""),
        }
    }

    /// One app, if it exists.
    pub fn app(&self, tenant: &str, app: &str) -> Result<Option<AppRecord>, StoreError> {
        let key = format!("{tenant}/{app}");
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let table = txn.open_table(APPS).map_err(StoreError::db)?;
        let value = table.get(key.as_str()).map_err(StoreError::db)?;
        value.map(|v| decode(&key, v.value())).transpose()
    }

    /// One tenant, if it exists.
    pub fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let table = txn.open_table(TENANTS).map_err(StoreError::db)?;
        let value = table.get(name).map_err(StoreError::db)?;
        value.map(|v| decode(name, v.value())).transpose()
    }

    /// Writes a tenant record (creating or replacing it).
    pub fn put_tenant(&self, record: &TenantRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        txn.open_table(TENANTS)
            .map_err(StoreError::db)?
            .insert(record.name.as_str(), encode(record).as_slice())
            .map_err(StoreError::db)?;
        txn.commit().map_err(StoreError::db)
    }

    /// Removes a tenant and every app of it in one transaction; returns
    /// the tenant and the apps removed, or `None` if there was no tenant.
    pub fn delete_tenant(
        &self,
        name: &str,
    ) -> Result<Option<(TenantRecord, Vec<AppRecord>)>, StoreError> {
        let apps = self.apps(Some(name))?;
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        let tenant = {
            let mut tenants = txn.open_table(TENANTS).map_err(StoreError::db)?;
            let old = tenants.remove(name).map_err(StoreError::db)?;
            let Some(old) = old else {
                return Ok(None);
            };
            decode::<TenantRecord>(name, old.value())?
        };
        {
            let mut table = txn.open_table(APPS).map_err(StoreError::db)?;
            let mut served = txn.open_table(SERVED).map_err(StoreError::db)?;
            for app in &apps {
                let key = format!("{}/{}", app.tenant, app.app);
                table.remove(key.as_str()).map_err(StoreError::db)?;
                served.remove(key.as_str()).map_err(StoreError::db)?;
            }
            txn.open_table(FLAGS)
                .map_err(StoreError::db)?
                .remove(name)
                .map_err(StoreError::db)?;
        }
        txn.commit().map_err(StoreError::db)?;
        Ok(Some((tenant, apps)))
    }

    /// Writes an app record, creating its tenant if it does not exist yet,
    /// in one transaction.
    pub fn put_app(&self, record: &AppRecord) -> Result<(), StoreError> {
        let key = format!("{}/{}", record.tenant, record.app);
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        {
            let mut tenants = txn.open_table(TENANTS).map_err(StoreError::db)?;
            let exists = tenants
                .get(record.tenant.as_str())
                .map_err(StoreError::db)?
                .is_some();
            if !exists {
                let tenant = TenantRecord {
                    name: record.tenant.clone(),
                    created_at: unix_now(),
                    quota: Default::default(),
                };
                tenants
                    .insert(record.tenant.as_str(), encode(&tenant).as_slice())
                    .map_err(StoreError::db)?;
            }
            let mut apps = txn.open_table(APPS).map_err(StoreError::db)?;
            apps.insert(key.as_str(), encode(record).as_slice())
                .map_err(StoreError::db)?;
        }
        txn.commit().map_err(StoreError::db)
    }

    /// A tenant's flag-definition document, if it has one.
    pub fn flags(&self, tenant: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let table = txn.open_table(FLAGS).map_err(StoreError::db)?;
        let value = table.get(tenant).map_err(StoreError::db)?;
        Ok(value.map(|v| v.value().to_string()))
    }

    /// Every tenant's flag-definition document, by tenant.
    pub fn all_flags(&self) -> Result<Vec<(String, String)>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        flags_in(&txn)
    }

    /// Replaces a tenant's flag-definition document (already validated by
    /// the caller), creating the tenant if it does not exist yet, in one
    /// transaction.
    pub fn put_flags(&self, tenant: &str, document: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        {
            let mut tenants = txn.open_table(TENANTS).map_err(StoreError::db)?;
            let exists = tenants.get(tenant).map_err(StoreError::db)?.is_some();
            if !exists {
                let record = TenantRecord {
                    name: tenant.to_string(),
                    created_at: unix_now(),
                    quota: Default::default(),
                };
                tenants
                    .insert(tenant, encode(&record).as_slice())
                    .map_err(StoreError::db)?;
            }
            txn.open_table(FLAGS)
                .map_err(StoreError::db)?
                .insert(tenant, document)
                .map_err(StoreError::db)?;
        }
        txn.commit().map_err(StoreError::db)
    }

    /// Removes a tenant's flag-definition document; whether there was one.
    pub fn delete_flags(&self, tenant: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        let removed = txn
            .open_table(FLAGS)
            .map_err(StoreError::db)?
            .remove(tenant)
            .map_err(StoreError::db)?
            .is_some();
        txn.commit().map_err(StoreError::db)?;
        Ok(removed)
    }

    /// Removes an app; returns its record if it existed.
    pub fn delete_app(&self, tenant: &str, app: &str) -> Result<Option<AppRecord>, StoreError> {
        let key = format!("{tenant}/{app}");
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        let removed = {
            txn.open_table(SERVED)
                .map_err(StoreError::db)?
                .remove(key.as_str())
                .map_err(StoreError::db)?;
            let mut apps = txn.open_table(APPS).map_err(StoreError::db)?;
            let old = apps.remove(key.as_str()).map_err(StoreError::db)?;
            old.map(|v| decode::<AppRecord>(&key, v.value()))
                .transpose()?
        };
        txn.commit().map_err(StoreError::db)?;
        Ok(removed)
    }

    /// Appends an audit entry at `at_micros` (moved forward past the last
    /// entry if needed, so that entries keep their order).
    pub fn append_audit(&self, at_micros: u64, entry: &AuditEntry) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        {
            let mut table = txn.open_table(AUDIT).map_err(StoreError::db)?;
            let last = table
                .last()
                .map_err(StoreError::db)?
                .map(|(k, _)| k.value());
            let key = last.map_or(at_micros, |last| at_micros.max(last + 1));
            table
                .insert(key, encode(entry).as_slice())
                .map_err(StoreError::db)?;
        }
        txn.commit().map_err(StoreError::db)
    }

    /// Audit entries at or after `since_micros`, oldest first.
    pub fn audit_since(&self, since_micros: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        Ok(audit_in(&txn, since_micros)?
            .into_iter()
            .map(|(_, entry)| entry)
            .collect())
    }

    /// Removes the audit entries older than `before_micros` (with `dry_run`,
    /// only counts them); returns how many.
    pub fn prune_audit(&self, before_micros: u64, dry_run: bool) -> Result<usize, StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        let removed = {
            let mut table = txn.open_table(AUDIT).map_err(StoreError::db)?;
            if dry_run {
                table
                    .range(..before_micros)
                    .map_err(StoreError::db)?
                    .count()
            } else {
                let mut n = 0;
                table
                    .retain_in(..before_micros, |_, _| {
                        n += 1;
                        false
                    })
                    .map_err(StoreError::db)?;
                n
            }
        };
        txn.commit().map_err(StoreError::db)?;
        Ok(removed)
    }

    /// Reads everything in one read transaction: a consistent whole even
    /// while writes go on.
    pub fn export(&self) -> Result<StateExport, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        Ok(StateExport {
            tenants: scan_in(&txn, TENANTS, "")?,
            apps: scan_in(&txn, APPS, "")?,
            audit: audit_in(&txn, 0)?,
            flags: flags_in(&txn)?,
        })
    }

    /// Writes everything in `export` in one transaction (into an empty
    /// store: a restore).
    pub fn import(&self, export: &StateExport) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        {
            let mut tenants = txn.open_table(TENANTS).map_err(StoreError::db)?;
            for t in &export.tenants {
                tenants
                    .insert(t.name.as_str(), encode(t).as_slice())
                    .map_err(StoreError::db)?;
            }
            let mut apps = txn.open_table(APPS).map_err(StoreError::db)?;
            for a in &export.apps {
                apps.insert(
                    format!("{}/{}", a.tenant, a.app).as_str(),
                    encode(a).as_slice(),
                )
                .map_err(StoreError::db)?;
            }
            let mut audit = txn.open_table(AUDIT).map_err(StoreError::db)?;
            for (key, entry) in &export.audit {
                audit
                    .insert(*key, encode(entry).as_slice())
                    .map_err(StoreError::db)?;
            }
            let mut flags = txn.open_table(FLAGS).map_err(StoreError::db)?;
            for (tenant, document) in &export.flags {
                flags
                    .insert(tenant.as_str(), document.as_str())
                    .map_err(StoreError::db)?;
            }
        }
        txn.commit().map_err(StoreError::db)
    }

    /// Adds to the requests served by apps (`tenant/app` → how many more),
    /// in one transaction. Apps that no longer exist are skipped.
    pub fn add_served(&self, counts: &[(String, u64)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::db)?;
        {
            let apps = txn.open_table(APPS).map_err(StoreError::db)?;
            let mut served = txn.open_table(SERVED).map_err(StoreError::db)?;
            for (key, more) in counts {
                if apps.get(key.as_str()).map_err(StoreError::db)?.is_none() {
                    continue;
                }
                let before = served
                    .get(key.as_str())
                    .map_err(StoreError::db)?
                    .map_or(0, |v| v.value());
                served
                    .insert(key.as_str(), before.saturating_add(*more))
                    .map_err(StoreError::db)?;
            }
        }
        txn.commit().map_err(StoreError::db)
    }

    /// Requests served by each app (`tenant/app`), as last flushed.
    pub fn served(&self) -> Result<std::collections::HashMap<String, u64>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let table = txn.open_table(SERVED).map_err(StoreError::db)?;
        let mut out = std::collections::HashMap::new();
        for entry in table.iter().map_err(StoreError::db)? {
            let (k, v) = entry.map_err(StoreError::db)?;
            out.insert(k.value().to_string(), v.value());
        }
        Ok(out)
    }

    /// Whether any stored version of any app uses the artifact `sha256`.
    pub fn artifact_in_use(&self, sha256: &str) -> Result<bool, StoreError> {
        Ok(self
            .apps(None)?
            .iter()
            .flat_map(|a| &a.versions)
            .any(|v| v.sha256 == sha256))
    }

    fn scan<T: serde::de::DeserializeOwned>(
        &self,
        def: TableDefinition<&str, &[u8]>,
        prefix: &str,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        scan_in(&txn, def, prefix)
    }
}

/// The records of `def` whose keys start with `prefix`, read in `txn`.
fn scan_in<T: serde::de::DeserializeOwned>(
    txn: &ReadTransaction,
    def: TableDefinition<&str, &[u8]>,
    prefix: &str,
) -> Result<Vec<T>, StoreError> {
    let table = txn.open_table(def).map_err(StoreError::db)?;
    let mut out = Vec::new();
    for entry in table.range(prefix..).map_err(StoreError::db)? {
        let (k, v) = entry.map_err(StoreError::db)?;
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push(decode(k.value(), v.value())?);
    }
    Ok(out)
}

/// The audit entries at or after `since_micros` with their keys, read in `txn`.
fn audit_in(
    txn: &ReadTransaction,
    since_micros: u64,
) -> Result<Vec<(u64, AuditEntry)>, StoreError> {
    let table = txn.open_table(AUDIT).map_err(StoreError::db)?;
    let mut out = Vec::new();
    for entry in table.range(since_micros..).map_err(StoreError::db)? {
        let (k, v) = entry.map_err(StoreError::db)?;
        let key = k.value();
        out.push((key, decode(&key.to_string(), v.value())?));
    }
    Ok(out)
}

/// Every tenant's flag-definition document, read in `txn`.
fn flags_in(txn: &ReadTransaction) -> Result<Vec<(String, String)>, StoreError> {
    let table = txn.open_table(FLAGS).map_err(StoreError::db)?;
    let mut out = Vec::new();
    for entry in table.iter().map_err(StoreError::db)? {
        let (k, v) = entry.map_err(StoreError::db)?;
        out.push((k.value().to_string(), v.value().to_string()));
    }
    Ok(out)
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain structs of strings and integers cannot fail.
    serde_json::to_vec(value).expect("records serialize")
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{AppLimits, TenantRecord, VersionRecord};

    fn record(tenant: &str, app: &str, sha: &str) -> AppRecord {
        AppRecord {
            tenant: tenant.into(),
            app: app.into(),
            active: "v1".into(),
            versions: vec![VersionRecord {
                version: "v1".into(),
                sha256: sha.into(),
                size: 3,
                deployed_at: 1,
                preinit: None,
                source_sha256: None,
                signed_by: None,
                signature: None,
            }],
            limits: AppLimits::default(),
            created_at: 1,
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
        }
    }

    #[test]
    fn an_export_imports_into_an_empty_store_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("a.redb")).unwrap();
        store.put_app(&record("acme", "shop", "00")).unwrap();
        store.put_app(&record("beta", "api", "11")).unwrap();
        let entry = AuditEntry {
            at: 1,
            token: None,
            action: "POST /x".into(),
            status: 200,
        };
        store.append_audit(1_000_000, &entry).unwrap();
        store.put_flags("acme", r#"{"flags":{}}"#).unwrap();
        let export = store.export().unwrap();
        assert_eq!((export.tenants.len(), export.apps.len()), (2, 2));
        assert_eq!(export.flags.len(), 1);

        let copy = StateStore::open(&dir.path().join("b.redb")).unwrap();
        copy.import(&export).unwrap();
        assert_eq!(copy.export().unwrap(), export);
    }

    #[test]
    fn served_counts_add_up_and_go_with_their_app() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        store.put_app(&record("acme", "shop", "00")).unwrap();
        store
            .add_served(&[("acme/shop".into(), 5), ("acme/gone".into(), 9)])
            .unwrap();
        store.add_served(&[("acme/shop".into(), 2)]).unwrap();
        let served = store.served().unwrap();
        assert_eq!(served.get("acme/shop"), Some(&7));
        assert_eq!(served.get("acme/gone"), None);
        store.delete_app("acme", "shop").unwrap();
        assert!(store.served().unwrap().is_empty());
    }

    #[test]
    fn audit_entries_older_than_a_point_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        let entry = |action: &str| AuditEntry {
            at: 0,
            token: None,
            action: action.into(),
            status: 200,
        };
        for (at, action) in [(10, "a"), (20, "b"), (30, "c")] {
            store.append_audit(at, &entry(action)).unwrap();
        }
        assert_eq!(store.prune_audit(25, true).unwrap(), 2);
        assert_eq!(store.audit_since(0).unwrap().len(), 3);
        assert_eq!(store.prune_audit(25, false).unwrap(), 2);
        let left = store.audit_since(0).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].action, "c");
    }

    #[test]
    fn apps_survive_reopen_and_list_by_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let store = StateStore::open(&path).unwrap();
            store.put_app(&record("demo", "hello", "aa")).unwrap();
            store.put_app(&record("demo", "echo", "bb")).unwrap();
            // `demo0/…` sorts right after `demo/…` ('0' follows '/'): the
            // prefix scan must stop before it.
            store.put_app(&record("demo0", "hello", "cc")).unwrap();
        }
        let store = StateStore::open(&path).unwrap();
        let names: Vec<_> = store
            .apps(Some("demo"))
            .unwrap()
            .into_iter()
            .map(|a| a.app)
            .collect();
        assert_eq!(names, ["echo", "hello"]);
        assert_eq!(store.apps(None).unwrap().len(), 3);
        let tenants: Vec<_> = store
            .tenants()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(tenants, ["demo", "demo0"]);
        assert!(store.artifact_in_use("cc").unwrap());
        assert_eq!(
            store.delete_app("demo0", "hello").unwrap().map(|a| a.app),
            Some("hello".to_string())
        );
        assert!(!store.artifact_in_use("cc").unwrap());
        assert!(store.app("demo0", "hello").unwrap().is_none());
        assert!(store.delete_app("demo0", "hello").unwrap().is_none());

        let (tenant, apps) = store.delete_tenant("demo").unwrap().unwrap();
        assert_eq!(tenant.name, "demo");
        assert_eq!(apps.len(), 2);
        assert!(store.apps(Some("demo")).unwrap().is_empty());
        assert!(store.tenant("demo").unwrap().is_none());
        assert!(store.delete_tenant("demo").unwrap().is_none());
        assert!(
            store.tenant("demo0").unwrap().is_some(),
            "other tenants stay"
        );
    }

    #[test]
    fn flags_are_stored_per_tenant_and_go_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        assert_eq!(store.flags("acme").unwrap(), None);
        store.put_flags("acme", r#"{"flags":{}}"#).unwrap();
        assert!(store.tenant("acme").unwrap().is_some(), "tenant created");
        store.put_flags("beta", r#"{"flags":{"a":1}}"#).unwrap();
        assert_eq!(
            store.flags("acme").unwrap().as_deref(),
            Some(r#"{"flags":{}}"#)
        );
        assert_eq!(store.all_flags().unwrap().len(), 2);
        assert!(store.delete_flags("beta").unwrap());
        assert!(!store.delete_flags("beta").unwrap());
        store.delete_tenant("acme").unwrap().unwrap();
        assert_eq!(store.flags("acme").unwrap(), None);
        assert!(store.all_flags().unwrap().is_empty());
    }

    #[test]
    fn audit_entries_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        let entry = |what: &str| AuditEntry {
            at: 0,
            token: None,
            action: what.into(),
            status: 200,
        };
        store.append_audit(100, &entry("first")).unwrap();
        store.append_audit(100, &entry("second")).unwrap(); // same microsecond
        store.append_audit(50, &entry("third")).unwrap(); // clock stepped back
        let all: Vec<_> = store
            .audit_since(0)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(all, ["first", "second", "third"]);
        assert_eq!(store.audit_since(101).unwrap().len(), 2);
    }

    #[test]
    fn old_tenant_records_read_without_a_quota() {
        let old = br#"{"name":"acme","created_at":5}"#;
        let tenant: TenantRecord = decode("acme", old).unwrap();
        assert_eq!(tenant.quota, Default::default());
    }
}
