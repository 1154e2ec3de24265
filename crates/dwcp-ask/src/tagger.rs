//! The slot tagger: an averaged perceptron (Collins, 2002) that labels each
//! word with the slot it belongs to, left to right, choosing only among the
//! slots of the sentence's intent.

use std::collections::{HashMap, HashSet};

use crate::classifier::feature_key;
use crate::features::{tagger_view, token_features};
use crate::rng::SplitMix64;
use crate::text::Token;

/// The label of a word outside every slot.
pub const OUTSIDE: &str = "O";

/// Trained weights: for each feature key (sorted), its non-zero weights by label.
#[derive(Debug, Clone, PartialEq)]
pub struct Tagger {
    /// Labels: `O` first, then slot names.
    pub labels: Vec<String>,
    /// Feature keys, sorted.
    pub keys: Vec<u64>,
    /// Where each key's weights start in `entries` (one more than `keys`).
    pub offsets: Vec<u32>,
    /// `(label index, weight)` pairs.
    pub entries: Vec<(u8, f32)>,
}

/// One sentence to learn from.
pub struct TaggedSentence<'a> {
    /// Its words.
    pub tokens: &'a [Token],
    /// The label index of each word.
    pub labels: Vec<usize>,
    /// Its intent.
    pub intent: &'a str,
    /// The label indices allowed for that intent.
    pub allowed: Vec<usize>,
}

#[derive(Default, Clone, Copy)]
struct Averaged {
    weight: f32,
    total: f32,
    stamp: u32,
}

impl Tagger {
    /// Trains over `sentences` for `epochs` passes.
    pub fn train(
        labels: Vec<String>,
        sentences: &[TaggedSentence],
        vocabulary: &HashSet<String>,
        epochs: usize,
        seed: u64,
    ) -> Tagger {
        let n = labels.len();
        let mut acc: HashMap<(u64, u8), Averaged> = HashMap::new();
        let mut step: u32 = 0;
        let mut order: Vec<usize> = (0..sentences.len()).collect();
        let mut rng = SplitMix64::new(seed);
        let update =
            |acc: &mut HashMap<(u64, u8), Averaged>, key: u64, label: usize, by: f32, step: u32| {
                let a = acc.entry((key, label as u8)).or_default();
                a.total += a.weight * (step - a.stamp) as f32;
                a.stamp = step;
                a.weight += by;
            };
        for _ in 0..epochs {
            rng.shuffle(&mut order);
            for &s in &order {
                let sentence = &sentences[s];
                // One word in ten outside the slots is seen as never met.
                let drop: Vec<bool> = sentence
                    .labels
                    .iter()
                    .map(|l| *l == 0 && rng.chance(0.1))
                    .collect();
                let (classes, known) = tagger_view(sentence.tokens, vocabulary, &drop);
                let mut previous = OUTSIDE.to_string();
                for i in 0..sentence.tokens.len() {
                    step += 1;
                    let keys: Vec<u64> = token_features(
                        sentence.tokens,
                        &classes,
                        &known,
                        i,
                        sentence.intent,
                        &previous,
                    )
                    .iter()
                    .map(|f| feature_key(f))
                    .collect();
                    let guess = best(&sentence.allowed, |label| {
                        keys.iter()
                            .map(|k| acc.get(&(*k, label as u8)).map_or(0.0, |a| a.weight))
                            .sum()
                    });
                    let gold = sentence.labels[i];
                    if guess != gold {
                        for &k in &keys {
                            update(&mut acc, k, gold, 1.0, step);
                            update(&mut acc, k, guess, -1.0, step);
                        }
                    }
                    // Learn from its own guesses, as it will run.
                    previous = labels[guess].clone();
                }
            }
        }
        let mut averaged: Vec<(u64, u8, f32)> = acc
            .into_iter()
            .map(|((key, label), a)| {
                let total = a.total + a.weight * (step - a.stamp) as f32;
                (key, label, total / step.max(1) as f32)
            })
            .filter(|(_, _, w)| w.abs() > 1e-6)
            .collect();
        averaged.sort_by_key(|a| (a.0, a.1));
        let mut keys = Vec::new();
        let mut offsets = Vec::new();
        let mut entries = Vec::new();
        for (key, label, weight) in averaged {
            if keys.last() != Some(&key) {
                keys.push(key);
                offsets.push(entries.len() as u32);
            }
            entries.push((label, weight));
        }
        offsets.push(entries.len() as u32);
        debug_assert!(n < 256);
        Tagger {
            labels,
            keys,
            offsets,
            entries,
        }
    }

    /// The label index of each word of `tokens`, for a sentence of `intent`
    /// whose slots are `allowed` (label indices, `O` included), with each
    /// word's score for every label.
    pub fn tag(
        &self,
        tokens: &[Token],
        intent: &str,
        allowed: &[usize],
        vocabulary: &HashSet<String>,
    ) -> (Vec<usize>, Vec<Vec<f32>>) {
        let (classes, known) = tagger_view(tokens, vocabulary, &[]);
        let mut previous = OUTSIDE.to_string();
        let mut out = Vec::with_capacity(tokens.len());
        let mut scores = vec![0f32; self.labels.len()];
        let mut all = Vec::with_capacity(tokens.len());
        for i in 0..tokens.len() {
            scores.iter_mut().for_each(|s| *s = 0.0);
            for f in token_features(tokens, &classes, &known, i, intent, &previous) {
                if let Ok(k) = self.keys.binary_search(&feature_key(&f)) {
                    let (a, b) = (self.offsets[k] as usize, self.offsets[k + 1] as usize);
                    for (label, w) in &self.entries[a..b] {
                        scores[*label as usize] += w;
                    }
                }
            }
            let label = best(allowed, |l| scores[l]);
            previous = self.labels[label].clone();
            out.push(label);
            all.push(scores.clone());
        }
        (out, all)
    }
}

/// The allowed label with the highest score (the first on a tie).
fn best(allowed: &[usize], mut score: impl FnMut(usize) -> f32) -> usize {
    let mut best = (allowed[0], f32::NEG_INFINITY);
    for &label in allowed {
        let s = score(label);
        if s > best.1 {
            best = (label, s);
        }
    }
    best.0
}
