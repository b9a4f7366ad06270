//! `meshbench check`: thresholds and a baseline comparison on a result directory, as a
//! markdown table (fit for `$GITHUB_STEP_SUMMARY`), optional JUnit XML, and an exit code.
//!
//! A baseline regression is flagged only when the change is in the worse direction, beyond the
//! metric's tolerance, and real: with replications on both sides, Welch's t-test rejects equal
//! means at 5% (two-sided); with one replication, the tolerance alone decides (a seeded
//! simulation reruns exactly, so an unchanged candidate compares as equal, change 0).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use meshbench_report::{StrategyEntry, Summary};

use crate::writeln_ok;
use meshbench_scenario::thresholds::{Threshold, thresholds_for};

/// One checked condition.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    /// Strategy, with the sweep point's values when there is a sweep.
    pub(crate) strategy: String,
    /// What was checked (`p99 < 20ms`, `p99_ms vs baseline (±5%)`).
    pub(crate) check: String,
    /// The candidate's value.
    pub(crate) value: String,
    /// The limit, or the baseline's value and the change.
    pub(crate) against: String,
    /// Whether it passed.
    pub(crate) passed: bool,
}

fn label(s: &StrategyEntry) -> String {
    if s.coords.is_empty() {
        s.strategy.clone()
    } else {
        format!("{} @ {}", s.strategy, s.coords.join(", "))
    }
}

fn show(metric: &str, v: f64) -> String {
    if metric.ends_with("_ms") {
        format!("{v:.3} ms")
    } else if metric == "throughput_rps" {
        format!("{v:.1}/s")
    } else if metric.ends_with("_rate") {
        format!("{:.4}%", 100.0 * v)
    } else {
        format!("{v:.4}")
    }
}

/// Checks every strategy (at every sweep point) against the thresholds that apply to it:
/// `scenario` (the `thresholds:` section, by strategy or `all`) and `extra` (for all).
/// A strategy whose every measured request failed fails loudly, thresholds or not.
pub(crate) fn thresholds(
    summary: &Summary,
    scenario: &BTreeMap<String, Vec<String>>,
    extra: &[Threshold],
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for s in &summary.strategies {
        let mut list: Vec<Threshold> = thresholds_for(scenario, &s.strategy)
            .iter()
            .map(|t| Threshold::parse(t))
            .collect::<Result<_, _>>()?;
        list.extend(extra.iter().cloned());
        let requests = s.mean("requests");
        let errors = s.mean("error_rate");
        if requests > 0.0 && errors >= 1.0 {
            rows.push(Row {
                strategy: label(s),
                check: "any request succeeds".into(),
                value: "every request failed".into(),
                against: format!("failures: {:?}", s.failures),
                passed: false,
            });
        } else if requests == 0.0 {
            rows.push(Row {
                strategy: label(s),
                check: "any request measured".into(),
                value: "no request finished".into(),
                against: "-".into(),
                passed: false,
            });
        }
        for t in list {
            let v = s.mean(t.metric);
            rows.push(Row {
                strategy: label(s),
                check: t.text.clone(),
                value: show(t.metric, v),
                against: format!("{} {}", t.op.text(), show(t.metric, t.limit)),
                passed: v.is_finite() && t.op.holds(v, t.limit),
            });
        }
    }
    Ok(rows)
}

/// Metrics a baseline compares, with the direction that is worse (`true`: higher is worse).
pub(crate) const COMPARED: [(&str, bool); 8] = [
    ("p50_ms", true),
    ("p90_ms", true),
    ("p99_ms", true),
    ("p999_ms", true),
    ("mean_ms", true),
    ("throughput_rps", false),
    ("error_rate", true),
    ("retry_amplification", true),
];

