//! Plots (PNG and SVG) and the one-page HTML report, rebuilt from a result directory's files
//! alone, so `meshbench report DIR` redraws exactly what `meshbench run` drew.
//!
//! Text is drawn with DejaVu Sans, embedded in the binary and registered with plotters'
//! `ab_glyph` backend: no system font library is needed. Each strategy keeps one colour across
//! every plot of a report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Once;

use crate::page::escape;

use plotters::coord::Shift;
use plotters::prelude::*;

/// Plot size in pixels.
const SIZE: (u32, u32) = (1000, 520);

/// The right margin every chart keeps for its legend, so the legend never covers data.
const LEGEND_W: u32 = 190;

static FONT: Once = Once::new();

/// DejaVu Sans (Bitstream Vera licence, `report/fonts/LICENSE-DejaVu.txt`).
const DEJAVU: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// Registers the embedded font as plotters' `sans-serif`, once.
pub fn register_font() {
    FONT.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            let _ = plotters::style::register_font("sans-serif", style, DEJAVU);
        }
    });
}

/// Tableau 10: distinct, colour-blind-friendly.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of the `i`th strategy.
pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

pub(crate) type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub(crate) fn err(e: impl std::fmt::Display) -> Box<dyn std::error::Error + Send + Sync> {
    e.to_string().into()
}

/// A timeseries.csv row: strategy, sweep coordinates, replication, numeric columns by name.
pub type TimeRow = (String, Vec<String>, u32, BTreeMap<String, f64>);

type Points = Vec<(f64, f64)>;

/// A sweep curve: label, colour index, (x, mean, CI half-width) points.
type Curve = (String, usize, Vec<(f64, f64, f64)>);

/// One series of a report: a strategy at a sweep point.
#[derive(Clone, Debug)]
pub struct Series {
    /// Display name (`p2c`, or `p2c @ 4000/s`).
    pub label: String,
    /// Strategy name.
    pub strategy: String,
    /// Sweep point.
    pub point: usize,
    /// Colour index (by strategy).
    pub colour: usize,
    /// Latency distribution: (value ms, quantile).
    pub cdf: Vec<(f64, f64)>,
}

/// Everything the plots are drawn from, read back from a result directory.
#[derive(Clone, Debug, Default)]
pub struct ReportData {
    /// summary.json, parsed.
    pub summary: crate::Summary,
    /// Series in report order.
    pub series: Vec<Series>,
    /// timeseries.csv rows: (strategy, point coords, replication, columns by name).
    pub timeseries: Vec<TimeRow>,
    /// endpoints.csv rows: (strategy, coords, replication, endpoint label, load_share).
    pub endpoints: Vec<(String, Vec<String>, u32, String, f64)>,
    /// endpoint_timeseries.csv rows: (strategy, coords, t_s, endpoint, attempts).
    pub endpoint_series: Vec<(String, Vec<String>, f64, usize, f64)>,
    /// Endpoints per run, when `endpoint_series` is grouped (past 1000 endpoints):
    /// each row then stands for a group and carries its first endpoint's index; 0 otherwise.
    pub endpoint_count: usize,
    /// The sweep's paths.
    pub sweep_paths: Vec<String>,
    /// Fault windows to shade: start and end in seconds, and a label (`backend/3 crash`).
    pub faults: Vec<(f64, f64, String)>,
    /// The scenario text.
    pub scenario: String,
    /// edges.csv rows of the first sweep point (none without a call graph): strategy, caller,
    /// callee, p99 (ms), error rate (a share), attempts per call.
    pub edges: Vec<(String, String, String, f64, f64, f64)>,
    /// critical_path.csv rows of the first sweep point (none without a call graph): strategy,
    /// part (a service, or [`crate::TRANSPORT_PART`]), share of end-to-end time.
    pub critical: Vec<(String, String, f64)>,
}

/// endpoint_timeseries.csv, streamed, first sweep point only (the heat map's): rows as read
/// for up to [`MAX_PLOTTED_ENDPOINTS`] endpoints, else one row per (strategy, window, group of
/// endpoints) with the group's mean, and the endpoint count. A missing file is no rows.
type EndpointRows = Vec<(String, Vec<String>, f64, usize, f64)>;
fn read_endpoint_series(
    dir: &Path,
    nsweep: usize,
    coords0: &[String],
    n_ep: usize,
) -> Res<(EndpointRows, usize)> {
    let path = dir.join("endpoint_timeseries.csv");
    let Ok(mut r) = csv::Reader::from_path(&path) else {
        return Ok((Vec::new(), 0));
    };
    let at = |e: csv::Error| err(format!("{}: {e}", path.display()));
    let header: Vec<String> = r.headers().map_err(at)?.iter().map(str::to_owned).collect();
    let es = Table::new(dir, "endpoint_timeseries.csv", &header, &[], nsweep, 4)?;
    let grouped = n_ep > MAX_PLOTTED_ENDPOINTS;
    let mut out = Vec::new();
    let mut groups: BTreeMap<(String, u64, usize), (f64, u32)> = BTreeMap::new();
    let mut rec = csv::StringRecord::new();
    let mut n = 0;
    while r.read_record(&mut rec).map_err(at)? {
        let row: Vec<String> = rec.iter().map(str::to_owned).collect();
        if row.len() < nsweep + 4 {
            return Err(err(format!(
                "{}:{}: {} columns, expected at least {}",
                path.display(),
                n + 2,
                row.len(),
                nsweep + 4
            )));
        }
        let (coords, c) = es.split(&row);
        let t = es.number(n, nsweep + 1, &c[1])?;
        let e = es.count(n, nsweep + 2, &c[2])? as usize;
        let v = es.number(n, nsweep + 3, &c[3])?;
        n += 1;
        if coords != coords0 {
            continue;
        }
        if grouped {
            let g = (e * HEATMAP_GROUPS / n_ep).min(HEATMAP_GROUPS - 1);
            let a = groups
                .entry((c[0].clone(), t.to_bits(), g))
                .or_insert((0.0, 0));
            a.0 += v;
            a.1 += 1;
        } else {
            out.push((c[0].clone(), coords, t, e, v));
        }
    }
    if !grouped {
        return Ok((out, 0));
    }
    // Each group's first endpoint index stands for it (the heat map groups it back).
    let first = |g: usize| (g * n_ep).div_ceil(HEATMAP_GROUPS);
    let rows = groups
        .into_iter()
        .map(|((s, t, g), (v, k))| {
            (
                s,
                coords0.to_vec(),
                f64::from_bits(t),
                first(g),
                v / f64::from(k.max(1)),
            )
        })
        .collect();
    Ok((rows, n_ep))
}

pub(crate) fn read_csv(path: &Path) -> Res<(Vec<String>, Vec<Vec<String>>)> {
    let mut r =
        csv::Reader::from_path(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let at = |e: csv::Error| err(format!("{}: {e}", path.display()));
    let header: Vec<String> = r.headers().map_err(at)?.iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| rec.map(|rec| rec.iter().map(str::to_owned).collect()))
        .collect::<Result<Vec<Vec<String>>, _>>()
        .map_err(at)?;
    Ok((header, rows))
}

/// Reads an `.hgrm` file into (value ms, quantile) points.
pub fn read_hgrm(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let v = f.next()?.parse::<f64>().ok()?;
            let q = f.next()?.parse::<f64>().ok()?;
            // Values a histogram of at most an hour cannot hold are not meshbench's: skip them
            // rather than stretch an axis to 1e308.
            (v.is_finite() && (0.0..=3.6e6).contains(&v) && (0.0..=1.0).contains(&q))
                .then_some((v, q))
        })
        .collect()
}

/// A CSV file of a result directory whose rows have been checked for length.
struct Table<'a> {
    file: std::path::PathBuf,
    header: &'a [String],
    nsweep: usize,
}

/// Largest value a result file may hold (counts and milliseconds alike): beyond it, the file is
/// not one meshbench wrote.
const MAX_VALUE: f64 = 1e15;

impl<'a> Table<'a> {
    /// Checks that the header and every row have the sweep columns plus `cols` more.
    fn new(
        dir: &Path,
        name: &str,
        header: &'a [String],
        rows: &[Vec<String>],
        nsweep: usize,
        cols: usize,
    ) -> Res<Self> {
        let file = dir.join(name);
        let need = nsweep + cols;
        if header.len() < need {
            return Err(err(format!(
                "{}:1: {} columns in the header, expected at least {need}",
                file.display(),
                header.len()
            )));
        }
        for (n, r) in rows.iter().enumerate() {
            if r.len() < need {
                return Err(err(format!(
                    "{}:{}: {} columns, expected at least {need} ({})",
                    file.display(),
                    n + 2,
                    r.len(),
                    header[..need].join(",")
                )));
            }
        }
        Ok(Table {
            file,
            header,
            nsweep,
        })
    }

