//! Backups: a node's whole state in one tar file, taken while it serves,
//! and a data directory restored from one.
//!
//! The archive holds, in this order:
//!
//! 1. `manifest.json`: the format version, what is inside, and the
//!    fingerprint of the key that sealed the secrets;
//! 2. `state.json`: tenants, apps (versions, limits, egress, config, sealed
//!    secrets) and the audit log, read in one transaction;
//! 3. `artifacts/<sha256>.wasm`: every component a stored version uses;
//! 4. `checkpoints.bin`: every checkpoint of stateful apps' keys (format 2),
//!    read in one transaction of the checkpoint store.
//!
//! Secrets and checkpoints stay sealed and their keys are not in the
//! archive: a backup that leaks leaks no secret and no key's state.
//! Restoring them needs the same `keys/secrets.key` and
//! `keys/node-seal.key`, carried separately. Compiled code is not in it either: the restored node
//! compiles again (the engine may differ anyway).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use dwcp_store::{BlobStore, StateExport, StateStore, sha256_hex, unix_now};
use serde::{Deserialize, Serialize};

use crate::admin::{AdminState, ApiError};
use crate::control::{Control, ControlError};
use crate::secrets::{SECRETS_KEY, key_fingerprint};

/// The largest artifact a restore accepts (deploys take at most
/// `--max-upload`, 256 MiB by default, 4 GiB at most in practice).
const MAX_ARTIFACT: u64 = 4 << 30;

/// The largest `state.json` a restore reads.
const MAX_STATE: u64 = 1 << 30;

/// The archive format this `dwcp` writes and reads.
pub const BACKUP_FORMAT: u32 = 2;

/// The archive entry with keys' checkpoints.
const CHECKPOINTS_ENTRY: &str = "checkpoints.bin";

/// What a backup holds: the first entry of the archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupManifest {
    /// The archive format ([`BACKUP_FORMAT`]).
    pub format: u32,
    /// When it was taken (Unix seconds).
    pub created_at: u64,
    /// The `dwcp` that took it.
    pub dwcp_version: String,
    /// How many tenants, apps and versions.
    pub tenants: usize,
    /// Apps.
    pub apps: usize,
    /// Versions, all apps together.
    pub versions: usize,
    /// Sealed secrets, all apps together.
    pub secrets: usize,
    /// Fingerprint of the key that sealed them.
    pub secrets_key: String,
    /// The artifacts inside, by SHA-256.
    pub artifacts: Vec<String>,
    /// Checkpoints of stateful apps' keys inside (format 2).
    #[serde(default)]
    pub checkpoints: u64,
    /// The id of the node key the checkpoints are sealed to.
    #[serde(default)]
    pub seal_key: String,
}

/// Where a backup's artifacts are linked while it is written (removed
/// after; one left by a crash is removed at the next start).
pub(crate) const STAGING_PREFIX: &str = "backup-staging-";

/// A consistent copy of a node's state, ready to be written out.
pub struct BackupSource {
    manifest: BackupManifest,
    state: StateExport,
    /// Hard links (copies where links fail) to every artifact, made while
    /// the state could not change: a delete that comes after unlinks the
    /// artifact, not these. Files are opened one at a time as they are
    /// written, so a backup of thousands of artifacts holds one open.
    staging: tempfile::TempDir,
}

impl Control {
    /// Takes a backup: the state and a link to every artifact it uses,
    /// under the lock that deploys and deletes take, so that the two agree.
    /// The archive is written afterwards, while the node goes on.
    pub async fn backup(&self) -> Result<BackupSource, ControlError> {
        let _serial = self.serial.lock().await;
        let state = self.state.export()?;
        let hashes: BTreeSet<String> = state
            .apps
            .iter()
            .flat_map(|a| &a.versions)
            .map(|v| v.sha256.clone())
            .collect();
        let staging = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(&self.data_dir)?;
        for hash in &hashes {
            let from = self.artifacts.path(hash);
            let to = staging.path().join(format!("{hash}.wasm"));
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to)?;
            }
        }
        // Keys' checkpoints, staged as one file (their size must be known
        // before the tar entry is written). A delete is kept out by the
        // lock; checkpoints taken meanwhile are in or not, whole.
        let checkpoints = {
            let mut file =
                std::io::BufWriter::new(File::create(staging.path().join(CHECKPOINTS_ENTRY))?);
            let n = self.checkpoints.export(&mut file)?;
            file.flush()?;
            n
        };
        let manifest = BackupManifest {
            format: BACKUP_FORMAT,
            created_at: unix_now(),
            dwcp_version: env!("CARGO_PKG_VERSION").to_string(),
            tenants: state.tenants.len(),
            apps: state.apps.len(),
            versions: state.apps.iter().map(|a| a.versions.len()).sum(),
            secrets: state.apps.iter().map(|a| a.secrets.len()).sum(),
            secrets_key: self.secrets.fingerprint().to_string(),
            artifacts: hashes.into_iter().collect(),
            checkpoints,
            seal_key: self.seal.key_id(),
        };
        Ok(BackupSource {
            manifest,
            state,
            staging,
        })
    }
}

