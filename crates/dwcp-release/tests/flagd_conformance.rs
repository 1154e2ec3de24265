//! flagd's own evaluator scenarios (open-feature/flagd-testbed), run against
//! `dwcp_release::flags` through a small Gherkin runner.
//!
//! The vectors live outside the repository (`DWCP_VECTORS_DIR`, default
//! `../shared/vectors` beside the workspace) and are read in place. Every
//! scenario and every Examples row found is counted, and the count of runs
//! plus explicit skips must equal an independent count of the file, so a
//! parser slip cannot silently drop cases.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use dwcp_release::flags::{EvalOptions, FlagSet, FractionalVersion, Resolution, ValueType};
use serde_json::{Map, Value};

/// The time the scenarios run at (2033-05-18), so `$flagd.timestamp` rules
/// are deterministic.
const NOW: u64 = 2_000_000_000;

fn vectors_dir() -> PathBuf {
    std::env::var_os("DWCP_VECTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/vectors"
            ))
        })
        .join("flagd")
}

// ---------------------------------------------------------------- Gherkin --

#[derive(Debug, Clone)]
struct Step {
    text: String,
    table: Vec<Vec<String>>,
}

#[derive(Debug)]
struct Examples {
    tags: Vec<String>,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

#[derive(Debug)]
struct Scenario {
    name: String,
    tags: Vec<String>,
    outline: bool,
    steps: Vec<Step>,
    examples: Vec<Examples>,
}

#[derive(Debug, Default)]
struct Feature {
    tags: Vec<String>,
    background: Vec<Step>,
    scenarios: Vec<Scenario>,
}

/// Where table rows and steps currently go.
enum Section {
    None,
    Background,
    Scenario,
    Examples,
}

/// Splits `| a | b\|c |` into cells, undoing Gherkin's cell escapes.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('|') => cell.push('|'),
                Some('n') => cell.push('\n'),
                Some('\\') => cell.push('\\'),
                Some(other) => {
                    cell.push('\\');
                    cell.push(other);
                }
                None => cell.push('\\'),
            },
            '|' => out.push(std::mem::take(&mut cell).trim().to_owned()),
            c => cell.push(c),
        }
    }
    out
}

fn parse_feature(text: &str) -> Feature {
    let mut feature = Feature::default();
    let mut pending_tags: Vec<String> = Vec::new();
    let mut section = Section::None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            pending_tags.extend(line.split_whitespace().map(str::to_owned));
            continue;
        }
        if line.starts_with("Feature:") {
            feature.tags = std::mem::take(&mut pending_tags);
        } else if line.starts_with("Background:") {
            section = Section::Background;
        } else if let Some(rest) = [
            "Scenario Outline:",
            "Scenario Template:",
            "Scenario:",
            "Example:",
        ]
        .iter()
        .find_map(|k| {
            line.strip_prefix(k)
                .map(|rest| (rest, *k != "Scenario:" && *k != "Example:"))
        }) {
            feature.scenarios.push(Scenario {
                name: rest.0.trim().to_owned(),
                tags: std::mem::take(&mut pending_tags),
                outline: rest.1,
                steps: Vec::new(),
                examples: Vec::new(),
            });
            section = Section::Scenario;
        } else if line.starts_with("Examples:") || line.starts_with("Scenarios:") {
            let scenario = feature
                .scenarios
                .last_mut()
                .expect("Examples inside a scenario");
            scenario.examples.push(Examples {
                tags: std::mem::take(&mut pending_tags),
                header: Vec::new(),
                rows: Vec::new(),
            });
            section = Section::Examples;
        } else if line.starts_with('|') {
            let row = cells(line);
            match section {
                Section::Examples => {
                    let scenario = feature.scenarios.last_mut().expect("scenario");
                    let examples = scenario.examples.last_mut().expect("examples");
                    if examples.header.is_empty() {
                        examples.header = row;
                    } else {
                        examples.rows.push(row);
                    }
                }
                Section::Background => feature
                    .background
                    .last_mut()
                    .expect("step before table")
                    .table
                    .push(row),
                Section::Scenario => {
                    let scenario = feature.scenarios.last_mut().expect("scenario");
                    scenario
                        .steps
                        .last_mut()
                        .expect("step before table")
                        .table
                        .push(row);
                }
                Section::None => panic!("table outside a scenario: {line}"),
            }
        } else if let Some(text) = ["Given ", "When ", "Then ", "And ", "But ", "* "]
            .iter()
            .find_map(|k| line.strip_prefix(k))
        {
            let step = Step {
                text: text.to_owned(),
                table: Vec::new(),
            };
            match section {
                Section::Background => feature.background.push(step),
                Section::Scenario => feature
                    .scenarios
                    .last_mut()
                    .expect("scenario")
                    .steps
                    .push(step),
                _ => panic!("step outside a scenario: {line}"),
            }
        } else {
            panic!("unrecognised Gherkin line: {line}");
        }
    }
    feature
}

