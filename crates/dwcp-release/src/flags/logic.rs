//! JSONLogic: targeting rules compiled once at load time, evaluated per call.
//!
//! Compiling first means an unknown operator is found when the flag file is
//! read, not when some user first hits the rule. Evaluation is infallible:
//! following JSONLogic and flagd, an operator given arguments it cannot use
//! yields `null`, which the flag evaluator reads as "no match".

use serde_json::Value;

use super::coerce::{from_number, less, loose_eq, strict_eq, to_js_string, to_number, truthy};
use super::{FractionalVersion, fractional, semver};

/// A compiled rule.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    /// A value that evaluates to itself.
    Literal(Value),
    /// An array literal: JSONLogic evaluates each element.
    Array(Vec<Expr>),
    /// An operator applied to its (unevaluated) arguments.
    Op(Op, Vec<Expr>),
}

/// The operators flagd supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Var,
    Missing,
    MissingSome,
    If,
    Eq,
    StrictEq,
    Ne,
    StrictNe,
    Lt,
    Le,
    Gt,
    Ge,
    Not,
    NotNot,
    And,
    Or,
    In,
    Cat,
    Substr,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Min,
    Max,
    Merge,
    StartsWith,
    EndsWith,
    SemVer,
    Fractional,
}

impl Op {
    fn from_name(name: &str) -> Option<Op> {
        Some(match name {
            "var" => Op::Var,
            "missing" => Op::Missing,
            "missing_some" => Op::MissingSome,
            "if" | "?:" => Op::If,
            "==" => Op::Eq,
            "===" => Op::StrictEq,
            "!=" => Op::Ne,
            "!==" => Op::StrictNe,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "!" => Op::Not,
            "!!" => Op::NotNot,
            "and" => Op::And,
            "or" => Op::Or,
            "in" => Op::In,
            "cat" => Op::Cat,
            "substr" => Op::Substr,
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "min" => Op::Min,
            "max" => Op::Max,
            "merge" => Op::Merge,
            "starts_with" => Op::StartsWith,
            "ends_with" => Op::EndsWith,
            "sem_ver" => Op::SemVer,
            "fractional" => Op::Fractional,
            _ => return None,
        })
    }
}

/// Compiles a JSONLogic rule; the error names the unknown operator.
pub(crate) fn compile(rule: &Value) -> Result<Expr, String> {
    match rule {
        // A one-key object is an operation; JSONLogic treats any other
        // object as plain data.
        Value::Object(map) if map.len() == 1 => {
            let Some((name, args)) = map.iter().next() else {
                return Ok(Expr::Literal(rule.clone()));
            };
            let op = Op::from_name(name).ok_or_else(|| format!("unknown operator {name:?}"))?;
            let args = match args {
                Value::Array(items) => items.iter().map(compile).collect::<Result<_, _>>()?,
                // `{"var": "x"}` is shorthand for `{"var": ["x"]}`.
                single => vec![compile(single)?],
            };
            Ok(Expr::Op(op, args))
        }
        Value::Array(items) => Ok(Expr::Array(
            items.iter().map(compile).collect::<Result<_, _>>()?,
        )),
        other => Ok(Expr::Literal(other.clone())),
    }
}

/// What a rule is evaluated against.
pub(crate) struct Scope<'a> {
    /// The enriched evaluation context (with `$flagd` and `targetingKey`).
    pub(crate) data: &'a Value,
    /// Which `fractional` bucketing to use.
    pub(crate) fractional: FractionalVersion,
}

