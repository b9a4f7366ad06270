//! Import of Istio isotope service graphs (`meshbench import-isotope`).
//!
//! isotope describes a mock microservice topology as a `MockServiceGraph`: a list of services,
//! each with a number of replicas, an error rate and a script of `sleep` steps, `call` steps
//! and concurrent groups (a nested list). [`import`] turns one into a scenario:
//!
//! | isotope | scenario |
//! |---|---|
//! | `services[].name` | a key of `services` |
//! | `numReplicas` (default 1) | `instances` |
//! | `errorRate` (`0.01%` or `0.0001`) | `error_rate` |
//! | `script: - sleep: 10ms` | `- compute: {dist: constant, value: 10ms}` |
//! | `script: - call: b` or `call: {service: b}` | `- call: b` |
//! | `script: - - call: a` (a nested list) | `- parallel: [{call: a}, ...]`, `wait: all` |
//! | `responseSize` (`16 KB`, `10K`) | `response_size`, on a link of `network.bandwidth: 10Gbps` |
//! | `isEntrypoint: true` | a client population sending to it |
//! | `defaults:` | applied to every service that does not set the field |
//!
//! An isotope service answers as soon as its script ends and serves every request at once (a
//! goroutine each), so an imported service has no service time of its own and ample
//! concurrency; its sleeps hold its request, as they do there. Request sizes (`requestSize`, a
//! call's `size`) and `type` (HTTP or gRPC) are read and reported as not modeled: only a
//! response's bytes take time on the link. isotope has no link speed, so a graph with response
//! sizes gets 10 Gbps, said in a note. Without an `isEntrypoint` service, the services nothing
//! calls are the entry points.

use yaml_serde::Value;

use crate::ScenarioError;

/// What the imported scenario adds around the graph.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The scenario's name.
    pub name: String,
    /// Requests per second into the entry points, shared between them.
    pub rate: f64,
    /// Requests to send in a run.
    pub requests: u64,
}

/// An imported graph: the scenario's YAML text, and what was read but is not modeled.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The scenario, as YAML.
    pub yaml: String,
    /// Fields that were read but change nothing in the scenario, one line each.
    pub notes: Vec<String>,
}

/// The link speed an imported graph with response sizes is given (isotope has none).
const ASSUMED_BANDWIDTH: &str = "10Gbps";

const TOP: &[&str] = &["apiVersion", "kind", "defaults", "services"];
const SERVICE: &[&str] = &[
    "name",
    "type",
    "numReplicas",
    "isEntrypoint",
    "errorRate",
    "responseSize",
    "requestSize",
    "script",
];

/// One service as read.
#[derive(Default, Clone)]
struct Svc {
    replicas: Option<u32>,
    entry: Option<bool>,
    error_rate: Option<f64>,
    response_size: Option<u64>,
    script: Option<Vec<Cmd>>,
}

#[derive(Clone)]
enum Cmd {
    Sleep(String),
    Call(String),
    Concurrent(Vec<String>),
}

