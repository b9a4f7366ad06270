//! # The meshbench discrete-event simulator
//!
//! One event queue ordered by (time, sequence number), so events at equal times run in the
//! order they were scheduled; virtual time jumps from event to event. Each client proxy owns a
//! [`mesh_core::Cluster`]; each instance is a FIFO queueing station with a concurrency limit and
//! a queue limit (a full queue answers 503 at once). A run is single-threaded and a pure
//! function of the scenario, the strategy and the seed; [`run_all`] runs strategies x
//! replications in parallel with rayon and returns results in a fixed order, so nothing depends
//! on the thread count.
//!
//! **Common random numbers.** For one seed every strategy sees the same arrival times (each
//! proxy's arrivals come from its own labelled stream) and the same base draws for every attempt:
//! service time, error and network latency are inverse-transform samples of a uniform that is a
//! hash of (seed, request, attempt number, purpose), not the next value of a shared stream.
//! Strategies therefore differ only by what they decide.

mod engine;
pub mod published;
pub mod theory;

use meshbench_report::RunResult;
use meshbench_scenario::Loaded;

pub use engine::run_one;

/// Progress callback: called once per finished run.
pub type Progress<'a> = &'a (dyn Fn() + Sync);

/// Every run of a scenario as (sweep point, strategy index, replication), ordered by point, then
/// strategy (file order), then replication.
pub fn jobs(loaded: &Loaded) -> Vec<(usize, usize, u32)> {
    loaded
        .points
        .iter()
        .enumerate()
        .flat_map(|(p, point)| {
            (0..point.strategies.len())
                .flat_map(move |s| (0..point.scenario.replications).map(move |r| (p, s, r)))
        })
        .collect()
}

/// The shard (of `count`) that runs (`point`, `strategy`, `replication`): a hash of the run's
/// key (`Seed::new(point).fork(strategy).fork_index(replication)`, SplitMix64 and FNV-1a as
/// `mesh_core::seed` documents them) modulo `count`, so a run's shard depends only on its key
/// and the shard count, never on the order runs are listed in.
pub fn shard_of(point: usize, strategy: &str, replication: u32, count: u32) -> u32 {
    let h = mesh_core::Seed::new(point as u64)
        .fork(strategy)
        .fork_index(u64::from(replication))
        .value();
    (h % u64::from(count.max(1))) as u32
}

/// Runs every sweep point x strategy x replication, in parallel on the current rayon pool;
/// results come back ordered by point, then strategy (file order), then replication.
pub fn run_all(loaded: &Loaded, seed: u64, progress: Progress<'_>) -> Vec<RunResult> {
    run_jobs(loaded, seed, &jobs(loaded), progress)
}

/// Runs the given (point, strategy, replication) jobs in parallel; results in the jobs' order.
pub fn run_jobs(
    loaded: &Loaded,
    seed: u64,
    jobs: &[(usize, usize, u32)],
    progress: Progress<'_>,
) -> Vec<RunResult> {
    let never = std::sync::atomic::AtomicBool::new(false);
    run_jobs_until(loaded, seed, jobs, progress, &never)
        .into_iter()
        .flatten()
        .collect()
}

/// [`run_jobs`], but no run starts once `stop` is set (runs in progress finish): each job's
/// result, `None` for those that never started, in the jobs' order.
pub fn run_jobs_until(
    loaded: &Loaded,
    seed: u64,
    jobs: &[(usize, usize, u32)],
    progress: Progress<'_>,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<Option<RunResult>> {
    use rayon::prelude::*;
    use std::sync::atomic::Ordering;
    // One run per task (runs differ in length by orders of magnitude across a sweep), so idle
    // threads always find work; `collect` keeps the order fixed.
    jobs.par_iter()
        .with_max_len(1)
        .map(|&(p, s, r)| {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let result = run_one(loaded, p, s, r, seed);
            progress();
            Some(result)
        })
        .collect()
}
