//! The recorder: the one place a run's measurements are taken, for both drivers.
//!
//! A driver feeds it what its `Cluster`s output (attempts sent, requests finished, policy
//! events) and what its instances saw (failed attempts), and closes a time-series window every
//! sample period; [`Recorder::finish`] turns it into a [`RunResult`]. The simulator keeps one
//! recorder per run; the live generator one per proxy, merged with [`Recorder::merge`] (and
//! windows with [`Window::merge`]), so every metric is defined once, here.
//!
//! What counts: a request is measured when it *arrived* at or after the warm-up; latency runs
//! from its arrival (the intended send time in live mode) to its finish, and is kept in two
//! distributions, successes and failures (a fast 503 must not pull the percentiles down); `attempts` are those of
//! measured requests (from the `Cluster`'s own count); per-endpoint counters and windows count
//! everything, warm-up included.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use mesh_core::outlier::OutlierEvent;
use mesh_core::{Finish, PolicyEvent};

use crate::{
    CriticalPath, EdgeStats, EndpointStats, KeyShare, RunResult, Sample, ZoneFlow,
    latency_histogram, quantile_ms,
};

/// Keys below this index (the hottest ones under Zipf keys, which rank key 0 first) have their
/// attempts counted per endpoint, for the hot-key table.
pub const HOT_KEYS: u32 = 10;

/// One time-series window's counters.
#[derive(Clone, Debug)]
pub struct Window {
    /// Latency of requests that succeeded in the window (2 significant digits); failures are
    /// counted in `errors` and kept out of the percentiles.
    pub hist: Histogram<u64>,
    /// Requests finished.
    pub requests: u64,
    /// Of those, failed.
    pub errors: u64,
    /// Attempts sent.
    pub attempts: u64,
    /// Ejections.
    pub ejections: u64,
    /// Health-check state changes.
    pub health_changes: u64,
    /// Attempts per endpoint (global station index).
    pub per_endpoint: Vec<u64>,
    /// Per endpoint, the proxies ejecting it at the window's end.
    pub ejecting: Vec<u32>,
}

impl Window {
    /// An empty window over `endpoints` endpoints.
    pub fn new(endpoints: usize) -> Self {
        Window {
            // Per-window percentiles need less precision than the run's: 2 significant digits
            // keep the histogram ten times smaller, and it is reset every window.
            hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 2).expect("valid bounds"),
            requests: 0,
            errors: 0,
            attempts: 0,
            ejections: 0,
            health_changes: 0,
            per_endpoint: vec![0; endpoints],
            ejecting: vec![0; endpoints],
        }
    }

    /// Adds another window's counts (another proxy's, over the same period).
    pub fn merge(&mut self, o: &Window) {
        let _ = self.hist.add(&o.hist);
        self.requests += o.requests;
        self.errors += o.errors;
        self.attempts += o.attempts;
        self.ejections += o.ejections;
        self.health_changes += o.health_changes;
        // Another proxy may know more endpoints (discovered during a live run).
        if o.per_endpoint.len() > self.per_endpoint.len() {
            self.per_endpoint.resize(o.per_endpoint.len(), 0);
        }
        if o.ejecting.len() > self.ejecting.len() {
            self.ejecting.resize(o.ejecting.len(), 0);
        }
        for (a, b) in self.per_endpoint.iter_mut().zip(&o.per_endpoint) {
            *a += b;
        }
        for (a, b) in self.ejecting.iter_mut().zip(&o.ejecting) {
            *a += b;
        }
    }

    /// Hosts ejected by at least one proxy at the window's end.
    pub fn ejected_hosts(&self) -> u64 {
        self.ejecting.iter().filter(|&&n| n > 0).count() as u64
    }

    /// The window as a time-series sample ending at `t_s`.
    pub fn sample(&self, t_s: f64) -> Sample {
        let ejected = self.ejected_hosts();
        Sample {
            t_s,
            requests: self.requests,
            errors: self.errors,
            p50_ms: quantile_ms(&self.hist, 0.5),
            p99_ms: quantile_ms(&self.hist, 0.99),
            p999_ms: quantile_ms(&self.hist, 0.999),
            attempts: self.attempts,
            ejected,
            ejections: self.ejections,
            health_changes: self.health_changes,
        }
    }

    fn reset(&mut self) {
        self.hist.reset();
        self.requests = 0;
        self.errors = 0;
        self.attempts = 0;
        self.ejections = 0;
        self.health_changes = 0;
        self.per_endpoint.iter_mut().for_each(|c| *c = 0);
    }
}

