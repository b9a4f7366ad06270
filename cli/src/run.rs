//! `meshbench run`: the simulator over every (or one shard's) sweep point x strategy x
//! replication, then the report files and the scenario's thresholds.

use std::io::Write as _;

use super::*;

pub(crate) fn run(
    loaded: &meshbench_scenario::Loaded,
    seed: Option<u64>,
    out: Option<&Path>,
    threads: Option<usize>,
    quiet: bool,
    shard: Option<(u32, u32)>,
    allow_large: bool,
) -> anyhow::Result<Done> {
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
    let est = budget(loaded, Driver::Sim, pool.current_num_threads(), allow_large)?;
    if !quiet {
        eprintln!("{}: {}", sc.name, est.summary(Driver::Sim));
        for (name, _) in sc.clients.iter().filter(|(_, c)| c.request.is_some()) {
            eprintln!(
                "note: clients.{name}.request (method, path, headers, body) shapes live mode's requests; the model carries no request bytes, so the simulation does not depend on it"
            );
        }
    }
    let started = WallClock::now();
    let tick = || bar.inc(1);
    // Ctrl-C: no new run starts, the runs in progress finish, and what finished is written,
    // marked partial (a second Ctrl-C quits at once).
    let stop =
        crate::stop_on_interrupt("finishing the runs in progress, then writing what finished");
    let results: Vec<meshbench_report::RunResult> = pool
        .install(|| meshbench_sim::run_jobs_until(loaded, seed, &jobs, &tick, &stop))
        .into_iter()
        .flatten()
        .collect();
    bar.finish_and_clear();
    let partial = results.len() < jobs.len();
    for (why, what) in [
        (
            "cut_short_windows",
            "their time series stop at the window bound (requests were still in flight long after the last arrival)",
        ),
        (
            "cut_short_events",
            "they stopped at the event bound with requests still in flight",
        ),
    ] {
        let cut = results
            .iter()
            .filter(|r| r.events.contains_key(why))
            .count();
        if cut > 0 {
            eprintln!(
                "warning: {cut} of {} runs were cut short: {what}; their events list `{why}`",
                results.len()
            );
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let mut summaries = summarize(&results, &names);
    summaries.retain(|s| s.replications > 0);
    let sharded = shard;
    let info = RunInfo {
        partial,
        scenario: sc.name.clone(),
        description: sc.description.clone(),
        seed,
        meshbench_version: env!("CARGO_PKG_VERSION").to_owned(),
        replications: sc.replications,
        sweep_paths: loaded.sweep_paths.clone(),
        faults: fault_windows(sc),
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
        return Ok(if partial { Done::Interrupted } else { Done::Ok });
    }
    if partial {
        eprintln!(
            "interrupted: {} of {} runs finished; the report in {} is partial",
            results.len(),
            jobs.len(),
            dir.display()
        );
        return Ok(Done::Interrupted);
    }
    Ok(Done::passed(end_of_run_checks(&dir, sc, quiet)?))
}

/// A digest of a text, in hex (the seed fork of mesh-core: FNV-1a then SplitMix64): tells
/// shards of different scenario files apart.
fn digest(text: &str) -> String {
    format!("{:016x}", mesh_core::Seed::new(0).fork(text).value())
}

/// The shard from a batch system's environment: Kubernetes Indexed Jobs
/// (`JOB_COMPLETION_INDEX`, with `JOB_COMPLETIONS` set in the Job's spec) or Slurm job arrays
/// (`SLURM_ARRAY_TASK_ID` less `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`).
pub(crate) fn shard_from_env() -> Result<Option<(u32, u32)>, String> {
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
