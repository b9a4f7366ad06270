//! Finds where a dotted field path is written in YAML text, for errors found after parsing
//! (cross-field checks, merged strategy policies). Handles block mappings by indentation and
//! flow mappings (`{ a: { b: 1 } }`) on one line; list indices are skipped over.

/// The 1-based (line, column) of the deepest part of `path` found in `source`.
pub(crate) fn locate(source: &str, path: &str) -> Option<(usize, usize)> {
    walk(source, path).map(|(l, c, _)| (l, c))
}

/// The position of `path` only if every segment is found.
pub(crate) fn locate_exact(source: &str, path: &str) -> Option<(usize, usize)> {
    walk(source, path)
        .filter(|&(_, _, complete)| complete)
        .map(|(l, c, _)| (l, c))
}

fn walk(source: &str, path: &str) -> Option<(usize, usize, bool)> {
    let lines: Vec<&str> = source.lines().collect();
    // Current position: line index, column of the key, indentation of its line.
    let mut found: Option<(usize, usize, usize)> = None;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        if seg.chars().all(|c| c.is_ascii_digit()) && found.is_some() {
            // A list index, or an integer key: try it as a key, else stay put.
            if let Some(next) = find(&lines, found, seg) {
                found = Some(next);
            }
            continue;
        }
        match find(&lines, found, seg) {
            Some(next) => found = Some(next),
            None => return found.map(|(l, c, _)| (l + 1, c + 1, false)),
        }
    }
    found.map(|(l, c, _)| (l + 1, c + 1, true))
}

fn key_at(text: &str, seg: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(seg) {
        let at = from + i;
        let before = text[..at].chars().last();
        let after = text[at + seg.len()..].trim_start();
        let boundary = before.is_none_or(|c| matches!(c, ' ' | '{' | ',' | '"' | '\'' | '-'));
        let unquoted_after = after.strip_prefix(['"', '\'']).unwrap_or(after);
        if boundary && unquoted_after.starts_with(':') {
            return Some(at);
        }
        from = at + seg.len();
    }
    None
}

fn find(
    lines: &[&str],
    parent: Option<(usize, usize, usize)>,
    seg: &str,
) -> Option<(usize, usize, usize)> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let (start, parent_indent) = match parent {
        None => (0, None),
        Some((l, c, ind)) => {
            // Flow mapping on the parent's own line.
            let rest = &lines[l][c..];
            if let Some(colon) = rest.find(':') {
                let after = &rest[colon + 1..];
                if let Some(i) = key_at(after, seg) {
                    return Some((l, c + colon + 1 + i, ind));
                }
            }
            (l + 1, Some(ind))
        }
    };
    for (i, line) in lines.iter().enumerate().skip(start) {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let ind = indent(line);
        if let Some(p) = parent_indent
            && ind <= p
            && !content.starts_with('-')
        {
            return None;
        }
        if parent_indent.is_none() && ind > 0 {
            continue;
        }
        if let Some(at) = key_at(line, seg) {
            return Some((i, at, ind));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const Y: &str = "name: x\nservices:\n  backend:\n    instances: 0\n    overrides: { 3: { slowdown: -1 } }\nclients:\n  load:\n    target: backnd\nstrategies:\n  p2c: { balancer: { kind: least_request, choice_count: 1 } }\n";

    #[test]
    fn finds_block_and_flow_keys() {
        assert_eq!(locate(Y, "services.backend.instances"), Some((4, 5)));
        assert_eq!(locate(Y, "clients.load.target"), Some((8, 5)));
        assert_eq!(
            locate(Y, "services.backend.overrides.3.slowdown"),
            Some((5, 23))
        );
        assert_eq!(
            locate(Y, "strategies.p2c.balancer.choice_count"),
            Some((10, 43))
        );
        assert_eq!(locate_exact(Y, "strategies.p2c.timeout"), None);
        assert_eq!(locate(Y, "strategies.p2c.timeout"), Some((10, 3)));
    }
}
