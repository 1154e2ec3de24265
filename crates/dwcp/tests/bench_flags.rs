//! `dwcp bench flags` runs and reports each kind of flag.

mod common;

use std::process::Command;

#[test]
fn bench_flags_reports_static_targeted_and_fractional_flags() {
    let out = Command::new(common::dwcp())
        .args(["bench", "flags", "--seconds", "0.1", "--json"])
        .output()
        .expect("dwcp runs");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let flags: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["ns_per_eval"].as_f64().unwrap() > 0.0, "{r}");
            r["flag"].as_str().unwrap()
        })
        .collect();
    assert_eq!(flags, ["static", "targeted", "fractional"]);
}
