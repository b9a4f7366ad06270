//! Scenario errors: where (file, line, column, field path), what was expected, and a suggestion.

use core::fmt;

/// A problem in a scenario file. Every error names the file and the field path; most carry the
/// line and column too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The scenario file.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Dotted path of the field (`services.backend.instances`), empty for syntax errors.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
    /// The nearest valid name, for a misspelled one.
    pub suggestion: Option<String>,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": ")?;
        // Values quoted from the file may hold newlines or control characters: escaped, an
        // error stays one line.
        let clean = |f: &mut fmt::Formatter<'_>, s: &str| -> fmt::Result {
            for c in s.chars() {
                if c.is_control() {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    fmt::Write::write_char(f, c)?;
                }
            }
            Ok(())
        };
        if !self.field.is_empty() {
            clean(f, &self.field)?;
            write!(f, ": ")?;
        }
        clean(f, &self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The candidate nearest to `word`, if it is near enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, c)| (d, c.len()))
        .map(|(_, c)| c.to_owned())
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" and "unknown variant ..." messages:
/// the nearest expected name.
pub fn suggest_from_message(message: &str) -> Option<String> {
    let rest = message
        .split_once("unknown field `")
        .or_else(|| message.split_once("unknown variant `"))?
        .1;
    let (word, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    nearest(word, expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_find_typos() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(
            suggest_from_message(
                "unknown variant `least_requests`, expected one of `round_robin`, `least_request`, `random`"
            ),
            Some("least_request".into())
        );
        assert_eq!(
            suggest_from_message(
                "unknown field `instnces`, expected one of `instances`, `concurrency`"
            ),
            Some("instances".into())
        );
        assert_eq!(nearest("zzzzzz", ["instances"]), None);
    }
}