impl BackupSource {
    /// What the archive will hold.
    pub fn manifest(&self) -> &BackupManifest {
        &self.manifest
    }

    /// Writes the archive to `out`.
    pub fn write_to(self, out: impl Write) -> io::Result<()> {
        let mut tar = tar::Builder::new(out);
        let mtime = self.manifest.created_at;
        let add = |tar: &mut tar::Builder<_>, name: &str, size: u64, data: &mut dyn Read| {
            let mut header = tar::Header::new_gnu();
            header.set_size(size);
            header.set_mode(0o600);
            header.set_mtime(mtime);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, name, data)
        };
        let manifest = serde_json::to_vec_pretty(&self.manifest)?;
        add(
            &mut tar,
            "manifest.json",
            manifest.len() as u64,
            &mut &manifest[..],
        )?;
        let state = serde_json::to_vec(&self.state)?;
        add(&mut tar, "state.json", state.len() as u64, &mut &state[..])?;
        for hash in &self.manifest.artifacts {
            let mut file = File::open(self.staging.path().join(format!("{hash}.wasm")))?;
            let size = file.metadata()?.len();
            add(&mut tar, &format!("artifacts/{hash}.wasm"), size, &mut file)?;
        }
        let mut file = File::open(self.staging.path().join(CHECKPOINTS_ENTRY))?;
        let size = file.metadata()?.len();
        add(&mut tar, CHECKPOINTS_ENTRY, size, &mut file)?;
        tar.into_inner()?.flush()
    }
}

/// Reads the manifest of the backup at `path` (its first entry).
pub fn read_manifest(path: &Path) -> anyhow::Result<BackupManifest> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut archive = tar::Archive::new(file);
    let mut entries = archive
        .entries()
        .with_context(|| format!("{} is not a dwcp backup", path.display()))?;
    let first = entries
        .next()
        .transpose()
        .ok()
        .flatten()
        .with_context(|| format!("{} is not a dwcp backup (empty)", path.display()))?;
    manifest_of(first, path)
}

fn manifest_of(entry: tar::Entry<'_, impl Read>, path: &Path) -> anyhow::Result<BackupManifest> {
    let not_backup = || format!("{} is not a dwcp backup", path.display());
    if entry.path().ok().as_deref() != Some(Path::new("manifest.json")) {
        bail!("{} (no manifest.json first)", not_backup());
    }
    let manifest: BackupManifest =
        serde_json::from_reader(entry.take(1 << 20)).with_context(not_backup)?;
    if manifest.format > BACKUP_FORMAT {
        bail!(
            "{} was written by a newer dwcp (backup format {}; this one reads up to {BACKUP_FORMAT}): restore it with that version",
            path.display(),
            manifest.format
        );
    }
    Ok(manifest)
}

