//! Feature flags in flagd's flag-definition format.
//!
//! [`FlagSet::parse`] reads a flag file (`{"flags": {...}, "$evaluators":
//! {...}, "metadata": {...}}`) and [`FlagSet::evaluate`] resolves one flag
//! for an evaluation context, with the reasons and error codes flagd and
//! OpenFeature report. Typed access (a Boolean flag that resolved to a
//! string is a `TYPE_MISMATCH`) belongs to the caller, which knows the type
//! it asked for.

mod coerce;
mod fractional;
mod logic;
mod murmur3;
mod parse;
mod semver;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

pub use murmur3::murmur3_32;

/// A flag file that could not be loaded; nothing of it is used.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// The text is not JSON, or not shaped like a flag file.
    #[error("flag file, line {line} column {column}: {reason}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What was wrong.
        reason: String,
    },
    /// One flag is inconsistent (e.g. its default variant does not exist).
    #[error("flag {key:?}: {reason}")]
    Flag {
        /// The flag's key.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// The shared `$evaluators` refer to each other in a cycle.
    #[error("$evaluators: $ref cycle {}", .path.join(" -> "))]
    RefCycle {
        /// The evaluator names along the cycle, the first repeated at the end.
        path: Vec<String>,
    },
    /// The flag-set `metadata` is not an object of scalar values.
    #[error("flag-set metadata: {reason}")]
    Metadata {
        /// What was wrong.
        reason: String,
    },
}

/// Which `fractional` bucketing algorithm to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FractionalVersion {
    /// flagd's legacy floating-point bucketing, for rollouts made with it.
    V1,
    /// flagd's exact integer bucketing.
    #[default]
    V2,
}

/// How to evaluate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvalOptions {
    /// The `fractional` algorithm (default [`FractionalVersion::V2`]).
    pub fractional: FractionalVersion,
    /// `$flagd.timestamp` in Unix seconds; `None` reads the system clock.
    pub now_unix_secs: Option<u64>,
}

/// Why a flag resolved the way it did (OpenFeature's reason strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The flag has no targeting; its default variant applies.
    Static,
    /// Targeting chose a variant.
    TargetingMatch,
    /// Targeting chose nothing, or there is no default variant.
    Default,
    /// The flag is disabled; the caller's fallback applies.
    Disabled,
    /// Resolution failed; see the error code.
    Error,
}

/// Why resolution failed (OpenFeature's error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// No flag has this key.
    FlagNotFound,
    /// The flag's targeting rule could not be understood.
    ParseError,
    /// The value does not have the type the caller asked for.
    TypeMismatch,
    /// Anything else, e.g. targeting chose a variant that does not exist.
    General,
}

impl Reason {
    /// The OpenFeature string, e.g. `TARGETING_MATCH`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Default => "DEFAULT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

impl ErrorCode {
    /// The OpenFeature string, e.g. `FLAG_NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::General => "GENERAL",
        }
    }
}

/// The outcome of evaluating one flag.
///
/// `value` is `None` when the caller's own fallback applies: the flag is
/// disabled, has no default variant, or resolution failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolution {
    /// The chosen variant's value.
    pub value: Option<Value>,
    /// The chosen variant's name.
    pub variant: Option<String>,
    /// Why this outcome.
    pub reason: Reason,
    /// Set exactly when `reason` is [`Reason::Error`].
    pub error: Option<ErrorCode>,
    /// The flag-set metadata overlaid with the flag's own.
    pub metadata: Map<String, Value>,
}

/// The value type a caller asks for (OpenFeature's typed evaluations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `true` or `false`.
    Boolean,
    /// A JSON string.
    String,
    /// A JSON number without a fraction or exponent.
    Integer,
    /// Any JSON number; integers are valid floats.
    Float,
    /// A JSON object or array (OpenFeature's structure).
    Object,
}

impl ValueType {
    /// Whether `value` has this type.
    pub fn matches(self, value: &Value) -> bool {
        match self {
            ValueType::Boolean => value.is_boolean(),
            ValueType::String => value.is_string(),
            ValueType::Integer => value.is_i64() || value.is_u64(),
            ValueType::Float => value.is_number(),
            ValueType::Object => value.is_object() || value.is_array(),
        }
    }
}

impl Resolution {
    /// Checks the value against the type the caller asked for: a value of
    /// another type becomes TYPE_MISMATCH (reason ERROR, no value), so the
    /// caller's fallback applies.
    pub fn expect_type(self, expected: ValueType) -> Resolution {
        match &self.value {
            Some(value) if !expected.matches(value) => {
                Resolution::failed(ErrorCode::TypeMismatch, self.metadata)
            }
            _ => self,
        }
    }

    fn failed(code: ErrorCode, metadata: Map<String, Value>) -> Resolution {
        Resolution {
            value: None,
            variant: None,
            reason: Reason::Error,
            error: Some(code),
            metadata,
        }
    }
}

