//! Phrasing templates (`data/train.txt`, `data/heldout.txt`): a line per
//! way of saying an intent, with `(a|b)` alternatives, `[x]` optional parts
//! and `{slot}` placeholders, expanded at random into training sentences.

use crate::rng::SplitMix64;

/// A piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Words as written.
    Text(String),
    /// A slot's value goes here.
    Slot(String),
    /// One of several sequences.
    Choice(Vec<Vec<Part>>),
    /// A sequence that may be left out.
    Optional(Vec<Part>),
}

/// One template of an intent.
#[derive(Debug, Clone)]
pub struct Template {
    /// The intent it phrases (`none` for out of scope).
    pub intent: String,
    /// Its parts.
    pub parts: Vec<Part>,
    /// The line it came from (1-based), for error messages.
    pub line: usize,
}

/// A template file that does not follow the grammar.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct GrammarError {
    /// Where (1-based).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Reads a template file: `@intent` headers, then a template per line.
pub fn parse_file(text: &str) -> Result<Vec<Template>, GrammarError> {
    let mut intent: Option<String> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('@') {
            intent = Some(name.trim().to_string());
            continue;
        }
        let Some(intent) = &intent else {
            return Err(GrammarError {
                line: line_no,
                message: "a template before any @intent header".into(),
            });
        };
        let parts = parse_line(line).map_err(|message| GrammarError {
            line: line_no,
            message,
        })?;
        out.push(Template {
            intent: intent.clone(),
            parts,
            line: line_no,
        });
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Vec<Part>, String> {
    let chars: Vec<char> = line.chars().collect();
    let mut pos = 0;
    let seq = parse_seq(&chars, &mut pos, None)?;
    if pos != chars.len() {
        return Err(format!("unexpected `{}`", chars[pos]));
    }
    Ok(seq)
}

/// Parses until `close` (or the end), splitting alternatives at `|` when
/// inside parentheses (the caller handles them).
fn parse_seq(chars: &[char], pos: &mut usize, close: Option<char>) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let flush = |text: &mut String, parts: &mut Vec<Part>| {
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(text)));
        }
    };
    while *pos < chars.len() {
        let c = chars[*pos];
        match c {
            '(' => {
                flush(&mut text, &mut parts);
                *pos += 1;
                let mut alternatives = vec![parse_seq(chars, pos, Some(')'))?];
                while *pos < chars.len() && chars[*pos] == '|' {
                    *pos += 1;
                    alternatives.push(parse_seq(chars, pos, Some(')'))?);
                }
                if *pos >= chars.len() || chars[*pos] != ')' {
                    return Err("`(` without `)`".into());
                }
                *pos += 1;
                parts.push(Part::Choice(alternatives));
            }
            '[' => {
                flush(&mut text, &mut parts);
                *pos += 1;
                let inner = parse_seq(chars, pos, Some(']'))?;
                if *pos >= chars.len() || chars[*pos] != ']' {
                    return Err("`[` without `]`".into());
                }
                *pos += 1;
                parts.push(Part::Optional(inner));
            }
            '{' => {
                flush(&mut text, &mut parts);
                let end = chars[*pos..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or("`{` without `}`")?;
                let name: String = chars[*pos + 1..*pos + end].iter().collect();
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    return Err(format!("bad placeholder `{{{name}}}`"));
                }
                parts.push(Part::Slot(name));
                *pos += end + 1;
            }
            ')' | ']' | '|' => {
                if close.is_none() || (c != '|' && Some(c) != close) {
                    return Err(format!("unexpected `{c}`"));
                }
                if c == '|' && close != Some(')') {
                    return Err("`|` outside `( )`".into());
                }
                break;
            }
            '}' => return Err("unexpected `}`".into()),
            _ => {
                text.push(c);
                *pos += 1;
            }
        }
    }
    flush(&mut text, &mut parts);
    Ok(parts)
}

/// A piece of an expanded sentence: words, or a slot to fill.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Words as written.
    Text(String),
    /// A slot's value.
    Slot(String),
}

/// One random expansion of `parts` (optional parts kept half of the time).
pub fn expand(parts: &[Part], rng: &mut SplitMix64) -> Vec<Piece> {
    let mut out = Vec::new();
    expand_into(parts, rng, &mut out);
    out
}

fn expand_into(parts: &[Part], rng: &mut SplitMix64, out: &mut Vec<Piece>) {
    for part in parts {
        match part {
            Part::Text(t) => out.push(Piece::Text(t.clone())),
            Part::Slot(s) => out.push(Piece::Slot(s.clone())),
            Part::Choice(alternatives) => {
                let pick = rng.below(alternatives.len() as u64) as usize;
                expand_into(&alternatives[pick], rng, out);
            }
            Part::Optional(inner) => {
                if rng.below(2) == 0 {
                    expand_into(inner, rng, out);
                }
            }
        }
    }
}

/// Every placeholder in `parts`, and whether it is outside all optional parts
/// and in every alternative (always present).
pub fn placeholders(parts: &[Part]) -> Vec<(String, bool)> {
    let mut all = Vec::new();
    collect(parts, true, &mut all);
    let mut out: Vec<(String, bool)> = Vec::new();
    for (name, always) in all {
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 |= always,
            None => out.push((name, always)),
        }
    }
    out
}

fn collect(parts: &[Part], always: bool, out: &mut Vec<(String, bool)>) {
    for part in parts {
        match part {
            Part::Text(_) => {}
            Part::Slot(s) => out.push((s.clone(), always)),
            Part::Choice(alternatives) => {
                // Present always only if every alternative has it.
                let mut per: Vec<Vec<(String, bool)>> = Vec::new();
                for alt in alternatives {
                    let mut v = Vec::new();
                    collect(alt, always, &mut v);
                    per.push(v);
                }
                let mut names: Vec<String> = per
                    .iter()
                    .flat_map(|v| v.iter().map(|(n, _)| n.clone()))
                    .collect();
                names.sort();
                names.dedup();
                for name in names {
                    let everywhere = per.iter().all(|v| v.iter().any(|(n, a)| *n == name && *a));
                    out.push((name, always && everywhere));
                }
            }
            Part::Optional(inner) => collect(inner, false, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternatives_options_and_placeholders_nest() {
        let t =
            parse_file("@x\n[(please|kindly)] (show|display) logs (of|for) {app} [for {tenant}]\n")
                .unwrap();
        assert_eq!(t.len(), 1);
        let p = placeholders(&t[0].parts);
        assert_eq!(p, [("app".into(), true), ("tenant".into(), false)]);
        let mut rng = SplitMix64::new(7);
        for _ in 0..20 {
            let pieces = expand(&t[0].parts, &mut rng);
            assert!(pieces.contains(&Piece::Slot("app".into())));
        }
    }

    #[test]
    fn unbalanced_or_stray_characters_are_reported_with_their_line() {
        for bad in [
            "@x\n(a|b",
            "@x\n[a",
            "@x\na)",
            "@x\na | b",
            "@x\n{App}",
            "x",
        ] {
            let e = parse_file(bad).unwrap_err();
            assert!(e.line >= 1, "{bad}: {e}");
        }
    }
}
