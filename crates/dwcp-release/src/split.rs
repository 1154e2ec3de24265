//! The sticky traffic split of a rollout: which version a user sees.
//!
//! A user's key (a header, a cookie, the stateful key or the client
//! address) hashes to a bucket in [0, 10,000) exactly as flagd's
//! `fractional` (v2) buckets a flag keyed `SALT/` for a targeting key: murmur3
//! x86_32 of `SALT/` ‖ key, scaled by `hash × 10,000 >> 32`. The same user
//! lands in the same bucket on every node and every request, and a flag
//! that splits users with `fractional` agrees with the rollout (tested
//! against the evaluator, which flagd's own vectors check). Like flagd's,
//! the shares are exact only on average: keys that differ in their last
//! characters alone (`user-0` … `user-19999`) put 26.1% of users under a
//! 25% weight. The canary serves the buckets below its weight (in basis
//! points): raising the weight only moves users from stable to canary,
//! never back, and lowering it (an abort) only moves them back.

use crate::flags::murmur3_32;

/// Buckets a weight is counted in: basis points (1 = 0.01%).
pub const BUCKETS: u32 = 10_000;

/// Which side of a rollout serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The version serving before the rollout.
    Stable,
    /// The version being rolled out.
    Canary,
}

/// A user's bucket for a rollout salted with `salt` (the rollout's id, so
/// that two rollouts do not pick the same users first).
pub fn bucket(salt: &str, user_key: &str) -> u32 {
    let mut bytes = Vec::with_capacity(salt.len() + 1 + user_key.len());
    bytes.extend_from_slice(salt.as_bytes());
    // The flag key's trailing '/' keeps ("ab", "c") and ("a", "bc") apart.
    bytes.push(b'/');
    bytes.extend_from_slice(user_key.as_bytes());
    ((u64::from(murmur3_32(&bytes, 0)) * u64::from(BUCKETS)) >> 32) as u32
}

/// The side that serves `user_key` when the canary has `weight_bp` basis
/// points of the traffic.
pub fn side(salt: &str, user_key: &str, weight_bp: u32) -> Side {
    if bucket(salt, user_key) < weight_bp.min(BUCKETS) {
        Side::Canary
    } else {
        Side::Stable
    }
}

/// `weight_bp` basis points as a percentage.
pub fn percent(weight_bp: u32) -> f64 {
    f64::from(weight_bp) * 100.0 / f64::from(BUCKETS)
}

/// A percentage as basis points, to the nearest.
pub fn from_percent(percent: f64) -> u32 {
    (percent * f64::from(BUCKETS) / 100.0).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids of the kind sessions and accounts carry (SplitMix64 of the index).
    fn users(n: usize) -> Vec<String> {
        (0..n as u64)
            .map(|i| {
                let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                format!("{:016x}", z ^ (z >> 31))
            })
            .collect()
    }

    #[test]
    fn raising_the_weight_only_moves_users_to_the_canary() {
        let users = users(20_000);
        let steps = [0, 100, 500, 2_500, 5_000, 10_000];
        let mut previous: Vec<Side> = vec![Side::Stable; users.len()];
        for weight in steps {
            let now: Vec<Side> = users.iter().map(|u| side("r1", u, weight)).collect();
            for (before, after) in previous.iter().zip(&now) {
                assert!(
                    !(*before == Side::Canary && *after == Side::Stable),
                    "a user went back to stable at {weight}"
                );
            }
            // The share is the weight, within sampling error (20,000 users).
            let share =
                now.iter().filter(|s| **s == Side::Canary).count() as f64 / users.len() as f64;
            let expected = f64::from(weight) / f64::from(BUCKETS);
            assert!((share - expected).abs() < 0.01, "{weight}: {share}");
            previous = now;
        }
    }

    #[test]
    fn the_split_agrees_with_flagd_fractional_v2() {
        use crate::flags::{EvalOptions, FlagSet};
        for weight in [1u32, 100, 2_500, 5_000, 9_999] {
            let flags = format!(
                r#"{{"flags": {{"r7/": {{"state": "ENABLED",
                    "variants": {{"canary": "canary", "stable": "stable"}},
                    "defaultVariant": "stable",
                    "targeting": {{"fractional": [["canary", {weight}], ["stable", {}]]}}}}}}}}"#,
                BUCKETS - weight
            );
            let set = FlagSet::parse(&flags).expect("a valid flag file");
            for user in users(500) {
                let context = serde_json::json!({ "targetingKey": user });
                let resolved = set.evaluate("r7/", &context, &EvalOptions::default());
                let expected = match side("r7", &user, weight) {
                    Side::Canary => "canary",
                    Side::Stable => "stable",
                };
                assert_eq!(
                    resolved.variant.as_deref(),
                    Some(expected),
                    "{user} at {weight}"
                );
            }
        }
    }

    #[test]
    fn a_user_stays_put_and_rollouts_pick_different_users() {
        assert_eq!(bucket("r1", "alice"), bucket("r1", "alice"));
        let users = users(2_000);
        let first_r1: Vec<_> = users
            .iter()
            .filter(|u| side("r1", u, 1_000) == Side::Canary)
            .collect();
        let first_r2: Vec<_> = users
            .iter()
            .filter(|u| side("r2", u, 1_000) == Side::Canary)
            .collect();
        let common = first_r1.iter().filter(|u| first_r2.contains(u)).count();
        // Independent 10% samples share about 1% of users, not all of them.
        assert!(
            common < first_r1.len() / 2,
            "{common} of {}",
            first_r1.len()
        );
        assert_ne!(bucket("ab", "c"), bucket("a", "bc"));
        assert_eq!(side("r", "x", 0), Side::Stable);
        assert_eq!(side("r", "x", BUCKETS), Side::Canary);
        assert_eq!(side("r", "x", u32::MAX), Side::Canary);
    }
}
