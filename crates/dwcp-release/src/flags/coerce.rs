//! JavaScript's value coercions, which JSONLogic's operators are defined by.
//!
//! JSONLogic's reference implementation is JavaScript, and flagd rule
//! authors write rules against its behaviour: `"1" == 1` holds, `[]` is
//! false, `cat` prints `null` as `"null"`. These helpers reproduce that for
//! JSON values.

use serde_json::Value;

/// JSONLogic truthiness: `null`, `false`, `0`, `""` and `[]` are false.
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

/// JavaScript's `Number(value)`; `None` stands for NaN.
pub(crate) fn to_number(value: &Value) -> Option<f64> {
    match value {
        Value::Null => Some(0.0),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => string_to_number(s),
        Value::Array(_) => string_to_number(&to_js_string(value)),
        Value::Object(_) => None,
    }
}

fn string_to_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return Some(0.0);
    }
    match s {
        "Infinity" | "+Infinity" => return Some(f64::INFINITY),
        "-Infinity" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|n| n as f64);
    }
    // Rust's parser also takes "inf" and "nan", which JavaScript does not.
    let plain = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if plain { s.parse().ok() } else { None }
}

/// JavaScript's `String(value)`.
pub(crate) fn to_js_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => number_to_string(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        // Array.prototype.join prints null elements as empty strings.
        Value::Array(items) => items
            .iter()
            .map(|item| {
                if item.is_null() {
                    String::new()
                } else {
                    to_js_string(item)
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".to_owned(),
    }
}

/// Prints a double the way JavaScript does for the common cases: integral
/// values without a fraction (`1`, not `1.0`), others in shortest form.
pub(crate) fn number_to_string(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        // Exact: |f| < 1e21 < i128::MAX, and f is integral.
        format!("{}", f as i128)
    } else {
        format!("{f}")
    }
}

/// Turns an arithmetic result back into JSON: integral results become
/// integers (so `1 + 1` is an Integer flag value), NaN and infinities,
/// which JSON cannot hold, become `null`.
pub(crate) fn from_number(f: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if !f.is_finite() {
        Value::Null
    } else if f.fract() == 0.0 && f.abs() <= EXACT {
        Value::from(f as i64)
    } else {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// JavaScript's `==`.
pub(crate) fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(_), Value::Number(_)) => numbers_eq(a, b),
        // Booleans compare as numbers; strings against numbers convert.
        (Value::Bool(_), _)
        | (_, Value::Bool(_))
        | (Value::Number(_), Value::String(_))
        | (Value::String(_), Value::Number(_)) => {
            matches!((to_number(a), to_number(b)), (Some(x), Some(y)) if x == y)
        }
        // Two distinct arrays or objects are never `==` in JavaScript.
        (Value::Array(_) | Value::Object(_), Value::Array(_) | Value::Object(_)) => false,
        // An array or object against a primitive compares via its string form.
        (Value::Array(_) | Value::Object(_), _) => loose_eq(&Value::String(to_js_string(a)), b),
        (_, Value::Array(_) | Value::Object(_)) => loose_eq(a, &Value::String(to_js_string(b))),
    }
}

/// JavaScript's `===`.
pub(crate) fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(_), Value::Number(_)) => numbers_eq(a, b),
        _ => false,
    }
}

fn numbers_eq(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

/// JavaScript's `<` (or `<=` when `or_equal`): strings compare as strings,
/// anything else as numbers, and NaN compares false.
pub(crate) fn less(a: &Value, b: &Value, or_equal: bool) -> bool {
    if let (Value::String(x), Value::String(y)) = (a, b) {
        return if or_equal { x <= y } else { x < y };
    }
    match (to_number(a), to_number(b)) {
        (Some(x), Some(y)) => {
            if or_equal {
                x <= y
            } else {
                x < y
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truthiness() {
        for falsy in [
            json!(null),
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            json!([]),
        ] {
            assert!(!truthy(&falsy), "{falsy}");
        }
        for t in [json!(true), json!(1), json!("0"), json!([0]), json!({})] {
            assert!(truthy(&t), "{t}");
        }
    }

    #[test]
    fn equality() {
        assert!(loose_eq(&json!(1), &json!("1")));
        assert!(loose_eq(&json!(true), &json!(1)));
        assert!(!loose_eq(&json!(null), &json!(0)));
        assert!(loose_eq(&json!(1.0), &json!(1)));
        assert!(!strict_eq(&json!(1), &json!("1")));
        assert!(strict_eq(&json!(1.0), &json!(1)));
    }

    #[test]
    fn strings_and_numbers() {
        assert_eq!(to_js_string(&json!(1.0)), "1");
        assert_eq!(to_js_string(&json!(1.5)), "1.5");
        assert_eq!(to_js_string(&json!([1, null, "a"])), "1,,a");
        assert_eq!(to_number(&json!(" 12 ")), Some(12.0));
        assert_eq!(to_number(&json!("inf")), None);
        assert_eq!(from_number(f64::NAN), json!(null));
        assert_eq!(from_number(2.0), json!(2));
    }
}