/// A run's measurements in progress. See the module docs.
#[derive(Clone, Debug)]
pub struct Recorder {
    warmup_ns: u64,
    hist: Histogram<u64>,
    failure_hist: Histogram<u64>,
    requests: u64,
    successes: u64,
    failures: BTreeMap<String, u64>,
    attempts: u64,
    events: BTreeMap<String, u64>,
    endpoints: Vec<EndpointStats>,
    window: Window,
    timeseries: Vec<Sample>,
    endpoint_series: Vec<Vec<u64>>,
    /// Per endpoint, the proxies ejecting it now (from the outlier events).
    ejecting: Vec<u32>,
    first_measured: Option<u64>,
    last_finish: u64,
    /// Attempts per (hot key, endpoint).
    keys: BTreeMap<(u32, u32), u64>,
    /// Zone names, each endpoint's zone, and attempts per (proxy zone, endpoint zone), when
    /// there is more than one zone.
    zones: Vec<String>,
    endpoint_zone: Vec<u16>,
    flows: Vec<u64>,
    /// Per edge of the call graph, its calls (empty for a single hop).
    edges: Vec<EdgeStats>,
    /// Traced requests' critical paths: how many, their end-to-end time, and per station the
    /// time its own work took on them, ns (empty for a single hop).
    critical_requests: u64,
    critical_end_to_end: u64,
    critical: Vec<u64>,
}

impl Recorder {
    /// A recorder over `endpoints` (every instance, in station order) for a run whose
    /// measurement starts at `warmup_ns`.
    pub fn new(endpoints: Vec<EndpointStats>, warmup_ns: u64) -> Self {
        let n = endpoints.len();
        Recorder {
            warmup_ns,
            hist: latency_histogram(),
            failure_hist: latency_histogram(),
            requests: 0,
            successes: 0,
            failures: BTreeMap::new(),
            attempts: 0,
            events: BTreeMap::new(),
            endpoints,
            window: Window::new(n),
            timeseries: Vec::new(),
            endpoint_series: Vec::new(),
            ejecting: vec![0; n],
            first_measured: None,
            last_finish: 0,
            keys: BTreeMap::new(),
            zones: Vec::new(),
            endpoint_zone: Vec::new(),
            flows: Vec::new(),
            edges: Vec::new(),
            critical_requests: 0,
            critical_end_to_end: 0,
            critical: Vec::new(),
        }
    }

    /// The recorder of a run's world: one endpoint per station, zones from the world.
    pub fn for_world(world: &meshbench_scenario::workload::Workload, warmup_ns: u64) -> Self {
        let endpoints = world
            .stations
            .iter()
            .map(|x| EndpointStats {
                service: x.service.clone(),
                instance: x.index,
                ..EndpointStats::default()
            })
            .collect();
        let mut r = Recorder::new(endpoints, warmup_ns).with_zones(
            world.zones.clone(),
            world.stations.iter().map(|x| x.zone).collect(),
        );
        // Edges are counted when services call services (a single hop's only edges are the
        // clients' requests, which the run's totals already are).
        if world.proxies.len() > world.clients {
            r.edges = world
                .edges
                .iter()
                .map(|(a, b)| EdgeStats::new(a.clone(), b.clone()))
                .collect();
            r.critical = vec![0; world.stations.len()];
        }
        r
    }

    /// A call along edge `edge` (of the world's call graph), made at `started_ns`, finished at
    /// `now_ns` after `attempts` attempts; counted when made after the warm-up.
    #[inline]
    pub fn call_finished(
        &mut self,
        edge: u32,
        result: Finish,
        attempts: u32,
        started_ns: u64,
        now_ns: u64,
    ) {
        if started_ns < self.warmup_ns {
            return;
        }
        if let Some(e) = self.edges.get_mut(edge as usize) {
            e.calls += 1;
            e.attempts += u64::from(attempts);
            if result.is_success() {
                e.successes += 1;
                e.latency
                    .saturating_record(now_ns.saturating_sub(started_ns).max(1));
            }
        }
    }

    /// A traced request ([`meshbench_scenario::graph::traced`]) made at `started_ns` succeeded
    /// at `now_ns`; `parts` is its critical path: (station, ns of that instance's own work:
    /// queueing, service time and compute steps). Whatever of its end-to-end time the parts
    /// leave is network, sidecars, connection setup and retries. Counted when made after the
    /// warm-up, in a world whose services call services.
    pub fn critical_path(&mut self, parts: &[(u32, u64)], started_ns: u64, now_ns: u64) {
        if started_ns < self.warmup_ns || self.critical.is_empty() {
            return;
        }
        self.critical_requests += 1;
        self.critical_end_to_end += now_ns.saturating_sub(started_ns);
        for &(station, ns) in parts {
            if let Some(c) = self.critical.get_mut(station as usize) {
                *c += ns;
            }
        }
    }

