//! Arrivals replayed from a CSV trace of timestamps (`arrival: {process: trace, file: ...}`).
//!
//! The file has a header row. The time column (`column`, default the first) holds the arrival
//! times since the start of the run: plain numbers in the unit its header names (`t_s`,
//! `time_ms`, `at_us`, `ts_ns`), or durations with units (`1.25s`, `300ms`) under any header.
//! An optional key column (`key_column`) gives each arrival's request key: every distinct text
//! becomes a key index in first-seen order (0, 1, ...), hashed and sent like the keys of
//! `keys:`. Rows are replayed in time order (a trace written by concurrent loggers may be
//! slightly out of order); `time_scale` multiplies every time (0.5 replays twice as fast).
//! The population's proxies take the arrivals in turn: arrival `j` goes to proxy `j % proxies`.

use std::collections::BTreeMap;
use std::sync::Arc;

use mesh_core::Duration;

/// A trace's arrivals, in time order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceData {
    /// Arrival times, ns since the start of the run, non-decreasing.
    pub times: Arc<[u64]>,
    /// Each arrival's key index, when the trace has a key column.
    pub keys: Option<Arc<[u32]>>,
    /// Distinct keys.
    pub key_count: u32,
}

impl TraceData {
    /// The mean rate over the trace's span (per second); a trace of one arrival, or of arrivals
    /// all at one time, counts as that many in one second.
    pub fn mean_rate(&self) -> f64 {
        let (Some(&first), Some(&last)) = (self.times.first(), self.times.last()) else {
            return 0.0;
        };
        let span = (last - first) as f64 / 1e9;
        self.times.len() as f64 / span.max(1.0)
    }
}

/// Largest trace file read (256 MiB).
const MAX_TRACE_FILE: u64 = 256 << 20;

/// Reads and parses the trace at `path`; errors are `(field, message)`.
pub(crate) fn load(
    path: &std::path::Path,
    column: Option<&str>,
    key_column: Option<&str>,
    time_scale: f64,
) -> Result<TraceData, (String, String)> {
    let meta = std::fs::metadata(path).map_err(|e| {
        (
            "file".to_owned(),
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    if !meta.is_file() || meta.len() > MAX_TRACE_FILE {
        return Err((
            "file".to_owned(),
            format!(
                "{} is not a regular file of at most {MAX_TRACE_FILE} bytes: give a CSV file of arrival times",
                path.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        (
            "file".to_owned(),
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    parse(&text, column, key_column, time_scale)
        .map_err(|(f, m)| (f, format!("{}: {m}", path.display())))
}

/// Parses a trace's text (see the module docs).
pub(crate) fn parse(
    text: &str,
    column: Option<&str>,
    key_column: Option<&str>,
    time_scale: f64,
) -> Result<TraceData, (String, String)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| ("file".to_owned(), format!("the header row: {e}")))?
        .clone();
    let find = |field: &str, name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            let names: Vec<&str> = headers.iter().collect();
            (
                field.to_owned(),
                format!(
                    "has no column `{name}` (its columns: {}){}",
                    names.join(", "),
                    crate::nearest(name, names.iter().copied())
                        .map(|n| format!("; did you mean `{n}`?"))
                        .unwrap_or_default()
                ),
            )
        })
    };
    let t_col = match column {
        Some(c) => find("column", c)?,
        None => 0,
    };
    let k_col = key_column.map(|c| find("key_column", c)).transpose()?;
    let header = headers.get(t_col).unwrap_or("");
    let unit = crate::dist::header_unit(header);
    let mut rows: Vec<(u64, u32)> = Vec::new();
    let mut interned: BTreeMap<String, u32> = BTreeMap::new();
    for (n, record) in reader.records().enumerate() {
        let line = n + 2;
        let record = record.map_err(|e| ("file".to_owned(), format!("line {line}: {e}")))?;
        let field = record.get(t_col).unwrap_or("");
        let ns = match (unit, field.parse::<f64>()) {
            (Some(scale), Ok(v)) if v.is_finite() && v >= 0.0 => v * scale,
            (None, Ok(_)) => {
                return Err((
                    "column".to_owned(),
                    format!(
                        "line {line}: `{field}` has no unit, and the column's header `{header}` names none: end the header with _s, _ms, _us or _ns, or write durations such as `1.5ms`"
                    ),
                ));
            }
            _ => field.parse::<Duration>().map_err(|_| {
                (
                    "file".to_owned(),
                    format!("line {line}: `{field}` is not a time (a number, or a duration such as `1.5ms`)"),
                )
            })?.as_nanos() as f64,
        } * time_scale;
        if !(0.0..=Duration::LONGEST.as_nanos() as f64).contains(&ns) {
            return Err((
                "time_scale".to_owned(),
                format!("line {line}: the scaled time is outside 0 to 100 years"),
            ));
        }
        let key = match k_col {
            Some(k) => {
                let text = record.get(k).unwrap_or("");
                let next = interned.len() as u32;
                *interned.entry(text.to_owned()).or_insert(next)
            }
            None => 0,
        };
        rows.push((ns.round() as u64, key));
    }
    if rows.is_empty() {
        return Err(("file".to_owned(), "has no arrivals".to_owned()));
    }
    // Time order; rows at the same time keep their file order.
    rows.sort_by_key(|r| r.0);
    Ok(TraceData {
        times: rows.iter().map(|r| r.0).collect(),
        keys: k_col.map(|_| rows.iter().map(|r| r.1).collect()),
        key_count: interned.len() as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_from_the_header_or_the_values() {
        let t = parse("t_ms,key\n0,a\n1.5,b\n1.5,a\n", None, Some("key"), 1.0).unwrap();
        assert_eq!(&*t.times, &[0, 1_500_000, 1_500_000]);
        assert_eq!(t.keys.as_deref(), Some(&[0, 1, 0][..]));
        assert_eq!(t.key_count, 2);
        let t = parse("when\n2s\n1s\n", None, None, 0.5).unwrap();
        assert_eq!(&*t.times, &[500_000_000, 1_000_000_000]);
        assert!(t.keys.is_none());
    }

    #[test]
    fn bad_traces_name_the_line_and_the_fix() {
        let e = parse("when\n1\n", None, None, 1.0).unwrap_err();
        assert!(e.1.contains("line 2") && e.1.contains("_ms"), "{e:?}");
        let e = parse("t_s,key\n1,a\n", Some("time"), None, 1.0).unwrap_err();
        assert_eq!(e.0, "column");
        assert!(e.1.contains("t_s, key"), "{e:?}");
        let e = parse("t_s\n1\nsoon\n", None, None, 1.0).unwrap_err();
        assert!(e.1.contains("line 3"), "{e:?}");
        assert!(parse("t_s\n", None, None, 1.0).is_err());
    }
}
