//! Checks of a scenario file's shape before the YAML parser sees it: its size, its text
//! encoding, its nesting depth and the number of YAML documents. A parser's time can grow with
//! the square of the nesting depth, so a deep file is refused in one linear pass first; the
//! refusal names the line and column where the limit is crossed.

use crate::ScenarioError;

/// The largest scenario file read: 4 MiB (the shipped ones are a few kB; a generated file with
/// an override per instance stays well under).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The deepest nesting of mappings and lists: 32 (the scenario format itself needs about 8).
pub const MAX_DEPTH: usize = 32;

fn located(file: &str, line: usize, column: usize, message: String) -> ScenarioError {
    ScenarioError {
        file: file.to_owned(),
        line: Some(line),
        column: Some(column),
        field: String::new(),
        message,
        suggestion: None,
    }
}

/// The file's bytes as text: the position of the first byte that is not UTF-8 otherwise.
pub(crate) fn text(bytes: Vec<u8>, file: &str) -> Result<String, ScenarioError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let good = &e.as_bytes()[..at];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&good[start..]).chars().count() + 1;
        let mut err = located(
            file,
            line,
            column,
            format!(
                "the file is not UTF-8 text (byte 0x{:02x} at offset {at}); save it as UTF-8",
                e.as_bytes()[at]
            ),
        );
        err.field = crate::locate::path_at(&String::from_utf8_lossy(good), line);
        err
    })
}

/// Refuses text longer than [`MAX_FILE_BYTES`], nested deeper than [`MAX_DEPTH`], or holding
/// more than one YAML document.
pub(crate) fn check(source: &str, file: &str) -> Result<(), ScenarioError> {
    if source.len() as u64 > MAX_FILE_BYTES {
        return Err(ScenarioError {
            file: file.to_owned(),
            line: None,
            column: None,
            field: String::new(),
            message: format!(
                "the scenario is {} bytes; at most {MAX_FILE_BYTES} (4 MiB)",
                source.len()
            ),
            suggestion: None,
        });
    }
    // Block nesting: a stack of indentations (list dashes open a level each); flow nesting:
    // brackets outside quotes and comments, carried across lines.
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut documents = 0usize;
    let mut content_seen = false;
    for (n, line) in source.lines().enumerate() {
        let trimmed = line.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with("---") && line[3..].chars().next().is_none_or(char::is_whitespace) {
            documents += 1;
            if documents > 1 || content_seen {
                return Err(located(
                    file,
                    n + 1,
                    1,
                    "a second YAML document: a scenario file holds one (remove this `---` and what follows, or split it into files)".into(),
                ));
            }
            continue;
        }
        if line.starts_with("...") {
            continue;
        }
        content_seen = true;
        if flow == 0 {
            let indent = line.len() - trimmed.len();
            while indents.last().is_some_and(|&i| i > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
            // `- - - x`: each dash opens a level.
            let mut rest = trimmed;
            let mut col = indent;
            while let Some(after) = rest
                .strip_prefix('-')
                .filter(|a| a.is_empty() || a.starts_with(' '))
            {
                let pad = after.len() - after.trim_start_matches(' ').len();
                col += 1 + pad;
                rest = &after[pad..];
                indents.push(col);
                if indents.len() > MAX_DEPTH {
                    return Err(too_deep(source, file, n + 1, col));
                }
            }
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        let mut escaped = false;
        for (col, c) in line.char_indices() {
            match quote {
                Some('"') if escaped => escaped = false,
                Some('"') if c == '\\' => escaped = true,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '#' if prev.is_whitespace() => break,
                    '"' | '\'' if matches!(prev, ' ' | '[' | '{' | ',' | ':') => quote = Some(c),
                    '[' | '{' => {
                        flow += 1;
                        if indents.len() + flow > MAX_DEPTH {
                            return Err(too_deep(source, file, n + 1, col + 1));
                        }
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            prev = c;
        }
        if indents.len() + flow > MAX_DEPTH {
            return Err(too_deep(
                source,
                file,
                n + 1,
                line.len() - trimmed.len() + 1,
            ));
        }
    }
    Ok(())
}

fn too_deep(source: &str, file: &str, line: usize, column: usize) -> ScenarioError {
    let mut e = located(
        file,
        line,
        column,
        format!("nested more than {MAX_DEPTH} levels deep; a scenario needs far fewer"),
    );
    e.field = crate::locate::path_at(source, line);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_shapes_pass_and_deep_or_multiple_documents_do_not() {
        let ok = "name: t\nstrategies:\n  rr: { balancer: { kind: round_robin } }\nlist:\n  - a\n  - - b\n    - c\n";
        check(ok, "f").unwrap();
        check("---\nname: t\n", "f").unwrap();
        let flow = format!("a: {}1{}\n", "[".repeat(40), "]".repeat(40));
        let e = check(&flow, "f").unwrap_err();
        assert_eq!((e.line, e.column), (Some(1), Some(35)), "{e}");
        let block: String = (0..40)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect();
        let e = check(&block, "f").unwrap_err();
        assert_eq!(e.line, Some(33), "{e}");
        let dashes = format!("a:\n  {}x\n", "- ".repeat(40));
        assert!(check(&dashes, "f").is_err());
        // Brackets in quotes or comments do not nest.
        let quoted = format!("a: \"{}\" # {}\n", "[".repeat(40), "{".repeat(40));
        check(&quoted, "f").unwrap();
        let e = check("name: a\n---\nname: b\n", "f").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("second YAML document"), "{e}");
    }

    #[test]
    fn non_utf8_is_located() {
        let e = text(b"name: t\nde: caf\xe9\n".to_vec(), "f").unwrap_err();
        assert_eq!((e.line, e.column), (Some(2), Some(8)), "{e}");
        assert!(e.message.contains("0xe9"), "{e}");
    }
}
