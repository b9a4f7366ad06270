//! A tiny driver for `Cluster` tests in virtual time: it steps through every timer in order,
//! as the simulator does, and keeps every output with its time.

use mesh_core::{
    AttemptId, Cluster, ClusterConfig, EndpointId, EndpointMeta, Input, Instant, Outcome, Output,
    PolicyEvent, RequestId, Seed,
};

/// `n` milliseconds after the start.
pub(crate) fn ms(n: u64) -> Instant {
    Instant::from_nanos(n * 1_000_000)
}

/// `n` seconds after the start.
pub(crate) fn secs(n: u64) -> Instant {
    Instant::from_nanos(n * 1_000_000_000)
}

/// A cluster, the time, and every output so far.
pub(crate) struct Harness {
    pub(crate) cluster: Cluster,
    pub(crate) now: Instant,
    pub(crate) out: Vec<(Instant, Output)>,
    next_request: u64,
}

impl Harness {
    /// A cluster from JSON config over `n` default endpoints.
    pub(crate) fn new(json: &str, n: usize) -> Self {
        Self::with_endpoints(json, &vec![EndpointMeta::default(); n])
    }

    /// A cluster from JSON config over the given endpoints.
    pub(crate) fn with_endpoints(json: &str, endpoints: &[EndpointMeta]) -> Self {
        let config: ClusterConfig = serde_json::from_str(json).expect("valid test config");
        let cluster =
            Cluster::new(&config, endpoints, Seed::new(7), Instant::EPOCH).expect("valid config");
        let mut h = Harness {
            cluster,
            now: Instant::EPOCH,
            out: Vec::new(),
            next_request: 0,
        };
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(o) = self.cluster.poll_output() {
            self.out.push((self.now, o));
        }
    }

    /// Runs every timer up to and including `t`, in order, then sets the time to `t`.
    pub(crate) fn run_until(&mut self, t: Instant) {
        while let Some(next) = self.cluster.poll_timeout() {
            if next > t {
                break;
            }
            self.now = self.now.max(next);
            self.cluster.handle_timeout(self.now);
            self.drain();
        }
        self.now = self.now.max(t);
    }

    /// Feeds one input at the current time; returns the outputs it produced.
    pub(crate) fn input(&mut self, input: Input) -> Vec<Output> {
        let before = self.out.len();
        self.cluster.handle_input(input, self.now);
        self.drain();
        self.out[before..].iter().map(|(_, o)| o.clone()).collect()
    }

    /// Sends a new request; returns its id and the outputs.
    pub(crate) fn request(&mut self) -> (RequestId, Vec<Output>) {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let out = self.input(Input::Request {
            request: id,
            hash: None,
        });
        (id, out)
    }

    /// Ends an attempt.
    pub(crate) fn done(&mut self, attempt: AttemptId, outcome: Outcome) -> Vec<Output> {
        self.input(Input::AttemptDone {
            attempt,
            outcome,
            load: None,
        })
    }

    /// One request whose every attempt ends at once with `outcome`; returns how it finished.
    pub(crate) fn round_trip(&mut self, outcome: Outcome) -> (Vec<EndpointId>, mesh_core::Finish) {
        let (id, mut out) = self.request();
        let mut eps = Vec::new();
        loop {
            let mut next = Vec::new();
            for o in &out {
                match o {
                    Output::Send {
                        attempt, endpoint, ..
                    } => {
                        eps.push(*endpoint);
                        next.extend(self.done(*attempt, outcome));
                    }
                    Output::Finished {
                        request, result, ..
                    } if *request == id => return (eps, *result),
                    _ => {}
                }
            }
            if next.is_empty() {
                // A retry in back-off: let time run to it.
                let t = self.cluster.poll_timeout().expect("a pending retry");
                let before = self.out.len();
                self.run_until(t);
                next = self.out[before..].iter().map(|(_, o)| o.clone()).collect();
            }
            out = next;
        }
    }

    /// The policy events so far, with their times.
    pub(crate) fn events(&self) -> Vec<(Instant, PolicyEvent)> {
        self.out
            .iter()
            .filter_map(|(t, o)| match o {
                Output::Event(e) => Some((*t, e.clone())),
                _ => None,
            })
            .collect()
    }
}

/// The sends among `out`: (attempt, endpoint, retry number).
pub(crate) fn sends(out: &[Output]) -> Vec<(AttemptId, EndpointId, u32)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send {
                attempt,
                endpoint,
                retry,
                ..
            } => Some((*attempt, *endpoint, *retry)),
            _ => None,
        })
        .collect()
}

/// The finish among `out`, if any.
pub(crate) fn finished(out: &[Output]) -> Option<(RequestId, mesh_core::Finish, u32)> {
    out.iter().find_map(|o| match o {
        Output::Finished {
            request,
            result,
            attempts,
            ..
        } => Some((*request, *result, *attempts)),
        _ => None,
    })
}