/// Converts isotope's `source` (named `file` in errors) into a scenario.
pub fn import(source: &str, file: &str, opts: &ImportOptions) -> Result<Imported, ScenarioError> {
    let err = |field: &str, message: String, suggestion: Option<String>| {
        let (line, column) = crate::locate::locate(source, field).unzip();
        ScenarioError {
            file: file.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message,
            suggestion,
        }
    };
    let root: Value = yaml_serde::from_str(source).map_err(|e| {
        let loc = e.location();
        ScenarioError {
            file: file.to_owned(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            field: String::new(),
            message: format!("not YAML: {e}"),
            suggestion: None,
        }
    })?;
    let Value::Mapping(top) = &root else {
        return Err(err(
            "",
            "an isotope graph is a mapping with `services:` (and optionally `apiVersion`, `kind`, `defaults`)".into(),
            None,
        ));
    };
    let mut notes = Vec::new();
    let mut note = |n: String| {
        if !notes.contains(&n) {
            notes.push(n);
        }
    };
    for (k, _) in top {
        let k = key(k);
        if !TOP.contains(&k.as_str()) {
            return Err(err(
                &k,
                format!(
                    "unknown field `{k}`; an isotope graph has {}",
                    TOP.join(", ")
                ),
                crate::nearest(&k, TOP.iter().copied()),
            ));
        }
    }
    if let Some(kind) = top.get("kind") {
        let k = kind.as_str().unwrap_or_default();
        if k != "MockServiceGraph" {
            return Err(err(
                "kind",
                format!("`kind: {k}`: an isotope service graph is `kind: MockServiceGraph`"),
                None,
            ));
        }
    }
    let defaults = match top.get("defaults") {
        None | Some(Value::Null) => Svc::default(),
        Some(d) => service(d, "defaults", &err, &mut note, true)?.1,
    };
    let mut services: Vec<(String, Svc)> = Vec::new();
    match top.get("services") {
        Some(Value::Sequence(list)) => {
            for (i, s) in list.iter().enumerate() {
                let at = format!("services.{i}");
                let (name, svc) = service(s, &at, &err, &mut note, false)?;
                let name = name.ok_or_else(|| err(&at, "a service needs a `name`".into(), None))?;
                services.push((name, svc));
            }
        }
        // isotope's first format: services keyed by name.
        Some(Value::Mapping(m)) => {
            for (k, s) in m {
                let name = key(k);
                let at = format!("services.{name}");
                let s = if s.is_null() {
                    &Value::Mapping(Default::default())
                } else {
                    s
                };
                let (_, svc) = service(s, &at, &err, &mut note, true)?;
                services.push((name, svc));
            }
        }
        _ => {
            return Err(err(
                "services",
                "give the services as a list: `services: [{name: a}, {name: b, script: [{call: a}]}]`".into(),
                None,
            ));
        }
    }
    if services.is_empty() {
        return Err(err("services", "the graph has no services".into(), None));
    }
    let names: Vec<String> = services.iter().map(|(n, _)| n.clone()).collect();
    for (i, n) in names.iter().enumerate() {
        let plain = n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if n.is_empty() || !plain {
            return Err(err(
                &format!("services.{i}.name"),
                format!("`{n}` is not a service name: use A-Z a-z 0-9 - _ ."),
                None,
            ));
        }
        if names[..i].contains(n) {
            return Err(err(
                &format!("services.{i}.name"),
                format!("a second service named `{n}`"),
                None,
            ));
        }
    }
    // Defaults fill in what a service leaves out.
    for (_, s) in &mut services {
        s.replicas = s.replicas.or(defaults.replicas);
        s.error_rate = s.error_rate.or(defaults.error_rate);
        s.response_size = s.response_size.or(defaults.response_size);
        s.entry = s.entry.or(defaults.entry);
        if s.script.is_none() {
            s.script.clone_from(&defaults.script);
        }
    }
    let mut called = std::collections::BTreeSet::new();
    for (i, (_, s)) in services.iter().enumerate() {
        for (j, c) in s.script.iter().flatten().enumerate() {
            let targets: Vec<&String> = match c {
                Cmd::Call(t) => vec![t],
                Cmd::Concurrent(ts) => ts.iter().collect(),
                Cmd::Sleep(_) => vec![],
            };
            for t in targets {
                if !names.contains(t) {
                    return Err(err(
                        &format!("services.{i}.script.{j}"),
                        format!("calls `{t}`, which is not a service of the graph"),
                        crate::nearest(t, names.iter().map(String::as_str)),
                    ));
                }
                called.insert(t.clone());
            }
        }
    }
    let mut entries: Vec<&str> = services
        .iter()
        .filter(|(_, s)| s.entry == Some(true))
        .map(|(n, _)| n.as_str())
        .collect();
    if entries.is_empty() {
        entries = names
            .iter()
            .filter(|n| !called.contains(*n))
            .map(String::as_str)
            .collect();
        if !entries.is_empty() {
            note(format!(
                "no service has `isEntrypoint: true`: clients call the services nothing calls ({})",
                entries.join(", ")
            ));
        }
    }
    let sized = services.iter().any(|(_, s)| s.response_size.is_some());
    if sized {
        note(format!(
            "responseSize: kept as each service's `response_size`; its bytes take their time on a link of `network.bandwidth: {ASSUMED_BANDWIDTH}` (isotope has no link speed of its own): set yours"
        ));
    }
    if entries.is_empty() {
        return Err(err(
            "services",
            "every service is called by another, so the graph has a cycle and no entry point"
                .into(),
            None,
        ));
    }

    let q = |n: &str| {
        if n.starts_with(|c: char| c.is_ascii_alphabetic()) {
            n.to_owned()
        } else {
            format!("\"{n}\"")
        }
    };
    let mut y = String::new();
    let w = &mut y;
    let line = |w: &mut String, s: &str| {
        w.push_str(s);
        w.push('\n');
    };
    line(
        w,
        &format!(
            "# Imported from {file} (an isotope MockServiceGraph) by `meshbench import-isotope`."
        ),
    );
    line(
        w,
        "# isotope services answer when their script ends and serve every request at once, so each",
    );
    line(
        w,
        "# has no service time of its own and ample concurrency; sleeps are compute steps.",
    );
    line(w, &format!("name: {}", opts.name));
    line(
        w,
        &format!(
            "description: \"The isotope graph {} ({} services, entry {}): which balancer gives the lowest end-to-end p99?\"",
            file.rsplit('/').next().unwrap_or(file),
            services.len(),
            entries.join(", ")
        ),
    );
    line(w, "seed: 1");
    line(w, &format!("requests: {}", opts.requests));
    line(w, "replications: 3");
    line(w, "strategies:");
    line(w, "  round_robin: { balancer: { kind: round_robin } }");
    line(w, "  least_request: { balancer: { kind: least_request } }");
    line(w, "  random: { balancer: { kind: random } }");
    line(w, "services:");
    for (name, s) in &services {
        line(w, &format!("  {}:", q(name)));
        line(w, &format!("    instances: {}", s.replicas.unwrap_or(1)));
        line(w, "    concurrency: 10000");
        line(w, "    service_time: { dist: constant, value: 0s }");
        if let Some(e) = s.error_rate.filter(|e| *e > 0.0) {
            line(w, &format!("    error_rate: {e}"));
        }
        if let Some(b) = s.response_size {
            line(w, &format!("    response_size: {b}B"));
        }
        let script = s.script.as_deref().unwrap_or_default();
        if !script.is_empty() {
            line(w, "    script:");
            for c in script {
                match c {
                    Cmd::Sleep(d) => line(
                        w,
                        &format!("      - compute: {{ dist: constant, value: {d} }}"),
                    ),
                    Cmd::Call(t) => line(w, &format!("      - call: {}", q(t))),
                    Cmd::Concurrent(ts) => {
                        let calls: Vec<String> =
                            ts.iter().map(|t| format!("{{ call: {} }}", q(t))).collect();
                        line(w, &format!("      - parallel: [{}]", calls.join(", ")));
                        line(w, "        wait: all");
                    }
                }
            }
        }
    }
    if sized {
        line(
            w,
            &format!(
                "network: {{ bandwidth: {ASSUMED_BANDWIDTH} }}  # responses' bytes take their time on it"
            ),
        );
    }
    line(w, "clients:");
    let each = opts.rate / entries.len() as f64;
    for e in &entries {
        line(w, &format!("  to-{e}:"));
        line(w, "    proxies: 4");
        line(w, &format!("    target: {}", q(e)));
        line(
            w,
            &format!("    arrival: {{ process: poisson, rate: {each}/s }}"),
        );
    }
    Ok(Imported { yaml: y, notes })
}

fn key(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "?".into(),
    }
}

