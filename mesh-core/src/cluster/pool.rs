//! Connection pools: per-endpoint connections under the cluster's `max_connections` and
//! `max_pending_requests` breakers, after Envoy's HTTP/1.1 and HTTP/2 pools
//! (`source/common/conn_pool/conn_pool_base.cc`, `circuit_breaker.proto`).
//!
//! With `connections:` set, an attempt needs a connection to its endpoint:
//! * a ready connection with room (HTTP/1.1: no request on it; HTTP/2: fewer than
//!   `max_concurrent_streams`) takes it at once ([`Output::Send`] names the connection);
//! * otherwise the attempt waits as *pending*, one `max_pending_requests` unit, and, while the
//!   connections being set up for the endpoint have less room than its pending attempts and
//!   `max_connections` allows, a new connection is opened ([`Output::Connect`]; the driver pays
//!   the TCP and TLS handshakes and answers [`Input::Connected`] or [`Input::ConnectFailed`]);
//! * with `max_pending_requests` full, the attempt overflows: the request ends with
//!   [`Finish::Overflow`] (Envoy's 503 `UO`), as `max_requests` does;
//! * a pending attempt takes the first connection of its endpoint that has room, in arrival
//!   order; its latency counts the wait;
//! * an HTTP/1.1 attempt cut off (a timeout, a hedge that lost) resets its connection, which
//!   closes; an HTTP/2 one resets only its stream. A local error (reset, refused) closes the
//!   connection too;
//! * a connection closes after `max_requests_per_connection` requests (0: no limit) once its
//!   streams end, and after `idle_timeout` with none (Envoy's default 1 h);
//! * a failed connect fails the oldest pending attempt of its endpoint with a local error
//!   (a connect failure, which retries and outlier detection see as such) when the endpoint's
//!   other connections cannot take it.
//!
//! Without `connections:`, attempts go out at once, as over an unlimited pool of connections
//! already open.

use super::*;

/// HTTP version of the pooled connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1: one request at a time per connection (keep-alive).
    #[default]
    Http1,
    /// HTTP/2: up to `max_concurrent_streams` requests at once per connection.
    Http2,
}

/// Transport security of the pooled connections: what a new connection's handshake costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tls {
    /// Plain TCP: one round trip to connect.
    #[default]
    None,
    /// TLS: the server authenticates (a TLS 1.3 handshake on top of TCP's).
    Tls,
    /// Mutual TLS: both ends present certificates (Istio's and Linkerd's mesh default).
    Mtls,
}

/// Connection pooling (`connections:` in a policy). Envoy's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionConfig {
    /// HTTP/1.1 or HTTP/2. Default `http1`.
    pub protocol: Protocol,
    /// Requests a connection carries before it closes; 0 is no limit (Envoy's
    /// `max_requests_per_connection`, default unlimited). 1 is a new connection per request.
    pub max_requests_per_connection: u32,
    /// A connection with no request for this long closes (Envoy's `idle_timeout`, default 1 h).
    pub idle_timeout: Duration,
    /// HTTP/2: streams per connection (Envoy's `max_concurrent_streams`, default 2147483647).
    pub max_concurrent_streams: u32,
    /// Transport security. Default `none`.
    pub tls: Tls,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            protocol: Protocol::Http1,
            max_requests_per_connection: 0,
            idle_timeout: Duration::from_secs(3600),
            max_concurrent_streams: 2_147_483_647,
            tls: Tls::None,
        }
    }
}

impl ConnectionConfig {
    /// `max_concurrent_streams` >= 1, `idle_timeout` > 0.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent_streams == 0 {
            return Err(ConfigError::new(
                "max_concurrent_streams",
                "must be >= 1 (streams per HTTP/2 connection)",
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::new(
                "idle_timeout",
                "must be > 0 (a connection would close before its first request)",
            ));
        }
        Ok(())
    }

    /// Requests one connection carries at once.
    pub fn capacity(&self) -> u32 {
        match self.protocol {
            Protocol::Http1 => 1,
            Protocol::Http2 => self.max_concurrent_streams,
        }
    }
}

/// A connection, named by the cluster; the driver reports its handshake's end with this id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(pub u64);

#[derive(Debug, Default)]
struct Conn {
    live: bool,
    generation: u32,
    ep: EndpointId,
    ready: bool,
    /// Requests on it now.
    active: u32,
    /// Requests it has carried.
    served: u32,
    /// Takes no new request; closes when its last ends.
    draining: bool,
    idle: Option<TimerId>,
}

#[derive(Debug, Default)]
struct EpPool {
    conns: Vec<u32>,
    pending: VecDeque<u32>,
}

/// The pools of one cluster.
#[derive(Debug)]
pub(super) struct Pool {
    config: ConnectionConfig,
    conns: Vec<Conn>,
    free: Vec<u32>,
    eps: Vec<EpPool>,
    /// Connections opened, over the cluster's life.
    opened: u64,
}

