//! `dwcp bench crypto`: each post-quantum operation DWCP uses, measured
//! beside its classical peer in the same run.
//!
//! Handshakes run client and server in one thread over memory (no
//! sockets: the figure is the cryptography's cost), and the server's share
//! of each handshake is timed on its own, since a node's capacity is
//! what its server side spends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::kem::{DecapsulationKey, ML_KEM_768};
use aws_lc_rs::signature::{
    ED25519, Ed25519KeyPair, KeyPair, ML_DSA_65, ML_DSA_65_SIGNING, PqdsaKeyPair, UnparsedPublicKey,
};
use dwcp_crypto::composite::HybridSigningKey;
use dwcp_crypto::keyfile::KeyRole;
use dwcp_crypto::root::RootSigningKey;
use dwcp_crypto::seal::{Binding, SealingKey};
use dwcp_crypto::trust::{ARTIFACT_CONTEXT, TrustManifest, artifact_statement};
use rustls::crypto::aws_lc_rs as tls_provider;
use rustls::crypto::aws_lc_rs::kx_group::{X25519, X25519MLKEM768};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use serde_json::{Value, json};

use crate::cli::CryptoBenchArgs;

/// Runs the benchmark and prints its figures.
pub fn run(args: CryptoBenchArgs) -> anyhow::Result<()> {
    let budget = Duration::from_secs_f64(args.seconds.max(0.1) / 3.0);
    let mut rows: Vec<Value> = Vec::new();
    let mut row = |group: &str, name: &str, peer: &str, rate: f64, unit: &str| {
        rows.push(
            json!({ "group": group, "name": name, "peer": peer, "rate": rate, "unit": unit }),
        );
    };

    // TLS handshakes, the same server configuration, one group each.
    let (cert, key) = dwcp_crypto::tls::self_signed(&["localhost"])?;
    let (certs, key) = dwcp_crypto::tls::parse_pem(cert.as_bytes(), key.as_bytes())?;
    let server = dwcp_crypto::tls::ingress_server_config(certs.clone(), key)?;
    let mut roots = RootCertStore::empty();
    roots.add(certs[0].clone())?;
    for (name, group) in [("X25519MLKEM768", X25519MLKEM768), ("X25519", X25519)] {
        let client = client_config(group, roots.clone())?;
        let (total, server_side) = handshakes(&server, &client, budget)?;
        row(
            "tls handshake",
            name,
            "X25519",
            total,
            "handshakes/s (client+server, one thread)",
        );
        row(
            "tls handshake",
            &format!("{name} server side"),
            "X25519 server side",
            server_side,
            "handshakes/s",
        );
    }

    // Signatures.
    let msg = [7u8; 64];
    let ed = Ed25519KeyPair::from_seed_unchecked(&[1u8; 32]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ed_pub = ed.public_key().as_ref().to_vec();
    let ed_sig = ed.sign(&msg);
    row(
        "signature",
        "Ed25519 sign (aws-lc-rs)",
        "-",
        rate(budget, || {
            std::hint::black_box(ed.sign(&msg));
        }),
        "ops/s",
    );
    row(
        "signature",
        "Ed25519 verify (aws-lc-rs)",
        "-",
        rate(budget, || {
            let ok = UnparsedPublicKey::new(&ED25519, &ed_pub)
                .verify(&msg, ed_sig.as_ref())
                .is_ok();
            std::hint::black_box(ok);
        }),
        "ops/s",
    );
    let mldsa = PqdsaKeyPair::from_seed(&ML_DSA_65_SIGNING, &[2u8; 32])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mldsa_pub = mldsa.public_key().as_ref().to_vec();
    let mut mldsa_sig = vec![0u8; 3309];
    mldsa
        .sign(&msg, &mut mldsa_sig)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    row(
        "signature",
        "ML-DSA-65 sign (aws-lc-rs)",
        "Ed25519 sign",
        rate(budget, || {
            let mut sig = vec![0u8; 3309];
            std::hint::black_box(mldsa.sign(&msg, &mut sig).is_ok());
        }),
        "ops/s",
    );
    row(
        "signature",
        "ML-DSA-65 verify (aws-lc-rs)",
        "Ed25519 verify",
        rate(budget, || {
            let ok = UnparsedPublicKey::new(&ML_DSA_65, &mldsa_pub)
                .verify(&msg, &mldsa_sig)
                .is_ok();
            std::hint::black_box(ok);
        }),
        "ops/s",
    );
    let hybrid = HybridSigningKey::from_seeds(&[3u8; 64]);
    let hybrid_sig = hybrid
        .sign(&msg, ARTIFACT_CONTEXT)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    row(
        "signature",
        "composite ML-DSA-65+Ed25519 sign",
        "Ed25519 sign",
        rate(budget, || {
            std::hint::black_box(hybrid.sign(&msg, ARTIFACT_CONTEXT).is_ok());
        }),
        "ops/s",
    );
    row(
        "signature",
        "composite ML-DSA-65+Ed25519 verify",
        "Ed25519 verify",
        rate(budget, || {
            let ok = hybrid
                .public_key()
                .verify(&msg, ARTIFACT_CONTEXT, &hybrid_sig)
                .is_ok();
            std::hint::black_box(ok);
        }),
        "ops/s",
    );
    let root = RootSigningKey::generate()?;
    let started = Instant::now();
    let root_sig = root.sign(&msg, b"bench")?;
    let root_sign = started.elapsed();
    row(
        "signature",
        "SLH-DSA-SHAKE-192s sign (root; once)",
        "-",
        1.0 / root_sign.as_secs_f64(),
        "ops/s",
    );
    let root_pub = root.public_key();
    row(
        "signature",
        "SLH-DSA-SHAKE-192s verify (root)",
        "Ed25519 verify",
        rate(budget, || {
            std::hint::black_box(root_pub.verify(&msg, b"bench", &root_sig).is_ok());
        }),
        "ops/s",
    );

    // KEMs.
    let dk = DecapsulationKey::generate(&ML_KEM_768).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ek = dk.encapsulation_key().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (ct, _) = ek.encapsulate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let ct = ct.as_ref().to_vec();
    row(
        "kem",
        "ML-KEM-768 encapsulate (aws-lc-rs)",
        "-",
        rate(budget, || {
            std::hint::black_box(ek.encapsulate().is_ok());
        }),
        "ops/s",
    );
    row(
        "kem",
        "ML-KEM-768 decapsulate (aws-lc-rs)",
        "-",
        rate(budget, || {
            std::hint::black_box(dk.decapsulate(ct.as_slice().into()).is_ok());
        }),
        "ops/s",
    );

    // Sealing: X-Wing per object, then AES-256-GCM over it.
    let seal_key = SealingKey::from_seed(&[4u8; 32]);
    let binding = Binding {
        tenant: "bench",
        app: "bench",
        subject: "key",
        snapshot_id: 1,
    };
    row(
        "seal",
        "X-Wing seal of an empty object",
        "-",
        rate(budget, || {
            std::hint::black_box(
                dwcp_crypto::seal::seal(seal_key.public_key(), &[], binding).is_ok(),
            );
        }),
        "ops/s",
    );
    let big = vec![0x5au8; 64 << 20];
    let sealed = dwcp_crypto::seal::seal(seal_key.public_key(), &big, binding)?;
    let seal_rate = rate(budget, || {
        std::hint::black_box(dwcp_crypto::seal::seal(seal_key.public_key(), &big, binding).is_ok());
    }) * big.len() as f64
        / 1e9;
    let open_rate = rate(budget, || {
        std::hint::black_box(seal_key.open(&sealed, binding).is_ok());
    }) * big.len() as f64
        / 1e9;
    row("seal", "seal 64 MiB", "-", seal_rate, "GB/s");
    row("seal", "open 64 MiB", "-", open_rate, "GB/s");

    // Artifacts: hash once at upload, then one signature check.
    let artifact = vec![0xa5u8; 10 << 20];
    let sha2_rate = rate(budget, || {
        std::hint::black_box(dwcp_store::sha256_hex(&artifact));
    });
    let awslc_rate = rate(budget, || {
        std::hint::black_box(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &artifact,
        ));
    });
    row(
        "artifact",
        "SHA-256 of 10 MiB (sha2, what the node uses)",
        "SHA-256 (aws-lc-rs)",
        sha2_rate * artifact.len() as f64 / 1e9,
        "GB/s",
    );
    row(
        "artifact",
        "SHA-256 of 10 MiB (aws-lc-rs)",
        "-",
        awslc_rate * artifact.len() as f64 / 1e9,
        "GB/s",
    );
    let mut manifest = TrustManifest::new(&root_pub, 0);
    manifest.trust(KeyRole::Publisher, "bench", hybrid.public_key(), 0, None)?;
    let statement = artifact_statement("t", "a", "v1", &dwcp_store::sha256_hex(&artifact));
    let sig = hybrid
        .sign(&statement, ARTIFACT_CONTEXT)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let kid = hybrid.public_key().key_id();
    let verify_rate = rate(budget, || {
        let ok = manifest
            .verify(
                KeyRole::Publisher,
                &kid,
                &statement,
                ARTIFACT_CONTEXT,
                &sig,
                1,
            )
            .is_ok();
        std::hint::black_box(ok);
    });
    row(
        "artifact",
        "verify a signed artifact statement",
        "-",
        verify_rate,
        "ops/s",
    );
    row(
        "artifact",
        "hash + verify a 10 MiB artifact",
        "-",
        1e3 / (1e3 / sha2_rate + 1e3 / verify_rate),
        "artifacts/s",
    );

    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "dwcp bench crypto ({:.1} s per figure, median of 3):",
        args.seconds
    );
    let mut group = String::new();
    for r in &rows {
        let g = r["group"].as_str().unwrap_or("");
        if g != group {
            println!("\n{g}:");
            group = g.to_string();
        }
        let value = r["rate"].as_f64().unwrap_or(0.0);
        let peer = r["peer"].as_str().unwrap_or("-");
        let ratio = rows
            .iter()
            .find(|p| {
                p["name"].as_str() == Some(peer)
                    || (peer.starts_with("Ed25519")
                        && p["name"].as_str().is_some_and(|n| n.starts_with(peer)))
            })
            .and_then(|p| p["rate"].as_f64())
            .map(|p| format!("  ({:.2}x {peer})", value / p))
            .unwrap_or_default();
        println!(
            "  {:<48} {:>12.1} {}{ratio}",
            r["name"].as_str().unwrap_or(""),
            value,
            r["unit"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// Operations per second of `op`: the median of three runs of `budget`.
fn rate(budget: Duration, mut op: impl FnMut()) -> f64 {
    let mut rates: Vec<f64> = (0..3)
        .map(|_| {
            let started = Instant::now();
            let mut n = 0u64;
            while started.elapsed() < budget || n == 0 {
                op();
                n += 1;
            }
            n as f64 / started.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[1]
}

fn client_config(
    group: &'static dyn SupportedKxGroup,
    roots: RootCertStore,
) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = CryptoProvider {
        kx_groups: vec![group],
        ..tls_provider::default_provider()
    };
    Ok(Arc::new(
        ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// Full handshakes per second (no resumption), and per second of server
/// time alone: median of three runs.
fn handshakes(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    budget: Duration,
) -> anyhow::Result<(f64, f64)> {
    let mut totals = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let mut server_time = Duration::ZERO;
        let mut n = 0u64;
        while started.elapsed() < budget || n == 0 {
            server_time += one_handshake(server, client)?;
            n += 1;
        }
        totals.push(n as f64 / started.elapsed().as_secs_f64());
        servers.push(n as f64 / server_time.as_secs_f64());
    }
    totals.sort_by(f64::total_cmp);
    servers.sort_by(f64::total_cmp);
    Ok((totals[1], servers[1]))
}

/// One handshake in memory; the time the server side spent.
fn one_handshake(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
) -> anyhow::Result<Duration> {
    let mut s = ServerConnection::new(server.clone())?;
    let mut c = ClientConnection::new(client.clone(), "localhost".try_into()?)?;
    let mut server_time = Duration::ZERO;
    for _ in 0..10 {
        let mut buf = Vec::new();
        c.write_tls(&mut buf)?;
        let started = Instant::now();
        s.read_tls(&mut buf.as_slice())?;
        s.process_new_packets()?;
        let mut out = Vec::new();
        s.write_tls(&mut out)?;
        server_time += started.elapsed();
        c.read_tls(&mut out.as_slice())?;
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(server_time);
        }
    }
    anyhow::bail!("the handshake did not finish")
}
