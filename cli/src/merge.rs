//! `meshbench merge`: simulator shards into the unsharded directory, or live shards into one
//! run.

use super::*;

pub(crate) fn merge(dirs: &[PathBuf], out: &Path) -> anyhow::Result<String> {
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
pub(crate) fn merge_shards(
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
