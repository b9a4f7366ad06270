//! Connection pools, after Envoy's HTTP/1.1 and HTTP/2 pools and its `max_connections` /
//! `max_pending_requests` circuit breakers: each test states the documented behaviour and drives
//! a `Cluster` through it.

use mesh_core::breaker::{BreakerEvent, Resource};
use mesh_core::{ConnectionId, EndpointId, Finish, Input, Outcome, Output, PolicyEvent};

use crate::harness::{Harness, finished, ms, sends};

fn connects(out: &[Output]) -> Vec<ConnectionId> {
    out.iter()
        .filter_map(|o| match o {
            Output::Connect { connection, .. } => Some(*connection),
            _ => None,
        })
        .collect()
}

fn disconnects(out: &[Output]) -> usize {
    out.iter()
        .filter(|o| matches!(o, Output::Disconnect { .. }))
        .count()
}

fn connection_of(out: &[Output]) -> Vec<Option<ConnectionId>> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { connection, .. } => Some(*connection),
            _ => None,
        })
        .collect()
}

#[test]
fn http1_with_max_connections_4_eight_requests_put_4_on_connections_and_4_pending() {
    // One endpoint, HTTP/1.1: one request per connection. max_connections 4,
    // max_pending_requests 4. A request waiting for a connection, even one being set up, is
    // pending (Envoy's upstream_rq_pending_active).
    let mut h = Harness::new(
        r#"{"timeout": "0s", "connections": {}, "circuit_breakers": {"max_connections": 4, "max_pending_requests": 4}}"#,
        1,
    );
    let mut conns = Vec::new();
    for i in 0..4 {
        let (_, out) = h.request();
        assert_eq!(sends(&out), [], "request {i} waits for its connection");
        conns.extend(connects(&out));
    }
    assert_eq!(conns.len(), 4, "one connection per pending request");
    let mut attempts = Vec::new();
    for c in &conns {
        let out = h.input(Input::Connected { connection: *c });
        assert_eq!(connection_of(&out), [Some(*c)]);
        attempts.push(sends(&out)[0].0);
    }
    // Requests 5 to 8 find every connection busy and max_connections reached: pending.
    for i in 4..8 {
        let (_, out) = h.request();
        assert_eq!(sends(&out), [], "request {i} is pending");
        assert_eq!(connects(&out), [], "max_connections is reached");
    }
    assert!(h.events().iter().any(|(_, e)| *e
        == PolicyEvent::Breaker(BreakerEvent {
            resource: Resource::Connections,
            open: true
        })));
    // Past max_pending_requests, overflow: the request ends at once (Envoy's 503 UO).
    let (id, out) = h.request();
    assert!(out.iter().any(|o| matches!(o,
        Output::Finished { request, result: Finish::Overflow, .. } if *request == id)));
    assert!(h.events().iter().any(|(_, e)| *e
        == PolicyEvent::Breaker(BreakerEvent {
            resource: Resource::PendingRequests,
            open: true
        })));
    // A response frees its connection for the oldest pending request: keep-alive, no new
    // handshake.
    let out = h.done(attempts[0], Outcome::Success);
    assert_eq!(connection_of(&out), [Some(conns[0])]);
    assert_eq!(connects(&out), []);
    assert_eq!(h.cluster.connections_opened(), 4);
}

