//! `meshbench`: run scenario files and compare service-mesh policies.

use std::io::IsTerminal as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant as WallClock;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod check;
mod live_cmd;
mod merge;
mod reproduce;
mod run;

use check::{check_command, end_of_run_checks};
use live_cmd::{LiveArgs, fidelity, live, serve};
use merge::merge;
use meshbench_report::{RunInfo, comparison_table, summarize, write_reports};
use meshbench_scenario::budget::Driver;
use run::{run, shard_from_env};

/// mimalloc: the live load generator allocates a few small objects per request on every core.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Study service-mesh data-plane policies in a deterministic simulator and against live
/// endpoints.
#[derive(Parser, Debug)]
#[command(
    name = "meshbench",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 ok; 1 a check or threshold failed (including a run in which every request failed); 2 bad input or usage; 130 interrupted (what was measured is written and marked partial)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A directory empirical distributions may also read samples files from (absolute, or
    /// relative to it); by default a scenario reads only files in its own directory. Repeat
    /// for more.
    #[arg(long = "data-dir", global = true)]
    data_dirs: Vec<PathBuf>,
}

// Parsed once per process: the size of the largest variant (live's options) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario: every strategy x replication, then write the report files.
    Run {
        /// The scenario file (YAML).
        file: PathBuf,
        /// Base seed (default: the scenario's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Output directory (default: reports/NAME/, NAME being the scenario's name).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Worker threads (default: all cores). Results do not depend on it.
        #[arg(long)]
        threads: Option<usize>,
        /// No progress bar, no table; errors and warnings only.
        #[arg(long)]
        quiet: bool,
        /// Run share I of N of the (sweep point x strategy x replication) runs, chosen by a hash
        /// of each run's key; `meshbench merge` of all N shard directories is byte-identical to
        /// the unsharded run. Without it, read from JOB_COMPLETION_INDEX / JOB_COMPLETIONS
        /// (Kubernetes Indexed Jobs) or SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<(u32, u32)>,
        /// Lift the soft limits on a run's estimated work (events, time-series windows, memory,
        /// hours of live traffic) for a run that is meant to be that large.
        #[arg(long)]
        allow_large: bool,
    },
    /// Check a scenario without running it (exit code 2 when it is invalid).
    Validate {
        /// The scenario file (YAML).
        file: PathBuf,
        /// Lift the soft limits on a run's estimated work (events, time-series windows, memory,
        /// hours of live traffic) for a run that is meant to be that large.
        #[arg(long)]
        allow_large: bool,
    },
    /// Start the scenario's services as real HTTP servers (one port per instance) until Ctrl-C.
    Serve {
        /// The scenario file (YAML).
        file: PathBuf,
        /// Address to bind (loopback unless told otherwise).
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
        /// Serve TLS with this certificate chain (PEM).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Require client certificates signed by this CA (PEM): mTLS.
        #[arg(long, requires = "tls_cert")]
        client_ca: Option<PathBuf>,
        /// Do not play the scenario's fault timeline (by default it runs in real time from the
        /// moment the backends are up; the control endpoint works either way).
        #[arg(long)]
        no_faults: bool,
        /// Address of the control endpoint (faults on demand). Loopback by default; any other
        /// address requires a token (`--control-token`, or one is made and printed).
        #[arg(long, default_value = "127.0.0.1")]
        control_bind: std::net::IpAddr,
        /// Log every sampled request attempt's W3C `traceparent` as the instances receive it
        /// (CSV: run, instance, request, attempt, traceparent).
        #[arg(long)]
        trace_log: Option<PathBuf>,
        /// The control endpoint's token: requests must send `Authorization: Bearer TOKEN`.
        /// Also read from MESHBENCH_CONTROL_TOKEN.
        #[arg(long, env = "MESHBENCH_CONTROL_TOKEN", hide_env_values = true)]
        control_token: Option<String>,
    },
    /// Run the scenario's workload against real endpoints: in-process backends started from the
    /// scenario (default), or `--target` URLs; every strategy in turn.
    Live {
        /// The scenario file (YAML).
        file: PathBuf,
        #[command(flatten)]
        args: LiveArgs,
    },
    /// Run a scenario in the simulator and live (against in-process backends) and print
    /// p50/p90/p99, error rate and load share side by side with their relative differences.
    Fidelity {
        /// The scenario file (YAML).
        file: PathBuf,
        /// Arrival period of both runs (default: the scenario's duration), e.g. `10s`.
        #[arg(long)]
        duration: Option<mesh_core::Duration>,
        /// Only this strategy (default: all).
        #[arg(long)]
        strategy: Option<String>,
        /// Where to write fidelity.csv (default: reports/NAME-fidelity/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The verdict's tolerance: p50/p90/p99 within this relative difference of the
        /// simulator's, error rate and the largest load-share gap within it as absolute shares.
        /// Exit 1 when any is beyond it.
        #[arg(long, default_value = "15%", value_parser = parse_tolerance)]
        tolerance: f64,
        /// Lift the soft limits on a run's estimated work (events, time-series windows, memory,
        /// hours of live traffic) for a run that is meant to be that large.
        #[arg(long)]
        allow_large: bool,
    },
    /// Combine result directories of sharded runs (`live --shard i/n`) exactly: counts and HDR
    /// histograms add; writes a full report.
    Merge {
        /// The result directories: the shards of a simulated run (`run --shard I/N`, all N of
        /// them), or live runs (`live --shard I/N`) of one scenario.
        #[arg(required = true, num_args = 1..)]
        dirs: Vec<PathBuf>,
        /// Where to write the merged report.
        #[arg(long)]
        out: PathBuf,
    },
    /// Replay a recording through fresh Clusters and check the outputs are identical.
    Replay {
        /// A file written by `meshbench live --record`.
        file: PathBuf,
    },
    /// Reproduce the published results: run the shipped validation scenarios in full and
    /// compare each figure (queueing theory's closed forms, Envoy's priority and zone-aware
    /// arithmetic, Linkerd 2016, the retry storm, the Tail at Scale's hedging and fan-out, a three-tier chain) with what was
    /// measured; exit 1 when one does not hold.
    Reproduce {
        /// Only these experiments (repeat for more; default: all).
        #[arg(long)]
        only: Vec<String>,
        /// Write every figure as markdown here (docs/validation.md).
        #[arg(long)]
        doc: Option<PathBuf>,
        /// The repository root, where the scenarios are (default: the current directory).
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Progress and the verdict only.
        #[arg(long)]
        quiet: bool,
    },
    /// Rebuild the plots and index.html of a result directory, without rerunning.
    Report {
        /// A directory written by `meshbench run`.
        dir: PathBuf,
    },
    /// Check a result directory against thresholds (the scenario's `thresholds:` and
    /// `--threshold`) and a baseline; prints a markdown table. Exit codes: 0 every check passed,
    /// 1 a check failed, 2 bad input or usage.
    Check {
        /// The result directory (of `meshbench run` or `meshbench live`).
        dir: PathBuf,
        /// A threshold for every strategy, such as `p99<20ms`, `error_rate<0.1%`,
        /// `throughput>900/s`, `retry_amplification<1.2`; repeat for more.
        #[arg(long = "threshold")]
        thresholds: Vec<String>,
        /// A baseline: a result directory or a summary.json. A metric regresses when it is
        /// worse by more than the tolerance and the confidence intervals say the change is real.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Allowed relative change: `5%` (the default) for every metric, or `p99=10%` for one;
        /// repeat for more.
        #[arg(long = "tolerance")]
        tolerance: Vec<String>,
        /// Write the checks as JUnit XML here too.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Append the markdown table to this file too (for example `$GITHUB_STEP_SUMMARY`).
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write DIR's summary as the new baseline (at --baseline) instead of comparing.
        #[arg(long, requires = "baseline")]
        update_baseline: bool,
    },
    /// Convert an Istio isotope service graph (a MockServiceGraph YAML) into a scenario, check
    /// it, and write it (to stdout without --out). Fields that are read but not modeled are
    /// listed on stderr.
    ImportIsotope {
        /// The isotope graph (YAML).
        graph: PathBuf,
        /// Where to write the scenario (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The scenario's name (default: the graph file's name).
        #[arg(long)]
        name: Option<String>,
        /// Requests per second into the graph's entry points, shared between them.
        #[arg(long, default_value = "200/s")]
        rate: meshbench_scenario::Rate,
        /// Requests per run.
        #[arg(long, default_value_t = 20_000)]
        requests: u64,
    },
    /// Print and plot the difference between two result directories (B relative to A).
    Compare {
        /// The baseline result directory.
        a: PathBuf,
        /// The result directory compared with it.
        b: PathBuf,
        /// Where to write compare.csv and the plots (default: B/compare/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Fail (exit 1) when B regresses from A beyond this tolerance, as `meshbench check
        /// B --baseline A` does: `5%`, or `p99=10%` for one metric; repeat for more.
        #[arg(long = "tolerance")]
        tolerance: Vec<String>,
    },
}

