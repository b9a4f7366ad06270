//! Watching live runs from outside: Prometheus metrics (checked by Debian's `promtool`), the
//! shipped Grafana dashboard, trace logs, and discovery from real DNS, file and etcd sources.

use std::io::{BufRead as _, Read as _, Write as _};
use std::process::{Command, Stdio};

use super::tmp;

/// `GET path` on `addr` (HTTP/1.1, closed after) with `headers` (`Name: value` each): the
/// status code and the body.
pub(crate) fn http_get(addr: &str, path: &str, headers: &[&str]) -> (u16, String) {
    http_request("GET", addr, path, headers)
}

/// `method path` on `addr`, as [`http_get`] sends it.
fn http_request(method: &str, addr: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
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

#[test]
fn served_backends_run_the_call_graph_through_their_own_sidecars() {
    // `meshbench serve` on a two-tier graph: a request to the front instance is answered after
    // the front has called the back tier through its sidecar (round robin over the back's two
    // instances), and fails with a 500 once the back tier fails every request.
    let dir = tmp("serve-graph");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("graph.yaml");
    std::fs::write(
        &file,
        "
name: served-graph
seed: 1
duration: 1s
strategies:
  rr: { balancer: { kind: round_robin }, retries: { num_retries: 0 } }
services:
  front: { instances: 1, concurrency: 10, service_time: { dist: constant, value: 1ms }, script: [{ call: back }], response_size: 2KiB }
  back: { instances: 2, concurrency: 10, service_time: { dist: constant, value: 1ms } }
network: { bandwidth: 10Gbps }
clients:
  c: { proxies: 1, target: front, arrival: { process: constant, rate: 10/s } }
",
    )
    .unwrap();
    let served = Served::start(&file);
    // Instances in service name order: back/0, back/1, front/0.
    let front = served.addrs[2].clone();
    for _ in 0..6 {
        let (status, body) = http_get(&front, "/work", &[]);
        assert_eq!(
            (status, body.len()),
            (200, 2048),
            "the front's response size"
        );
    }
    let (_, all) = http_get(&served.control, "/metrics", &[]);
    let back = |i: &str| {
        value(
            &all,
            "meshbench_backend_requests_total",
            &[
                r#"service="back""#,
                &format!(r#"instance="{i}""#),
                r#"path="work""#,
                r#"code="200""#,
            ],
        )
    };
    assert_eq!((back("0"), back("1")), (3.0, 3.0), "{all}");
    for i in ["0", "1"] {
        let (status, _) = http_post(
            &served.control,
            &format!("/errors?service=back&instance={i}&rate=1"),
        );
        assert_eq!(status, 200);
    }
    assert_eq!(http_get(&front, "/work", &[]).0, 500);
    drop(served);
    // Someone else's servers decide whom they call: the script would be inert there.
    let refused = super::meshbench(&[
        "live",
        file.to_str().unwrap(),
        "--target",
        "127.0.0.1:9",
        "--duration",
        "1s",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("services.front.script") && err.contains("--target"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `POST path` on `addr` with an empty body: the status code and the body.
fn http_post(addr: &str, path: &str) -> (u16, String) {
    http_request("POST", addr, path, &["Content-Length: 0"])
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
    let (status, text) = http_get(&addr, "/metrics", &[]);
    let (om_status, om) = http_get(
        &addr,
        "/metrics",
        &["Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5"],
    );
    let (missing, _) = http_get(&addr, "/nothing", &[]);
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
    // Read family by family while the run goes on: a few attempts may leave in between.
    let per_endpoint = value(&text, "meshbench_endpoint_attempts_total", &[]);
    assert!(
        (per_endpoint - attempts).abs() <= 5.0 + 0.01 * attempts,
        "{per_endpoint} attempts by endpoint, {attempts} by kind"
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
    let served = Served::start(&file);
    let (instances, control) = (&served.addrs, served.control.clone());
    assert_eq!(instances.len(), 3);
    for _ in 0..5 {
        assert_eq!(http_get(&instances[0], "/work", &[]).0, 200);
    }
    assert_eq!(http_get(&instances[0], "/health", &[]).0, 200);
    let (status, own) = http_get(&instances[0], "/metrics", &[]);
    let (_, all) = http_get(&control, "/metrics", &[]);
    drop(served);
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

/// `meshbench serve FILE` in the background: its instances' addresses; killed on drop.
pub(crate) struct Served {
    child: std::process::Child,
    /// `HOST:PORT` of each instance, in order.
    pub(crate) addrs: Vec<String>,
    /// `HOST:PORT` of the control endpoint.
    pub(crate) control: String,
}

impl Served {
    pub(crate) fn start(file: &std::path::Path) -> Self {
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
        let mut addrs = Vec::new();
        let control = loop {
            let line = rx
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("serve prints its addresses");
            if let Some(rest) = line.strip_prefix("control: http://") {
                break rest.split('/').next().unwrap_or_default().to_owned();
            }
            if let Some(url) = line.split("http://").nth(1) {
                addrs.push(url.to_owned());
            }
        };
        Served {
            child,
            addrs,
            control,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free for both TCP and UDP now, below the kernel's ephemeral range (32768
/// up), so that no client connection of a test running beside it takes it meanwhile.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((std::process::id().wrapping_mul(7919) + n * 131) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

/// Attempts per window per endpoint, from a result directory's endpoint_timeseries.csv.
fn windows(dir: &std::path::Path) -> Vec<(f64, Vec<u64>)> {
    let text = std::fs::read_to_string(dir.join("endpoint_timeseries.csv")).unwrap();
    let mut out: Vec<(f64, Vec<u64>)> = Vec::new();
    for l in text.lines().skip(1) {
        let c: Vec<&str> = l.split(',').collect();
        let (t, ep, n): (f64, usize, u64) = (
            c[1].parse().unwrap(),
            c[2].parse().unwrap(),
            c[3].parse().unwrap(),
        );
        if out.last().is_none_or(|w| w.0 != t) {
            out.push((t, Vec::new()));
        }
        let w = &mut out.last_mut().unwrap().1;
        w.resize(w.len().max(ep + 1), 0);
        w[ep] = n;
    }
    out
}

/// The scenario the discovery tests drive: two instances in the file, served by `serve`, and
/// 500 requests/s for 4 s in 500 ms windows.
const DISCOVERED: &str = "
name: discovered
seed: 2
duration: 4s
warmup: 0s
replications: 1
sample_period: 500ms
strategies:
  p2c: { balancer: { kind: least_request, choice_count: 2 } }
services:
  b: { instances: 2, concurrency: 16, service_time: { dist: exponential, mean: 2ms } }
clients:
  c: { proxies: 2, target: b, arrival: { process: poisson, rate: 500/s } }
";

/// Runs `live` on the discovery scenario with `--discover spec` while `during` edits the
/// source; the windows of attempts per endpoint.
fn live_discovering(
    dir: &std::path::Path,
    spec: &str,
    during: impl FnOnce() + Send + 'static,
) -> Vec<(f64, Vec<u64>)> {
    let file = dir.join("discovered.yaml");
    std::fs::write(&file, DISCOVERED).unwrap();
    let out = dir.join("out");
    let editor = std::thread::spawn(during);
    let run = super::meshbench(&[
        "live",
        file.to_str().unwrap(),
        "--discover",
        spec,
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    editor.join().unwrap();
    assert!(
        run.status.success(),
        "live --discover {spec}:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    windows(&out)
}

/// What every discovery test checks: the first window only reaches the first endpoint, a window
/// in the middle reaches all three (the third, weighted 3, most), and the last no longer reaches
/// the endpoint that left (0).
fn assert_scaled_out_then_in(spec: &str, w: &[(f64, Vec<u64>)]) {
    assert!(w.len() >= 7, "{spec}: {} windows", w.len());
    let at = |t: f64| -> &Vec<u64> { &w.iter().find(|x| (x.0 - t).abs() < 1e-6).unwrap().1 };
    let first = at(0.5);
    assert!(
        first[0] > 150 && first.iter().skip(1).all(|&n| n == 0),
        "{spec}: before the scale-out {first:?}"
    );
    let mid = at(2.0);
    assert!(
        mid.len() >= 3 && mid.iter().all(|&n| n > 10) && mid[2] > mid[1],
        "{spec}: after the scale-out (the third weighted 3) {mid:?}"
    );
    let last = at(4.0);
    assert!(
        last[0] == 0 && last[1] > 10 && last[2] > 10,
        "{spec}: after the first left {last:?}"
    );
}

#[test]
fn discovery_from_a_watched_envoy_eds_file_follows_its_edits() {
    let dir = tmp("discover-file");
    std::fs::create_dir_all(&dir).unwrap();
    let served = Served::start(&{
        let f = dir.join("backends.yaml");
        std::fs::write(&f, DISCOVERED.replace("instances: 2", "instances: 3")).unwrap();
        f
    });
    let eds = |eps: &[(&String, u32)]| -> String {
        let mut s = String::from(
            "resources:\n- '@type': type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\n  cluster_name: b\n  endpoints:\n  - lb_endpoints:\n",
        );
        for (a, w) in eps {
            let (host, port) = a.rsplit_once(':').unwrap();
            s.push_str(&format!(
                "    - endpoint: {{ address: {{ socket_address: {{ address: {host}, port_value: {port} }} }} }}\n      load_balancing_weight: {w}\n"
            ));
        }
        s
    };
    let path = dir.join("endpoints.yaml");
    let a = &served.addrs;
    std::fs::write(&path, eds(&[(&a[0], 1)])).unwrap();
    // Each edit is a rename over the file, as a control plane writes it.
    let write = {
        let path = path.clone();
        move |text: String| {
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
    };
    let (one, two) = (
        eds(&[(&a[0], 1), (&a[1], 1), (&a[2], 3)]),
        eds(&[(&a[1], 1), (&a[2], 3)]),
    );
    let w = live_discovering(&dir, &format!("file:{}", path.display()), move || {
        std::thread::sleep(std::time::Duration::from_millis(1200));
        write(one);
        std::thread::sleep(std::time::Duration::from_millis(1300));
        write(two);
    });
    assert_scaled_out_then_in("file", &w);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Debian's dnsmasq on a loopback port, answering from `conf`; killed on drop.
struct Dnsmasq {
    child: std::process::Child,
}

impl Dnsmasq {
    fn start(dir: &std::path::Path, port: u16, records: &str) -> Self {
        let conf = dir.join(format!("dnsmasq-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\nlocal-ttl=1\n{records}"
            ),
        )
        .unwrap();
        let bin = ["/usr/sbin/dnsmasq", "dnsmasq"]
            .into_iter()
            .find(|b| std::path::Path::new(b).exists() || *b == "dnsmasq")
            .unwrap();
        let child = Command::new(bin)
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", conf.display()))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (Debian's package) runs: scripts/install-test-servers.sh installs it");
        // Ready when it answers on its port.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "dnsmasq did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Dnsmasq { child }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn discovery_from_dns_srv_records_re_resolves_at_their_ttl() {
    let dir = tmp("discover-dns");
    std::fs::create_dir_all(&dir).unwrap();
    let served = Served::start(&{
        let f = dir.join("backends.yaml");
        std::fs::write(&f, DISCOVERED.replace("instances: 2", "instances: 3")).unwrap();
        f
    });
    let port = free_port();
    // SRV targets are host names with A records; each answer lives 1 s (local-ttl).
    let records = |eps: &[(usize, u32)], addrs: &[String]| -> String {
        let mut s = String::new();
        for &(i, w) in eps {
            let p = addrs[i].rsplit_once(':').unwrap().1;
            s.push_str(&format!(
                "host-record=b{i}.mesh.test,127.0.0.1\nsrv-host=_http._tcp.b.mesh.test,b{i}.mesh.test,{p},0,{w}\n"
            ));
        }
        s
    };
    let addrs = served.addrs.clone();
    let dns = std::sync::Arc::new(std::sync::Mutex::new(Some(Dnsmasq::start(
        &dir,
        port,
        &records(&[(0, 1)], &addrs),
    ))));
    let spec = format!("srv://127.0.0.1:{port}/_http._tcp.b.mesh.test");
    let (d, dir2) = (dns.clone(), dir.clone());
    let w = live_discovering(&dir, &spec, move || {
        // The zone changes: the server restarts with the new records (a moment without
        // answers, which keeps the last endpoints).
        let swap = |eps: &[(usize, u32)]| {
            let mut g = d.lock().unwrap();
            drop(g.take());
            *g = Some(Dnsmasq::start(&dir2, port, &records(eps, &addrs)));
        };
        std::thread::sleep(std::time::Duration::from_millis(800));
        swap(&[(0, 1), (1, 1), (2, 3)]);
        std::thread::sleep(std::time::Duration::from_millis(1300));
        swap(&[(1, 1), (2, 3)]);
    });
    drop(dns);
    // SRV answers come in any order: ids go by address.
    assert_scaled_out_then_in_by_order(&spec, &w, &served.addrs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dns_a_and_aaaa_records_are_asked_again_when_their_ttl_runs_out() {
    // A and AAAA records from a hosts file dnsmasq re-reads on SIGHUP, with a 1 s TTL: the
    // watch gives the new set within about a TTL of the change.
    let dir = tmp("dns-a");
    std::fs::create_dir_all(&dir).unwrap();
    let hosts = dir.join("hosts");
    // And a name with more addresses than a datagram holds (asked again over TCP).
    let many: String = (0..600)
        .map(|i| format!("10.1.{}.{} many.mesh.test\n", i / 250, i % 250 + 1))
        .collect();
    std::fs::write(
        &hosts,
        format!("127.0.0.2 api.mesh.test\n::1 api.mesh.test\n{many}"),
    )
    .unwrap();
    let port = free_port();
    let dns = Dnsmasq::start(&dir, port, &format!("addn-hosts={}\n", hosts.display()));
    let source = meshbench_live::discovery::Source::parse(&format!(
        "dns://127.0.0.1:{port}/api.mesh.test:8080"
    ))
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let started = std::time::Instant::now();
    let watch = rt.spawn(source.watch(move |r| {
        let _ = tx.send((started.elapsed(), r));
    }));
    // dnsmasq reads the hosts file just after it binds its port: the first answers may be a
    // refusal, which the watch reports and retries.
    let first = loop {
        let r = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        if r.1.is_ok() {
            break r;
        }
    };
    let addrs = |r: &Result<Vec<meshbench_live::discovery::Discovered>, String>| -> Vec<String> {
        r.as_ref()
            .unwrap()
            .iter()
            .map(|d| d.addr.to_string())
            .collect()
    };
    assert_eq!(addrs(&first.1), ["127.0.0.2:8080", "[::1]:8080"]);
    let big = meshbench_live::discovery::Source::parse(&format!(
        "dns://127.0.0.1:{port}/many.mesh.test:80"
    ))
    .unwrap();
    let (eps, _) = rt.block_on(big.resolve()).expect("600 A records, over TCP");
    assert_eq!(eps.len(), 600);
    // The zone changes (dnsmasq re-reads its hosts file on SIGHUP).
    std::fs::write(&hosts, "127.0.0.2 api.mesh.test\n127.0.0.3 api.mesh.test\n").unwrap();
    let changed = started.elapsed();
    let _ = Command::new("kill")
        .args(["-HUP", &dns.child.id().to_string()])
        .status();
    let mut seen = None;
    while let Ok((at, r)) = rx.recv_timeout(std::time::Duration::from_secs(5)) {
        if r.is_ok() && addrs(&r) == ["127.0.0.2:8080", "127.0.0.3:8080"] {
            seen = Some(at);
            break;
        }
    }
    watch.abort();
    drop(dns);
    let seen = seen.expect("the new records were seen");
    let lag = seen - changed;
    assert!(
        lag < std::time::Duration::from_millis(2500),
        "seen {lag:?} after the change, with a 1 s TTL"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// As [`assert_scaled_out_then_in`], for sources whose ids follow address order (DNS): the
/// first id is the first instance's (it was alone at first); the others go by port.
fn assert_scaled_out_then_in_by_order(spec: &str, w: &[(f64, Vec<u64>)], addrs: &[String]) {
    let port = |a: &String| a.rsplit_once(':').unwrap().1.parse::<u16>().unwrap();
    // Ids: 0 is instance 0; 1 and 2 are instances 1 and 2 in address order.
    let swapped = port(&addrs[2]) < port(&addrs[1]);
    let fixed: Vec<(f64, Vec<u64>)> = w
        .iter()
        .map(|(t, v)| {
            let mut v = v.clone();
            if swapped && v.len() >= 3 {
                v.swap(1, 2);
            }
            (*t, v)
        })
        .collect();
    assert_scaled_out_then_in(spec, &fixed);
}

/// Debian's etcd on loopback ports with its data in `dir`; killed on drop.
struct Etcd {
    child: std::process::Child,
    client: String,
}

impl Etcd {
    fn start(dir: &std::path::Path) -> Self {
        let (c, p) = (free_port(), free_port());
        let client = format!("127.0.0.1:{c}");
        let child = Command::new("etcd")
            .args(["--name", "meshbench-test", "--data-dir"])
            .arg(dir.join("etcd-data"))
            .args(["--listen-client-urls", &format!("http://{client}")])
            .args(["--advertise-client-urls", &format!("http://{client}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{p}"),
            ])
            .args([
                "--initial-cluster",
                &format!("meshbench-test=http://127.0.0.1:{p}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "etcd (Debian's etcd-server) runs: scripts/install-test-servers.sh installs it",
            );
        let e = Etcd { child, client };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        // Ready when its client port answers /health.
        while !std::net::TcpStream::connect(&e.client)
            .is_ok_and(|_| http_get(&e.client, "/health", &[]).0 == 200)
        {
            assert!(std::time::Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        e
    }

    /// `etcdctl put` or `del` (Debian's etcd-client).
    fn ctl(client: &str, args: &[&str]) {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={client}"))
            .args(args)
            .output()
            .expect("etcdctl (Debian's etcd-client) runs");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn discovery_from_an_etcd_prefix_follows_puts_and_deletes() {
    let dir = tmp("discover-etcd");
    std::fs::create_dir_all(&dir).unwrap();
    let served = Served::start(&{
        let f = dir.join("backends.yaml");
        std::fs::write(&f, DISCOVERED.replace("instances: 2", "instances: 3")).unwrap();
        f
    });
    let etcd = Etcd::start(&dir);
    let a = served.addrs.clone();
    let client = etcd.client.clone();
    Etcd::ctl(&client, &["put", "/services/b/0", &a[0]]);
    // A key outside the prefix is not an endpoint.
    Etcd::ctl(&client, &["put", "/services/bb/9", "127.0.0.1:9"]);
    let spec = format!("etcd://{client}/services/b/");
    let w = live_discovering(&dir, &spec, move || {
        std::thread::sleep(std::time::Duration::from_millis(1200));
        Etcd::ctl(&client, &["put", "/services/b/1", &a[1]]);
        // gRPC's etcd naming record, with a weight.
        let record = format!(r#"{{"Op":0,"Addr":"{}","Metadata":{{"weight":3}}}}"#, a[2]);
        Etcd::ctl(&client, &["put", "/services/b/2", &record]);
        std::thread::sleep(std::time::Duration::from_millis(1300));
        Etcd::ctl(&client, &["del", "/services/b/0"]);
    });
    drop(etcd);
    assert_scaled_out_then_in(&spec, &w);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn discovery_keeps_the_state_of_hosts_that_stay() {
    // Instance 0 answers every request with a 500: outlier detection ejects it within the first
    // second, for 30 s. At 1.5 s the file gains a third endpoint. Had the update re-added the
    // hosts it kept, the ejection would be forgotten and instance 0 would take traffic again.
    let dir = tmp("discover-state");
    std::fs::create_dir_all(&dir).unwrap();
    let backends = dir.join("backends.yaml");
    std::fs::write(
        &backends,
        DISCOVERED.replace("instances: 2", "instances: 3").replace(
            "mean: 2ms } }",
            "mean: 2ms }, overrides: { 0: { error_rate: 1.0 } } }",
        ),
    )
    .unwrap();
    let served = Served::start(&backends);
    let a = served.addrs.clone();
    let path = dir.join("endpoints.txt");
    std::fs::write(&path, format!("{}\n{}\n", a[0], a[1])).unwrap();
    let file = dir.join("discovered.yaml");
    std::fs::write(
        &file,
        DISCOVERED.replace(
            "choice_count: 2 } }",
            "choice_count: 2 }, outlier_detection: { consecutive_5xx: 5, interval: 200ms, base_ejection_time: 30s, max_ejection_percent: 50 } }",
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let editor = {
        let (path, c) = (path.clone(), a[2].clone());
        let (a0, a1) = (a[0].clone(), a[1].clone());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, format!("{a0}\n{a1}\n{c}\n")).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        })
    };
    let run = super::meshbench(&[
        "live",
        file.to_str().unwrap(),
        "--discover",
        &format!("file:{}", path.display()),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    editor.join().unwrap();
    // Some requests failed on instance 0 before its ejection: the run's checks may fail it.
    assert!(matches!(run.status.code(), Some(0 | 1)), "{run:?}");
    let w = windows(&out);
    let before: u64 = w.iter().filter(|x| x.0 <= 1.0).map(|x| x.1[0]).sum();
    let after: u64 = w.iter().filter(|x| x.0 > 1.5).map(|x| x.1[0]).sum();
    let third: u64 = w
        .iter()
        .filter(|x| x.0 > 2.0)
        .map(|x| x.1.get(2).copied().unwrap_or(0))
        .sum();
    assert!(
        before >= 5,
        "instance 0 was tried before its ejection: {before}"
    );
    assert!(third > 100, "the new endpoint takes traffic: {third}");
    assert_eq!(
        after, 0,
        "instance 0 stays ejected across the update: {w:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sampled_trace_log_records_each_requests_attempts_as_the_backends_saw_them() {
    // Half of the requests are sampled. Instance 1 fails every attempt (retried elsewhere) and
    // instance 0 sometimes takes 40 ms (hedged after 10 ms): the trace log must show first
    // attempts, retries and hedges, each with its span, endpoint and times; the backends' log
    // holds exactly the sampled requests' attempts, with the same trace and span ids.
    let dir = tmp("trace-log");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("t.yaml");
    std::fs::write(
        &file,
        "
name: traced
seed: 4
duration: 2s
warmup: 0s
strategies:
  hedged:
    balancer: { kind: round_robin }
    retries: { num_retries: 2, retry_on: [5xx] }
    hedging: { hedging_delay: 10ms }
services:
  b:
    instances: 3
    concurrency: 100
    service_time:
      dist: mixture
      components:
        - { weight: 0.8, dist: { dist: constant, value: 1ms } }
        - { weight: 0.2, dist: { dist: constant, value: 40ms } }
    overrides: { 1: { error_rate: 1.0 } }
clients:
  c: { target: b, arrival: { process: constant, rate: 200/s } }
",
    )
    .unwrap();
    let backend_log = dir.join("backends.csv");
    let out = dir.join("out");
    let run = super::meshbench(&[
        "live",
        file.to_str().unwrap(),
        "--quiet",
        "--trace-sample",
        "0.5",
        "--trace-log",
        backend_log.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(matches!(run.status.code(), Some(0 | 1)), "{run:?}");
    let text = std::fs::read_to_string(out.join("traces.jsonl")).unwrap();
    let traces: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    // 400 requests, half sampled.
    assert!(
        (140..260).contains(&traces.len()),
        "{} sampled of 400",
        traces.len()
    );
    let mut kinds = std::collections::BTreeMap::new();
    let mut spans = std::collections::BTreeSet::new();
    for t in &traces {
        let id = t["trace_id"].as_str().unwrap();
        assert!(
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{t}"
        );
        assert_eq!(t["run"], "hedged/0");
        let attempts = t["attempts"].as_array().unwrap();
        assert_eq!(attempts[0]["kind"], "first", "{t}");
        for a in attempts {
            *kinds
                .entry(a["kind"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
            assert!(spans.insert((id.to_owned(), a["span_id"].as_str().unwrap().to_owned())));
            let (start, end) = (a["start_ms"].as_f64().unwrap(), a["end_ms"].as_f64());
            assert!(end.is_none_or(|e| e >= start), "{a}");
            assert!(start >= t["intended_ms"].as_f64().unwrap() - 1.0, "{t}");
            if a["instance"] == 1 && a["outcome"] != "cancelled" {
                assert_eq!(a["outcome"], "server_error", "{a}");
            }
        }
        assert!(t["finished_ms"].as_f64().unwrap() >= t["intended_ms"].as_f64().unwrap());
    }
    for k in ["first", "retry", "hedge"] {
        assert!(kinds.get(k).copied().unwrap_or(0) > 5, "{kinds:?}");
    }
    // The backends logged the sampled attempts only, with the ids the generator sent.
    let logged: std::collections::BTreeSet<(String, String)> =
        std::fs::read_to_string(&backend_log)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let t: Vec<&str> = l.rsplit(',').next().unwrap().split('-').collect();
                assert_eq!(t[3], "01", "an unsampled attempt logged: {l}");
                (t[1].to_owned(), t[2].to_owned())
            })
            .collect();
    assert!(!logged.is_empty());
    assert!(
        logged.is_subset(&spans),
        "{} logged attempts not in the trace log",
        logged.difference(&spans).count()
    );
    let answered = traces
        .iter()
        .flat_map(|t| {
            let id = t["trace_id"].as_str().unwrap().to_owned();
            t["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["outcome"] == "success" || a["outcome"] == "server_error")
                .map(move |a| (id.clone(), a["span_id"].as_str().unwrap().to_owned()))
        })
        .collect::<std::collections::BTreeSet<_>>();
    assert!(
        answered.is_subset(&logged),
        "an answered attempt the backends did not log"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
