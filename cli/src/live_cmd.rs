//! `meshbench live`, `serve` and `fidelity`: the scenario on real sockets.

use std::io::Write as _;

use super::*;

/// Runs every sweep point x chosen strategy x replication live, one after another (the
/// simulator's order), each against fresh in-process backends (or `targets`); stops early when
/// `stop` is set.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_live_strategies(
    loaded: &meshbench_scenario::Loaded,
    chosen: &[usize],
    replications: u32,
    targets: &[std::net::SocketAddr],
    seed: u64,
    duration: Option<mesh_core::Duration>,
    record: bool,
    quiet: bool,
    wire: &Wire,
    rt: &tokio::runtime::Runtime,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<LiveResults> {
    use std::sync::atomic::Ordering;
    let mut results = Vec::new();
    let mut recordings = Vec::new();
    let mut stats = Vec::new();
    let mut traces = Vec::new();
    let sweep = !loaded.sweep_paths.is_empty();
    'all: for (point, pt) in loaded.points.iter().enumerate() {
        let sc = &pt.scenario;
        for &s in chosen {
            for replication in 0..replications {
                if stop.load(Ordering::SeqCst) {
                    break 'all;
                }
                let tls = run_tls(loaded, point, s, wire, targets.is_empty())?;
                let run = rt.block_on(async {
                    // Fresh backends per run: empty queues, the replication's draws.
                    let backends = if targets.is_empty() && wire.discovery.is_none() {
                        Some(std::sync::Arc::new(
                            meshbench_live::Backends::start_with(
                                sc,
                                std::net::IpAddr::from([127, 0, 0, 1]),
                                seed_of(seed, replication),
                                tls.as_ref().and_then(|t| t.server.clone()),
                            )
                            .await?,
                        ))
                    } else {
                        None
                    };
                    if let (Some(b), Some(path)) = (&backends, &wire.trace_log) {
                        let label = format!(
                            "{}/{replication}",
                            meshbench_report::run_label(&loaded.strategies[s].0, point, sweep)
                        );
                        b.log_traces(path, &label)
                            .with_context(|| format!("--trace-log {}", path.display()))?;
                    }
                    // Every service's addresses: the clients' targets, and the upstreams
                    // the scripted services' sidecars call.
                    let mut endpoints = std::collections::BTreeMap::new();
                    match &backends {
                        Some(b) => {
                            for name in sc.services.keys() {
                                let addrs = b.of(name).iter().map(|i| i.addr).collect();
                                endpoints.insert(name.clone(), addrs);
                            }
                        }
                        None => {
                            for c in sc.clients.values() {
                                endpoints.insert(c.target.clone(), targets.to_vec());
                            }
                        }
                    }
                    // Discovery: what the source gives now is where this run starts.
                    let discovery = match &wire.discovery {
                        Some(source) => {
                            let (initial, _) = source.resolve().await.map_err(|e| {
                                anyhow::anyhow!("--discover: {e}")
                            })?;
                            if initial.is_empty() && !quiet {
                                eprintln!(
                                    "warning: --discover found no endpoints yet: requests fail (no healthy upstream) until some appear"
                                );
                            }
                            Some((source.clone(), initial))
                        }
                        None => None,
                    };
                    let opts = meshbench_live::LiveOptions {
                        point,
                        strategy: s,
                        replication,
                        seed,
                        duration: duration.map(|d| std::time::Duration::from_nanos(d.as_nanos())),
                        endpoints,
                        record,
                        progress: !quiet,
                        drain: std::time::Duration::from_secs(5),
                        http2: wire.http2,
                        connections: wire.connections,
                        tls: tls.as_ref().map(|t| t.client.clone()),
                        shard: wire.shard,
                        backends: backends.clone(),
                        urls: wire.urls.clone(),
                        request: wire.request.clone(),
                        metrics: wire.metrics.clone(),
                        discovery,
                        trace_sample: wire.trace_sample.unwrap_or(1.0),
                        trace_log: wire.trace_sample.is_some(),
                    };
                    if !quiet {
                        let at = if sweep {
                            format!(" at {}", point_label(loaded, point))
                        } else {
                            String::new()
                        };
                        eprintln!(
                            "live: strategy {}{at}, replication {}/{replications}",
                            pt.strategies[s].0,
                            replication + 1
                        );
                    }
                    let run = meshbench_live::driver::run(loaded, opts, stop.clone()).await;
                    if let Some(b) = backends {
                        b.shutdown();
                    }
                    anyhow::Ok(run)
                })?;
                let label = meshbench_report::run_label(&pt.strategies[s].0, point, sweep);
                let run_name = format!("{label}/{replication}");
                traces.extend(run.traces.into_iter().map(|t| (run_name.clone(), t)));
                stats.push((label, run.stats));
                results.push(run.result);
                recordings.extend(run.recordings);
            }
        }
    }
    Ok((results, stats, recordings, traces))
}

