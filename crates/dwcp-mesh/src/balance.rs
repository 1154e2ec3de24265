//! Which replica serves a forwarded request: the power of two choices
//! (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing",
//! IEEE TPDS 2001) over a peak-EWMA cost, as Finagle and linkerd balance.
//!
//! Each replica's latency estimate jumps up to any slower response at once
//! (the "peak") and otherwise decays toward what it sees with time
//! constant `tau`: `est = est·w + rtt·(1 − w)`, `w = exp(−Δt/τ)`. Reading
//! the cost decays the estimate toward 0 as time passes without responses,
//! so a replica that was slow once is tried again later. The cost is
//! `est × (in_flight + 1)`: a replica busy with many requests costs more
//! even before they finish. Two candidates are drawn at random and the
//! cheaper one wins: close to the best choice without every forwarder
//! piling onto the same one replica.

/// One replica's latency estimate and requests in flight, as one
/// forwarding node sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeakEwma {
    estimate_ns: f64,
    updated_at_ns: u64,
    tau_ns: f64,
    in_flight: u32,
}

impl PeakEwma {
    /// A replica not measured yet: `default_rtt_ns` until it answers.
    pub fn new(default_rtt_ns: f64, tau_ns: f64, now_ns: u64) -> Self {
        Self {
            estimate_ns: default_rtt_ns.max(0.0),
            updated_at_ns: now_ns,
            tau_ns: tau_ns.max(1.0),
            in_flight: 0,
        }
    }

    /// A request was sent to it.
    pub fn start(&mut self) {
        self.in_flight = self.in_flight.saturating_add(1);
    }

    /// A request to it finished after `rtt_ns`, at `now_ns`.
    pub fn finish(&mut self, rtt_ns: f64, now_ns: u64) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.observe(rtt_ns.max(0.0), now_ns);
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// The latency estimate at `now_ns` (decayed since the last update).
    pub fn estimate_ns(&mut self, now_ns: u64) -> f64 {
        self.observe(0.0, now_ns)
    }

    /// What sending one more request to it is expected to cost.
    pub fn cost(&mut self, now_ns: u64) -> f64 {
        self.estimate_ns(now_ns) * f64::from(self.in_flight.saturating_add(1))
    }

    fn observe(&mut self, sample_ns: f64, now_ns: u64) -> f64 {
        // A clock read out of order must not grow the estimate.
        let elapsed = now_ns.saturating_sub(self.updated_at_ns) as f64;
        self.updated_at_ns = self.updated_at_ns.max(now_ns);
        if sample_ns > self.estimate_ns {
            self.estimate_ns = sample_ns;
        } else {
            let w = (-elapsed / self.tau_ns).exp();
            self.estimate_ns = self.estimate_ns * w + sample_ns * (1.0 - w);
        }
        self.estimate_ns
    }
}

/// A replica a request may go to.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<'a> {
    /// The node holding it.
    pub node: &'a str,
    /// The node's region.
    pub region: &'a str,
}