    fn split<'r>(&self, row: &'r [String]) -> (Vec<String>, &'r [String]) {
        (row[..self.nsweep].to_vec(), &row[self.nsweep..])
    }

    fn bad(
        &self,
        row: usize,
        col: usize,
        v: &str,
        what: &str,
    ) -> Box<dyn std::error::Error + Send + Sync> {
        let shown: String = v.chars().take(32).flat_map(char::escape_default).collect();
        err(format!(
            "{}:{}: column `{}`: `{shown}` is not {what}",
            self.file.display(),
            row + 2,
            self.header.get(col).map_or("?", String::as_str)
        ))
    }

    /// A finite number in 0..=MAX_VALUE (an empty cell is 0, as the writers leave them).
    fn number(&self, row: usize, col: usize, v: &str) -> Res<f64> {
        if v.is_empty() {
            return Ok(0.0);
        }
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() && (0.0..=MAX_VALUE).contains(&x) => Ok(x),
            _ => Err(self.bad(row, col, v, "a finite number in range")),
        }
    }

    /// A count (a non-negative integer).
    fn count(&self, row: usize, col: usize, v: &str) -> Res<u32> {
        v.parse::<u32>()
            .map_err(|_| self.bad(row, col, v, "a non-negative integer"))
    }
}

impl ReportData {
    /// Reads a result directory written by [`crate::write_reports`].
    pub fn read(dir: &Path) -> Res<Self> {
        let summary = crate::Summary::read(dir).map_err(|e| err(e.to_string()))?;
        let sweep_paths: Vec<String> = summary.info.sweep_paths.clone();
        let sweep = !sweep_paths.is_empty();
        let nsweep = sweep_paths.len();
        let mut order: Vec<String> = Vec::new();
        let mut series = Vec::new();
        for s in &summary.strategies {
            let name = s.strategy.clone();
            let point = s.point;
            let coords = s.coords.clone();
            if !order.contains(&name) {
                order.push(name.clone());
            }
            let colour = order.iter().position(|n| *n == name).unwrap_or(0);
            let file = dir.join(format!(
                "latency.{}.hgrm",
                crate::run_label(&name, point, sweep)
            ));
            let cdf = std::fs::read_to_string(&file)
                .map(|t| read_hgrm(&t))
                .unwrap_or_default();
            let label = if coords.is_empty() {
                name.clone()
            } else {
                format!("{name} @ {}", coords.join(", "))
            };
            series.push(Series {
                label,
                strategy: name,
                point,
                colour,
                cdf,
            });
        }
        // Every row is checked before it is used: a short row, or a number that is not a
        // finite number in range, is an error naming the file, line and column, never a panic.
        let (h, rows) = read_csv(&dir.join("timeseries.csv"))?;
        let ts = Table::new(dir, "timeseries.csv", &h, &rows, nsweep, 3)?;
        let h = h[nsweep..].to_vec();
        let mut timeseries = Vec::with_capacity(rows.len());
        for (n, row) in rows.iter().enumerate() {
            let (coords, rest) = ts.split(row);
            let mut cols = BTreeMap::new();
            for (i, (k, v)) in h.iter().zip(rest).enumerate().skip(2) {
                cols.insert(k.clone(), ts.number(n, nsweep + i, v)?);
            }
            timeseries.push((
                rest[0].clone(),
                coords,
                ts.count(n, nsweep + 1, &rest[1])?,
                cols,
            ));
        }
        let (h, rows) = read_csv(&dir.join("endpoints.csv"))?;
        let ep = Table::new(dir, "endpoints.csv", &h, &rows, nsweep, 6)?;
        let mut endpoints = Vec::with_capacity(rows.len());
        for (n, row) in rows.iter().enumerate() {
            let (coords, r) = ep.split(row);
            endpoints.push((
                r[0].clone(),
                coords,
                ep.count(n, nsweep + 1, &r[1])?,
                format!("{}/{}", r[2], r[3]),
                ep.number(n, nsweep + 5, &r[5])?,
            ));
        }
        // The heat map shows the first sweep point; past MAX_PLOTTED_ENDPOINTS endpoints its
        // rows are grouped while the file streams by (10^5 endpoints x 50 windows is millions
        // of rows, too many to hold as text).
        let coords0 = summary.coords_of(0);
        let n_ep = endpoints
            .iter()
            .filter(|e| e.1 == coords0)
            .filter(|e| endpoints.first().is_some_and(|f| f.0 == e.0 && f.2 == e.2))
            .count();
        let (endpoint_series, endpoint_count) = read_endpoint_series(dir, nsweep, &coords0, n_ep)?;
        let mut edges = Vec::new();
        if dir.join("edges.csv").exists() {
            let (h, rows) = read_csv(&dir.join("edges.csv"))?;
            let t = Table::new(dir, "edges.csv", &h, &rows, nsweep, 9)?;
            for (n, row) in rows.iter().enumerate() {
                let (coords, r) = t.split(row);
                if coords == coords0 {
                    edges.push((
                        r[0].clone(),
                        r[1].clone(),
                        r[2].clone(),
                        t.number(n, nsweep + 8, &r[8])?,
                        t.number(n, nsweep + 5, &r[5])?,
                        t.number(n, nsweep + 6, &r[6])?,
                    ));
                }
            }
        }
        let mut critical = Vec::new();
        if dir.join("critical_path.csv").exists() {
            let (h, rows) = read_csv(&dir.join("critical_path.csv"))?;
            let t = Table::new(dir, "critical_path.csv", &h, &rows, nsweep, 5)?;
            for (n, row) in rows.iter().enumerate() {
                let (coords, r) = t.split(row);
                if coords == coords0 {
                    critical.push((r[0].clone(), r[1].clone(), t.number(n, nsweep + 4, &r[4])?));
                }
            }
        }
        // Faults of one kind over one window are one band: `7 hosts crash (backend/0 … backend/6)`.
        let mut faults: Vec<(f64, f64, String, Vec<String>)> = Vec::new();
        for f in &summary.info.faults {
            let (a, b) = (f.from_s, f.until_s.unwrap_or(f64::INFINITY));
            let kind = f.kind.replace('_', " ");
            match faults
                .iter_mut()
                .find(|x| x.0 == a && x.1 == b && x.2 == kind)
            {
                Some(x) => x.3.push(f.target.clone()),
                None => faults.push((a, b, kind, vec![f.target.clone()])),
            }
        }
        let faults = faults
            .into_iter()
            .map(|(a, b, kind, targets)| {
                let label = match targets.as_slice() {
                    [one] => format!("{one} {kind}"),
                    [x, y] => format!("{x}, {y} {kind}"),
                    [first, .., last] => {
                        format!("{} hosts {kind} ({first} … {last})", targets.len())
                    }
                    [] => kind,
                };
                (a, b, label)
            })
            .collect();
        Ok(ReportData {
            scenario: std::fs::read_to_string(dir.join("scenario.yaml")).unwrap_or_default(),
            summary,
            series,
            timeseries,
            endpoints,
            endpoint_series,
            endpoint_count,
            sweep_paths,
            faults,
            edges,
            critical,
        })
    }

    /// The series of the first sweep point (the ones time plots show).
    fn first_point(&self) -> impl Iterator<Item = &Series> {
        self.series.iter().filter(|s| s.point == 0)
    }

    fn coords_of(&self, point: usize) -> Vec<String> {
        self.summary.coords_of(point)
    }

    /// For plots of one sweep point (the first): which one, as a caption suffix
    /// (` (at rate = 1000/s)`); empty without a sweep.
    fn point_note(&self) -> String {
        if self.sweep_paths.is_empty() {
            return String::new();
        }
        let at: Vec<String> = self
            .sweep_paths
            .iter()
            .zip(self.coords_of(0))
            .map(|(p, v)| format!("{p} = {v}"))
            .collect();
        format!(" (at {})", at.join(", "))
    }
}

