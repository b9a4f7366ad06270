//! Host sets and selection: the membership view, health and ejection state folded into
//! per-priority host sets (healthy, degraded, all, and per zone), Envoy's priority and zone
//! choice, and the balancer of the chosen set.

use super::*;

impl Cluster {
    // ----- endpoints -------------------------------------------------------------------------

    pub(super) fn track(&mut self, ep: EndpointId, now: Instant) {
        if let Some(h) = &mut self.health {
            h.add_endpoint(ep, now);
        }
        if let Some(o) = &mut self.outlier {
            o.add_endpoint(ep);
        }
        if let Some(a) = &mut self.accrual {
            a.add_endpoint(ep, now);
        }
    }

    pub(super) fn untrack(&mut self, ep: EndpointId) {
        if let Some(h) = &mut self.health {
            h.remove_endpoint(ep);
        }
        if let Some(o) = &mut self.outlier {
            o.remove_endpoint(ep);
        }
        if let Some(a) = &mut self.accrual {
            a.remove_endpoint(ep);
        }
    }

    pub(super) fn on_membership(&mut self, change: &Change, now: Instant) {
        let change = match change {
            Change::Add { endpoint, meta } if meta.priority > MAX_PRIORITY => Change::Add {
                endpoint: *endpoint,
                meta: EndpointMeta {
                    priority: MAX_PRIORITY,
                    ..meta.clone()
                },
            },
            Change::Priority { endpoint, priority } if *priority > MAX_PRIORITY => {
                Change::Priority {
                    endpoint: *endpoint,
                    priority: MAX_PRIORITY,
                }
            }
            c => c.clone(),
        };
        match self.view.apply(&change, now) {
            Applied::Added => {
                self.track(change.endpoint(), now);
                self.dirty = true;
            }
            Applied::Removed => {
                self.untrack(change.endpoint());
                self.dirty = true;
            }
            Applied::Updated => self.dirty = true,
            Applied::Ignored => {}
        }
    }

    pub(super) fn on_probe_done(
        &mut self,
        probe: ProbeId,
        ep: EndpointId,
        result: ProbeResult,
        now: Instant,
    ) {
        let Some(h) = &mut self.health else {
            return;
        };
        if !h.on_probe_result(probe, ep, result, now) {
            return;
        }
        // Envoy's successful_active_health_check_uneject_host: a pass on a host that passes
        // active health checking clears its ejection at once.
        if result == ProbeResult::Pass
            && h.is_healthy(ep)
            && let Some(o) = &mut self.outlier
            && o.config().successful_active_health_check_uneject_host
        {
            o.uneject(ep);
        }
    }

    /// Moves component events to the outputs and notes availability changes.
    pub(super) fn absorb(&mut self, now: Instant) {
        if let Some(h) = &mut self.health {
            while let Some(p) = h.poll_probe() {
                self.outputs.push_back(Output::Probe(p));
            }
            while let Some(e) = h.poll_event() {
                self.dirty = true;
                let i = e.endpoint.index();
                if self.hc_passed.len() <= i {
                    self.hc_passed.resize(i + 1, false);
                }
                if e.healthy {
                    // Slow start counts from the last time a host turned healthy (Envoy), except
                    // the first pass of a host present from the start, which is not slow-started.
                    let initial = self
                        .view
                        .get(e.endpoint)
                        .is_some_and(|m| m.healthy_since.is_none());
                    if self.hc_passed[i] || !initial {
                        self.view.mark_healthy(e.endpoint, now);
                    }
                }
                // After a pass, or after failing (a host that started healthy), the next pass
                // is a return to health, which is slow-started.
                self.hc_passed[i] = true;
                self.outputs
                    .push_back(Output::Event(PolicyEvent::HealthChanged {
                        endpoint: e.endpoint,
                        healthy: e.healthy,
                    }));
            }
        }
        if let Some(o) = &mut self.outlier {
            while let Some(e) = o.poll_event() {
                if !matches!(e, OutlierEvent::Skipped { .. }) {
                    self.dirty = true;
                }
                self.outputs
                    .push_back(Output::Event(PolicyEvent::Outlier(e)));
            }
        }
        if let Some(a) = &mut self.accrual {
            while let Some(e) = a.poll_event() {
                self.dirty = true;
                self.outputs
                    .push_back(Output::Event(PolicyEvent::Accrual(e)));
            }
        }
        while let Some(e) = self.breakers.poll_event() {
            self.outputs
                .push_back(Output::Event(PolicyEvent::Breaker(e)));
        }
    }