/// A sweep point as `path=value, ...`.
pub(crate) fn point_label(loaded: &meshbench_scenario::Loaded, point: usize) -> String {
    loaded
        .sweep_paths
        .iter()
        .zip(&loaded.points[point].coords)
        .map(|(p, c)| format!("{p}={c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) type LiveResults = (
    Vec<meshbench_report::RunResult>,
    Vec<(String, meshbench_live::LiveStats)>,
    Vec<meshbench_live::Recording>,
    Vec<(String, meshbench_live::driver::TracedRequest)>,
);

/// The strategy indices to run: one by name (with a suggestion for a typo), or all.
/// `loaded` as a run of only the `chosen` strategies, `replications` each, over `duration` (if
/// given, instead of the file's duration or request count) with `warmup` (if given).
fn as_run(
    loaded: &meshbench_scenario::Loaded,
    chosen: &[usize],
    duration: Option<mesh_core::Duration>,
    warmup: Option<mesh_core::Duration>,
    replications: u32,
) -> meshbench_scenario::Loaded {
    let mut l = loaded.clone();
    l.strategies = chosen
        .iter()
        .map(|&i| loaded.strategies[i].clone())
        .collect();
    for p in &mut l.points {
        p.strategies = chosen
            .iter()
            .filter_map(|&i| p.strategies.get(i).cloned())
            .collect();
    }
    for sc in std::iter::once(&mut l.scenario).chain(l.points.iter_mut().map(|p| &mut p.scenario)) {
        if let Some(d) = duration {
            sc.duration = Some(d);
            sc.requests = None;
        }
        if let Some(w) = warmup {
            sc.warmup = w;
        }
        sc.replications = replications;
    }
    l
}

pub(crate) fn choose_strategies(
    loaded: &meshbench_scenario::Loaded,
    strategy: Option<&str>,
) -> anyhow::Result<Vec<usize>> {
    Ok(match strategy {
        Some(name) => vec![
            loaded
                .strategies
                .iter()
                .position(|(n, _)| n == name)
                .with_context(|| {
                    let names: Vec<&str> =
                        loaded.strategies.iter().map(|(n, _)| n.as_str()).collect();
                    format!(
                        "no strategy `{name}` (strategies: {}){}",
                        names.join(", "),
                        meshbench_scenario::nearest(name, names.iter().copied())
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_default()
                    )
                })?,
        ],
        None => (0..loaded.strategies.len()).collect(),
    })
}

pub(crate) fn fidelity(
    loaded: &meshbench_scenario::Loaded,
    duration: Option<mesh_core::Duration>,
    strategy: Option<&str>,
    out: Option<PathBuf>,
    allow_large: bool,
    tolerance: f64,
) -> anyhow::Result<bool> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let chosen = choose_strategies(loaded, strategy)?;
    let sc = &loaded.scenario;
    let seed = sc.seed;
    // The simulator on the same arrival period and warm-up as the live run, one replication.
    let d = duration
        .or(sc.duration)
        .unwrap_or(mesh_core::Duration::from_secs(10));
    let warmup = mesh_core::Duration::from_nanos(sc.warmup.as_nanos().min(d.as_nanos() / 2));
    let sim_loaded = as_run(loaded, &chosen, Some(d), Some(warmup), 1);
    budget(&sim_loaded, Driver::Live, 1, allow_large)?;
    eprintln!(
        "fidelity: simulating {} strategies over {d}, then the same live ({} of traffic)",
        chosen.len(),
        mesh_core::Duration::from_nanos(d.as_nanos().saturating_mul(chosen.len() as u64))
    );
    let sim = meshbench_sim::run_all(&sim_loaded, seed, &|| {});
    let rt = runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (live, stats, _, _) = run_live_strategies(
        loaded,
        &chosen,
        1,
        &[],
        seed,
        Some(d),
        false,
        false,
        &Wire::default(),
        &rt,
        &stop,
    )?;
    let dir = out.unwrap_or_else(|| PathBuf::from("reports").join(format!("{}-fidelity", sc.name)));
    std::fs::create_dir_all(&dir)?;
    let mut csv = String::from("strategy,metric,sim,live,relative_difference\n");
    let mut misses: Vec<String> = Vec::new();
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "{:<14} {:<22} {:>12} {:>12} {:>10}",
        "strategy", "metric", "sim", "live", "live/sim"
    )?;
    for (s, l) in sim.iter().zip(&live) {
        let share = |r: &meshbench_report::RunResult| -> Vec<f64> {
            let total: u64 = r.endpoints.iter().map(|e| e.attempts).sum();
            r.endpoints
                .iter()
                .map(|e| e.attempts as f64 / total.max(1) as f64)
                .collect()
        };
        let (ss, ls) = (share(s), share(l));
        let max_share_gap = ss
            .iter()
            .zip(&ls)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let rows = [
            ("p50_ms", s.metric("p50_ms"), l.metric("p50_ms")),
            ("p90_ms", s.metric("p90_ms"), l.metric("p90_ms")),
            ("p99_ms", s.metric("p99_ms"), l.metric("p99_ms")),
            ("error_rate", s.metric("error_rate"), l.metric("error_rate")),
            ("max_load_share_gap", 0.0, max_share_gap),
        ];
        for (m, a, b) in rows {
            // The verdict: latency within the tolerance of the simulator's, error rate and
            // load shares within the tolerance in absolute terms (as shares).
            let off = match m {
                "error_rate" | "max_load_share_gap" => (b - a).abs() > tolerance,
                _ => a > 0.0 && ((b - a) / a).abs() > tolerance,
            };
            if off {
                misses.push(format!("{} {m}", s.strategy));
            }
            let rel = if m == "max_load_share_gap" || a == 0.0 {
                String::from("-")
            } else {
                format!("{:+.1}%", 100.0 * (b - a) / a)
            };
            writeln!(
                o,
                "{:<14} {:<22} {:>12.4} {:>12.4} {:>10}",
                s.strategy, m, a, b, rel
            )?;
            csv.push_str(&format!(
                "{},{m},{a:.6},{b:.6},{}\n",
                s.strategy,
                if a == 0.0 {
                    String::new()
                } else {
                    format!("{:.6}", (b - a) / a)
                }
            ));
        }
    }
    for (n, st) in &stats {
        writeln!(
            o,
            "{n}: live achieved {:.1}/s of {:.0}/s, pacing error p99 {:.0} us",
            st.achieved_rps, st.target_rps, st.pacing_error_us[1]
        )?;
        if let Some(w) = st.contention_warning() {
            eprintln!("warning: {n}: {w}");
        }
    }
    std::fs::write(dir.join("fidelity.csv"), csv)?;
    writeln!(o, "written to {}", dir.join("fidelity.csv").display())?;
    let pct = 100.0 * tolerance;
    if misses.is_empty() {
        writeln!(
            o,
            "fidelity: PASS, live agrees with the simulator within {pct:.1}% (latency: relative; error rate and load share: absolute)"
        )?;
        Ok(true)
    } else {
        writeln!(
            o,
            "fidelity: FAIL, beyond {pct:.1}%: {} (latency: relative; error rate and load share: absolute)",
            misses.join(", ")
        )?;
        Ok(false)
    }
}

