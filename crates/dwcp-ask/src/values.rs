//! Slot values: from the words the user wrote to the normalized value the
//! spec's `slot_types` describe ("1 GiB" → 1024, "EU West" → "eu-west").

use serde_json::Value;

use crate::spec::SlotType;
use crate::text::{number, number_and_unit, size_unit, time_unit};

/// The words an enum value may be written as, per slot. A value not listed
/// here is still recognized as written.
pub const ENUM_SYNONYMS: &[(&str, &str, &[&str])] = &[
    (
        "metric",
        "requests",
        &[
            "requests",
            "request",
            "request rate",
            "request count",
            "traffic",
            "throughput",
            "rps",
            "requests per second",
        ],
    ),
    (
        "metric",
        "latency",
        &["latency", "latencies", "response time", "response times"],
    ),
    (
        "metric",
        "errors",
        &[
            "errors",
            "error",
            "error rate",
            "error rates",
            "5xx",
            "failures",
        ],
    ),
    (
        "metric",
        "cold_starts",
        &[
            "cold starts",
            "cold start",
            "cold-start",
            "cold-starts",
            "coldstart",
            "coldstarts",
        ],
    ),
    (
        "metric",
        "memory",
        &["memory", "memory usage", "ram", "mem"],
    ),
    (
        "metric",
        "cpu",
        &["cpu", "cpu usage", "cpu time", "processor"],
    ),
    ("strategy", "canary", &["canary", "a canary"]),
    (
        "strategy",
        "blue-green",
        &["blue-green", "blue/green", "blue green", "bluegreen"],
    ),
    (
        "strategy",
        "immediate",
        &["immediate", "immediately", "all at once", "instant"],
    ),
    (
        "provider",
        "aws",
        &["aws", "amazon", "amazon web services", "ec2"],
    ),
    (
        "provider",
        "gcp",
        &[
            "gcp",
            "google cloud",
            "google cloud platform",
            "google",
            "gce",
        ],
    ),
    ("provider", "azure", &["azure", "microsoft azure"]),
    (
        "provider",
        "hetzner",
        &["hetzner", "hetzner cloud", "hcloud"],
    ),
    (
        "provider",
        "digitalocean",
        &["digitalocean", "digital ocean", "droplets"],
    ),
    ("scope", "node", &["node", "node identity", "nodes"]),
    (
        "scope",
        "publisher",
        &["publisher", "publishers", "signing"],
    ),
    ("scope", "root", &["root", "root of trust"]),
    ("scope", "all", &["all", "every", "all the", "everything"]),
    (
        "kind",
        "coldstart",
        &[
            "coldstart",
            "cold start",
            "cold-start",
            "startup",
            "instantiation",
        ],
    ),
    ("kind", "http", &["http", "serving", "http serving"]),
    ("kind", "codec", &["codec", "snapshot codec", "snapshot"]),
    (
        "kind",
        "crypto",
        &["crypto", "cryptography", "signature", "signing"],
    ),
    ("kind", "rollout", &["rollout", "rollouts", "release"]),
    ("kind", "all", &["all", "every", "each"]),
];

/// Words that may come with a value but are not part of it.
const FILLER: &[&str] = &["the", "a", "an", "of", "version", "region", "%", "percent"];

/// The normalized value of slot `slot` of type `kind`, from the words
/// `words` (lowercased) and `raw` (the text as written), or `None` when the
/// words are not a value of that type.
pub fn normalize(slot: &str, kind: &SlotType, words: &[&str], raw: &str) -> Option<Value> {
    match kind {
        SlotType::Name => name(words),
        SlotType::Int => int(words).map(Value::from),
        SlotType::Percent => percent(words).map(Value::from),
        SlotType::SizeMib => size_mib(words).map(Value::from),
        SlotType::DurationS => millis(words, 1_000)
            .map(|ms| (ms + 500) / 1_000)
            .filter(|s| *s > 0)
            .map(Value::from),
        SlotType::CpuMs => millis(words, 1).filter(|ms| *ms > 0).map(Value::from),
        SlotType::Region => region(words),
        SlotType::Version => version(words),
        SlotType::Path => path(raw),
        SlotType::Enum(values) => enumerated(slot, values, words),
    }
}

