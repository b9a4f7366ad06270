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

use plotters::coord::Shift;
use plotters::prelude::*;

/// Plot size in pixels.
const SIZE: (u32, u32) = (900, 500);

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

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn err(e: impl std::fmt::Display) -> Box<dyn std::error::Error + Send + Sync> {
    e.to_string().into()
}

/// A timeseries.csv row: strategy, sweep coordinates, replication, numeric columns by name.
pub type TimeRow = (String, Vec<String>, u32, BTreeMap<String, f64>);

type Points = Vec<(f64, f64)>;

/// A sweep curve: label, colour index, (x index, mean, CI half-width) points.
type Curve = (String, usize, Vec<(usize, f64, f64)>);

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
    /// Fault windows to shade, in seconds.
    pub faults: Vec<(f64, f64)>,
    /// The scenario text.
    pub scenario: String,
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

fn read_csv(path: &Path) -> Res<(Vec<String>, Vec<Vec<String>>)> {
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
        let faults = summary
            .info
            .faults
            .iter()
            .map(|f| (f.from_s, f.until_s.unwrap_or(f64::INFINITY)))
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
        })
    }

    /// The series of the first sweep point (the ones time plots show).
    fn first_point(&self) -> impl Iterator<Item = &Series> {
        self.series.iter().filter(|s| s.point == 0)
    }

    fn coords_of(&self, point: usize) -> Vec<String> {
        self.summary.coords_of(point)
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
}

