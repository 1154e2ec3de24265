//! Words of a request: where they are in the text and what they look like.
//!
//! Tokens keep their byte range in the original text so that a slot's value
//! is cut from what the user wrote (a path keeps its case), and so that the
//! training corpus can label tokens by the characters a placeholder filled.

/// One word of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Where it starts in the text (bytes).
    pub start: usize,
    /// Where it ends in the text (bytes, exclusive).
    pub end: usize,
    /// The word lowercased.
    pub lower: String,
}

/// Characters taken off the front of a word.
const LEADING: &[char] = &['"', '\'', '“', '‘', '(', '[', '`', '«'];
/// Characters taken off the end of a word.
const TRAILING: &[char] = &[
    '"', '\'', '”', '’', ')', ']', '`', '»', '.', ',', '!', '?', ';', ':',
];

/// Splits `text` into words: on white space, without surrounding quotes and
/// sentence punctuation, with a possessive `'s` as a word of its own.
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut index = 0;
    for chunk in text.split_inclusive(char::is_whitespace) {
        let start = index;
        index += chunk.len();
        let word = chunk.trim_end_matches(char::is_whitespace);
        let trimmed_front = word.trim_start_matches(LEADING);
        let s = start + (word.len() - trimmed_front.len());
        let mut body = trimmed_front;
        loop {
            let t = body.trim_end_matches(TRAILING);
            // "./app.wasm." keeps its dots inside; a lone "." stays a path.
            if t.len() == body.len() {
                break;
            }
            body = t;
        }
        if body.is_empty() {
            continue;
        }
        let lower = body.to_lowercase();
        let possessive = ["'s", "’s"]
            .iter()
            .find(|p| lower.len() > p.len() + 1 && lower.ends_with(*p) && !lower.contains('/'));
        if let Some(p) = possessive {
            let cut = body.len() - p.len();
            out.push(Token {
                start: s,
                end: s + cut,
                lower: body[..cut].to_lowercase(),
            });
            out.push(Token {
                start: s + cut,
                end: s + body.len(),
                lower: "'s".into(),
            });
        } else {
            out.push(Token {
                start: s,
                end: s + body.len(),
                lower,
            });
        }
    }
    out
}

/// English number words the spec accepts, with their values.
const NUMBER_WORDS: &[(&str, u64)] = &[
    ("zero", 0),
    ("one", 1),
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
    ("eleven", 11),
    ("twelve", 12),
    ("thirteen", 13),
    ("fourteen", 14),
    ("fifteen", 15),
    ("sixteen", 16),
    ("seventeen", 17),
    ("eighteen", 18),
    ("nineteen", 19),
    ("twenty", 20),
];

/// The value of a number word ("three" → 3), or of digits.
pub fn number(word: &str) -> Option<u64> {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()) {
        return word.parse().ok();
    }
    NUMBER_WORDS
        .iter()
        .find(|(w, _)| *w == word)
        .map(|(_, n)| *n)
}

/// The number word for `n` (up to twenty).
pub fn number_word(n: u64) -> Option<&'static str> {
    NUMBER_WORDS.iter().find(|(_, v)| *v == n).map(|(w, _)| *w)
}

/// Size units (`mb`, `gib`, …) and how many MiB each is.
pub const SIZE_UNITS: &[(&str, u64)] = &[
    ("m", 1),
    ("mb", 1),
    ("mib", 1),
    ("meg", 1),
    ("megs", 1),
    ("megabyte", 1),
    ("megabytes", 1),
    ("mebibyte", 1),
    ("mebibytes", 1),
    ("g", 1024),
    ("gb", 1024),
    ("gib", 1024),
    ("gig", 1024),
    ("gigs", 1024),
    ("gigabyte", 1024),
    ("gigabytes", 1024),
    ("gibibyte", 1024),
    ("gibibytes", 1024),
];

/// Time units and how many milliseconds each is.
pub const TIME_UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("msec", 1),
    ("msecs", 1),
    ("millisecond", 1),
    ("milliseconds", 1),
    ("s", 1_000),
    ("sec", 1_000),
    ("secs", 1_000),
    ("second", 1_000),
    ("seconds", 1_000),
    ("m", 60_000),
    ("min", 60_000),
    ("mins", 60_000),
    ("minute", 60_000),
    ("minutes", 60_000),
    ("h", 3_600_000),
    ("hr", 3_600_000),
    ("hrs", 3_600_000),
    ("hour", 3_600_000),
    ("hours", 3_600_000),
    ("d", 86_400_000),
    ("day", 86_400_000),
    ("days", 86_400_000),
];

fn unit_of(units: &[(&str, u64)], word: &str) -> Option<u64> {
    units.iter().find(|(u, _)| *u == word).map(|(_, n)| *n)
}