/// [`normalize`] for a value written on its own (a prompt's answer, another
/// model's slot): its white-space separated words, lowercased.
pub fn normalize_written(slot: &str, kind: &SlotType, written: &str) -> Option<Value> {
    let lower = written.to_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    normalize(slot, kind, &words, written.trim())
}

fn name(words: &[&str]) -> Option<Value> {
    let kept: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !matches!(*w, "the" | "'s"))
        .collect();
    // Names are one word; of several, the one that looks most like a name
    // (with a hyphen or digits), else the last.
    let joined = kept
        .iter()
        .rev()
        .find(|w| w.contains(['-', '_']) || w.bytes().any(|b| b.is_ascii_digit()))
        .or(kept.last())
        .map(|w| w.to_string())
        .unwrap_or_default();
    let clean: String = joined
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_string();
    (!clean.is_empty()).then(|| Value::from(clean))
}

fn int(words: &[&str]) -> Option<u64> {
    match words {
        [w] => number(w),
        [w, ..] => number(w),
        [] => None,
    }
}

fn percent(words: &[&str]) -> Option<u64> {
    let words: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !matches!(*w, "the" | "of" | "a" | "%" | "percent" | "pct"))
        .collect();
    let value = match words.as_slice() {
        ["half"] => 50,
        ["quarter"] => 25,
        ["all"] | ["everyone"] | ["everybody"] => 100,
        ["none"] | ["nobody"] | ["no", "one"] => 0,
        [w] => {
            let digits = w.strip_suffix('%').unwrap_or(w);
            number(digits)?
        }
        _ => return None,
    };
    (value <= 100).then_some(value)
}

fn size_mib(words: &[&str]) -> Option<u64> {
    let (amount, unit) = amount_and_unit(words)?;
    let per = if unit.is_empty() { 1 } else { size_unit(unit)? };
    let mib = amount * per as f64;
    (mib >= 1.0 && mib.fract() == 0.0).then_some(mib as u64)
}

/// A duration in milliseconds; a bare number counts in `bare` ms.
fn millis(words: &[&str], bare: u64) -> Option<u64> {
    let words: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !matches!(*w, "of" | "the" | "last" | "per" | "request"))
        .collect();
    let (amount, unit) = amount_and_unit(&words)?;
    let per = if unit.is_empty() {
        bare
    } else {
        time_unit(unit)?
    };
    let ms = amount * per as f64;
    (ms.fract() == 0.0).then_some(ms as u64)
}

/// "256mb", "256 mb", "an hour", "half a second", "1.5 gib" → (amount, unit).
fn amount_and_unit<'a>(words: &[&'a str]) -> Option<(f64, &'a str)> {
    match words {
        [w] => {
            let (n, unit) = number_and_unit(w).or_else(|| number(w).map(|n| (n as f64, "")))?;
            Some((n, unit))
        }
        ["a" | "an" | "one", unit] => Some((1.0, unit)),
        ["half", "a" | "an", unit] => Some((0.5, unit)),
        [n, unit] => {
            let n = number(n)
                .map(|n| n as f64)
                .or_else(|| n.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0))?;
            Some((n, unit))
        }
        _ => None,
    }
}

fn region(words: &[&str]) -> Option<Value> {
    let kept: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !FILLER.contains(w))
        .collect();
    let joined = kept.join("-");
    let valid = !joined.is_empty()
        && joined
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    valid.then(|| Value::from(joined))
}

fn version(words: &[&str]) -> Option<Value> {
    let kept: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !matches!(*w, "version" | "the"))
        .collect();
    match kept.as_slice() {
        [v] => Some(Value::from(*v)),
        _ => None,
    }
}