type Err<'a> = dyn Fn(&str, String, Option<String>) -> ScenarioError + 'a;

/// One service (or `defaults`, which has no name) at field path `at`.
fn service(
    v: &Value,
    at: &str,
    err: &Err<'_>,
    note: &mut dyn FnMut(String),
    nameless: bool,
) -> Result<(Option<String>, Svc), ScenarioError> {
    let Value::Mapping(m) = v else {
        return Err(err(
            at,
            "a service is a mapping such as `{name: a, numReplicas: 2}`".into(),
            None,
        ));
    };
    let mut svc = Svc::default();
    let mut name = None;
    for (k, v) in m {
        let k = key(k);
        let f = format!("{at}.{k}");
        match k.as_str() {
            "name" if !nameless => {
                name = Some(
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| err(&f, "a service's name is a string".into(), None))?,
                )
            }
            "numReplicas" => {
                let n = v
                    .as_u64()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| {
                        err(
                            &f,
                            "give a number of replicas from 1 to 100000".into(),
                            None,
                        )
                    })?;
                svc.replicas = Some(n as u32);
            }
            "isEntrypoint" => {
                svc.entry = Some(
                    v.as_bool()
                        .ok_or_else(|| err(&f, "give `true` or `false`".into(), None))?,
                )
            }
            "errorRate" => svc.error_rate = Some(percentage(v).map_err(|m| err(&f, m, None))?),
            "type" => {
                let t = v.as_str().unwrap_or_default();
                if !matches!(t, "http" | "grpc") {
                    return Err(err(
                        &f,
                        format!("`type: {t}`: isotope services are `http` or `grpc`"),
                        crate::nearest(t, ["http", "grpc"]),
                    ));
                }
                if t == "grpc" {
                    note(format!(
                        "{f}: gRPC services are imported as HTTP calls (the protocol is not modeled)"
                    ));
                }
            }
            "responseSize" => {
                let text = match v {
                    Value::Number(n) => n.to_string(),
                    other => other.as_str().unwrap_or_default().to_owned(),
                };
                let size: crate::ByteSize = text.parse().map_err(|m| err(&f, m, None))?;
                svc.response_size = Some(size.bytes());
            }
            "requestSize" => note(format!(
                "{f}: request sizes are not modeled (only a response's bytes take time on the link); dropped"
            )),
            "script" => svc.script = Some(script(v, &f, err, note)?),
            _ => {
                return Err(err(
                    &f,
                    format!(
                        "unknown field `{k}`; an isotope service has {}",
                        SERVICE.join(", ")
                    ),
                    crate::nearest(&k, SERVICE.iter().copied()),
                ));
            }
        }
    }
    Ok((name, svc))
}

