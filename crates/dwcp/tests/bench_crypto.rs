//! `dwcp bench crypto` runs and reports every figure with its peer.

mod common;

use std::process::Command;

use common::dwcp;

#[test]
fn bench_crypto_reports_each_operation_beside_its_peer() {
    let out = Command::new(dwcp())
        .args(["bench", "crypto", "--seconds", "0.1", "--json"])
        .output()
        .expect("dwcp runs");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rate = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["rate"].as_f64())
            .unwrap_or_else(|| panic!("no {name} in {rows}"))
    };
    for name in [
        "X25519MLKEM768",
        "X25519",
        "X25519MLKEM768 server side",
        "composite ML-DSA-65+Ed25519 verify",
        "SLH-DSA-SHAKE-192s verify (root)",
        "ML-KEM-768 decapsulate (aws-lc-rs)",
        "seal 64 MiB",
        "open 64 MiB",
        "verify a signed artifact statement",
    ] {
        assert!(rate(name) > 0.0, "{name}");
    }
}
