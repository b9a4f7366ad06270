//! `meshbench`: run scenario files and compare service-mesh policies.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant as WallClock;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use meshbench_report::{RunInfo, comparison_table, summarize, write_reports};

/// Study service-mesh data-plane policies in a deterministic simulator.
#[derive(Parser, Debug)]
#[command(name = "meshbench", version, about, long_about = None)]
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
    },
    /// Check a scenario without running it (exit code 2 when it is invalid).
    Validate {
        /// The scenario file (YAML).
        file: PathBuf,
    },
    /// Rebuild the plots and index.html of a result directory, without rerunning.
    Report {
        /// A directory written by `meshbench run`.
        dir: PathBuf,
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
        Command::Compare { a, b, out } => {
            let out = out.unwrap_or_else(|| b.join("compare"));
            match meshbench_report::compare(&a, &b, &out) {
                Ok(table) => {
                    let mut o = std::io::stdout().lock();
                    let _ = write!(o, "{table}");
                    let _ = writeln_ok(&mut o, &format!("written to {}", out.display()));
                    ExitCode::SUCCESS
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
        } => {
            let loaded = match meshbench_scenario::load(&file) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match run(&loaded, seed, out.as_deref(), threads, quiet) {
                Ok(()) => ExitCode::SUCCESS,
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
) -> anyhow::Result<()> {
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let sc = &loaded.scenario;
    let seed = seed.unwrap_or(sc.seed);
    let dir = out.map_or_else(
        || PathBuf::from("reports").join(&sc.name),
        Path::to_path_buf,
    );
    let runs = loaded.points.len() * loaded.strategies.len() * sc.replications as usize;
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
    let results = pool.install(|| meshbench_sim::run_all(loaded, seed, &tick));
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    let names: Vec<String> = loaded.strategies.iter().map(|(n, _)| n.clone()).collect();
    let summaries = summarize(&results, &names);
    let info = RunInfo {
        scenario: sc.name.clone(),
        seed,
        meshbench_version: env!("CARGO_PKG_VERSION").to_owned(),
        replications: sc.replications,
        sweep_paths: loaded.sweep_paths.clone(),
    };
    write_reports(&dir, &info, &loaded.source, &summaries, &results)
        .with_context(|| format!("writing the report to {}", dir.display()))?;
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
    Ok(())
}

use std::io::Write as _;
