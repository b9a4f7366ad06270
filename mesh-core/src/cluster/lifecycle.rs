//! The request and attempt lifecycle: admission, dispatch, attempt ends, retries with back-off
//! and budgets, hedging, the request and per-try timeouts, and finishing.

use super::*;

impl Cluster {
    // ----- requests and attempts -------------------------------------------------------------

    pub(super) fn on_request(&mut self, id: RequestId, hash: Option<u64>, now: Instant) {
        if let Some(b) = &mut self.budget {
            b.deposit(now);
        }
        let r = match self.free_reqs.pop() {
            Some(r) => r,
            None => {
                self.reqs.push(Req::default());
                (self.reqs.len() - 1) as u32
            }
        };
        let deadline = (!self.config.timeout.is_zero()).then(|| {
            self.timers
                .insert(now + self.config.timeout, Timer::Deadline(r))
        });
        let req = &mut self.reqs[r as usize];
        req.live = true;
        req.id = id;
        req.hash = hash;
        req.started = now;
        req.attempts = 0;
        req.in_flight.clear();
        req.tried.clear();
        req.last = None;
        req.deadline = deadline;
        req.backoff = None;
        req.hedge = None;
        req.retry_held = false;
        req.pending_hedge = false;
        self.live_requests += 1;
        self.dispatch(r, Kind::Original, false, now);
    }

    /// Sends one attempt of request `r`. `holds_retry`: the attempt carries a retry unit
    /// already taken. When no attempt can go and none is in flight, the request ends.
    pub(super) fn dispatch(&mut self, r: u32, kind: Kind, holds_retry: bool, now: Instant) {
        let Some((ep, balancer)) = self.pick(r, now) else {
            if holds_retry {
                self.breakers.release(Resource::Retries);
            }
            self.end_if_idle(r, Finish::NoHealthyUpstream, now);
            return;
        };
        if !self.breakers.try_acquire(Resource::Requests) {
            if holds_retry {
                self.breakers.release(Resource::Retries);
            }
            self.end_if_idle(r, Finish::Overflow, now);
            return;
        }
        if !self.pool_admits(ep) {
            self.breakers.release(Resource::Requests);
            if holds_retry {
                self.breakers.release(Resource::Retries);
            }
            self.end_if_idle(r, Finish::Overflow, now);
            return;
        }
        let a = match self.free_atts.pop() {
            Some(a) => a,
            None => {
                self.atts.push(Att::default());
                (self.atts.len() - 1) as u32
            }
        };
        let att = &mut self.atts[a as usize];
        att.live = true;
        att.req = r;
        att.ep = ep;
        att.sent_at = now;
        att.balancer = balancer;
        att.holds_retry = holds_retry;
        att.soft_timed_out = false;
        att.timer = None;
        let attempt = AttemptId(u64::from(att.generation) << 32 | u64::from(a));
        self.active_attempts += 1;
        if !self.traffic_seen {
            self.traffic_seen = true;
            if let Some(h) = &mut self.health {
                h.note_traffic();
            }
        }
        if let Some(slot) = &mut self.balancers[usize::from(balancer)] {
            slot.balancer.on_dispatch(ep, now);
        }
        if let Some(acc) = &mut self.accrual {
            acc.on_dispatch(ep);
            if !acc.is_available(ep) {
                self.dirty = true;
            }
        }
        let req = &mut self.reqs[r as usize];
        let retry = req.attempts;
        req.attempts += 1;
        req.in_flight.push(a);
        req.tried.push(ep);
        let id = req.id;
        if kind == Kind::Hedge {
            self.outputs
                .push_back(Output::Event(PolicyEvent::HedgeSent {
                    request: id,
                    attempt,
                }));
        }
        let overall = self.overall_deadline(r);
        let att = &mut self.atts[a as usize];
        att.retry = retry;
        att.deadline = overall;
        att.conn = None;
        att.pending = false;
        self.pool_send(a, now);
        self.arm_hedge(r, now);
    }

    /// Request `r`'s overall deadline (its route timeout from its start), if it has one.
    fn overall_deadline(&self, r: u32) -> Option<Instant> {
        let req = &self.reqs[r as usize];
        req.deadline.map(|_| req.started + self.config.timeout)
    }

