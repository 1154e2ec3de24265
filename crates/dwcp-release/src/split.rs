//! The sticky traffic split of a rollout: which version a user sees.
//!
//! A user's key (a header, a cookie, the stateful key or the client
//! address) hashes to a bucket in [0, 10,000): murmur3 x86_32 of
//! `salt ‖ key`, scaled as flagd's `fractional` v2 does (`hash × n >> 32`),
//! so the same user lands in the same bucket on every node and every
//! request. The canary serves the buckets below its weight (in basis
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
    // A separator: ("ab", "c") and ("a", "bc") are different users.
    bytes.push(0);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn users(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("user-{i}")).collect()
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