/// The index of the candidate a request entering in `region` goes to:
/// among those in its region if any, else among all; one of them alone is
/// taken as it is; otherwise the cheaper of two drawn by `random` (which
/// returns a uniform number below its argument), ties to the first drawn.
/// `costs[i]` is candidate `i`'s current cost. `None` with no candidate.
pub fn choose(
    candidates: &[Candidate<'_>],
    costs: &[f64],
    region: &str,
    mut random: impl FnMut(u64) -> u64,
) -> Option<usize> {
    let local: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].region == region)
        .collect();
    let pool: Vec<usize> = if local.is_empty() {
        (0..candidates.len()).collect()
    } else {
        local
    };
    match pool.len() {
        0 => None,
        1 => Some(pool[0]),
        n => {
            // Two distinct draws: the second skips the first's slot.
            let a = (random(n as u64) as usize).min(n - 1);
            let mut b = (random(n as u64 - 1) as usize).min(n - 2);
            if b >= a {
                b += 1;
            }
            let (a, b) = (pool[a], pool[b]);
            let cost = |i: usize| costs.get(i).copied().unwrap_or(f64::INFINITY);
            Some(if cost(b) < cost(a) { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;
    const S: u64 = 1_000_000_000;

    /// SplitMix64: small, seeded, enough for replayable draws.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n.max(1)
        }
    }

    #[test]
    fn the_estimate_jumps_to_a_peak_and_decays_with_tau() {
        let mut e = PeakEwma::new(30.0 * MS, 10.0 * S as f64, 0);
        e.finish(100.0 * MS, S);
        assert_eq!(
            e.estimate_ns(S),
            100.0 * MS,
            "a slower answer is taken at once"
        );
        // One tau later with fast answers: about e^-1 of the way back.
        e.finish(10.0 * MS, 11 * S);
        let expected = 100.0 * MS * (-1.0f64).exp() + 10.0 * MS * (1.0 - (-1.0f64).exp());
        assert!(
            (e.estimate_ns(11 * S) - expected).abs() < 1.0,
            "{}",
            e.estimate_ns(11 * S)
        );
        // Idle for a long time: the estimate decays toward 0, so the
        // replica is tried again.
        assert!(e.estimate_ns(200 * S) < 1.0 * MS);
        // A clock read out of order changes nothing.
        let before = e.estimate_ns(200 * S);
        assert_eq!(e.estimate_ns(100 * S), before);
    }

    #[test]
    fn requests_in_flight_raise_the_cost() {
        let mut e = PeakEwma::new(10.0 * MS, 10.0 * S as f64, 0);
        let idle = e.cost(0);
        e.start();
        e.start();
        assert_eq!(e.in_flight(), 2);
        assert!((e.cost(0) - 3.0 * idle).abs() < 1e-6);
        e.finish(10.0 * MS, 0);
        e.finish(10.0 * MS, 0);
        e.finish(10.0 * MS, 0);
        assert_eq!(e.in_flight(), 0, "never below zero");
    }

    #[test]
    fn the_requests_region_comes_first_and_the_cheaper_of_two_wins() {
        let c = |node, region| Candidate { node, region };
        let candidates = [c("a", "eu"), c("b", "us"), c("c", "us"), c("d", "us")];
        let costs = [1.0, 50.0, 10.0, 30.0];
        let mut rng = Rng(7);
        let mut picks = [0usize; 4];
        for _ in 0..3_000 {
            let i = choose(&candidates, &costs, "us", |n| rng.below(n)).unwrap();
            picks[i] += 1;
        }
        assert_eq!(picks[0], 0, "eu's replica is not taken while us has some");
        // Of three, the dearest is never the cheaper of two distinct ones;
        // the cheapest wins every draw it is in (2 of 3).
        assert_eq!(picks[1], 0, "{picks:?}");
        assert!((1_850..=2_150).contains(&picks[2]), "{picks:?}");
        // No replica in the request's region: any.
        let i = choose(&candidates, &costs, "ap", |n| rng.below(n)).unwrap();
        assert!(i < 4);
        assert_eq!(choose(&candidates[..1], &costs, "us", |_| 0), Some(0));
        assert_eq!(choose(&[], &[], "us", |_| 0), None);
        // A draw function out of range cannot index past the pool.
        assert!(choose(&candidates, &costs, "us", |n| n + 5).is_some());
    }

    #[test]
    fn a_slow_replica_loses_traffic_until_it_recovers() {
        let mut replicas: Vec<PeakEwma> = (0..3)
            .map(|_| PeakEwma::new(30.0 * MS, 10.0 * S as f64, 0))
            .collect();
        let c = |node| Candidate { node, region: "eu" };
        let candidates = [c("a"), c("b"), c("c")];
        let mut rng = Rng(1);
        let mut now = 0u64;
        let mut served = [0u32; 3];
        for step in 0..6_000 {
            now += S / 1_000;
            let costs: Vec<f64> = replicas.iter_mut().map(|r| r.cost(now)).collect();
            let i = choose(&candidates, &costs, "eu", |n| rng.below(n)).unwrap();
            // Replica 0 is ten times slower for the first half.
            let rtt = if i == 0 && step < 3_000 {
                50.0 * MS
            } else {
                5.0 * MS
            };
            replicas[i].start();
            replicas[i].finish(rtt, now);
            if step < 3_000 {
                served[i] += 1;
            }
        }
        assert!(served[0] < 300, "the slow replica still got {served:?}");
        // Recovered and decayed: it is chosen again.
        let costs: Vec<f64> = replicas.iter_mut().map(|r| r.cost(now + 60 * S)).collect();
        assert!(costs[0] < 10.0 * MS, "{costs:?}");
    }
}
