//! Service-time and latency distributions, sampled by inverse transform from one uniform draw.
//!
//! Sampling from a single `u` in (0, 1) is what makes common random numbers work: the
//! simulator derives `u` from the request and attempt, not from a stream, so every strategy sees
//! the same base draws whatever it does with them.

use std::sync::Arc;

use mesh_core::Duration;
use serde::{Deserialize, Serialize};

/// A distribution of durations. In files: `{dist: exponential, mean: 5ms}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "dist",
    rename_all = "snake_case",
    deny_unknown_fields,
    try_from = "DistSpec"
)]
pub enum Dist {
    /// Always `value`.
    Constant {
        /// The value.
        value: Duration,
    },
    /// Exponential with this mean.
    Exponential {
        /// The mean.
        mean: Duration,
    },
    /// Uniform between `min` and `max`.
    Uniform {
        /// Lower bound.
        min: Duration,
        /// Upper bound, >= min.
        max: Duration,
    },
    /// Lognormal, given by `median` and `p99`, or by `mu` and `sigma` of the natural log of the
    /// value in milliseconds.
    Lognormal {
        /// The median.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        median: Option<Duration>,
        /// The 99th percentile, > median.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        p99: Option<Duration>,
        /// Mean of ln(value in ms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mu: Option<f64>,
        /// Standard deviation of ln(value in ms), > 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sigma: Option<f64>,
    },
    /// Pareto: `P(X > x) = (scale / x)^shape` for `x >= scale`.
    Pareto {
        /// The minimum value.
        scale: Duration,
        /// The tail index, > 0 (the mean is finite only above 1).
        shape: f64,
    },
    /// A weighted mixture (bimodal and more). Alias `bimodal`.
    Mixture {
        /// The components; weights need not sum to 1.
        components: Vec<Component>,
    },
    /// Samples read from a CSV file (one per line; a header such as `latency_ms` gives the unit
    /// of plain numbers, otherwise each value carries its unit like `1.2ms`). The path is
    /// relative to the scenario file.
    Empirical {
        /// The CSV file.
        file: String,
        /// The sorted samples in ns, once loaded.
        #[serde(skip)]
        samples: Arc<Vec<u64>>,
    },
}

/// One mixture component: `{weight: 0.9, dist: {dist: exponential, mean: 2ms}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Relative weight, > 0.
    pub weight: f64,
    /// The component's distribution.
    pub dist: Box<Dist>,
}

/// The kinds of [`Dist`], as files name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DistKind {
    Constant,
    Exponential,
    Uniform,
    Lognormal,
    Pareto,
    #[serde(alias = "bimodal")]
    Mixture,
    Empirical,
}

/// A distribution as written: a plain struct, so a bad field's error carries its exact place;
/// [`Dist`]'s `TryFrom` then checks that the kind's fields, and only those, are present.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DistSpec {
    dist: DistKind,
    value: Option<Duration>,
    mean: Option<Duration>,
    min: Option<Duration>,
    max: Option<Duration>,
    median: Option<Duration>,
    p99: Option<Duration>,
    mu: Option<f64>,
    sigma: Option<f64>,
    scale: Option<Duration>,
    shape: Option<f64>,
    components: Option<Vec<Component>>,
    file: Option<String>,
}

impl TryFrom<DistSpec> for Dist {
    type Error = String;

