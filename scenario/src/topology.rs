//! The static world of a scenario: zones and the network between them, services and their
//! instances (with Envoy's endpoint metadata), and client populations with their request keys.
//!
//! Services and clients use one pattern: defaults for the whole service (or population) plus
//! sparse per-instance overrides, keyed by an instance index (`3`) or an inclusive range of them
//! (`0-27`). Later keys (in the file's order of ranges, which is by first index) win where
//! ranges overlap.

use std::collections::BTreeMap;

use mesh_core::{EndpointMeta, Health};
use serde::{Deserialize, Serialize};

use crate::dist::Dist;
use crate::units::Probability;

fn one() -> u32 {
    1
}

/// A zone (locality). In files: `zones: { a: {}, b: { weight: 2 } }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// The locality's weight (Envoy's `LocalityLbEndpoints.load_balancing_weight`), read by
    /// `locality_weighted_lb`, >= 1. Default 1.
    #[serde(default = "one")]
    pub weight: u32,
}

impl Default for Zone {
    fn default() -> Self {
        Zone { weight: 1 }
    }
}

/// Network latency between client proxies and instances, one way, drawn per hop (request and
/// response separately) from the common random numbers.
///
/// Without `zones:` every hop draws from `latency`. With zones, a hop between zones `x` and `y`
/// draws from the first of: the `pairs` entry naming `{x, y}` (either order), `same_zone` (when
/// `x == y`) or `cross_zone` (when not), and `latency`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Every hop's latency, unless a zone rule below says otherwise. Default 0.
    #[serde(default = "zero_dist")]
    pub latency: Dist,
    /// Latency within a zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_zone: Option<Dist>,
    /// Latency between two different zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_zone: Option<Dist>,
    /// Latency between named zones: `[{between: [a, b], latency: {...}}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<ZonePair>,
    /// Every link's speed (`1Gbps`): a response of `services.X.response_size` bytes takes
    /// `size / bandwidth` on its way back, on top of the latency. Default: none (sizes take no
    /// time; then no service may set `response_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<crate::BitRate>,
}

/// An explicit latency between two zones (symmetric; both names may be the same zone).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonePair {
    /// The two zones.
    pub between: [String; 2],
    /// Their one-way latency.
    pub latency: Dist,
}

impl Network {
    /// Every distribution it holds, with its field path under `network`.
    pub fn dists(&self) -> impl Iterator<Item = (String, &Dist)> {
        std::iter::once(("latency".to_owned(), &self.latency))
            .chain(self.same_zone.iter().map(|d| ("same_zone".to_owned(), d)))
            .chain(self.cross_zone.iter().map(|d| ("cross_zone".to_owned(), d)))
            .chain(
                self.pairs
                    .iter()
                    .enumerate()
                    .map(|(n, p)| (format!("pairs.{n}.latency"), &p.latency)),
            )
    }

    /// The same, mutably (to load files).
    pub fn dists_mut(&mut self) -> Vec<(String, &mut Dist)> {
        let mut out = vec![("latency".to_owned(), &mut self.latency)];
        if let Some(d) = &mut self.same_zone {
            out.push(("same_zone".to_owned(), d));
        }
        if let Some(d) = &mut self.cross_zone {
            out.push(("cross_zone".to_owned(), d));
        }
        for (n, p) in self.pairs.iter_mut().enumerate() {
            out.push((format!("pairs.{n}.latency"), &mut p.latency));
        }
        out
    }

    /// The latency between zones `a` and `b` (names; empty without zones), by the rule above.
    pub fn between(&self, a: &str, b: &str) -> &Dist {
        if let Some(p) = self.pairs.iter().find(|p| {
            (p.between[0] == a && p.between[1] == b) || (p.between[0] == b && p.between[1] == a)
        }) {
            return &p.latency;
        }
        let rule = if a == b {
            &self.same_zone
        } else {
            &self.cross_zone
        };
        rule.as_ref().unwrap_or(&self.latency)
    }
}

