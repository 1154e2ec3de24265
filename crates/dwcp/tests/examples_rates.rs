//! `flaky` and `broken` fail the share of requests the contract says (0.5%
//! and 5%), on a real node: the rollout benchmark's baseline and bad canary
//! are only as good as these rates.

mod common;

use std::thread;

use common::{TestNode, data_dir};

/// Requests sent to each example: enough that flaky's band (mean 40)
/// excludes 0, so a flaky that never fails does not pass.
const REQUESTS: u64 = 8_000;

/// Chance, per side, that a correct example's count falls outside the band
/// the test accepts: about a 6-sigma event, so the test does not flake.
const TAIL: f64 = 1e-9;

/// The counts `[lo, hi]` a Binomial(n, p) falls outside with a chance of at
/// most `tail` on each side. Exact tails, not the normal approximation,
/// which is poor for flaky's mean of 40.
fn binomial_band(n: u64, p: f64, tail: f64) -> (u64, u64) {
    // log pmf(k), from pmf(k+1) = pmf(k) · (n−k)/(k+1) · p/(1−p), in logs so
    // that (1−p)^n cannot underflow.
    let mut log_pmf = Vec::with_capacity(n as usize + 1);
    let mut l = n as f64 * (1.0 - p).ln();
    for k in 0..=n {
        log_pmf.push(l);
        l += ((n - k) as f64 / (k + 1) as f64).ln() + (p / (1.0 - p)).ln();
    }
    let pmf: Vec<f64> = log_pmf.iter().map(|l| l.exp()).collect();
    let mut below = 0.0;
    let lo = (0..=n)
        .find(|&k| {
            below += pmf[k as usize];
            below > tail
        })
        .unwrap_or(0);
    let mut above = 0.0;
    let hi = (0..=n)
        .rev()
        .find(|&k| {
            above += pmf[k as usize];
            above > tail
        })
        .unwrap_or(n);
    (lo, hi)
}

/// Sends `REQUESTS` GETs to `host` from four clients at once; returns how
/// many were answered 500, after checking every answer's shape.
fn count_failures(node: &TestNode, host: &str) -> u64 {
    let http = node.http;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let host = host.to_string();
            thread::spawn(move || {
                let mut failed = 0;
                for _ in 0..REQUESTS / 4 {
                    let reply = common::request(http, "GET", &host, "/", b"");
                    match reply.status {
                        200 => assert_eq!(reply.text(), "ok\n"),
                        500 => {
                            let text = reply.text();
                            assert!(text.contains("failed on purpose"), "{text}");
                            assert_eq!(text.lines().count(), 1, "one line: {text:?}");
                            failed += 1;
                        }
                        other => panic!("{host}: unexpected {other}: {}", reply.text()),
                    }
                }
                failed
            })
        })
        .collect();
    clients
        .into_iter()
        .map(|c| c.join().expect("a client thread"))
        .sum()
}

#[test]
fn flaky_and_broken_fail_at_their_rates() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());
    node.deploy("demo/flaky", "flaky", &[]);
    node.deploy("demo/broken", "broken", &[]);

    let flaky = count_failures(&node, "flaky.demo.localhost");
    let broken = count_failures(&node, "broken.demo.localhost");
    println!("of {REQUESTS} requests each: flaky failed {flaky}, broken {broken}");

    let (lo, hi) = binomial_band(REQUESTS, 0.005, TAIL);
    assert!(
        (lo..=hi).contains(&flaky),
        "flaky {flaky} not in [{lo}, {hi}]"
    );
    let (lo, hi) = binomial_band(REQUESTS, 0.05, TAIL);
    assert!(
        (lo..=hi).contains(&broken),
        "broken {broken} not in [{lo}, {hi}]"
    );
    assert!(flaky < broken, "flaky {flaky} vs broken {broken}");
}

#[test]
fn the_band_matches_known_tails() {
    // Checked against an independent exact computation (lgamma in Python).
    assert_eq!(binomial_band(8_000, 0.005, 1e-9), (9, 83));
    assert_eq!(binomial_band(8_000, 0.05, 1e-9), (289, 522));
    // A fair coin's 10 flips: 0 and 10 each have a chance of 1/1024.
    assert_eq!(binomial_band(10, 0.5, 0.01), (1, 9));
}