/// A plot: its file stem and title, and how to draw it.
pub struct Plot {
    /// File stem (`latency_cdf`).
    pub name: &'static str,
    /// Title shown above it in the HTML.
    pub title: &'static str,
    draw: fn(&ReportData, &DrawingArea<SVGBackend<'_>, Shift>) -> Res<()>,
    draw_png: fn(&ReportData, &DrawingArea<BitMapBackend<'_>, Shift>) -> Res<()>,
}

macro_rules! plot {
    ($name:literal, $title:literal, $f:ident) => {
        Plot {
            name: $name,
            title: $title,
            draw: |d, a| $f(d, a),
            draw_png: |d, a| $f(d, a),
        }
    };
    // A sweep curve of `metric` (times `scale`), its axis called `what`.
    ($name:literal, $title:literal, sweep: $metric:literal, $scale:literal, $what:literal) => {
        Plot {
            name: $name,
            title: $title,
            draw: |d, a| sweep_curve(d, a, $metric, $scale, $what),
            draw_png: |d, a| sweep_curve(d, a, $metric, $scale, $what),
        }
    };
}

/// Every plot a report has, the ones that answer its question first: with a sweep, the sweep
/// curves; with faults or errors, error rate and throughput over time and the percentiles over
/// time; then the latency distribution, the spread over endpoints and the policies' activity.
pub fn plots(data: &ReportData) -> Vec<Plot> {
    let any = |metric: &str, f: fn(f64) -> bool| {
        data.summary
            .strategies
            .iter()
            .any(|s| s.metrics.get(metric).is_some_and(|m| f(m.mean)))
    };
    let errors = any("error_rate", |v| v > 0.0);
    let retries = any("retry_amplification", |v| (v - 1.0).abs() > 1e-9);
    let troubled = errors || !data.faults.is_empty();
    let sweep = !data.sweep_paths.is_empty();
    // (shown, rank, plot): the plots shown, by rank, file order among equals.
    let mut v = vec![
        (
            sweep,
            0,
            plot!("sweep_p99", "p99 latency across the sweep", sweep: "p99_ms", 1.0, "p99 latency of successes (ms)"),
        ),
        (
            sweep && errors,
            0,
            plot!("sweep_errors", "Error rate across the sweep", sweep: "error_rate", 100.0, "error rate (%)"),
        ),
        (
            sweep,
            0,
            plot!("sweep_throughput", "Throughput across the sweep", sweep: "throughput_rps", 1.0, "successes per second"),
        ),
        (
            sweep,
            0,
            plot!("sweep_mean", "Mean latency across the sweep", sweep: "mean_ms", 1.0, "mean latency of successes (ms)"),
        ),
        (
            troubled,
            10,
            plot!(
                "errors_over_time",
                "Error rate and throughput over time",
                errors_over_time
            ),
        ),
        (
            true,
            if troubled { 10 } else { 35 },
            plot!(
                "percentiles_over_time",
                "Percentiles over time",
                percentiles_over_time
            ),
        ),
        (
            true,
            if retries || troubled { 20 } else { 50 },
            plot!(
                "retries_and_ejections",
                "Retry amplification and ejections over time",
                retries_and_ejections
            ),
        ),
        (
            !data.edges.is_empty(),
            25,
            plot!(
                "call_graph",
                "The call graph: p99 and errors per edge",
                call_graph
            ),
        ),
        (true, 30, plot!("latency_cdf", "Latency CDF", latency_cdf)),
        (
            true,
            30,
            plot!("latency_ccdf", "Latency CCDF (tail)", latency_ccdf),
        ),
        (
            true,
            40,
            plot!("load_share", "Load share per endpoint", load_share),
        ),
        (
            true,
            40,
            plot!(
                "endpoint_heatmap",
                "Per-endpoint load over time",
                endpoint_heatmap
            ),
        ),
    ];
    v.retain(|p| p.0);
    v.sort_by_key(|p| p.1);
    v.into_iter().map(|p| p.2).collect()
}

/// Draws `plot` as SVG text.
pub fn svg(plot: &Plot, data: &ReportData) -> Res<String> {
    register_font();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        (plot.draw)(data, &root)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

/// Draws `plot` into a PNG file.
pub fn png(plot: &Plot, data: &ReportData, path: &Path) -> Res<()> {
    register_font();
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    (plot.draw_png)(data, &root)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Draws `plot` into an RGB pixel buffer (tests compare renderings).
pub fn pixels(plot: &Plot, data: &ReportData) -> Res<Vec<u8>> {
    register_font();
    let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        (plot.draw_png)(data, &root)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// How a legend entry is marked.
#[derive(Clone, Copy)]
enum Mark {
    /// A line of this width.
    Line(u32),
    /// A dashed line.
    Dashed,
    /// A filled box.
    Box,
}

/// A legend: (label, colour, mark) per entry.
type Legend = Vec<(String, RGBColor, Mark)>;

/// Draws `entries` in the strip [`LEGEND_W`] wide at the right of `area` (every chart keeps that
/// margin free), so a legend never covers data.
fn side_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &Legend) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let x0 = area.dim_in_pixel().0 as i32 - LEGEND_W as i32 + 12;
    for (i, (label, c, mark)) in entries.iter().enumerate() {
        let y = 48 + 20 * i as i32;
        match mark {
            Mark::Line(w) => area
                .draw(&PathElement::new(
                    vec![(x0, y), (x0 + 22, y)],
                    c.stroke_width(*w),
                ))
                .map_err(err)?,
            Mark::Dashed => {
                for k in 0..3 {
                    area.draw(&PathElement::new(
                        vec![(x0 + 8 * k, y), (x0 + 8 * k + 5, y)],
                        c.stroke_width(1),
                    ))
                    .map_err(err)?;
                }
            }
            Mark::Box => area
                .draw(&Rectangle::new([(x0, y - 6), (x0 + 14, y + 6)], c.filled()))
                .map_err(err)?,
        }
        // Long labels are cut to the strip.
        let text: String = if label.chars().count() > 22 {
            label.chars().take(21).chain(std::iter::once('…')).collect()
        } else {
            label.clone()
        };
        area.draw(&Text::new(
            text,
            (x0 + 28, y - 8),
            ("sans-serif", 13).into_font().color(&BLACK),
        ))
        .map_err(err)?;
    }
    Ok(())
}

fn latency_range(data: &ReportData) -> (f64, f64) {
    let lo = data
        .first_point()
        .flat_map(|s| s.cdf.iter().map(|p| p.0))
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let hi = data
        .first_point()
        .flat_map(|s| s.cdf.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    if lo.is_finite() && hi > lo {
        (lo * 0.9, hi * 1.1)
    } else {
        (0.001, 1.0)
    }
}

fn latency_cdf<DB: DrawingBackend>(data: &ReportData, root: &DrawingArea<DB, Shift>) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let (lo, hi) = latency_range(data);
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("Latency CDF of successes{}", data.point_note()),
            ("sans-serif", 22),
        )
        .margin(12)
        .margin_right(LEGEND_W)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
            0.0..1.0,
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("latency (ms, log scale)")
        .x_label_formatter(&|x| trim_number(*x))
        .y_desc("fraction of successes <= x")
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    let mut entries = Legend::new();
    for s in data.first_point() {
        let c = colour(s.colour);
        chart
            .draw_series(LineSeries::new(
                s.cdf.iter().map(|&(v, q)| (v.max(lo), q)),
                c.stroke_width(2),
            ))
            .map_err(err)?;
        entries.push((s.label.clone(), c, Mark::Line(2)));
    }
    side_legend(root, &entries)
}

fn latency_ccdf<DB: DrawingBackend>(data: &ReportData, root: &DrawingArea<DB, Shift>) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let (lo, hi) = latency_range(data);
    let floor = 1e-5;
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("Latency CCDF of successes (tail){}", data.point_note()),
            ("sans-serif", 22),
        )
        .margin(12)
        .margin_right(LEGEND_W)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
            (floor..1.0).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("latency (ms, log scale)")
        .x_label_formatter(&|x| trim_number(*x))
        .y_desc("fraction of successes > x (log scale)")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    let mut entries = Legend::new();
    for s in data.first_point() {
        let c = colour(s.colour);
        chart
            .draw_series(LineSeries::new(
                s.cdf
                    .iter()
                    .map(|&(v, q)| (v.max(lo), (1.0 - q).max(floor)))
                    .take_while(|p| p.1 > floor),
                c.stroke_width(2),
            ))
            .map_err(err)?;
        entries.push((s.label.clone(), c, Mark::Line(2)));
    }
    side_legend(root, &entries)
}

