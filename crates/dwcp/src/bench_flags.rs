//! `dwcp bench flags`: the cost of evaluating one feature flag.
//!
//! flagd publishes figures for its Go evaluator (about 1.4 µs for a static
//! flag, 7.5 µs for a targeted one and 10.6 µs for a `fractional` one);
//! they are printed beside ours for scale, not as a same-run peer: no Go
//! flagd runs here.

use std::time::Instant;

use dwcp_release::flags::{EvalOptions, FlagSet};
use serde_json::{Value, json};

use crate::cli::FlagsBenchArgs;

const FLAGS: &str = r#"{
  "flags": {
    "static": {
      "state": "ENABLED",
      "variants": { "on": true, "off": false },
      "defaultVariant": "on"
    },
    "targeted": {
      "state": "ENABLED",
      "variants": { "on": true, "off": false },
      "defaultVariant": "off",
      "targeting": {
        "if": [
          { "and": [
            { "ends_with": [{ "var": "email" }, "@example.com"] },
            { "in": [{ "var": "plan" }, ["pro", "enterprise"]] }
          ]},
          "on",
          "off"
        ]
      }
    },
    "fractional": {
      "state": "ENABLED",
      "variants": { "a": "a", "b": "b", "c": "c" },
      "defaultVariant": "a",
      "targeting": { "fractional": [["a", 25], ["b", 25], ["c", 50]] }
    }
  }
}"#;

/// Runs the benchmark and prints its figures.
pub fn run(args: FlagsBenchArgs) -> anyhow::Result<()> {
    let set = FlagSet::parse(FLAGS).map_err(|e| anyhow::anyhow!("{e}"))?;
    let options = EvalOptions::default();
    let users: Vec<Value> = (0..64)
        .map(|i| json!({ "targetingKey": format!("user-{i}"), "email": format!("u{i}@example.com"), "plan": "pro" }))
        .collect();
    let seconds = args.seconds.max(0.1) / 3.0;
    let mut rows = Vec::new();
    for (flag, published_us) in [("static", 1.4), ("targeted", 7.5), ("fractional", 10.6)] {
        // A resolved variant, so that a broken flag cannot time as fast.
        let first = set.evaluate(flag, &users[0], &options);
        if first.variant.is_none() {
            anyhow::bail!("flag {flag} did not resolve: {first:?}");
        }
        let ns = ns_per_op(seconds, |i| {
            std::hint::black_box(set.evaluate(flag, &users[i % users.len()], &options));
        });
        rows.push(
            json!({ "flag": flag, "ns_per_eval": ns, "flagd_go_published_us": published_us }),
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "dwcp bench flags ({:.1} s per figure, median of 3):",
        args.seconds
    );
    for row in &rows {
        let ns = row["ns_per_eval"].as_f64().unwrap_or(0.0);
        let go = row["flagd_go_published_us"].as_f64().unwrap_or(0.0);
        println!(
            "  {:<12} {:>8.0} ns per evaluation   (flagd's Go evaluator, published: {go} µs)",
            row["flag"].as_str().unwrap_or(""),
            ns
        );
    }
    Ok(())
}

/// Nanoseconds per call of `op`: the median of three runs of `seconds`,
/// timed in batches so that reading the clock does not count.
fn ns_per_op(seconds: f64, mut op: impl FnMut(usize)) -> f64 {
    const BATCH: usize = 1_000;
    let mut runs: Vec<f64> = (0..3)
        .map(|_| {
            let started = Instant::now();
            let mut done = 0usize;
            while started.elapsed().as_secs_f64() < seconds || done == 0 {
                for i in 0..BATCH {
                    op(done + i);
                }
                done += BATCH;
            }
            started.elapsed().as_secs_f64() * 1e9 / done as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[1]
}
