//! `dwcp keys`, `dwcp sign` and `dwcp verify`: publisher keys, the trust
//! manifest, and signatures kept beside their artifacts.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use comfy_table::{Table, presets::NOTHING};
use dwcp_crypto::composite::HybridSigningKey;
use dwcp_crypto::keyfile::{KeyFile, KeyRole, SecretKey};
use dwcp_crypto::root::RootPublicKey;
use dwcp_crypto::trust::{KeyStatus, SignedManifest, TrustManifest};
use serde_json::{Value, json};

use crate::cli::KeysCommand;
use crate::client::AdminClient;
use crate::commands::{print_json, split_app, text};
use crate::signing::{Detached, Publisher};

/// Runs `dwcp keys …`.
pub fn run(client: &AdminClient, data_dir: &Path, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Gen { publisher, force } => generate(data_dir, &publisher, force),
        KeysCommand::List { json } => list(client, json),
        KeysCommand::Trust { file, valid_for } => {
            // A bare name is a key `dwcp keys gen` wrote into the data directory.
            let named = data_dir
                .join("keys")
                .join(format!("{}.pub", file.display()));
            let file = if !file.exists() && file.components().count() == 1 && named.exists() {
                named
            } else {
                file
            };
            trust(client, &file, valid_for.as_deref())
        }
        KeysCommand::Revoke { key_id, reason } => {
            let key_id = key_id_of(client, &key_id)?;
            let mut path = format!(
                "/v1/keys/{}/revoke",
                crate::commands::percent_encode(&key_id)
            );
            if let Some(reason) = reason {
                path.push_str(&format!(
                    "?reason={}",
                    crate::commands::percent_encode(&reason)
                ));
            }
            let _: Value = client.send("POST", &path)?;
            println!("revoked key {key_id}: what it signs is refused from now on");
            Ok(())
        }
        KeysCommand::Rotate {
            scope,
            key,
            overlap,
        } => {
            let overlap = humantime::parse_duration(&overlap)
                .with_context(|| format!("--overlap `{overlap}`: write it as `24h` or `7d`"))?;
            let secs = overlap.as_secs();
            match scope.as_str() {
                "publisher" => rotate_publisher(client, data_dir, key.as_deref(), secs),
                "node" => rotate_node(client, secs),
                "root" => rotate_root(client),
                "all" => {
                    rotate_publisher(client, data_dir, key.as_deref(), secs)?;
                    rotate_node(client, secs)?;
                    rotate_root(client)
                }
                other => bail!("--scope {other}: expected publisher, node, root or all"),
            }
        }
    }
}

fn generate(data_dir: &Path, name: &str, force: bool) -> anyhow::Result<()> {
    dwcp_store::AppId::new(name, "x")
        .map_err(|_| anyhow::anyhow!("--publisher `{name}`: use a DNS label (a-z, 0-9, -)"))?;
    if dwcp_node::RESERVED_NAMES.contains(&name) {
        bail!("--publisher {name}: the name is reserved for the node's own keys; choose another");
    }
    let path = dwcp_node::publisher_key_path(data_dir, name);
    if path.exists() && !force {
        bail!(
            "{} exists: pass --force to replace it (what it signed stays signed by the old key)",
            path.display()
        );
    }
    let key = HybridSigningKey::generate()?;
    let key_id = key.public_key().key_id();
    let public = public_file(KeyRole::Publisher, name, &key);
    let file = KeyFile {
        role: KeyRole::Publisher,
        name: name.into(),
        created_at: dwcp_store::unix_now(),
        key: SecretKey::Hybrid(key),
    };
    write_key(&path, &file)?;
    let pub_path = path.with_extension("pub");
    dwcp_store::write_atomically(&pub_path, public.as_bytes())?;
    println!(
        "made publisher key {key_id} ({}) in {}",
        dwcp_crypto::composite::ALGORITHM,
        path.display()
    );
    println!(
        "trust it on a node with `dwcp keys trust {}`, then deploy with `--key {}`",
        pub_path.display(),
        path.display()
    );
    Ok(())
}

/// The public half of a key file, as `keys trust` reads it.
fn public_file(role: KeyRole, name: &str, key: &HybridSigningKey) -> String {
    let value = json!({
        "format": "dwcp-public-key/1",
        "role": role,
        "name": name,
        "algorithm": dwcp_crypto::composite::ALGORITHM,
        "key_id": key.public_key().key_id(),
        "public_key": B64.encode(key.public_key().as_bytes()),
    });
    format!("{value:#}\n")
}

