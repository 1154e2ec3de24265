//! Accuracy figures: intent, full frame (intent and every slot exact) and
//! out-of-scope recall, with the sentences the engine got wrong.

use crate::corpus::Example;
use crate::engine::{Engine, NONE};

/// How well the engine did on a set of sentences.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Sentences.
    pub total: usize,
    /// In-scope sentences.
    pub in_scope: usize,
    /// Out-of-scope sentences.
    pub out_of_scope: usize,
    /// Sentences whose intent was right (`none` included).
    pub intent_correct: usize,
    /// Sentences whose intent and every slot were right.
    pub frame_correct: usize,
    /// Out-of-scope sentences answered `none`.
    pub none_correct: usize,
    /// In-scope sentences answered `none`.
    pub false_none: usize,
    /// What went wrong: (text, expected, got).
    pub errors: Vec<(String, String, String)>,
}

impl Report {
    /// Intent accuracy, 0..1.
    pub fn intent_accuracy(&self) -> f64 {
        ratio(self.intent_correct, self.total)
    }

    /// Full-frame accuracy, 0..1.
    pub fn frame_accuracy(&self) -> f64 {
        ratio(self.frame_correct, self.total)
    }

    /// Out-of-scope recall, 0..1.
    pub fn none_recall(&self) -> f64 {
        ratio(self.none_correct, self.out_of_scope)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Runs `engine` over `examples`.
pub fn evaluate(engine: &Engine, examples: &[Example]) -> Report {
    let mut r = Report::default();
    for e in examples {
        let got = engine.parse(&e.text);
        r.total += 1;
        if e.intent == NONE {
            r.out_of_scope += 1;
        } else {
            r.in_scope += 1;
        }
        let expected_slots: serde_json::Map<String, serde_json::Value> =
            e.slots.clone().into_iter().collect();
        let intent_ok = got.intent == e.intent;
        let frame_ok = intent_ok && got.slots == expected_slots;
        r.intent_correct += usize::from(intent_ok);
        r.frame_correct += usize::from(frame_ok);
        r.none_correct += usize::from(intent_ok && e.intent == NONE);
        r.false_none += usize::from(got.intent == NONE && e.intent != NONE);
        if !frame_ok {
            r.errors.push((
                e.text.clone(),
                format!("{} {}", e.intent, serde_json::Value::Object(expected_slots)),
                format!("{} {}", got.intent, serde_json::Value::Object(got.slots)),
            ));
        }
    }
    r
}
