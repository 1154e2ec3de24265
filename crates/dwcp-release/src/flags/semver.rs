//! The `sem_ver` operator: semantic version comparison (SemVer 2.0.0).
//!
//! Accepted the way flagd accepts versions: an optional leading `v` or `V`,
//! a core of one to three numeric parts (`1` and `1.2` mean `1.0.0` and
//! `1.2.0`; shorthand cannot carry a pre-release or build), an optional
//! `-pre.release` and an optional `+build` that comparison ignores.

use std::cmp::Ordering;

/// A parsed version; build metadata is dropped because it never orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    core: [u64; 3],
    pre: Vec<Identifier>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Identifier {
    Numeric(u64),
    Alpha(String),
}

impl Version {
    /// Parses `text`, or `None` if it is not a version flagd would accept.
    pub(crate) fn parse(text: &str) -> Option<Version> {
        let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
        let (rest, build) = match text.split_once('+') {
            Some((rest, build)) => (rest, Some(build)),
            None => (text, None),
        };
        let valid_id = |id: &str| !id.is_empty() && id.chars().all(is_ident_char);
        if build.is_some_and(|build| !build.split('.').all(valid_id)) {
            return None;
        }
        let (core, pre) = match rest.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (rest, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() > 3 || (parts.len() < 3 && (pre.is_some() || build.is_some())) {
            return None;
        }
        let mut numbers = [0u64; 3];
        for (slot, part) in numbers.iter_mut().zip(&parts) {
            *slot = parse_numeric(part)?;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => pre
                .split('.')
                .map(parse_identifier)
                .collect::<Option<_>>()?,
        };
        Some(Version { core: numbers, pre })
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// A numeric part: ASCII digits without a leading zero, as SemVer requires.
fn parse_numeric(part: &str) -> Option<u64> {
    let leading_zero = part.len() > 1 && part.starts_with('0');
    if part.is_empty() || leading_zero || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

fn parse_identifier(id: &str) -> Option<Identifier> {
    if id.is_empty() || !id.chars().all(is_ident_char) {
        return None;
    }
    if id.bytes().all(|b| b.is_ascii_digit()) {
        return parse_numeric(id).map(Identifier::Numeric);
    }
    Some(Identifier::Alpha(id.to_owned()))
}

impl Ord for Identifier {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Identifier::Numeric(a), Identifier::Numeric(b)) => a.cmp(b),
            // SemVer 11.4.3: numeric identifiers sort before alphanumeric ones.
            (Identifier::Numeric(_), Identifier::Alpha(_)) => Ordering::Less,
            (Identifier::Alpha(_), Identifier::Numeric(_)) => Ordering::Greater,
            (Identifier::Alpha(a), Identifier::Alpha(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Identifier {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core.cmp(&other.core).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A pre-release sorts before its release (1.0.0-alpha < 1.0.0).
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                // Lexicographic over identifiers; a shorter prefix sorts first.
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Applies a flagd `sem_ver` operator, or `None` for an unknown operator.
///
/// `^` and `~` follow flagd: same major, and same major and minor,
/// respectively (not Cargo's range semantics).
pub(crate) fn compare(left: &Version, op: &str, right: &Version) -> Option<bool> {
    let ordering = left.cmp(right);
    Some(match op {
        "=" => ordering == Ordering::Equal,
        "!=" => ordering != Ordering::Equal,
        "<" => ordering == Ordering::Less,
        "<=" => ordering != Ordering::Greater,
        ">" => ordering == Ordering::Greater,
        ">=" => ordering != Ordering::Less,
        "^" => left.core[0] == right.core[0],
        "~" => left.core[..2] == right.core[..2],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::{Version, compare};

    fn holds(left: &str, op: &str, right: &str) -> bool {
        let l = Version::parse(left).expect("left parses");
        let r = Version::parse(right).expect("right parses");
        compare(&l, op, &r).expect("known operator")
    }

    #[test]
    fn ordering_follows_semver_precedence() {
        assert!(holds("2.0.0-alpha", "<", "2.0.0"));
        assert!(holds("1.0.0-alpha", "<", "1.0.0-alpha.1"));
        assert!(holds("1.0.0-alpha.1", "<", "1.0.0-alpha.beta"));
        assert!(holds("1.0.0-beta.2", "<", "1.0.0-beta.11"));
        assert!(holds("1.0.0-rc.1", "<", "1.0.0"));
        assert!(holds("1.10.0", ">", "1.9.0"));
    }

    #[test]
    fn prefix_partial_and_build_metadata() {
        assert!(holds("v1.0.0", "=", "1.0.0"));
        assert!(holds("V1.0.0", "=", "v1.0.0"));
        assert!(holds("1", "=", "1.0.0"));
        assert!(holds("1.2", "=", "1.2.0"));
        assert!(holds("1.0.0+other", "=", "1.0.0+build"));
    }

    #[test]
    fn caret_and_tilde_are_flagds() {
        assert!(holds("3.1.0", "^", "3.0.0"));
        assert!(!holds("4.0.0", "^", "3.0.0"));
        assert!(holds("3.0.1", "~", "3.0.0"));
        assert!(!holds("3.1.0", "~", "3.0.0"));
        // Same major is all `^` asks, even below the reference version.
        assert!(holds("3.0.0", "^", "3.5.0"));
    }

    #[test]
    fn rejects_malformed_versions() {
        for bad in [
            "",
            "v",
            "2.0.0.0",
            "not-a-version",
            "01.0.0",
            "1..0",
            "1.0-alpha",
            "1.0.0-",
            "1.0.0-a..b",
            "1.0.0+",
            "1.0.0-01",
            " 1.0.0",
            "1.0.0_",
            "-1.0.0",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rejects_unknown_operators() {
        let v = Version::parse("1.0.0").expect("parses");
        assert_eq!(compare(&v, "===", &v), None);
        assert_eq!(compare(&v, "", &v), None);
    }
}
