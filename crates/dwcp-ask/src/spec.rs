//! The intents `dwcp ask` understands, read from the repository's copy of
//! the shared spec (`data/intents.json`).

use std::sync::OnceLock;

use serde::Deserialize;

/// The spec as committed, built into the binary.
const SPEC_JSON: &str = include_str!("../data/intents.json");

/// How a slot's value is written and normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotType {
    /// A tenant, app, flag, experiment, node, key or snapshot name.
    Name,
    /// A whole number (digits or number words up to twenty).
    Int,
    /// A whole percentage 0..=100.
    Percent,
    /// A memory size in MiB.
    SizeMib,
    /// A duration in whole seconds.
    DurationS,
    /// A per-request time budget in whole milliseconds.
    CpuMs,
    /// A region, lowercased, spaces turned into hyphens.
    Region,
    /// A version label as written, lowercased.
    Version,
    /// A file or URL path as written.
    Path,
    /// One of the listed values.
    Enum(Vec<String>),
}

impl SlotType {
    fn parse(text: &str) -> Option<SlotType> {
        Some(match text {
            "name" => SlotType::Name,
            "int" => SlotType::Int,
            "percent" => SlotType::Percent,
            "size_mib" => SlotType::SizeMib,
            "duration_s" => SlotType::DurationS,
            "cpu_ms" => SlotType::CpuMs,
            "region" => SlotType::Region,
            "version" => SlotType::Version,
            "path" => SlotType::Path,
            other => {
                let values = other.strip_prefix("enum:")?;
                SlotType::Enum(values.split('|').map(|v| v.trim().to_string()).collect())
            }
        })
    }
}

/// One slot of an intent.
#[derive(Debug, Clone)]
pub struct SlotSpec {
    /// The slot's name, without the `?` that marks it optional.
    pub name: String,
    /// Its type.
    pub kind: SlotType,
    /// Whether the text must give it.
    pub required: bool,
}

/// One intent: a platform operation.
#[derive(Debug, Clone)]
pub struct IntentSpec {
    /// Its name, e.g. `deploy_app`.
    pub name: String,
    /// Its group, e.g. `apps`.
    pub group: String,
    /// What it does, in a sentence.
    pub summary: String,
    /// Its slots in the spec's order.
    pub slots: Vec<SlotSpec>,
    /// Whether it destroys or interrupts something (asks for confirmation).
    pub destructive: bool,
}

impl IntentSpec {
    /// The slot named `name`.
    pub fn slot(&self, name: &str) -> Option<&SlotSpec> {
        self.slots.iter().find(|s| s.name == name)
    }
}

/// The whole spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The spec's version.
    pub version: u32,
    /// The intents, in the spec's order.
    pub intents: Vec<IntentSpec>,
    /// The rules that settle confusable pairs.
    pub rules: Vec<String>,
}

#[derive(Deserialize)]
struct RawSpec {
    version: u32,
    intents: Vec<RawIntent>,
    #[serde(default)]
    rules: Vec<String>,
}

#[derive(Deserialize)]
struct RawIntent {
    name: String,
    group: String,
    summary: String,
    slots: serde_json::Map<String, serde_json::Value>,
    destructive: bool,
}

/// What is wrong with a spec file.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// It is not the expected JSON.
    #[error("the intent spec is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A slot has a type the engine does not know.
    #[error("intent {intent}: slot {slot} has an unknown type {kind:?}")]
    SlotType {
        /// The intent.
        intent: String,
        /// The slot.
        slot: String,
        /// Its type as written.
        kind: String,
    },
}

impl Spec {
    /// Parses a spec in the shared format.
    pub fn parse(json: &str) -> Result<Spec, SpecError> {
        let raw: RawSpec = serde_json::from_str(json)?;
        let mut intents = Vec::with_capacity(raw.intents.len());
        for intent in raw.intents {
            let mut slots = Vec::new();
            for (name, kind) in &intent.slots {
                let kind_text = kind.as_str().unwrap_or_default();
                let kind = SlotType::parse(kind_text).ok_or_else(|| SpecError::SlotType {
                    intent: intent.name.clone(),
                    slot: name.clone(),
                    kind: kind_text.to_string(),
                })?;
                let (name, required) = match name.strip_suffix('?') {
                    Some(name) => (name.to_string(), false),
                    None => (name.clone(), true),
                };
                slots.push(SlotSpec {
                    name,
                    kind,
                    required,
                });
            }
            intents.push(IntentSpec {
                name: intent.name,
                group: intent.group,
                summary: intent.summary,
                slots,
                destructive: intent.destructive,
            });
        }
        Ok(Spec {
            version: raw.version,
            intents,
            rules: raw.rules,
        })
    }

    /// The spec built into this binary.
    pub fn builtin() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(|| Spec::parse(SPEC_JSON).expect("the committed intent spec parses"))
    }

    /// The intent named `name`.
    pub fn intent(&self, name: &str) -> Option<&IntentSpec> {
        self.intents.iter().find(|i| i.name == name)
    }

    /// The type of slot `slot` wherever it appears (slot names mean the same
    /// in every intent).
    pub fn slot_kind(&self, slot: &str) -> Option<&SlotType> {
        self.intents
            .iter()
            .find_map(|i| i.slot(slot))
            .map(|s| &s.kind)
    }

    /// Every slot name, sorted, without repeats.
    pub fn slot_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .intents
            .iter()
            .flat_map(|i| i.slots.iter().map(|s| s.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_spec_parses_with_every_slot_typed() {
        let spec = Spec::builtin();
        assert_eq!(spec.intents.len(), 58);
        let deploy = spec.intent("deploy_app").unwrap();
        assert!(deploy.slot("app").unwrap().required);
        assert!(!deploy.slot("tenant").unwrap().required);
        assert_eq!(
            spec.slot_kind("strategy"),
            Some(&SlotType::Enum(vec![
                "canary".into(),
                "immediate".into(),
                "blue-green".into()
            ]))
        );
    }

    #[test]
    fn a_slot_of_unknown_type_is_refused() {
        let json = r#"{"version":1,"intents":[{"name":"x","group":"g","summary":"s",
            "slots":{"a":"colour"},"destructive":false}]}"#;
        assert!(matches!(Spec::parse(json), Err(SpecError::SlotType { .. })));
    }
}