    /// Counts attempts per (proxy zone, endpoint zone) too: `zones` names the zones and
    /// `endpoint_zone` gives each endpoint's zone (indices into `zones`). Nothing is counted with
    /// fewer than two zones.
    pub fn with_zones(mut self, zones: Vec<String>, endpoint_zone: Vec<u16>) -> Self {
        if zones.len() > 1 {
            self.flows = vec![0; zones.len() * zones.len()];
            self.zones = zones;
            self.endpoint_zone = endpoint_zone;
        }
        self
    }

    /// Makes room for endpoint `station` (one a live run discovered), described by `stats`.
    /// Stations between the last known and this one get `stats`' service, numbered in order.
    pub fn grow(&mut self, station: usize, stats: EndpointStats) {
        while self.endpoints.len() <= station {
            let n = self.endpoints.len();
            self.endpoints.push(if n == station {
                stats.clone()
            } else {
                EndpointStats {
                    service: stats.service.clone(),
                    instance: n as u32,
                    ..EndpointStats::default()
                }
            });
        }
        let n = self.endpoints.len();
        if self.window.per_endpoint.len() < n {
            self.window.per_endpoint.resize(n, 0);
        }
        if self.window.ejecting.len() < n {
            self.window.ejecting.resize(n, 0);
        }
        if self.ejecting.len() < n {
            self.ejecting.resize(n, 0);
        }
    }

    /// A request arrived at `now_ns`.
    #[inline]
    pub fn arrived(&mut self, now_ns: u64) {
        if now_ns >= self.warmup_ns && self.first_measured.is_none() {
            self.first_measured = Some(now_ns);
        }
    }

    /// An attempt was sent from a proxy in zone `from` to endpoint `station`; `key` is its
    /// request's key, if any.
    #[inline]
    pub fn attempt(&mut self, from: u16, station: usize, key: Option<u32>) {
        if !self.flows.is_empty()
            && let Some(&to) = self.endpoint_zone.get(station)
        {
            let n = self.zones.len();
            if let Some(c) = self.flows.get_mut(usize::from(from) * n + usize::from(to)) {
                *c += 1;
            }
        }
        if let Some(e) = self.endpoints.get_mut(station) {
            e.attempts += 1;
        }
        self.window.attempts += 1;
        if let Some(c) = self.window.per_endpoint.get_mut(station) {
            *c += 1;
        }
        if let Some(k) = key.filter(|&k| k < HOT_KEYS) {
            *self.keys.entry((k, station as u32)).or_insert(0) += 1;
        }
    }

    /// Endpoint `station` failed an attempt (a 5xx, a refused or reset connection).
    #[inline]
    pub fn endpoint_error(&mut self, station: usize) {
        if let Some(e) = self.endpoints.get_mut(station) {
            e.errors += 1;
        }
    }

    /// A request that arrived at `started_ns` finished at `now_ns` after `attempts` attempts.
    /// Returns whether it was measured (arrived after the warm-up).
    #[inline]
    pub fn finished(
        &mut self,
        result: Finish,
        attempts: u32,
        started_ns: u64,
        now_ns: u64,
    ) -> bool {
        let latency = now_ns.saturating_sub(started_ns).max(1);
        let ok = result.is_success();
        self.window.requests += 1;
        self.window.errors += u64::from(!ok);
        if ok {
            self.window.hist.saturating_record(latency);
        }
        if started_ns < self.warmup_ns {
            return false;
        }
        self.last_finish = self.last_finish.max(now_ns);
        self.requests += 1;
        self.attempts += u64::from(attempts);
        if ok {
            self.hist.saturating_record(latency);
            self.successes += 1;
        } else {
            self.failure_hist.saturating_record(latency);
            if let Some(n) = self.failures.get_mut(result.class()) {
                *n += 1;
            } else {
                self.failures.insert(result.class().to_owned(), 1);
            }
        }
        true
    }

    /// A policy event from the proxy whose endpoint 0 is station `offset`.
    pub fn event(&mut self, offset: usize, e: &PolicyEvent) {
        self.event_mapped(e, |ep| offset + ep);
    }