    fn try_from(s: DistSpec) -> Result<Self, String> {
        let given: Vec<&str> = [
            ("value", s.value.is_some()),
            ("mean", s.mean.is_some()),
            ("min", s.min.is_some()),
            ("max", s.max.is_some()),
            ("median", s.median.is_some()),
            ("p99", s.p99.is_some()),
            ("mu", s.mu.is_some()),
            ("sigma", s.sigma.is_some()),
            ("scale", s.scale.is_some()),
            ("shape", s.shape.is_some()),
            ("components", s.components.is_some()),
            ("file", s.file.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, g)| g.then_some(n))
        .collect();
        let (kind, allowed): (&str, &[&str]) = match s.dist {
            DistKind::Constant => ("constant", &["value"]),
            DistKind::Exponential => ("exponential", &["mean"]),
            DistKind::Uniform => ("uniform", &["min", "max"]),
            DistKind::Lognormal => ("lognormal", &["median", "p99", "mu", "sigma"]),
            DistKind::Pareto => ("pareto", &["scale", "shape"]),
            DistKind::Mixture => ("mixture", &["components"]),
            DistKind::Empirical => ("empirical", &["file"]),
        };
        if let Some(extra) = given.iter().find(|g| !allowed.contains(g)) {
            return Err(format!(
                "`{extra}` is not a parameter of `dist: {kind}`; it takes {}",
                allowed.join(", ")
            ));
        }
        let need = |v: Option<Duration>, name: &str| {
            v.ok_or_else(|| format!("`dist: {kind}` needs `{name}`"))
        };
        Ok(match s.dist {
            DistKind::Constant => Dist::Constant {
                value: need(s.value, "value")?,
            },
            DistKind::Exponential => Dist::Exponential {
                mean: need(s.mean, "mean")?,
            },
            DistKind::Uniform => Dist::Uniform {
                min: need(s.min, "min")?,
                max: need(s.max, "max")?,
            },
            DistKind::Lognormal => Dist::Lognormal {
                median: s.median,
                p99: s.p99,
                mu: s.mu,
                sigma: s.sigma,
            },
            DistKind::Pareto => Dist::Pareto {
                scale: need(s.scale, "scale")?,
                shape: s
                    .shape
                    .ok_or_else(|| "`dist: pareto` needs `shape`".to_owned())?,
            },
            DistKind::Mixture => Dist::Mixture {
                components: s
                    .components
                    .ok_or_else(|| "`dist: mixture` needs `components`".to_owned())?,
            },
            DistKind::Empirical => Dist::Empirical {
                file: s
                    .file
                    .ok_or_else(|| "`dist: empirical` needs `file`".to_owned())?,
                samples: Arc::default(),
            },
        })
    }
}

/// The standard normal quantile of 0.99.
const Z99: f64 = 2.326_347_874_040_840_8;

impl Dist {
    /// Zero, always.
    pub const ZERO: Dist = Dist::Constant {
        value: Duration::ZERO,
    };