    /// Attempt `a` goes on the wire now: its per-try timer starts, and its deadline is the
    /// sooner of the per-try and the overall one. Envoy starts the per-try timer when the
    /// connection pool hands the attempt a connection (`UpstreamRequest::onPoolReady`), so time
    /// spent pending in the pool, and on the connection's setup, counts only against the
    /// overall timeout.
    pub(super) fn start_try(&mut self, a: u32, now: Instant) {
        let Some(d) = self.per_try else {
            return;
        };
        let per_try = now + d;
        let timer = self.timers.insert(per_try, Timer::PerTry(a));
        let overall = self.overall_deadline(self.atts[a as usize].req);
        let att = &mut self.atts[a as usize];
        att.timer = Some(timer);
        att.deadline = Some(overall.map_or(per_try, |o| o.min(per_try)));
    }

    /// Emits attempt `a`'s `Send` (on `connection`, when pooled).
    pub(super) fn emit_send(&mut self, a: u32, connection: Option<ConnectionId>) {
        let att = &self.atts[a as usize];
        self.outputs.push_back(Output::Send {
            attempt: AttemptId(u64::from(att.generation) << 32 | u64::from(a)),
            request: self.reqs[att.req as usize].id,
            endpoint: att.ep,
            retry: att.retry,
            deadline: att.deadline,
            connection,
        });
    }

    pub(super) fn arm_hedge(&mut self, r: u32, now: Instant) {
        let Some(delay) = self.config.hedging.as_ref().and_then(|h| h.hedging_delay) else {
            return;
        };
        let req = &mut self.reqs[r as usize];
        if let Some(t) = req.hedge.take() {
            self.timers.cancel(t);
        }
        if req.attempts < self.max_attempts {
            req.hedge = Some(self.timers.insert(now + delay, Timer::Hedge(r)));
        }
    }

    /// Ends request `r` with `finish` unless an attempt or a retry is still pending.
    pub(super) fn end_if_idle(&mut self, r: u32, finish: Finish, now: Instant) {
        let req = &self.reqs[r as usize];
        if !req.in_flight.is_empty() || req.backoff.is_some() {
            return;
        }
        let finish = match (finish, req.last) {
            // A retry that could not go reports the failure that prompted it.
            (Finish::NoHealthyUpstream | Finish::Overflow, Some(o)) if req.attempts > 0 => {
                Finish::Response(o)
            }
            (f, _) => f,
        };
        self.finish(r, finish, now);
    }

    pub(super) fn attempt_slot(&self, id: AttemptId) -> Option<u32> {
        let slot = (id.0 & 0xFFFF_FFFF) as u32;
        let generation = (id.0 >> 32) as u32;
        let a = self.atts.get(slot as usize)?;
        (a.live && a.generation == generation).then_some(slot)
    }

    /// Takes attempt `a` out of flight: timers, breaker units, balancer count. With `report`,
    /// its outcome also feeds outlier detection, failure accrual and the retry throttle.
    pub(super) fn close_attempt(
        &mut self,
        a: u32,
        outcome: Outcome,
        report: bool,
        now: Instant,
    ) -> u32 {
        self.pool_release(a, false, outcome, now);
        let att = &mut self.atts[a as usize];
        att.live = false;
        att.generation = att.generation.wrapping_add(1);
        let (r, ep, sent_at, balancer, holds_retry, soft) = (
            att.req,
            att.ep,
            att.sent_at,
            att.balancer,
            att.holds_retry,
            att.soft_timed_out,
        );
        if let Some(t) = att.timer.take() {
            self.timers.cancel(t);
        }
        self.free_atts.push(a);
        self.active_attempts -= 1;
        self.breakers.release(Resource::Requests);
        if holds_retry {
            self.breakers.release(Resource::Retries);
        }
        if let Some(slot) = &mut self.balancers[usize::from(balancer)] {
            slot.balancer.on_complete(ep, sent_at, outcome, now);
        }
        // A soft (hedged) per-try timeout already counted this attempt as a timeout.
        if report && !(soft && outcome == Outcome::Timeout) {
            if let Some(o) = &mut self.outlier {
                o.on_outcome(ep, outcome, now);
            }
            if let Some(acc) = &mut self.accrual {
                acc.on_outcome(ep, outcome, now);
            }
            self.throttle_count(outcome);
        } else if let Some(acc) = &mut self.accrual {
            acc.on_cancel(ep);
        }
        let req = &mut self.reqs[r as usize];
        if let Some(i) = req.in_flight.iter().position(|&x| x == a) {
            req.in_flight.swap_remove(i);
        }
        r
    }