/// How a command ended. `main` turns it into the exit code, in one place: 0 ok, 1 a check
/// failed, 2 bad input or usage (every error), 130 interrupted.
pub(crate) enum Done {
    /// Everything ran and every check passed.
    Ok,
    /// A check or threshold failed (or a replay differed).
    Failed,
    /// Interrupted; what was measured is written and marked partial.
    Interrupted,
}

impl Done {
    fn passed(ok: bool) -> Done {
        if ok { Done::Ok } else { Done::Failed }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command, &cli.data_dirs) {
        Ok(Done::Ok) => ExitCode::SUCCESS,
        Ok(Done::Failed) => ExitCode::from(1),
        Ok(Done::Interrupted) => ExitCode::from(130),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A scenario file, loaded and validated (its errors name file, line, column and field);
/// `data_dirs` are the `--data-dir` directories.
fn load(file: &Path, data_dirs: &[PathBuf]) -> anyhow::Result<meshbench_scenario::Loaded> {
    meshbench_scenario::load_with(file, data_dirs).map_err(|e| anyhow::anyhow!("{e}"))
}

fn dispatch(command: Command, data_dirs: &[PathBuf]) -> anyhow::Result<Done> {
    let mut o = std::io::stdout().lock();
    Ok(match command {
        Command::Validate { file, allow_large } => {
            let loaded = load(&file, data_dirs)?;
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            let est = budget(
                &loaded,
                Driver::Sim,
                rayon::current_num_threads(),
                allow_large,
            )?;
            let s = &loaded.scenario;
            writeln_ok(
                &mut o,
                &format!(
                    "{}: ok ({} strategies, {} services, {} clients; {})",
                    file.display(),
                    loaded.strategies.len(),
                    s.services.len(),
                    s.clients.len(),
                    est.summary(Driver::Sim)
                ),
            )?;
            Done::Ok
        }
        Command::Serve {
            file,
            bind,
            tls_cert,
            tls_key,
            client_ca,
            no_faults,
            control_bind,
            control_token,
            trace_log,
        } => {
            drop(o);
            serve(
                &load(&file, data_dirs)?,
                bind,
                (tls_cert, tls_key, client_ca),
                !no_faults,
                (control_bind, control_token),
                trace_log,
            )?;
            Done::Ok
        }
        Command::Live { file, args } => {
            drop(o);
            live(&load(&file, data_dirs)?, args)?
        }
        Command::Fidelity {
            file,
            duration,
            strategy,
            out,
            allow_large,
            tolerance,
        } => {
            drop(o);
            Done::passed(fidelity(
                &load(&file, data_dirs)?,
                duration,
                strategy.as_deref(),
                out,
                allow_large,
                tolerance,
            )?)
        }
        Command::Merge { dirs, out } => {
            let table = merge(&dirs, &out)?;
            write!(o, "{table}")?;
            writeln_ok(&mut o, &format!("merged report: {}", out.display()))?;
            Done::Ok
        }
        Command::ImportIsotope {
            graph,
            out,
            name,
            rate,
            requests,
        } => {
            drop(o);
            import_isotope(&graph, out.as_deref(), name, rate, requests, data_dirs)?;
            Done::Ok
        }
        Command::Replay { file } => {
            let r = meshbench_live::replay_file(&file).map_err(|e| anyhow::anyhow!(e))?;
            match r.mismatch {
                None => {
                    writeln_ok(
                        &mut o,
                        &format!(
                            "{}: {} proxies, {} outputs: replay identical",
                            file.display(),
                            r.proxies,
                            r.outputs
                        ),
                    )?;
                    Done::Ok
                }
                Some((proxy, i, a, b)) => {
                    eprintln!(
                        "replay differs: proxy {proxy}, output {i}:\n  recorded: {a}\n  replayed: {b}"
                    );
                    Done::Failed
                }
            }
        }
        Command::Reproduce {
            only,
            doc,
            root,
            quiet,
        } => {
            drop(o);
            Done::passed(reproduce::reproduce(&root, &only, doc.as_deref(), quiet)?)
        }
        Command::Report { dir } => {
            let plots = meshbench_report::render_dir(&dir)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            writeln_ok(
                &mut o,
                &format!(
                    "{}: {} plots and index.html rebuilt",
                    dir.display(),
                    plots.len()
                ),
            )?;
            Done::Ok
        }
        Command::Check {
            dir,
            thresholds,
            baseline,
            tolerance,
            junit,
            markdown,
            update_baseline,
        } => {
            drop(o);
            Done::passed(check_command(
                &dir,
                &thresholds,
                baseline.as_deref(),
                &tolerance,
                junit.as_deref(),
                markdown.as_deref(),
                update_baseline,
            )?)
        }
        Command::Compare {
            a,
            b,
            out,
            tolerance,
        } => {
            let out = out.unwrap_or_else(|| b.join("compare"));
            let table = meshbench_report::compare(&a, &b, &out).map_err(|e| anyhow::anyhow!(e))?;
            write!(o, "{table}")?;
            writeln_ok(&mut o, &format!("written to {}", out.display()))?;
            drop(o);
            if tolerance.is_empty() {
                Done::Ok
            } else {
                Done::passed(check_command(
                    &b,
                    &[],
                    Some(&a),
                    &tolerance,
                    None,
                    None,
                    false,
                )?)
            }
        }
        Command::Run {
            file,
            seed,
            out,
            threads,
            quiet,
            shard,
            allow_large,
        } => {
            drop(o);
            let loaded = load(&file, data_dirs)?;
            let shard = match shard {
                Some(s) => Some(s),
                None => shard_from_env().map_err(|e| anyhow::anyhow!(e))?,
            };
            run(
                &loaded,
                seed,
                out.as_deref(),
                threads,
                quiet,
                shard,
                allow_large,
            )?
        }
    })
}

/// Estimates a run's work and refuses it beyond the soft limits (unless `allow_large`).
fn budget(
    loaded: &meshbench_scenario::Loaded,
    driver: Driver,
    threads: usize,
    allow_large: bool,
) -> anyhow::Result<meshbench_scenario::budget::Estimate> {
    use meshbench_scenario::budget::{Limits, check_limits, estimate};
    let est = estimate(loaded, driver, threads);
    let limits = if allow_large {
        Limits::NONE
    } else {
        Limits::DEFAULT
    };
    check_limits(loaded, &est, driver, &limits).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(est)
}

/// Watches for Ctrl-C on a thread of its own: the first sets the returned flag (after saying,
/// in `what`, what happens next), a second quits at once with exit code 130, writing nothing.
fn stop_on_interrupt(what: &'static str) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: {what}; Ctrl-C again to quit at once");
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("interrupted twice: quitting without writing results");
                    std::process::exit(130);
                }
            }
        });
    });
    stop
}

