//! Evaluation and loading behaviour beyond flagd's own scenarios.

use serde_json::{Value, json};

use super::{ErrorCode, EvalOptions, FlagError, FlagSet, FractionalVersion, Reason, ValueType};

const OPTIONS: EvalOptions = EvalOptions {
    fractional: FractionalVersion::V2,
    now_unix_secs: Some(1_700_000_000),
};

fn set(json: Value) -> FlagSet {
    FlagSet::parse(&json.to_string()).expect("flag file parses")
}

#[test]
fn malformed_json_is_refused_with_its_position() {
    let text = "{\n  \"flags\": {\n    \"a\": {\"state\": \"ENABLED\",, }\n  }\n}";
    match FlagSet::parse(text) {
        Err(FlagError::Syntax {
            line,
            column,
            reason,
        }) => {
            assert_eq!(line, 3);
            assert!(column > 0);
            assert!(
                !reason.contains("line 3"),
                "position is not repeated: {reason}"
            );
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn bad_shape_is_refused_with_position_and_reason() {
    let text = "{\"flags\": {\n\"a\": {\"state\": \"ON\", \"variants\": {}}}}";
    let err = FlagSet::parse(text).expect_err("unknown state");
    let FlagError::Syntax { line, reason, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*line, 2);
    assert!(reason.contains("ON"), "{reason}");
    assert!(
        FlagSet::parse("{\"flags\": {\"a\": {\"state\": \"ENABLED\"}}}").is_err(),
        "variants are required"
    );
    assert!(FlagSet::parse("{}").is_err(), "flags are required");
}

#[test]
fn inconsistent_flag_is_refused_by_key() {
    let text = json!({"flags": {
        "good": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"},
        "bad": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "off"}
    }});
    match FlagSet::parse(&text.to_string()) {
        Err(FlagError::Flag { key, reason }) => {
            assert_eq!(key, "bad");
            assert!(reason.contains("off"), "{reason}");
        }
        other => panic!("expected a flag error, got {other:?}"),
    }
    let text = json!({"flags": {"m": {"state": "ENABLED", "variants": {"on": true}, "metadata": {"x": [1]}}}});
    assert!(matches!(
        FlagSet::parse(&text.to_string()),
        Err(FlagError::Flag { .. })
    ));
    let text =
        json!({"flags": {"t": {"state": "ENABLED", "variants": {"on": true}, "targeting": "on"}}});
    assert!(matches!(
        FlagSet::parse(&text.to_string()),
        Err(FlagError::Flag { .. })
    ));
}

#[test]
fn ref_cycle_is_refused() {
    let text = json!({
        "flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}},
        "$evaluators": {
            "a": {"and": [{"$ref": "b"}, true]},
            "b": {"or": [{"$ref": "missing"}, {"$ref": "a"}]}
        }
    });
    match FlagSet::parse(&text.to_string()) {
        Err(FlagError::RefCycle { path }) => {
            assert_eq!(path.first(), path.last());
            assert!(path.len() == 3, "{path:?}");
        }
        other => panic!("expected a cycle, got {other:?}"),
    }
    let self_ref = json!({"flags": {}, "$evaluators": {"a": {"$ref": "a"}}});
    assert!(matches!(
        FlagSet::parse(&self_ref.to_string()),
        Err(FlagError::RefCycle { .. })
    ));
}

#[test]
fn exponential_ref_expansion_is_refused() {
    let mut evaluators = serde_json::Map::new();
    evaluators.insert("e0".into(), json!({"==": [1, 1]}));
    for i in 1..40 {
        let prev = format!("e{}", i - 1);
        evaluators.insert(
            format!("e{i}"),
            json!({"and": [{"$ref": prev}, {"$ref": prev}]}),
        );
    }
    let text = json!({
        "flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "targeting": {"$ref": "e39"}}},
        "$evaluators": evaluators
    });
    assert!(matches!(
        FlagSet::parse(&text.to_string()),
        Err(FlagError::Flag { .. })
    ));
}

#[test]
fn refs_are_substituted_and_missing_refs_fail_only_their_flag() {
    let flags = set(json!({
        "flags": {
            "uses": {"state": "ENABLED", "variants": {"y": "y", "n": "n"}, "defaultVariant": "n",
                     "targeting": {"if": [{"$ref": "outer"}, "y", "n"]}},
            "broken": {"state": "ENABLED", "variants": {"y": "y"}, "defaultVariant": "y",
                       "targeting": {"if": [{"$ref": "nope"}, "y"]}},
            "unknown-op": {"state": "ENABLED", "variants": {"y": "y"}, "defaultVariant": "y",
                           "targeting": {"frobnicate": [1]}}
        },
        "$evaluators": {"outer": {"and": [{"$ref": "inner"}, true]}, "inner": {"==": [{"var": "x"}, 1]}}
    }));
    let hit = flags.evaluate("uses", &json!({"x": 1}), &OPTIONS);
    assert_eq!(
        (hit.value, hit.reason),
        (Some(json!("y")), Reason::TargetingMatch)
    );
    let miss = flags.evaluate("uses", &json!({"x": 2}), &OPTIONS);
    assert_eq!(miss.value, Some(json!("n")));
    for key in ["broken", "unknown-op"] {
        let res = flags.evaluate(key, &json!({}), &OPTIONS);
        assert_eq!(
            (res.reason, res.error, res.value),
            (Reason::Error, Some(ErrorCode::ParseError), None),
            "{key}"
        );
    }
    assert_eq!(flags.targeting_errors().count(), 2);
}

#[test]
fn reasons_for_each_outcome() {
    let flags = set(json!({"flags": {
        "static": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "targeting": {}},
        "off": {"state": "DISABLED", "variants": {"a": 1}, "defaultVariant": "a"},
        "no-default": {"state": "ENABLED", "variants": {"a": 1}},
        "to-nowhere": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "targeting": {"if": [true, "b"]}},
        "to-object": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "targeting": {"merge": [[1]]}},
        "bool-name": {"state": "ENABLED", "variants": {"true": 1, "false": 0}, "defaultVariant": "false",
                      "targeting": {"==": [{"var": "k"}, 1]}}
    }}));
    let eval = |key: &str, ctx: Value| flags.evaluate(key, &ctx, &OPTIONS);
    let r = eval("static", json!({}));
    assert_eq!(
        (r.reason, r.variant.as_deref()),
        (Reason::Static, Some("a"))
    );
    let r = eval("off", json!({}));
    assert_eq!((r.reason, r.value, r.error), (Reason::Disabled, None, None));
    let r = eval("no-default", json!({}));
    assert_eq!((r.reason, r.value, r.error), (Reason::Default, None, None));
    assert_eq!(
        eval("to-nowhere", json!({})).error,
        Some(ErrorCode::General)
    );
    assert_eq!(eval("to-object", json!({})).error, Some(ErrorCode::General));
    assert_eq!(eval("bool-name", json!({"k": 1})).value, Some(json!(1)));
    assert_eq!(
        eval("missing", json!({})).error,
        Some(ErrorCode::FlagNotFound)
    );
    assert_eq!(
        eval("bool-name", json!([1])).error,
        Some(ErrorCode::General),
        "context must be an object"
    );
}

