//! What the models look at: words in a form that carries over to values
//! never seen (numbers, sizes, paths and versions by their kind), their
//! neighbours, and whether a word is one of the phrasings' own words.

use std::collections::HashSet;

use crate::lexicon::{concepts, stem};
use crate::text::{Token, shape};

/// A word as the models see it: values of a kind share one form.
pub fn word_class(token: &Token) -> String {
    match shape(&token.lower) {
        "NUM" | "NUMW" => "<num>".into(),
        "PCT" => "<pct>".into(),
        "SIZE" => "<size>".into(),
        "DUR" | "SIZEORDUR" => "<dur>".into(),
        "VER" => "<ver>".into(),
        "PATH" => "<path>".into(),
        _ => token.lower.clone(),
    }
}

/// The features of a whole sentence, for the intent classifier.
pub fn sentence_features(tokens: &[Token]) -> Vec<String> {
    let words: Vec<String> = tokens.iter().map(word_class).collect();
    let mut out = vec!["bias".to_string()];
    let at = |i: isize| -> &str {
        if i < 0 {
            "<s>"
        } else {
            words.get(i as usize).map_or("</s>", |w| w.as_str())
        }
    };
    for (i, w) in words.iter().enumerate() {
        let i = i as isize;
        out.push(format!("u:{w}"));
        out.push(format!("b:{}_{w}", at(i - 1)));
        out.push(format!("k:{}_{w}", at(i - 2)));
        if w.chars().count() >= 6 && !w.starts_with('<') {
            out.push(format!("p:{}", w.chars().take(5).collect::<String>()));
        }
        let s = shape(&tokens[i as usize].lower);
        if s != "W" {
            out.push(format!("s:{s}"));
        }
        if !w.starts_with('<') {
            out.push(format!("st:{}", stem(w)));
        }
        for c in concepts(w) {
            out.push(format!("c:{c}"));
            if let Some(prev) = words.get((i - 1) as usize).filter(|_| i > 0) {
                for p in concepts(prev) {
                    out.push(format!("cc:{p}_{c}"));
                }
            }
        }
    }
    out.push(format!("b:{}_</s>", at(words.len() as isize - 1)));
    out.sort();
    out.dedup();
    out
}

/// How the tagger sees each word: its class, or `<unk>` for a word the
/// phrasings never use (a name, or a verb never seen), and whether it is
/// one of the phrasings' words. `drop` marks words to see as unknown anyway
/// (training only: so that a new verb is not taken for a name).
pub fn tagger_view(
    tokens: &[Token],
    vocabulary: &HashSet<String>,
    drop: &[bool],
) -> (Vec<String>, Vec<bool>) {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let class = word_class(t);
            let known = vocabulary.contains(&t.lower) && !drop.get(i).copied().unwrap_or(false);
            if class.starts_with('<') || known {
                (class, known)
            } else {
                ("<unk>".to_string(), false)
            }
        })
        .unzip()
}

/// The features of word `i` for the slot tagger, given the sentence's
/// intent and the label of the word before.
pub fn token_features(
    tokens: &[Token],
    classes: &[String],
    known: &[bool],
    i: usize,
    intent: &str,
    previous: &str,
) -> Vec<String> {
    let at = |j: isize| -> &str {
        if j < 0 {
            "<s>"
        } else {
            classes.get(j as usize).map_or("</s>", |w| w.as_str())
        }
    };
    let shape_at = |j: isize| -> &str {
        if j < 0 || j as usize >= tokens.len() {
            "-"
        } else {
            shape(&tokens[j as usize].lower)
        }
    };
    let j = i as isize;
    let w = at(j);
    let known = if known[i] { "known" } else { "new" };
    let s = shape_at(j);
    vec![
        "bias".into(),
        format!("w:{w}"),
        format!("s:{s}"),
        format!("kn:{known}"),
        format!("kn,s:{known},{s}"),
        format!("w-1:{}", at(j - 1)),
        format!("w+1:{}", at(j + 1)),
        format!("w-2:{}", at(j - 2)),
        format!("w+2:{}", at(j + 2)),
        format!("s-1:{}", shape_at(j - 1)),
        format!("s+1:{}", shape_at(j + 1)),
        format!("w-1,w+1:{},{}", at(j - 1), at(j + 1)),
        format!("w-2,w-1:{},{}", at(j - 2), at(j - 1)),
        format!("w+1,w+2:{},{}", at(j + 1), at(j + 2)),
        format!("I:{intent}"),
        format!("I,w:{intent},{w}"),
        format!("I,s,kn:{intent},{s},{known}"),
        format!("I,w-1:{intent},{}", at(j - 1)),
        format!("I,w+1:{intent},{}", at(j + 1)),
        format!("I,w-2,w-1:{intent},{},{}", at(j - 2), at(j - 1)),
        format!("pl:{previous}"),
        format!("pl,w:{previous},{w}"),
        format!("pl,s,kn:{previous},{s},{known}"),
        format!("pl,w-1:{previous},{}", at(j - 1)),
    ]
}