/// Fills the empty data directory `data_dir` from the backup at `path`.
/// Artifacts are checked against their hashes; the state is written last,
/// in one transaction and renamed into place, so a restore that fails
/// leaves no state behind (only files the next start sweeps away).
pub fn restore(path: &Path, data_dir: &Path) -> anyhow::Result<BackupManifest> {
    let state_path = data_dir.join("state.redb");
    if state_path.exists() {
        bail!(
            "{} already holds a node's state: restore into an empty data directory (--data-dir), or move that one away first",
            data_dir.display()
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut archive = tar::Archive::new(file);
    let mut entries = archive
        .entries()
        .with_context(|| format!("{} is not a dwcp backup", path.display()))?;
    let broken = || {
        format!(
            "{} is damaged (cut short or not a tar file)",
            path.display()
        )
    };

    let first = entries
        .next()
        .with_context(|| format!("{} is not a dwcp backup (empty)", path.display()))?
        .with_context(broken)?;
    let manifest = manifest_of(first, path)?;
    check_secrets_key(&manifest, data_dir)?;
    check_seal_key(&manifest, data_dir)?;

    let state_entry = entries.next().with_context(broken)?.with_context(broken)?;
    if state_entry.path().ok().as_deref() != Some(Path::new("state.json")) {
        bail!("{} (no state.json after the manifest)", broken());
    }
    let state: StateExport =
        serde_json::from_reader(state_entry.take(MAX_STATE)).with_context(broken)?;

    let artifacts = BlobStore::open(data_dir.join("artifacts"), "wasm")?;
    let mut restored = BTreeSet::new();
    let checkpoints_partial = data_dir.join("checkpoints.redb.restoring");
    let _ = std::fs::remove_file(&checkpoints_partial);
    let mut checkpoints_restored = None;
    for entry in entries {
        let mut entry = entry.with_context(broken)?;
        let name = entry
            .path()
            .ok()
            .and_then(|p| p.to_str().map(str::to_string))
            .unwrap_or_default();
        if name == CHECKPOINTS_ENTRY {
            let store = dwcp_store::CheckpointStore::open(&checkpoints_partial)?;
            let n = store
                .import(&mut entry)
                .map_err(|e| anyhow::anyhow!("{}: checkpoints: {e}", broken()))?;
            if n != manifest.checkpoints {
                bail!(
                    "{}: {n} checkpoints where the manifest says {}",
                    broken(),
                    manifest.checkpoints
                );
            }
            checkpoints_restored = Some(n);
            continue;
        }
        let Some(hash) = name
            .strip_prefix("artifacts/")
            .and_then(|n| n.strip_suffix(".wasm"))
            .map(str::to_string)
        else {
            bail!("{}: unexpected entry `{name}`", broken());
        };
        // The header's size is not trusted for an allocation: the bytes
        // are read as they come, and no artifact is larger than a deploy
        // may upload.
        let size = entry.size();
        if size > MAX_ARTIFACT {
            bail!("{}: artifact {hash} claims {size} bytes", broken());
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).with_context(broken)?;
        if bytes.len() as u64 != size {
            bail!("{} (artifact {hash} ends early)", broken());
        }
        if sha256_hex(&bytes) != hash {
            bail!(
                "{}: artifact {hash} does not match its hash",
                path.display()
            );
        }
        artifacts.put(&bytes)?;
        restored.insert(hash);
    }
    for app in &state.apps {
        for v in &app.versions {
            if !restored.contains(&v.sha256) {
                bail!(
                    "{} is incomplete: the artifact of {}/{}@{} is missing",
                    path.display(),
                    app.tenant,
                    app.app,
                    v.version
                );
            }
        }
    }

    if manifest.format >= 2 && checkpoints_restored.is_none() {
        bail!(
            "{} is incomplete: the keys' checkpoints are missing",
            path.display()
        );
    }
    // The checkpoints first, the state last: a node finds no state (and
    // so no restore) until everything is in place.
    if checkpoints_restored.is_some() {
        std::fs::rename(&checkpoints_partial, data_dir.join("checkpoints.redb"))?;
    }
    let partial = data_dir.join("state.redb.restoring");
    let _ = std::fs::remove_file(&partial);
    StateStore::open(&partial)?.import(&state)?;
    std::fs::rename(&partial, &state_path)?;
    File::open(data_dir)?.sync_all()?;
    Ok(manifest)
}

/// Sealed checkpoints open only with the node key they were sealed to.
fn check_seal_key(manifest: &BackupManifest, data_dir: &Path) -> anyhow::Result<()> {
    if manifest.checkpoints == 0 {
        return Ok(());
    }
    let key_path = data_dir.join(crate::seal::SEAL_KEY);
    let copy_it = format!(
        "copy keys/node-seal.key from the node the backup came from (key {}) to {}",
        manifest.seal_key,
        key_path.display()
    );
    if !key_path.exists() {
        bail!(
            "the backup holds {} checkpoint(s) sealed to another node's key: {copy_it}",
            manifest.checkpoints
        );
    }
    let seal = crate::seal::CheckpointSeal::open_or_create(data_dir, false)?;
    if seal.key_id() != manifest.seal_key {
        bail!(
            "the backup's {} checkpoint(s) are sealed to key {}, not to {} ({}): {copy_it}",
            manifest.checkpoints,
            manifest.seal_key,
            key_path.display(),
            seal.key_id()
        );
    }
    Ok(())
}

/// Sealed secrets open only with the key that sealed them: it must be in
/// place before the node starts, or the apps that use them would not serve.
fn check_secrets_key(manifest: &BackupManifest, data_dir: &Path) -> anyhow::Result<()> {
    if manifest.secrets == 0 {
        return Ok(());
    }
    let key_path = data_dir.join(SECRETS_KEY);
    let copy_it = format!(
        "copy keys/secrets.key from the node the backup came from (fingerprint {}) to {}",
        manifest.secrets_key,
        key_path.display()
    );
    match std::fs::read(&key_path) {
        Ok(key) if key_fingerprint(&key) == manifest.secrets_key => Ok(()),
        Ok(_) => bail!(
            "the backup's {} secret(s) were sealed with another key than {}: {copy_it}",
            manifest.secrets,
            key_path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "the backup holds {} sealed secret(s): {copy_it}",
            manifest.secrets
        ),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", key_path.display())),
    }
}

/// The admin API's `GET /v1/backup`: the archive, streamed as it is
/// written.
pub fn routes() -> axum::Router<Arc<AdminState>> {
    axum::Router::new().route("/v1/backup", axum::routing::get(download))
}

async fn download(
    State(state): State<Arc<AdminState>>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
) -> Result<Response, ApiError> {
    let token = caller.map(|c| c.0.token_id);
    let source = state.control.backup().await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    let control = state.control.clone();
    tokio::task::spawn_blocking(move || {
        let out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        // A backup hands out every sealed secret: it is audited like a change.
        match source.write_to(out) {
            Ok(()) => control.audit("GET /v1/backup".into(), token, 200),
            Err(e) => {
                tracing::warn!("backup not completed: {e}");
                control.audit("GET /v1/backup".into(), token, 500);
                // The client sees the body fail rather than end short.
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(body),
    )
        .into_response())
}

/// How much of the archive goes to the client at once.
const CHUNK: usize = 256 << 10;

/// The archive writer's end of the response body: a full chunk waits for
/// the client to take the one before (a slow client slows the backup, it
/// does not fill the node's memory).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