    /// Checks the parameters; the message names the offending parameter.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_owned(), m));
        match self {
            Dist::Constant { .. } => Ok(()),
            Dist::Exponential { mean } => {
                if mean.is_zero() {
                    return err("mean", "must be > 0".into());
                }
                Ok(())
            }
            Dist::Uniform { min, max } => {
                if max < min {
                    return err("max", format!("must be >= min ({min}), got {max}"));
                }
                Ok(())
            }
            Dist::Lognormal {
                median,
                p99,
                mu,
                sigma,
            } => match (median, p99, mu, sigma) {
                (Some(m), Some(p), None, None) => {
                    if m.is_zero() {
                        return err("median", "must be > 0".into());
                    }
                    if p <= m {
                        return err("p99", format!("must be > median ({m}), got {p}"));
                    }
                    Ok(())
                }
                (None, None, Some(mu), Some(s)) => {
                    if !mu.is_finite() {
                        return err("mu", format!("must be a finite number, got {mu}"));
                    }
                    if !(s.is_finite() && *s > 0.0) {
                        return err("sigma", format!("must be a finite number > 0, got {s}"));
                    }
                    Ok(())
                }
                _ => err(
                    "median",
                    "give either `median` and `p99`, or `mu` and `sigma`".into(),
                ),
            },
            Dist::Pareto { scale, shape } => {
                if scale.is_zero() {
                    return err("scale", "must be > 0".into());
                }
                if !(shape.is_finite() && *shape > 0.0) {
                    return err("shape", format!("must be a finite number > 0, got {shape}"));
                }
                Ok(())
            }
            Dist::Mixture { components } => {
                if components.is_empty() {
                    return err("components", "needs at least one component".into());
                }
                for (i, c) in components.iter().enumerate() {
                    if !(c.weight.is_finite() && c.weight > 0.0) {
                        return err(
                            &format!("components.{i}.weight"),
                            format!("must be a finite number > 0, got {}", c.weight),
                        );
                    }
                    c.dist
                        .validate()
                        .map_err(|(f, m)| (format!("components.{i}.{f}"), m))?;
                }
                Ok(())
            }
            Dist::Empirical { samples, .. } => {
                if samples.is_empty() {
                    return err("file", "holds no samples".into());
                }
                Ok(())
            }
        }
    }

    fn lognormal_params(&self) -> (f64, f64) {
        match self {
            Dist::Lognormal {
                median: Some(m),
                p99: Some(p),
                ..
            } => {
                let m = m.as_nanos() as f64;
                let p = p.as_nanos() as f64;
                (m.ln(), (p / m).ln() / Z99)
            }
            Dist::Lognormal {
                mu: Some(mu),
                sigma: Some(s),
                ..
            } => (mu + 1e6f64.ln(), *s),
            _ => (0.0, 0.0),
        }
    }

    /// The value at quantile `u` in (0, 1), in nanoseconds.
    pub fn quantile_ns(&self, u: f64) -> f64 {
        match self {
            Dist::Constant { value } => value.as_nanos() as f64,
            Dist::Exponential { mean } => -(1.0 - u).ln() * mean.as_nanos() as f64,
            Dist::Uniform { min, max } => {
                let (a, b) = (min.as_nanos() as f64, max.as_nanos() as f64);
                a + u * (b - a)
            }
            Dist::Lognormal { .. } => {
                let (mu, sigma) = self.lognormal_params();
                (mu + sigma * normal_quantile(u)).exp()
            }
            Dist::Pareto { scale, shape } => scale.as_nanos() as f64 * (1.0 - u).powf(-1.0 / shape),
            Dist::Mixture { components } => {
                let total: f64 = components.iter().map(|c| c.weight).sum();
                let mut lo = 0.0;
                for c in components {
                    let w = c.weight / total;
                    if u < lo + w {
                        let v = ((u - lo) / w).clamp(f64::MIN_POSITIVE, 1.0 - f64::EPSILON);
                        return c.dist.quantile_ns(v);
                    }
                    lo += w;
                }
                let last = components.last().expect("validated: not empty");
                last.dist.quantile_ns(1.0 - f64::EPSILON)
            }
            Dist::Empirical { samples, .. } => {
                let i = ((u * samples.len() as f64) as usize).min(samples.len() - 1);
                samples[i] as f64
            }
        }
    }

    /// The mean in nanoseconds (infinite for a Pareto with shape <= 1).
    pub fn mean_ns(&self) -> f64 {
        match self {
            Dist::Constant { value } => value.as_nanos() as f64,
            Dist::Exponential { mean } => mean.as_nanos() as f64,
            Dist::Uniform { min, max } => (min.as_nanos() + max.as_nanos()) as f64 / 2.0,
            Dist::Lognormal { .. } => {
                let (mu, sigma) = self.lognormal_params();
                (mu + sigma * sigma / 2.0).exp()
            }
            Dist::Pareto { scale, shape } => {
                if *shape <= 1.0 {
                    f64::INFINITY
                } else {
                    shape * scale.as_nanos() as f64 / (shape - 1.0)
                }
            }
            Dist::Mixture { components } => {
                let total: f64 = components.iter().map(|c| c.weight).sum();
                components
                    .iter()
                    .map(|c| c.weight / total * c.dist.mean_ns())
                    .sum()
            }
            Dist::Empirical { samples, .. } => {
                samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len().max(1) as f64
            }
        }
    }

    /// Loads the samples of every empirical distribution, reading files relative to `dir`.
    /// Reads the samples files an empirical distribution names: relative to `dir` (the
    /// scenario's directory) and inside it, or inside one of `data_dirs` (directories the user
    /// named on the command line with `--data-dir`).
    pub fn load_files(
        &mut self,
        dir: &std::path::Path,
        data_dirs: &[std::path::PathBuf],
    ) -> Result<(), (String, String)> {
        match self {
            Dist::Empirical { file, samples } => {
                let path = resolve(dir, data_dirs, file).map_err(|m| ("file".to_owned(), m))?;
                let text = read_samples_file(&path).map_err(|m| ("file".to_owned(), m))?;
                let v = parse_samples(&text)
                    .map_err(|m| ("file".to_owned(), format!("{}: {m}", path.display())))?;
                *samples = Arc::new(v);
                Ok(())
            }
            Dist::Mixture { components } => {
                for (i, c) in components.iter_mut().enumerate() {
                    c.dist
                        .load_files(dir, data_dirs)
                        .map_err(|(f, m)| (format!("components.{i}.{f}"), m))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A data file a scenario names: relative to the scenario's directory `dir` and inside it, or
/// inside one of `data_dirs` (directories named on the command line with `--data-dir`).
pub(crate) fn resolve(
    dir: &std::path::Path,
    data_dirs: &[std::path::PathBuf],
    file: &str,
) -> Result<std::path::PathBuf, String> {
    under(dir, file).or_else(|e| data_dirs.iter().find_map(|d| in_data_dir(d, file)).ok_or(e))
}

/// A short, escaped excerpt of a line for an error message: at most 32 characters, control
/// and non-ASCII characters escaped, so an error never reproduces a file.
fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(32).flat_map(char::escape_default).collect();
    if s.chars().count() > 32 {
        out.push_str("...");
    }
    out
}

/// `file` resolved under the scenario's directory `dir`: relative, and (links followed) still
/// inside it, so a scenario cannot make meshbench read files elsewhere.
fn under(dir: &std::path::Path, file: &str) -> Result<std::path::PathBuf, String> {
    let rel = std::path::Path::new(file);
    let outside = || {
        format!(
            "`{}` is outside the scenario's directory: data files (samples, traces) are read from the scenario's directory or below (copy the file there, or name its directory with --data-dir)",
            excerpt(file)
        )
    };
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(outside());
    }
    let path = dir.join(rel);
    if let (Ok(real), Ok(base)) = (path.canonicalize(), dir.canonicalize())
        && !real.starts_with(&base)
    {
        return Err(outside());
    }
    Ok(path)
}

/// `file` inside `data_dir`, a directory the user named: relative to it or absolute, and (links
/// followed) inside it.
fn in_data_dir(data_dir: &std::path::Path, file: &str) -> Option<std::path::PathBuf> {
    let base = data_dir.canonicalize().ok()?;
    let real = base.join(file).canonicalize().ok()?;
    real.starts_with(&base).then_some(real)
}

/// Largest samples file read (64 MiB: about 8 million samples).
pub(crate) const MAX_SAMPLES_FILE: u64 = 64 << 20;

/// Reads a samples file: a regular file (not a device, FIFO or directory, which could block or
/// never end) of at most [`MAX_SAMPLES_FILE`] bytes, as UTF-8 text. Errors name the path but
/// never quote the file.
fn read_samples_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file: give a CSV file of samples",
            path.display()
        ));
    }
    if meta.len() > MAX_SAMPLES_FILE {
        return Err(format!(
            "{} is {} bytes, more than the {} a samples file may have",
            path.display(),
            meta.len(),
            MAX_SAMPLES_FILE
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SAMPLES_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{} is not UTF-8 text (byte {}): give a CSV file of samples",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Parses empirical samples: one per line, first field of a CSV row.
/// The unit a CSV column header names by its suffix (`latency_ms`, `t_s`), in ns per unit.
pub(crate) fn header_unit(header: &str) -> Option<f64> {
    match header.rsplit('_').next() {
        Some("ns") => Some(1.0),
        Some("us") => Some(1e3),
        Some("ms") => Some(1e6),
        Some("s") => Some(1e9),
        _ => None,
    }
}

fn parse_samples(text: &str) -> Result<Vec<u64>, String> {
    let mut unit: Option<f64> = None;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let field = line.split(',').next().unwrap_or("").trim();
        if field.is_empty() || field.starts_with('#') {
            continue;
        }
        if n == 0 && field.parse::<f64>().is_err() && field.parse::<Duration>().is_err() {
            unit = Some(header_unit(field).ok_or_else(|| {
                format!(
                    "line 1: header `{}` does not name a unit (e.g. `latency_ms`); values need units",
                    excerpt(field)
                )
            })?);
            continue;
        }
        let ns = match (unit, field.parse::<f64>()) {
            (Some(scale), Ok(v)) if v.is_finite() && v >= 0.0 => (v * scale).round() as u64,
            _ => field
                .parse::<Duration>()
                .map_err(|_| {
                    format!(
                        "line {}: `{}` is not a duration with a unit (e.g. `1.2ms`)",
                        n + 1,
                        excerpt(field)
                    )
                })?
                .as_nanos(),
        };
        out.push(ns);
    }
    out.sort_unstable();
    Ok(out)
}

/// The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let low = 0.024_25;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn normal_quantile_matches_known_values() {
        assert!((normal_quantile(0.5)).abs() < 1e-9);
        assert!((normal_quantile(0.99) - Z99).abs() < 1e-8);
        assert!((normal_quantile(0.001) + 3.090_232_306_167_813).abs() < 1e-8);
    }

    #[test]
    fn lognormal_by_median_and_p99_hits_both() {
        let d = Dist::Lognormal {
            median: Some(ms(10)),
            p99: Some(ms(50)),
            mu: None,
            sigma: None,
        };
        assert!((d.quantile_ns(0.5) - 10e6).abs() < 1.0);
        assert!((d.quantile_ns(0.99) - 50e6).abs() < 100.0);
    }

    #[test]
    fn exponential_and_pareto_quantiles() {
        let e = Dist::Exponential { mean: ms(2) };
        assert!((e.quantile_ns(0.5) - 2e6 * 2f64.ln()).abs() < 1.0);
        let p = Dist::Pareto {
            scale: ms(1),
            shape: 2.0,
        };
        assert!((p.quantile_ns(0.75) - 2e6).abs() < 1.0);
        assert_eq!(p.mean_ns(), 2e6);
    }

    #[test]
    fn mixture_splits_u_by_weight() {
        let m = Dist::Mixture {
            components: vec![
                Component {
                    weight: 9.0,
                    dist: Box::new(Dist::Constant { value: ms(1) }),
                },
                Component {
                    weight: 1.0,
                    dist: Box::new(Dist::Constant { value: ms(100) }),
                },
            ],
        };
        assert_eq!(m.quantile_ns(0.5), 1e6);
        assert_eq!(m.quantile_ns(0.95), 100e6);
        assert!((m.mean_ns() - 10.9e6).abs() < 1.0);
    }

    #[test]
    fn empirical_samples_parse_with_header_units_or_inline_units() {
        assert_eq!(
            parse_samples("latency_ms\n2\n1\n3\n").unwrap(),
            [1_000_000, 2_000_000, 3_000_000]
        );
        assert_eq!(parse_samples("1ms\n500us\n").unwrap(), [500_000, 1_000_000]);
        assert!(parse_samples("latency\n2\n").is_err());
        assert!(parse_samples("2\n").is_err(), "a bare number has no unit");
    }
}
