//! `index.html`: the question and its answer, the comparison table, the world tables (hot keys,
//! zones), the live run's pacing, the plots as the renderer drew them, and the scenario.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::render::{ReportData, Res, colour, err, read_csv};

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Per hot key, the instances that took its attempts and how many.
type KeyHomes = std::collections::BTreeMap<u32, Vec<(String, u64)>>;

/// Where the hot keys went (keys.csv), how traffic crossed zones (zones.csv) and the calls
/// along each edge of the call graph (edges.csv), as HTML tables, when the run has them. Sweep points are told apart by their coordinates.
pub(crate) fn world_tables(dir: &Path) -> Res<String> {
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
    let edges = dir.join("edges.csv");
    if edges.exists() {
        let (header, rows) = read_csv(&edges)?;
        let (st, caller, callee, calls, rate, amp, p50, p99) = (
            col(&header, "strategy")?,
            col(&header, "caller")?,
            col(&header, "callee")?,
            col(&header, "calls")?,
            col(&header, "error_rate")?,
            col(&header, "attempts_per_call")?,
            col(&header, "p50_ms")?,
            col(&header, "p99_ms")?,
        );
        let number = |r: &[String], i: usize| -> Res<f64> {
            r[i].parse()
                .map_err(|_| err(format!("{}: bad `{}`", edges.display(), header[i])))
        };
        out.push_str("<h2>Calls between services (all replications)</h2>\n<p class=\"meta\">Each edge of the call graph: a client population's requests to the service it calls, then each service's calls to its upstreams, as the calling side's proxy saw them (after its retries). Latency is of the calls that succeeded; attempts per call is the edge's retry amplification.</p>\n<table><thead><tr><th>strategy</th><th>caller</th><th>callee</th><th>calls</th><th>errors (%)</th><th>attempts per call</th><th>p50 (ms)</th><th>p99 (ms)</th></tr></thead><tbody>");
        for r in &rows {
            let label = r[..st].join(", ") + if st > 0 { ": " } else { "" } + &r[st];
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                escape(&label),
                escape(&r[caller]),
                escape(&r[callee]),
                escape(&r[calls]),
                100.0 * number(r, rate)?,
                number(r, amp)?,
                number(r, p50)?,
                number(r, p99)?,
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str(&critical_path_table(dir)?);
    Ok(out)
}

/// The critical-path table (critical_path.csv), when the run has one: per strategy (and
/// sweep point), each service's own work on traced requests' critical paths and the time
/// between services, in ms per request and as a share of end-to-end time.
fn critical_path_table(dir: &Path) -> Res<String> {
    let path = dir.join("critical_path.csv");
    if !path.exists() {
        return Ok(String::new());
    }
    let (header, rows) = read_csv(&path)?;
    let col = |header: &[String], name: &str| -> Res<usize> {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| err(format!("{}: no `{name}` column", path.display())))
    };
    let (st, part, requests, mean, share) = (
        col(&header, "strategy")?,
        col(&header, "part")?,
        col(&header, "requests")?,
        col(&header, "mean_ms")?,
        col(&header, "share")?,
    );
    let number = |r: &[String], i: usize| -> Res<f64> {
        r[i].parse()
            .map_err(|_| err(format!("{}: bad `{}`", path.display(), header[i])))
    };
    let mut out = format!(
        "<h2>Where the end-to-end time goes (critical path)</h2>\n<p class=\"meta\">One successful request in {}, the same requests for every strategy, followed down the call that kept its caller waiting at each step (the slowest call of a group that waits for all; the k-th of one that waits for k). A service's part is its own work on that path: queueing, service time and compute steps. The last part of each strategy is the time between services: network, sidecars, connection setup and retries. Parts add up to the mean end-to-end latency of those requests.</p>\n<table><thead><tr><th>strategy</th><th>part</th><th>traced requests</th><th>mean per request (ms)</th><th>share of end-to-end time (%)</th></tr></thead><tbody>",
        meshbench_scenario::graph::TRACE_ONE_IN
    );
    for r in &rows {
        let label = r[..st].join(", ") + if st > 0 { ": " } else { "" } + &r[st];
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.1}</td></tr>",
            escape(&label),
            escape(&r[part]),
            escape(&r[requests]),
            number(r, mean)?,
            100.0 * number(r, share)?,
        );
    }
    out.push_str("</tbody></table>\n");
    Ok(out)
}