/// Every plot a report may have (sweep curves only with a sweep).
pub fn plots(data: &ReportData) -> Vec<Plot> {
    let mut v = vec![
        plot!("latency_cdf", "Latency CDF", latency_cdf),
        plot!("latency_ccdf", "Latency CCDF (tail)", latency_ccdf),
        plot!(
            "percentiles_over_time",
            "Percentiles over time",
            percentiles_over_time
        ),
        plot!("load_share", "Load share per endpoint", load_share),
        plot!(
            "endpoint_heatmap",
            "Per-endpoint load over time",
            endpoint_heatmap
        ),
        plot!(
            "retries_and_ejections",
            "Retry amplification and ejections over time",
            retries_and_ejections
        ),
    ];
    if !data.sweep_paths.is_empty() {
        v.push(plot!(
            "sweep_p99",
            "p99 latency across the sweep",
            sweep_p99
        ));
        v.push(plot!(
            "sweep_mean",
            "Mean latency across the sweep",
            sweep_mean
        ));
    }
    v
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

fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)
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
        .caption("Latency CDF", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("latency (ms, log scale)")
        .y_desc("fraction of requests <= x")
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for s in data.first_point() {
        let c = colour(s.colour);
        chart
            .draw_series(LineSeries::new(
                s.cdf.iter().map(|&(v, q)| (v.max(lo), q)),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart)
}

fn latency_ccdf<DB: DrawingBackend>(data: &ReportData, root: &DrawingArea<DB, Shift>) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let (lo, hi) = latency_range(data);
    let floor = 1e-5;
    let mut chart = ChartBuilder::on(root)
        .caption("Latency CCDF (tail)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((lo..hi).log_scale(), (floor..1.0).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("latency (ms, log scale)")
        .y_desc("fraction of requests > x (log scale)")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
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
            .map_err(err)?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(err)
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
    faults: &[(f64, f64)],
    y: (f64, f64),
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let x = chart.x_range();
    for &(a, b) in faults {
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
            "p50 (thin), p99 (thick), p99.9 (dashed) over time",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, (y_lo..y_hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("time (s)")
        .y_desc("latency (ms, log scale)")
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    shade_faults(&mut chart, &data.faults, (y_lo, y_hi))?;
    for (s, c, col, dash, pts) in lines {
        let colour = colour(c);
        let style = colour.stroke_width(if dash == 1 { 3 } else { 1 });
        if dash == 2 {
            chart
                .draw_series(DashedLineSeries::new(pts, 6, 4, style))
                .map_err(err)?;
        } else {
            let series = chart
                .draw_series(LineSeries::new(pts, style))
                .map_err(err)?;
            if col == "p99_ms" {
                series.label(s).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
                });
            }
        }
    }
    legend(&mut chart)
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
        return sorted_load_share(&strategies, endpoints.len(), &acc, root);
    }
    let n_ep = endpoints.len().max(1);
    let n_s = strategies.len().max(1);
    let y_hi = acc
        .values()
        .map(|&(v, n)| 100.0 * v / f64::from(n))
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(root)
        .caption("Load share per endpoint", ("sans-serif", 22))
        .margin(12)
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
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    legend(&mut chart)
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
            format!("Load share per endpoint, sorted ({n_ep} endpoints)"),
            ("sans-serif", 22),
        )
        .margin(12)
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
        .map_err(err)?
        .label(format!("even ({fair:.4}%)"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLACK.mix(0.4)));
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
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], colour));
    }
    legend(&mut chart)
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
                format!("Attempts per window, {n_ep} endpoints in {g_ep} groups (darker = more)")
            } else {
                "Attempts per endpoint per window (darker = more)".to_owned()
            },
            ("sans-serif", 22),
        )
        .map_err(err)?;
    let panels = body.split_evenly((strategies.len().max(1), 1));
    for ((name, c), panel) in strategies.iter().zip(panels.iter()) {
        let mut chart = ChartBuilder::on(panel)
            .margin(4)
            .x_label_area_size(if std::ptr::eq(panel, panels.last().unwrap()) {
                35
            } else {
                0
            })
            .y_label_area_size(60)
            .right_y_label_area_size(10)
            .build_cartesian_2d(0.0..t_max, 0.0..n_ep as f64)
            .map_err(err)?;
        let whole = |y: &f64| format!("{y:.0}");
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(TRANSPARENT)
            .disable_mesh()
            .x_desc("time (s)")
            .y_desc("endpoint")
            .y_labels(n_ep.min(6))
            .axis_desc_style(("sans-serif", 12));
        if grouped {
            mesh.y_label_formatter(&whole);
        }
        mesh.draw().map_err(err)?;
        let base = colour(*c);
        if grouped {
            let (h, w) = (n_ep as f64 / g_ep as f64, t_max / g_t as f64);
            chart
                .draw_series(
                    groups
                        .range((name.as_str(), 0, 0)..=(name.as_str(), usize::MAX, usize::MAX))
                        .map(|(&(_, ge, gt), &(v, n))| {
                            let f = (v / f64::from(n.max(1)) / g_peak).clamp(0.0, 1.0);
                            let mix = |ch: u8| (255.0 - (255.0 - f64::from(ch)) * f) as u8;
                            let (x, y) = (gt as f64 * w, ge as f64 * h);
                            Rectangle::new(
                                [(x, y), (x + w, y + h)],
                                RGBColor(mix(base.0), mix(base.1), mix(base.2)).filled(),
                            )
                        }),
                )
                .map_err(err)?;
            panel
                .draw_text(
                    name,
                    &("sans-serif", 14).into_text_style(panel).color(&base),
                    (70, 2),
                )
                .map_err(err)?;
            continue;
        }
        chart
            .draw_series(rows.iter().filter(|r| r.0 == *name).map(|r| {
                let f = (r.4 / peak).clamp(0.0, 1.0);
                let mix = |ch: u8| (255.0 - (255.0 - f64::from(ch)) * f) as u8;
                Rectangle::new(
                    [(r.2 - period, r.3 as f64), (r.2, r.3 as f64 + 1.0)],
                    RGBColor(mix(base.0), mix(base.1), mix(base.2)).filled(),
                )
            }))
            .map_err(err)?;
        panel
            .draw_text(
                name,
                &("sans-serif", 14).into_text_style(panel).color(&base),
                (70, 2),
            )
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
    let t_max = amp
        .iter()
        .flat_map(|a| a.2.iter().map(|p| p.0))
        .fold(1e-9, f64::max);
    let y_hi = amp
        .iter()
        .flat_map(|a| a.2.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "Retry amplification and ejections over time",
            ("sans-serif", 20),
        )
        .margin(8)
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
    for (c, s, pts) in amp {
        let colour = colour(c);
        chart
            .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
            .map_err(err)?
            .label(s)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    legend(&mut chart)?;
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
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..y_hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("time (s)")
        .y_desc("ejected hosts (solid), health changes (dashed)")
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

fn sweep_curve<DB: DrawingBackend>(
    data: &ReportData,
    root: &DrawingArea<DB, Shift>,
    metric: &str,
    title: &str,
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    // x: the first sweep path's values in order; one curve per strategy (and per value of the
    // other paths).
    let strategies = &data.summary.strategies;
    let mut xs: Vec<String> = Vec::new();
    let mut curves: BTreeMap<(usize, String), Curve> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for s in strategies {
        let name = s.strategy.clone();
        if !order.contains(&name) {
            order.push(name.clone());
        }
        let ci = order.iter().position(|n| *n == name).unwrap_or(0);
        let coords = &s.coords;
        let Some(x) = coords.first() else { continue };
        let xi = match xs.iter().position(|v| v == x) {
            Some(i) => i,
            None => {
                xs.push(x.clone());
                xs.len() - 1
            }
        };
        let rest = coords[1..].join(", ");
        let label = if rest.is_empty() {
            name.clone()
        } else {
            format!("{name} @ {rest}")
        };
        let m = s.metrics.get(metric);
        let mean = m.map_or(0.0, |m| m.mean);
        let ci95 = m.and_then(|m| m.ci95).unwrap_or(0.0);
        curves
            .entry((ci, rest.clone()))
            .or_insert((label, ci, Vec::new()))
            .2
            .push((xi, mean, ci95));
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
    let n = xs.len().max(2);
    let x_range = -0.2..(n - 1) as f64 + 0.2;
    let labels = xs.clone();
    let x_desc = data.sweep_paths.first().cloned().unwrap_or_default();
    let formatter = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    // Log scale when the curves span more than a factor of 20.
    if y_lo.is_finite() && y_hi / y_lo > 20.0 {
        let floor = y_lo * 0.5;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range, (floor..y_hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc(x_desc)
            .y_desc(format!("{metric} (log scale; mean, 95% CI band)"))
            .x_labels(n)
            .x_label_formatter(&formatter)
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        draw_sweep_curves(&mut chart, curves, floor)?;
        return legend(&mut chart);
    }
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range, 0.0..y_hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc(x_desc)
        .y_desc(format!("{metric} (mean, 95% CI band)"))
        .x_labels(n)
        .x_label_formatter(&formatter)
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    draw_sweep_curves(&mut chart, curves, 0.0)?;
    legend(&mut chart)
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
    for (_, (label, c, pts)) in curves {
        let colour = colour(c);
        let mut band: Vec<(f64, f64)> = pts
            .iter()
            .map(|&(x, m, ci)| (x as f64, (m + ci).max(floor)))
            .collect();
        band.extend(
            pts.iter()
                .rev()
                .map(|&(x, m, ci)| (x as f64, (m - ci).max(floor))),
        );
        chart
            .draw_series(std::iter::once(Polygon::new(
                band,
                colour.mix(0.2).filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|&(x, m, _)| (x as f64, m.max(floor))),
                colour.stroke_width(2),
            ))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, m, _)| Circle::new((x as f64, m.max(floor)), 4, colour.filled())),
            )
            .map_err(err)?;
    }
    Ok(())
}

fn sweep_p99<DB: DrawingBackend>(data: &ReportData, root: &DrawingArea<DB, Shift>) -> Res<()>
where
    DB::ErrorType: 'static,
{
    sweep_curve(data, root, "p99_ms", "p99 latency (ms) across the sweep")
}

fn sweep_mean<DB: DrawingBackend>(data: &ReportData, root: &DrawingArea<DB, Shift>) -> Res<()>
where
    DB::ErrorType: 'static,
{
    sweep_curve(data, root, "mean_ms", "Mean latency (ms) across the sweep")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
    let tables = world_tables(dir)?;
    let html = html_page(&data, &format!("{tables}{sections}"));
    std::fs::write(dir.join("index.html"), html)?;
    Ok(written)
}

/// Per hot key, the instances that took its attempts and how many.
type KeyHomes = std::collections::BTreeMap<u32, Vec<(String, u64)>>;

/// Where the hot keys went (keys.csv) and how traffic crossed zones (zones.csv), as HTML
/// tables, when the run has them. Sweep points are told apart by their coordinates.
fn world_tables(dir: &Path) -> Res<String> {
    let mut out = String::new();
    let col = |header: &[String], name: &str| -> Res<usize> {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| err(format!("{}: no `{name}` column", dir.display())))
    };
    let keys = dir.join("keys.csv");
    if keys.exists() {
        let (header, rows) = read_csv(&keys)?;
        let (st, rep, key, inst, att) = (
            col(&header, "strategy")?,
            col(&header, "replication")?,
            col(&header, "key")?,
            col(&header, "instance")?,
            col(&header, "attempts")?,
        );
        // (sweep point + strategy) -> key -> (instance -> attempts), in file order.
        let mut table: Vec<(String, KeyHomes)> = Vec::new();
        for r in &rows {
            if r.get(rep).map(String::as_str) != Some("0") {
                continue;
            }
            let label = r[..st].join(", ") + if st > 0 { ": " } else { "" } + &r[st];
            let k: u32 = r[key]
                .parse()
                .map_err(|_| err(format!("{}: bad key", keys.display())))?;
            let n: u64 = r[att]
                .parse()
                .map_err(|_| err(format!("{}: bad attempts", keys.display())))?;
            let pos = match table.iter().position(|(l, _)| *l == label) {
                Some(p) => p,
                None => {
                    table.push((label, Default::default()));
                    table.len() - 1
                }
            };
            table[pos]
                .1
                .entry(k)
                .or_default()
                .push((r[inst].clone(), n));
        }
        let max_key = table
            .iter()
            .flat_map(|(_, m)| m.keys().copied())
            .max()
            .unwrap_or(0);
        out.push_str("<h2>Hot keys: where each went (replication 0)</h2>\n<p class=\"meta\">For each of the hottest keys (key 0 is the hottest under Zipf keys): the instance that took most of its attempts, that instance's share of them (100% is perfect affinity), and over how many instances the key spread.</p>\n<table><thead><tr><th>strategy</th>");
        for k in 0..=max_key {
            let _ = write!(out, "<th>key {k}</th>");
        }
        out.push_str("</tr></thead><tbody>");
        for (label, m) in &table {
            let _ = write!(out, "<tr><td>{}</td>", escape(label));
            for k in 0..=max_key {
                match m.get(&k) {
                    Some(at) => {
                        let total: u64 = at.iter().map(|a| a.1).sum();
                        let (home, top) =
                            at.iter().max_by_key(|a| a.1).cloned().unwrap_or_default();
                        let _ = write!(
                            out,
                            "<td>#{} {:.0}% ({} inst.)</td>",
                            escape(&home),
                            100.0 * top as f64 / total.max(1) as f64,
                            at.len()
                        );
                    }
                    None => out.push_str("<td>-</td>"),
                }
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>\n");
    }
    let zones = dir.join("zones.csv");
    if zones.exists() {
        let (header, rows) = read_csv(&zones)?;
        let (st, from, to, att) = (
            col(&header, "strategy")?,
            col(&header, "from_zone")?,
            col(&header, "to_zone")?,
            col(&header, "attempts")?,
        );
        let mut names: Vec<String> = rows.iter().map(|r| r[to].clone()).collect();
        names.sort();
        names.dedup();
        // (sweep point + strategy, from zone) -> to zone -> attempts, over replications.
        let mut flows: Vec<((String, String), std::collections::BTreeMap<String, u64>)> =
            Vec::new();
        for r in &rows {
            let label = r[..st].join(", ") + if st > 0 { ": " } else { "" } + &r[st];
            let n: u64 = r[att]
                .parse()
                .map_err(|_| err(format!("{}: bad attempts", zones.display())))?;
            let k = (label, r[from].clone());
            let pos = match flows.iter().position(|(l, _)| *l == k) {
                Some(p) => p,
                None => {
                    flows.push((k, Default::default()));
                    flows.len() - 1
                }
            };
            *flows[pos].1.entry(r[to].clone()).or_insert(0) += n;
        }
        out.push_str("<h2>Traffic between zones (share of each proxy zone's attempts, all replications)</h2>\n<table><thead><tr><th>strategy</th><th>from zone</th>");
        for z in &names {
            let _ = write!(out, "<th>to {}</th>", escape(z));
        }
        out.push_str("</tr></thead><tbody>");
        for ((label, from), m) in &flows {
            let total: u64 = m.values().sum();
            if total == 0 {
                continue;
            }
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td>",
                escape(label),
                escape(from)
            );
            for z in &names {
                let n = m.get(z).copied().unwrap_or(0);
                let _ = write!(out, "<td>{:.1}%</td>", 100.0 * n as f64 / total as f64);
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>\n");
    }
    Ok(out)
}

fn html_page(data: &ReportData, sections: &str) -> String {
    let s = &data.summary;
    let name = s.info.scenario.as_str();
    let mut table = String::from("<table><thead><tr>");
    for p in &data.sweep_paths {
        let _ = write!(table, "<th>{}</th>", escape(p));
    }
    let cols = [
        ("p50_ms", "p50 (ms)"),
        ("p90_ms", "p90 (ms)"),
        ("p99_ms", "p99 (ms)"),
        ("p999_ms", "p99.9 (ms)"),
        ("mean_ms", "mean (ms)"),
        ("throughput_rps", "successes/s"),
        ("error_rate", "error rate"),
        ("retry_amplification", "attempts/request"),
    ];
    table.push_str("<th>strategy</th>");
    for (_, h) in cols {
        let _ = write!(table, "<th>{h}</th>");
    }
    table.push_str("</tr></thead><tbody>");
    let order: Vec<String> = data.series.iter().map(|x| x.strategy.clone()).collect();
    for st in &s.strategies {
        let strategy = st.strategy.as_str();
        let c = colour(
            order
                .iter()
                .position(|n| n == strategy)
                .map_or(0, |i| data.series[i].colour),
        );
        table.push_str("<tr>");
        for v in &st.coords {
            let _ = write!(table, "<td>{}</td>", escape(v));
        }
        let _ = write!(
            table,
            "<td><span class=\"dot\" style=\"background:rgb({},{},{})\"></span>{}</td>",
            c.0,
            c.1,
            c.2,
            escape(strategy)
        );
        for (k, _) in cols {
            let m = st.metrics.get(k);
            let mean = m.map_or(f64::NAN, |m| m.mean);
            let digits = if k == "throughput_rps" { 0 } else { 3 };
            let cell = match m.and_then(|m| m.ci95) {
                Some(ci) => format!("{mean:.digits$} ± {ci:.digits$}"),
                None => format!("{mean:.digits$}"),
            };
            let _ = write!(table, "<td>{cell}</td>");
        }
        table.push_str("</tr>");
    }
    table.push_str("</tbody></table>");
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>meshbench: {title}</title>
<style>
body {{ font-family: "DejaVu Sans", sans-serif; margin: 2em auto; max-width: 980px; color: #222; }}
h1 {{ font-size: 1.6em; }} h2 {{ font-size: 1.2em; margin-top: 2em; }}
table {{ border-collapse: collapse; font-size: 0.85em; width: 100%; }}
th, td {{ border: 1px solid #ccc; padding: 4px 6px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
.dot {{ display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 6px; }}
figure {{ margin: 0; }} figure svg {{ max-width: 100%; height: auto; }}
.files {{ font-size: 0.8em; color: #666; }}
pre {{ background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.8em; }}
.meta {{ color: #555; font-size: 0.9em; }}
</style>
</head>
<body>
<h1>meshbench report: {title}</h1>
<p class="meta">seed {seed} · {reps} replications per strategy · meshbench {version} · reproduce with <code>meshbench run scenario.yaml --seed {seed}</code></p>
<h2>Comparison (mean ± 95% confidence interval over replications)</h2>
{table}
{sections}
<h2>Scenario</h2>
<pre>{scenario}</pre>
</body>
</html>
"#,
        title = escape(name),
        seed = s.info.seed,
        reps = s.info.replications,
        version = escape(&s.info.meshbench_version),
        table = table,
        sections = sections,
        scenario = scenario_excerpt(&data.scenario),
    )
}

/// The scenario for the page: whole up to 64 kB, else its first 200 lines and a pointer to
/// scenario.yaml (a generated file with an override per instance can be megabytes).
fn scenario_excerpt(text: &str) -> String {
    const WHOLE: usize = 64 * 1024;
    if text.len() <= WHOLE {
        return escape(text);
    }
    let head: Vec<&str> = text.lines().take(200).collect();
    format!(
        "{}\n… ({} more lines: the whole file is <a href=\"scenario.yaml\">scenario.yaml</a>)",
        escape(&head.join("\n")),
        text.lines().count().saturating_sub(head.len())
    )
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
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..n as f64, -lim..lim)
            .map_err(err)?;
        let names: Vec<String> = metrics.iter().map(|m| (*m).to_owned()).collect();
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .disable_x_mesh()
            .x_labels(0)
            .x_label_formatter(&|_| String::new())
            .x_desc("metric")
            .y_desc("relative change, B vs A (%)")
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        // The metric names under their groups of bars (a float axis puts its own ticks
        // anywhere; these sit at each group's centre).
        chart
            .draw_series(names.iter().enumerate().map(|(i, name)| {
                Text::new(
                    name.clone(),
                    (i as f64 + 0.5, -lim * 0.93),
                    ("sans-serif", 14).into_font().color(&BLACK).pos(
                        plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Center,
                            plotters::style::text_anchor::VPos::Center,
                        ),
                    ),
                )
            }))
            .map_err(err)?;
        let width = 0.8 / rows.len().max(1) as f64;
        for (i, (label, vals)) in rows.iter().enumerate() {
            let c = colour(i);
            chart
                .draw_series(vals.iter().enumerate().map(|(m, &(x, y))| {
                    let x0 = m as f64 + 0.1 + i as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, change(x, y))], c.filled())
                }))
                .map_err(err)?
                .label(label.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        legend(&mut chart)
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