impl Pool {
    pub(super) fn new(config: ConnectionConfig) -> Self {
        Pool {
            config,
            conns: Vec::new(),
            free: Vec::new(),
            eps: Vec::new(),
            opened: 0,
        }
    }

    fn ep(&mut self, ep: EndpointId) -> &mut EpPool {
        let i = ep.index();
        if self.eps.len() <= i {
            self.eps.resize_with(i + 1, EpPool::default);
        }
        &mut self.eps[i]
    }

    fn id(&self, c: u32) -> ConnectionId {
        ConnectionId(u64::from(self.conns[c as usize].generation) << 32 | u64::from(c))
    }

    fn slot(&self, id: ConnectionId) -> Option<u32> {
        let c = (id.0 & 0xFFFF_FFFF) as u32;
        let conn = self.conns.get(c as usize)?;
        (conn.live && conn.generation == (id.0 >> 32) as u32).then_some(c)
    }

    /// A ready connection to `ep` with room, if any.
    fn room(&self, ep: EndpointId) -> Option<u32> {
        let cap = self.config.capacity();
        self.eps.get(ep.index())?.conns.iter().copied().find(|&c| {
            let k = &self.conns[c as usize];
            k.ready && !k.draining && k.active < cap
        })
    }

    /// Room on `ep`'s connections still being set up.
    fn connecting_room(&self, ep: EndpointId) -> u64 {
        let cap = u64::from(self.config.capacity());
        self.eps.get(ep.index()).map_or(0, |p| {
            p.conns
                .iter()
                .filter(|&&c| !self.conns[c as usize].ready)
                .count() as u64
                * cap
        })
    }
}

impl Cluster {
    /// Connections opened so far (each one handshake).
    pub fn connections_opened(&self) -> u64 {
        self.pool.as_ref().map_or(0, |p| p.opened)
    }

    /// Whether an attempt to `ep` could go now or wait as pending (taking a pending unit);
    /// false when it would overflow `max_pending_requests` (checked before the attempt is
    /// made).
    pub(super) fn pool_admits(&mut self, ep: EndpointId) -> bool {
        let Some(pool) = &self.pool else {
            return true;
        };
        pool.room(ep).is_some() || self.breakers.try_acquire(Resource::PendingRequests)
    }

    /// Sends attempt `a` (admitted by [`Cluster::pool_admits`]) on a connection with room, or
    /// queues it as pending and opens connections for it. Its per-try timer starts when it is
    /// sent, not while it is pending.
    pub(super) fn pool_send(&mut self, a: u32, now: Instant) {
        let ep = self.atts[a as usize].ep;
        let Some(pool) = &mut self.pool else {
            self.start_try(a, now);
            self.emit_send(a, None);
            return;
        };
        if let Some(c) = pool.room(ep) {
            self.start_try(a, now);
            self.assign(a, c);
            return;
        }
        // The pending unit was taken in `pool_admits`.
        pool.ep(ep).pending.push_back(a);
        self.atts[a as usize].pending = true;
        self.maybe_connect(ep);
    }

    /// Puts attempt `a` on connection `c` and sends it.
    fn assign(&mut self, a: u32, c: u32) {
        let pool = self.pool.as_mut().expect("pooled");
        let conn = &mut pool.conns[c as usize];
        conn.active += 1;
        if let Some(t) = conn.idle.take() {
            self.timers.cancel(t);
        }
        let id = pool.id(c);
        self.atts[a as usize].conn = Some(c);
        self.emit_send(a, Some(id));
    }

    /// Opens connections to `ep` while its pending attempts outnumber the room being set up
    /// and `max_connections` allows.
    fn maybe_connect(&mut self, ep: EndpointId) {
        loop {
            let pool = self.pool.as_mut().expect("pooled");
            let pending = pool.ep(ep).pending.len() as u64;
            if pending <= pool.connecting_room(ep)
                || !self.breakers.try_acquire(Resource::Connections)
            {
                return;
            }
            let c = match pool.free.pop() {
                Some(c) => c,
                None => {
                    pool.conns.push(Conn::default());
                    (pool.conns.len() - 1) as u32
                }
            };
            let conn = &mut pool.conns[c as usize];
            let generation = conn.generation;
            *conn = Conn {
                live: true,
                generation,
                ep,
                ..Conn::default()
            };
            pool.ep(ep).conns.push(c);
            pool.opened += 1;
            let connection = pool.id(c);
            self.outputs.push_back(Output::Connect {
                connection,
                endpoint: ep,
            });
        }
    }