/// Counts runs without the parser: one per `Scenario:` line, one per
/// non-header row under each `Examples:` line.
fn independent_count(text: &str) -> usize {
    let mut count = 0;
    let mut in_examples = false;
    let mut header_seen = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("Scenario:") {
            count += 1;
            in_examples = false;
        } else if line.starts_with("Examples:") {
            in_examples = true;
            header_seen = false;
        } else if line.starts_with('|') && in_examples {
            if header_seen {
                count += 1;
            } else {
                header_seen = true;
            }
        } else if !line.is_empty() && !line.starts_with('#') {
            in_examples = false;
        }
    }
    count
}

// ----------------------------------------------------------------- Steps --

/// The typed flag an OpenFeature client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagType {
    Boolean,
    String,
    Integer,
    Float,
    Object,
}

impl FlagType {
    fn parse(name: &str) -> FlagType {
        match name {
            "Boolean" => FlagType::Boolean,
            "String" => FlagType::String,
            "Integer" => FlagType::Integer,
            "Float" => FlagType::Float,
            "Object" => FlagType::Object,
            other => panic!("unknown flag type {other:?}"),
        }
    }

    /// Reads a Gherkin cell as a value of this type.
    fn value(self, text: &str) -> Value {
        match self {
            FlagType::String => Value::String(text.to_owned()),
            FlagType::Boolean => {
                Value::Bool(text.parse().unwrap_or_else(|_| panic!("boolean {text:?}")))
            }
            // A Float is a double even when written "1", as in a typed SDK.
            FlagType::Float => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(|| panic!("float {text:?}")),
            FlagType::Integer | FlagType::Object => {
                // Object cells escape their quotes (`{\"a\": 1}`).
                serde_json::from_str(&text.replace("\\\"", "\""))
                    .unwrap_or_else(|e| panic!("{self:?} {text:?}: {e}"))
            }
        }
    }

    fn value_type(self) -> ValueType {
        match self {
            FlagType::Boolean => ValueType::Boolean,
            FlagType::String => ValueType::String,
            FlagType::Integer => ValueType::Integer,
            FlagType::Float => ValueType::Float,
            FlagType::Object => ValueType::Object,
        }
    }

    fn same(self, a: &Value, b: &Value) -> bool {
        match self {
            FlagType::Float | FlagType::Integer => a.as_f64().is_some() && a.as_f64() == b.as_f64(),
            _ => a == b,
        }
    }
}

/// What the typed client call returned (OpenFeature's evaluation details).
#[derive(Debug)]
struct Details {
    value: Value,
    reason: String,
    error: Option<String>,
    metadata: Map<String, Value>,
}

/// The OpenFeature SDK's part: check the type asked for, and fall back to
/// the caller's default when there is no value.
fn typed(resolution: Resolution, ty: FlagType, fallback: Value) -> Details {
    let resolution = resolution.expect_type(ty.value_type());
    Details {
        value: resolution.value.unwrap_or(fallback),
        reason: resolution.reason.as_str().to_owned(),
        error: resolution.error.map(|e| e.as_str().to_owned()),
        metadata: resolution.metadata,
    }
}

struct World<'a> {
    set: &'a FlagSet,
    options: EvalOptions,
    flag: Option<(FlagType, String, Value)>,
    context: Map<String, Value>,
    details: Option<Details>,
}

/// The text between the quotes of each `"..."` in a step; `\"` inside a
/// value is kept (object values escape their quotes).
fn quoted(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, current.as_mut()) {
            ('"', None) => current = Some(String::new()),
            ('"', Some(_)) => out.extend(current.take()),
            ('\\', Some(value)) if chars.peek() == Some(&'"') => {
                value.push('\\');
                value.extend(chars.next());
            }
            (c, Some(value)) => value.push(c),
            (_, None) => {}
        }
    }
    out
}

