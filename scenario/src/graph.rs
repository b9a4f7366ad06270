//! Call graphs: what a service's handler does after its own service time.
//!
//! A service's `script` is a list of steps run in order, as Istio's isotope writes its mock
//! services' scripts: `compute` (local work on the instance, with its own service-time
//! distribution), `call` (one request to another service), and `parallel` (a group of calls sent
//! at once, waiting for all of them or for the first `wait` to succeed). A call may be taken with
//! a `probability`, and a call with `ignore_failure` does not fail its step when it fails.
//!
//! ```yaml
//! services:
//!   frontend:
//!     instances: 4
//!     concurrency: 64
//!     service_time: {dist: exponential, mean: 1ms}
//!     script:
//!       - call: auth
//!       - parallel: [{call: search}, {call: ads, ignore_failure: true}]
//!         wait: all
//!       - compute: {dist: constant, value: 200us}
//! ```
//!
//! The request holds its server (one of the instance's `concurrency`) from the start of its
//! service time until the script ends, as a request does in a server that waits for its
//! downstream calls on the request's own worker. Every call leaves through the calling
//! instance's own sidecar: a `Cluster` per (calling instance, upstream service), with the
//! strategy's policy for that upstream (`upstreams:` in a strategy), so balancing, retries,
//! timeouts and outlier detection act at every tier. A step whose call fails (after the
//! sidecar's retries) fails the request with a 500, unless the call ignores failures. Cycles
//! (a service that calls itself, directly or through others) are refused when the scenario
//! loads.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dist::Dist;
use crate::units::Probability;

/// One step of a script, as written. Exactly one of `compute`, `call` and `parallel`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Local work on the instance: its time (scaled by the instance's slowdowns, as its service
    /// time is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<Dist>,
    /// A call to this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
    /// Calls sent at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<Vec<Call>>,
    /// With `parallel`: `all` (the default) waits for every call; a number `k` goes on when `k`
    /// calls have succeeded (the rest run on, unawaited) and fails once `k` can no longer
    /// succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Wait>,
    /// With `call`: the chance the call is made at all (drawn per request). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<Probability>,
    /// With `call`: a failed call does not fail the request. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_failure: bool,
}

/// One call of a `parallel` group: `{call: search, probability: 0.5, ignore_failure: true}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// The service called.
    pub call: String,
    /// The chance the call is made at all (drawn per request). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<Probability>,
    /// A failed call does not fail the group. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_failure: bool,
}

/// How many calls of a `parallel` group to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Every call made.
    All,
    /// The first `k` to succeed.
    First(u32),
}

impl Serialize for Wait {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Wait::All => s.serialize_str("all"),
            Wait::First(k) => s.serialize_u32(*k),
        }
    }
}