/// The transport security a strategy's pooled policies (`connections:`) ask for, and whether
/// any asks for HTTP/2: `None` when none is pooled. One live run has one transport, so policies
/// that ask for different TLS modes are refused.
pub(crate) fn pooled_tls(
    loaded: &meshbench_scenario::Loaded,
    point: usize,
    strategy: usize,
) -> anyhow::Result<Option<(mesh_core::Tls, bool)>> {
    let pt = &loaded.points[point];
    let mut modes = pt.policies(strategy).filter_map(|c| c.connections.as_ref());
    let Some(first) = modes.next() else {
        return Ok(None);
    };
    let mut http2 = first.protocol == mesh_core::Protocol::Http2;
    for c in modes {
        anyhow::ensure!(
            c.tls == first.tls,
            "{}: strategy `{}` asks for `connections.tls: {}` in one policy and `{}` in another: a live run dials every endpoint one way (give its policies one `tls`)",
            loaded.file,
            pt.strategies[strategy].0,
            tls_name(first.tls),
            tls_name(c.tls)
        );
        http2 |= c.protocol == mesh_core::Protocol::Http2;
    }
    Ok(Some((first.tls, http2)))
}

fn tls_name(t: mesh_core::Tls) -> &'static str {
    match t {
        mesh_core::Tls::None => "none",
        mesh_core::Tls::Tls => "tls",
        mesh_core::Tls::Mtls => "mtls",
    }
}

/// The TLS of one live run: a pooled policy's own (`connections.tls`, with the in-process
/// backends as the server side, on a throwaway PKI made once per command), else the command
/// line's.
fn run_tls(
    loaded: &meshbench_scenario::Loaded,
    point: usize,
    strategy: usize,
    wire: &Wire,
    in_process: bool,
) -> anyhow::Result<Option<LiveTls>> {
    let Some((mode, http2)) = pooled_tls(loaded, point, strategy)? else {
        return Ok(wire.tls.clone());
    };
    if !in_process || mode == mesh_core::Tls::None {
        // Outside endpoints: the command line's TLS, checked against the policy before the run.
        return Ok(wire.tls.clone().filter(|_| mode != mesh_core::Tls::None));
    }
    let pki = match wire.pki.get() {
        Some(p) => p,
        None => {
            let p = meshbench_live::tls::generate_pki().map_err(|e| anyhow::anyhow!(e))?;
            wire.pki.get_or_init(|| p)
        }
    };
    live_tls_from(pki, mode == mesh_core::Tls::Mtls, http2).map(Some)
}

/// How live mode talks to endpoints.
#[derive(Default)]
pub(crate) struct Wire {
    /// The throwaway PKI of pooled policies' TLS with in-process backends, made on first use.
    pki: std::sync::OnceLock<meshbench_live::tls::TestPki>,
    shard: (u32, u32),
    http2: bool,
    connections: Option<u32>,
    tls: Option<LiveTls>,
    /// Outside targets as URLs (paths, `Host`, certificate names), in instance order.
    urls: Option<std::sync::Arc<[meshbench_live::TargetUrl]>>,
    /// The in-process backends' trace log (`--trace-log`).
    trace_log: Option<PathBuf>,
    /// The work requests' method, headers and body (`--method`, `--header`, `--body-file`).
    request: std::sync::Arc<meshbench_live::RequestSpec>,
    /// What `--metrics-addr` serves: the run in progress.
    metrics: Option<std::sync::Arc<meshbench_live::metrics::Registry>>,
    /// Where the endpoints come from, watched during each run (`--discover`).
    discovery: Option<meshbench_live::discovery::Source>,
    /// `--trace-sample`: the share of requests traced, and a trace log written.
    trace_sample: Option<f64>,
}

/// TLS for a live run: the client side, and the in-process backends' side when they are ours.
#[derive(Clone)]
pub(crate) struct LiveTls {
    client: meshbench_live::tls::TlsClient,
    server: Option<std::sync::Arc<rustls::ServerConfig>>,
}

pub(crate) fn read_pem(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{what} {}", path.display()))
}