/// A metric's value (and CI) as the page writes it: rates in percent, latencies in ms with
/// three decimals, throughput whole, attempts per request with three decimals.
fn metric_text(metric: &str, mean: f64, ci: Option<f64>) -> String {
    let unit = match metric {
        "error_rate" | "timeout_rate" => " %",
        "throughput_rps" => "/s",
        "retry_amplification" | "requests" => "",
        _ => " ms",
    };
    metric_number(metric, mean, ci) + unit
}

/// A metric's value (and CI) without its unit, as the comparison table's cells (the unit is in
/// the column's heading): rates in percent, throughput whole, the rest with three decimals.
fn metric_number(metric: &str, mean: f64, ci: Option<f64>) -> String {
    let (scale, digits) = match metric {
        "error_rate" | "timeout_rate" => (100.0, 3),
        "throughput_rps" | "requests" => (1.0, 0),
        _ => (1.0, 3),
    };
    match ci {
        Some(c) => format!("{:.digits$} ± {:.digits$}", mean * scale, c * scale),
        None => format!("{:.digits$}", mean * scale),
    }
}

/// Words for how sure a lead is.
fn lead_text(lead: crate::answer::Lead, reps: usize) -> String {
    use crate::answer::{Lead, p_text};
    match lead {
        Lead::Tie => "every strategy is equal here".to_owned(),
        Lead::Significant { p, apart: true } => format!(
            "significant (Welch's t-test {}; the 95% confidence intervals do not overlap)",
            p_text(p)
        ),
        Lead::Significant { p, apart: false } => format!(
            "significant by Welch's t-test ({}), though the 95% confidence intervals overlap",
            p_text(p)
        ),
        Lead::NotSignificant { p } => format!(
            "not significant (Welch's t-test {}): within the noise of {reps} replications",
            p_text(p)
        ),
        Lead::Untested => {
            "untested: one replication gives no interval (set `replications: 3` or more)".to_owned()
        }
    }
}