fn script(
    v: &Value,
    at: &str,
    err: &Err<'_>,
    note: &mut dyn FnMut(String),
) -> Result<Vec<Cmd>, ScenarioError> {
    let Value::Sequence(list) = v else {
        return Err(err(
            at,
            "a script is a list of steps: `[{sleep: 10ms}, {call: b}, [{call: c}, {call: d}]]`"
                .into(),
            None,
        ));
    };
    let mut out = Vec::new();
    for (i, step) in list.iter().enumerate() {
        let f = format!("{at}.{i}");
        match step {
            Value::Sequence(group) => {
                let mut calls = Vec::new();
                for (j, c) in group.iter().enumerate() {
                    let g = format!("{f}.{j}");
                    match command(c, &g, err, note)? {
                        Cmd::Call(t) => calls.push(t),
                        _ => {
                            return Err(err(
                                &g,
                                "only calls can run concurrently here: move the sleep before or after the group".into(),
                                None,
                            ));
                        }
                    }
                }
                if calls.is_empty() {
                    return Err(err(&f, "an empty concurrent group".into(), None));
                }
                out.push(Cmd::Concurrent(calls));
            }
            _ => out.push(command(step, &f, err, note)?),
        }
    }
    Ok(out)
}

fn command(
    v: &Value,
    at: &str,
    err: &Err<'_>,
    note: &mut dyn FnMut(String),
) -> Result<Cmd, ScenarioError> {
    let Value::Mapping(m) = v else {
        return Err(err(
            at,
            "a step is `{sleep: DURATION}`, `{call: SERVICE}` or a list of calls".into(),
            None,
        ));
    };
    if m.len() != 1 {
        return Err(err(
            at,
            "a step has one key: `sleep` or `call`".into(),
            None,
        ));
    }
    let (k, v) = m.iter().next().expect("one entry");
    let k = key(k);
    let f = format!("{at}.{k}");
    match k.as_str() {
        "sleep" => {
            let Some(s) = v.as_str() else {
                return Err(err(
                    &f,
                    "give the sleep as a duration such as `10ms` (isotope's sleep distributions are not imported)".into(),
                    None,
                ));
            };
            let d: mesh_core::Duration = s.parse().map_err(|e| err(&f, format!("{e}"), None))?;
            Ok(Cmd::Sleep(d.to_string()))
        }
        "call" => match v {
            Value::String(s) => Ok(Cmd::Call(s.clone())),
            Value::Mapping(c) => {
                let mut service = None;
                for (ck, cv) in c {
                    let ck = key(ck);
                    match ck.as_str() {
                        "service" => service = cv.as_str().map(str::to_owned),
                        "size" => note(format!(
                            "{f}.size: request sizes are not modeled (only a response's bytes take time on the link); dropped"
                        )),
                        _ => {
                            return Err(err(
                                &format!("{f}.{ck}"),
                                format!("unknown field `{ck}`; a call has `service` and `size`"),
                                crate::nearest(&ck, ["service", "size"]),
                            ));
                        }
                    }
                }
                service
                    .map(Cmd::Call)
                    .ok_or_else(|| err(&f, "a call needs `service: NAME`".into(), None))
            }
            _ => Err(err(&f, "give the service called: `call: b`".into(), None)),
        },
        _ => Err(err(
            &f,
            format!("unknown step `{k}`; isotope steps are `sleep`, `call` and concurrent lists"),
            crate::nearest(&k, ["sleep", "call"]),
        )),
    }
}

