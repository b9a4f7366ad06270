//! Thresholds: pass/fail conditions on a run's metrics, k6 style (`p99 < 20ms`,
//! `error_rate < 0.1%`, `throughput > 900/s`, `retry_amplification < 1.2`).
//!
//! In a scenario: `thresholds: { all: [...], <strategy>: [...] }` (`all` applies to every
//! strategy); on the command line: `meshbench check DIR --threshold 'p99<20ms'`. A threshold is
//! checked against a strategy's replication mean at every sweep point.

use std::collections::BTreeMap;

use mesh_core::Duration;

use crate::units::Rate;

/// A metric a threshold can name: the name written, the result metric it reads, and how its
/// value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricName {
    /// The names a threshold may use for it (the first is the short one).
    pub names: &'static [&'static str],
    /// The result metric (`summary.json`'s name).
    pub metric: &'static str,
    /// How a limit is written.
    pub unit: Unit,
}

/// How a threshold's limit is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A duration with a unit (`20ms`, `1.5s`); compared in milliseconds.
    Duration,
    /// A share: `0.1%` or `0.001`.
    Share,
    /// A rate with a unit (`900/s`).
    Rate,
    /// A plain number.
    Number,
}

/// Every metric thresholds can name.
pub const THRESHOLD_METRICS: [MetricName; 10] = [
    MetricName {
        names: &["p50", "p50_ms"],
        metric: "p50_ms",
        unit: Unit::Duration,
    },
    MetricName {
        names: &["p90", "p90_ms"],
        metric: "p90_ms",
        unit: Unit::Duration,
    },
    MetricName {
        names: &["p99", "p99_ms"],
        metric: "p99_ms",
        unit: Unit::Duration,
    },
    MetricName {
        names: &["p999", "p99.9", "p999_ms"],
        metric: "p999_ms",
        unit: Unit::Duration,
    },
    MetricName {
        names: &["mean", "mean_ms"],
        metric: "mean_ms",
        unit: Unit::Duration,
    },
    MetricName {
        names: &["throughput", "throughput_rps"],
        metric: "throughput_rps",
        unit: Unit::Rate,
    },
    MetricName {
        names: &["error_rate"],
        metric: "error_rate",
        unit: Unit::Share,
    },
    MetricName {
        names: &["timeout_rate"],
        metric: "timeout_rate",
        unit: Unit::Share,
    },
    MetricName {
        names: &["retry_amplification"],
        metric: "retry_amplification",
        unit: Unit::Number,
    },
    MetricName {
        names: &["requests"],
        metric: "requests",
        unit: Unit::Number,
    },
];

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    /// Whether `value op limit` holds.
    pub fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Op::Lt => value < limit,
            Op::Le => value <= limit,
            Op::Gt => value > limit,
            Op::Ge => value >= limit,
        }
    }

    /// As written.
    pub fn text(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// One parsed threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// The result metric it reads (`p99_ms`, ...).
    pub metric: &'static str,
    /// The comparison.
    pub op: Op,
    /// The limit, in the result metric's unit (ms, share, per second, number).
    pub limit: f64,
    /// As written, normalized (`p99 < 20ms`).
    pub text: String,
}

impl Threshold {
    /// Parses `metric op value` (spaces optional), naming the nearest metric for a typo.
    pub fn parse(s: &str) -> Result<Threshold, String> {
        let t = s.trim();
        let at = t.find(['<', '>']).ok_or_else(|| {
            format!(
                "`{t}`: expected `metric < value` or `metric > value` (for example `p99 < 20ms`)"
            )
        })?;
        let (name, rest) = t.split_at(at);
        let name = name.trim();
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else {
            (Op::Gt, &rest[1..])
        };
        let value = value.trim();
        let Some(m) = THRESHOLD_METRICS.iter().find(|m| m.names.contains(&name)) else {
            let all: Vec<&str> = THRESHOLD_METRICS.iter().map(|m| m.names[0]).collect();
            let names = THRESHOLD_METRICS
                .iter()
                .flat_map(|m| m.names.iter().copied());
            return Err(format!(
                "`{t}`: no metric `{name}` (metrics: {}){}",
                all.join(", "),
                crate::nearest(name, names)
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default()
            ));
        };
        let limit = match m.unit {
            Unit::Duration => value
                .parse::<Duration>()
                .map(|d| d.as_nanos() as f64 / 1e6)
                .map_err(|e| format!("`{t}`: {e}"))?,
            Unit::Rate => value
                .parse::<Rate>()
                .map(Rate::as_per_sec)
                .map_err(|e| format!("`{t}`: {e}"))?,
            Unit::Share => parse_share(value)
                .filter(|v| (0.0..=1.0).contains(v))
                .ok_or_else(|| {
                    format!(
                        "`{t}`: a share is a percentage (`0.1%`) or a fraction in 0..=1 (`0.001`)"
                    )
                })?,
            Unit::Number => value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("`{t}`: expected a number, got `{value}`"))?,
        };
        Ok(Threshold {
            metric: m.metric,
            op,
            limit,
            text: format!("{} {} {value}", m.names[0], op.text()),
        })
    }
}

/// A share written as a percentage (`0.1%`) or a fraction (`0.001`): finite and >= 0.
pub fn parse_share(v: &str) -> Option<f64> {
    let t = v.trim();
    match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok().map(|p| p / 100.0),
        None => t.parse::<f64>().ok(),
    }
    .filter(|x| x.is_finite() && *x >= 0.0)
}

/// The scenario's `thresholds:` section: `all` or a strategy name -> thresholds.
pub type Thresholds = BTreeMap<String, Vec<String>>;

/// The thresholds that apply to `strategy`: the `all` list, then its own.
pub fn thresholds_for(all: &Thresholds, strategy: &str) -> Vec<String> {
    all.get("all")
        .into_iter()
        .chain(all.get(strategy))
        .flatten()
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_names_typos() {
        let t = Threshold::parse("p99<20ms").unwrap();
        assert_eq!((t.metric, t.op, t.limit), ("p99_ms", Op::Lt, 20.0));
        assert_eq!(t.text, "p99 < 20ms");
        assert_eq!(Threshold::parse("error_rate < 0.1%").unwrap().limit, 0.001);
        assert_eq!(Threshold::parse("error_rate <= 0.02").unwrap().op, Op::Le);
        assert_eq!(Threshold::parse("throughput > 900/s").unwrap().limit, 900.0);
        assert_eq!(Threshold::parse("p99.9 < 1.5s").unwrap().limit, 1500.0);
        assert_eq!(
            Threshold::parse("retry_amplification < 1.2").unwrap().limit,
            1.2
        );
        let e = Threshold::parse("p98 < 20ms").unwrap_err();
        assert!(
            e.contains("no metric `p98`") && e.contains("did you mean"),
            "{e}"
        );
        assert!(Threshold::parse("p99 < 20").unwrap_err().contains("unit"));
        assert!(Threshold::parse("error_rate < 3").is_err());
        assert!(Threshold::parse("p99 = 3ms").is_err());
        assert!(Op::Lt.holds(1.0, 2.0) && !Op::Gt.holds(1.0, 2.0));
    }
}