impl Scope<'_> {
    /// Evaluates `expr` to a value.
    pub(crate) fn eval(&self, expr: &Expr) -> Value {
        match expr {
            Expr::Literal(value) => value.clone(),
            Expr::Array(items) => Value::Array(items.iter().map(|e| self.eval(e)).collect()),
            Expr::Op(op, args) => self.apply(*op, args),
        }
    }

    fn arg(&self, args: &[Expr], index: usize) -> Value {
        args.get(index).map_or(Value::Null, |e| self.eval(e))
    }

    fn all(&self, args: &[Expr]) -> Vec<Value> {
        args.iter().map(|e| self.eval(e)).collect()
    }

    fn apply(&self, op: Op, args: &[Expr]) -> Value {
        match op {
            Op::Var => {
                let path = self.arg(args, 0);
                lookup(self.data, &path)
                    .cloned()
                    .unwrap_or_else(|| self.arg(args, 1))
            }
            Op::Missing => Value::Array(self.missing(self.all(args))),
            Op::MissingSome => {
                let need = to_number(&self.arg(args, 0)).unwrap_or(0.0);
                let keys = match self.arg(args, 1) {
                    Value::Array(keys) => keys,
                    _ => Vec::new(),
                };
                let total = keys.len();
                let missing = self.missing(keys);
                let present = (total - missing.len()) as f64;
                Value::Array(if present >= need { Vec::new() } else { missing })
            }
            Op::If => self.if_chain(args),
            Op::Eq => Value::Bool(loose_eq(&self.arg(args, 0), &self.arg(args, 1))),
            Op::Ne => Value::Bool(!loose_eq(&self.arg(args, 0), &self.arg(args, 1))),
            Op::StrictEq => Value::Bool(strict_eq(&self.arg(args, 0), &self.arg(args, 1))),
            Op::StrictNe => Value::Bool(!strict_eq(&self.arg(args, 0), &self.arg(args, 1))),
            Op::Lt | Op::Le => {
                let or_equal = op == Op::Le;
                let (a, b) = (self.arg(args, 0), self.arg(args, 1));
                let holds = less(&a, &b, or_equal);
                // The three-argument form asks whether b lies between a and c.
                if args.len() >= 3 {
                    Value::Bool(holds && less(&b, &self.arg(args, 2), or_equal))
                } else {
                    Value::Bool(holds)
                }
            }
            Op::Gt => Value::Bool(less(&self.arg(args, 1), &self.arg(args, 0), false)),
            Op::Ge => Value::Bool(less(&self.arg(args, 1), &self.arg(args, 0), true)),
            Op::Not => Value::Bool(!truthy(&self.arg(args, 0))),
            Op::NotNot => Value::Bool(truthy(&self.arg(args, 0))),
            Op::And | Op::Or => {
                // Short-circuits and returns the deciding operand, not a bool.
                let mut last = Value::Null;
                for expr in args {
                    last = self.eval(expr);
                    if truthy(&last) == (op == Op::Or) {
                        break;
                    }
                }
                last
            }
            Op::In => {
                let needle = self.arg(args, 0);
                Value::Bool(match self.arg(args, 1) {
                    Value::String(haystack) => haystack.contains(&to_js_string(&needle)),
                    Value::Array(items) => items.iter().any(|item| strict_eq(item, &needle)),
                    _ => false,
                })
            }
            Op::Cat => Value::String(self.all(args).iter().map(to_js_string).collect()),
            Op::Substr => substr(&self.all(args)),
            Op::Add => self.fold(args, 0.0, |a, b| a + b),
            Op::Mul => self.fold(args, 1.0, |a, b| a * b),
            Op::Sub => match args.len() {
                1 => self.unary(args, |a| -a),
                _ => self.binary(args, |a, b| a - b),
            },
            Op::Div => self.binary(args, |a, b| a / b),
            Op::Mod => self.binary(args, |a, b| a % b),
            Op::Min | Op::Max => {
                let numbers: Option<Vec<f64>> = self.all(args).iter().map(to_number).collect();
                let extreme = match numbers {
                    Some(numbers) if op == Op::Min => numbers.into_iter().reduce(f64::min),
                    Some(numbers) => numbers.into_iter().reduce(f64::max),
                    None => None,
                };
                extreme.map_or(Value::Null, from_number)
            }
            Op::Merge => {
                let mut merged = Vec::new();
                for value in self.all(args) {
                    match value {
                        Value::Array(items) => merged.extend(items),
                        other => merged.push(other),
                    }
                }
                Value::Array(merged)
            }
            Op::StartsWith | Op::EndsWith => {
                // flagd: anything but exactly two strings is an error, and
                // errors are null so that the default variant is chosen.
                match self.all(args).as_slice() {
                    [Value::String(text), Value::String(affix)] => {
                        Value::Bool(if op == Op::StartsWith {
                            text.starts_with(affix.as_str())
                        } else {
                            text.ends_with(affix.as_str())
                        })
                    }
                    _ => Value::Null,
                }
            }
            Op::SemVer => sem_ver(&self.all(args)),
            Op::Fractional => fractional::evaluate(&self.all(args), self.data, self.fractional),
        }
    }

    fn if_chain(&self, args: &[Expr]) -> Value {
        // [c1, v1, c2, v2, ..., else]: the first truthy condition wins.
        let mut pairs = args.chunks_exact(2);
        for pair in &mut pairs {
            if let [condition, then] = pair
                && truthy(&self.eval(condition))
            {
                return self.eval(then);
            }
        }
        pairs
            .remainder()
            .first()
            .map_or(Value::Null, |e| self.eval(e))
    }

    fn missing(&self, mut keys: Vec<Value>) -> Vec<Value> {
        // `{"missing": [["a", "b"]]}` and `{"missing": ["a", "b"]}` are the same.
        if let Some(Value::Array(inner)) = keys.first_mut() {
            keys = std::mem::take(inner);
        }
        keys.into_iter()
            .filter(|key| match lookup(self.data, key) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(_) => false,
            })
            .collect()
    }

    fn fold(&self, args: &[Expr], start: f64, f: impl Fn(f64, f64) -> f64) -> Value {
        let mut acc = start;
        for value in self.all(args) {
            match to_number(&value) {
                Some(n) => acc = f(acc, n),
                None => return Value::Null,
            }
        }
        from_number(acc)
    }

    fn unary(&self, args: &[Expr], f: impl Fn(f64) -> f64) -> Value {
        to_number(&self.arg(args, 0)).map_or(Value::Null, |a| from_number(f(a)))
    }

    fn binary(&self, args: &[Expr], f: impl Fn(f64, f64) -> f64) -> Value {
        match (to_number(&self.arg(args, 0)), to_number(&self.arg(args, 1))) {
            (Some(a), Some(b)) => from_number(f(a, b)),
            _ => Value::Null,
        }
    }
}