fn path(raw: &str) -> Option<Value> {
    let p = raw.trim().trim_end_matches(['.', ',', '!', '?', ';', ':']);
    (!p.is_empty() && !p.contains(char::is_whitespace)).then(|| Value::from(p))
}

fn enumerated(slot: &str, values: &[String], words: &[&str]) -> Option<Value> {
    let text = words
        .iter()
        .copied()
        .filter(|w| !matches!(*w, "the" | "a" | "an"))
        .collect::<Vec<_>>()
        .join(" ");
    let text = text
        .trim_end_matches(" metrics")
        .trim_end_matches(" metric");
    let by_synonym = ENUM_SYNONYMS
        .iter()
        .filter(|(s, _, _)| *s == slot)
        .find(|(_, _, forms)| forms.contains(&text))
        .map(|(_, v, _)| *v);
    let exact = values
        .iter()
        .find(|v| v.as_str() == text || v.replace('_', " ") == text)
        .map(|v| v.as_str());
    by_synonym
        .or(exact)
        .filter(|v| values.iter().any(|x| x == v))
        .map(Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;

    fn norm(slot: &str, text: &str) -> Option<Value> {
        let kind = Spec::builtin().slot_kind(slot).unwrap().clone();
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        normalize(slot, &kind, &words, text)
    }

    #[test]
    fn the_spec_examples_normalize_as_it_says() {
        assert_eq!(norm("app", "Checkout"), Some("checkout".into()));
        assert_eq!(norm("node", "edge-7"), Some("edge-7".into()));
        assert_eq!(norm("replicas", "three"), Some(3.into()));
        assert_eq!(norm("percent", "10%"), Some(10.into()));
        assert_eq!(norm("percent", "10 percent"), Some(10.into()));
        assert_eq!(norm("percent", "ten percent"), Some(10.into()));
        assert_eq!(norm("percent", "half"), Some(50.into()));
        assert_eq!(norm("percent", "everyone"), Some(100.into()));
        assert_eq!(norm("memory_mib", "256MB"), Some(256.into()));
        assert_eq!(norm("memory_mib", "1 GiB"), Some(1024.into()));
        assert_eq!(norm("memory_mib", "2g"), Some(2048.into()));
        assert_eq!(norm("since_s", "30s"), Some(30.into()));
        assert_eq!(norm("since_s", "5 minutes"), Some(300.into()));
        assert_eq!(norm("since_s", "2h"), Some(7200.into()));
        assert_eq!(norm("since_s", "an hour"), Some(3600.into()));
        assert_eq!(norm("cpu_ms", "50ms"), Some(50.into()));
        assert_eq!(norm("cpu_ms", "2 seconds"), Some(2000.into()));
        assert_eq!(norm("region", "EU West"), Some("eu-west".into()));
        assert_eq!(norm("region", "us-east-1"), Some("us-east-1".into()));
        assert_eq!(norm("version", "v2"), Some("v2".into()));
        assert_eq!(norm("version", "version 1.4.0"), Some("1.4.0".into()));
        assert_eq!(
            norm("file", "./build/App.wasm"),
            Some("./build/App.wasm".into())
        );
        assert_eq!(norm("metric", "cold start"), Some("cold_starts".into()));
        assert_eq!(norm("metric", "error rate"), Some("errors".into()));
        assert_eq!(norm("strategy", "blue/green"), Some("blue-green".into()));
        assert_eq!(norm("provider", "Google Cloud"), Some("gcp".into()));
        assert_eq!(norm("kind", "cold start"), Some("coldstart".into()));
    }

    #[test]
    fn words_that_are_not_a_value_give_none() {
        assert_eq!(norm("percent", "150%"), None);
        assert_eq!(norm("percent", "lots"), None);
        assert_eq!(norm("memory_mib", "some memory"), None);
        assert_eq!(norm("since_s", "a while"), None);
        assert_eq!(norm("replicas", "many"), None);
        assert_eq!(norm("strategy", "yolo"), None);
        assert_eq!(norm("version", "the new one"), None);
    }
}