fn writeln_ok(out: &mut impl std::io::Write, line: &str) -> std::io::Result<()> {
    writeln!(out, "{line}")
}

/// `meshbench import-isotope`: converts, validates the result as any scenario is, then writes.
fn import_isotope(
    graph: &Path,
    out: Option<&Path>,
    name: Option<String>,
    rate: meshbench_scenario::Rate,
    requests: u64,
    data_dirs: &[PathBuf],
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let source = std::fs::read_to_string(graph)
        .with_context(|| format!("cannot read {}", graph.display()))?;
    let name = name.unwrap_or_else(|| {
        graph
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "isotope".into())
    });
    meshbench_scenario::check_name(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    if requests == 0 {
        anyhow::bail!("--requests: give at least 1");
    }
    let file = graph.display().to_string();
    let imported = meshbench_scenario::isotope::import(
        &source,
        &file,
        &meshbench_scenario::isotope::ImportOptions {
            name,
            rate: rate.as_per_sec(),
            requests,
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = out
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let shown = out.map_or_else(
        || "the imported scenario".to_owned(),
        |p| p.display().to_string(),
    );
    meshbench_scenario::parse_with(&imported.yaml, &shown, dir, data_dirs).map_err(|e| {
        anyhow::anyhow!("the imported scenario does not validate (a bug in the importer): {e}")
    })?;
    for n in &imported.notes {
        eprintln!("note: {n}");
    }
    match out {
        Some(p) => {
            std::fs::write(p, &imported.yaml)
                .with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        None => std::io::Write::write_all(&mut std::io::stdout().lock(), imported.yaml.as_bytes())?,
    }
    Ok(())
}

/// A share such as `15%` or `0.15`, in 0..=1.
fn parse_tolerance(s: &str) -> Result<f64, String> {
    meshbench_scenario::thresholds::parse_share(s)
        .ok_or_else(|| format!("`{s}`: write a share such as 15% or 0.15"))
}

/// `I/N` with I < N.
fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: write the shard as I/N, e.g. 0/2"))?;
    let (i, n): (u32, u32) = (
        i.trim()
            .parse()
            .map_err(|_| format!("`{s}`: I is not a number"))?,
        n.trim()
            .parse()
            .map_err(|_| format!("`{s}`: N is not a number"))?,
    );
    if n == 0 || i >= n {
        return Err(format!("`{s}`: need 0 <= I < N"));
    }
    Ok((i, n))
}

/// The scenario's fault and membership timelines as reports show them (shaded windows on the
/// time plots): one window per fault, or per period of a flapping fault; one per membership
/// change, over its drain (a rolling restart: over every batch), at least a sample period wide.
fn fault_windows(sc: &meshbench_scenario::Scenario) -> Vec<meshbench_report::FaultWindow> {
    use meshbench_scenario::membership::ChangeKind;
    let end = sc.duration.map_or(u64::MAX, |d| d.as_nanos());
    let period = sc.sample_period.as_nanos();
    let changes = sc.membership.iter().flat_map(|m| &m.changes).map(|c| {
        let ns = |d: Option<mesh_core::Duration>| d.map_or(0, |d| d.as_nanos());
        let (kind, span) = match c.change {
            ChangeKind::Scale => (format!("scale to {}", c.to.unwrap_or(0)), ns(c.drain)),
            ChangeKind::Remove => ("remove".to_owned(), ns(c.drain)),
            ChangeKind::Weight => (format!("weight {}", c.weight.unwrap_or(0)), 0),
            ChangeKind::RollingRestart => {
                let (service, index) = match c.target.split_once('/') {
                    Some((s, _)) => (s, true),
                    None => (c.target.as_str(), false),
                };
                let n = if index {
                    1
                } else {
                    sc.services.get(service).map_or(1, |s| s.instances)
                };
                let batches = u64::from(n.div_ceil(c.batch.unwrap_or(1).max(1)));
                let each = ns(c.drain) + ns(c.down) + ns(c.pause);
                ("rolling restart".to_owned(), batches * each)
            }
        };
        let from = c.at.as_nanos();
        meshbench_report::FaultWindow {
            target: c.target.clone(),
            kind,
            from_s: from as f64 / 1e9,
            until_s: Some(from.saturating_add(span.max(period)) as f64 / 1e9),
        }
    });
    let faults = sc.faults.iter().flat_map(|f| {
        let target = match &f.from {
            Some(from) => format!("{from} - {}", f.target),
            None => f.target.clone(),
        };
        f.windows(end)
            .into_iter()
            .map(move |(from, until)| meshbench_report::FaultWindow {
                target: target.clone(),
                kind: f.kind.name().to_owned(),
                from_s: from as f64 / 1e9,
                until_s: (until != u64::MAX).then(|| until as f64 / 1e9),
            })
    });
    faults.chain(changes).collect()
}