    pub(super) fn throttle_count(&mut self, outcome: Outcome) {
        if let Some(b) = &mut self.budget {
            let retriable = self
                .config
                .retries
                .as_ref()
                .is_some_and(|c| c.retriable(outcome));
            if outcome == Outcome::Success {
                b.on_attempt(true);
            } else if retriable {
                b.on_attempt(false);
            }
        }
    }

    pub(super) fn on_attempt_done(
        &mut self,
        attempt: AttemptId,
        outcome: Outcome,
        load: Option<LoadReport>,
        now: Instant,
    ) {
        let Some(a) = self.attempt_slot(attempt) else {
            return;
        };
        if let Some(report) = load {
            let (ep, balancer) = (self.atts[a as usize].ep, self.atts[a as usize].balancer);
            if let Some(slot) = &mut self.balancers[usize::from(balancer)] {
                slot.balancer.on_load_report(ep, &report, now);
            }
        }
        self.pool_release(a, true, outcome, now);
        let r = self.close_attempt(a, outcome, true, now);
        self.absorb(now);
        self.after_failure_or_success(r, outcome, now);
    }

    /// Decides what an attempt's end means for its request.
    pub(super) fn after_failure_or_success(&mut self, r: u32, outcome: Outcome, now: Instant) {
        let retriable = outcome != Outcome::Success
            && self
                .config
                .retries
                .as_ref()
                .is_some_and(|c| c.retriable(outcome));
        if !retriable {
            self.finish(r, Finish::Response(outcome), now);
            return;
        }
        let req = &mut self.reqs[r as usize];
        req.last = Some(outcome);
        if !req.in_flight.is_empty() || req.backoff.is_some() {
            // Other attempts are still out (hedging): this failure is discarded.
            return;
        }
        if !self.schedule_retry(r, Kind::Retry, true, now) {
            self.finish(r, Finish::Response(outcome), now);
        }
    }

    /// Takes a retry unit for request `r` and sends (after back-off, if `backoff`) a retry or
    /// hedge. False when attempts or the budget ran out.
    pub(super) fn schedule_retry(
        &mut self,
        r: u32,
        kind: Kind,
        backoff: bool,
        now: Instant,
    ) -> bool {
        if self.config.retries.is_none() {
            return false;
        }
        let (attempts, id) = {
            let req = &self.reqs[r as usize];
            (req.attempts, req.id)
        };
        if attempts >= self.max_attempts {
            return false;
        }
        let granted = match &mut self.budget {
            None => self.breakers.try_acquire(Resource::Retries),
            Some(RetryBudget::Envoy {
                percent,
                min_concurrency,
            }) => {
                let limit =
                    RetryBudget::envoy_limit(*percent, *min_concurrency, self.active_attempts);
                self.breakers.try_acquire_within(Resource::Retries, limit)
            }
            Some(b) => {
                b.try_withdraw(
                    self.active_attempts,
                    self.breakers.current(Resource::Retries),
                    now,
                ) && self
                    .breakers
                    .try_acquire_within(Resource::Retries, u64::MAX)
            }
        };
        if !granted {
            self.absorb(now);
            self.outputs
                .push_back(Output::Event(PolicyEvent::BudgetExhausted { request: id }));
            return false;
        }
        let delay = match (&self.config.retries, backoff) {
            (Some(c), true) => c.retry_back_off.delay(attempts, &mut self.rng),
            _ => Duration::ZERO,
        };
        if delay.is_zero() {
            self.dispatch(r, kind, true, now);
        } else {
            let t = self.timers.insert(now + delay, Timer::Backoff(r));
            let req = &mut self.reqs[r as usize];
            req.backoff = Some(t);
            req.retry_held = true;
            req.pending_hedge = kind == Kind::Hedge;
        }
        true
    }