#[test]
fn keep_alive_handshakes_once_per_connection_and_max_requests_per_connection_reconnects() {
    let mut h = Harness::new(r#"{"timeout": "0s", "connections": {}}"#, 1);
    let (_, out) = h.request();
    let c = connects(&out)[0];
    let out = h.input(Input::Connected { connection: c });
    let mut attempt = sends(&out)[0].0;
    for _ in 0..99 {
        h.done(attempt, Outcome::Success);
        let (_, out) = h.request();
        assert_eq!(connects(&out), [], "keep-alive: the connection is reused");
        assert_eq!(connection_of(&out), [Some(c)]);
        attempt = sends(&out)[0].0;
    }
    assert_eq!(h.cluster.connections_opened(), 1);

    // max_requests_per_connection: 1 is a new connection (and handshake) per request.
    let mut h = Harness::new(
        r#"{"timeout": "0s", "connections": {"max_requests_per_connection": 1}}"#,
        1,
    );
    for i in 0..10 {
        let (_, out) = h.request();
        let c = connects(&out);
        assert_eq!(c.len(), 1, "request {i} opens its own connection");
        let out = h.input(Input::Connected { connection: c[0] });
        let out = h.done(sends(&out)[0].0, Outcome::Success);
        assert_eq!(disconnects(&out), 1, "and closes it after its response");
    }
    assert_eq!(h.cluster.connections_opened(), 10);
}

#[test]
fn http2_multiplexes_up_to_max_concurrent_streams() {
    let mut h = Harness::new(
        r#"{"timeout": "0s", "connections": {"protocol": "http2", "max_concurrent_streams": 3}}"#,
        1,
    );
    let mut conns = Vec::new();
    for _ in 0..7 {
        let (_, out) = h.request();
        conns.extend(connects(&out));
    }
    // 7 requests at 3 streams per connection: 3 connections.
    assert_eq!(conns.len(), 3);
    let out = h.input(Input::Connected {
        connection: conns[0],
    });
    assert_eq!(connection_of(&out), vec![Some(conns[0]); 3]);
}

#[test]
fn an_http1_attempt_cut_off_resets_its_connection_and_idle_connections_close() {
    let mut h = Harness::new(
        r#"{"timeout": "100ms", "connections": {"idle_timeout": "1s"}}"#,
        1,
    );
    let (_, out) = h.request();
    let c = connects(&out)[0];
    h.input(Input::Connected { connection: c });
    let before = h.out.len();
    h.run_until(ms(150));
    let out: Vec<Output> = h.out[before..].iter().map(|(_, o)| o.clone()).collect();
    assert_eq!(
        disconnects(&out),
        1,
        "the timed-out request's connection is reset"
    );
    // The next request needs a new connection; when it is idle for 1 s, it closes.
    let (_, out) = h.request();
    let c = connects(&out)[0];
    let out = h.input(Input::Connected { connection: c });
    h.done(sends(&out)[0].0, Outcome::Success);
    let before = h.out.len();
    h.run_until(ms(150 + 999));
    assert_eq!(
        disconnects(
            &h.out[before..]
                .iter()
                .map(|(_, o)| o.clone())
                .collect::<Vec<_>>()
        ),
        0
    );
    h.run_until(ms(150 + 1001));
    assert_eq!(
        disconnects(
            &h.out[before..]
                .iter()
                .map(|(_, o)| o.clone())
                .collect::<Vec<_>>()
        ),
        1
    );
}

#[test]
fn a_failed_connect_fails_the_pending_attempt_as_a_connect_failure_and_retries_go_elsewhere() {
    let mut h = Harness::new(
        r#"{"timeout": "0s", "connections": {}, "retries": {"num_retries": 1, "retry_on": ["connect-failure"], "retry_back_off": {"kind": "none"}}}"#,
        2,
    );
    let (_, out) = h.request();
    let (c, first) = match out.iter().find(|o| matches!(o, Output::Connect { .. })) {
        Some(Output::Connect {
            connection,
            endpoint,
        }) => (*connection, *endpoint),
        _ => panic!("a connect"),
    };
    let out = h.input(Input::ConnectFailed { connection: c });
    let retry = out
        .iter()
        .find_map(|o| match o {
            Output::Connect { endpoint, .. } => Some(*endpoint),
            _ => None,
        })
        .expect("the retry opens a connection");
    assert_ne!(retry, first, "the retry goes to the other endpoint");
    assert_eq!(retry, EndpointId(1 - first.0));
}

#[test]
fn the_per_try_timer_starts_when_the_attempt_gets_its_connection() {
    // Envoy arms `per_try_timeout` when the pool hands the attempt a connection
    // (`UpstreamRequest::onPoolReady`): time spent pending, behind a busy connection or on a
    // slow handshake, counts only against the route timeout. Per try 50 ms, route 1 s, one
    // HTTP/1.1 connection at most.
    let mut h = Harness::new(
        r#"{"timeout": "1s", "connections": {}, "circuit_breakers": {"max_connections": 1}, "retries": {"num_retries": 0, "per_try_timeout": "50ms"}}"#,
        1,
    );
    let deadlines = |out: &[Output]| -> Vec<Option<mesh_core::Instant>> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .collect()
    };
    // The first request waits 70 ms for its handshake, longer than its per-try timeout, and
    // still goes, with 50 ms from then.
    let (_, out) = h.request();
    let c = connects(&out)[0];
    h.run_until(ms(70));
    assert_eq!(
        finished(&h.out.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>()),
        None
    );
    let out = h.input(Input::Connected { connection: c });
    assert_eq!(deadlines(&out), [Some(ms(120))]);
    let first = sends(&out)[0].0;
    // The second waits behind it until it answers at 100 ms, then has its own 50 ms.
    let (second, out) = h.request();
    assert_eq!(sends(&out), [], "pending behind the busy connection");
    h.run_until(ms(100));
    let out = h.done(first, Outcome::Success);
    assert_eq!(deadlines(&out), [Some(ms(150))]);
    // Unanswered, it times out 50 ms after it was sent, not after it was made.
    h.run_until(ms(149));
    assert!(!h.out.iter().any(|(_, o)| matches!(o,
        Output::Finished { request, .. } if *request == second)));
    h.run_until(ms(151));
    let (t, result) = h
        .out
        .iter()
        .find_map(|(t, o)| match o {
            Output::Finished {
                request, result, ..
            } if *request == second => Some((*t, *result)),
            _ => None,
        })
        .expect("the second request ends");
    assert_eq!((t, result), (ms(150), Finish::Response(Outcome::Timeout)));
}
