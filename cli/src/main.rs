//! `meshbench`: run scenario files and compare service-mesh policies.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant as WallClock;

use anyhow::Context as _;

mod check;
use clap::{Parser, Subcommand};
use meshbench_report::{RunInfo, comparison_table, summarize, write_reports};

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
}

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
    },
    /// Check a scenario without running it (exit code 2 when it is invalid).
    Validate {
        /// The scenario file (YAML).
        file: PathBuf,
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
    /// Rebuild the plots and index.html of a result directory, without rerunning.
    Report {
        /// A directory written by `meshbench run`.
        dir: PathBuf,
    },
    /// Print and plot the difference between two result directories (B relative to A).
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { file } => match meshbench_scenario::load(&file) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("warning: {w}");
                }
                let s = &loaded.scenario;
                let mut out = std::io::stdout().lock();
                let _ = writeln_ok(
                    &mut out,
                    &format!(
                        "{}: ok ({} strategies, {} services, {} clients)",
                        file.display(),
                        loaded.strategies.len(),
                        s.services.len(),
                        s.clients.len()
                    ),
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Serve {
            file,
            bind,
            tls_cert,
            tls_key,
            client_ca,
            no_faults,
        } => match meshbench_scenario::load(&file) {
            Ok(loaded) => match serve(&loaded, bind, tls_cert, tls_key, client_ca, !no_faults) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Live { file, args } => {
            let loaded = match meshbench_scenario::load(&file) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match live(&loaded, args) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Fidelity {
            file,
            duration,
            strategy,
            out,
        } => {
            let loaded = match meshbench_scenario::load(&file) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match fidelity(&loaded, duration, strategy.as_deref(), out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Merge { dirs, out } => match merge(&dirs, &out) {
            Ok(table) => {
                let mut o = std::io::stdout().lock();
                let _ = write!(o, "{table}");
                let _ = writeln_ok(&mut o, &format!("merged report: {}", out.display()));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Replay { file } => match meshbench_live::replay_file(&file) {
            Ok(r) => {
                let mut o = std::io::stdout().lock();
                match r.mismatch {
                    None => {
                        let _ = writeln_ok(
                            &mut o,
                            &format!(
                                "{}: {} proxies, {} outputs: replay identical",
                                file.display(),
                                r.proxies,
                                r.outputs
                            ),
                        );
                        ExitCode::SUCCESS
                    }
                    Some((proxy, i, a, b)) => {
                        eprintln!(
                            "error: proxy {proxy}, output {i} differs:\n  recorded: {a}\n  replayed: {b}"
                        );
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Report { dir } => match meshbench_report::render_dir(&dir) {
            Ok(plots) => {
                let mut o = std::io::stdout().lock();
                let _ = writeln_ok(
                    &mut o,
                    &format!(
                        "{}: {} plots and index.html rebuilt",
                        dir.display(),
                        plots.len()
                    ),
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}: {e}", dir.display());
                ExitCode::from(2)
            }
        },
        Command::Check {
            dir,
            thresholds,
            baseline,
            tolerance,
            junit,
            markdown,
            update_baseline,
        } => match check_command(
            &dir,
            &thresholds,
            baseline.as_deref(),
            &tolerance,
            junit.as_deref(),
            markdown.as_deref(),
            update_baseline,
        ) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Compare {
            a,
            b,
            out,
            tolerance,
        } => {
            let out = out.unwrap_or_else(|| b.join("compare"));
            match meshbench_report::compare(&a, &b, &out) {
                Ok(table) => {
                    let mut o = std::io::stdout().lock();
                    let _ = write!(o, "{table}");
                    let _ = writeln_ok(&mut o, &format!("written to {}", out.display()));
                    if tolerance.is_empty() {
                        return ExitCode::SUCCESS;
                    }
                    drop(o);
                    match check_command(&b, &[], Some(&a), &tolerance, None, None, false) {
                        Ok(true) => ExitCode::SUCCESS,
                        Ok(false) => ExitCode::FAILURE,
                        Err(e) => {
                            eprintln!("error: {e:#}");
                            ExitCode::from(2)
                        }
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run {
            file,
            seed,
            out,
            threads,
            quiet,
            shard,
        } => {
            let loaded = match meshbench_scenario::load(&file) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let shard = match shard.map_or_else(shard_from_env, |s| Ok(Some(s))) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match run(&loaded, seed, out.as_deref(), threads, quiet, shard) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn writeln_ok(out: &mut impl std::io::Write, line: &str) -> std::io::Result<()> {
    writeln!(out, "{line}")
}

fn run(
    loaded: &meshbench_scenario::Loaded,
    seed: Option<u64>,
    out: Option<&Path>,
    threads: Option<usize>,
    quiet: bool,
    shard: Option<(u32, u32)>,
) -> anyhow::Result<bool> {
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let sc = &loaded.scenario;
    let seed = seed.unwrap_or(sc.seed);
    let dir = out.map_or_else(
        || PathBuf::from("reports").join(&sc.name),
        Path::to_path_buf,
    );
    let all_jobs = meshbench_sim::jobs(loaded);
    let names: Vec<String> = loaded.strategies.iter().map(|(n, _)| n.clone()).collect();
    let jobs: Vec<(usize, usize, u32)> = match shard {
        Some((i, n)) => all_jobs
            .iter()
            .copied()
            .filter(|&(p, s, r)| meshbench_sim::shard_of(p, &names[s], r, n) == i)
            .collect(),
        _ => all_jobs.clone(),
    };
    let runs = jobs.len();
    let bar = if quiet || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(runs as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} runs, ETA {eta}",
            )
            .expect("valid template"),
        );
        b
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()
        .context("starting the worker threads")?;
    let started = WallClock::now();
    let tick = || bar.inc(1);
    let results = pool.install(|| meshbench_sim::run_jobs(loaded, seed, &jobs, &tick));
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    let mut summaries = summarize(&results, &names);
    summaries.retain(|s| s.replications > 0);
    let sharded = shard;
    let info = RunInfo {
        scenario: sc.name.clone(),
        seed,
        meshbench_version: env!("CARGO_PKG_VERSION").to_owned(),
        replications: sc.replications,
        sweep_paths: loaded.sweep_paths.clone(),
        faults: fault_windows(&sc.faults),
        shard: sharded.map(|(index, count)| meshbench_report::ShardInfo {
            index,
            count,
            runs_total: all_jobs.len(),
            strategies: names.clone(),
            scenario_digest: digest(&loaded.source),
        }),
    };
    write_reports(&dir, &info, &loaded.source, &summaries, &results)
        .with_context(|| format!("writing the report to {}", dir.display()))?;
    if sharded.is_some() {
        // A shard keeps its runs whole (counters, time series, lossless histograms) for merge.
        meshbench_report::write_runs(&dir, &results)
            .with_context(|| format!("writing {}", dir.display()))?;
    }
    meshbench_report::render_dir(&dir)
        .map_err(|e| anyhow::anyhow!("drawing the plots in {}: {e}", dir.display()))?;
    if !quiet {
        let requests: u64 = results.iter().map(|r| r.requests).sum();
        let events: u64 = results.iter().map(|r| r.sim_events).sum();
        let mut o = std::io::stdout().lock();
        writeln_ok(
            &mut o,
            &format!(
                "{} — {} strategies x {} replications, seed {seed}\n",
                sc.name,
                names.len(),
                sc.replications
            ),
        )?;
        write!(o, "{}", comparison_table(&summaries)).map_err(anyhow::Error::from)?;
        writeln_ok(
            &mut o,
            &format!(
                "\n{requests} measured requests, {events} events in {wall:.2} s wall ({:.2} M events/s); report: {}",
                events as f64 / wall / 1e6,
                dir.display()
            ),
        )?;
    }
    if let Some((i, n)) = sharded {
        if !quiet {
            eprintln!(
                "shard {i}/{n}: {} of {} runs; merge the {n} shard directories with `meshbench merge`, then check the merged one",
                results.len(),
                all_jobs.len()
            );
        }
        return Ok(true);
    }
    end_of_run_checks(&dir, sc, quiet)
}

/// 64-bit FNV-1a of a text, in hex: tells shards of different scenario files apart.
fn digest(text: &str) -> String {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    format!("{h:016x}")
}

/// The shard from a batch system's environment: Kubernetes Indexed Jobs
/// (`JOB_COMPLETION_INDEX`, with `JOB_COMPLETIONS` set in the Job's spec) or Slurm job arrays
/// (`SLURM_ARRAY_TASK_ID` less `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`).
fn shard_from_env() -> Result<Option<(u32, u32)>, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let num = |k: &str, v: String| -> Result<u32, String> {
        v.trim()
            .parse()
            .map_err(|_| format!("{k}={v}: not a non-negative integer"))
    };
    let pair = |(ik, i): (&str, u32), (nk, n): (&str, u32)| {
        if n == 0 || i >= n {
            Err(format!("{ik}={i} with {nk}={n}: need 0 <= index < count"))
        } else {
            Ok(Some((i, n)))
        }
    };
    match (var("JOB_COMPLETION_INDEX"), var("JOB_COMPLETIONS")) {
        (Some(i), Some(n)) => {
            return pair(
                ("JOB_COMPLETION_INDEX", num("JOB_COMPLETION_INDEX", i)?),
                ("JOB_COMPLETIONS", num("JOB_COMPLETIONS", n)?),
            );
        }
        (Some(_), None) => {
            return Err(
                "JOB_COMPLETION_INDEX is set but JOB_COMPLETIONS is not: set it in the Job's env to the Job's completions (or pass --shard I/N)".into(),
            );
        }
        _ => {}
    }
    if let (Some(id), Some(n)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT")) {
        let min = var("SLURM_ARRAY_TASK_MIN")
            .map(|m| num("SLURM_ARRAY_TASK_MIN", m))
            .transpose()?
            .unwrap_or(0);
        let id = num("SLURM_ARRAY_TASK_ID", id)?;
        return pair(
            ("SLURM_ARRAY_TASK_ID", id.saturating_sub(min)),
            ("SLURM_ARRAY_TASK_COUNT", num("SLURM_ARRAY_TASK_COUNT", n)?),
        );
    }
    Ok(None)
}

/// The scenario's thresholds (and the default check that some request succeeded) on a run
/// just written: prints what failed and returns whether everything passed.
fn end_of_run_checks(
    dir: &Path,
    sc: &meshbench_scenario::Scenario,
    quiet: bool,
) -> anyhow::Result<bool> {
    let summary = meshbench_report::Summary::read(dir).map_err(|e| anyhow::anyhow!(e))?;
    let rows = check::thresholds(&summary, &sc.thresholds, &[]).map_err(|e| anyhow::anyhow!(e))?;
    let failed: Vec<&check::Row> = rows.iter().filter(|r| !r.passed).collect();
    if !failed.is_empty() {
        eprintln!(
            "FAILED: {} of {} checks (exit code 1):",
            failed.len(),
            rows.len()
        );
        for r in &failed {
            eprintln!(
                "  {}: {}: {} (limit or baseline: {})",
                r.strategy, r.check, r.value, r.against
            );
        }
    } else if !quiet && !rows.is_empty() {
        eprintln!("thresholds: all {} passed", rows.len());
    }
    Ok(failed.is_empty())
}

/// `meshbench check`: returns whether every check passed.
fn check_command(
    dir: &Path,
    extra: &[String],
    baseline: Option<&Path>,
    tolerance: &[String],
    junit: Option<&Path>,
    markdown: Option<&Path>,
    update_baseline: bool,
) -> anyhow::Result<bool> {
    let summary = meshbench_report::Summary::read(dir).map_err(|e| anyhow::anyhow!(e))?;
    if update_baseline {
        let path = check::baseline_file(baseline.expect("clap requires --baseline"));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        summary
            .write_to(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        writeln_ok(
            &mut std::io::stdout().lock(),
            &format!("baseline written to {}", path.display()),
        )?;
        return Ok(true);
    }
    let extra: Vec<meshbench_scenario::thresholds::Threshold> = extra
        .iter()
        .map(|t| meshbench_scenario::thresholds::Threshold::parse(t))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--threshold {e}"))?;
    let scenario = check::scenario_thresholds(dir).map_err(|e| anyhow::anyhow!(e))?;
    let mut rows =
        check::thresholds(&summary, &scenario, &extra).map_err(|e| anyhow::anyhow!(e))?;
    if let Some(b) = baseline {
        let base = check::read_baseline(b).map_err(|e| anyhow::anyhow!(e))?;
        let (default, per) = check::tolerances(tolerance).map_err(|e| anyhow::anyhow!(e))?;
        rows.extend(check::baseline(&summary, &base, default, &per));
    } else if !tolerance.is_empty() {
        anyhow::bail!("--tolerance needs --baseline");
    }
    if rows.is_empty() {
        anyhow::bail!(
            "nothing to check in {}: give --threshold or --baseline, or `thresholds:` in the scenario",
            dir.display()
        );
    }
    let title = summary.info.scenario.clone();
    let table = check::markdown(&title, &rows);
    write!(std::io::stdout().lock(), "{table}")?;
    if let Some(path) = markdown {
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(table.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = junit {
        std::fs::write(path, check::junit(&title, &rows))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(rows.iter().all(|r| r.passed))
}

use std::io::Write as _;

/// Runs every sweep point x chosen strategy x replication live, one after another (the
/// simulator's order), each against fresh in-process backends (or `targets`); stops early when
/// `stop` is set.
#[allow(clippy::too_many_arguments)]
fn run_live_strategies(
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
    let sweep = !loaded.sweep_paths.is_empty();
    'all: for (point, pt) in loaded.points.iter().enumerate() {
        let sc = &pt.scenario;
        for &s in chosen {
            for replication in 0..replications {
                if stop.load(Ordering::SeqCst) {
                    break 'all;
                }
                let run = rt.block_on(async {
                    // Fresh backends per run: empty queues, the replication's draws.
                    let backends = if targets.is_empty() {
                        Some(std::sync::Arc::new(
                            meshbench_live::Backends::start_with(
                                sc,
                                std::net::IpAddr::from([127, 0, 0, 1]),
                                seed_of(seed, replication),
                                wire.tls.as_ref().and_then(|t| t.server.clone()),
                            )
                            .await?,
                        ))
                    } else {
                        None
                    };
                    let mut endpoints = std::collections::BTreeMap::new();
                    for c in sc.clients.values() {
                        let addrs = match &backends {
                            Some(b) => b.of(&c.target).iter().map(|i| i.addr).collect(),
                            None => targets.to_vec(),
                        };
                        endpoints.insert(c.target.clone(), addrs);
                    }
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
                        tls: wire.tls.as_ref().map(|t| t.client.clone()),
                        shard: wire.shard,
                        backends: backends.clone(),
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
                stats.push((label, run.stats));
                results.push(run.result);
                recordings.extend(run.recordings);
            }
        }
    }
    Ok((results, stats, recordings))
}

/// A sweep point as `path=value, ...`.
fn point_label(loaded: &meshbench_scenario::Loaded, point: usize) -> String {
    loaded
        .sweep_paths
        .iter()
        .zip(&loaded.points[point].coords)
        .map(|(p, c)| format!("{p}={c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

type LiveResults = (
    Vec<meshbench_report::RunResult>,
    Vec<(String, meshbench_live::LiveStats)>,
    Vec<meshbench_live::Recording>,
);

/// The strategy indices to run: one by name (with a suggestion for a typo), or all.
fn choose_strategies(
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

fn fidelity(
    loaded: &meshbench_scenario::Loaded,
    duration: Option<mesh_core::Duration>,
    strategy: Option<&str>,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
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
    let mut sim_loaded = loaded.clone();
    sim_loaded.strategies = chosen
        .iter()
        .map(|&i| loaded.strategies[i].clone())
        .collect();
    for sc2 in std::iter::once(&mut sim_loaded.scenario)
        .chain(sim_loaded.points.iter_mut().map(|p| &mut p.scenario))
    {
        sc2.duration = Some(d);
        sc2.requests = None;
        sc2.warmup = warmup;
        sc2.replications = 1;
    }
    let strategies = sim_loaded.strategies.clone();
    for p in &mut sim_loaded.points {
        p.strategies = strategies.clone();
    }
    let sim = meshbench_sim::run_all(&sim_loaded, seed, &|| {});
    let rt = runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (live, stats, _) = run_live_strategies(
        loaded,
        &chosen,
        1,
        &[],
        seed,
        Some(d),
        false,
        true,
        &Wire::default(),
        &rt,
        &stop,
    )?;
    let dir = out.unwrap_or_else(|| PathBuf::from("reports").join(format!("{}-fidelity", sc.name)));
    std::fs::create_dir_all(&dir)?;
    let mut csv = String::from("strategy,metric,sim,live,relative_difference\n");
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
    Ok(())
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

fn merge(dirs: &[PathBuf], out: &Path) -> anyhow::Result<String> {
    let sets: Vec<meshbench_report::ResultDir> = dirs
        .iter()
        .map(|d| meshbench_report::read_result_dir(d).map_err(|e| anyhow::anyhow!(e)))
        .collect::<anyhow::Result<_>>()?;
    let first = &sets[0];
    for (d, s) in dirs.iter().zip(&sets).skip(1) {
        anyhow::ensure!(
            s.info.scenario == first.info.scenario && s.info.seed == first.info.seed,
            "{} is a run of `{}` seed {}, not of `{}` seed {}",
            d.display(),
            s.info.scenario,
            s.info.seed,
            first.info.scenario,
            first.info.seed
        );
    }
    if first.info.shard.is_some() || sets.iter().any(|s| s.info.shard.is_some()) {
        return merge_shards(dirs, &sets, out);
    }
    let runs =
        meshbench_report::merge_runs(&sets.iter().map(|s| s.runs.clone()).collect::<Vec<_>>());
    let mut names: Vec<String> = Vec::new();
    for r in &runs {
        if !names.contains(&r.strategy) {
            names.push(r.strategy.clone());
        }
    }
    let summaries = summarize(&runs, &names);
    write_reports(out, &first.info, &first.scenario, &summaries, &runs)
        .with_context(|| format!("writing {}", out.display()))?;
    meshbench_report::write_runs(out, &runs)
        .with_context(|| format!("writing {}", out.display()))?;
    meshbench_report::render_dir(out).map_err(|e| anyhow::anyhow!("drawing the plots: {e}"))?;
    Ok(comparison_table(&summaries))
}

/// Merges the shards of a simulated run set (`run --shard`): every shard of one scenario, seed
/// and shard count exactly once, every run exactly once; the result is the unsharded run's
/// directory, byte for byte.
fn merge_shards(
    dirs: &[PathBuf],
    sets: &[meshbench_report::ResultDir],
    out: &Path,
) -> anyhow::Result<String> {
    let mut infos = Vec::new();
    for (d, s) in dirs.iter().zip(sets) {
        let Some(sh) = &s.info.shard else {
            anyhow::bail!(
                "{} is not a shard of a simulated run (it has no shard record): merge simulator shards (`run --shard I/N`) with each other only",
                d.display()
            );
        };
        infos.push((d, sh));
    }
    let (_, first) = infos[0];
    for (d, sh) in &infos {
        anyhow::ensure!(
            sh.count == first.count
                && sh.scenario_digest == first.scenario_digest
                && sh.runs_total == first.runs_total
                && sh.strategies == first.strategies,
            "{} is shard {}/{} of scenario text {}, which does not fit with {}/{} of scenario text {} ({}): merge shards of one scenario file, seed and shard count",
            d.display(),
            sh.index,
            sh.count,
            sh.scenario_digest,
            first.index,
            first.count,
            first.scenario_digest,
            dirs[0].display()
        );
    }
    let mut seen = vec![None; first.count as usize];
    for (d, sh) in &infos {
        if let Some(prev) = seen[sh.index as usize].replace(*d) {
            anyhow::bail!(
                "shard {}/{} given twice: {} and {}",
                sh.index,
                sh.count,
                prev.display(),
                d.display()
            );
        }
    }
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_none())
        .map(|(i, _)| format!("{i}/{}", first.count))
        .collect();
    anyhow::ensure!(missing.is_empty(), "missing shards: {}", missing.join(", "));
    let order = |r: &meshbench_report::RunResult| {
        (
            r.point,
            first
                .strategies
                .iter()
                .position(|n| *n == r.strategy)
                .unwrap_or(usize::MAX),
            r.replication,
        )
    };
    let mut runs: Vec<meshbench_report::RunResult> =
        sets.iter().flat_map(|s| s.runs.iter().cloned()).collect();
    runs.sort_by_key(|r| order(r));
    let before = runs.len();
    runs.dedup_by_key(|r| order(r));
    anyhow::ensure!(
        before == runs.len() && runs.len() == first.runs_total,
        "the shards hold {before} runs ({} distinct) of the set's {}: a shard directory was run with another build or edited",
        runs.len(),
        first.runs_total
    );
    let summaries = summarize(&runs, &first.strategies);
    let mut info = sets[0].info.clone();
    info.shard = None;
    write_reports(out, &info, &sets[0].scenario, &summaries, &runs)
        .with_context(|| format!("writing {}", out.display()))?;
    meshbench_report::render_dir(out).map_err(|e| anyhow::anyhow!("drawing the plots: {e}"))?;
    Ok(comparison_table(&summaries))
}

/// How live mode talks to endpoints.
#[derive(Default)]
struct Wire {
    shard: (u32, u32),
    http2: bool,
    connections: Option<u32>,
    tls: Option<LiveTls>,
}

/// TLS for a live run: the client side, and the in-process backends' side when they are ours.
struct LiveTls {
    client: meshbench_live::tls::TlsClient,
    server: Option<std::sync::Arc<rustls::ServerConfig>>,
}

fn read_pem(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{what} {}", path.display()))
}

/// TLS settings from the flags: with in-process backends, `--tls` makes a throwaway PKI for
/// both sides; with `--target`, `--ca` (and for mTLS `--client-cert`/`--client-key`) configure
/// the client.
fn live_tls(args: &LiveArgs, external: bool) -> anyhow::Result<Option<LiveTls>> {
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
    let mtls = args.mtls;
    let server = tls::server_config(
        &pki.server_cert_pem,
        &pki.server_key_pem,
        mtls.then_some(pki.ca_pem.as_str()),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let client = tls::client_config(
        &pki.ca_pem,
        mtls.then_some((pki.client_cert_pem.as_str(), pki.client_key_pem.as_str())),
        args.http2,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    Ok(Some(LiveTls {
        client: tls::TlsClient {
            config: client,
            server_name: server_name("localhost")?,
        },
        server: Some(server),
    }))
}

/// `meshbench live` options.
#[derive(clap::Args, Debug)]
struct LiveArgs {
    /// Endpoints of the target service (`http://127.0.0.1:8080`), in instance order; repeat.
    #[arg(long = "target")]
    targets: Vec<String>,
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
    /// Closed loop with this many virtual users (each sends its next request when the last
    /// finishes) instead of the scenario's open-loop arrivals.
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
    /// With --target: the name to check the targets' certificates against (default localhost).
    #[arg(long)]
    server_name: Option<String>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn serve(
    loaded: &meshbench_scenario::Loaded,
    bind: std::net::IpAddr,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    faults: bool,
) -> anyhow::Result<()> {
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
        let (control, _task) =
            meshbench_live::server::start_control(backends.clone(), bind).await?;
        let mut o = std::io::stdout().lock();
        for i in &backends.instances {
            writeln!(o, "{}/{}  {scheme}://{}", i.service, i.index, i.addr)?;
        }
        writeln!(
            o,
            "control: http://{control}/instances, POST /kill|/restart|/slowdown|/errors|/fast_fail?service=S&instance=I[&factor=F|&rate=P]"
        )?;
        let timeline = &loaded.scenario.faults;
        let _faults = (faults && !timeline.is_empty()).then(|| {
            backends.run_faults(loaded.scenario.fault_changes(), std::time::Instant::now())
        });
        if !timeline.is_empty() {
            if faults {
                writeln!(o, "fault timeline: {} faults, time zero is now:", timeline.len())?;
                for f in fault_windows(timeline) {
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
        drop(o);
        tokio::signal::ctrl_c().await?;
        backends.shutdown();
        Ok(())
    })
}

/// The seed the backends draw from: the simulator's run seed of `replication`, so live service
/// times match the simulator's draws.
fn seed_of(seed: u64, replication: u32) -> u64 {
    mesh_core::Seed::new(seed)
        .fork_index(u64::from(replication))
        .value()
}

/// A live run: 0 when it completed and every check passed, 1 when a check failed (a run in
/// which every request failed fails its default check), 130 when interrupted (what was measured
/// is written and marked partial).
fn live(loaded: &meshbench_scenario::Loaded, args: LiveArgs) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
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
    let targets: Vec<std::net::SocketAddr> = args
        .targets
        .iter()
        .map(|t| {
            let hostport = t.trim_start_matches("http://").trim_end_matches('/');
            std::net::ToSocketAddrs::to_socket_addrs(hostport)
                .ok()
                .and_then(|mut a| a.next())
                .with_context(|| format!("--target {t}: expected http://HOST:PORT"))
        })
        .collect::<anyhow::Result<_>>()?;
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(format!("{}-live", sc.name)));
    if !targets.is_empty() && !sc.faults.is_empty() && !args.quiet {
        eprintln!(
            "note: the scenario's fault timeline is not applied to --target endpoints (`meshbench serve` plays it on its own backends)"
        );
    }
    let rt = runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        rt.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "interrupted: finishing in-flight requests, then writing what was measured"
                );
                stop.store(true, Ordering::SeqCst);
            }
        });
    }
    let wire = Wire {
        shard: args.shard,
        http2: args.http2,
        connections: args.connections,
        tls: live_tls(&args, !targets.is_empty())?,
    };
    if !targets.is_empty() {
        // Endpoint metadata (weights, zones, priorities) is per instance in the file: the
        // targets must be the instances, in order.
        for c in sc.clients.values() {
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
    let (results, stats, recordings) = run_live_strategies(
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
        scenario: format!("{} (live)", sc.name),
        seed,
        meshbench_version: env!("CARGO_PKG_VERSION").to_owned(),
        replications,
        sweep_paths: loaded.sweep_paths.clone(),
        faults: fault_windows(&sc.faults),
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
    let passed = end_of_run_checks(&dir, sc, args.quiet)?;
    Ok(if partial {
        eprintln!("interrupted: the report in {} is partial", dir.display());
        ExitCode::from(130)
    } else if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The scenario's fault timeline as reports show it (shaded windows on the time plots).
fn fault_windows(faults: &[meshbench_scenario::Fault]) -> Vec<meshbench_report::FaultWindow> {
    faults
        .iter()
        .map(|f| meshbench_report::FaultWindow {
            target: f.target.clone(),
            kind: f.kind.name().to_owned(),
            from_s: f.at.as_nanos() as f64 / 1e9,
            until_s: f.until.map(|u| u.as_nanos() as f64 / 1e9),
        })
        .collect()
}