    /// Recomputes the host sets, the priority load and panic, and updates balancers whose host
    /// set changed.
    pub(super) fn rebuild(&mut self, now: Instant) {
        self.dirty = false;
        for l in &mut self.levels {
            l.healthy.clear();
            l.degraded.clear();
            l.all.clear();
            l.counts = LevelHosts::default();
            l.zone_healthy.iter_mut().for_each(Vec::clear);
            l.zone_healthy.resize_with(self.zones.len(), Vec::new);
            l.zone_total.clear();
            l.zone_total.resize(self.zones.len(), 0);
        }
        let mut top = 0usize;
        for (ep, m) in self.view.iter() {
            if m.meta.health == Health::Draining {
                continue;
            }
            let p = m.meta.priority.min(MAX_PRIORITY) as usize;
            top = top.max(p + 1);
            if self.levels.len() <= p {
                self.levels.resize_with(p + 1, Level::default);
            }
            let c = Candidate {
                id: ep,
                weight: m.meta.weight,
                slow_start_since: m.healthy_since,
            };
            let allow = Self::allows(&self.health, &self.outlier, &self.accrual, ep);
            let l = &mut self.levels[p];
            l.all.push(c);
            l.counts.total += 1;
            // Hosts in zones the local cluster does not list count for no zone, which makes
            // the zone counts differ and turns zone-aware routing off, as in Envoy.
            let zone = if self.zones.is_empty() {
                None
            } else {
                l.zone_healthy.resize_with(self.zones.len(), Vec::new);
                l.zone_total.resize(self.zones.len(), 0);
                self.zones.iter().position(|z| *z == m.meta.zone)
            };
            if let Some(z) = zone {
                l.zone_total[z] += 1;
            }
            if allow && m.meta.health == Health::Healthy {
                l.healthy.push(c);
                l.counts.healthy += 1;
                if let Some(z) = zone {
                    l.zone_healthy[z].push(c);
                }
            } else if allow && m.meta.health == Health::Degraded {
                l.degraded.push(c);
                l.counts.degraded += 1;
            }
        }
        self.levels.truncate(top.max(1));
        if self.levels.is_empty() {
            self.levels.push(Level::default());
        }
        let counts: Vec<LevelHosts> = self.levels.iter().map(|l| l.counts).collect();
        let load = priority_load(&counts, &self.config.priority);
        if load.healthy != self.load.healthy || load.degraded != self.load.degraded {
            self.outputs
                .push_back(Output::Event(PolicyEvent::PriorityLoad {
                    healthy: load.healthy.clone(),
                    degraded: load.degraded.clone(),
                }));
        }
        for p in 0..load.panic.len().max(self.load.panic.len()) {
            let was = self.load.panic.get(p).copied().unwrap_or(false);
            let is = load.panic.get(p).copied().unwrap_or(false);
            if was != is {
                self.outputs.push_back(Output::Event(PolicyEvent::Panic {
                    priority: p as u32,
                    entered: is,
                }));
            }
        }
        self.load = load;
        if let Some(z) = &self.config.zone_aware {
            let local: Vec<u64> = self
                .zones
                .iter()
                .map(|name| z.local_cluster.get(name).copied().unwrap_or(0))
                .collect();
            for (p, l) in self.levels.iter_mut().enumerate() {
                let mut upstream: Vec<u64> =
                    l.zone_healthy.iter().map(|h| h.len() as u64).collect();
                let unlisted = l.healthy.len() as u64 - upstream.iter().sum::<u64>();
                if unlisted > 0 {
                    upstream.push(unlisted);
                }
                l.routing = zone_routing(&local, &upstream, z, false, self.load.panic[p]);
            }
        }
        if let Some(lw) = &self.config.locality_weighted_lb {
            let opf = self.config.priority.overprovisioning_factor;
            for (p, l) in self.levels.iter_mut().enumerate() {
                let localities: Vec<Locality> = self
                    .zones
                    .iter()
                    .enumerate()
                    .map(|(i, name)| Locality {
                        weight: lw.locality_weights.get(name).copied().unwrap_or(1),
                        available: l.zone_healthy.get(i).map_or(0, |h| h.len() as u32),
                        total: l.zone_total.get(i).copied().unwrap_or(0),
                    })
                    .collect();
                let seed = self.seed.fork("locality").fork_index(p as u64);
                l.locality = LocalityPicker::new(&localities, opf, seed).ok();
            }
        }
        for (i, slot) in self.balancers.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            let (p, class) = (i / CLASSES, i % CLASSES);
            let hosts = self.levels.get(p).map_or(&[][..], |l| match class {
                HEALTHY => &l.healthy[..],
                DEGRADED => &l.degraded[..],
                ALL => &l.all[..],
                z => l.zone_healthy.get(z - 3).map_or(&[][..], |h| &h[..]),
            });
            if slot.hosts != hosts {
                slot.hosts.clear();
                slot.hosts.extend_from_slice(hosts);
                slot.balancer.set_endpoints(hosts, now);
            }
        }
    }

    // ----- selection -------------------------------------------------------------------------

    pub(super) fn pick(&mut self, r: u32, now: Instant) -> Option<(EndpointId, u16)> {
        if self.dirty {
            self.rebuild(now);
        }
        let single = self.levels.len() == 1 && self.load.degraded[0] == 0;
        let (p, class) = if single {
            (0, if self.load.panic[0] { ALL } else { HEALTHY })
        } else {
            let h = next_u64(&mut self.rng);
            match choose_priority(h, &self.load)? {
                (p, crate::priority::Availability::Healthy) => {
                    (p, if self.load.panic[p] { ALL } else { HEALTHY })
                }
                (p, crate::priority::Availability::Degraded) => (p, DEGRADED),
            }
        };
        let class = match (&self.config.zone_aware, class) {
            (Some(z), ALL) if z.fail_traffic_on_panic => return None,
            (Some(z), HEALTHY) => match choose_zone(&self.levels[p].routing, z, &mut self.rng) {
                Some(zone) if !self.levels[p].zone_healthy[zone].is_empty() => 3 + zone,
                _ => HEALTHY,
            },
            // Locality-weighted: the zone by EDF on its effective weight, then the host.
            (None, HEALTHY) if self.levels[p].locality.is_some() => {
                let l = &mut self.levels[p];
                match l.locality.as_mut().and_then(LocalityPicker::pick) {
                    Some(zone) if !l.zone_healthy[zone].is_empty() => 3 + zone,
                    _ => HEALTHY,
                }
            }
            _ => class,
        };
        let idx = p * CLASSES + class;
        if self.balancers.len() <= idx {
            self.balancers.resize_with(idx + 1, || None);
        }
        if self.balancers[idx].is_none() {
            let hosts = match class {
                HEALTHY => self.levels[p].healthy.clone(),
                DEGRADED => self.levels[p].degraded.clone(),
                ALL => self.levels[p].all.clone(),
                z => self.levels[p].zone_healthy[z - 3].clone(),
            };
            let mut balancer = self
                .config
                .balancer
                .build(&[], self.seed.fork("balancer").fork_index(idx as u64), now)
                .expect("balancer config validated in Cluster::new");
            balancer.set_endpoints(&hosts, now);
            self.balancers[idx] = Some(Slot { balancer, hosts });
        }
        let slot = self.balancers[idx].as_mut().expect("built above");
        let req = &self.reqs[r as usize];
        let cx = PickCtx { hash: req.hash };
        let mut ep = slot.balancer.pick(&cx, now)?;
        if self.previous_hosts && !req.tried.is_empty() {
            let tries = self
                .config
                .retries
                .as_ref()
                .map_or(0, |c| c.host_selection_retry_max_attempts);
            for _ in 0..tries {
                if !req.tried.contains(&ep) {
                    break;
                }
                ep = slot.balancer.pick(&cx, now)?;
            }
        }
        while let Some(probe) = slot.balancer.poll_probe() {
            self.outputs
                .push_back(Output::BalancerProbe { endpoint: probe });
        }
        Some((ep, idx as u16))
    }
}