fn write_key(path: &Path, file: &KeyFile) -> anyhow::Result<()> {
    dwcp_store::write_private(path, &file.to_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `wanted` itself when it is a key id of the manifest, else the id of the
/// one key named `wanted`.
fn key_id_of(client: &AdminClient, wanted: &str) -> anyhow::Result<String> {
    let out: Value = client.get("/v1/keys")?;
    let keys = out["keys"].as_array().cloned().unwrap_or_default();
    if keys.iter().any(|k| k["key_id"] == wanted) {
        return Ok(wanted.to_string());
    }
    let named: Vec<String> = keys
        .iter()
        .filter(|k| k["name"] == wanted && k["status"] != "revoked")
        .filter_map(|k| k["key_id"].as_str().map(str::to_string))
        .collect();
    match named.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no key has the id or name `{wanted}` (see `dwcp keys list`)"),
        many => bail!(
            "{} keys are named `{wanted}` ({}): give the id",
            many.len(),
            many.join(", ")
        ),
    }
}

fn list(client: &AdminClient, json: bool) -> anyhow::Result<()> {
    let out: Value = client.get("/v1/keys")?;
    if json {
        return print_json(&out);
    }
    println!(
        "root {} ({}), manifest serial {}",
        text(&out["root_key_id"]),
        text(&out["root_algorithm"]),
        out["serial"].as_u64().unwrap_or(0)
    );
    let mut table = Table::new();
    *table.style_mut() = NOTHING;
    table.set_header([
        "ID",
        "ROLE",
        "NAME",
        "ALGORITHM",
        "VALID FROM",
        "VALID UNTIL",
        "STATUS",
    ]);
    let date = |v: &Value| match v.as_u64() {
        Some(t) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
        )
        .to_string(),
        None => "-".into(),
    };
    for key in out["keys"].as_array().into_iter().flatten() {
        let mut status = text(&key["status"]);
        if let Some(reason) = key["revoked_reason"].as_str() {
            status = format!("{status} ({reason})");
        }
        table.add_row([
            text(&key["key_id"]),
            text(&key["role"]),
            text(&key["name"]),
            text(&key["algorithm"]),
            date(&key["not_before"]),
            date(&key["not_after"]),
            status,
        ]);
    }
    println!("{table}");
    Ok(())
}

fn trust(client: &AdminClient, file: &Path, valid_for: Option<&str>) -> anyhow::Result<()> {
    let text_of = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    // A .key file gives its public half; a .pub file is that half.
    let (role, name, public) = match KeyFile::parse(&text_of) {
        Ok(key) => match &key.key {
            SecretKey::Hybrid(k) => (
                key.role,
                key.name.clone(),
                B64.encode(k.public_key().as_bytes()),
            ),
            SecretKey::Root(_) => bail!(
                "{} is a root key: it signs the manifest, it is not listed in it",
                file.display()
            ),
            SecretKey::Sealing(_) => bail!(
                "{} is a node's sealing key: it signs nothing",
                file.display()
            ),
        },
        Err(_) => {
            let v: Value = serde_json::from_slice(&text_of).with_context(|| {
                format!(
                    "{} is neither a key file nor a public key file",
                    file.display()
                )
            })?;
            if v["format"] != "dwcp-public-key/1" {
                bail!(
                    "{} is neither a key file nor a public key file",
                    file.display()
                );
            }
            let role: KeyRole = serde_json::from_value(v["role"].clone())
                .with_context(|| format!("{}: bad role", file.display()))?;
            (role, text(&v["name"]), text(&v["public_key"]))
        }
    };
    let not_after = match valid_for {
        Some(d) => {
            let d = humantime::parse_duration(d)
                .with_context(|| format!("--valid-for `{d}`: write it as `90d`"))?;
            Some(dwcp_store::unix_now() + d.as_secs())
        }
        None => None,
    };
    eprintln!("the node's root signs the new manifest (SLH-DSA: a few seconds)…");
    let out: Value = client.post_json(
        "/v1/keys",
        &json!({ "role": role, "name": name, "public_key": public, "not_after": not_after }),
    )?;
    println!("trusted {role} key {} ({name})", text(&out["key_id"]));
    Ok(())
}