impl World<'_> {
    fn details(&self) -> &Details {
        self.details.as_ref().expect("the flag was evaluated first")
    }

    fn flag_type(&self) -> FlagType {
        self.flag.as_ref().expect("a flag was chosen first").0
    }

    fn step(&mut self, step: &Step) -> Result<(), String> {
        let text = step.text.as_str();
        let owned = quoted(text);
        let q: Vec<&str> = owned.iter().map(String::as_str).collect();
        if text == "an evaluator"
            || text == "a stable flagd provider"
            || text.starts_with("an option \"cache\"")
        {
            // The in-process evaluator is stateless, so there is nothing to
            // start and no cache to configure.
            return Ok(());
        }
        if let Some(rest) = text
            .strip_prefix("a ")
            .filter(|r| r.contains("-flag with key "))
        {
            let ty = FlagType::parse(rest.split('-').next().unwrap_or_default());
            self.flag = Some((ty, q[0].to_owned(), ty.value(q[1])));
            return Ok(());
        }
        if text.starts_with("a context containing a key ") {
            let value = match q[1] {
                "String" => Value::String(q[2].to_owned()),
                other => FlagType::parse(other).value(q[2]),
            };
            self.context.insert(q[0].to_owned(), value);
            return Ok(());
        }
        if text.starts_with("a context containing a nested property") {
            let outer = self
                .context
                .entry(q[0].to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(outer) = outer else {
                return Err(format!("{} is not an object", q[0]));
            };
            outer.insert(q[1].to_owned(), Value::String(q[2].to_owned()));
            return Ok(());
        }
        if text.starts_with("a context containing a targeting key") {
            self.context
                .insert("targetingKey".to_owned(), Value::String(q[0].to_owned()));
            return Ok(());
        }
        if text == "the flag was evaluated with details" {
            let (ty, key, fallback) = self.flag.clone().expect("a flag was chosen first");
            let resolution =
                self.set
                    .evaluate(&key, &Value::Object(self.context.clone()), &self.options);
            self.details = Some(typed(resolution, ty, fallback));
            return Ok(());
        }
        if text.starts_with("the resolved details value should be ") {
            let ty = self.flag_type();
            let want = ty.value(q[0]);
            let got = &self.details().value;
            return if ty.same(got, &want) {
                Ok(())
            } else {
                Err(format!("value {got} != expected {want}"))
            };
        }
        if text.starts_with("the reason should be ") {
            let got = &self.details().reason;
            return if got == q[0] {
                Ok(())
            } else {
                Err(format!("reason {got} != expected {}", q[0]))
            };
        }
        if text.starts_with("the error-code should be ") {
            let got = self.details().error.as_deref().unwrap_or("");
            return if got == q[0] {
                Ok(())
            } else {
                Err(format!("error-code {got:?} != expected {:?}", q[0]))
            };
        }
        if text == "the resolved metadata is empty" {
            let got = &self.details().metadata;
            return if got.is_empty() {
                Ok(())
            } else {
                Err(format!("metadata {got:?} is not empty"))
            };
        }
        if text == "the resolved metadata should contain" {
            let metadata = &self.details().metadata;
            for row in step.table.iter().skip(1) {
                let [key, ty, value] = row.as_slice() else {
                    return Err(format!("bad metadata row {row:?}"));
                };
                let ty = FlagType::parse(ty);
                let want = ty.value(value);
                match metadata.get(key.as_str()) {
                    Some(got) if ty.value_type().matches(got) && ty.same(got, &want) => {}
                    got => return Err(format!("metadata {key}: {got:?} != expected {want}")),
                }
            }
            return Ok(());
        }
        Err(format!("no step definition for {text:?}"))
    }
}

// ---------------------------------------------------------------- Runner --

/// Scenarios that do not apply to this evaluator, with the reason printed.
type SkipRule = fn(&BTreeSet<String>) -> Option<&'static str>;

#[derive(Default)]
struct Tally {
    found: usize,
    ran: usize,
    passed: usize,
    skipped: Vec<String>,
    failures: Vec<String>,
}

fn substitute(text: &str, header: &[String], row: &[String]) -> String {
    header
        .iter()
        .zip(row)
        .fold(text.to_owned(), |t, (h, v)| t.replace(&format!("<{h}>"), v))
}

fn run_feature(path: &Path, set: &FlagSet, skip: SkipRule) -> Tally {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let feature = parse_feature(&text);
    let mut tally = Tally::default();
    let mut run = |name: String, tags: BTreeSet<String>, steps: Vec<Step>| {
        tally.found += 1;
        if let Some(reason) = skip(&tags) {
            tally.skipped.push(format!("{name}: {reason}"));
            return;
        }
        tally.ran += 1;
        // @fractional-v1 rows pin flagd's legacy bucketing; all else is v2.
        let fractional = if tags.contains("@fractional-v1") {
            FractionalVersion::V1
        } else {
            FractionalVersion::V2
        };
        let mut world = World {
            set,
            options: EvalOptions {
                fractional,
                now_unix_secs: Some(NOW),
            },
            flag: None,
            context: Map::new(),
            details: None,
        };
        for step in &steps {
            if let Err(why) = world.step(step) {
                tally
                    .failures
                    .push(format!("{name}: step {:?}: {why}", step.text));
                return;
            }
        }
        tally.passed += 1;
    };
    for scenario in &feature.scenarios {
        let tags: BTreeSet<String> = feature.tags.iter().chain(&scenario.tags).cloned().collect();
        let steps: Vec<Step> = feature
            .background
            .iter()
            .chain(&scenario.steps)
            .cloned()
            .collect();
        if !scenario.outline {
            run(scenario.name.clone(), tags, steps);
            continue;
        }
        for examples in &scenario.examples {
            let mut row_tags = tags.clone();
            row_tags.extend(examples.tags.iter().cloned());
            for (i, row) in examples.rows.iter().enumerate() {
                let steps = steps
                    .iter()
                    .map(|s| Step {
                        text: substitute(&s.text, &examples.header, row),
                        table: s
                            .table
                            .iter()
                            .map(|r| {
                                r.iter()
                                    .map(|c| substitute(c, &examples.header, row))
                                    .collect()
                            })
                            .collect(),
                    })
                    .collect();
                run(
                    format!(
                        "{} [{} row {}: {}]",
                        scenario.name,
                        examples.tags.join(" "),
                        i + 1,
                        row.join(" | ")
                    ),
                    row_tags.clone(),
                    steps,
                );
            }
        }
    }
    let independent = independent_count(&text);
    assert_eq!(
        tally.found,
        independent,
        "{}: parsed {} runs, file has {independent}",
        path.display(),
        tally.found
    );
    tally
}