#[test]
fn flagd_properties_are_injected() {
    let flags = set(
        json!({"flags": {"f": {"state": "ENABLED", "variants": {"past": 1, "future": 2},
        "targeting": {"if": [{"and": [
            {"==": [{"var": "$flagd.flagKey"}, "f"]},
            {">": [{"var": "$flagd.timestamp"}, {"var": "t"}]}
        ]}, "past", "future"]}}}}),
    );
    // A caller cannot spoof the evaluator's own properties.
    let ctx = json!({"t": 1_699_999_999, "$flagd": {"flagKey": "other"}});
    assert_eq!(
        flags.evaluate("f", &ctx, &OPTIONS).variant.as_deref(),
        Some("past")
    );
    let ctx = json!({"t": 1_700_000_000});
    assert_eq!(
        flags.evaluate("f", &ctx, &OPTIONS).variant.as_deref(),
        Some("future")
    );
}

#[test]
fn metadata_is_flag_over_set() {
    let flags = set(json!({
        "metadata": {"team": "core", "version": 1},
        "flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "metadata": {"version": 2}}}
    }));
    let r = flags.evaluate("f", &json!(null), &OPTIONS);
    assert_eq!(
        Value::Object(r.metadata),
        json!({"team": "core", "version": 2})
    );
    assert!(FlagSet::parse(r#"{"flags": {}, "metadata": []}"#).is_err());
}

#[test]
fn reasons_serialize_as_openfeature_strings() {
    assert_eq!(
        serde_json::to_value(Reason::TargetingMatch).ok(),
        Some(json!("TARGETING_MATCH"))
    );
    assert_eq!(
        serde_json::to_value(ErrorCode::FlagNotFound).ok(),
        Some(json!("FLAG_NOT_FOUND"))
    );
    assert_eq!(Reason::Disabled.as_str(), "DISABLED");
    assert_eq!(ErrorCode::TypeMismatch.as_str(), "TYPE_MISMATCH");
}

#[test]
fn typed_access_reports_type_mismatch() {
    let flags = set(json!({"flags": {
        "s": {"state": "ENABLED", "variants": {"a": "uno"}, "defaultVariant": "a", "metadata": {"m": 1}},
        "n": {"state": "ENABLED", "variants": {"a": 3}, "defaultVariant": "a"}
    }}));
    let r = flags
        .evaluate("s", &json!({}), &OPTIONS)
        .expect_type(ValueType::Integer);
    assert_eq!(
        (r.reason, r.error, r.value),
        (Reason::Error, Some(ErrorCode::TypeMismatch), None)
    );
    assert_eq!(r.metadata.get("m"), Some(&json!(1)));
    let r = flags
        .evaluate("n", &json!({}), &OPTIONS)
        .expect_type(ValueType::Float);
    assert_eq!((r.reason, r.value), (Reason::Static, Some(json!(3))));
    let r = flags
        .evaluate("missing", &json!({}), &OPTIONS)
        .expect_type(ValueType::Boolean);
    assert_eq!(
        r.error,
        Some(ErrorCode::FlagNotFound),
        "earlier errors are kept"
    );
}
