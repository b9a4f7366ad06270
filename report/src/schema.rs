//! `summary.json`: one typed schema, written and read through the same serde types by every
//! command (`run`, `live`, `report`, `compare`, `merge`) and by the tests.
//!
//! The file carries [`SCHEMA_VERSION`]; a reader refuses any other version with an error that
//! says which one it found, instead of guessing at fields. Numbers are rounded to six decimals
//! when written (so equal results give equal bytes); non-finite values are written as 0.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{RunInfo, RunResult, StrategySummary};

/// The version of `summary.json` this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole of `summary.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// [`SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    /// The run set as a whole.
    #[serde(flatten)]
    pub info: RunInfo,
    /// One entry per sweep point x strategy, points in order, strategies in file order.
    pub strategies: Vec<StrategyEntry>,
}

/// One strategy at one sweep point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyEntry {
    /// Strategy name.
    pub strategy: String,
    /// Sweep point index (0 without a sweep).
    pub point: usize,
    /// The sweep point's values, one per sweep path.
    pub coords: Vec<String>,
    /// Replications aggregated.
    pub replications: usize,
    /// Metric name ([`crate::METRICS`]) -> value over replications.
    pub metrics: BTreeMap<String, MetricEntry>,
    /// Failed measured requests by class, summed over replications.
    pub failures: BTreeMap<String, u64>,
    /// Policy events by kind, summed over replications.
    pub events: BTreeMap<String, u64>,
}

/// A metric over replications.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricEntry {
    /// Mean over replications.
    pub mean: f64,
    /// Half-width of the 95% confidence interval (Student t); absent with one replication.
    pub ci95: Option<f64>,
    /// Each replication's value.
    pub values: Vec<f64>,
}

/// Why `summary.json` could not be read.
#[derive(Debug)]
pub struct SchemaError {
    /// The file.
    pub file: String,
    /// What is wrong, with the line and column when the JSON is malformed.
    pub message: String,
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

impl std::error::Error for SchemaError {}

fn round(v: f64) -> f64 {
    if v.is_finite() {
        (v * 1e6).round() / 1e6
    } else {
        0.0
    }
}

impl Summary {
    /// The summary of a run set.
    pub fn new(info: &RunInfo, summaries: &[StrategySummary], runs: &[RunResult]) -> Self {
        let strategies = summaries
            .iter()
            .map(|s| {
                let mut failures = BTreeMap::new();
                let mut events = BTreeMap::new();
                for r in runs
                    .iter()
                    .filter(|r| r.strategy == s.strategy && r.point == s.point)
                {
                    for (k, v) in &r.failures {
                        *failures.entry(k.clone()).or_insert(0) += v;
                    }
                    for (k, v) in &r.events {
                        *events.entry(k.clone()).or_insert(0) += v;
                    }
                }
                StrategyEntry {
                    strategy: s.strategy.clone(),
                    point: s.point,
                    coords: s.coords.clone(),
                    replications: s.replications,
                    metrics: s
                        .metrics
                        .iter()
                        .map(|(n, m)| {
                            (
                                n.clone(),
                                MetricEntry {
                                    mean: round(m.mean),
                                    ci95: m.ci95.map(round),
                                    values: m.values.iter().map(|&v| round(v)).collect(),
                                },
                            )
                        })
                        .collect(),
                    failures,
                    events,
                }
            })
            .collect();
        Summary {
            schema_version: SCHEMA_VERSION,
            info: info.clone(),
            strategies,
        }
    }

    /// Writes it as `dir/summary.json` (pretty, with a final newline).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        self.write_to(&dir.join("summary.json"))
    }

