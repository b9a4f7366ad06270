//! Watching live runs from outside: Prometheus metrics (checked by Debian's `promtool`), the
//! shipped Grafana dashboard, trace logs, and discovery from real DNS, file and etcd sources.

use std::io::{BufRead as _, Read as _, Write as _};
use std::process::{Command, Stdio};

use super::tmp;

/// `GET path` on `addr` (HTTP/1.1, closed after): the status code and the body.
pub(crate) fn http_get(addr: &str, path: &str, accept: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |b| b.1);
    // hyper sends small bodies with content-length; a chunked one is de-chunked here.
    let body = if out
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut rest = body;
        let mut plain = String::new();
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            plain.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        plain
    } else {
        body.to_owned()
    };
    (status, body)
}

/// Debian's `promtool check metrics` on an exposition: the format parses and the names follow
/// Prometheus' naming rules (units, `_total` on counters, no reserved suffixes misused).
pub(crate) fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) runs: scripts/install-test-servers.sh installs it");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}\n--- exposition:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample `name{...labels containing every one of want...}`, summed.
pub(crate) fn value(text: &str, name: &str, want: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| want.iter().all(|w| l.contains(w)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

const SCENARIO: &str = "
name: observed
seed: 5
duration: 4s
warmup: 0s
replications: 1
strategies:
  p2c: { balancer: { kind: least_request, choice_count: 2 } }
policy:
  timeout: 1s
  retries: { num_retries: 1, retry_on: [5xx] }
services:
  b:
    instances: 3
    concurrency: 8
    service_time: { dist: exponential, mean: 2ms }
    overrides:
      2: { error_rate: 0.5 }
clients:
  c: { proxies: 2, target: b, arrival: { process: poisson, rate: 400/s } }
";

#[test]
fn a_live_run_serves_prometheus_metrics_that_promtool_accepts_and_that_add_up() {
    let dir = tmp("metrics");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("observed.yaml");
    std::fs::write(&file, SCENARIO).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshbench"))
        .args(["live", file.to_str().unwrap(), "--quiet", "--out"])
        .arg(dir.join("out"))
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("live starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("metrics: http://") {
                let _ = tx.send(rest.trim_end_matches("/metrics").to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("live prints its metrics address, even with --quiet");
    // Mid-run: 2.5 s into a 4 s run.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (status, text) = http_get(&addr, "/metrics", None);
    let (om_status, om) = http_get(
        &addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    );
    let (missing, _) = http_get(&addr, "/nothing", None);
    let done = child.wait().unwrap();
    assert_eq!(done.code(), Some(0));
    assert_eq!((status, om_status, missing), (200, 200, 404));
    promtool_accepts(&text);
    let released = value(&text, "meshbench_requests_released_total", &[]);
    assert!(
        (600.0..1400.0).contains(&released),
        "released {released} by 2.5 s at 400/s"
    );
    let finished = value(&text, "meshbench_requests_total", &[]);
    assert!(
        finished <= released && finished > 0.8 * released,
        "{finished} of {released}"
    );
    let attempts = value(&text, "meshbench_attempts_total", &[]);
    let retries = value(&text, "meshbench_attempts_total", &["kind=\"retry\""]);
    // Instance 2 fails half its attempts: retried, and counted as its errors.
    assert!(retries > 10.0, "retries {retries}");
    assert_eq!(
        value(&text, "meshbench_endpoint_attempts_total", &[]),
        attempts
    );
    let errors = value(
        &text,
        "meshbench_endpoint_errors_total",
        &["instance=\"2\""],
    );
    let tried = value(
        &text,
        "meshbench_endpoint_attempts_total",
        &["instance=\"2\""],
    );
    assert!(
        (0.3 * tried..0.7 * tried).contains(&errors),
        "instance 2: {errors} errors of {tried}"
    );
    assert_eq!(
        value(
            &text,
            "meshbench_endpoint_errors_total",
            &["instance=\"0\""]
        ),
        0.0
    );
    let count = value(
        &text,
        "meshbench_request_duration_seconds_count",
        &["outcome=\"success\""],
    );
    let inf = value(
        &text,
        "meshbench_request_duration_seconds_bucket",
        &["outcome=\"success\"", "le=\"+Inf\""],
    );
    assert_eq!(count, inf);
    // Sub-millisecond resolution: buckets below 1 ms.
    let fine = text
        .lines()
        .filter(|l| l.starts_with("meshbench_request_duration_seconds_bucket"))
        .filter_map(|l| {
            l.split("le=\"")
                .nth(1)?
                .split('"')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .filter(|&le| le < 1e-3)
        .count();
    assert!(fine >= 2 * 20, "{fine} buckets under 1 ms");
    assert_eq!(
        value(&text, "meshbench_target_requests_per_second", &[]),
        400.0
    );
    assert!(om.contains("# TYPE meshbench_requests counter"), "{om}");
    assert!(om.contains("# UNIT meshbench_request_duration_seconds seconds"));
    assert!(om.ends_with("# EOF\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_backends_expose_their_own_metrics() {
    let dir = tmp("serve-metrics");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("observed.yaml");
    std::fs::write(&file, SCENARIO).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshbench"))
        .args(["serve", file.to_str().unwrap(), "--no-faults"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut instances = Vec::new();
    let control = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("serve prints its addresses");
        if let Some(rest) = line.strip_prefix("control: http://") {
            break rest.split('/').next().unwrap().to_owned();
        }
        if let Some(url) = line.split("http://").nth(1) {
            instances.push(url.to_owned());
        }
    };
    assert_eq!(instances.len(), 3);
    for _ in 0..5 {
        assert_eq!(http_get(&instances[0], "/work", None).0, 200);
    }
    assert_eq!(http_get(&instances[0], "/health", None).0, 200);
    let (status, own) = http_get(&instances[0], "/metrics", None);
    let (_, all) = http_get(&control, "/metrics", None);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
    promtool_accepts(&own);
    promtool_accepts(&all);
    let work = [r#"path="work""#, r#"code="200""#];
    assert_eq!(value(&own, "meshbench_backend_requests_total", &work), 5.0);
    assert_eq!(
        value(
            &own,
            "meshbench_backend_requests_total",
            &[r#"path="health""#]
        ),
        1.0
    );
    assert_eq!(value(&own, "meshbench_backend_up", &[]), 1.0);
    // The control endpoint has every instance.
    assert_eq!(value(&all, "meshbench_backend_up", &[]), 3.0);
    assert_eq!(
        value(
            &all,
            "meshbench_backend_injected_error_ratio",
            &[r#"instance="2""#]
        ),
        0.5
    );
    let _ = std::fs::remove_dir_all(&dir);
}