fn rotate_publisher(
    client: &AdminClient,
    data_dir: &Path,
    key: Option<&Path>,
    overlap: u64,
) -> anyhow::Result<()> {
    let old = Publisher::load(key, data_dir)?;
    let new = HybridSigningKey::generate()?;
    let endorsement =
        dwcp_crypto::trust::endorse(&old.key, KeyRole::Publisher, &old.name, new.public_key())
            .map_err(|e| anyhow::anyhow!("cannot endorse the new key: {e}"))?;
    // The new secret is on disk before the node trusts it: a failure after
    // this leaves a spare file, never a trusted key nobody holds.
    let next = PathBuf::from(format!("{}.next", old.path.display()));
    if next.exists() {
        bail!(
            "{} exists: an earlier rotation stopped half way, and the node may trust the key in it. Compare its key_id with `dwcp keys list`: if listed, move it to {}; if not, delete it. Then rotate again.",
            next.display(),
            old.path.display()
        );
    }
    write_key(
        &next,
        &KeyFile {
            role: KeyRole::Publisher,
            name: old.name.clone(),
            created_at: dwcp_store::unix_now(),
            key: SecretKey::Hybrid(HybridSigningKey::from_seeds(new.seeds())),
        },
    )?;
    eprintln!("the node's root signs the new manifest (SLH-DSA: a few seconds)…");
    let _: Value = client.post_json(
        &format!("/v1/keys/{}/rotate", old.key_id()),
        &json!({
            "public_key": B64.encode(new.public_key().as_bytes()),
            "endorsement": B64.encode(endorsement),
            "overlap_secs": overlap,
        }),
    )?;
    // The node trusts the new key now: keep the old file beside it until
    // the overlap ends, then the new one in its place.
    let prev = PathBuf::from(format!("{}.prev", old.path.display()));
    std::fs::copy(&old.path, &prev).with_context(|| format!("cannot keep {}", prev.display()))?;
    let new_id = new.public_key().key_id();
    let public = public_file(KeyRole::Publisher, &old.name, &new);
    std::fs::rename(&next, &old.path)
        .with_context(|| format!("cannot move {} to {}", next.display(), old.path.display()))?;
    dwcp_store::write_atomically(&old.path.with_extension("pub"), public.as_bytes())?;
    println!(
        "rotated publisher {}: {} → {new_id}; both are accepted for {}, then only {new_id}",
        old.name,
        old.key_id(),
        humantime::format_duration(std::time::Duration::from_secs(overlap))
    );
    println!(
        "{} now holds the new key (the old one is in {})",
        old.path.display(),
        prev.display()
    );
    Ok(())
}

fn rotate_root(client: &AdminClient) -> anyhow::Result<()> {
    eprintln!("a new root key, endorsed by the old one, signs the manifest (SLH-DSA: seconds)…");
    let out: Value = client.send("POST", "/v1/root/rotate")?;
    println!(
        "rotated the root key: now {}; clients that pin the old trust/root.pub follow the endorsement (dwcp verify does)",
        text(&out["root_key_id"])
    );
    Ok(())
}

fn rotate_node(client: &AdminClient, overlap: u64) -> anyhow::Result<()> {
    eprintln!("the node's root signs the new manifest (SLH-DSA: a few seconds)…");
    let out: Value = client.send(
        "POST",
        &format!("/v1/node/rotate-key?overlap_secs={overlap}"),
    )?;
    println!(
        "rotated the node key: now {} (the old one is accepted for {} more)",
        text(&out["key_id"]),
        humantime::format_duration(std::time::Duration::from_secs(overlap))
    );
    Ok(())
}

/// `dwcp sign`: a detached signature beside the file.
pub fn sign(
    default_tenant: &str,
    data_dir: &Path,
    app: &str,
    file: &Path,
    version: &str,
    key: Option<PathBuf>,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (tenant, app) = split_app(default_tenant, app)?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let publisher = Publisher::load(key.as_deref(), data_dir)?;
    let sig = publisher.sign(&tenant, &app, version, &bytes)?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{}.sig", file.display())));
    let text = serde_json::to_string_pretty(&sig)? + "\n";
    dwcp_store::write_atomically(&out, text.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "signed {tenant}/{app} {version} sha256:{} with key {} ({}) into {}",
        sig.sha256,
        sig.key_id,
        publisher.name,
        out.display()
    );
    Ok(())
}