    /// Writes it to `path` (pretty, with a final newline).
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        std::fs::write(path, text)
    }

    /// Reads `dir/summary.json`, refusing other schema versions.
    pub fn read(dir: &Path) -> Result<Self, SchemaError> {
        let path = dir.join("summary.json");
        let file = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|e| SchemaError {
            file: file.clone(),
            message: format!("cannot read it: {e}"),
        })?;
        Self::parse(&bytes, &file)
    }

    /// Parses `summary.json` text; `file` names it in errors.
    pub fn parse(bytes: &[u8], file: &str) -> Result<Self, SchemaError> {
        let at = |message: String| SchemaError {
            file: file.to_owned(),
            message,
        };
        #[derive(Deserialize)]
        struct Version {
            schema_version: Option<u32>,
        }
        let v: Version = serde_json::from_slice(bytes)
            .map_err(|e| at(format!("not a meshbench summary: {e}")))?;
        match v.schema_version {
            Some(SCHEMA_VERSION) => {}
            Some(n) => {
                return Err(at(format!(
                    "schema_version {n}, but this meshbench reads version {SCHEMA_VERSION}: rerun the scenario with this build, or read it with the build that wrote it"
                )));
            }
            None => {
                return Err(at(format!(
                    "no schema_version: written by an older meshbench (this one reads version {SCHEMA_VERSION}); rerun the scenario to regenerate it"
                )));
            }
        }
        let summary: Summary = serde_json::from_slice(bytes).map_err(|e| at(e.to_string()))?;
        // Values meshbench never writes (non-finite, or beyond 1e15 in any unit) would only
        // stretch plots and tables into nonsense: refuse them by name.
        for st in &summary.strategies {
            for (name, m) in &st.metrics {
                let bad = std::iter::once(m.mean)
                    .chain(m.ci95)
                    .chain(m.values.iter().copied())
                    .find(|v| !v.is_finite() || v.abs() > 1e15);
                if let Some(v) = bad {
                    return Err(at(format!(
                        "strategy `{}` (point {}), metric `{name}`: {v:e} is not a value meshbench writes (finite, at most 1e15)",
                        st.strategy, st.point
                    )));
                }
            }
        }
        Ok(summary)
    }

    /// The entry of `strategy` at sweep point `point`.
    pub fn entry(&self, strategy: &str, point: usize) -> Option<&StrategyEntry> {
        self.strategies
            .iter()
            .find(|s| s.strategy == strategy && s.point == point)
    }

    /// The sweep point's values of point `point` (empty without a sweep).
    pub fn coords_of(&self, point: usize) -> Vec<String> {
        self.strategies
            .iter()
            .find(|s| s.point == point)
            .map(|s| s.coords.clone())
            .unwrap_or_default()
    }
}

impl MetricEntry {
    /// Whether this and `other` differ at the 5% level by Welch's t-test on their replications
    /// (the standard errors recovered from the 95% CIs); `None` when either side has fewer than
    /// two replications, so there is nothing to test with.
    pub fn differs_from(&self, other: &MetricEntry) -> Option<bool> {
        let (na, nb) = (self.values.len(), other.values.len());
        let (ca, cb) = (self.ci95?, other.ci95?);
        if na < 2 || nb < 2 {
            return None;
        }
        let (sa, sb) = (ca / crate::t_975(na - 1), cb / crate::t_975(nb - 1));
        let var = sa * sa + sb * sb;
        if var == 0.0 {
            return Some(self.mean != other.mean);
        }
        let df = var.powi(2) / (sa.powi(4) / (na - 1) as f64 + sb.powi(4) / (nb - 1) as f64);
        let t = (self.mean - other.mean).abs() / var.sqrt();
        Some(t > crate::t_975((df.floor() as usize).max(1)))
    }
}

/// The relative change from `a` to `b`: 0 when equal (0 -> 0 included), infinite (signed)
/// from 0 to anything else.
pub fn relative_change(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else if a == 0.0 {
        f64::INFINITY.copysign(b)
    } else {
        (b - a) / a.abs()
    }
}

impl StrategyEntry {
    /// A metric's mean (`NaN` when absent).
    pub fn mean(&self, metric: &str) -> f64 {
        self.metrics.get(metric).map_or(f64::NAN, |m| m.mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_versions_and_old_files_are_refused_by_name() {
        let e = Summary::parse(br#"{"schema_version": 9}"#, "s.json").unwrap_err();
        assert!(e.message.contains("schema_version 9"), "{e}");
        let e = Summary::parse(br#"{"scenario": "x"}"#, "s.json").unwrap_err();
        assert!(e.message.contains("no schema_version"), "{e}");
        let e = Summary::parse(b"{\"schema_version\": 1,", "s.json").unwrap_err();
        assert!(e.to_string().starts_with("s.json: "), "{e}");
    }
}