fn zero_dist() -> Dist {
    Dist::ZERO
}

impl Default for Dist {
    fn default() -> Self {
        Dist::ZERO
    }
}

/// Which zone(s) a service's instances or a client's proxies live in: one name, or a count per
/// zone (`{a: 2, b: 4}`: the first two in `a`, the next four in `b`, in the zones' name order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Placement {
    /// Every member in this zone.
    One(String),
    /// Members per zone, assigned in zone-name order; the counts sum to the member count.
    Spread(BTreeMap<String, u32>),
}

impl Placement {
    /// The zone of member `i`, or `None` past the spread's total.
    pub fn zone_of(&self, i: u32) -> Option<&str> {
        match self {
            Placement::One(z) => Some(z),
            Placement::Spread(m) => {
                let mut left = i;
                for (z, n) in m {
                    if left < *n {
                        return Some(z);
                    }
                    left -= n;
                }
                None
            }
        }
    }

    /// Members the spread places (`None` for one zone: any number).
    pub fn total(&self) -> Option<u64> {
        match self {
            Placement::One(_) => None,
            Placement::Spread(m) => Some(m.values().map(|&n| u64::from(n)).sum()),
        }
    }

    /// The zone names it mentions.
    pub fn zones(&self) -> Vec<&str> {
        match self {
            Placement::One(z) => vec![z.as_str()],
            Placement::Spread(m) => m.keys().map(String::as_str).collect(),
        }
    }
}

/// A starting health, as discovery (Envoy EDS `health_status`) reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartHealth {
    /// Takes traffic.
    #[default]
    Healthy,
    /// Takes traffic only when the healthy hosts cannot carry it (Envoy's degraded hosts).
    Degraded,
    /// Takes no traffic outside panic.
    Unhealthy,
    /// Takes no new traffic, not even in panic.
    Draining,
}

impl From<StartHealth> for Health {
    fn from(h: StartHealth) -> Health {
        match h {
            StartHealth::Healthy => Health::Healthy,
            StartHealth::Degraded => Health::Degraded,
            StartHealth::Unhealthy => Health::Unhealthy,
            StartHealth::Draining => Health::Draining,
        }
    }
}

/// A service: instances, each a FIFO queueing station, with Envoy's endpoint metadata.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Number of instances, >= 1.
    pub instances: u32,
    /// Requests an instance serves at once, >= 1. Default 1.
    #[serde(default = "one")]
    pub concurrency: u32,
    /// Requests an instance queues beyond `concurrency`; a full queue answers 503 at once.
    /// Default unbounded.
    #[serde(default)]
    pub queue_limit: Option<u32>,
    /// Time to serve one request.
    pub service_time: Dist,
    /// Share of served requests that fail with a 500. Default 0.
    #[serde(default)]
    pub error_rate: Probability,
    /// Envoy's `load_balancing_weight` of every instance, >= 1. Default 1.
    #[serde(default = "one")]
    pub weight: u32,
    /// Envoy's `LocalityLbEndpoints.priority` of every instance; 0 is the highest. Default 0.
    #[serde(default)]
    pub priority: u32,
    /// The instances' zone, or a count per zone. Needs `zones:`. Default: no zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<Placement>,
    /// Every instance's health when the run starts. Default healthy.
    #[serde(default)]
    pub health: StartHealth,
    /// Whether an active health check waits for a free server like a request (behind the queue,
    /// and refused with 503 when the queue is full), as when the health endpoint shares the
    /// application's workers; then an overloaded instance fails its checks by timeout. Default
    /// false: a check waits for no server (it still takes a service time and sees the faults).
    #[serde(default)]
    pub health_check_queues: bool,
    /// The share of active health checks that fail (500), in place of the instance's error
    /// rate and its `errors` faults: a health path that does not exercise what requests fail
    /// on (0: checks pass while requests fail). Default: the instance's error rate, as for its
    /// requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_error_rate: Option<crate::Probability>,
    /// Whether an instance still serves a queued request whose client gave up on it (a timeout
    /// reset the stream), as a server that learns of the reset only when it writes the answer
    /// does: the wasted work a retry storm feeds on. Default false: an abandoned request leaves
    /// the queue unserved.
    #[serde(default)]
    pub serves_abandoned: bool,
    /// Sparse per-instance changes, by instance index (`3`) or inclusive range (`0-27`).
    #[serde(default)]
    pub overrides: BTreeMap<InstanceRange, Override>,
    /// What a request does after its service time: compute, calls to other services, groups
    /// of calls at once (see [`crate::graph`]). Default none: the service answers after its
    /// service time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub script: Vec<crate::graph::Step>,
    /// The size of a successful response (`16KiB`): its bytes take `network.bandwidth` to cross
    /// the link back to the caller, and live backends send that many. Needs
    /// `network.bandwidth`. Default: a few bytes, taking no modeled time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_size: Option<crate::ByteSize>,
}

