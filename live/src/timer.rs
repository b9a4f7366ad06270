//! A sub-millisecond timer for live mode.
//!
//! tokio's timer wheel ticks every millisecond, so a 300 us sleep lasts about 1 ms and paced
//! sends bunch on tick boundaries (the "bursty pacing from a 1 ms timer" fault of some load
//! generators). This timer runs one OS thread that waits with the kernel's high-resolution
//! timed wait (tens of microseconds of slack) for the earliest deadline, then wakes the task.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::oneshot;

/// Handle to the timer thread; cheap to clone.
#[derive(Clone, Debug)]
pub struct PreciseTimer {
    tx: mpsc::Sender<(Instant, u64, oneshot::Sender<()>)>,
}

impl PreciseTimer {
    /// Starts the timer thread. It ends when every handle is dropped.
    pub fn start() -> Self {
        let (tx, rx) = mpsc::channel::<(Instant, u64, oneshot::Sender<()>)>();
        std::thread::Builder::new()
            .name("meshbench-timer".into())
            .spawn(move || {
                let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
                let mut wakers: std::collections::BTreeMap<u64, oneshot::Sender<()>> =
                    std::collections::BTreeMap::new();
                loop {
                    let now = Instant::now();
                    while let Some(Reverse((at, id))) = heap.peek().copied() {
                        if at > now {
                            break;
                        }
                        heap.pop();
                        if let Some(w) = wakers.remove(&id) {
                            let _ = w.send(());
                        }
                    }
                    let next = match heap.peek() {
                        Some(Reverse((at, _))) => {
                            rx.recv_timeout(at.saturating_duration_since(now))
                        }
                        None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                    };
                    match next {
                        Ok((at, id, w)) => {
                            heap.push(Reverse((at, id)));
                            wakers.insert(id, w);
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .expect("spawning the timer thread");
        PreciseTimer { tx }
    }

    /// Completes at `at` (within tens of microseconds).
    pub async fn sleep_until(&self, at: Instant) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if at <= Instant::now() {
            return;
        }
        let (w, r) = oneshot::channel();
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.tx.send((at, id, w)).is_ok() {
            let _ = r.await;
        }
    }
}

/// Asks Linux to wake this process's threads within a nanosecond of their deadlines instead of
/// its default timer slack of 50 us, which every sleep of a live run would otherwise add (a
/// backend sleeps for each service time and network hop, so a three-tier call pays it nine
/// times). Threads inherit the slack of the thread that spawns them: call this from the main
/// thread before any runtime starts. Best effort: without `/proc/self/timerslack_ns` (another
/// kernel) the default stays, and the run only measures a little more of it. Whether it took.
pub fn tighten_timer_slack() -> bool {
    std::fs::write("/proc/self/timerslack_ns", "1").is_ok()
}
