//! Structured fuzzing of the scenario loader and a short run, seeded with every shipped
//! scenario: each case mutates a few lines (a value replaced by an edge case, a line dropped,
//! doubled or re-indented), then loads it. A refusal must name a field or a position; an
//! accepted scenario's estimate must be finite, and when it is small, one of its runs is
//! simulated and must stay within the run's bounds on events and windows (the deterministic
//! stand-ins for "bounded time" and "bounded memory"). No case may panic.
//!
//! `PROPTEST_CASES=5000 cargo test --release -p meshbench-sim --test it fuzz` runs a longer
//! campaign; CI runs the default 160 cases.

use std::path::{Path, PathBuf};

use meshbench_scenario::budget::{self, Driver, Limits};
use proptest::prelude::*;

/// Every shipped scenario, as (directory, text).
fn seeds() -> Vec<(PathBuf, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut out = Vec::new();
    for dir in [root.clone(), root.join("validation"), root.join("bench")] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for f in files {
            out.push((dir.clone(), std::fs::read_to_string(&f).unwrap()));
        }
    }
    out
}

/// Values that broke or nearly broke something once.
const EDGE: &[&str] = &[
    "0",
    "-1",
    "1",
    "18446744073709551615",
    "4294967296",
    "1e308",
    "-0.5",
    "NaN",
    ".inf",
    "1ns",
    "0s",
    "1000000s",
    "867240h",
    "1e300/s",
    "1e-12/s",
    "0/s",
    "1G/s",
    "[]",
    "{}",
    "\"\"",
    "~",
    "x",
    "../../etc/passwd",
    "[1, [2, [3]]]",
    "{ dist: zipf }",
    "0-999999999",
];

#[derive(Clone, Debug)]
enum Edit {
    /// Replace the value after the n-th `: ` (of a line) with an edge value.
    Value(usize, usize),
    /// Drop line n.
    Drop(usize),
    /// Write line n twice.
    Double(usize),
    /// Indent line n by two more spaces.
    Indent(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), 0..EDGE.len()).prop_map(|(l, v)| Edit::Value(l, v)),
        1 => any::<usize>().prop_map(Edit::Drop),
        1 => any::<usize>().prop_map(Edit::Double),
        1 => any::<usize>().prop_map(Edit::Indent),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        match *e {
            Edit::Value(n, v) => {
                // Lines with a value: `key: value`, also inside flow mappings.
                let with: Vec<usize> = (0..lines.len())
                    .filter(|&i| !lines[i].trim_start().starts_with('#') && lines[i].contains(": "))
                    .collect();
                if with.is_empty() {
                    continue;
                }
                let i = with[n % with.len()];
                let line = &lines[i];
                let colons: Vec<usize> = line.match_indices(": ").map(|(c, _)| c).collect();
                let c = colons[(n / with.len()) % colons.len()] + 2;
                let end = line[c..]
                    .find([',', '}', ' ', '#'])
                    .map_or(line.len(), |e| c + e.max(1));
                lines[i] = format!("{}{}{}", &line[..c], EDGE[v], &line[end..]);
            }
            Edit::Drop(n) => {
                lines.remove(n % lines.len());
            }
            Edit::Double(n) => {
                let i = n % lines.len();
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            Edit::Indent(n) => {
                let i = n % lines.len();
                lines[i].insert_str(0, "  ");
            }
        }
    }
    lines.join("\n") + "\n"
}

fn check_case(dir: &Path, text: &str) -> Result<(), TestCaseError> {
    let loaded = match meshbench_scenario::parse(text, "fuzz.yaml", dir) {
        Ok(l) => l,
        Err(e) => {
            // Every refusal says where: a field, or a line.
            prop_assert!(
                !e.field.is_empty() || e.line.is_some(),
                "refusal without a field or a line: {e}"
            );
            prop_assert!(!e.message.is_empty());
            return Ok(());
        }
    };
    let est = budget::estimate(&loaded, Driver::Sim, 2);
    prop_assert!(est.events.is_finite() && est.events >= 0.0, "{est:?}");
    prop_assert!(
        est.memory_bytes.is_finite() && est.memory_bytes > 0.0,
        "{est:?}"
    );
    if let Err(e) = budget::check_limits(&loaded, &est, Driver::Sim, &Limits::DEFAULT) {
        prop_assert!(!e.field.is_empty(), "soft refusal without a field: {e}");
        return Ok(());
    }
    // Small enough to run here: one run of the first point and strategy.
    let per_run = est.events / est.runs.max(1) as f64;
    if per_run > 2e6 || est.memory_bytes > 512.0 * 1024.0 * 1024.0 {
        return Ok(());
    }
    let r = meshbench_sim::run_one(&loaded, 0, 0, 0, loaded.scenario.seed);
    let sc = &loaded.points[0].scenario;
    let (max_windows, max_events) = budget::run_bounds(sc, &loaded.points[0].strategies[0].1);
    prop_assert!(r.sim_events <= max_events, "{} events", r.sim_events);
    prop_assert!(
        r.timeseries.len() as u64 <= max_windows + 1,
        "{} windows",
        r.timeseries.len()
    );
    prop_assert!(r.successes <= r.requests && r.requests <= r.latency.len().max(r.requests));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 160,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_shipped_scenarios_load_or_refuse_cleanly_and_runs_stay_bounded(
        seed in any::<usize>(),
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        let seeds = seeds();
        let (dir, text) = &seeds[seed % seeds.len()];
        check_case(dir, &apply(text, &edits))?;
    }
}

#[test]
fn the_reproducers_refuse_or_finish() {
    let base = &seeds()[0];
    for (from, to) in [
        ("sample_period: 1s", "sample_period: 1ns"),
        ("duration: 30s", "duration: 1000000s"),
        ("rate: 3000/s", "rate: 1e300/s"),
        ("rate: 3000/s", "rate: 1e-12/s"),
        ("mean: 5ms", "mean: 867240h"),
    ] {
        let text = seeds()
            .into_iter()
            .find(|(_, t)| t.contains("name: one-slow-backend"))
            .map_or_else(|| base.1.clone(), |s| s.1);
        assert!(text.contains(from), "{from}");
        check_case(&base.0, &text.replace(from, to)).unwrap();
    }
}