/// Compares the candidate with the baseline, metric by metric; `tolerance` is the default
/// allowed relative change, `per_metric` overrides it.
pub(crate) fn baseline(
    candidate: &Summary,
    base: &Summary,
    tolerance: f64,
    per_metric: &BTreeMap<String, f64>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for s in &candidate.strategies {
        let Some(b) = base
            .strategies
            .iter()
            .find(|b| b.strategy == s.strategy && b.coords == s.coords)
        else {
            rows.push(Row {
                strategy: label(s),
                check: "in the baseline".into(),
                value: "-".into(),
                against: "missing from the baseline".into(),
                passed: false,
            });
            continue;
        };
        for (metric, higher_is_worse) in COMPARED {
            let (Some(x), Some(y)) = (b.metrics.get(metric), s.metrics.get(metric)) else {
                continue;
            };
            let tol = per_metric.get(metric).copied().unwrap_or(tolerance);
            let change = meshbench_report::relative_change(x.mean, y.mean);
            let worse = if higher_is_worse { change } else { -change };
            // With one replication there is nothing to test: the tolerance decides.
            let regressed = worse > tol && x.differs_from(y).unwrap_or(true);
            let change_text = if change.is_infinite() {
                "from 0".to_owned()
            } else {
                format!("{:+.2}%", 100.0 * change)
            };
            rows.push(Row {
                strategy: label(s),
                check: format!("{metric} vs baseline (±{:.1}%)", 100.0 * tol),
                value: show(metric, y.mean),
                against: format!("{} ({change_text})", show(metric, x.mean)),
                passed: !regressed,
            });
        }
    }
    rows
}

/// The rows as a markdown table, failures first marked.
pub(crate) fn markdown(title: &str, rows: &[Row]) -> String {
    let failed = rows.iter().filter(|r| !r.passed).count();
    let mut out = format!(
        "### meshbench check: {title}\n\n{} of {} checks passed{}\n\n| result | strategy | check | value | limit or baseline |\n|---|---|---|---|---|\n",
        rows.len() - failed,
        rows.len(),
        if failed > 0 {
            format!(", **{failed} failed**")
        } else {
            String::new()
        }
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            if r.passed { "pass" } else { "**FAIL**" },
            r.strategy.replace('|', "\\|"),
            r.check.replace('|', "\\|"),
            r.value,
            r.against.replace('|', "\\|")
        );
    }
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The rows as JUnit XML: one test case per check, named after it, in a suite per run.
pub(crate) fn junit(title: &str, rows: &[Row]) -> String {
    let failed = rows.iter().filter(|r| !r.passed).count();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n<testsuite name=\"meshbench check: {}\" tests=\"{}\" failures=\"{failed}\">\n",
        xml(title),
        rows.len()
    );
    for r in rows {
        let _ = write!(
            out,
            "  <testcase classname=\"{}\" name=\"{}\"",
            xml(&r.strategy),
            xml(&r.check)
        );
        if r.passed {
            out.push_str("/>\n");
        } else {
            let _ = writeln!(
                out,
                "><failure message=\"{} (limit or baseline: {})\"/></testcase>",
                xml(&r.value),
                xml(&r.against)
            );
        }
    }
    out.push_str("</testsuite>\n</testsuites>\n");
    out
}

/// Where a baseline lives: a result directory, or a `summary.json` file.
pub(crate) fn baseline_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_owned()
    }
}

/// Reads a baseline (a result directory or a summary.json).
pub(crate) fn read_baseline(path: &Path) -> Result<Summary, String> {
    let file = baseline_file(path);
    let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    Summary::parse(&bytes, &file.display().to_string()).map_err(|e| e.to_string())
}

/// Parses `--tolerance 5%` and `--tolerance p99_ms=10%` (or `p99=10%`) values.
pub(crate) fn tolerances(args: &[String]) -> Result<(f64, BTreeMap<String, f64>), String> {
    let share = |v: &str| -> Result<f64, String> {
        meshbench_scenario::thresholds::parse_share(v)
            .ok_or_else(|| format!("--tolerance `{v}`: expected a share such as `5%` or `0.05`"))
    };
    let mut default = 0.05;
    let mut per = BTreeMap::new();
    for a in args {
        match a.split_once('=') {
            None => default = share(a)?,
            Some((m, v)) => {
                let m = m.trim();
                let metric = meshbench_scenario::thresholds::THRESHOLD_METRICS
                    .iter()
                    .find(|x| x.names.contains(&m))
                    .map(|x| x.metric)
                    .ok_or_else(|| {
                        let names = meshbench_scenario::thresholds::THRESHOLD_METRICS
                            .iter()
                            .flat_map(|x| x.names.iter().copied());
                        format!(
                            "--tolerance `{a}`: no metric `{m}`{}",
                            meshbench_scenario::nearest(m, names)
                                .map(|n| format!("; did you mean `{n}`?"))
                                .unwrap_or_default()
                        )
                    })?;
                per.insert(metric.to_owned(), share(v)?);
            }
        }
    }
    Ok((default, per))
}