/// TLS settings from the flags: with in-process backends, `--tls` makes a throwaway PKI for
/// both sides; with `--target`, `--ca` (and for mTLS `--client-cert`/`--client-key`) configure
/// the client.
pub(crate) fn live_tls(args: &LiveArgs, external: bool) -> anyhow::Result<Option<LiveTls>> {
    use meshbench_live::tls;
    let server_name = |name: &str| {
        rustls::pki_types::ServerName::try_from(name.to_owned())
            .with_context(|| format!("--server-name {name}: not a DNS name or IP address"))
    };
    if external {
        let Some(ca) = &args.ca else {
            if args.tls {
                anyhow::bail!(
                    "--tls with --target needs --ca FILE (the CA that signed the targets' certificates)"
                );
            }
            return Ok(None);
        };
        let ca = read_pem(ca, "--ca")?;
        let client_pair = match (&args.client_cert, &args.client_key) {
            (Some(c), Some(k)) => {
                Some((read_pem(c, "--client-cert")?, read_pem(k, "--client-key")?))
            }
            (None, None) => None,
            _ => anyhow::bail!("--client-cert and --client-key go together"),
        };
        let config = tls::client_config(
            &ca,
            client_pair.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
            args.http2,
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        let name = args
            .server_name
            .clone()
            .unwrap_or_else(|| "localhost".to_owned());
        return Ok(Some(LiveTls {
            client: tls::TlsClient {
                config,
                server_name: server_name(&name)?,
            },
            server: None,
        }));
    }
    if !args.tls {
        return Ok(None);
    }
    let pki = tls::generate_pki().map_err(|e| anyhow::anyhow!(e))?;
    live_tls_from(&pki, args.mtls, args.http2).map(Some)
}

/// TLS between the generator and in-process backends on `pki`: with `mtls`, the backends ask
/// for the client certificate and the generator presents it; ALPN asks for h2 with `http2`.
fn live_tls_from(
    pki: &meshbench_live::tls::TestPki,
    mtls: bool,
    http2: bool,
) -> anyhow::Result<LiveTls> {
    use meshbench_live::tls;
    let server = tls::server_config(
        &pki.server_cert_pem,
        &pki.server_key_pem,
        mtls.then_some(pki.ca_pem.as_str()),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let client = tls::client_config(
        &pki.ca_pem,
        mtls.then_some((pki.client_cert_pem.as_str(), pki.client_key_pem.as_str())),
        http2,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    Ok(LiveTls {
        client: tls::TlsClient {
            config: client,
            server_name: rustls::pki_types::ServerName::try_from("localhost")?,
        },
        server: Some(server),
    })
}

/// `meshbench live` options.
#[derive(clap::Args, Debug)]
pub(crate) struct LiveArgs {
    /// Endpoints of the target service as URLs, in instance order; repeat. `http://` or
    /// `https://` (with --ca), host names, IPv6 (`http://[::1]:8080`) and a path
    /// (`https://api.internal:8443/v1/items`) for every request; `HOST:PORT` alone is http.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// The targets from a file in vegeta's formats, one endpoint each, in instance order: text
    /// (`METHOD URL`, `Name: value` header lines, an optional `@BODYFILE` line, a blank line
    /// between targets) or JSON lines (`{"method", "url", "header", "body" (base64)}`). Each
    /// target keeps its own method, headers and body; --header adds to all of them.
    #[arg(long, conflicts_with_all = ["targets", "discover"])]
    targets_file: Option<PathBuf>,
    /// Only this strategy (default: all, one after another).
    #[arg(long)]
    strategy: Option<String>,
    /// Replications per strategy and sweep point (default: the scenario's `replications`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    replications: Option<u32>,
    /// Arrival period (default: the scenario's duration), e.g. `10s`.
    #[arg(long)]
    duration: Option<mesh_core::Duration>,
    /// Base seed (default: the scenario's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory (default: reports/NAME-live/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Record every Cluster's inputs and outputs here (JSON Lines) for `meshbench replay`.
    #[arg(long)]
    record: Option<PathBuf>,
    /// No progress line, no table.
    #[arg(long)]
    quiet: bool,
    /// HTTP/2 over cleartext (h2c) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// Closed loop with this many virtual users, each sending its next request the moment the
    /// last finishes (no think time), instead of the scenario's arrivals. A scenario's own
    /// `process: closed` clients (users with think times) need no flag.
    #[arg(long)]
    connections: Option<u32>,
    /// Run share I of N of the open-loop schedule (`--shard 0/2` here, `--shard 1/2` on
    /// another machine); `meshbench merge` combines the result directories exactly.
    #[arg(long, value_parser = parse_shard, default_value = "0/1")]
    shard: (u32, u32),
    /// TLS. With in-process backends, a throwaway CA and certificates are made for the run.
    #[arg(long)]
    tls: bool,
    /// With in-process backends and --tls: require client certificates (mTLS).
    #[arg(long)]
    mtls: bool,
    /// With --target: the CA (PEM) that signed the targets' certificates; implies TLS.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// With --target: a client certificate chain (PEM) for mTLS.
    #[arg(long)]
    client_cert: Option<PathBuf>,
    /// With --target: the client certificate's key (PEM).
    #[arg(long)]
    client_key: Option<PathBuf>,
    /// Lift the soft limits on the run's estimated size (hours of traffic, time-series windows,
    /// memory) for a run that is meant to be that large.
    #[arg(long)]
    allow_large: bool,
    /// With --target: the name to check every target's certificate against (default: each
    /// URL's host).
    #[arg(long)]
    server_name: Option<String>,
    /// With in-process backends: write each request attempt's W3C `traceparent` as the
    /// backends receive it (CSV: instance, request, attempt, traceparent). Every attempt of a
    /// request, retries and hedges too, shares its trace id; each has its own span id.
    #[arg(long)]
    trace_log: Option<PathBuf>,
    /// The method of every work request (default GET), e.g. `POST`.
    #[arg(long)]
    method: Option<String>,
    /// A header sent with every work request, `Name: value`; repeat for more.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// The body of every work request, read from this file (sent with `content-length`).
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Take the target service's endpoints from a source watched during the run, instead of
    /// --target: `dns:[//SERVER[:PORT]/]NAME:PORT` (A and AAAA records, asked again at their
    /// TTL), `srv:[//SERVER[:PORT]/]NAME` (SRV records: ports, weights, priorities),
    /// `file:PATH` (an Envoy ClusterLoadAssignment in YAML or JSON, or `HOST:PORT [WEIGHT]`
    /// lines; read again when it changes) or `etcd://HOST:PORT/PREFIX` (every key under the
    /// prefix, watched). Hosts that stay keep their state (slow start, ejection, health).
    #[arg(long, conflicts_with = "targets")]
    discover: Option<String>,
    /// Trace this share of requests (0 to 1): their traceparent has the sampled flag (the
    /// others are sent unsampled), and DIR/traces.jsonl gets one line per sampled request: its
    /// trace id, result and every attempt (span id, first, retry or hedge, endpoint, start and
    /// end in ms since the run's start, outcome). Chosen by trace id, so the same for a seed.
    #[arg(long, value_parser = crate::parse_tolerance)]
    trace_sample: Option<f64>,
    /// The path of every work request to in-process backends and discovered endpoints
    /// (default `/work`; a --target URL carries its own).
    #[arg(long)]
    path: Option<String>,
    /// Serve Prometheus metrics of the run in progress at http://ADDR/metrics (text format, or
    /// OpenMetrics when the scraper asks for it), e.g. `127.0.0.1:9464`; port 0 picks one.
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
}

/// The work requests' method, headers and body from `--method`, `--header` and `--body-file`.
fn request_spec(args: &LiveArgs) -> anyhow::Result<meshbench_live::RequestSpec> {
    let body = match &args.body_file {
        Some(f) => std::fs::read(f).with_context(|| format!("--body-file {}", f.display()))?,
        None => Vec::new(),
    };
    let mut spec = meshbench_live::RequestSpec::parse(args.method.as_deref(), &args.headers, body)
        .map_err(|e| anyhow::anyhow!(e))?;
    if let Some(p) = &args.path {
        spec.set_path(p).map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(spec)
}

/// The runtime of a command that serves or sends real traffic: its threads (and those they
/// spawn) wake on time, not Linux's 50 us of timer slack late.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    meshbench_live::timer::tighten_timer_slack();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// 32 hex digits from the operating system's random source (a secret, not part of any result).
fn random_token() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom for the control token (or pass --control-token)")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// HTTP requests per second that one core is taken to carry in a live run with
/// in-process backends (generator, sidecars and backends together), before their own queueing
/// shows in the latencies.
const GRAPH_RPS_PER_CORE: f64 = 2500.0;

/// A warning when a call graph multiplies the clients' rate past what this machine's cores carry
/// in live mode: every call is a real HTTP request through a sidecar to an in-process backend.
fn graph_load_warning(sc: &meshbench_scenario::Scenario) -> Option<String> {
    if sc.services.values().all(|s| s.script.is_empty()) {
        return None;
    }
    let (mut clients, mut all) = (0.0, 0.0);
    for c in sc.clients.values().filter(|c| !c.arrival.is_closed()) {
        let rate = c.arrival.mean_rate();
        clients += rate;
        all += rate * meshbench_scenario::graph::requests_per_request(&sc.services, &c.target);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let carried = GRAPH_RPS_PER_CORE * cores as f64;
    (all > carried).then(|| {
        format!(
            "the call graph turns the clients' {clients:.0} requests/s into about {all:.0} HTTP requests/s (every call is a real request through a sidecar to an in-process backend, retries not counted); {cores} cores carry about {carried:.0}/s before the machine's own queueing shows in live latencies: lower the clients' rate for a faithful live run, or use `meshbench run`"
        )
    })
}

/// Refuses what only meshbench's own in-process backends act on when the endpoints are
/// someone else's (`outside` names where they come from: `--target`, `--discover`, or `serve`,
/// whose backends have no live run's sidecars to call through): a field must act in both
/// drivers or stop the run.
fn refuse_outside(loaded: &meshbench_scenario::Loaded, outside: &str) -> anyhow::Result<()> {
    let sc = &loaded.scenario;
    if let Some((name, _)) = sc.services.iter().find(|(_, s)| !s.script.is_empty()) {
        anyhow::bail!(
            "{}: `services.{name}.script` is a call graph, which the simulator and `meshbench live` with its in-process backends run (each instance calling the next tier through its own sidecars); with {outside} the backends' own code decides whom they call (run it with `meshbench live` without {outside}, or remove the script)",
            loaded.file
        );
    }
    if sc.mesh.costs() {
        anyhow::bail!(
            "{}: `mesh.outbound` / `mesh.inbound` model sidecar time, which the simulator and meshbench's own backends add to every attempt; with {outside} the proxies' cost is whatever real ones take (run it without {outside}, or remove them)",
            loaded.file
        );
    }
    Ok(())
}

pub(crate) fn serve(
    loaded: &meshbench_scenario::Loaded,
    bind: std::net::IpAddr,
    (tls_cert, tls_key, client_ca): (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>),
    faults: bool,
    (control_bind, control_token): (std::net::IpAddr, Option<String>),
    trace_log: Option<PathBuf>,
) -> anyhow::Result<()> {
    let scripted = loaded
        .scenario
        .services
        .values()
        .any(|s| !s.script.is_empty());
    if scripted && tls_cert.is_some() {
        refuse_outside(loaded, "`meshbench serve --tls-cert`")
            .context("serve's sidecars call the next tier over plain HTTP; for TLS between tiers, use `meshbench live --tls` or `--mtls`")?;
    }
    if control_token.as_deref().is_some_and(|t| t.len() < 16) {
        anyhow::bail!("--control-token: use at least 16 characters");
    }
    // Beyond loopback, faults on demand are for whoever holds the token.
    let control_token = match control_token {
        Some(t) => Some(t),
        None if !control_bind.is_loopback() => Some(random_token()?),
        None => None,
    };
    let tls = match (tls_cert, tls_key) {
        (Some(c), Some(k)) => {
            let ca = client_ca.map(|p| read_pem(&p, "--client-ca")).transpose()?;
            Some(
                meshbench_live::tls::server_config(
                    &read_pem(&c, "--tls-cert")?,
                    &read_pem(&k, "--tls-key")?,
                    ca.as_deref(),
                )
                .map_err(|e| anyhow::anyhow!(e))?,
            )
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let rt = runtime()?;
    rt.block_on(async {
        let backends = std::sync::Arc::new(
            meshbench_live::Backends::start_with(
                &loaded.scenario,
                bind,
                seed_of(loaded.scenario.seed, 0),
                tls,
            )
            .await?,
        );
        if let Some(path) = &trace_log {
            std::fs::write(path, "run,instance,request,attempt,traceparent\n")
                .and_then(|()| backends.log_traces(path, "serve"))
                .with_context(|| format!("--trace-log {}", path.display()))?;
        }
        let (control, _task) = meshbench_live::server::start_control(
            backends.clone(),
            control_bind,
            control_token.clone(),
        )
        .await?;
        let mut o = std::io::stdout().lock();
        for i in &backends.instances {
            writeln!(o, "{}/{}  {scheme}://{}", i.service, i.index, i.addr)?;
        }
        writeln!(
            o,
            "control: http://{control}/instances, POST /kill|/restart|/slowdown|/errors|/fast_fail?service=S&instance=I[&factor=F|&rate=P]"
        )?;
        if let Some(t) = &control_token {
            writeln!(o, "control token: send `Authorization: Bearer {t}`")?;
        }
        let timeline = &loaded.scenario.faults;
        let t0 = std::time::Instant::now();
        let _faults = (faults && !timeline.is_empty())
            .then(|| backends.run_faults(loaded.scenario.fault_changes(), t0));
        let presence = loaded.scenario.presence();
        let _membership =
            (!presence.is_empty()).then(|| backends.run_membership(presence, t0));
        if !timeline.is_empty() {
            if faults {
                writeln!(o, "fault timeline: {} faults, time zero is now:", timeline.len())?;
                for f in fault_windows(&loaded.scenario) {
                    let until = f.until_s.map_or("the end".to_owned(), |u| format!("{u} s"));
                    writeln!(o, "  {} s to {until}: {} {}", f.from_s, f.target, f.kind)?;
                }
            } else {
                writeln!(o, "fault timeline: off (--no-faults)")?;
            }
        }
        writeln!(
            o,
            "serving {} instances; Ctrl-C stops",
            backends.instances.len()
        )?;
        if scripted {
            writeln!(
                o,
                "call graph: each scripted instance calls the next tier through its own sidecars, with strategy {}'s policies",
                loaded.strategies[0].0
            )?;
        }
        drop(o);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sidecars = async {
            if scripted {
                meshbench_live::serve_sidecars(loaded, backends.clone(), stop.clone()).await;
            }
        };
        let interrupted = async {
            let r = tokio::signal::ctrl_c().await;
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        };
        let (r, ()) = tokio::join!(interrupted, sidecars);
        r?;
        backends.shutdown();
        Ok(())
    })
}

/// The seed the backends draw from: the simulator's run seed of `replication`, so live service
/// times match the simulator's draws.
pub(crate) fn seed_of(seed: u64, replication: u32) -> u64 {
    mesh_core::Seed::new(seed)
        .fork_index(u64::from(replication))
        .value()
}

/// A live run: 0 when it completed and every check passed, 1 when a check failed (a run in
/// which every request failed fails its default check), 130 when interrupted (what was measured
/// is written and marked partial).
pub(crate) fn live(loaded: &meshbench_scenario::Loaded, args: LiveArgs) -> anyhow::Result<Done> {
    use std::sync::Arc;
    let sc = &loaded.scenario;
    let seed = args.seed.unwrap_or(sc.seed);
    let chosen = choose_strategies(loaded, args.strategy.as_deref())?;
    // Live runs in real time: its schedule ends at a duration, not after a request count.
    anyhow::ensure!(
        sc.requests.is_none() || args.duration.is_some(),
        "the scenario sets `requests: {}`, but live mode runs for a duration: pass --duration (for example {:.0}s, the time these requests take to arrive)",
        sc.requests.unwrap_or(0),
        (sc.requests.unwrap_or(0) as f64
            / sc.clients
                .values()
                .map(|c| c.arrival.mean_rate())
                .sum::<f64>())
        .ceil()
    );
    let mut urls: Vec<meshbench_live::TargetUrl> = args
        .targets
        .iter()
        .map(|t| meshbench_live::TargetUrl::parse(t).map_err(|e| anyhow::anyhow!("--target {e}")))
        .collect::<anyhow::Result<_>>()?;
    if let Some(f) = &args.targets_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("--targets-file {}", f.display()))?;
        urls = meshbench_live::target::parse_targets_file(
            &text,
            &f.display().to_string(),
            &request_spec(&args)?,
        )
        .map_err(|e| anyhow::anyhow!("--targets-file {e}"))?;
    }
    let https = urls.iter().filter(|u| u.https).count();
    anyhow::ensure!(
        https == 0 || https == urls.len(),
        "--target: mix of http:// and https:// targets; give one scheme for all"
    );
    anyhow::ensure!(
        https == 0 || args.ca.is_some(),
        "https:// targets need --ca FILE (the CA, in PEM, that signed the targets' certificates)"
    );
    anyhow::ensure!(
        https > 0 || urls.is_empty() || (args.ca.is_none() && !args.tls),
        "--ca and --tls dial the targets with TLS: write them as https://HOST:PORT"
    );
    if args.server_name.is_some() {
        // One name checked for every target, instead of each URL's host.
        for u in &mut urls {
            u.server_name = None;
        }
    }
    let targets: Vec<std::net::SocketAddr> = urls.iter().map(|u| u.addr).collect();
    let discovery = args
        .discover
        .as_deref()
        .map(meshbench_live::discovery::Source::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))?;
    // Endpoints from outside: given, or discovered.
    let external = !targets.is_empty() || discovery.is_some();
    if !external && let Some(w) = graph_load_warning(sc) {
        eprintln!("warning: {}: {w}", loaded.file);
    }
    if external {
        refuse_outside(
            loaded,
            if discovery.is_some() {
                "--discover"
            } else {
                "--target"
            },
        )?;
    }
    if discovery.is_some() {
        let services: std::collections::BTreeSet<&str> =
            sc.clients.values().map(|c| c.target.as_str()).collect();
        anyhow::ensure!(
            services.len() == 1,
            "--discover gives the endpoints of one service, but the scenario's clients call {}: keep one target service",
            services.into_iter().collect::<Vec<_>>().join(", ")
        );
        anyhow::ensure!(
            args.ca.is_some() || !args.tls,
            "--tls with --discover needs --ca FILE (the CA that signed the endpoints' certificates)"
        );
    }
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(format!("{}-live", sc.name)));
    if external && !args.quiet {
        // What the in-process backends model and an outside endpoint does not.
        let modeled = meshbench_scenario::workload::stations(sc).0.len() > 1
            || sc.network.dists().any(|(_, d)| d.mean_ns() > 0.0);
        for (applies, what) in [
            (
                !urls.is_empty()
                    && sc
                        .clients
                        .values()
                        .any(|c| c.request.as_ref().is_some_and(|r| r.path.is_some())),
                "a client's `request.path` is not used with --target or --targets-file: each URL carries its own path",
            ),
            (
                !sc.faults.is_empty(),
                "the scenario's fault timeline is not applied to outside endpoints (--target, --targets-file, --discover) (`meshbench serve` plays it on its own backends)",
            ),
            (
                modeled,
                "the scenario's network latency and zones are not applied to outside endpoints (the real network is measured instead)",
            ),
            (
                loaded
                    .strategies
                    .iter()
                    .any(|(_, c)| matches!(c.balancer, mesh_core::BalancerConfig::Prequal(_))),
                "prequal needs the targets to answer GET /probe with an x-meshbench-probe header (as `meshbench serve` does); without it, its picks are random",
            ),
            (
                loaded.strategies.iter().any(|(_, c)| {
                    matches!(
                        c.balancer,
                        mesh_core::BalancerConfig::OrcaWeightedRoundRobin(_)
                    )
                }),
                "orca_weighted_round_robin needs the targets to send endpoint-load-metrics on their responses (as `meshbench serve` does); without it, it is round robin",
            ),
        ] {
            if applies {
                eprintln!("note: {what}");
            }
        }
    }
    let rt = runtime()?;
    let stop = crate::stop_on_interrupt(
        "finishing in-flight requests (5 s at most), then writing what was measured",
    );
    let metrics = match args.metrics_addr {
        Some(addr) => {
            let registry = Arc::new(meshbench_live::metrics::Registry::default());
            let bound = rt
                .block_on(meshbench_live::metrics::serve(registry.clone(), addr))
                .with_context(|| format!("--metrics-addr {addr}: cannot listen there"))?;
            // Said even with --quiet: a scraper needs the port when it was 0.
            eprintln!("metrics: http://{bound}/metrics");
            Some(registry)
        }
        None => None,
    };
    let wire = Wire {
        pki: std::sync::OnceLock::new(),
        metrics,
        shard: args.shard,
        http2: args.http2,
        connections: args.connections,
        tls: live_tls(&args, external)?,
        discovery,
        trace_sample: args.trace_sample,
        urls: (!urls.is_empty()).then(|| urls.into()),
        trace_log: args.trace_log.clone(),
        request: std::sync::Arc::new(request_spec(&args)?),
    };
    // A pooled policy (`connections:`) says how its connections are dialled: the command line
    // must agree.
    for &s in &chosen {
        for point in 0..loaded.points.len() {
            let Some((mode, _)) = pooled_tls(loaded, point, s)? else {
                continue;
            };
            let name = &loaded.strategies[s].0;
            anyhow::ensure!(
                !args.http2,
                "--http2: strategy `{name}` pools its connections (`connections:`), and their `protocol` says which HTTP they speak: drop --http2"
            );
            if !external {
                anyhow::ensure!(
                    !args.tls && !args.mtls,
                    "--tls / --mtls: strategy `{name}` pools its connections, and `connections.tls: {}` says how the in-process backends are dialled: drop the flag",
                    tls_name(mode)
                );
                continue;
            }
            let dials_tls = wire.tls.is_some();
            match mode {
                mesh_core::Tls::None => anyhow::ensure!(
                    !dials_tls,
                    "strategy `{name}` has `connections.tls: none`, but the targets are dialled with TLS (https://, --ca): give http:// targets, or set `tls: tls` in the policy"
                ),
                mode => {
                    anyhow::ensure!(
                        dials_tls,
                        "strategy `{name}` asks for `connections.tls: {}`: give https:// targets and --ca FILE",
                        tls_name(mode)
                    );
                    anyhow::ensure!(
                        mode != mesh_core::Tls::Mtls || args.client_cert.is_some(),
                        "strategy `{name}` asks for `connections.tls: mtls`: give --client-cert and --client-key"
                    );
                }
            }
        }
    }
    anyhow::ensure!(
        !external || args.trace_log.is_none(),
        "--trace-log records what the in-process backends receive: outside --target endpoints log their own (every request carries a traceparent header)"
    );
    // A closed loop's users are not split by shard: every shard would run them all.
    anyhow::ensure!(
        args.shard.1 <= 1
            || (args.connections.is_none() && sc.clients.values().all(|c| !c.arrival.is_closed())),
        "--shard splits an open-loop schedule; closed-loop users (`process: closed`, --connections) would each run in every shard: run them unsharded"
    );
    if let Some(path) = &args.trace_log {
        std::fs::write(path, "run,instance,request,attempt,traceparent\n")
            .with_context(|| format!("--trace-log {}", path.display()))?;
    }
    if external {
        anyhow::ensure!(
            sc.membership.is_none(),
            "the scenario has a `membership:` timeline, which starts and stops instances: live mode plays it only on its own in-process backends (drop --target, or remove `membership:`)"
        );
        // Endpoint metadata (weights, zones, priorities) is per instance in the file: the
        // targets must be the instances, in order.
        for c in sc.clients.values().filter(|_| !targets.is_empty()) {
            let n = sc.services[&c.target].instances as usize;
            anyhow::ensure!(
                n == targets.len(),
                "--target gives {} endpoints but service `{}` has {n} instances in the scenario: give one --target per instance, in instance order (or set `instances: {}`)",
                targets.len(),
                c.target,
                targets.len()
            );
        }
    }
    let replications = args.replications.unwrap_or(sc.replications);
    let est = budget(
        &as_run(loaded, &chosen, args.duration, None, replications),
        Driver::Live,
        1,
        args.allow_large,
    )?;
    if !args.quiet {
        eprintln!("{}: {}", sc.name, est.summary(Driver::Live));
    }
    let (results, stats, recordings, traces) = run_live_strategies(
        loaded,
        &chosen,
        replications,
        &targets,
        seed,
        args.duration,
        args.record.is_some(),
        args.quiet,
        &wire,
        &rt,
        &stop,
    )?;
    let planned = loaded.points.len() * chosen.len() * replications as usize;
    let partial = stats.iter().any(|s| s.1.partial) || results.len() < planned;
    let names: Vec<String> = chosen
        .iter()
        .map(|&i| loaded.strategies[i].0.clone())
        .collect();
    let summaries = summarize(&results, &names);
    let info = RunInfo {
        partial,
        scenario: format!("{} (live)", sc.name),
        description: sc.description.clone(),
        seed,
        meshbench_version: env!("CARGO_PKG_VERSION").to_owned(),
        replications,
        sweep_paths: loaded.sweep_paths.clone(),
        faults: fault_windows(sc),
        shard: None,
    };
    write_reports(&dir, &info, &loaded.source, &summaries, &results)
        .with_context(|| format!("writing the report to {}", dir.display()))?;
    let live_json = serde_json::json!({
        "partial": partial,
        "strategies": stats.iter().map(|(n, s)| serde_json::json!({"strategy": n, "live": s})).collect::<Vec<_>>(),
    });
    std::fs::write(
        dir.join("live.json"),
        serde_json::to_string_pretty(&live_json)?,
    )?;
    meshbench_report::write_runs(&dir, &results)?;
    if args.trace_sample.is_some() {
        // One JSON object per sampled request, with the run it belongs to.
        let mut out = String::new();
        for (run, t) in &traces {
            let mut v = serde_json::to_value(t)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("run".into(), serde_json::Value::String(run.clone()));
            }
            out.push_str(&serde_json::to_string(&v)?);
            out.push('\n');
        }
        std::fs::write(dir.join("traces.jsonl"), out)
            .with_context(|| format!("writing {}", dir.join("traces.jsonl").display()))?;
    }
    meshbench_report::render_dir(&dir)
        .map_err(|e| anyhow::anyhow!("drawing the plots in {}: {e}", dir.display()))?;
    if let Some(path) = &args.record {
        meshbench_live::write_recordings(path, &recordings)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !args.quiet {
        let mut o = std::io::stdout().lock();
        write!(o, "{}", comparison_table(&summaries))?;
        for (n, s) in &stats {
            writeln!(
                o,
                "{n}: target {:.0}/s, scheduled {} ({:.1}/s), sent {}, completed {}, never completed {}, pacing error p50 {:.0} us, p99 {:.0} us, max {:.0} us{}",
                s.target_rps,
                s.scheduled,
                s.achieved_rps,
                s.sent,
                s.completed,
                s.never_completed,
                s.pacing_error_us[0],
                s.pacing_error_us[1],
                s.pacing_error_us[2],
                if s.partial {
                    " (partial: interrupted)"
                } else {
                    ""
                }
            )?;
            if let Some(c) = &s.connections {
                writeln!(
                    o,
                    "{n}: connections set up {}, setup (TCP, then TLS) mean {:.0} us, p50 {:.0} us, p99 {:.0} us",
                    c.opened, c.setup_us[0], c.setup_us[1], c.setup_us[2]
                )?;
            }
            if let Some(w) = s.contention_warning() {
                eprintln!("warning: {n}: {w}");
            }
        }
        writeln!(
            o,
            "report: {}{}",
            dir.display(),
            if partial { " (partial)" } else { "" }
        )?;
    }
    // What a user must hear even with --quiet: a TLS handshake that failed (the end-of-run
    // checks then fail the run if nothing succeeded).
    for (n, s) in &stats {
        if let Some(why) = &s.tls_failure {
            eprintln!("error: {n}: TLS handshake with {why}");
        }
        if let Some(w) = s.behind_warning() {
            eprintln!("warning: {n}: {w}");
        }
    }
    let passed = end_of_run_checks(&dir, sc, args.quiet)?;
    Ok(if partial {
        eprintln!("interrupted: the report in {} is partial", dir.display());
        Done::Interrupted
    } else {
        Done::passed(passed)
    })
}
