//! Building the model from the phrasing templates: the same templates,
//! seed and settings give the same bytes (`cargo xtask ask-model` writes
//! them to `model/ask.model`).

use std::collections::{BTreeSet, HashSet};

use crate::classifier::{Classifier, ClassifierTraining};
use crate::corpus::{self, Example, Pool};
use crate::engine::NONE;
use crate::features::sentence_features;
use crate::grammar::{self, GrammarError, Part, Template};
use crate::model::Model;
use crate::spec::Spec;
use crate::tagger::{OUTSIDE, TaggedSentence, Tagger};
use crate::text::tokenize;

/// The training templates.
pub const TRAIN_TEMPLATES: &str = include_str!("../data/train.txt");
/// More training templates, written later for what the first ones said
/// least (idioms, the app as subject, tenants named without "tenant").
pub const EXTRA_TEMPLATES: &str = include_str!("../data/extra.txt");
/// The validation templates: the settings were tuned on them (with a model
/// trained without them); the committed model is trained on them too.
pub const VALID_TEMPLATES: &str = include_str!("../data/valid.txt");
/// The test templates: written apart, never trained or tuned on; they give
/// the figures in docs/ask.md.
pub const TEST_TEMPLATES: &str = include_str!("../data/test.txt");

/// The settings the committed model is built with.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Sentences per intent.
    pub per_intent: usize,
    /// Out-of-scope sentences.
    pub none: usize,
    /// Classifier passes.
    pub classifier_epochs: usize,
    /// Tagger passes.
    pub tagger_epochs: usize,
    /// Below this probability, `none`.
    pub none_threshold: f32,
    /// Classifier weights this close to zero are dropped (a smaller model).
    pub epsilon: f32,
    /// Seed of the corpus and of the training order.
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            per_intent: 400,
            none: 1_800,
            classifier_epochs: 6,
            tagger_epochs: 6,
            none_threshold: 0.3,
            epsilon: 0.05,
            seed: 0x00D0_0C0A_5C00,
        }
    }
}

/// A template that names a slot its intent does not have, or leaves out a
/// required one.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file does not follow the grammar.
    #[error(transparent)]
    Grammar(#[from] GrammarError),
    /// A template is inconsistent with the spec.
    #[error("line {line} ({intent}): {message}")]
    Spec {
        /// Where.
        line: usize,
        /// Its intent.
        intent: String,
        /// What is wrong.
        message: String,
    },
}

/// Parses a template file and checks it against `spec`.
pub fn templates(spec: &Spec, text: &str) -> Result<Vec<Template>, TemplateError> {
    let templates = grammar::parse_file(text)?;
    for t in &templates {
        let bad = |message: String| TemplateError::Spec {
            line: t.line,
            intent: t.intent.clone(),
            message,
        };
        let placeholders = grammar::placeholders(&t.parts);
        if t.intent == NONE {
            if let Some((p, _)) = placeholders.first() {
                return Err(bad(format!("`{{{p}}}` in an out-of-scope template")));
            }
            continue;
        }
        let intent = spec
            .intent(&t.intent)
            .ok_or_else(|| bad("no such intent in the spec".into()))?;
        for (p, _) in &placeholders {
            if intent.slot(p).is_none() {
                return Err(bad(format!("`{{{p}}}` is not a slot of this intent")));
            }
        }
        for slot in intent.slots.iter().filter(|s| s.required) {
            if !placeholders
                .iter()
                .any(|(p, always)| *p == slot.name && *always)
            {
                return Err(bad(format!(
                    "the required slot `{}` is not always there",
                    slot.name
                )));
            }
        }
    }
    Ok(templates)
}