/// Mean over replications of a time-series column, per strategy at point 0: (t, value).
fn series_over_time(data: &ReportData, strategy: &str, col: &str) -> Vec<(f64, f64)> {
    let coords0 = data.coords_of(0);
    let mut acc: BTreeMap<i64, (f64, f64, u32)> = BTreeMap::new();
    for (s, coords, _, cols) in &data.timeseries {
        if s != strategy || *coords != coords0 {
            continue;
        }
        let (Some(&t), Some(&v)) = (cols.get("t_s"), cols.get(col)) else {
            continue;
        };
        let e = acc.entry((t * 1e6) as i64).or_insert((t, 0.0, 0));
        e.1 += v;
        e.2 += 1;
    }
    acc.values()
        .map(|&(t, v, n)| (t, v / f64::from(n)))
        .collect()
}

fn strategies_at_point0(data: &ReportData) -> Vec<(String, usize)> {
    data.first_point()
        .map(|s| (s.strategy.clone(), s.colour))
        .collect()
}

fn shade_faults<
    'a,
    DB: DrawingBackend + 'a,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    faults: &[(f64, f64, String)],
    y: (f64, f64),
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let x = chart.x_range();
    for (i, (a, b, label)) in faults.iter().enumerate() {
        // An open-ended fault runs to the plot's edge.
        let (a, b) = (a.max(x.start), b.min(x.end));
        if a >= b {
            continue;
        }
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, y.0), (b, y.1)],
                RGBColor(255, 200, 200).mix(0.4).filled(),
            )))
            .map_err(err)?;
        // The fault's name at the top of its band (staggered, so neighbours do not collide).
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((a, y.1))
                    + Text::new(
                        label.clone(),
                        (3, 3 + 14 * (i % 2) as i32),
                        ("sans-serif", 12).into_font().color(&RGBColor(150, 30, 30)),
                    ),
            ))
            .map_err(err)?;
    }
    Ok(())
}

fn percentiles_over_time<DB: DrawingBackend>(
    data: &ReportData,
    root: &DrawingArea<DB, Shift>,
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let strategies = strategies_at_point0(data);
    let mut lines = Vec::new();
    for (s, c) in &strategies {
        for (col, dash) in [("p50_ms", 0), ("p99_ms", 1), ("p999_ms", 2)] {
            let pts: Vec<(f64, f64)> = series_over_time(data, s, col)
                .into_iter()
                .filter(|p| p.1 > 0.0)
                .collect();
            lines.push((s.clone(), *c, col, dash, pts));
        }
    }
    let all = lines.iter().flat_map(|l| l.4.iter());
    let t_max = all.clone().map(|p| p.0).fold(1e-9, f64::max);
    let y_lo = all.clone().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_hi = all.map(|p| p.1).fold(0.0, f64::max);
    let (y_lo, y_hi) = if y_lo.is_finite() && y_hi > y_lo {
        (y_lo * 0.8, y_hi * 1.25)
    } else {
        (0.001, 1.0)
    };
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "Successes' p50 (thin), p99 (thick), p99.9 (dashed) over time{}",
                data.point_note()
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .margin_right(LEGEND_W)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(
            0.0..t_max,
            (y_lo..y_hi)
                .log_scale()
                .with_key_points(log_ticks(y_lo, y_hi)),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("time (s)")
        .y_desc("latency (ms, log scale)")
        .y_label_formatter(&|y| trim_number(*y))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    shade_faults(&mut chart, &data.faults, (y_lo, y_hi))?;
    let mut entries = Legend::new();
    for (s, c, col, dash, pts) in lines {
        let colour = colour(c);
        let style = colour.stroke_width(if dash == 1 { 3 } else { 1 });
        if dash == 2 {
            chart
                .draw_series(DashedLineSeries::new(pts, 6, 4, style))
                .map_err(err)?;
        } else {
            chart
                .draw_series(LineSeries::new(pts, style))
                .map_err(err)?;
            if col == "p99_ms" {
                entries.push((s, colour, Mark::Line(3)));
            }
        }
    }
    side_legend(root, &entries)
}

fn load_share<DB: DrawingBackend>(data: &ReportData, root: &DrawingArea<DB, Shift>) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let coords0 = data.coords_of(0);
    let strategies = strategies_at_point0(data);
    // Mean share per (strategy, endpoint) over replications, endpoints in file order.
    let mut endpoints: Vec<String> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut acc: BTreeMap<(usize, usize), (f64, u32)> = BTreeMap::new();
    for (s, coords, _, ep, share) in &data.endpoints {
        if *coords != coords0 {
            continue;
        }
        let Some(si) = strategies.iter().position(|x| x.0 == *s) else {
            continue;
        };
        let ei = *index.entry(ep.as_str()).or_insert_with(|| {
            endpoints.push(ep.clone());
            endpoints.len() - 1
        });
        let e = acc.entry((si, ei)).or_insert((0.0, 0));
        e.0 += share;
        e.1 += 1;
    }
    if endpoints.len() > MAX_PLOTTED_ENDPOINTS {
        return sorted_load_share(&strategies, endpoints.len(), &acc, &data.point_note(), root);
    }
    let n_ep = endpoints.len().max(1);
    let n_s = strategies.len().max(1);
    let y_hi = acc
        .values()
        .map(|&(v, n)| 100.0 * v / f64::from(n))
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("Load share per endpoint{}", data.point_note()),
            ("sans-serif", 22),
        )
        .margin(12)
        .margin_right(LEGEND_W)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..n_ep as f64 - 0.5, 0.0..y_hi)
        .map_err(err)?;
    let eps = endpoints.clone();
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .disable_x_mesh()
        .x_desc("endpoint (service/instance)")
        .y_desc("share of attempts (%)")
        .x_labels(n_ep.min(25) + 1)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                eps.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    let width = 0.8 / n_s as f64;
    let mut entries = Legend::new();
    for (si, (name, c)) in strategies.iter().enumerate() {
        let colour = colour(*c);
        let bars: Vec<Rectangle<(f64, f64)>> = acc
            .iter()
            .filter(|((s, _), _)| *s == si)
            .map(|(&(_, e), &(v, n))| {
                let x0 = e as f64 - 0.4 + si as f64 * width;
                Rectangle::new(
                    [(x0, 0.0), (x0 + width, 100.0 * v / f64::from(n))],
                    colour.filled(),
                )
            })
            .collect();
        chart.draw_series(bars).map_err(err)?;
        entries.push((name.clone(), colour, Mark::Box));
    }
    side_legend(root, &entries)
}

/// Past this many endpoints, per-endpoint plots aggregate: load share becomes the sorted curve
/// of shares, and the heat map groups endpoints (and windows) into [`HEATMAP_GROUPS`] rows
/// (columns), so a report of 10^5 instances draws in seconds and stays small.
pub(crate) const MAX_PLOTTED_ENDPOINTS: usize = 1000;

/// The heat map groups as soon as a strategy's panel would have more cells than this.
const MAX_HEATMAP_CELLS: usize = 100_000;

/// Rows (endpoint groups) and columns (window groups) of a grouped heat map, at most.
const HEATMAP_GROUPS: usize = 200;

/// Ranks sampled on the sorted load-share curve.
const SORTED_SHARE_POINTS: usize = 400;