/// An instance index (`3`) or an inclusive range of them (`0-27`), as an override key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceRange {
    /// First index.
    pub first: u32,
    /// Last index (inclusive).
    pub last: u32,
}

impl InstanceRange {
    /// Whether it covers instance `i`.
    pub fn contains(&self, i: u32) -> bool {
        (self.first..=self.last).contains(&i)
    }
}

impl std::fmt::Display for InstanceRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl Serialize for InstanceRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            s.serialize_u32(self.first)
        } else {
            s.serialize_str(&self.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for InstanceRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = InstanceRange;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an instance index such as `3` or an inclusive range such as `0-27`")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<InstanceRange, E> {
                let i = u32::try_from(v).map_err(|_| E::custom("instance index too large"))?;
                Ok(InstanceRange { first: i, last: i })
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<InstanceRange, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("instance index must be >= 0"))?;
                self.visit_u64(v)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<InstanceRange, E> {
                let bad = || {
                    E::custom(format!(
                        "`{v}` is not an instance index (`3`) or an inclusive range (`0-27`)"
                    ))
                };
                let (a, b) = match v.split_once('-') {
                    Some((a, b)) => (a.trim(), b.trim()),
                    None => (v.trim(), v.trim()),
                };
                let first: u32 = a.parse().map_err(|_| bad())?;
                let last: u32 = b.parse().map_err(|_| bad())?;
                if last < first {
                    return Err(E::custom(format!(
                        "range `{v}` runs backwards: write `{last}-{first}`"
                    )));
                }
                Ok(InstanceRange { first, last })
            }
        }
        d.deserialize_any(V)
    }
}

impl Service {
    /// Instance `i` as the service's defaults and its overrides (if any) make it.
    pub fn instance(&self, i: u32) -> InstanceSpec<'_> {
        let mut x = self.default_instance(i);
        for (_, o) in self.overrides.iter().filter(|(r, _)| r.contains(i)) {
            x.apply(o);
        }
        x
    }

    /// Every instance, in index order: [`Service::instance`] of each, in one pass over the
    /// overrides (time: instances plus the overrides' covered lengths).
    pub fn instances(&self) -> Vec<InstanceSpec<'_>> {
        let mut all: Vec<InstanceSpec<'_>> = (0..self.instances)
            .map(|i| self.default_instance(i))
            .collect();
        for (r, o) in &self.overrides {
            let last = r.last.min(self.instances.saturating_sub(1));
            for x in all
                .iter_mut()
                .take(last as usize + 1)
                .skip(r.first as usize)
            {
                x.apply(o);
            }
        }
        all
    }

    /// Instances the overrides cover, counting an instance once per override that names it.
    pub fn override_coverage(&self) -> u64 {
        self.overrides
            .keys()
            .map(|r| u64::from(r.last - r.first) + 1)
            .sum()
    }

    fn default_instance(&self, i: u32) -> InstanceSpec<'_> {
        InstanceSpec {
            concurrency: self.concurrency,
            queue_limit: self.queue_limit.unwrap_or(u32::MAX),
            service_time: &self.service_time,
            slowdown: 1.0,
            error_rate: self.error_rate.get(),
            weight: self.weight,
            priority: self.priority,
            zone: self.zone.as_ref().and_then(|p| p.zone_of(i)).unwrap_or(""),
            health: self.health,
        }
    }
}

