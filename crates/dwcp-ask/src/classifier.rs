//! The intent classifier: multinomial logistic regression over sentence
//! features, trained by stochastic gradient descent. Its probabilities are
//! the engine's confidence, and a low one sends a sentence to `none`.

use crate::rng::SplitMix64;

/// A feature's key: the FNV-1a hash of its text (no strings to keep).
pub fn feature_key(feature: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in feature.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Trained weights: for each feature key (sorted), its weights that are
/// not negligible, by class.
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    /// Class names, in weight order.
    pub classes: Vec<String>,
    /// Feature keys, sorted.
    pub keys: Vec<u64>,
    /// Where each key's weights start in `entries` (one more than `keys`).
    pub offsets: Vec<u32>,
    /// `(class index, weight)` pairs.
    pub entries: Vec<(u8, f32)>,
}

/// How to train.
#[derive(Debug, Clone, Copy)]
pub struct ClassifierTraining {
    /// Passes over the data.
    pub epochs: usize,
    /// First learning rate (it decays each pass).
    pub rate: f32,
    /// Shuffle seed.
    pub seed: u64,
}

impl Classifier {
    /// Trains on `(features, class index)` pairs; weights within `epsilon`
    /// of zero are dropped.
    pub fn train(
        classes: Vec<String>,
        data: &[(Vec<String>, usize)],
        how: ClassifierTraining,
        epsilon: f32,
    ) -> Classifier {
        let mut keys: Vec<u64> = data
            .iter()
            .flat_map(|(f, _)| f.iter().map(|f| feature_key(f)))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let c = classes.len();
        let rows: Vec<Vec<usize>> = data
            .iter()
            .map(|(f, _)| {
                f.iter()
                    .filter_map(|f| keys.binary_search(&feature_key(f)).ok())
                    .collect()
            })
            .collect();
        let mut weights = vec![0f32; keys.len() * c];
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut rng = SplitMix64::new(how.seed);
        let mut scores = vec![0f32; c];
        for epoch in 0..how.epochs {
            rng.shuffle(&mut order);
            let rate = how.rate / (1.0 + epoch as f32 * 0.5);
            for &n in &order {
                let (row, gold) = (&rows[n], data[n].1);
                score_rows(&weights, c, row, &mut scores);
                softmax(&mut scores);
                for (k, p) in scores.iter_mut().enumerate() {
                    *p -= if k == gold { 1.0 } else { 0.0 };
                }
                for &f in row {
                    let w = &mut weights[f * c..(f + 1) * c];
                    for (w, g) in w.iter_mut().zip(&scores) {
                        *w -= rate * g;
                    }
                }
            }
        }
        let mut kept_keys = Vec::new();
        let mut offsets = Vec::new();
        let mut entries = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let row = &weights[i * c..(i + 1) * c];
            let start = entries.len();
            entries.extend(
                row.iter()
                    .enumerate()
                    .filter(|(_, w)| w.abs() > epsilon)
                    .map(|(k, w)| (k as u8, *w)),
            );
            if entries.len() > start {
                kept_keys.push(*key);
                offsets.push(start as u32);
            }
        }
        offsets.push(entries.len() as u32);
        Classifier {
            classes,
            keys: kept_keys,
            offsets,
            entries,
        }
    }

    /// The probability of each class for a sentence with `features`.
    pub fn probabilities(&self, features: &[String]) -> Vec<f32> {
        let mut scores = vec![0f32; self.classes.len()];
        for f in features {
            if let Ok(k) = self.keys.binary_search(&feature_key(f)) {
                let (a, b) = (self.offsets[k] as usize, self.offsets[k + 1] as usize);
                for (class, w) in &self.entries[a..b] {
                    scores[*class as usize] += w;
                }
            }
        }
        softmax(&mut scores);
        scores
    }
}

fn score_rows(weights: &[f32], c: usize, rows: &[usize], scores: &mut [f32]) {
    scores.iter_mut().for_each(|s| *s = 0.0);
    for &f in rows {
        for (s, w) in scores.iter_mut().zip(&weights[f * c..(f + 1) * c]) {
            *s += w;
        }
    }
}

fn softmax(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    for s in scores.iter_mut() {
        *s /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_learns_separable_classes_and_is_unsure_of_the_unseen() {
        let f = |words: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = words.iter().map(|w| format!("u:{w}")).collect();
            v.push("bias".into());
            v
        };
        let data = vec![
            (f(&["start", "rollout"]), 0),
            (f(&["begin", "rollout"]), 0),
            (f(&["list", "flags"]), 1),
            (f(&["show", "flags"]), 1),
        ];
        let how = ClassifierTraining {
            epochs: 20,
            rate: 0.5,
            seed: 1,
        };
        let model = Classifier::train(vec!["a".into(), "b".into()], &data, how, 0.0);
        assert!(model.probabilities(&f(&["start", "rollout"]))[0] > 0.9);
        assert!(model.probabilities(&f(&["show", "flags"]))[1] > 0.9);
        let unseen = model.probabilities(&f(&["weather"]));
        assert!((unseen[0] - 0.5).abs() < 0.2, "{unseen:?}");
    }
}
