//! Loading a flag file: shape checks, `$ref` substitution, rule compilation.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Flag, FlagError, FlagSet, Targeting, logic};

#[derive(Deserialize)]
struct RawFile {
    flags: BTreeMap<String, RawFlag>,
    #[serde(rename = "$evaluators", default)]
    evaluators: Map<String, Value>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFlag {
    state: RawState,
    variants: Map<String, Value>,
    #[serde(default)]
    default_variant: Option<String>,
    #[serde(default)]
    targeting: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum RawState {
    Enabled,
    Disabled,
}

/// After `$ref` substitution a rule may hold at most this many JSON nodes:
/// evaluators that each use the previous one twice would otherwise expand
/// exponentially from a small file.
const MAX_RULE_NODES: usize = 100_000;

/// And at most this depth, which bounds the evaluator's recursion (serde_json
/// already bounds the raw file at 128).
const MAX_RULE_DEPTH: usize = 256;

pub(super) fn parse(json: &str) -> Result<FlagSet, FlagError> {
    let raw: RawFile = serde_json::from_str(json).map_err(|e| {
        let position = format!(" at line {} column {}", e.line(), e.column());
        let reason = e.to_string();
        let reason = reason.strip_suffix(&position).unwrap_or(&reason).to_owned();
        FlagError::Syntax {
            line: e.line(),
            column: e.column(),
            reason,
        }
    })?;
    check_ref_cycles(&raw.evaluators)?;
    let set_metadata = match raw.metadata {
        None => Map::new(),
        Some(value) => scalar_map(value).map_err(|reason| FlagError::Metadata { reason })?,
    };
    let mut flags = BTreeMap::new();
    for (key, raw_flag) in raw.flags {
        let flag = build_flag(raw_flag, &raw.evaluators, &set_metadata).map_err(|reason| {
            FlagError::Flag {
                key: key.clone(),
                reason,
            }
        })?;
        flags.insert(key, flag);
    }
    Ok(FlagSet { flags })
}

fn build_flag(
    raw: RawFlag,
    evaluators: &Map<String, Value>,
    set_metadata: &Map<String, Value>,
) -> Result<Flag, String> {
    if let Some(name) = &raw.default_variant
        && !raw.variants.contains_key(name)
    {
        return Err(format!(
            "defaultVariant {name:?} is not one of its variants"
        ));
    }
    let mut metadata = set_metadata.clone();
    if let Some(own) = raw.metadata {
        metadata.extend(scalar_map(own)?);
    }
    let targeting = match raw.targeting {
        None | Some(Value::Null) => Targeting::None,
        // flagd writes "no targeting" as an empty object.
        Some(Value::Object(map)) if map.is_empty() => Targeting::None,
        Some(rule @ Value::Object(_)) => {
            let mut expander = Expander {
                evaluators,
                budget: MAX_RULE_NODES,
            };
            match expander.expand(&rule, 0) {
                Ok(rule) => match logic::compile(&rule) {
                    Ok(expr) => Targeting::Rule(expr),
                    Err(reason) => Targeting::Invalid(reason),
                },
                Err(RefError::Missing(name)) => {
                    Targeting::Invalid(format!("$ref to unknown evaluator {name:?}"))
                }
                Err(RefError::TooLarge) => {
                    return Err(format!(
                        "targeting exceeds {MAX_RULE_NODES} nodes or depth {MAX_RULE_DEPTH} after $ref substitution"
                    ));
                }
            }
        }
        Some(_) => return Err("targeting must be a JSON object".to_owned()),
    };
    Ok(Flag {
        enabled: matches!(raw.state, RawState::Enabled),
        variants: raw.variants,
        default_variant: raw.default_variant,
        targeting,
        metadata,
    })
}

/// flagd metadata values are strings, numbers or booleans.
fn scalar_map(value: Value) -> Result<Map<String, Value>, String> {
    let Value::Object(map) = value else {
        return Err("metadata must be a JSON object".to_owned());
    };
    match map
        .iter()
        .find(|(_, v)| !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)))
    {
        Some((key, _)) => Err(format!(
            "metadata {key:?} must be a string, number or boolean"
        )),
        None => Ok(map),
    }
}

enum RefError {
    Missing(String),
    TooLarge,
}

/// Substitutes `{"$ref": name}` with the named evaluator, recursively.
/// Cycles are ruled out beforehand by [`check_ref_cycles`].
struct Expander<'a> {
    evaluators: &'a Map<String, Value>,
    budget: usize,
}

impl Expander<'_> {
    fn expand(&mut self, value: &Value, depth: usize) -> Result<Value, RefError> {
        if depth > MAX_RULE_DEPTH {
            return Err(RefError::TooLarge);
        }
        self.budget = self.budget.checked_sub(1).ok_or(RefError::TooLarge)?;
        match value {
            Value::Object(map) => {
                if let Some(target) = ref_target(map) {
                    let Value::String(name) = target else {
                        return Err(RefError::Missing(target.to_string()));
                    };
                    let evaluator = self
                        .evaluators
                        .get(name)
                        .ok_or_else(|| RefError::Missing(name.clone()))?;
                    return self.expand(evaluator, depth + 1);
                }
                let mut out = Map::new();
                for (key, item) in map {
                    out.insert(key.clone(), self.expand(item, depth + 1)?);
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => items
                .iter()
                .map(|item| self.expand(item, depth + 1))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }
}

/// The target of a `{"$ref": ...}` object, if `map` is one.
fn ref_target(map: &Map<String, Value>) -> Option<&Value> {
    if map.len() == 1 {
        map.get("$ref")
    } else {
        None
    }
}

/// Every `$ref` name used anywhere inside `value`.
fn collect_refs<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(name)) = ref_target(map) {
                out.push(name);
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Refuses evaluators that refer to themselves through `$ref`, which could
/// never be substituted. Unknown names are not an error here: flagd only
/// fails the flags that use them.
fn check_ref_cycles(evaluators: &Map<String, Value>) -> Result<(), FlagError> {
    let edges: HashMap<&str, Vec<&str>> = evaluators
        .iter()
        .map(|(name, rule)| {
            let mut refs = Vec::new();
            collect_refs(rule, &mut refs);
            refs.retain(|r| evaluators.contains_key(*r));
            (name.as_str(), refs)
        })
        .collect();
    // Depth-first search; `path` holds the evaluators being expanded.
    let mut done: HashSet<&str> = HashSet::new();
    for start in evaluators.keys() {
        let mut path: Vec<&str> = Vec::new();
        visit(start, &edges, &mut path, &mut done)?;
    }
    Ok(())
}

fn visit<'a>(
    name: &'a str,
    edges: &HashMap<&'a str, Vec<&'a str>>,
    path: &mut Vec<&'a str>,
    done: &mut HashSet<&'a str>,
) -> Result<(), FlagError> {
    if let Some(at) = path.iter().position(|n| *n == name) {
        let mut cycle: Vec<String> = path[at..].iter().map(|n| (*n).to_owned()).collect();
        cycle.push(name.to_owned());
        return Err(FlagError::RefCycle { path: cycle });
    }
    if done.contains(&name) {
        return Ok(());
    }
    path.push(name);
    for next in edges.get(name).map(Vec::as_slice).unwrap_or_default() {
        visit(next, edges, path, done)?;
    }
    path.pop();
    done.insert(name);
    Ok(())
}