    /// A policy event from a proxy whose endpoint `i` is station `station(i)` (one whose
    /// endpoints were discovered during a live run).
    pub fn event_mapped(&mut self, e: &PolicyEvent, station: impl Fn(usize) -> usize) {
        match e {
            PolicyEvent::Outlier(OutlierEvent::Ejected { endpoint, .. }) => {
                let at = station(endpoint.index());
                if let Some(s) = self.endpoints.get_mut(at) {
                    s.ejections += 1;
                }
                if let Some(n) = self.ejecting.get_mut(at) {
                    *n += 1;
                }
                self.window.ejections += 1;
            }
            PolicyEvent::Outlier(OutlierEvent::Unejected { endpoint }) => {
                if let Some(n) = self.ejecting.get_mut(station(endpoint.index())) {
                    *n = n.saturating_sub(1);
                }
            }
            PolicyEvent::HealthChanged { .. } => self.window.health_changes += 1,
            _ => {}
        }
        let kind = e.kind();
        if let Some(n) = self.events.get_mut(kind) {
            *n += 1;
        } else {
            self.events.insert(kind.to_owned(), 1);
        }
    }

    /// Counts an event of the run itself (not of a policy) under `kind`, such as the
    /// simulator's `cut_short_windows`.
    pub fn note(&mut self, kind: &str) {
        *self.events.entry(kind.to_owned()).or_insert(0) += 1;
    }

    /// Ends the current window at `t_s` into the time series.
    pub fn close_window(&mut self, t_s: f64) {
        self.window.ejecting.clone_from(&self.ejecting);
        self.timeseries.push(self.window.sample(t_s));
        self.endpoint_series.push(self.window.per_endpoint.clone());
        self.window.reset();
    }

    /// Takes the current window's counts and starts a new one (for a driver that merges the
    /// windows of several recorders itself).
    pub fn take_window(&mut self) -> Window {
        self.window.ejecting.clone_from(&self.ejecting);
        let w = self.window.clone();
        self.window.reset();
        w
    }

    /// Appends a sample made elsewhere (merged windows) to the time series.
    pub fn push_sample(&mut self, sample: Sample, per_endpoint: Vec<u64>) {
        self.timeseries.push(sample);
        self.endpoint_series.push(per_endpoint);
    }

    /// Windows closed so far.
    pub fn windows(&self) -> usize {
        self.timeseries.len()
    }

    /// Adds another recorder's totals (another proxy of the same run); windows are not merged
    /// (see [`Recorder::take_window`]).
    pub fn merge(&mut self, o: &Recorder) {
        let _ = self.hist.add(&o.hist);
        let _ = self.failure_hist.add(&o.failure_hist);
        self.requests += o.requests;
        self.successes += o.successes;
        self.attempts += o.attempts;
        for (k, v) in &o.failures {
            *self.failures.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &o.events {
            *self.events.entry(k.clone()).or_insert(0) += v;
        }
        // Another proxy may know more endpoints (discovered during a live run): their names,
        // with the counts added below.
        for e in o.endpoints.iter().skip(self.endpoints.len()) {
            self.endpoints.push(EndpointStats {
                service: e.service.clone(),
                instance: e.instance,
                ..EndpointStats::default()
            });
        }
        for (a, b) in self.endpoints.iter_mut().zip(&o.endpoints) {
            a.add(b);
        }
        for (k, v) in &o.keys {
            *self.keys.entry(*k).or_insert(0) += v;
        }
        for (a, b) in self.flows.iter_mut().zip(&o.flows) {
            *a += b;
        }
        for (a, b) in self.edges.iter_mut().zip(&o.edges) {
            a.add(b);
        }
        self.critical_requests += o.critical_requests;
        self.critical_end_to_end += o.critical_end_to_end;
        for (a, b) in self.critical.iter_mut().zip(&o.critical) {
            *a += b;
        }
        self.first_measured = match (self.first_measured, o.first_measured) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_finish = self.last_finish.max(o.last_finish);
    }

    /// Seconds from the first measured arrival to the last measured finish (the measurement
    /// window of a run sized by request count).
    pub fn measured_span_s(&self) -> f64 {
        self.last_finish
            .saturating_sub(self.first_measured.unwrap_or(0)) as f64
            / 1e9
    }

    /// The run's result; `measured_seconds` is the measurement window's length.
    pub fn finish(mut self, id: RunId, measured_seconds: f64) -> RunResult {
        // Rows from before an endpoint was discovered are shorter: pad them.
        let n = self.endpoints.len();
        for row in &mut self.endpoint_series {
            row.resize(n.max(row.len()), 0);
        }
        let critical_path = (self.critical_requests > 0).then(|| {
            let mut services = BTreeMap::new();
            for (e, &ns) in self.endpoints.iter().zip(&self.critical) {
                *services.entry(e.service.clone()).or_insert(0) += ns;
            }
            CriticalPath {
                requests: self.critical_requests,
                end_to_end_ns: self.critical_end_to_end,
                services,
            }
        });
        RunResult {
            point: id.point,
            coords: id.coords,
            strategy: id.strategy,
            replication: id.replication,
            seed: id.seed,
            latency: self.hist,
            failure_latency: self.failure_hist,
            requests: self.requests,
            successes: self.successes,
            failures: self.failures,
            attempts: self.attempts,
            measured_seconds,
            keys: self
                .keys
                .into_iter()
                .map(|((key, station), attempts)| {
                    let e = &self.endpoints[station as usize];
                    KeyShare {
                        key,
                        service: e.service.clone(),
                        instance: e.instance,
                        attempts,
                    }
                })
                .collect(),
            zone_flows: {
                let n = self.zones.len();
                self.flows
                    .iter()
                    .enumerate()
                    .map(|(i, &attempts)| ZoneFlow {
                        from: self.zones[i / n].clone(),
                        to: self.zones[i % n].clone(),
                        attempts,
                    })
                    .collect()
            },
            endpoints: self.endpoints,
            timeseries: self.timeseries,
            events: self.events,
            endpoint_series: self.endpoint_series,
            sim_events: 0,
            live: None,
            edges: self.edges,
            critical_path,
        }
    }
}

/// Which run a result belongs to.
#[derive(Clone, Debug, Default)]
pub struct RunId {
    /// Sweep point index.
    pub point: usize,
    /// The sweep point's values.
    pub coords: Vec<String>,
    /// Strategy name.
    pub strategy: String,
    /// Replication index.
    pub replication: u32,
    /// The replication's seed.
    pub seed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::outlier::EjectionReason;
    use mesh_core::{Duration, EndpointId, Outcome};