/// Load share of many endpoints: for each strategy, the endpoints' mean shares sorted from
/// the busiest down, sampled at a few hundred ranks; a flat line at 100/N % is a perfect spread.
fn sorted_load_share<DB: DrawingBackend>(
    strategies: &[(String, usize)],
    n_ep: usize,
    acc: &BTreeMap<(usize, usize), (f64, u32)>,
    data_note: &str,
    root: &DrawingArea<DB, Shift>,
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let mut curves: Vec<Vec<f64>> = vec![Vec::with_capacity(n_ep); strategies.len()];
    for (&(si, _), &(v, n)) in acc {
        curves[si].push(100.0 * v / f64::from(n.max(1)));
    }
    for c in &mut curves {
        c.sort_by(|a, b| b.total_cmp(a));
    }
    let y_hi = curves
        .iter()
        .filter_map(|c| c.first().copied())
        .fold(100.0 / n_ep as f64, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "Load share per endpoint, sorted ({n_ep} endpoints){}",
                data_note
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .margin_right(LEGEND_W)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n_ep as f64, 0.0..y_hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("endpoint rank (busiest first)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("share of attempts (%)")
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    let fair = 100.0 / n_ep as f64;
    chart
        .draw_series(LineSeries::new(
            [(0.0, fair), (n_ep as f64, fair)],
            BLACK.mix(0.4).stroke_width(1),
        ))
        .map_err(err)?;
    let mut entries: Legend = vec![(
        format!("even ({fair:.4}%)"),
        RGBColor(140, 140, 140),
        Mark::Line(1),
    )];
    for ((name, c), curve) in strategies.iter().zip(&curves) {
        if curve.is_empty() {
            continue;
        }
        let colour = colour(*c);
        let last = curve.len() - 1;
        let step = (curve.len() / SORTED_SHARE_POINTS).max(1);
        let points: Vec<(f64, f64)> = (0..curve.len())
            .step_by(step)
            .chain(std::iter::once(last))
            .map(|i| (i as f64, curve[i]))
            .collect();
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(err)?;
        entries.push((name.clone(), colour, Mark::Line(2)));
    }
    side_legend(root, &entries)
}

fn endpoint_heatmap<DB: DrawingBackend>(data: &ReportData, root: &DrawingArea<DB, Shift>) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let coords0 = data.coords_of(0);
    let strategies = strategies_at_point0(data);
    let rows: Vec<&(String, Vec<String>, f64, usize, f64)> = data
        .endpoint_series
        .iter()
        .filter(|r| r.1 == coords0)
        .collect();
    let t_max = rows.iter().map(|r| r.2).fold(1e-9, f64::max);
    let n_ep = rows
        .iter()
        .map(|r| r.3 + 1)
        .max()
        .unwrap_or(1)
        .max(data.endpoint_count);
    let peak = rows.iter().map(|r| r.4).fold(1.0, f64::max);
    // The sample period: the median gap between window ends (a last, partial window is
    // shorter).
    let period = {
        let mut ts: Vec<f64> = rows.iter().map(|r| r.2).collect();
        ts.sort_by(f64::total_cmp);
        ts.dedup();
        let mut gaps: Vec<f64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_by(f64::total_cmp);
        gaps.get(gaps.len() / 2).copied().unwrap_or(t_max)
    };
    // Many endpoints or windows: groups of endpoints (mean attempts per endpoint) over groups
    // of windows, at most HEATMAP_GROUPS of each.
    let windows = (t_max / period.max(1e-9)).round() as usize;
    let grouped = n_ep > MAX_PLOTTED_ENDPOINTS || n_ep.saturating_mul(windows) > MAX_HEATMAP_CELLS;
    let (g_ep, g_t) = (n_ep.min(HEATMAP_GROUPS), windows.clamp(1, HEATMAP_GROUPS));
    let mut groups: BTreeMap<(&str, usize, usize), (f64, u32)> = BTreeMap::new();
    if grouped {
        for r in &rows {
            let ge = (r.3 * g_ep / n_ep).min(g_ep - 1);
            let gt = (((r.2 - period * 0.5).max(0.0) / t_max * g_t as f64) as usize).min(g_t - 1);
            let e = groups.entry((r.0.as_str(), ge, gt)).or_insert((0.0, 0));
            e.0 += r.4;
            e.1 += 1;
        }
    }
    let g_peak = groups
        .values()
        .map(|&(v, n)| v / f64::from(n.max(1)))
        .fold(1.0, f64::max);
    let (title, body) = root.split_vertically(36);
    title
        .titled(
            &if grouped {
                format!(
                    "Mean attempts per endpoint per window, {n_ep} endpoints in {g_ep} groups{}",
                    data.point_note()
                )
            } else {
                format!("Attempts per endpoint per window{}", data.point_note())
            },
            ("sans-serif", 20),
        )
        .map_err(err)?;
    let scale_max = if grouped { g_peak } else { peak };
    let panels = body.split_evenly((strategies.len().max(1), 1));
    for ((name, _), panel) in strategies.iter().zip(panels.iter()) {
        let last = std::ptr::eq(panel, panels.last().unwrap());
        // Ungrouped, endpoint k is the row from k - 0.5 to k + 0.5, so integer ticks sit on rows.
        let y_range = if grouped {
            0.0..n_ep as f64
        } else {
            -0.5..n_ep as f64 - 0.5
        };
        let mut chart = ChartBuilder::on(panel)
            .margin(4)
            .margin_right(LEGEND_W)
            .x_label_area_size(if last { 35 } else { 0 })
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_max, y_range)
            .map_err(err)?;
        let whole = |y: &f64| {
            if (y - y.round()).abs() < 1e-6 && *y >= 0.0 {
                format!("{y:.0}")
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .disable_mesh()
            .x_desc("time (s)")
            .y_desc("endpoint")
            .y_labels(n_ep.min(12) + 1)
            .y_label_formatter(&whole)
            .axis_desc_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        if grouped {
            let (h, w) = (n_ep as f64 / g_ep as f64, t_max / g_t as f64);
            chart
                .draw_series(
                    groups
                        .range((name.as_str(), 0, 0)..=(name.as_str(), usize::MAX, usize::MAX))
                        .map(|(&(_, ge, gt), &(v, n))| {
                            let (x, y) = (gt as f64 * w, ge as f64 * h);
                            Rectangle::new(
                                [(x, y), (x + w, y + h)],
                                heat(v / f64::from(n.max(1)) / g_peak).filled(),
                            )
                        }),
                )
                .map_err(err)?;
        } else {
            chart
                .draw_series(rows.iter().filter(|r| r.0 == *name).map(|r| {
                    let y = r.3 as f64;
                    Rectangle::new(
                        [(r.2 - period, y - 0.5), (r.2, y + 0.5)],
                        heat(r.4 / peak).filled(),
                    )
                }))
                .map_err(err)?;
        }
        // The strategy's name, black on white, in the panel's top left corner.
        let style = ("sans-serif", 14).into_text_style(panel).color(&BLACK);
        let (w, _) = panel.estimate_text_size(name, &style).map_err(err)?;
        panel
            .draw(&Rectangle::new(
                [(66, 4), (66 + w as i32 + 8, 22)],
                WHITE.mix(0.85).filled(),
            ))
            .map_err(err)?;
        panel.draw_text(name, &style, (70, 6)).map_err(err)?;
    }
    // The colour scale, in the legend strip.
    let (bw, bh) = body.dim_in_pixel();
    let (x0, y0, y1) = (bw as i32 - LEGEND_W as i32 + 20, 20, bh as i32 - 50);
    let steps = 64;
    for k in 0..steps {
        let f0 = f64::from(k) / f64::from(steps);
        let ya = y1 - ((y1 - y0) as f64 * f0) as i32;
        let yb = y1 - ((y1 - y0) as f64 * (f0 + 1.0 / f64::from(steps))) as i32;
        body.draw(&Rectangle::new(
            [(x0, yb), (x0 + 18, ya)],
            heat(f0).filled(),
        ))
        .map_err(err)?;
    }
    body.draw(&Rectangle::new([(x0, y0), (x0 + 18, y1)], BLACK.mix(0.5)))
        .map_err(err)?;
    let label = ("sans-serif", 12).into_font().color(&BLACK);
    for f in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = y1 - ((y1 - y0) as f64 * f) as i32;
        let v = scale_max * f;
        body.draw(&Text::new(
            if scale_max >= 10.0 {
                format!("{v:.0}")
            } else {
                trim_number(v)
            },
            (x0 + 24, y - 6),
            label.clone(),
        ))
        .map_err(err)?;
    }
    body.draw(&Text::new(
        if grouped { "mean attempts" } else { "attempts" },
        (x0 - 6, y1 + 10),
        label.clone(),
    ))
    .map_err(err)?;
    body.draw(&Text::new("per window", (x0 - 6, y1 + 24), label))
        .map_err(err)?;
    Ok(())
}

/// The heat map's colour for `f` in [0, 1] of the scale: white through light blue to navy,
/// one map for every panel so panels compare.
fn heat(f: f64) -> RGBColor {
    const STOPS: [(f64, (f64, f64, f64)); 3] = [
        (0.0, (255.0, 255.0, 255.0)),
        (0.5, (107.0, 174.0, 214.0)),
        (1.0, (8.0, 48.0, 107.0)),
    ];
    let f = if f.is_finite() {
        f.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (i, j) = if f <= 0.5 { (0, 1) } else { (1, 2) };
    let t = (f - STOPS[i].0) / (STOPS[j].0 - STOPS[i].0);
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    let (a, b) = (STOPS[i].1, STOPS[j].1);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The windows' length: the median gap between window ends (a last, partial window is
/// shorter), at least a millisecond.
fn window_seconds(pts: &[(f64, f64)]) -> f64 {
    let mut gaps: Vec<f64> = pts.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_by(f64::total_cmp);
    gaps.get(gaps.len() / 2)
        .copied()
        .or_else(|| pts.first().map(|p| p.0))
        .unwrap_or(1.0)
        .max(1e-3)
}

/// Error rate (top) and successes per second (bottom) over time, per strategy, with the fault
/// windows shaded and named: what a fault does to users, window by window.
/// The call graph, one panel per strategy: clients on the left, each service one column further
/// than its deepest caller, and on every edge the calls' p99 and error rate as the caller's
/// sidecar saw them (and attempts per call, when retries or hedges add any); under each service,
/// its share of end-to-end time on the critical path, and beside the strategy's name the share
/// spent between services.
fn call_graph<DB: DrawingBackend>(data: &ReportData, root: &DrawingArea<DB, Shift>) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let (head, body) = root.split_vertically(34);
    head.titled(
        &format!(
            "The call graph: p99 and errors per edge{}",
            data.point_note()
        ),
        ("sans-serif", 20),
    )
    .map_err(err)?;
    let mut strategies: Vec<&str> = Vec::new();
    for e in &data.edges {
        if !strategies.contains(&e.0.as_str()) {
            strategies.push(&e.0);
        }
    }
    // Depth: the longest path from a node nothing calls (edges are acyclic).
    let mut names: Vec<&str> = Vec::new();
    for e in data.edges.iter().filter(|e| e.0 == strategies[0]) {
        for n in [e.1.as_str(), e.2.as_str()] {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    let mut depth = vec![0usize; names.len()];
    for _ in 0..names.len() {
        for e in data.edges.iter().filter(|e| e.0 == strategies[0]) {
            let a = names.iter().position(|n| *n == e.1).unwrap_or(0);
            let b = names.iter().position(|n| *n == e.2).unwrap_or(0);
            depth[b] = depth[b].max(depth[a] + 1);
        }
    }
    let columns = depth.iter().max().copied().unwrap_or(0) + 1;
    let mut row = vec![0usize; names.len()];
    let mut per_column = vec![0usize; columns];
    for (i, d) in depth.iter().enumerate() {
        row[i] = per_column[*d];
        per_column[*d] += 1;
    }
    let rows = per_column.iter().max().copied().unwrap_or(1);
    let panels = body.split_evenly((strategies.len(), 1));
    for (k, (panel, strategy)) in panels.iter().zip(&strategies).enumerate() {
        let (w, h) = panel.dim_in_pixel();
        let (w, h) = (
            i32::try_from(w).unwrap_or(800),
            i32::try_from(h).unwrap_or(100),
        );
        let colour = colour(k);
        let share = |part: &str| {
            data.critical
                .iter()
                .find(|c| c.0 == *strategy && c.1 == part)
                .map(|c| c.2)
        };
        let mut title = strategy.to_string();
        if let Some(t) = share(crate::TRANSPORT_PART) {
            title.push_str(&format!(
                "   (critical path, share of end-to-end time: under each service its own work; between services, retries included, {:.1}%)",
                100.0 * t
            ));
        }
        panel
            .draw(&Text::new(
                title,
                (8, 4),
                ("sans-serif", 15).into_font().color(&colour),
            ))
            .map_err(err)?;
        let at = |i: usize| -> (i32, i32) {
            let x = 70 + (w - 140) * depth[i] as i32 / (columns.max(2) - 1) as i32;
            let y = 22 + (h - 30) * (2 * row[i] as i32 + 1) / (2 * rows as i32);
            (x, y)
        };
        for e in data.edges.iter().filter(|e| e.0 == *strategy) {
            let (Some(a), Some(b)) = (
                names.iter().position(|n| *n == e.1),
                names.iter().position(|n| *n == e.2),
            ) else {
                continue;
            };
            let (pa, pb) = (at(a), at(b));
            let bad = e.4 > 0.01;
            let line = if bad { RED } else { BLACK };
            panel
                .draw(&PathElement::new(vec![pa, pb], line.stroke_width(2)))
                .map_err(err)?;
            let mut label = format!("p99 {} ms, {:.2}% err", trim_number(e.3), 100.0 * e.4);
            if (e.5 - 1.0).abs() > 0.0005 {
                label.push_str(&format!(", {:.3} tries/call", e.5));
            }
            let mid = ((pa.0 + pb.0) / 2 - 60, (pa.1 + pb.1) / 2 - 19);
            panel
                .draw(&Text::new(
                    label,
                    mid,
                    ("sans-serif", 13).into_font().color(&line),
                ))
                .map_err(err)?;
        }
        for (i, n) in names.iter().enumerate() {
            let (x, y) = at(i);
            panel
                .draw(&Rectangle::new(
                    [(x - 55, y - 10), (x + 55, y + 10)],
                    RGBColor(235, 240, 250).filled(),
                ))
                .map_err(err)?;
            panel
                .draw(&Rectangle::new(
                    [(x - 55, y - 10), (x + 55, y + 10)],
                    colour.stroke_width(1),
                ))
                .map_err(err)?;
            panel
                .draw(&Text::new(
                    n.to_string(),
                    (x - 50, y - 7),
                    ("sans-serif", 13).into_font(),
                ))
                .map_err(err)?;
            if let Some(c) = share(n) {
                panel
                    .draw(&Text::new(
                        format!("{:.1}% of e2e", 100.0 * c),
                        (x - 55, y + 12),
                        ("sans-serif", 12).into_font().color(&colour),
                    ))
                    .map_err(err)?;
            }
        }
    }
    Ok(())
}

fn errors_over_time<DB: DrawingBackend>(data: &ReportData, root: &DrawingArea<DB, Shift>) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let strategies = strategies_at_point0(data);
    let (head, body) = root.split_vertically(34);
    head.titled(
        &format!("Error rate and throughput over time{}", data.point_note()),
        ("sans-serif", 20),
    )
    .map_err(err)?;
    let (top, bottom) = body.split_vertically((SIZE.1 - 34) / 2);
    let lines: Vec<(usize, String, Points, Points)> = strategies
        .iter()
        .map(|(s, c)| {
            let req = series_over_time(data, s, "requests");
            let errs = series_over_time(data, s, "errors");
            let secs = window_seconds(&req);
            let rate = req
                .iter()
                .zip(&errs)
                .map(|(r, e)| (r.0, if r.1 > 0.0 { 100.0 * e.1 / r.1 } else { 0.0 }))
                .collect();
            let ok = req
                .iter()
                .zip(&errs)
                .map(|(r, e)| (r.0, (r.1 - e.1).max(0.0) / secs))
                .collect();
            (*c, s.clone(), rate, ok)
        })
        .collect();
    let t_max = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.0))
        .fold(1e-9, f64::max);
    let e_hi = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(0.1)
        * 1.15;
    let mut chart = ChartBuilder::on(&top)
        .margin(8)
        .margin_right(LEGEND_W)
        .x_label_area_size(20)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..e_hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .y_desc("error rate (%)")
        .y_label_formatter(&|y| trim_number(*y))
        .axis_desc_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    shade_faults(&mut chart, &data.faults, (0.0, e_hi))?;
    let mut entries = Legend::new();
    for (c, s, rate, _) in &lines {
        let colour = colour(*c);
        chart
            .draw_series(LineSeries::new(
                rate.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(err)?;
        entries.push((s.clone(), colour, Mark::Line(2)));
    }
    side_legend(&top, &entries)?;
    let t_hi = lines
        .iter()
        .flat_map(|l| l.3.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(8)
        .margin_right(LEGEND_W)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..t_hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("time (s)")
        .y_desc("successes per second")
        .y_label_formatter(&|y| trim_number(*y))
        .axis_desc_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    shade_faults(&mut chart, &data.faults, (0.0, t_hi))?;
    for (c, _, _, ok) in &lines {
        chart
            .draw_series(LineSeries::new(
                ok.iter().copied(),
                colour(*c).stroke_width(2),
            ))
            .map_err(err)?;
    }
    Ok(())
}

fn retries_and_ejections<DB: DrawingBackend>(
    data: &ReportData,
    root: &DrawingArea<DB, Shift>,
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let strategies = strategies_at_point0(data);
    let (top, bottom) = root.split_vertically(SIZE.1 / 2);
    let amp: Vec<(usize, String, Points)> = strategies
        .iter()
        .map(|(s, c)| {
            let a = series_over_time(data, s, "attempts");
            let r = series_over_time(data, s, "requests");
            let pts = a
                .iter()
                .zip(&r)
                .filter(|(_, r)| r.1 > 0.0)
                .map(|(a, r)| (a.0, a.1 / r.1))
                .collect();
            (*c, s.clone(), pts)
        })
        .collect();
    // Over every window, not only those with requests: the ejection panel below shares the
    // axis, and a run with no finished request still has windows.
    let t_max = strategies
        .iter()
        .flat_map(|(s, _)| series_over_time(data, s, "requests"))
        .map(|p| p.0)
        .fold(1e-9, f64::max);
    let y_hi = amp
        .iter()
        .flat_map(|a| a.2.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!(
                "Retry amplification and ejections over time{}",
                data.point_note()
            ),
            ("sans-serif", 20),
        )
        .margin(8)
        .margin_right(LEGEND_W)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.9..y_hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .y_desc("attempts per request")
        .axis_desc_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    shade_faults(&mut chart, &data.faults, (0.9, y_hi))?;
    let mut entries = Legend::new();
    for (c, s, pts) in amp {
        let colour = colour(c);
        chart
            .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
            .map_err(err)?;
        entries.push((s, colour, Mark::Line(2)));
    }
    entries.push((
        "ejected hosts".to_owned(),
        RGBColor(90, 90, 90),
        Mark::Line(2),
    ));
    entries.push((
        "health changes".to_owned(),
        RGBColor(90, 90, 90),
        Mark::Dashed,
    ));
    side_legend(&top, &entries)?;
    let ej: Vec<(usize, Points, Points)> = strategies
        .iter()
        .map(|(s, c)| {
            (
                *c,
                series_over_time(data, s, "ejected"),
                series_over_time(data, s, "health_changes"),
            )
        })
        .collect();
    let y_hi = ej
        .iter()
        .flat_map(|e| e.1.iter().chain(e.2.iter()).map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(8)
        .margin_right(LEGEND_W)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..y_hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("time (s)")
        .y_desc("hosts ejected / health changes")
        .axis_desc_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    shade_faults(&mut chart, &data.faults, (0.0, y_hi))?;
    for (c, ejected, health) in ej {
        let colour = colour(c);
        chart
            .draw_series(LineSeries::new(ejected, colour.stroke_width(2)))
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(health, 5, 4, colour.stroke_width(1)))
            .map_err(err)?;
    }
    Ok(())
}

/// A sweep value as a number and its unit (`4000/s` is 4000 and `/s`, `0.9` is 0.9 and no
/// unit), when it starts with one.
fn axis_number(v: &str) -> Option<(f64, &str)> {
    let end = v
        .char_indices()
        .take_while(|&(i, c)| {
            c.is_ascii_digit()
                || c == '.'
                || ((c == '-' || c == '+') && (i == 0 || v[..i].ends_with(['e', 'E'])))
                || ((c == 'e' || c == 'E') && i > 0)
        })
        .map(|(i, c)| i + c.len_utf8())
        .last()?;
    // A trailing `e` belongs to the unit, not the exponent.
    let mut end = end;
    while end > 0 && v[..end].ends_with(['e', 'E', '+', '-']) {
        end -= 1;
    }
    let x: f64 = v[..end].parse().ok()?;
    x.is_finite().then(|| (x, v[end..].trim()))
}

/// The sweep's x axis: the first path's values to scale when they are all numbers in one unit
/// (positions, axis name with its unit), else in order (positions 0, 1, ... and their labels).
fn sweep_axis(data: &ReportData) -> (Vec<String>, Vec<f64>, String, bool) {
    let mut xs: Vec<String> = Vec::new();
    for s in &data.summary.strategies {
        if let Some(x) = s.coords.first()
            && !xs.contains(x)
        {
            xs.push(x.clone());
        }
    }
    let path = data.sweep_paths.first().cloned().unwrap_or_default();
    let numbers: Option<Vec<(f64, &str)>> = xs.iter().map(|x| axis_number(x)).collect();
    if let Some(n) = numbers
        && n.len() > 1
        && n.iter().all(|(_, u)| *u == n[0].1)
    {
        let unit = n[0].1;
        let desc = if unit.is_empty() {
            path
        } else {
            format!("{path} ({unit})")
        };
        let pos = n.iter().map(|p| p.0).collect();
        return (xs, pos, desc, true);
    }
    let pos = (0..xs.len()).map(|i| i as f64).collect();
    (xs, pos, path, false)
}

/// One sweep plot: `metric` (times `scale`, in `unit`) against the first sweep path, a curve per
/// strategy (and per value of the other paths) with its 95% CI band.
fn sweep_curve<DB: DrawingBackend>(
    data: &ReportData,
    root: &DrawingArea<DB, Shift>,
    metric: &str,
    scale: f64,
    what: &str,
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let (xs, pos, x_desc, numeric) = sweep_axis(data);
    let mut curves: BTreeMap<(usize, String), Curve> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for s in &data.summary.strategies {
        let name = s.strategy.clone();
        if !order.contains(&name) {
            order.push(name.clone());
        }
        let ci = order.iter().position(|n| *n == name).unwrap_or(0);
        let Some(xi) = s
            .coords
            .first()
            .and_then(|x| xs.iter().position(|v| v == x))
        else {
            continue;
        };
        let rest = s.coords[1..].join(", ");
        let label = if rest.is_empty() {
            name.clone()
        } else {
            format!("{name} @ {rest}")
        };
        let m = s.metrics.get(metric);
        let mean = m.map_or(0.0, |m| m.mean) * scale;
        let ci95 = m.and_then(|m| m.ci95).unwrap_or(0.0) * scale;
        curves
            .entry((ci, rest.clone()))
            .or_insert((label, ci, Vec::new()))
            .2
            .push((pos[xi], mean, ci95));
    }
    let y_hi = curves
        .values()
        .flat_map(|c| c.2.iter().map(|p| p.1 + p.2))
        .fold(1e-9, f64::max)
        * 1.15;
    let y_lo = curves
        .values()
        .flat_map(|c| c.2.iter().map(|p| p.1))
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let (x_lo, x_hi) = (
        pos.iter().copied().fold(f64::INFINITY, f64::min),
        pos.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let pad = ((x_hi - x_lo) * 0.04).max(0.2);
    let x_range = (x_lo - pad)..(x_hi + pad);
    let labels = xs.clone();
    let categorical = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let plain = |x: &f64| trim_number(*x);
    let formatter: &dyn Fn(&f64) -> String = if numeric { &plain } else { &categorical };
    let n_labels = if numeric { 10 } else { xs.len().max(2) };
    let title = format!("{what} across the sweep (mean, 95% CI band)");
    let entries: Legend = curves
        .values()
        .map(|(label, c, _)| (label.clone(), colour(*c), Mark::Line(2)))
        .collect();
    // Log scale when the curves span more than a factor of 20.
    if y_lo.is_finite() && y_hi / y_lo > 20.0 {
        let floor = y_lo * 0.5;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .margin_right(LEGEND_W)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(
                x_range,
                (floor..y_hi)
                    .log_scale()
                    .with_key_points(log_ticks(floor, y_hi)),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc(x_desc)
            .y_desc(format!("{what} (log scale)"))
            .x_labels(n_labels)
            .x_label_formatter(formatter)
            .y_label_formatter(&|y| trim_number(*y))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        draw_sweep_curves(&mut chart, curves, floor)?;
        return side_legend(root, &entries);
    }
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .margin_right(LEGEND_W)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, 0.0..y_hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc(x_desc)
        .y_desc(what.to_owned())
        .x_labels(n_labels)
        .x_label_formatter(formatter)
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    draw_sweep_curves(&mut chart, curves, 0.0)?;
    side_legend(root, &entries)
}

/// A number for an axis label: at most 4 significant digits, no trailing zeros.
fn trim_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".to_owned();
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Ticks for a log axis from `lo` to `hi`: 1, 2 and 5 in every decade (only the powers of ten
/// when it spans more than three decades), so values can be read off it.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && lo.is_finite() && hi.is_finite()) {
        return Vec::new();
    }
    let (d0, d1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let steps: &[f64] = if d1 - d0 > 3 {
        &[1.0]
    } else {
        &[1.0, 2.0, 5.0]
    };
    (d0..=d1)
        .flat_map(|d| steps.iter().map(move |m| m * 10f64.powi(d)))
        .filter(|v| (lo..=hi).contains(v))
        .collect()
}

/// Draws each sweep curve: its 95% CI band, the mean line and its points. Values below `floor`
/// (what a log axis can show; 0 on a linear one) are drawn at it.
fn draw_sweep_curves<
    'a,
    DB: DrawingBackend + 'a,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    curves: BTreeMap<(usize, String), Curve>,
    floor: f64,
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    for (_, (_, c, pts)) in curves {
        let colour = colour(c);
        let mut band: Vec<(f64, f64)> = pts
            .iter()
            .map(|&(x, m, ci)| (x, (m + ci).max(floor)))
            .collect();
        band.extend(pts.iter().rev().map(|&(x, m, ci)| (x, (m - ci).max(floor))));
        chart
            .draw_series(std::iter::once(Polygon::new(
                band,
                colour.mix(0.2).filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|&(x, m, _)| (x, m.max(floor))),
                colour.stroke_width(2),
            ))
            .map_err(err)?;
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, m, _)| Circle::new((x, m.max(floor)), 4, colour.filled())),
            )
            .map_err(err)?;
    }
    Ok(())
}

/// Rebuilds every plot (PNG and SVG) and `index.html` in a result directory.
pub fn render_dir(dir: &Path) -> Res<Vec<String>> {
    let data = ReportData::read(dir)?;
    let mut written = Vec::new();
    let mut sections = String::new();
    // Plots are independent: draw them on the rayon pool, then assemble in order.
    let drawn: Vec<(Plot, Res<String>)> = {
        use rayon::prelude::*;
        plots(&data)
            .into_par_iter()
            .map(|plot| {
                let r = svg(&plot, &data).and_then(|svg_text| {
                    std::fs::write(dir.join(format!("{}.svg", plot.name)), &svg_text)?;
                    png(&plot, &data, &dir.join(format!("{}.png", plot.name)))?;
                    Ok(svg_text)
                });
                (plot, r)
            })
            .collect()
    };
    for (plot, svg_text) in drawn {
        let svg_text = svg_text?;
        written.push(plot.name.to_owned());
        let _ = write!(
            sections,
            "<section><h2>{}</h2>\n<figure>{}</figure>\n<p class=\"files\"><a href=\"{n}.png\">{n}.png</a> · <a href=\"{n}.svg\">{n}.svg</a></p></section>\n",
            escape(plot.title),
            svg_text
                .trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
                .trim_start(),
            n = plot.name
        );
    }
    let tables = crate::page::world_tables(dir)?;
    // A live run's live.json (pacing, achieved rate); a damaged one is reported, not skipped.
    let live_path = dir.join("live.json");
    let live: Option<serde_json::Value> = if live_path.exists() {
        let text = std::fs::read(&live_path)?;
        Some(
            serde_json::from_slice(&text)
                .map_err(|e| err(format!("{}: {e}", live_path.display())))?,
        )
    } else {
        None
    };
    let html = crate::page::html_page(&data, &format!("{tables}{sections}"), live.as_ref());
    std::fs::write(dir.join("index.html"), html)?;
    Ok(written)
}

/// Draws the relative change of each metric per strategy (grouped bars), as SVG and PNG.
pub(crate) fn compare_plot(
    rows: &[(String, Vec<(f64, f64)>)],
    metrics: &[&str],
    out: &Path,
) -> Res<()> {
    register_font();
    fn draw<DB: DrawingBackend>(
        root: &DrawingArea<DB, Shift>,
        rows: &[(String, Vec<(f64, f64)>)],
        metrics: &[&str],
    ) -> Res<()>
    where
        DB::ErrorType: 'static,
    {
        let change = |x: f64, y: f64| {
            if x != 0.0 && x.is_finite() && y.is_finite() {
                100.0 * (y - x) / x
            } else {
                0.0
            }
        };
        let lim = rows
            .iter()
            .flat_map(|r| r.1.iter().map(|&(x, y)| change(x, y).abs()))
            .fold(1.0, f64::max)
            * 1.15;
        let n = metrics.len();
        let mut chart = ChartBuilder::on(root)
            .caption("Change from A to B (%)", ("sans-serif", 22))
            .margin(12)
            .margin_right(LEGEND_W)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..n as f64, -lim..lim)
            .map_err(err)?;
        let names: Vec<String> = metrics.iter().map(|m| (*m).to_owned()).collect();
        // Ticks every half unit (2n + 1 of them); the ones at each group's centre carry its
        // metric's name.
        let name_at = |x: &f64| {
            if (x.fract() - 0.5).abs() < 1e-6 {
                names.get(x.floor() as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .disable_x_mesh()
            .x_labels(2 * n + 1)
            .x_label_formatter(&name_at)
            .x_label_style(("sans-serif", 13))
            .x_desc("metric")
            .y_desc("relative change, B vs A (%)")
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        let width = 0.8 / rows.len().max(1) as f64;
        let mut entries = Legend::new();
        for (i, (label, vals)) in rows.iter().enumerate() {
            let c = colour(i);
            chart
                .draw_series(vals.iter().enumerate().map(|(m, &(x, y))| {
                    let x0 = m as f64 + 0.1 + i as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, change(x, y))], c.filled())
                }))
                .map_err(err)?;
            entries.push((label.clone(), c, Mark::Box));
        }
        side_legend(root, &entries)
    }
    let mut svg_text = String::new();
    {
        let root = SVGBackend::with_string(&mut svg_text, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root, rows, metrics)?;
        root.present().map_err(err)?;
    }
    std::fs::write(out.join("compare.svg"), svg_text)?;
    let png_path = out.join("compare.png");
    let root = BitMapBackend::new(&png_path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    draw(&root, rows, metrics)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(label: &str) -> ReportData {
        ReportData {
            series: vec![Series {
                label: label.to_owned(),
                strategy: label.to_owned(),
                point: 0,
                colour: 0,
                cdf: vec![(0.5, 0.0), (1.0, 0.3), (2.0, 0.9), (8.0, 1.0)],
            }],
            ..ReportData::default()
        }
    }

    #[test]
    fn png_text_is_drawn_with_the_embedded_font() {
        // plotters' ab_glyph backend knows no system fonts: text appears only because the
        // embedded DejaVu Sans is registered. A legend label changes the pixels...
        let plot = plots(&data("x"))
            .into_iter()
            .find(|p| p.name == "latency_cdf")
            .expect("a CDF plot");
        let with = pixels(&plot, &data("round_robin")).expect("draws");
        let without = pixels(&plot, &data("")).expect("draws");
        assert_ne!(with, without, "the legend label left no mark");
        // ...and the title band holds dark glyph pixels.
        let dark = with[..(SIZE.0 * 40 * 3) as usize]
            .chunks(3)
            .filter(|p| p.iter().all(|&c| c < 100))
            .count();
        assert!(dark > 100, "only {dark} dark pixels in the title band");
    }

    #[test]
    fn sweep_values_become_numbers_with_units_and_log_axes_get_readable_ticks() {
        assert_eq!(axis_number("4000/s"), Some((4000.0, "/s")));
        assert_eq!(axis_number("0.9"), Some((0.9, "")));
        assert_eq!(axis_number("1e3/s"), Some((1000.0, "/s")));
        assert_eq!(axis_number("250ms"), Some((250.0, "ms")));
        assert_eq!(axis_number("-2"), Some((-2.0, "")));
        assert_eq!(axis_number("round_robin"), None);
        assert_eq!(axis_number("e5"), None);
        assert_eq!(log_ticks(3.0, 60.0), [5.0, 10.0, 20.0, 50.0]);
        assert_eq!(log_ticks(0.5, 5000.0), [1.0, 10.0, 100.0, 1000.0]);
        assert!(log_ticks(0.0, 1.0).is_empty());
        assert_eq!(trim_number(285.75), "285.8");
        assert_eq!(trim_number(0.125), "0.125");
        assert_eq!(trim_number(2000.0), "2000");
    }

    #[test]
    fn hgrm_round_trips_into_plot_points() {
        let mut h = crate::latency_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1_000_000).unwrap();
        }
        let mut text = Vec::new();
        crate::write_hgrm(&h, &mut text).unwrap();
        let pts = read_hgrm(&String::from_utf8(text).unwrap());
        let median = pts.iter().find(|p| p.1 >= 0.5).unwrap().0;
        assert!((median - 500.0).abs() < 2.5, "{median}"); // 3 significant digits
        assert_eq!(pts.last().unwrap().1, 1.0);
    }
}