impl<'de> Deserialize<'de> for Wait {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Wait;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`all` or a number of calls such as `3`")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Wait, E> {
                match u32::try_from(v) {
                    Ok(k) if k >= 1 => Ok(Wait::First(k)),
                    _ => Err(E::custom(format!(
                        "`wait: {v}`: give `all` or a number >= 1"
                    ))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Wait, E> {
                Err(E::custom(format!(
                    "`wait: {v}`: give `all` or a number >= 1"
                )))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Wait, E> {
                if v == "all" {
                    Ok(Wait::All)
                } else {
                    Err(E::custom(format!(
                        "`wait: {v}`: give `all` or a number of calls such as `3`"
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The mesh around the services (`mesh:` in a scenario): whether calls go through sidecars, and
/// what a sidecar costs.
///
/// With sidecars, every attempt pays `outbound` in the caller's sidecar (the client proxy for a
/// client's requests) and `inbound` in the callee instance's sidecar, drawn per attempt: the
/// CPU time the proxy spends on the request and its response. `sidecars: false` is the "no
/// mesh" baseline: the overheads are not paid (the policy still acts, as a client library's
/// would), so a sweep over `mesh.sidecars` compares one mesh with and without its proxies.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mesh {
    /// Whether calls go through sidecars. Default true.
    #[serde(default = "yes")]
    pub sidecars: bool,
    /// Time an attempt spends in the calling side's sidecar. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<Dist>,
    /// Time an attempt spends in the called instance's sidecar. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<Dist>,
    /// Attempts a sidecar works on at once: its worker threads (Envoy's `--concurrency`,
    /// Istio's `proxy.istio.io/config: concurrency`, 2 by default there). With it, every sidecar
    /// (an instance's, shared by its way in and its calls out, and each client proxy's) is a
    /// station: an attempt waits first come, first served for a free worker, and a saturated
    /// sidecar queues. Without it (the default), a sidecar's time is a pure delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// What a new connection's TLS handshake costs, for policies whose `connections.tls` is
    /// `tls` or `mtls`. Default: TLS 1.3 with ECDSA P-256 certificates and X25519 (see
    /// [`Handshake`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake: Option<Handshake>,
}

/// The cost of setting up a connection (`mesh.handshake`), paid by every `Output::Connect` of
/// a pooled policy. TCP takes one round trip (two network delays); TLS adds `tls_round_trips`
/// more (TLS 1.3: one) and CPU time at both ends; mTLS adds the client certificate's: the
/// client signs, the server verifies a chain.
///
/// The defaults are figures for TLS 1.3 with ECDSA P-256 certificates and X25519 key exchange
/// (Istio's and Linkerd's defaults), from `openssl speed ecdsap256 ecdhx25519` on this project's
/// CI machine (2 cores, OpenSSL 3.0): a P-256 signature costs about 21 us, a verification 72 us,
/// an X25519 operation 38 us. The client does a key exchange (2 operations) and verifies the
/// server's certificate and handshake signature (2 verifications): about 250 us with the
/// record layer. The server does a key exchange and one signature: about 120 us. mTLS adds a
/// signature at the client (about 20 us) and a chain verification at the server (about 150 us).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Handshake {
    /// Round trips TLS adds to TCP's one before the first request goes. Default 1 (TLS 1.3).
    pub tls_round_trips: u32,
    /// The connecting side's CPU time for a TLS handshake. Default 250 us.
    pub tls_client_cpu: Dist,
    /// The accepting side's CPU time for a TLS handshake. Default 120 us.
    pub tls_server_cpu: Dist,
    /// What a client certificate adds at the connecting side (mTLS). Default 20 us.
    pub mtls_client_cpu: Dist,
    /// What a client certificate adds at the accepting side (mTLS). Default 150 us.
    pub mtls_server_cpu: Dist,
}

impl Default for Handshake {
    fn default() -> Self {
        let us = |n: u64| Dist::Constant {
            value: mesh_core::Duration::from_nanos(n * 1000),
        };
        Handshake {
            tls_round_trips: 1,
            tls_client_cpu: us(250),
            tls_server_cpu: us(120),
            mtls_client_cpu: us(20),
            mtls_server_cpu: us(150),
        }
    }
}

impl Handshake {
    /// Its distributions with their field paths under `mesh.handshake`, mutably.
    pub fn dists_mut(&mut self) -> Vec<(&'static str, &mut Dist)> {
        vec![
            ("tls_client_cpu", &mut self.tls_client_cpu),
            ("tls_server_cpu", &mut self.tls_server_cpu),
            ("mtls_client_cpu", &mut self.mtls_client_cpu),
            ("mtls_server_cpu", &mut self.mtls_server_cpu),
        ]
    }
}

fn yes() -> bool {
    true
}

impl Default for Mesh {
    fn default() -> Self {
        Mesh {
            sidecars: true,
            outbound: None,
            inbound: None,
            concurrency: None,
            handshake: None,
        }
    }
}

impl Mesh {
    /// The overheads that act (none without sidecars): (outbound, inbound).
    pub fn overheads(&self) -> (Option<&Dist>, Option<&Dist>) {
        if self.sidecars {
            (self.outbound.as_ref(), self.inbound.as_ref())
        } else {
            (None, None)
        }
    }

    /// Whether any sidecar overhead is paid.
    pub fn costs(&self) -> bool {
        let (a, b) = self.overheads();
        a.is_some() || b.is_some()
    }

    /// The sidecars' workers, when sidecars are stations that queue (`concurrency`) and their
    /// time acts.
    pub fn workers(&self) -> Option<u32> {
        self.concurrency.filter(|_| self.costs())
    }

    /// Its distributions, with their field paths under `mesh`, mutably (to load files).
    pub fn dists_mut(&mut self) -> Vec<(&'static str, &mut Dist)> {
        let mut out = Vec::new();
        if let Some(d) = &mut self.outbound {
            out.push(("outbound", d));
        }
        if let Some(d) = &mut self.inbound {
            out.push(("inbound", d));
        }
        if let Some(h) = &mut self.handshake {
            for (name, d) in h.dists_mut() {
                out.push((
                    match name {
                        "tls_client_cpu" => "handshake.tls_client_cpu",
                        "tls_server_cpu" => "handshake.tls_server_cpu",
                        "mtls_client_cpu" => "handshake.mtls_client_cpu",
                        _ => "handshake.mtls_server_cpu",
                    },
                    d,
                ));
            }
        }
        out
    }
}

/// A script compiled for the drivers: its operations, and the services it calls (each call
/// names one by index, which picks the calling instance's sidecar for it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Script {
    /// The steps, in order.
    pub ops: Vec<Op>,
    /// The upstream services, in order of first call.
    pub upstreams: Vec<String>,
}

/// One compiled step.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Local work.
    Compute(Dist),
    /// Calls sent at once (one, for a `call` step); go on when `wait` of them have succeeded
    /// (`u32::MAX`: all that were made).
    Calls {
        /// The calls.
        calls: Vec<CallOp>,
        /// How many to wait for.
        wait: u32,
    },
}

/// One compiled call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CallOp {
    /// The upstream (index into [`Script::upstreams`]).
    pub upstream: u16,
    /// The chance it is made.
    pub probability: f64,
    /// Whether its failure is ignored.
    pub ignore_failure: bool,
    /// Its number in the script (calls numbered from 0 in order), which keys its request id.
    pub id: u32,
}

impl Script {
    /// Compiles `steps` (validated by [`check`]).
    pub fn compile(steps: &[Step]) -> Script {
        let mut s = Script::default();
        let mut next_id = 0u32;
        let upstream = |s: &mut Script, name: &str| -> u16 {
            match s.upstreams.iter().position(|u| u == name) {
                Some(i) => i as u16,
                None => {
                    s.upstreams.push(name.to_owned());
                    (s.upstreams.len() - 1) as u16
                }
            }
        };
        for step in steps {
            if let Some(d) = &step.compute {
                s.ops.push(Op::Compute(d.clone()));
            } else if let Some(name) = &step.call {
                let up = upstream(&mut s, name);
                s.ops.push(Op::Calls {
                    calls: vec![CallOp {
                        upstream: up,
                        probability: step.probability.map_or(1.0, Probability::get),
                        ignore_failure: step.ignore_failure,
                        id: next_id,
                    }],
                    wait: u32::MAX,
                });
                next_id += 1;
            } else if let Some(group) = &step.parallel {
                let mut calls = Vec::with_capacity(group.len());
                for c in group {
                    let up = upstream(&mut s, &c.call);
                    calls.push(CallOp {
                        upstream: up,
                        probability: c.probability.map_or(1.0, Probability::get),
                        ignore_failure: c.ignore_failure,
                        id: next_id,
                    });
                    next_id += 1;
                }
                s.ops.push(Op::Calls {
                    calls,
                    wait: match step.wait {
                        Some(Wait::First(k)) => k,
                        _ => u32::MAX,
                    },
                });
            }
        }
        s
    }
}

/// The request id of call `call` (its [`CallOp::id`]) made while serving attempt `retry` of
/// request `parent`: a hash, so a call's common random numbers are the same whatever the
/// strategy and in both drivers, and each attempt of the parent makes calls of its own.
pub fn child_request(parent: u64, retry: u32, call: u32) -> u64 {
    use mesh_core::seed::mix;
    mix(parent ^ mix(0x6361_6c6c_0000_0000 | (u64::from(retry) << 20) ^ u64::from(call)))
}

/// One client request in this many has its critical path traced ([`traced`]).
pub const TRACE_ONE_IN: u64 = 8;

/// Whether client request `request` has its critical path traced: a hash of its id, so the
/// same requests are traced whatever the strategy, and in both drivers.
pub fn traced(request: u64) -> bool {
    mesh_core::seed::mix(request ^ 0x7472_6163_6500_0000) % TRACE_ONE_IN == 0
}

/// How many requests one request to `service` makes in all, itself included, on average: each
/// call its script makes (times its probability) brings the callee's own. Retries and hedges
/// are not counted. The graph has no cycle (checked when the scenario loads).
pub fn requests_per_request(services: &BTreeMap<String, crate::Service>, service: &str) -> f64 {
    let Some(svc) = services.get(service) else {
        return 1.0;
    };
    let p = |x: Option<Probability>| x.map_or(1.0, Probability::get);
    let mut n = 1.0;
    for step in &svc.script {
        if let Some(callee) = &step.call {
            n += p(step.probability) * requests_per_request(services, callee);
        }
        for c in step.parallel.iter().flatten() {
            n += p(c.probability) * requests_per_request(services, &c.call);
        }
    }
    n
}

/// Checks every service's script: one kind per step, called services that exist, `wait`
/// within its group, and no cycle. Errors are (field path, message, suggestion).
pub fn check(
    services: &BTreeMap<String, crate::Service>,
) -> Result<(), (String, String, Option<String>)> {
    let names = || services.keys().map(String::as_str);
    for (name, svc) in services {
        for (n, step) in svc.script.iter().enumerate() {
            let at = format!("services.{name}.script.{n}");
            let kinds = usize::from(step.compute.is_some())
                + usize::from(step.call.is_some())
                + usize::from(step.parallel.is_some());
            if kinds != 1 {
                return Err((
                    at,
                    "give exactly one of `compute` (local work), `call` (a service) and `parallel` (a list of calls)".into(),
                    None,
                ));
            }
            let target = |field: String, called: &str| {
                if services.contains_key(called) {
                    Ok(())
                } else {
                    Err((
                        field,
                        format!(
                            "no service `{called}`; services: {}",
                            names().collect::<Vec<_>>().join(", ")
                        ),
                        crate::nearest(called, names()),
                    ))
                }
            };
            if let Some(d) = &step.compute {
                d.validate()
                    .map_err(|(f, m)| (format!("{at}.compute.{f}"), m, None))?;
            }
            if step.call.is_none() && (step.probability.is_some() || step.ignore_failure) {
                let f = if step.probability.is_some() {
                    "probability"
                } else {
                    "ignore_failure"
                };
                return Err((
                    format!("{at}.{f}"),
                    "applies to a `call` step (in a `parallel` group, give it to each call)".into(),
                    None,
                ));
            }
            if step.parallel.is_none() && step.wait.is_some() {
                return Err((
                    format!("{at}.wait"),
                    "applies to a `parallel` step".into(),
                    None,
                ));
            }
            if let Some(c) = &step.call {
                target(format!("{at}.call"), c)?;
            }
            if let Some(group) = &step.parallel {
                if group.is_empty() {
                    return Err((
                        format!("{at}.parallel"),
                        "needs at least one call, such as `[{call: search}]`".into(),
                        None,
                    ));
                }
                if group.len() > 10_000 {
                    return Err((
                        format!("{at}.parallel"),
                        format!("has {} calls; at most 10000", group.len()),
                        None,
                    ));
                }
                for (k, c) in group.iter().enumerate() {
                    target(format!("{at}.parallel.{k}.call"), &c.call)?;
                }
                if let Some(Wait::First(k)) = step.wait
                    && k as usize > group.len()
                {
                    return Err((
                        format!("{at}.wait"),
                        format!(
                            "waits for {k} calls, but the group makes {} (give at most {}, or `all`)",
                            group.len(),
                            group.len()
                        ),
                        None,
                    ));
                }
            }
        }
    }
    // Cycles: depth-first, in name order.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = names().map(|n| (n, Mark::New)).collect();
    fn visit<'a>(
        n: &'a str,
        services: &'a BTreeMap<String, crate::Service>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Result<(), (String, String, Option<String>)> {
        match marks[n] {
            Mark::Done => return Ok(()),
            Mark::Open => {
                let from = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut cycle: Vec<&str> = path[from..].to_vec();
                cycle.push(n);
                return Err((
                    format!("services.{}.script", path[from]),
                    format!(
                        "the call graph has a cycle: {} (a request would never end; break the cycle)",
                        cycle.join(" -> ")
                    ),
                    None,
                ));
            }
            Mark::New => {}
        }
        marks.insert(n, Mark::Open);
        path.push(n);
        for up in Script::compile(&services[n].script).upstreams {
            let (key, _) = services.get_key_value(&up).expect("checked above");
            visit(key, services, marks, path)?;
        }
        path.pop();
        marks.insert(n, Mark::Done);
        Ok(())
    }
    for n in names() {
        visit(n, services, &mut marks, &mut Vec::new())?;
    }
    Ok(())
}

/// Hops per request entering each service, on average (1 for the service itself plus its
/// calls' hops, probabilities taken), for services that are all acyclic.
pub fn hops_per_request(services: &BTreeMap<String, crate::Service>) -> BTreeMap<String, f64> {
    fn hops(
        n: &str,
        services: &BTreeMap<String, crate::Service>,
        memo: &mut BTreeMap<String, f64>,
        depth: u32,
    ) -> f64 {
        if let Some(&h) = memo.get(n) {
            return h;
        }
        let Some(svc) = services.get(n) else {
            return 1.0;
        };
        if depth > 1000 {
            return 1.0;
        }
        let script = Script::compile(&svc.script);
        let mut h = 1.0;
        for op in &script.ops {
            if let Op::Calls { calls, .. } = op {
                for c in calls {
                    let up = &script.upstreams[usize::from(c.upstream)];
                    h += c.probability * hops(up, services, memo, depth + 1);
                }
            }
        }
        memo.insert(n.to_owned(), h);
        h
    }
    let mut memo = BTreeMap::new();
    for n in services.keys() {
        hops(n, services, &mut memo, 0);
    }
    memo
}

#[cfg(test)]
mod tests {
    use super::requests_per_request;

    fn shipped(name: &str) -> crate::Scenario {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios")
            .join(name);
        crate::load(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .scenario
    }

    #[test]
    fn a_request_brings_every_call_below_it() {
        // web -> api -> db: three requests each.
        let chain = shipped("validation/three-tier-chain.yaml");
        assert_eq!(requests_per_request(&chain.services, "web"), 3.0);
        assert_eq!(requests_per_request(&chain.services, "db"), 1.0);
        // The frontend asks 40 leaves, each of which asks the store once: 1 + 40 x 2.
        let fan = shipped("three-tier-fanout.yaml");
        assert_eq!(requests_per_request(&fan.services, "frontend"), 81.0);
    }
}