/// The answer: per ranked metric, the best strategy and whether its lead is significant, in
/// words (one sentence per metric without a sweep, one per metric over the points with one)
/// and, with a sweep, as a table of the best per point.
fn answer_html(data: &ReportData) -> String {
    use crate::answer::{Lead, best_at, ranked_for};
    let s = &data.summary;
    let mut points: Vec<usize> = s.strategies.iter().map(|e| e.point).collect();
    points.dedup();
    let at = |p: usize| -> Vec<&crate::schema::StrategyEntry> {
        s.strategies.iter().filter(|e| e.point == p).collect()
    };
    let all: Vec<&crate::schema::StrategyEntry> = s.strategies.iter().collect();
    let ranked = ranked_for(&all);
    let mut out = String::from("<ul class=\"answer\">\n");
    if points.len() <= 1 {
        let here = at(points.first().copied().unwrap_or(0));
        if here.len() < 2 {
            return String::from(
                "<p class=\"answer\">One strategy: nothing to compare. The table below gives its figures.</p>\n",
            );
        }
        let mut table = String::from(
            "<table class=\"best\"><thead><tr><th>metric</th><th>best</th><th>next best</th><th>lead</th></tr></thead><tbody>",
        );
        for r in &ranked {
            let Some(b) = best_at(&here, *r) else {
                continue;
            };
            let m = &b.best.metrics[r.metric];
            let next = b.runner_up.map(|ru| (ru, &ru.metrics[r.metric]));
            let tied = next.is_some_and(|(_, n)| n.mean == m.mean);
            let _ = write!(
                table,
                "<tr><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td></tr>",
                escape(r.label),
                escape(&b.best.strategy),
                metric_text(r.metric, m.mean, m.ci95),
                next.map_or_else(String::new, |(ru, n)| format!(
                    "{} ({})",
                    escape(&ru.strategy),
                    metric_text(r.metric, n.mean, n.ci95)
                )),
                match b.lead {
                    _ if tied => "tie",
                    Lead::Tie => "all equal",
                    Lead::Significant { .. } => "significant ✓",
                    Lead::NotSignificant { .. } => "not significant",
                    Lead::Untested => "untested",
                }
            );
            let _ = write!(
                out,
                "<li><b>{}</b> ({} is better): ",
                escape(r.label),
                if r.lower_is_better { "lower" } else { "higher" }
            );
            if b.lead == Lead::Tie {
                let _ = writeln!(
                    out,
                    "every strategy has {}.</li>",
                    metric_text(r.metric, m.mean, None)
                );
                continue;
            }
            if let Some((ru, _)) = next.filter(|_| tied) {
                let _ = writeln!(
                    out,
                    "<b>{}</b> and {} tie at {}.</li>",
                    escape(&b.best.strategy),
                    escape(&ru.strategy),
                    metric_text(r.metric, m.mean, m.ci95)
                );
                continue;
            }
            let _ = write!(
                out,
                "<b>{}</b> is best with {}",
                escape(&b.best.strategy),
                metric_text(r.metric, m.mean, m.ci95)
            );
            if let Some(ru) = b.runner_up {
                let n = &ru.metrics[r.metric];
                let _ = write!(
                    out,
                    ", ahead of {} with {}",
                    escape(&ru.strategy),
                    metric_text(r.metric, n.mean, n.ci95)
                );
            }
            let _ = write!(out, ": {}", lead_text(b.lead, b.best.replications));
            let _ = writeln!(out, "{}.</li>", failing_caveat(r.metric, b.best, &here));
        }
        out.push_str("</ul>\n");
        table.push_str("</tbody></table>\n<p class=\"note\">Significant: Welch's t-test over the replications rejects equal means at the 5% level.</p>\n");
        return out + &table;
    }
    // A sweep: per metric, who wins where; then the table of the best per point.
    let path = data.sweep_paths.join(", ");
    let mut table = format!(
        "<table class=\"best\"><thead><tr><th>{}</th>",
        escape(&path)
    );
    for r in &ranked {
        let _ = write!(table, "<th>best on {}</th>", escape(r.label));
    }
    table.push_str("</tr></thead><tbody>");
    let mut wins: Vec<BTreeMap<String, (usize, usize)>> = vec![BTreeMap::new(); ranked.len()];
    let mut ties = vec![0usize; ranked.len()];
    for &p in &points {
        let here = at(p);
        let coords = here
            .first()
            .map(|e| e.coords.join(", "))
            .unwrap_or_default();
        let _ = write!(table, "<tr><td>{}</td>", escape(&coords));
        for (i, r) in ranked.iter().enumerate() {
            let cell = match best_at(&here, *r) {
                None => String::from("—"),
                Some(b) if b.lead == Lead::Tie => {
                    ties[i] += 1;
                    String::from("all equal")
                }
                Some(b) => {
                    let sig = matches!(b.lead, Lead::Significant { .. });
                    let w = wins[i].entry(b.best.strategy.clone()).or_insert((0, 0));
                    w.0 += 1;
                    w.1 += usize::from(sig);
                    format!(
                        "{}{}",
                        escape(&b.best.strategy),
                        if sig { " ✓" } else { " (not significant)" }
                    )
                }
            };
            let _ = write!(table, "<td>{cell}</td>");
        }
        table.push_str("</tr>");
    }
    table.push_str("</tbody></table>\n<p class=\"note\">✓: the lead over the next best is significant (Welch's t-test, p &lt; 0.05, over the replications).</p>\n");
    for (i, r) in ranked.iter().enumerate() {
        let mut w: Vec<(&String, &(usize, usize))> = wins[i].iter().collect();
        w.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
        let _ = write!(
            out,
            "<li><b>{}</b> ({} is better): ",
            escape(r.label),
            if r.lower_is_better { "lower" } else { "higher" }
        );
        if w.is_empty() {
            let _ = writeln!(out, "every strategy is equal at every point.</li>");
            continue;
        }
        let mut parts: Vec<String> = w
            .iter()
            .map(|(name, (n, sig))| {
                format!(
                    "<b>{}</b> best at {n} of {} points ({sig} significant)",
                    escape(name),
                    points.len()
                )
            })
            .collect();
        if ties[i] > 0 {
            parts.push(format!("all equal at {}", ties[i]));
        }
        let _ = writeln!(out, "{}.</li>", parts.join("; "));
    }
    out.push_str("</ul>\n");
    out + "<div class=\"scroll\">" + &table.replacen("</table>\n", "</table></div>\n", 1)
}