    /// Closes connection `c`: tells the driver, frees its `max_connections` unit, and (with
    /// `reconnect`) opens another for its endpoint's pending attempts if they need one.
    fn close_conn(&mut self, c: u32, reconnect: bool) {
        let pool = self.pool.as_mut().expect("pooled");
        let id = pool.id(c);
        let conn = &mut pool.conns[c as usize];
        let ep = conn.ep;
        conn.live = false;
        conn.generation = conn.generation.wrapping_add(1);
        if let Some(t) = conn.idle.take() {
            self.timers.cancel(t);
        }
        pool.free.push(c);
        let list = &mut pool.ep(ep).conns;
        if let Some(i) = list.iter().position(|&x| x == c) {
            list.swap_remove(i);
        }
        self.breakers.release(Resource::Connections);
        self.outputs.push_back(Output::Disconnect {
            connection: id,
            endpoint: ep,
        });
        if reconnect {
            self.maybe_connect(ep);
        }
    }

    /// Connection `c` has room: its endpoint's pending attempts take it, in order; with no
    /// request left on it, its idle timer starts.
    fn serve_pending(&mut self, c: u32, now: Instant) {
        loop {
            let pool = self.pool.as_mut().expect("pooled");
            let cap = pool.config.capacity();
            let conn = &pool.conns[c as usize];
            let ep = conn.ep;
            if conn.draining || conn.active >= cap {
                break;
            }
            let Some(a) = pool.ep(ep).pending.pop_front() else {
                break;
            };
            self.breakers.release(Resource::PendingRequests);
            self.atts[a as usize].pending = false;
            self.start_try(a, now);
            self.assign(a, c);
        }
        let pool = self.pool.as_mut().expect("pooled");
        let idle = pool.config.idle_timeout;
        let conn = &mut pool.conns[c as usize];
        if conn.active == 0 && conn.idle.is_none() {
            conn.idle = Some(self.timers.insert(now + idle, Timer::Idle(c)));
        }
    }

    /// The driver finished connection `id`'s handshakes.
    pub(super) fn on_connected(&mut self, id: ConnectionId, now: Instant) {
        let Some(c) = self.pool.as_ref().and_then(|p| p.slot(id)) else {
            return;
        };
        self.pool.as_mut().expect("pooled").conns[c as usize].ready = true;
        self.serve_pending(c, now);
    }

    /// Connection `id` could not be set up (refused, reset, timed out).
    pub(super) fn on_connect_failed(&mut self, id: ConnectionId, now: Instant) {
        let Some(c) = self.pool.as_ref().and_then(|p| p.slot(id)) else {
            return;
        };
        let ep = self.pool.as_ref().expect("pooled").conns[c as usize].ep;
        self.close_conn(c, false);
        // The oldest pending attempt fails as a connect failure when nothing else can take
        // it; the others keep waiting, for new connections if they need them.
        let pool = self.pool.as_mut().expect("pooled");
        let waiting = pool.ep(ep).pending.len() as u64;
        if waiting > pool.connecting_room(ep) && pool.room(ep).is_none() {
            let a = pool.ep(ep).pending.pop_front().expect("pending");
            self.breakers.release(Resource::PendingRequests);
            self.atts[a as usize].pending = false;
            let attempt =
                AttemptId(u64::from(self.atts[a as usize].generation) << 32 | u64::from(a));
            self.on_attempt_done(attempt, Outcome::LocalError, None, now);
        }
        self.maybe_connect(ep);
    }

    /// Connection `c`'s idle timer fired.
    pub(super) fn on_idle(&mut self, c: u32) {
        let pool = self.pool.as_mut().expect("pooled");
        pool.conns[c as usize].idle = None;
        if pool.conns[c as usize].live && pool.conns[c as usize].active == 0 {
            self.close_conn(c, true);
        }
    }

    /// Attempt `a` is leaving flight: off the pending queue, or off its connection, which goes
    /// on, serves the next pending attempt, or closes. `completed`: the endpoint answered
    /// (`outcome`), rather than the cluster cutting the attempt off.
    pub(super) fn pool_release(&mut self, a: u32, completed: bool, outcome: Outcome, now: Instant) {
        let Some(pool) = &mut self.pool else {
            return;
        };
        let att = &mut self.atts[a as usize];
        if att.pending {
            att.pending = false;
            let q = &mut pool.ep(att.ep).pending;
            if let Some(i) = q.iter().position(|&x| x == a) {
                q.remove(i);
            }
            self.breakers.release(Resource::PendingRequests);
            return;
        }
        let Some(c) = att.conn.take() else {
            return;
        };
        let max = pool.config.max_requests_per_connection;
        let h1 = pool.config.protocol == Protocol::Http1;
        let conn = &mut pool.conns[c as usize];
        conn.active -= 1;
        conn.served += 1;
        let broken = (completed && outcome == Outcome::LocalError) || (!completed && h1);
        if broken || (max > 0 && conn.served >= max) {
            conn.draining = true;
        }
        if conn.draining && conn.active == 0 {
            self.close_conn(c, true);
        } else {
            self.serve_pending(c, now);
        }
    }
}