    /// Ends request `r`: cancels what is left of it and reports.
    pub(super) fn finish(&mut self, r: u32, result: Finish, now: Instant) {
        while let Some(&a) = self.reqs[r as usize].in_flight.last() {
            let ep = self.atts[a as usize].ep;
            let attempt =
                AttemptId(u64::from(self.atts[a as usize].generation) << 32 | u64::from(a));
            let timed_out = result == Finish::Timeout;
            let outcome = if timed_out {
                Outcome::Timeout
            } else {
                Outcome::LocalError
            };
            // An attempt still waiting for a connection never reached its endpoint.
            let sent = !self.atts[a as usize].pending;
            self.close_attempt(a, outcome, timed_out && sent, now);
            if sent {
                self.outputs.push_back(Output::Cancel {
                    attempt,
                    endpoint: ep,
                    timed_out,
                });
            }
        }
        let req = &mut self.reqs[r as usize];
        for t in [req.deadline.take(), req.backoff.take(), req.hedge.take()]
            .into_iter()
            .flatten()
        {
            self.timers.cancel(t);
        }
        if std::mem::take(&mut req.retry_held) {
            self.breakers.release(Resource::Retries);
        }
        req.live = false;
        self.outputs.push_back(Output::Finished {
            request: req.id,
            result,
            attempts: req.attempts,
            started: req.started,
        });
        self.free_reqs.push(r);
        self.live_requests -= 1;
    }

    // ----- timers ----------------------------------------------------------------------------

    pub(super) fn on_timeout(&mut self, now: Instant) {
        if let Some(o) = &mut self.outlier {
            o.handle_timeout(now);
        }
        if let Some(a) = &mut self.accrual {
            a.handle_timeout(now);
        }
        if let Some(h) = &mut self.health {
            h.handle_timeout(now);
        }
        self.absorb(now);
        while let Some((_, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Deadline(r) => {
                    self.reqs[r as usize].deadline = None;
                    self.finish(r, Finish::Timeout, now);
                }
                Timer::Backoff(r) => {
                    let req = &mut self.reqs[r as usize];
                    req.backoff = None;
                    req.retry_held = false;
                    let kind = if std::mem::take(&mut req.pending_hedge) {
                        Kind::Hedge
                    } else {
                        Kind::Retry
                    };
                    self.dispatch(r, kind, true, now);
                }
                Timer::Hedge(r) => {
                    let req = &mut self.reqs[r as usize];
                    req.hedge = None;
                    if !req.in_flight.is_empty() && req.backoff.is_none() {
                        self.schedule_retry(r, Kind::Hedge, false, now);
                    }
                }
                Timer::PerTry(a) => self.on_per_try_timeout(a, now),
                Timer::Idle(c) => self.on_idle(c),
            }
            self.absorb(now);
        }
    }

    pub(super) fn on_per_try_timeout(&mut self, a: u32, now: Instant) {
        self.atts[a as usize].timer = None;
        let hedge = self
            .config
            .hedging
            .as_ref()
            .is_some_and(|h| h.hedge_on_per_try_timeout);
        if hedge {
            // Envoy's onSoftPerTryTimeout: count a timeout, keep the attempt, send another.
            let (ep, r) = (self.atts[a as usize].ep, self.atts[a as usize].req);
            self.atts[a as usize].soft_timed_out = true;
            if let Some(o) = &mut self.outlier {
                o.on_outcome(ep, Outcome::Timeout, now);
            }
            if let Some(acc) = &mut self.accrual {
                acc.on_outcome(ep, Outcome::Timeout, now);
            }
            self.throttle_count(Outcome::Timeout);
            self.absorb(now);
            if self.reqs[r as usize].backoff.is_none() {
                self.schedule_retry(r, Kind::Hedge, true, now);
            }
            return;
        }
        let att = &self.atts[a as usize];
        let attempt = AttemptId(u64::from(att.generation) << 32 | u64::from(a));
        let ep = att.ep;
        let sent = !att.pending;
        let r = self.close_attempt(a, Outcome::Timeout, sent, now);
        if sent {
            self.outputs.push_back(Output::Cancel {
                attempt,
                endpoint: ep,
                timed_out: true,
            });
        }
        self.absorb(now);
        self.after_failure_or_success(r, Outcome::Timeout, now);
    }
}
