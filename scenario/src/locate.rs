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

/// The dotted path of the block-mapping keys that enclose 1-based `line` (the last key at or
/// above it at each smaller indentation): names the field around a syntax error. Flow
/// mappings and list items are not entered; the path stops at the block key holding them.
pub(crate) fn path_at(source: &str, line: usize) -> String {
    let mut stack: Vec<(usize, String)> = Vec::new();
    for l in source.lines().take(line) {
        let content = l.trim_start_matches(' ');
        if content.is_empty() || content.starts_with(['#', '-']) {
            continue;
        }
        let indent = l.len() - content.len();
        let Some(colon) = content.find(':') else {
            continue;
        };
        let key = content[..colon].trim().trim_matches(['"', '\'']);
        if key.is_empty() || key.contains([' ', '{', '[', ',']) {
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_owned()));
    }
    stack
        .into_iter()
        .map(|(_, k)| k)
        .collect::<Vec<_>>()
        .join(".")
}

fn walk(source: &str, path: &str) -> Option<(usize, usize, bool)> {
    let lines: Vec<&str> = source.lines().collect();
    // Current position: line index, column of the key, indentation of its line.
    let mut found: Option<(usize, usize, usize)> = None;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        if seg.chars().all(|c| c.is_ascii_digit()) && found.is_some() {
            // An integer key, or a block-list index; else stay put.
            if let Some(next) = find(&lines, found, seg)
                .or_else(|| seg.parse().ok().and_then(|n| find_item(&lines, found, n)))
            {
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
            // A list item's own line (`- key: v` or `- { key: v }`): its first key too.
            let rest = &lines[l][c..];
            if rest.starts_with('-')
                && let Some(i) = key_at(rest, seg)
            {
                return Some((l, c + i, ind));
            }
            // Flow mapping on the parent's own line.
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

/// The `n`th item (0-based) of the block list under `parent`: the position of its `-`.
fn find_item(
    lines: &[&str],
    parent: Option<(usize, usize, usize)>,
    n: usize,
) -> Option<(usize, usize, usize)> {
    let (l, _, parent_indent) = parent?;
    let mut item_indent = None;
    let mut seen = 0;
    for (i, line) in lines.iter().enumerate().skip(l + 1) {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let ind = line.len() - content.len();
        let is_item = content == "-" || content.starts_with("- ");
        // Items may sit at the parent key's own indentation (`faults:` then `- ...`).
        if ind < parent_indent || (ind == parent_indent && !is_item) {
            return None;
        }
        if !is_item || *item_indent.get_or_insert(ind) != ind {
            continue;
        }
        if seen == n {
            return Some((i, ind, ind));
        }
        seen += 1;
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
        let list =
            "faults:\n  - { at: 1s, kind: crash }\n  # gap\n  - at: 2s\n    factor: -1\n- x\n";
        assert_eq!(locate(list, "faults.0.at"), Some((2, 7)));
        assert_eq!(locate(list, "faults.0.kind"), Some((2, 15)));
        assert_eq!(locate(list, "faults.1.at"), Some((4, 5)));
        assert_eq!(locate(list, "faults.1.factor"), Some((5, 5)));
        assert_eq!(locate(list, "faults.1"), Some((4, 3)));
        let flush = "faults:\n- { at: 1s }\n- { at: 2s, rate: 3 }\nname: y\n";
        assert_eq!(locate(flush, "faults.1.rate"), Some((3, 13)));
        assert_eq!(locate(Y, "strategies.p2c.timeout"), Some((10, 3)));
    }

    #[test]
    fn path_at_names_the_keys_around_a_line() {
        let y = "name: t\nstrategies:\n  rr:\n    balancer: { kind: x: y }\n  p2c: {}\nservices:\n";
        assert_eq!(path_at(y, 4), "strategies.rr.balancer");
        assert_eq!(path_at(y, 5), "strategies.p2c");
        assert_eq!(path_at(y, 6), "services");
        assert_eq!(path_at(y, 1), "name");
    }
}