/// Resolves a `var` path: dotted keys through objects, indices into arrays;
/// `null` or `""` is the whole context.
fn lookup<'v>(data: &'v Value, path: &Value) -> Option<&'v Value> {
    let path = match path {
        Value::Null => return Some(data),
        Value::String(s) if s.is_empty() => return Some(data),
        Value::String(s) => s.clone(),
        Value::Number(_) => to_js_string(path),
        _ => return None,
    };
    path.split('.')
        .try_fold(data, |current, segment| match current {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

/// JavaScript's `substr(start, length)`, by characters; a negative start
/// counts from the end and a negative length drops characters from the end.
fn substr(args: &[Value]) -> Value {
    let chars: Vec<char> = args
        .first()
        .map(to_js_string)
        .unwrap_or_default()
        .chars()
        .collect();
    let len = chars.len() as i64;
    let start = args.get(1).and_then(to_number).map_or(0, |f| f as i64);
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start.min(len)
    };
    // Saturating: the numbers come from rules and contexts and may be huge.
    let end = match args.get(2).and_then(to_number) {
        None => len,
        Some(n) if n < 0.0 => len.saturating_add(n as i64).max(start),
        Some(n) => start.saturating_add(n as i64).min(len),
    };
    // Both bounds are clamped to 0..=len above, so the casts are in range.
    Value::String(
        chars[start as usize..end.max(start) as usize]
            .iter()
            .collect(),
    )
}

/// `sem_ver`: `[version, operator, version]`; numbers count as versions
/// (`1.2` is `1.2.0`); anything malformed yields null.
fn sem_ver(args: &[Value]) -> Value {
    let [left, Value::String(op), right] = args else {
        return Value::Null;
    };
    let parse = |value: &Value| match value {
        Value::String(s) => semver::Version::parse(s),
        Value::Number(_) => semver::Version::parse(&to_js_string(value)),
        _ => None,
    };
    match (parse(left), parse(right)) {
        (Some(l), Some(r)) => semver::compare(&l, op, &r).map_or(Value::Null, Value::Bool),
        _ => Value::Null,
    }
}

/// Compiles and evaluates `rule` against `data`; for tests.
#[cfg(test)]
pub(crate) fn run(rule: Value, data: Value) -> Value {
    let expr = compile(&rule).expect("rule compiles");
    Scope {
        data: &data,
        fractional: FractionalVersion::V2,
    }
    .eval(&expr)
}

#[cfg(test)]
mod tests {
    use super::{compile, run};
    use serde_json::json;

    #[test]
    fn var_paths_and_defaults() {
        let data = json!({"a": {"b": [10, 20]}, "n": null});
        assert_eq!(run(json!({"var": "a.b.1"}), data.clone()), json!(20));
        assert_eq!(run(json!({"var": ["x.y", 7]}), data.clone()), json!(7));
        assert_eq!(run(json!({"var": "n"}), data.clone()), json!(null));
        assert_eq!(run(json!({"var": ""}), json!(3)), json!(3));
    }

    #[test]
    fn logic_and_comparison() {
        assert_eq!(
            run(json!({"if": [false, 1, null, 2, 3]}), json!({})),
            json!(3)
        );
        assert_eq!(run(json!({"if": [false, 1]}), json!({})), json!(null));
        assert_eq!(run(json!({"and": [1, "", 2]}), json!({})), json!(""));
        assert_eq!(run(json!({"or": [0, [], "x"]}), json!({})), json!("x"));
        assert_eq!(run(json!({"<": [1, 2, 3]}), json!({})), json!(true));
        assert_eq!(run(json!({"<=": [1, 1, 0]}), json!({})), json!(false));
        assert_eq!(run(json!({">": ["b", "a"]}), json!({})), json!(true));
        assert_eq!(run(json!({"!": [[]]}), json!({})), json!(true));
    }

    #[test]
    fn strings_arrays_arithmetic() {
        assert_eq!(
            run(json!({"in": ["Spring", "Springfield"]}), json!({})),
            json!(true)
        );
        assert_eq!(run(json!({"in": [2, [1, 2]]}), json!({})), json!(true));
        assert_eq!(
            run(json!({"cat": ["a", 1, null, 1.5]}), json!({})),
            json!("a1null1.5")
        );
        assert_eq!(
            run(json!({"substr": ["jsonlogic", -5]}), json!({})),
            json!("logic")
        );
        assert_eq!(
            run(json!({"substr": ["jsonlogic", 1, -5]}), json!({})),
            json!("son")
        );
        assert_eq!(
            run(json!({"substr": ["abc", -1e300, 1e300]}), json!({})),
            json!("abc")
        );
        assert_eq!(
            run(json!({"substr": ["abc", 1e300, -1e300]}), json!({})),
            json!("")
        );
        assert_eq!(run(json!({"+": ["1", 2]}), json!({})), json!(3));
        assert_eq!(run(json!({"-": [5]}), json!({})), json!(-5));
        assert_eq!(run(json!({"/": [1, 0]}), json!({})), json!(null));
        assert_eq!(run(json!({"%": [7, 4]}), json!({})), json!(3));
        assert_eq!(run(json!({"max": [1, 3, 2]}), json!({})), json!(3));
        assert_eq!(run(json!({"min": []}), json!({})), json!(null));
        assert_eq!(
            run(json!({"merge": [[1], 2, [[3]]]}), json!({})),
            json!([1, 2, [3]])
        );
    }

    #[test]
    fn missing_keys() {
        let data = json!({"a": 1, "b": ""});
        assert_eq!(
            run(json!({"missing": ["a", "b", "c"]}), data.clone()),
            json!(["b", "c"])
        );
        assert_eq!(
            run(json!({"missing_some": [1, ["a", "c"]]}), data.clone()),
            json!([])
        );
        assert_eq!(
            run(json!({"missing_some": [2, ["a", "c"]]}), data),
            json!(["c"])
        );
    }

    #[test]
    fn unknown_operator_is_a_compile_error() {
        let err = compile(&json!({"if": [{"invalid": [1]}, 1, 2]})).expect_err("must fail");
        assert!(err.contains("invalid"), "{err}");
    }

    #[test]
    fn sem_ver_rejects_bad_input_with_null() {
        assert_eq!(
            run(json!({"sem_ver": ["1.0.0", "="]}), json!({})),
            json!(null)
        );
        assert_eq!(
            run(json!({"sem_ver": ["x", "=", "1.0.0"]}), json!({})),
            json!(null)
        );
        assert_eq!(
            run(json!({"sem_ver": [1.2, ">", "1.1"]}), json!({})),
            json!(true)
        );
    }
}
