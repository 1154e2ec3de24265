//! flagd's `fractional` operator: deterministic percentage rollouts.
//!
//! `{"fractional": [key?, [variant, weight?], ...]}` hashes a bucketing key
//! with MurmurHash3 and picks a variant in proportion to the weights, so a
//! given user always lands in the same bucket. Without an explicit key
//! (the first argument is already a bucket) the key is the flag key
//! followed by the targeting key, which gives each flag its own split.

use serde_json::Value;

use super::FractionalVersion;
use super::murmur3::murmur3_32;

/// Evaluates `fractional` over already-evaluated `args`; `null` on any
/// malformed input, so the flag falls back to its default variant.
pub(crate) fn evaluate(args: &[Value], data: &Value, version: FractionalVersion) -> Value {
    let (key, buckets) = match args.split_first() {
        Some((Value::String(key), buckets)) => (key.clone(), buckets),
        Some((Value::Array(_), _)) => {
            let flag_key = data.pointer("/$flagd/flagKey").and_then(Value::as_str);
            // flagd refuses to bucket a context without a targeting key
            // rather than hashing the flag key alone, which would put every
            // such user in the same bucket.
            let targeting_key = data.get("targetingKey").and_then(Value::as_str);
            match (flag_key, targeting_key) {
                (Some(flag), Some(target)) => (format!("{flag}{target}"), args),
                _ => return Value::Null,
            }
        }
        // A bucketing key that evaluated to null (a missing `var`) or to a
        // non-string cannot be hashed consistently across flagd's SDKs.
        _ => return Value::Null,
    };
    let Some(buckets) = parse_buckets(buckets) else {
        return Value::Null;
    };
    let total: u64 = buckets.iter().map(|(_, weight)| weight).sum();
    if total == 0 {
        return Value::Null;
    }
    let hash = murmur3_32(key.as_bytes(), 0);
    let chosen = match version {
        FractionalVersion::V1 => pick_v1(hash, total, &buckets),
        FractionalVersion::V2 => pick_v2(hash, total, &buckets),
    };
    chosen.cloned().unwrap_or(Value::Null)
}

/// The largest weight accepted; keeps the sum of weights far from overflow.
const MAX_WEIGHT: f64 = 4_294_967_295.0;

/// `[variant, weight]` pairs; a missing weight is 1 and a negative one 0.
fn parse_buckets(buckets: &[Value]) -> Option<Vec<(&Value, u64)>> {
    if buckets.is_empty() {
        return None;
    }
    buckets
        .iter()
        .map(|bucket| {
            let (variant, weight) = match bucket.as_array()?.as_slice() {
                [variant] => (variant, 1.0),
                [variant, Value::Number(weight)] => (variant, weight.as_f64()?),
                _ => return None,
            };
            // Variant names are usually strings; booleans let `fractional`
            // serve as a condition inside `if`.
            if !matches!(variant, Value::String(_) | Value::Bool(_)) || !weight.is_finite() {
                return None;
            }
            // Clamped to 0..=MAX_WEIGHT, so the conversion is exact enough.
            Some((variant, weight.clamp(0.0, MAX_WEIGHT) as u64))
        })
        .collect()
}

/// Legacy bucketing: the hash as a signed ratio of `i32::MAX`, scaled to
/// the total weight in floating point.
fn pick_v1<'v>(hash: u32, total: u64, buckets: &[(&'v Value, u64)]) -> Option<&'v Value> {
    // Reinterpreting the bits as signed is what the legacy algorithm does.
    let ratio = f64::from(hash as i32).abs() / f64::from(i32::MAX);
    let point = ratio * total as f64;
    let mut end = 0.0;
    for (variant, weight) in buckets {
        end += *weight as f64;
        if point < end {
            return Some(variant);
        }
    }
    // Only i32::MIN lands here (its ratio exceeds 1); flagd's legacy
    // evaluator found no bucket for it either.
    None
}

/// Integer bucketing: `hash * total / 2^32` is in `0..total` exactly, so
/// every weight gets its exact share of the hash space.
fn pick_v2<'v>(hash: u32, total: u64, buckets: &[(&'v Value, u64)]) -> Option<&'v Value> {
    let point = (u128::from(hash) * u128::from(total)) >> 32;
    let mut end = 0u128;
    for (variant, weight) in buckets {
        end += u128::from(*weight);
        if point < end {
            return Some(variant);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::evaluate;
    use crate::flags::FractionalVersion::{V1, V2};
    use serde_json::json;

    #[test]
    fn hash_space_boundaries_v2() {
        let args = |key: &str| vec![json!(key), json!(["lower", 50]), json!(["upper", 50])];
        for (key, want) in [
            ("ejOoVL", "lower"),
            ("SI7p-", "lower"),
            ("6LvT0", "upper"),
            ("ceQdGm", "upper"),
        ] {
            assert_eq!(evaluate(&args(key), &json!({}), V2), json!(want), "{key}");
        }
    }

    #[test]
    fn implicit_key_needs_a_targeting_key() {
        let args = vec![json!(["a"]), json!(["b"])];
        let data = json!({"$flagd": {"flagKey": "f"}});
        assert_eq!(evaluate(&args, &data, V2), json!(null));
        let data = json!({"$flagd": {"flagKey": "f"}, "targetingKey": "u"});
        assert!(evaluate(&args, &data, V1).is_string());
    }

    #[test]
    fn malformed_buckets_are_null() {
        let data = json!({});
        for args in [
            vec![json!("k")],
            vec![json!("k"), json!(["a", 0]), json!(["b", 0])],
            vec![json!("k"), json!("a")],
            vec![json!("k"), json!([{"x": 1}, 1])],
            vec![json!("k"), json!(["a", "1"])],
            vec![json!(null), json!(["a", 1])],
            vec![json!(3), json!(["a", 1])],
        ] {
            assert_eq!(evaluate(&args, &data, V2), json!(null), "{args:?}");
        }
    }

    #[test]
    fn negative_weights_count_as_zero() {
        let args = vec![json!("anyone"), json!(["one", -50]), json!(["two", 100])];
        assert_eq!(evaluate(&args, &json!({}), V2), json!("two"));
        assert_eq!(evaluate(&args, &json!({}), V1), json!("two"));
    }
}