impl<'a> InstanceSpec<'a> {
    fn apply(&mut self, o: &'a Override) {
        if let Some(c) = o.concurrency {
            self.concurrency = c;
        }
        if let Some(d) = &o.service_time {
            self.service_time = d;
        }
        if let Some(s) = o.slowdown {
            self.slowdown = s;
        }
        if let Some(e) = o.error_rate {
            self.error_rate = e.get();
        }
        if let Some(w) = o.weight {
            self.weight = w;
        }
        if let Some(p) = o.priority {
            self.priority = p;
        }
        if let Some(z) = &o.zone {
            self.zone = z;
        }
        if let Some(h) = o.health {
            self.health = h;
        }
    }
}

/// One instance, overrides applied.
#[derive(Clone, Copy, Debug)]
pub struct InstanceSpec<'a> {
    /// Requests served at once.
    pub concurrency: u32,
    /// Requests queued beyond `concurrency` (`u32::MAX`: unbounded).
    pub queue_limit: u32,
    /// Service-time distribution, before the slowdown.
    pub service_time: &'a Dist,
    /// Service-time multiplier.
    pub slowdown: f64,
    /// Share of served requests that fail with a 500.
    pub error_rate: f64,
    /// Envoy's `load_balancing_weight`.
    pub weight: u32,
    /// Priority level.
    pub priority: u32,
    /// Zone (empty without zones).
    pub zone: &'a str,
    /// Health when the run starts.
    pub health: StartHealth,
}

impl InstanceSpec<'_> {
    /// What a client's discovery view says of it when the run starts.
    pub fn meta(&self) -> EndpointMeta {
        EndpointMeta {
            weight: self.weight,
            priority: self.priority,
            zone: self.zone.to_owned(),
            health: self.health.into(),
        }
    }

    /// Requests per second it serves at most.
    pub fn capacity_per_sec(&self) -> f64 {
        f64::from(self.concurrency) / (self.service_time.mean_ns() * self.slowdown / 1e9)
    }
}

/// Per-instance changes to a service's defaults.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Multiplies the service time, > 0. Default 1.
    #[serde(default)]
    pub slowdown: Option<f64>,
    /// Replaces the service-time distribution.
    #[serde(default)]
    pub service_time: Option<Dist>,
    /// Replaces the concurrency.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Replaces the error rate.
    #[serde(default)]
    pub error_rate: Option<Probability>,
    /// Replaces the weight.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Replaces the priority.
    #[serde(default)]
    pub priority: Option<u32>,
    /// Replaces the zone.
    #[serde(default)]
    pub zone: Option<String>,
    /// Replaces the starting health.
    #[serde(default)]
    pub health: Option<StartHealth>,
}

/// A client population: `proxies` independent client proxies sharing the arrival rate.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    /// Independent proxies, each with its own policy state, >= 1. Default 1.
    #[serde(default = "one")]
    pub proxies: u32,
    /// The service called.
    pub target: String,
    /// The arrival process of the whole population.
    pub arrival: crate::Arrival,
    /// The proxies' zone, or a count per zone. Needs `zones:`. Default: no zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<Placement>,
    /// Request keys, for hash-based balancers. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Keys>,
    /// What the population's requests are on the wire in live mode: method, path, headers and
    /// body. The model carries no request bytes, so the simulator's results do not depend on
    /// it; `meshbench run` says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestTemplate>,
}