fn load(path: &Path) -> FlagSet {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    FlagSet::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn features_in(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "feature"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no .feature files in {}", dir.display());
    paths
}

fn run_suite(label: &str, dir: &Path, set: &FlagSet, skip: SkipRule) {
    let (mut found, mut ran, mut passed, mut skipped) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for path in features_in(dir) {
        let tally = run_feature(&path, set, skip);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!(
            "{label}/{name}: {} found, {} ran, {} passed, {} skipped",
            tally.found,
            tally.ran,
            tally.passed,
            tally.skipped.len()
        );
        for s in &tally.skipped {
            println!("    SKIPPED {s}");
        }
        for f in &tally.failures {
            println!("    FAILED {f}");
        }
        assert_eq!(tally.ran + tally.skipped.len(), tally.found);
        found += tally.found;
        ran += tally.ran;
        passed += tally.passed;
        skipped += tally.skipped.len();
        failures.extend(tally.failures.into_iter().map(|f| format!("{name}: {f}")));
    }
    println!("{label}: {found} found, {ran} ran, {passed} passed, {skipped} skipped");
    assert!(ran > 0, "{label}: nothing ran");
    assert!(
        failures.is_empty(),
        "{label}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn vectors_or_skip() -> Option<PathBuf> {
    let dir = vectors_dir();
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("SKIPPED: flagd vectors not found at {}", dir.display());
        None
    }
}

/// `evaluator/*.feature` against `evaluator/testkit-flags.json`: all apply.
#[test]
fn flagd_evaluator_scenarios() {
    let Some(dir) = vectors_or_skip() else { return };
    let set = load(&dir.join("evaluator/testkit-flags.json"));
    run_suite("evaluator", &dir.join("evaluator"), &set, |_| None);
}

/// `gherkin/*.feature` are written for flagd providers (`a stable flagd
/// provider` starts the testbed container), but their `@in-process` mode is
/// exactly this evaluator over `flags/*.json`, so they run here in process.
/// The testbed serves those files as one combined flag set: zero-flags.json
/// uses the `is_ballmer` evaluator that only evaluator-refs.json defines.
#[test]
fn flagd_provider_scenarios_in_process() {
    let Some(dir) = vectors_or_skip() else { return };
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("flags"))
        .unwrap_or_else(|e| panic!("flags/: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut combined: Map<String, Value> = Map::new();
    for path in &files {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Each file must load on its own as well as in the combination.
        let _ = load(path);
        let Ok(Value::Object(file)) = serde_json::from_str::<Value>(&text) else {
            panic!("{}", path.display())
        };
        for (section, entries) in file {
            let Value::Object(entries) = entries else {
                continue;
            };
            let Value::Object(target) = combined
                .entry(section)
                .or_insert_with(|| Value::Object(Map::new()))
            else {
                unreachable!("sections are objects")
            };
            for (key, entry) in entries {
                assert!(
                    target.insert(key.clone(), entry).is_none(),
                    "{key} is defined twice in flags/"
                );
            }
        }
    }
    let set = FlagSet::parse(&Value::Object(combined).to_string())
        .unwrap_or_else(|e| panic!("combined flags/: {e}"));
    run_suite("gherkin", &dir.join("gherkin"), &set, |tags| {
        if tags.contains("@fractional-v3") {
            Some(
                "@fractional-v3: flagd's typed-input bucketing is not implemented (only v1 and v2 are)",
            )
        } else if tags.contains("@deprecated") {
            Some("@deprecated: superseded by @no-default-variant, whose expectations contradict it")
        } else {
            None
        }
    });
}
