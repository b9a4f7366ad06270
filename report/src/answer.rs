//! The answer a report opens with: per metric and sweep point, the best strategy and whether
//! its lead over the next best is significant.
//!
//! Two tests, both over the replications' values: the 95% confidence intervals (Student t, as
//! in the comparison table) do not overlap, or Welch's unequal-variances t-test rejects equal
//! means at the 5% level. Non-overlapping intervals imply the Welch test's rejection for all but
//! pathological variances, so "significant" means Welch's p < 0.05 and the text says whether the
//! intervals are also apart. With one replication there is no interval and no test.

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::schema::{MetricEntry, StrategyEntry};

/// A metric the answer ranks strategies on.
#[derive(Clone, Copy, Debug)]
pub struct Ranked {
    /// Its name in [`crate::METRICS`].
    pub metric: &'static str,
    /// How a reader calls it.
    pub label: &'static str,
    /// Whether a lower value is better.
    pub lower_is_better: bool,
}

/// The metrics the answer ranks, in the order it states them: tail latency and errors first
/// (the questions the shipped scenarios ask), then throughput, the mean and the cost in attempts.
pub const RANKED: [Ranked; 5] = [
    Ranked {
        metric: "p99_ms",
        label: "p99 latency of successes",
        lower_is_better: true,
    },
    Ranked {
        metric: "error_rate",
        label: "error rate",
        lower_is_better: true,
    },
    Ranked {
        metric: "throughput_rps",
        label: "successes per second",
        lower_is_better: false,
    },
    Ranked {
        metric: "mean_ms",
        label: "mean latency of successes",
        lower_is_better: true,
    },
    Ranked {
        metric: "retry_amplification",
        label: "attempts per request",
        lower_is_better: true,
    },
];

/// How sure the lead is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lead {
    /// Every strategy has the same value (all zero errors, say).
    Tie,
    /// Welch's p < 0.05; `apart` when the 95% intervals do not overlap either.
    Significant {
        /// Welch's two-sided p-value.
        p: f64,
        /// The 95% confidence intervals do not overlap.
        apart: bool,
    },
    /// Welch's p >= 0.05.
    NotSignificant {
        /// Welch's two-sided p-value.
        p: f64,
    },
    /// Fewer than two replications: no interval, no test.
    Untested,
}

/// The best strategy on one metric at one sweep point.
#[derive(Clone, Debug)]
pub struct Best<'a> {
    /// The metric.
    pub ranked: Ranked,
    /// The best strategy's summary.
    pub best: &'a StrategyEntry,
    /// The next best, when there are two strategies or more.
    pub runner_up: Option<&'a StrategyEntry>,
    /// How sure the lead is.
    pub lead: Lead,
}

/// Welch's two-sided p-value for equal means of two samples; `None` with fewer than two values
/// in either. Two constant samples with different means give 0, equal ones 1.
pub fn welch_p(a: &[f64], b: &[f64]) -> Option<f64> {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let var =
        |x: &[f64], m: f64| x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (va, vb) = (var(a, ma) / na, var(b, mb) / nb);
    let se2 = va + vb;
    if se2 <= 0.0 || !se2.is_finite() {
        return Some(if ma == mb { 1.0 } else { 0.0 });
    }
    let t = (ma - mb).abs() / se2.sqrt();
    let df = se2 * se2 / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df.max(1.0)).ok()?;
    Some((2.0 * (1.0 - dist.cdf(t))).clamp(0.0, 1.0))
}

fn apart(a: &MetricEntry, b: &MetricEntry) -> bool {
    match (a.ci95, b.ci95) {
        (Some(x), Some(y)) => (a.mean - b.mean).abs() > x + y,
        _ => false,
    }
}