/// isotope's percentage: `"0.01%"`, or a number from 0 to 1.
fn percentage(v: &Value) -> Result<f64, String> {
    let p = match v {
        Value::String(s) => {
            let Some(n) = s.trim().strip_suffix('%') else {
                return Err(format!(
                    "`{s}`: give a percentage such as `0.1%` or a number from 0 to 1"
                ));
            };
            n.trim()
                .parse::<f64>()
                .map_err(|_| format!("`{s}` is not a percentage such as `0.1%`"))?
                / 100.0
        }
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        _ => f64::NAN,
    };
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err("give a percentage from 0% to 100% (or a number from 0 to 1)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ImportOptions {
        ImportOptions {
            name: "imported".into(),
            rate: 200.0,
            requests: 2000,
        }
    }

    /// A graph in isotope's own format (its README's example, extended).
    const GRAPH: &str = "apiVersion: v1alpha1
kind: MockServiceGraph
defaults:
  type: http
  requestSize: 1 KB
  responseSize: 16 KB
  numReplicas: 2
services:
- name: a
  errorRate: 0.01%
  script:
  - sleep: 1ms
- name: b
  type: grpc
- name: c
  script:
  - call:
      service: a
      size: 10K
  - call: b
- name: d
  isEntrypoint: true
  numReplicas: 3
  script:
  - - call: a
    - call: c
  - sleep: 500us
  - call: b
";

    #[test]
    fn an_isotope_graph_becomes_a_scenario_that_validates() {
        let out = import(GRAPH, "graph.yaml", &opts()).unwrap();
        let loaded = crate::parse(&out.yaml, "imported.yaml", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{e}\n{}", out.yaml));
        let s = &loaded.scenario;
        assert_eq!(s.services.len(), 4);
        assert_eq!(s.services["d"].instances, 3);
        assert_eq!(s.services["a"].instances, 2, "defaults apply");
        assert!((s.services["a"].error_rate.get() - 0.0001).abs() < 1e-12);
        let d = crate::graph::Script::compile(&s.services["d"].script);
        assert_eq!(d.upstreams, ["a", "c", "b"]);
        assert!(
            matches!(&d.ops[0], crate::graph::Op::Calls { calls, wait: u32::MAX } if calls.len() == 2)
        );
        assert!(matches!(&d.ops[1], crate::graph::Op::Compute(_)));
        assert_eq!(s.clients.len(), 1);
        assert_eq!(s.clients["to-d"].target, "d");
        assert!(out.notes.iter().any(|n| n.contains("gRPC")));
        assert!(
            out.notes
                .iter()
                .any(|n| n.contains("sizes are not modeled"))
        );
        // `responseSize: 16 KB` from the defaults: 16,000 bytes on every service, on a link.
        assert_eq!(
            s.services["a"].response_size.map(crate::ByteSize::bytes),
            Some(16_000)
        );
        assert!(s.network.bandwidth.is_some());
    }

    #[test]
    fn mistakes_in_the_graph_name_their_field() {
        let bad = GRAPH.replace("- call: b\n- name: d", "- call: bb\n- name: d");
        let e = import(&bad, "graph.yaml", &opts()).unwrap_err();
        assert_eq!(e.field, "services.2.script.1");
        assert_eq!(e.suggestion.as_deref(), Some("b"));
        assert!(e.line.is_some(), "{e}");
        let bad = GRAPH.replace("numReplicas: 3", "numReplica: 3");
        let e = import(&bad, "graph.yaml", &opts()).unwrap_err();
        assert_eq!(e.field, "services.3.numReplica");
        assert_eq!(e.suggestion.as_deref(), Some("numReplicas"));
        let bad = GRAPH.replace("sleep: 1ms", "sleep: 1 parsec");
        assert!(import(&bad, "graph.yaml", &opts()).is_err());
        let bad = GRAPH.replace("errorRate: 0.01%", "errorRate: 150%");
        let e = import(&bad, "graph.yaml", &opts()).unwrap_err();
        assert_eq!(e.field, "services.0.errorRate");
    }

    #[test]
    fn without_entry_points_the_roots_are_called() {
        let g = "services:\n- name: front\n  script: [{call: back}]\n- name: back\n";
        let out = import(g, "g.yaml", &opts()).unwrap();
        assert!(out.yaml.contains("to-front:"));
        assert!(!out.yaml.contains("to-back:"));
        crate::parse(&out.yaml, "i.yaml", std::path::Path::new(".")).unwrap();
    }
}
