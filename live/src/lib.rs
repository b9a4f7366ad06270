//! # meshbench live mode
//!
//! * [`server::Backends`]: a scenario's services as real HTTP servers on loopback, emulating
//!   service times, concurrency, queue limits and error rates (`meshbench serve`).
//! * [`driver::run`]: the load generator: an exact open-loop schedule, one mesh-core `Cluster`
//!   per client proxy choosing every attempt's endpoint, real HTTP/1.1 requests with keep-alive,
//!   latency from the intended send time, and the simulator's result model (`meshbench live`).
//! * Recordings: every Cluster's inputs and outputs, written as JSON Lines and replayed through
//!   fresh Clusters by [`replay_file`] (`meshbench replay`).

pub mod critical;
pub mod discovery;
pub mod driver;
mod h1;
pub mod metrics;
pub mod server;
pub mod target;
pub mod timer;
pub mod tls;

use std::io::{BufRead as _, Write as _};
use std::path::Path;

pub use driver::{LiveOptions, LiveRun, LiveStats, Recording, RequestSpec, serve_sidecars};
pub use server::Backends;
pub use target::TargetUrl;

/// Writes recordings as JSON Lines, one proxy per line.
pub fn write_recordings(path: &Path, recordings: &[Recording]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in recordings {
        serde_json::to_writer(&mut f, r)?;
        writeln!(f)?;
    }
    f.flush()
}

/// The outcome of replaying a recording file.
#[derive(Debug)]
pub struct ReplayReport {
    /// Proxies replayed.
    pub proxies: usize,
    /// Outputs compared.
    pub outputs: usize,
    /// The first difference, if any: (proxy, index, recorded, replayed).
    pub mismatch: Option<(usize, usize, String, String)>,
}

/// Replays every recorded proxy through a fresh `Cluster` and compares the outputs.
pub fn replay_file(path: &Path) -> Result<ReplayReport, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut report = ReplayReport {
        proxies: 0,
        outputs: 0,
        mismatch: None,
    };
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let rec: Recording = serde_json::from_str(&line)
            .map_err(|e| format!("{}:{}: not a recording: {e}", path.display(), n + 1))?;
        let replayed = mesh_core::trace::replay(&rec.trace)
            .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        report.proxies += 1;
        report.outputs += rec.outputs.len();
        if report.mismatch.is_none() {
            let len = rec.outputs.len().max(replayed.len());
            for i in 0..len {
                let a = rec.outputs.get(i);
                let b = replayed.get(i);
                if a != b {
                    report.mismatch = Some((rec.proxy, i, format!("{a:?}"), format!("{b:?}")));
                    break;
                }
            }
        }
    }
    if report.proxies == 0 {
        return Err(format!(
            "{}: no recording in it (an empty file replays nothing, so it proves nothing): record one with `meshbench live FILE --record {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(report)
}