/// The scenario's thresholds as a result directory holds them (`scenario.yaml`).
pub(crate) fn scenario_thresholds(dir: &Path) -> Result<BTreeMap<String, Vec<String>>, String> {
    let file = dir.join("scenario.yaml");
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Ok(BTreeMap::new());
    };
    #[derive(serde::Deserialize)]
    struct Only {
        #[serde(default)]
        thresholds: BTreeMap<String, Vec<String>>,
    }
    let doc: Only = yaml_serde::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(doc.thresholds)
}

/// The scenario's thresholds (and the default check that some request succeeded) on a run
/// just written: prints what failed and returns whether everything passed.
pub(crate) fn end_of_run_checks(
    dir: &Path,
    sc: &meshbench_scenario::Scenario,
    quiet: bool,
) -> anyhow::Result<bool> {
    let summary = meshbench_report::Summary::read(dir).map_err(|e| anyhow::anyhow!(e))?;
    let rows = self::thresholds(&summary, &sc.thresholds, &[]).map_err(|e| anyhow::anyhow!(e))?;
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.passed).collect();
    if !failed.is_empty() {
        eprintln!(
            "FAILED: {} of {} checks (exit code 1):",
            failed.len(),
            rows.len()
        );
        for r in &failed {
            eprintln!(
                "  {}: {}: {} (limit or baseline: {})",
                r.strategy, r.check, r.value, r.against
            );
        }
    } else if !quiet && !rows.is_empty() {
        eprintln!("thresholds: all {} passed", rows.len());
    }
    Ok(failed.is_empty())
}

/// `meshbench check`: returns whether every check passed.
pub(crate) fn check_command(
    dir: &Path,
    extra: &[String],
    baseline: Option<&Path>,
    tolerance: &[String],
    junit: Option<&Path>,
    markdown: Option<&Path>,
    update_baseline: bool,
) -> anyhow::Result<bool> {
    let summary = meshbench_report::Summary::read(dir).map_err(|e| anyhow::anyhow!(e))?;
    if update_baseline {
        let path = self::baseline_file(baseline.expect("clap requires --baseline"));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        summary
            .write_to(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        writeln_ok(
            &mut std::io::stdout().lock(),
            &format!("baseline written to {}", path.display()),
        )?;
        return Ok(true);
    }
    let extra: Vec<meshbench_scenario::thresholds::Threshold> = extra
        .iter()
        .map(|t| meshbench_scenario::thresholds::Threshold::parse(t))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--threshold {e}"))?;
    let scenario = self::scenario_thresholds(dir).map_err(|e| anyhow::anyhow!(e))?;
    let mut rows = self::thresholds(&summary, &scenario, &extra).map_err(|e| anyhow::anyhow!(e))?;
    if let Some(b) = baseline {
        let base = self::read_baseline(b).map_err(|e| anyhow::anyhow!(e))?;
        let (default, per) = self::tolerances(tolerance).map_err(|e| anyhow::anyhow!(e))?;
        rows.extend(self::baseline(&summary, &base, default, &per));
    } else if !tolerance.is_empty() {
        anyhow::bail!("--tolerance needs --baseline");
    }
    if rows.is_empty() {
        anyhow::bail!(
            "nothing to check in {}: give --threshold or --baseline, or `thresholds:` in the scenario",
            dir.display()
        );
    }
    let title = summary.info.scenario.clone();
    let table = self::markdown(&title, &rows);
    write!(std::io::stdout().lock(), "{table}")?;
    if let Some(path) = markdown {
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(table.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = junit {
        std::fs::write(path, self::junit(&title, &rows))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(rows.iter().all(|r| r.passed))
}