    fn recorder(endpoints: usize) -> Recorder {
        Recorder::new(vec![EndpointStats::default(); endpoints], 0)
    }

    fn ejected(i: u32) -> PolicyEvent {
        PolicyEvent::Outlier(OutlierEvent::Ejected {
            endpoint: EndpointId(i),
            reason: EjectionReason::Consecutive5xx,
            duration: Duration::from_secs(30),
            ejections: 1,
        })
    }

    #[test]
    fn a_host_ejected_by_many_proxies_counts_once() {
        // Two proxies over the same 4 stations (offset 0): both eject station 2, one station 3.
        let mut r = recorder(4);
        r.event(0, &ejected(2));
        r.event(0, &ejected(2));
        r.event(0, &ejected(3));
        r.close_window(1.0);
        // One proxy lets station 2 back: the other still ejects it.
        r.event(
            0,
            &PolicyEvent::Outlier(OutlierEvent::Unejected {
                endpoint: EndpointId(2),
            }),
        );
        r.close_window(2.0);
        // Proxies with their own recorders (live mode) merge window by window.
        let mut other = recorder(4);
        other.event(0, &ejected(0));
        let mut w = r.take_window();
        w.merge(&other.take_window());
        let res = r.finish(RunId::default(), 1.0);
        let ej: Vec<u64> = res.timeseries.iter().map(|s| s.ejected).collect();
        let ejections: Vec<u64> = res.timeseries.iter().map(|s| s.ejections).collect();
        assert_eq!(ej, [2, 2]);
        assert_eq!(ejections, [3, 0]);
        assert_eq!(w.sample(3.0).ejected, 3, "stations 0, 2 and 3");
    }

    #[test]
    fn failures_stay_out_of_the_success_latency() {
        let mut r = recorder(1);
        let ms = 1_000_000;
        for i in 0..99 {
            r.finished(Finish::Response(Outcome::Success), 1, i, i + 10 * ms);
        }
        // A fast 503 and a 2 s timeout: neither moves the successes' percentiles.
        r.finished(Finish::Response(Outcome::ServerError), 1, 0, ms / 10);
        r.finished(Finish::Timeout, 1, 0, 2000 * ms);
        r.close_window(1.0);
        let res = r.finish(RunId::default(), 1.0);
        assert_eq!(res.latency.len(), 99);
        assert_eq!(res.failure_latency.len(), 2);
        assert!((res.metric("p50_ms") - 10.0).abs() < 0.01);
        assert!((res.metric("p99_ms") - 10.0).abs() < 0.01);
        assert!((res.metric("failure_p99_ms") - 2000.0).abs() < 2.0);
        assert!((res.metric("error_rate") - 2.0 / 101.0).abs() < 1e-12);
        let w = &res.timeseries[0];
        assert_eq!((w.requests, w.errors), (101, 2));
        assert!((w.p99_ms - 10.0).abs() < 0.1, "{}", w.p99_ms);
    }
}
