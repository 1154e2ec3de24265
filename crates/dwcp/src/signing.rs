//! Signing uploads: the publisher key the CLI signs with, the version a
//! signature binds, and detached signatures (`dwcp sign`, `dwcp verify`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dwcp_crypto::composite::HybridSigningKey;
use dwcp_crypto::keyfile::SecretKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::AdminClient;

/// A publisher key, ready to sign.
pub struct Publisher {
    /// The key.
    pub key: HybridSigningKey,
    /// Its name (from its file).
    pub name: String,
    /// Where it was read from.
    pub path: PathBuf,
}

impl Publisher {
    /// The key at `--key FILE`, else the local publisher key `dwcp up` made
    /// in `data_dir`.
    pub fn load(key: Option<&Path>, data_dir: &Path) -> anyhow::Result<Self> {
        let path = match key {
            Some(path) => path.to_path_buf(),
            None => dwcp_node::publisher_key_path(data_dir, dwcp_node::LOCAL_PUBLISHER),
        };
        if key.is_none() && !path.exists() {
            bail!(
                "no publisher key to sign with: pass --key FILE (made by `dwcp keys gen --publisher NAME`), or start `dwcp up` once with this data directory ({}) to make the local one",
                data_dir.display()
            );
        }
        let file = dwcp_node::read_key_file(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
        match file.key {
            SecretKey::Hybrid(key) => Ok(Self {
                key,
                name: file.name,
                path,
            }),
            SecretKey::Root(_) | SecretKey::Sealing(_) => bail!(
                "{} is not a publisher key: artifacts are signed with one (`dwcp keys gen --publisher NAME`)",
                path.display()
            ),
        }
    }

    /// The key's id.
    pub fn key_id(&self) -> String {
        self.key.public_key().key_id()
    }

    /// Signs an artifact for `tenant/app` `version`.
    pub fn sign(
        &self,
        tenant: &str,
        app: &str,
        version: &str,
        bytes: &[u8],
    ) -> anyhow::Result<Detached> {
        let sha256 = dwcp_store::sha256_hex(bytes);
        let statement = dwcp_crypto::trust::artifact_statement(tenant, app, version, &sha256);
        let signature = self
            .key
            .sign(&statement, dwcp_crypto::trust::ARTIFACT_CONTEXT)
            .map_err(|e| anyhow::anyhow!("cannot sign: {e}"))?;
        Ok(Detached {
            format: DETACHED_FORMAT.into(),
            tenant: tenant.into(),
            app: app.into(),
            version: version.into(),
            sha256,
            key_id: self.key_id(),
            algorithm: dwcp_crypto::composite::ALGORITHM.into(),
            signature: B64.encode(signature),
        })
    }
}

const DETACHED_FORMAT: &str = "dwcp-signature/1";

/// A signature kept beside its artifact (`FILE.wasm.sig`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Detached {
    /// The format's name.
    pub format: String,
    /// The tenant it is for.
    pub tenant: String,
    /// The app it is for.
    pub app: String,
    /// The version it is for.
    pub version: String,
    /// The artifact's SHA-256.
    pub sha256: String,
    /// The signing key's id.
    pub key_id: String,
    /// The signature's algorithm.
    pub algorithm: String,
    /// The signature, base64.
    pub signature: String,
}

impl Detached {
    /// Reads a `.sig` file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the signature {}", path.display()))?;
        let sig: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a DWCP signature file", path.display()))?;
        if sig.format != DETACHED_FORMAT {
            bail!(
                "{}: format {:?} is not {DETACHED_FORMAT:?}",
                path.display(),
                sig.format
            );
        }
        Ok(sig)
    }

    /// The headers that carry it with an upload.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            (dwcp_node::KEY_ID_HEADER, self.key_id.clone()),
            (dwcp_node::SIGNATURE_HEADER, self.signature.clone()),
        ]
    }
}

/// The name the next version of `tenant/app` gets by default (`vN`).
pub fn next_version(client: &AdminClient, tenant: &str, app: &str) -> anyhow::Result<String> {
    let versions: Option<Vec<Value>> =
        client.get_optional(&format!("/v1/apps/{tenant}/{app}/versions"))?;
    let highest = versions
        .unwrap_or_default()
        .iter()
        .filter_map(|v| {
            v["version"]
                .as_str()?
                .strip_prefix('v')?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    Ok(format!("v{}", highest + 1))
}

/// Uploads `bytes` to `/v1/apps/TENANT/APP/versions?QUERY` (`query`
/// already encoded, without the version), signed by `publisher` for
/// `version` (default: the next `vN`).
pub fn upload_signed(
    client: &AdminClient,
    publisher: &Publisher,
    tenant: &str,
    app: &str,
    version: Option<String>,
    query: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<Value> {
    let version = match version {
        Some(v) => v,
        None => next_version(client, tenant, app)?,
    };
    let sig = publisher.sign(tenant, app, &version, &bytes)?;
    upload_with(client, &sig, query, bytes)
}

/// Uploads `bytes` with a signature made beforehand (it names tenant, app
/// and version).
pub fn upload_with(
    client: &AdminClient,
    sig: &Detached,
    query: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<Value> {
    let version = format!("version={}", crate::commands::percent_encode(&sig.version));
    let query = if query.is_empty() {
        version
    } else {
        format!("{query}&{version}")
    };
    let path = format!("/v1/apps/{}/{}/versions?{query}", sig.tenant, sig.app);
    client.upload(&path, bytes, &sig.headers())
}

/// [`upload_signed`] for a path written out (`/v1/apps/T/A/versions?…`,
/// its query already encoded), as the benchmarks deploy.
pub fn upload_path_signed(
    client: &AdminClient,
    publisher: &Publisher,
    path: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<Value> {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let parts: Vec<&str> = route.trim_matches('/').split('/').collect();
    let ["v1", "apps", tenant, app, "versions"] = parts.as_slice() else {
        bail!("not an upload path: {path}");
    };
    let mut version = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| match p.strip_prefix("version=") {
            Some(v) => {
                version = Some(v.to_string());
                false
            }
            None => true,
        })
        .collect();
    upload_signed(
        client,
        publisher,
        tenant,
        app,
        version,
        &rest.join("&"),
        bytes,
    )
}

/// A client that signs what it uploads with a node's local publisher key:
/// how the benchmarks speak to the nodes they start.
pub struct SignedClient {
    client: AdminClient,
    publisher: Publisher,
}

impl SignedClient {
    /// A client of the node this process started in `data_dir`, with its
    /// token and local publisher key (waiting for a node still starting to
    /// write them).
    pub fn for_local_node(admin: std::net::SocketAddr, data_dir: &Path) -> anyhow::Result<Self> {
        // Written last on a first start.
        let anchor = data_dir.join("trust/root.pub");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !anchor.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let token = std::fs::read_to_string(data_dir.join(dwcp_node::ADMIN_TOKEN_FILE))
            .with_context(|| format!("no admin token in {}", data_dir.display()))?;
        Ok(Self {
            client: AdminClient::new(&format!("http://{admin}"), Some(token.trim().to_string())),
            publisher: Publisher::load(None, data_dir)?,
        })
    }

    /// Uploads to `path` (`/v1/apps/T/A/versions?…`), signed.
    pub fn upload<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<T> {
        let out = upload_path_signed(&self.client, &self.publisher, path, bytes)?;
        Ok(serde_json::from_value(out)?)
    }
}

impl std::ops::Deref for SignedClient {
    type Target = AdminClient;

    fn deref(&self) -> &AdminClient {
        &self.client
    }
}