/// A client's HTTP requests in live mode (`clients.NAME.request`). Command-line flags
/// (`--method`, `--header`, `--body-file`, `--path`) override it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTemplate {
    /// The method, default `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The path (with a query, if any) for endpoints given by address (in-process backends,
    /// discovery); default `/work`. A `--target` URL's own path wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Headers sent with every request, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The body, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body, read from this file (relative to the scenario's directory, or a data dir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_file: Option<String>,
    /// The body's bytes, once read (`body` or `body_file`).
    #[serde(skip)]
    pub body_bytes: std::sync::Arc<Vec<u8>>,
}

/// An HTTP token (a method or header name, RFC 9110's `tchar`s).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether meshbench writes header `name` itself on every live request (`Host`, framing,
/// `traceparent`, its own `x-meshbench-*`), so a scenario or the command line may not set it.
pub fn is_reserved_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "host",
        "content-length",
        "transfer-encoding",
        "traceparent",
        "connection",
    ]
    .contains(&lower.as_str())
        || lower.starts_with("x-meshbench-")
}

impl RequestTemplate {
    /// Checks the fields: the field at fault (relative to `request`) and what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(m) = &self.method
            && !is_token(m)
        {
            return Err(("method".into(), format!("`{m}` is not an HTTP method")));
        }
        if let Some(p) = &self.path
            && (!p.starts_with('/') || p.bytes().any(|b| b <= b' ' || b == 0x7f))
        {
            return Err((
                "path".into(),
                format!("`{p}`: write an absolute path without spaces, such as /v1/items?page=2"),
            ));
        }
        for (name, value) in &self.headers {
            if !is_token(name) {
                return Err((format!("headers.{name}"), "is not a header name".into()));
            }
            if is_reserved_header(name) {
                return Err((
                    format!("headers.{name}"),
                    "meshbench writes this header itself on every request".into(),
                ));
            }
            if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
                return Err((
                    format!("headers.{name}"),
                    "the value has a control character (a header value is one line)".into(),
                ));
            }
        }
        if self.body.is_some() && self.body_file.is_some() {
            return Err((
                "body_file".into(),
                "and `body` both give the body: keep one".into(),
            ));
        }
        Ok(())
    }
}

/// How requests get their keys: key `k` of `count` is the text of its index (`0`, `1`, ...), sent in
/// the `x-meshbench-key` header in live mode and hashed with XXH64 (seed 0), as Envoy's
/// `hash_policy: header` hashes a header's value. The draw is a common random number of the
/// request, so every strategy and both drivers give a request the same key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "dist",
    rename_all = "snake_case",
    deny_unknown_fields,
    try_from = "KeysSpec"
)]
pub enum Keys {
    /// Every key equally likely.
    Uniform {
        /// Number of keys, >= 1.
        count: u32,
    },
    /// Key `k` (0-based) with probability proportional to `1 / (k + 1)^exponent`: key 0 is the
    /// hottest.
    Zipf {
        /// Number of keys, >= 1.
        count: u32,
        /// The exponent, >= 0 (0 is uniform; around 1 is typical of caches).
        exponent: f64,
    },
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KeysKind {
    Uniform,
    Zipf,
}

/// Keys as written (a plain struct, so field errors are exactly located).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysSpec {
    dist: KeysKind,
    count: u32,
    exponent: Option<f64>,
}

impl TryFrom<KeysSpec> for Keys {
    type Error = String;

    fn try_from(k: KeysSpec) -> Result<Self, String> {
        Ok(match (k.dist, k.exponent) {
            (KeysKind::Uniform, None) => Keys::Uniform { count: k.count },
            (KeysKind::Uniform, Some(_)) => {
                return Err("`exponent` belongs to `dist: zipf`".into());
            }
            (KeysKind::Zipf, Some(exponent)) => Keys::Zipf {
                count: k.count,
                exponent,
            },
            (KeysKind::Zipf, None) => {
                return Err("`dist: zipf` needs `exponent` (for example 1.1)".into());
            }
        })
    }
}

impl Keys {
    /// Number of keys.
    pub fn count(&self) -> u32 {
        match self {
            Keys::Uniform { count } | Keys::Zipf { count, .. } => *count,
        }
    }
}
