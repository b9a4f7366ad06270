//! The input/output protocol: what a driver feeds a [`Cluster`] and what it drains from it.

use super::*;

/// A request, named by the driver; it comes back in [`Output::Send`] and [`Output::Finished`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct RequestId(pub u64);

/// An attempt, named by the cluster; the driver reports its end with this id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttemptId(pub u64);

/// Everything that can happen to a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// A request arrived.
    Request {
        /// The driver's name for it.
        request: RequestId,
        /// Its hash key for hash-based balancers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hash: Option<u64>,
    },
    /// An attempt ended (a response, a connect failure, a reset). Ends of attempts the cluster
    /// already cancelled are ignored.
    AttemptDone {
        /// The attempt.
        attempt: AttemptId,
        /// How it ended.
        outcome: Outcome,
        /// The server's load report, if it sent one (ORCA).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        load: Option<LoadReport>,
    },
    /// An active health-check probe came back.
    ProbeDone {
        /// The probe.
        probe: ProbeId,
        /// The endpoint probed.
        endpoint: EndpointId,
        /// What it found.
        result: ProbeResult,
    },
    /// A balancer probe (Prequal) came back.
    BalancerProbeDone {
        /// The endpoint probed.
        endpoint: EndpointId,
        /// Its answer.
        reply: ProbeReply,
    },
    /// Discovery changed this client's view.
    Membership(Change),
    /// A connection asked for by [`Output::Connect`] is set up and can carry requests.
    Connected {
        /// The connection.
        connection: ConnectionId,
    },
    /// A connection asked for by [`Output::Connect`] could not be set up.
    ConnectFailed {
        /// The connection.
        connection: ConnectionId,
    },
    /// Time passed: run every timer due (what [`Cluster::handle_timeout`] does).
    Timeout,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "finish", content = "outcome", rename_all = "snake_case")]
pub enum Finish {
    /// The outcome of the attempt that decided (a success, or the last failure).
    Response(Outcome),
    /// The request timeout fired (Envoy's 504 `UT`).
    Timeout,
    /// A circuit breaker refused its attempt (Envoy's 503 `UO`).
    Overflow,
    /// No endpoint could take it (Envoy's 503 `UH`).
    NoHealthyUpstream,
}

impl Finish {
    /// True only for a successful response.
    pub const fn is_success(self) -> bool {
        matches!(self, Finish::Response(Outcome::Success))
    }

    /// A short name for reports: `success`, or the failure class (`server_error`,
    /// `gateway_error`, `local_error`, `attempt_timeout`, `timeout`, `overflow`,
    /// `no_healthy_upstream`).
    pub const fn class(self) -> &'static str {
        match self {
            Finish::Response(Outcome::Success) => "success",
            Finish::Response(Outcome::ServerError) => "server_error",
            Finish::Response(Outcome::GatewayError) => "gateway_error",
            Finish::Response(Outcome::LocalError) => "local_error",
            Finish::Response(Outcome::Timeout) => "attempt_timeout",
            Finish::Timeout => "timeout",
            Finish::Overflow => "overflow",
            Finish::NoHealthyUpstream => "no_healthy_upstream",
        }
    }
}

/// A policy decision worth plotting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PolicyEvent {
    /// Outlier detection ejected, un-ejected, or skipped a host.
    Outlier(OutlierEvent),
    /// Active health checking changed a host's state.
    HealthChanged {
        /// The host.
        endpoint: EndpointId,
        /// Whether it now passes.
        healthy: bool,
    },
    /// A failure-accrual breaker changed state.
    Accrual(AccrualEvent),
    /// A circuit breaker opened or closed.
    Breaker(BreakerEvent),
    /// The priority load changed.
    PriorityLoad {
        /// Percent to each level's healthy hosts.
        healthy: Vec<u32>,
        /// Percent to each level's degraded hosts.
        degraded: Vec<u32>,
    },
    /// A priority level entered or left panic.
    Panic {
        /// The level.
        priority: u32,
        /// `true` on entering.
        entered: bool,
    },
    /// A retry or hedge was refused by the retry budget (or the `max_retries` breaker).
    BudgetExhausted {
        /// The request.
        request: RequestId,
    },
    /// A hedged attempt went out.
    HedgeSent {
        /// The request.
        request: RequestId,
        /// The new attempt.
        attempt: AttemptId,
    },
}

impl PolicyEvent {
    /// A short name for counting events in reports (`ejected`, `panic_entered`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyEvent::Outlier(OutlierEvent::Ejected { .. }) => "ejected",
            PolicyEvent::Outlier(OutlierEvent::Unejected { .. }) => "unejected",
            PolicyEvent::Outlier(OutlierEvent::Skipped { .. }) => "ejection_skipped",
            PolicyEvent::HealthChanged { .. } => "health_changed",
            PolicyEvent::Accrual(_) => "failure_accrual",
            PolicyEvent::Breaker(b) if b.open => "breaker_opened",
            PolicyEvent::Breaker(_) => "breaker_closed",
            PolicyEvent::PriorityLoad { .. } => "priority_load_changed",
            PolicyEvent::Panic { entered: true, .. } => "panic_entered",
            PolicyEvent::Panic { .. } => "panic_left",
            PolicyEvent::BudgetExhausted { .. } => "budget_exhausted",
            PolicyEvent::HedgeSent { .. } => "hedge_sent",
        }
    }
}

/// What the driver must do, or may record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "snake_case")]
pub enum Output {
    /// Send an attempt of `request` to `endpoint`.
    Send {
        /// Report its end with this id.
        attempt: AttemptId,
        /// The request.
        request: RequestId,
        /// Where to send it.
        endpoint: EndpointId,
        /// 0 for the first attempt, then 1, 2, ... for retries and hedges.
        retry: u32,
        /// When the cluster gives up on it (per-try or request timeout), if ever.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline: Option<Instant>,
        /// With connection pools: the connection to send it on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connection: Option<ConnectionId>,
    },
    /// With connection pools: open connection `connection` to `endpoint` (TCP, then the
    /// policy's TLS), and report it with [`Input::Connected`] or [`Input::ConnectFailed`].
    Connect {
        /// The connection.
        connection: ConnectionId,
        /// Where to.
        endpoint: EndpointId,
    },
    /// With connection pools: close connection `connection` (idle, worn out, or reset).
    Disconnect {
        /// The connection.
        connection: ConnectionId,
        /// Where it went.
        endpoint: EndpointId,
    },
    /// Abandon an attempt (timed out, or another attempt won); its end will be ignored.
    Cancel {
        /// The attempt.
        attempt: AttemptId,
        /// Where it went.
        endpoint: EndpointId,
        /// Whether a timeout (per-try or the request's) cut it off, rather than another
        /// attempt winning or the request ending: the endpoint failed it, and counts it among
        /// its errors as Envoy's `upstream_rq_timeout` does.
        #[serde(default)]
        timed_out: bool,
    },
    /// Perform an active health-check probe.
    Probe(ProbeRequest),
    /// Perform a balancer probe (Prequal) and report it with [`Input::BalancerProbeDone`].
    BalancerProbe {
        /// The endpoint to probe.
        endpoint: EndpointId,
    },
    /// A request ended.
    Finished {
        /// The request.
        request: RequestId,
        /// How.
        result: Finish,
        /// Attempts sent for it.
        attempts: u32,
        /// When it arrived.
        started: Instant,
    },
    /// A policy decision.
    Event(PolicyEvent),
}