/// A latency metric counts successes only, so a strategy that fails many requests can look
/// fast: when the best on latency fails more than a percentage point above the least-failing
/// strategy, say so.
fn failing_caveat(
    metric: &str,
    best: &crate::schema::StrategyEntry,
    here: &[&crate::schema::StrategyEntry],
) -> String {
    if !metric.ends_with("_ms") {
        return String::new();
    }
    let err =
        |s: &crate::schema::StrategyEntry| s.metrics.get("error_rate").map_or(0.0, |m| m.mean);
    let least = here.iter().map(|s| err(s)).fold(f64::INFINITY, f64::min);
    let mine = err(best);
    if mine > least + 0.01 {
        format!(
            "; <span class=\"wide\">but it fails {:.1}% of requests (against {:.1}% at best), and latency counts only its successes</span>",
            100.0 * mine,
            100.0 * least
        )
    } else {
        String::new()
    }
}

/// The live run's own figures from `live.json`: pacing, target and achieved rate, per strategy.
fn live_html(live: &serde_json::Value) -> String {
    let mut out = String::from(
        "<h2>Live pacing</h2>\n<table><thead><tr><th>strategy</th><th>target (/s)</th><th>achieved (/s)</th><th>scheduled</th><th>completed</th><th>never completed</th><th>pacing error p50 (µs)</th><th>p99 (µs)</th><th>max (µs)</th></tr></thead><tbody>",
    );
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    for st in live
        .get("strategies")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = st.get("strategy").and_then(|v| v.as_str()).unwrap_or("");
        let l = st.get("live").cloned().unwrap_or_default();
        let pacing: Vec<f64> = l
            .get("pacing_error_us")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default();
        let f = |v: Option<f64>, d: usize| v.map_or_else(|| "—".to_owned(), |x| format!("{x:.d$}"));
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            f(num(&l, "target_rps"), 0),
            f(num(&l, "achieved_rps"), 1),
            f(num(&l, "scheduled"), 0),
            f(num(&l, "completed"), 0),
            f(num(&l, "never_completed"), 0),
            f(pacing.first().copied(), 0),
            f(pacing.get(1).copied(), 0),
            f(pacing.get(2).copied(), 0),
        );
    }
    out.push_str("</tbody></table>\n<p class=\"note\">Latency is measured from each request's intended send time, so a late pacer shows in the latencies rather than hiding (no coordinated omission).</p>\n");
    out
}

