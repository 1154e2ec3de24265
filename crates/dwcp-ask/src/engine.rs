//! From a sentence to an intent with its slots: classify, tag, normalize,
//! then apply the spec's rules for confusable pairs.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::features::sentence_features;
use crate::model::{Model, ModelError};
use crate::spec::Spec;
use crate::tagger::OUTSIDE;
use crate::text::tokenize;
use crate::values::normalize;

/// The model committed with this build.
const BUILTIN_MODEL: &[u8] = include_bytes!("../model/ask.model");

/// The intent of text that is not about the platform.
pub const NONE: &str = "none";

/// What a sentence asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parse {
    /// The intent, or `none`.
    pub intent: String,
    /// Slot values, normalized as the spec says.
    pub slots: Map<String, Value>,
    /// How sure the engine is, 0..1.
    pub confidence: f32,
    /// For `none`: the three closest intents.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<String>,
    /// Required slots the text did not give (to be asked for, not guessed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// The intent engine: a spec and a model trained for it.
pub struct Engine {
    spec: Spec,
    model: Model,
    vocabulary: HashSet<String>,
    /// For each class of the classifier, its label indices in the tagger.
    allowed: Vec<Vec<usize>>,
}

impl Engine {
    /// An engine over `spec` with `model`.
    pub fn new(spec: Spec, model: Model) -> Engine {
        let label = |name: &str| model.tagger.labels.iter().position(|l| l == name);
        let allowed = model
            .classifier
            .classes
            .iter()
            .map(|class| {
                let mut labels = vec![label(OUTSIDE).unwrap_or(0)];
                if let Some(intent) = spec.intent(class) {
                    labels.extend(intent.slots.iter().filter_map(|s| label(&s.name)));
                }
                labels
            })
            .collect();
        let vocabulary = model.vocabulary.iter().cloned().collect();
        Engine {
            spec,
            model,
            vocabulary,
            allowed,
        }
    }

    /// The engine built into this binary (spec and model as committed).
    pub fn builtin() -> Result<&'static Engine, &'static ModelError> {
        static ENGINE: OnceLock<Result<Engine, ModelError>> = OnceLock::new();
        ENGINE
            .get_or_init(|| {
                Model::from_bytes(BUILTIN_MODEL)
                    .map(|model| Engine::new(Spec::builtin().clone(), model))
            })
            .as_ref()
    }

    /// The spec this engine understands.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// What `text` asks for.
    pub fn parse(&self, text: &str) -> Parse {
        let tokens = tokenize(text);
        let classes = &self.model.classifier.classes;
        let probabilities = self
            .model
            .classifier
            .probabilities(&sentence_features(&tokens));
        let mut ranked: Vec<usize> = (0..classes.len()).collect();
        ranked.sort_by(|a, b| probabilities[*b].total_cmp(&probabilities[*a]));
        let top = ranked[0];
        let confidence = probabilities[top];
        if tokens.is_empty() || classes[top] == NONE || confidence < self.model.none_threshold {
            return Parse {
                intent: NONE.into(),
                slots: Map::new(),
                confidence: if classes[top] == NONE {
                    confidence
                } else {
                    1.0 - confidence
                },
                suggestions: ranked
                    .iter()
                    .filter(|c| classes[**c] != NONE)
                    .take(3)
                    .map(|c| classes[*c].clone())
                    .collect(),
                missing: Vec::new(),
            };
        }
        let intent = classes[top].clone();
        let (mut labels, scores) =
            self.model
                .tagger
                .tag(&tokens, &intent, &self.allowed[top], &self.vocabulary);
        self.fill_required(&intent, &tokens, &mut labels, &scores);
        let mut slots = Map::new();
        let mut i = 0;
        while i < tokens.len() {
            let label = labels[i];
            let mut j = i + 1;
            while j < tokens.len() && labels[j] == label {
                j += 1;
            }
            let name = &self.model.tagger.labels[label];
            if name != OUTSIDE
                && !slots.contains_key(name)
                && let Some(slot) = self.spec.intent(&intent).and_then(|s| s.slot(name))
            {
                let words: Vec<&str> = tokens[i..j].iter().map(|t| t.lower.as_str()).collect();
                let raw = &text[tokens[i].start..tokens[j - 1].end];
                if let Some(value) = normalize(name, &slot.kind, &words, raw) {
                    slots.insert(name.clone(), value);
                }
            }
            i = j;
        }
        let (intent, slots) = apply_rules(intent, slots);
        let missing = self
            .spec
            .intent(&intent)
            .map(|s| {
                s.slots
                    .iter()
                    .filter(|slot| slot.required && !slots.contains_key(&slot.name))
                    .map(|slot| slot.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        Parse {
            intent,
            slots,
            confidence,
            suggestions: Vec::new(),
            missing,
        }
    }
}

impl Engine {
    /// A required slot the tagger gave no word goes to the unlabelled word
    /// that scores best for it, if that word could be a name or value (not
    /// one of the phrasings' own words): the text must contain it somewhere.
    fn fill_required(
        &self,
        intent: &str,
        tokens: &[crate::text::Token],
        labels: &mut [usize],
        scores: &[Vec<f32>],
    ) {
        let Some(spec) = self.spec.intent(intent) else {
            return;
        };
        let names = &self.model.tagger.labels;
        for slot in spec.slots.iter().filter(|s| s.required) {
            let Some(label) = names.iter().position(|l| *l == slot.name) else {
                continue;
            };
            if labels.contains(&label) {
                continue;
            }
            let candidate = (0..tokens.len())
                .filter(|&i| names[labels[i]] == OUTSIDE)
                .filter(|&i| {
                    let word = &tokens[i].lower;
                    word != "'s"
                        && !self.vocabulary.contains(word)
                        && word.chars().any(char::is_alphanumeric)
                })
                .max_by(|&a, &b| scores[a][label].total_cmp(&scores[b][label]));
            if let Some(i) = candidate {
                labels[i] = label;
            }
        }
    }
}

/// The spec's rules: a split of 100% is a promotion and of 0% an abort; a
/// flag rollout to everyone is enabling it and to no one disabling it.
fn apply_rules(intent: String, mut slots: Map<String, Value>) -> (String, Map<String, Value>) {
    let percent = slots.get("percent").and_then(Value::as_u64);
    let renamed = match (intent.as_str(), percent) {
        ("set_traffic_split", Some(100)) => Some("promote_rollout"),
        ("set_traffic_split", Some(0)) => Some("abort_rollout"),
        ("set_flag_rollout", Some(100)) => Some("enable_flag"),
        ("set_flag_rollout", Some(0)) => Some("disable_flag"),
        _ => None,
    };
    match renamed {
        Some(to) => {
            slots.retain(|k, _| matches!(k.as_str(), "tenant" | "app" | "flag"));
            (to.to_string(), slots)
        }
        None => (intent, slots),
    }
}