/// `dwcp verify`: the file's hash, its signature, and the signing key's
/// standing in the root-signed manifest, all checked here.
pub fn verify(
    client: &AdminClient,
    data_dir: &Path,
    file: &Path,
    signature: Option<PathBuf>,
    json_out: bool,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let sig_path = signature.unwrap_or_else(|| PathBuf::from(format!("{}.sig", file.display())));
    let sig = Detached::read(&sig_path)?;
    let sha256 = dwcp_store::sha256_hex(&bytes);
    let manifest = fetch_manifest(client, data_dir)?;
    let result = check(&manifest, &sig, &sha256);
    let (ok, reason, name, status) = match &result {
        Ok((name, status)) => (true, None, Some(name.clone()), Some(*status)),
        Err(e) => (false, Some(e.clone()), None, None),
    };
    if json_out {
        print_json(&json!({
            "ok": ok, "key_id": sig.key_id, "name": name, "status": status,
            "tenant": sig.tenant, "app": sig.app, "version": sig.version,
            "sha256": sha256, "reason": reason,
        }))?;
    } else if let Ok((name, status)) = &result {
        println!(
            "OK: {} is {}/{} {} (sha256:{sha256}), signed by publisher key {} ({name}, {status}); both halves ({}) verify",
            file.display(),
            sig.tenant,
            sig.app,
            sig.version,
            sig.key_id,
            dwcp_crypto::composite::ALGORITHM
        );
    }
    match result {
        Ok(_) => Ok(()),
        Err(reason) => bail!("{} does not verify: {reason}", file.display()),
    }
}

fn check(
    manifest: &TrustManifest,
    sig: &Detached,
    sha256: &str,
) -> Result<(String, KeyStatus), String> {
    if sig.sha256 != sha256 {
        return Err(format!(
            "the file's SHA-256 is {sha256}, the signature is for {}: the file was changed",
            sig.sha256
        ));
    }
    let signature = B64
        .decode(&sig.signature)
        .map_err(|_| "the signature is not base64".to_string())?;
    let statement =
        dwcp_crypto::trust::artifact_statement(&sig.tenant, &sig.app, &sig.version, sha256);
    let now = dwcp_store::unix_now();
    let key = manifest
        .verify(
            KeyRole::Publisher,
            &sig.key_id,
            &statement,
            dwcp_crypto::trust::ARTIFACT_CONTEXT,
            &signature,
            now,
        )
        .map_err(|e| e.to_string())?;
    Ok((key.name.clone(), manifest.status(key, now)))
}

/// The node's manifest, its root signature checked against the root key
/// in this data directory when there is one (else the node's, said so).
fn fetch_manifest(client: &AdminClient, data_dir: &Path) -> anyhow::Result<TrustManifest> {
    let out: Value = client.get("/v1/trust")?;
    let node_root = B64
        .decode(text(&out["root_public_key"]))
        .context("the node's root key is not base64")?;
    let local = std::fs::read_to_string(data_dir.join("trust/root.pub")).ok();
    let root_bytes = match local {
        Some(local) => {
            let local = B64
                .decode(local.trim())
                .context("trust/root.pub is damaged")?;
            if local != node_root {
                // The node's root may have been rotated since this anchor
                // was written: follow its endorsements from the pinned one.
                let pinned =
                    RootPublicKey::from_bytes(&local).map_err(|e| anyhow::anyhow!("{e}"))?;
                let current =
                    RootPublicKey::from_bytes(&node_root).map_err(|e| anyhow::anyhow!("{e}"))?;
                let endorsements: Vec<dwcp_crypto::trust::RootEndorsement> =
                    serde_json::from_value(out["root_endorsements"].clone()).unwrap_or_default();
                let followed = dwcp_crypto::trust::follow_root_rotations(
                    &pinned,
                    &current,
                    &endorsements,
                )
                .map_err(|e| {
                    anyhow::anyhow!(
                        "the node's root key is not the one in {}, and {e}: refusing its manifest",
                        data_dir.join("trust/root.pub").display()
                    )
                })?;
                eprintln!(
                    "the node's root was rotated {followed} time(s) since {}: followed the endorsements",
                    data_dir.join("trust/root.pub").display()
                );
            }
            node_root
        }
        None => {
            eprintln!(
                "no trust/root.pub in {}: checking against the node's root key",
                data_dir.display()
            );
            node_root
        }
    };
    let root = RootPublicKey::from_bytes(&root_bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let signed = SignedManifest {
        bytes: text(&out["manifest"]).into_bytes(),
        signature: B64
            .decode(text(&out["signature"]))
            .context("the manifest's signature is not base64")?,
    };
    signed.open(&root).map_err(|e| anyhow::anyhow!("{e}"))
}