pub(crate) fn html_page(
    data: &ReportData,
    sections: &str,
    live: Option<&serde_json::Value>,
) -> String {
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
        ("error_rate", "errors (%)"),
        ("retry_amplification", "attempts/request"),
        ("failure_p99_ms", "failures' p99 (ms)"),
    ];
    table.push_str("<th>strategy</th>");
    for (_, h) in cols {
        let _ = write!(table, "<th>{h}</th>");
    }
    table.push_str("</tr></thead><tbody>");
    let order: Vec<String> = data.series.iter().map(|x| x.strategy.clone()).collect();
    let mut wide = false;
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
        let failed = st
            .metrics
            .get("error_rate")
            .is_some_and(|m| m.values.iter().any(|v| *v > 0.0));
        for (k, _) in cols {
            let m = st.metrics.get(k);
            if k == "failure_p99_ms" && !failed {
                table.push_str("<td>—</td>");
                continue;
            }
            let mean = m.map_or(f64::NAN, |m| m.mean);
            let ci = m.and_then(|m| m.ci95);
            let cell = metric_number(k, mean, ci);
            // An interval wider than its mean says more replications are needed.
            if ci.is_some_and(|c| c > mean.abs() && mean != 0.0) {
                wide = true;
                let _ = write!(table, "<td class=\"wide\">{cell} !</td>");
            } else {
                let _ = write!(table, "<td>{cell}</td>");
            }
        }
        table.push_str("</tr>");
    }
    table.push_str("</tbody></table>");
    let reps = s.info.replications;
    let legend = format!(
        "<p class=\"note\">Each cell is the mean over {reps} replication{} ± the half-width of its 95% confidence interval (Student's t). Latency columns are of successful requests only; a failed request's latency is in the last column (— when none failed).{}</p>",
        if reps == 1 { "" } else { "s" },
        if wide {
            " <span class=\"wide\">!</span> marks an interval wider than its mean: run more replications before drawing a conclusion from it."
        } else {
            ""
        }
    );
    let question = if s.info.description.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"question\"><b>Question:</b> {}</p>\n",
            escape(&s.info.description)
        )
    };
    let reproduce = match live {
        Some(_) => format!("meshbench live scenario.yaml --seed {}", s.info.seed),
        None => format!("meshbench run scenario.yaml --seed {}", s.info.seed),
    };
    let partial = s.info.partial
        || live
            .and_then(|l| l.get("partial"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>meshbench: {title}</title>
<style>
body {{ font-family: "DejaVu Sans", sans-serif; margin: 2em auto; max-width: 1000px; color: #222; padding: 0 1em; }}
h1 {{ font-size: 1.6em; margin-bottom: 0.3em; }} h2 {{ font-size: 1.2em; margin-top: 2em; }}
.question {{ font-size: 1.1em; background: #f3f6fb; border-left: 4px solid #1f77b4; padding: 0.6em 0.9em; }}
ul.answer li {{ margin: 0.35em 0; }}
table {{ border-collapse: collapse; font-size: 0.85em; width: 100%; }}
th, td {{ border: 1px solid #ccc; padding: 4px 6px; text-align: right; }}
td {{ white-space: nowrap; }} .scroll {{ overflow-x: auto; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
table.best td {{ text-align: left; }}
.dot {{ display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 6px; }}
.wide {{ color: #b35900; }}
.partial {{ color: #b00; font-weight: bold; }}
figure {{ margin: 0; }} figure svg {{ max-width: 100%; height: auto; }}
.files, .note {{ font-size: 0.8em; color: #555; }}
pre {{ background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.8em; }}
.meta {{ color: #555; font-size: 0.9em; }}
</style>
</head>
<body>
<h1>meshbench report: {title}</h1>
{partial}{question}<h2>Answer</h2>
{answer}<p class="meta">seed {seed} · {reps} replications per strategy · meshbench {version} · reproduce with <code>{reproduce}</code></p>
<h2>Comparison</h2>
<div class="scroll">{table}</div>
{legend}
{live}{sections}
<h2>Scenario</h2>
<pre>{scenario}</pre>
</body>
</html>
"#,
        title = escape(name),
        partial = if partial {
            "<p class=\"partial\">Partial: this run was interrupted; the figures cover what was measured before it stopped.</p>\n"
        } else {
            ""
        },
        question = question,
        answer = answer_html(data),
        seed = s.info.seed,
        reps = reps,
        version = escape(&s.info.meshbench_version),
        reproduce = reproduce,
        table = table,
        legend = legend,
        live = live.map(live_html).unwrap_or_default(),
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