/// A loaded flag file.
#[derive(Debug, Clone)]
pub struct FlagSet {
    flags: BTreeMap<String, Flag>,
}

#[derive(Debug, Clone)]
struct Flag {
    enabled: bool,
    variants: Map<String, Value>,
    default_variant: Option<String>,
    targeting: Targeting,
    metadata: Map<String, Value>,
}

#[derive(Debug, Clone)]
enum Targeting {
    None,
    Rule(logic::Expr),
    /// flagd loads a flag whose rule it cannot understand (an unknown
    /// operator, a `$ref` to no evaluator) and reports PARSE_ERROR when it
    /// is evaluated, so the other flags in the file stay usable.
    Invalid(String),
}

impl FlagSet {
    /// Parses a flagd flag-definition file, all or nothing.
    pub fn parse(json: &str) -> Result<FlagSet, FlagError> {
        parse::parse(json)
    }

    /// Whether a flag with this key exists.
    pub fn contains(&self, key: &str) -> bool {
        self.flags.contains_key(key)
    }

    /// The flag keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.flags.keys().map(String::as_str)
    }

    /// Flags whose targeting cannot be evaluated, with the reason; these
    /// resolve with PARSE_ERROR. Callers that want a strict load can refuse
    /// a set where this is not empty.
    pub fn targeting_errors(&self) -> impl Iterator<Item = (&str, &str)> {
        self.flags
            .iter()
            .filter_map(|(key, flag)| match &flag.targeting {
                Targeting::Invalid(reason) => Some((key.as_str(), reason.as_str())),
                _ => None,
            })
    }

    /// Resolves flag `key` for `context` (a JSON object, or null for none).
    pub fn evaluate(&self, key: &str, context: &Value, options: &EvalOptions) -> Resolution {
        let Some(flag) = self.flags.get(key) else {
            return Resolution::failed(ErrorCode::FlagNotFound, Map::new());
        };
        let metadata = flag.metadata.clone();
        if !flag.enabled {
            return Resolution {
                value: None,
                variant: None,
                reason: Reason::Disabled,
                error: None,
                metadata,
            };
        }
        let rule = match &flag.targeting {
            Targeting::None => return flag.default(Reason::Static, metadata),
            Targeting::Invalid(_) => return Resolution::failed(ErrorCode::ParseError, metadata),
            Targeting::Rule(rule) => rule,
        };
        let Some(data) = enrich(context, key, options) else {
            return Resolution::failed(ErrorCode::General, metadata);
        };
        let scope = logic::Scope {
            data: &data,
            fractional: options.fractional,
        };
        let variant = match scope.eval(rule) {
            Value::Null => return flag.default(Reason::Default, metadata),
            Value::String(name) => name,
            // flagd reads a rule's result as a variant name, so `true`
            // selects the variant called "true".
            other @ (Value::Bool(_) | Value::Number(_)) => other.to_string(),
            Value::Array(_) | Value::Object(_) => {
                return Resolution::failed(ErrorCode::General, metadata);
            }
        };
        match flag.variants.get(&variant) {
            Some(value) => Resolution {
                value: Some(value.clone()),
                variant: Some(variant),
                reason: Reason::TargetingMatch,
                error: None,
                metadata,
            },
            None => Resolution::failed(ErrorCode::General, metadata),
        }
    }
}

impl Flag {
    /// The default variant with `reason`, or the caller's fallback (DEFAULT)
    /// when the flag has none.
    fn default(&self, reason: Reason, metadata: Map<String, Value>) -> Resolution {
        let chosen = self
            .default_variant
            .as_ref()
            .and_then(|name| Some((name, self.variants.get(name)?)));
        match chosen {
            Some((name, value)) => Resolution {
                value: Some(value.clone()),
                variant: Some(name.clone()),
                reason,
                error: None,
                metadata,
            },
            None => Resolution {
                value: None,
                variant: None,
                reason: Reason::Default,
                error: None,
                metadata,
            },
        }
    }
}

/// The context the rule sees: the caller's, plus `$flagd.flagKey` and
/// `$flagd.timestamp`. `None` if the context is not an object.
fn enrich(context: &Value, key: &str, options: &EvalOptions) -> Option<Value> {
    let mut data = match context {
        Value::Null => Map::new(),
        Value::Object(map) => map.clone(),
        _ => return None,
    };
    let now = options.now_unix_secs.unwrap_or_else(|| {
        // A clock before 1970 is a misconfigured host; 0 keeps rules total.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let mut flagd = Map::new();
    flagd.insert("flagKey".to_owned(), Value::from(key));
    flagd.insert("timestamp".to_owned(), Value::from(now));
    // The evaluator's own properties win over a caller-supplied "$flagd".
    data.insert("$flagd".to_owned(), Value::Object(flagd));
    Some(Value::Object(data))
}

#[cfg(test)]
mod tests;