/// The sentences of `templates` with names from `pool`.
pub fn corpus(
    spec: &Spec,
    templates: &[Template],
    pool: Pool,
    settings: &Settings,
) -> Vec<Example> {
    let (none, some): (Vec<Template>, Vec<Template>) =
        templates.iter().cloned().partition(|t| t.intent == NONE);
    let mut out = corpus::generate(spec, &some, pool, settings.per_intent, settings.seed);
    out.extend(corpus::generate(
        spec,
        &none,
        pool,
        settings.none,
        settings.seed ^ 1,
    ));
    out
}

/// The words the templates are written with (not their placeholders).
pub fn vocabulary(templates: &[Template]) -> Vec<String> {
    fn walk(parts: &[Part], out: &mut BTreeSet<String>) {
        for part in parts {
            match part {
                Part::Text(t) => out.extend(tokenize(t).into_iter().map(|t| t.lower)),
                Part::Slot(_) => {}
                Part::Choice(alternatives) => alternatives.iter().for_each(|a| walk(a, out)),
                Part::Optional(inner) => walk(inner, out),
            }
        }
    }
    // The lexicon's words are English words too, not names.
    let mut words: BTreeSet<String> = crate::lexicon::words()
        .filter(|w| !w.contains(' '))
        .map(str::to_string)
        .collect();
    templates.iter().for_each(|t| walk(&t.parts, &mut words));
    words.into_iter().collect()
}

/// Trains the model on `templates`.
pub fn train(spec: &Spec, templates: &[Template], settings: &Settings) -> Model {
    let examples = corpus(spec, templates, Pool::Train, settings);
    // Words of out-of-scope phrasings ("hello", "umbrella") are names
    // as often as not.
    let in_scope: Vec<Template> = templates
        .iter()
        .filter(|t| t.intent != NONE)
        .cloned()
        .collect();
    let vocabulary = vocabulary(&in_scope);
    let known: HashSet<String> = vocabulary.iter().cloned().collect();

    let mut classes = vec![NONE.to_string()];
    classes.extend(spec.intents.iter().map(|i| i.name.clone()));
    let tokens: Vec<_> = examples.iter().map(|e| tokenize(&e.text)).collect();
    let data: Vec<(Vec<String>, usize)> = examples
        .iter()
        .zip(&tokens)
        .map(|(e, t)| {
            let class = classes.iter().position(|c| *c == e.intent).unwrap_or(0);
            (sentence_features(t), class)
        })
        .collect();
    let classifier = Classifier::train(
        classes,
        &data,
        ClassifierTraining {
            epochs: settings.classifier_epochs,
            rate: 0.3,
            seed: settings.seed,
        },
        settings.epsilon,
    );

    let mut labels = vec![OUTSIDE.to_string()];
    labels.extend(spec.slot_names());
    let index = |name: &str| labels.iter().position(|l| l == name).unwrap_or(0);
    let sentences: Vec<TaggedSentence> = examples
        .iter()
        .zip(&tokens)
        .filter(|(e, _)| e.intent != NONE)
        .map(|(e, t)| {
            let mut allowed = vec![0];
            if let Some(intent) = spec.intent(&e.intent) {
                allowed.extend(intent.slots.iter().map(|s| index(&s.name)));
            }
            TaggedSentence {
                tokens: t,
                labels: e
                    .labels
                    .iter()
                    .map(|l| l.as_deref().map_or(0, index))
                    .collect(),
                intent: &e.intent,
                allowed,
            }
        })
        .collect();
    let tagger = Tagger::train(
        labels.clone(),
        &sentences,
        &known,
        settings.tagger_epochs,
        settings.seed,
    );
    Model {
        none_threshold: settings.none_threshold,
        vocabulary,
        classifier,
        tagger,
    }
}

/// The committed model's recipe: the training and validation templates,
/// default settings.
pub fn builtin_model() -> Result<Model, TemplateError> {
    let spec = Spec::builtin();
    let mut all = templates(spec, TRAIN_TEMPLATES)?;
    all.extend(templates(spec, EXTRA_TEMPLATES)?);
    all.extend(templates(spec, VALID_TEMPLATES)?);
    Ok(train(spec, &all, &Settings::default()))
}