/// The best strategy per ranked metric at `point`, from the summaries of that point (in file
/// order; the first of equals wins). A metric every strategy reports as 1 attempt per request
/// or that no strategy has is left out.
pub fn best_at<'a>(strategies: &[&'a StrategyEntry], ranked: Ranked) -> Option<Best<'a>> {
    let value = |s: &StrategyEntry| s.metrics.get(ranked.metric).map(|m| m.mean);
    let mut order: Vec<&'a StrategyEntry> = strategies
        .iter()
        .copied()
        .filter(|s| value(s).is_some_and(f64::is_finite))
        .collect();
    if order.is_empty() {
        return None;
    }
    // Stable: the first of equals (in file order) stays first.
    order.sort_by(|a, b| {
        let (x, y) = (value(a).unwrap_or(0.0), value(b).unwrap_or(0.0));
        if ranked.lower_is_better {
            x.total_cmp(&y)
        } else {
            y.total_cmp(&x)
        }
    });
    let best = order[0];
    let runner_up = order.get(1).copied();
    let lead = match runner_up {
        None => Lead::Untested,
        Some(r) => {
            let (a, b) = (
                best.metrics.get(ranked.metric)?,
                r.metrics.get(ranked.metric)?,
            );
            if order.iter().all(|s| value(s) == value(best)) {
                Lead::Tie
            } else {
                match welch_p(&a.values, &b.values) {
                    None => Lead::Untested,
                    Some(p) if p < 0.05 => Lead::Significant {
                        p,
                        apart: apart(a, b),
                    },
                    Some(p) => Lead::NotSignificant { p },
                }
            }
        }
    };
    Some(Best {
        ranked,
        best,
        runner_up,
        lead,
    })
}

/// The ranked metrics worth stating for these strategies: all of [`RANKED`], less attempts per
/// request when every strategy sends exactly one attempt per request.
pub fn ranked_for(strategies: &[&StrategyEntry]) -> Vec<Ranked> {
    RANKED
        .iter()
        .copied()
        .filter(|r| {
            r.metric != "retry_amplification"
                || strategies.iter().any(|s| {
                    s.metrics
                        .get(r.metric)
                        .is_some_and(|m| (m.mean - 1.0).abs() > 1e-9)
                })
        })
        .collect()
}

/// A p-value as text: `p < 0.001` or `p = 0.032`.
pub fn p_text(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".to_owned()
    } else {
        format!("p = {p:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, metric: &str, values: &[f64]) -> StrategyEntry {
        let (mean, ci95) = crate::mean_ci(values);
        StrategyEntry {
            point: 0,
            coords: Vec::new(),
            strategy: name.to_owned(),
            replications: values.len(),
            metrics: [(
                metric.to_owned(),
                MetricEntry {
                    mean,
                    ci95,
                    values: values.to_vec(),
                },
            )]
            .into(),
            failures: Default::default(),
            events: Default::default(),
        }
    }

    #[test]
    fn welch_matches_a_worked_example() {
        // Two samples of 5 with means 20 and 22, sample variances 2.5 and 2.5: t = 2, df = 8,
        // two-sided p = 0.0805 (Student t with 8 degrees of freedom).
        let a = [18.0, 19.0, 20.0, 21.0, 22.0];
        let b = [20.0, 21.0, 22.0, 23.0, 24.0];
        let p = welch_p(&a, &b).unwrap();
        assert!((p - 0.0805).abs() < 5e-4, "{p}");
        assert_eq!(welch_p(&a, &a), Some(1.0));
        assert_eq!(welch_p(&[1.0, 1.0], &[2.0, 2.0]), Some(0.0));
        assert_eq!(welch_p(&[1.0], &[2.0, 3.0]), None);
    }

    #[test]
    fn best_follows_the_metric_direction_and_tests_the_lead() {
        let fast = summary("fast", "p99_ms", &[10.0, 10.1, 9.9]);
        let slow = summary("slow", "p99_ms", &[20.0, 20.2, 19.8]);
        let close = summary("close", "p99_ms", &[10.05, 9.8, 10.4]);
        let b = best_at(&[&slow, &fast], RANKED[0]).unwrap();
        assert_eq!(b.best.strategy, "fast");
        assert!(
            matches!(b.lead, Lead::Significant { apart: true, .. }),
            "{:?}",
            b.lead
        );
        let b = best_at(&[&slow, &close, &fast], RANKED[0]).unwrap();
        assert_eq!(b.runner_up.unwrap().strategy, "close");
        assert!(
            matches!(b.lead, Lead::NotSignificant { .. }),
            "{:?}",
            b.lead
        );
        // Higher is better for throughput.
        let lo = summary("lo", "throughput_rps", &[100.0, 101.0]);
        let hi = summary("hi", "throughput_rps", &[200.0, 201.0]);
        assert_eq!(best_at(&[&lo, &hi], RANKED[2]).unwrap().best.strategy, "hi");
        // Equal everywhere: a tie, the first in file order named.
        let z1 = summary("a", "error_rate", &[0.0, 0.0]);
        let z2 = summary("b", "error_rate", &[0.0, 0.0]);
        let b = best_at(&[&z1, &z2], RANKED[1]).unwrap();
        assert_eq!((b.best.strategy.as_str(), b.lead), ("a", Lead::Tie));
    }
}