/// A size unit's MiB.
pub fn size_unit(word: &str) -> Option<u64> {
    unit_of(SIZE_UNITS, word)
}

/// A time unit's milliseconds.
pub fn time_unit(word: &str) -> Option<u64> {
    unit_of(TIME_UNITS, word)
}

/// Splits "256mb" into (256.0, "mb"); a plain or decimal number has an empty unit.
pub fn number_and_unit(word: &str) -> Option<(f64, &str)> {
    let split = word
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(word.len(), |(i, _)| i);
    let (digits, unit) = word.split_at(split);
    if digits.is_empty() || digits.starts_with('.') || digits.ends_with('.') {
        return None;
    }
    Some((digits.parse().ok()?, unit))
}

/// Whether a word looks like a file or URL path.
pub fn is_path(word: &str) -> bool {
    let starts = ["/", "./", "../", "~/"].iter().any(|p| word.starts_with(p));
    let wasm = word.ends_with(".wasm") && word.len() > 5;
    let nested_file = word.contains('/')
        && word
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains('.') && !last.starts_with('.'));
    starts || wasm || nested_file
}

/// Whether a word looks like a version label: `v2`, `1.4.0`, `v1.2.3-rc1`.
pub fn is_version(word: &str) -> bool {
    let body = word.strip_prefix('v').unwrap_or(word);
    let mut parts = body.splitn(2, '-');
    let core = parts.next().unwrap_or_default();
    let numbered = !core.is_empty()
        && core
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numbered && (word.starts_with('v') || core.contains('.'))
}

/// A coarse class of a word's form, for features that carry over to
/// words never seen in training.
pub fn shape(word: &str) -> &'static str {
    if word == "'s" {
        return "POS";
    }
    if number(word).is_some() {
        return if word.bytes().all(|b| b.is_ascii_digit()) {
            "NUM"
        } else {
            "NUMW"
        };
    }
    if is_path(word) {
        return "PATH";
    }
    if word.ends_with('%') && number(&word[..word.len() - 1]).is_some() {
        return "PCT";
    }
    if let Some((_, unit)) = number_and_unit(word) {
        if size_unit(unit).is_some() && time_unit(unit).is_none() {
            return "SIZE";
        }
        if time_unit(unit).is_some() && size_unit(unit).is_none() {
            return "DUR";
        }
        if unit == "m" {
            return "SIZEORDUR";
        }
    }
    if is_version(word) {
        return "VER";
    }
    if size_unit(word).is_some() && word.len() > 1 {
        return "USIZE";
    }
    if time_unit(word).is_some() && word.len() > 1 {
        return "UTIME";
    }
    if word.contains('-') {
        return if word.bytes().any(|b| b.is_ascii_digit()) {
            "HYPHD"
        } else {
            "HYPH"
        };
    }
    if word.bytes().any(|b| b.is_ascii_digit()) {
        return "ALNUM";
    }
    "W"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        tokenize(text).into_iter().map(|t| t.lower).collect()
    }

    #[test]
    fn punctuation_and_quotes_are_taken_off_but_paths_keep_their_dots() {
        assert_eq!(
            words("Deploy ./hello.wasm as app \"Hello\"."),
            ["deploy", "./hello.wasm", "as", "app", "hello"]
        );
        assert_eq!(
            words("Roll back to v1.2.0?"),
            ["roll", "back", "to", "v1.2.0"]
        );
        assert_eq!(words("  edge-2,  now!  "), ["edge-2", "now"]);
    }

    #[test]
    fn a_possessive_is_its_own_word_and_offsets_point_into_the_text() {
        let text = "Delete initech's cart app.";
        let tokens = tokenize(text);
        let got: Vec<&str> = tokens.iter().map(|t| &text[t.start..t.end]).collect();
        assert_eq!(got, ["Delete", "initech", "'s", "cart", "app"]);
    }

    #[test]
    fn shapes_tell_numbers_units_paths_and_versions_apart() {
        assert_eq!(shape("3"), "NUM");
        assert_eq!(shape("three"), "NUMW");
        assert_eq!(shape("10%"), "PCT");
        assert_eq!(shape("256mb"), "SIZE");
        assert_eq!(shape("30s"), "DUR");
        assert_eq!(shape("5m"), "SIZEORDUR");
        assert_eq!(shape("v2"), "VER");
        assert_eq!(shape("1.4.0"), "VER");
        assert_eq!(shape("build/cart.wasm"), "PATH");
        assert_eq!(shape("/static/logo.png"), "PATH");
        assert_eq!(shape("a/b"), "W");
        assert_eq!(shape("edge-7"), "HYPHD");
        assert_eq!(shape("new-ui"), "HYPH");
        assert_eq!(shape("gib"), "USIZE");
        assert_eq!(shape("minutes"), "UTIME");
    }
}
