//! Scenarios that cannot finish or fit, files that are not scenarios, servers that must not be
//! open to anyone, and topologies too large to plot one bar per endpoint.

use std::io::BufRead as _;

use super::*;

/// Each case: GOOD with `from` replaced by `to`; the error must name `field` and contain `says`.
#[test]
fn runs_that_cannot_finish_or_fit_are_refused_before_they_start() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // Soft limits: the field, the estimate, and the way out.
        (
            "duration: 10s",
            "duration: 10s\nsample_period: 1ns",
            "sample_period",
            "--allow-large",
        ),
        (
            "duration: 10s",
            "duration: 100000000s",
            "duration",
            "simulator events",
        ),
        // Hard limits.
        (
            "duration: 10s",
            "requests: 18446744073709551615",
            "requests",
            "at most",
        ),
        (
            "rate: 100/s",
            "rate: 1e300/s",
            "clients.load.arrival.rate",
            "above 1G/s",
        ),
        (
            "rate: 100/s",
            "rate: 1e-12/s",
            "clients.load.arrival.rate",
            "measure nothing",
        ),
        (
            "mean: 5ms",
            "mean: 18446744073709551000ns",
            "services.backend.service_time.mean",
            "longer than 100 years",
        ),
    ];
    for &(from, to, field, says) in cases {
        assert!(GOOD.contains(from), "{from}");
        let (code, err) = invalid(&GOOD.replace(from, to));
        assert_eq!(code, 2, "{to}: {err}");
        assert!(err.contains(field) && err.contains(says), "{to}: {err}");
        assert!(err.contains("bad.yaml:"), "{to}: no line: {err}");
    }
    // Requests sized by count at a rate that takes longer than 100 years to send them.
    let (code, err) = invalid(
        &GOOD
            .replace("duration: 10s", "requests: 1000")
            .replace("rate: 100/s", "rate: 1e-12/s"),
    );
    assert_eq!(code, 2);
    assert!(err.contains("years of simulated time"), "{err}");
}

#[test]
fn allow_large_lifts_the_soft_limits() {
    let dir = tmp("allow-large");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("fine.yaml");
    // 11 s in windows of 100 us: 110,000 windows, past the 100,000 a run may have by default.
    std::fs::write(
        &file,
        GOOD.replace("duration: 10s", "duration: 11s\nsample_period: 100us"),
    )
    .unwrap();
    let out = dir.join("out");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let refused = meshbench(&args);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("110 k time-series windows"));
    let ran = meshbench(&[&args[..], &["--allow-large", "--quiet"]].concat());
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let rows = std::fs::read_to_string(out.join("timeseries.csv"))
        .unwrap()
        .lines()
        .count();
    assert!(rows > 100_000, "{rows} windows");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_service_time_near_the_limit_times_out_instead_of_wrapping() {
    // A mean of 99 years: under the longest duration accepted, but about 0.3% of draws land
    // past 2^64 ns (584 years). Before time arithmetic saturated, those completion times
    // wrapped around to the near past and the requests "succeeded" at once (about 27 here).
    let dir = tmp("no-wrap");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("slow.yaml");
    std::fs::write(
        &file,
        GOOD.replace("mean: 5ms", "mean: 867240h")
            .replace("rate: 100/s", "rate: 1000/s")
            .replace("strategies:", "policy: { timeout: 1s }\nstrategies:"),
    )
    .unwrap();
    let out = dir.join("out");
    let run = meshbench(&[
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    // Every request failed: the run's own check fails (exit 1), and says why.
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let s = summary(&out);
    let rr = &s.strategies[0];
    assert_eq!(rr.mean("throughput_rps"), 0.0);
    assert!(rr.mean("error_rate") > 0.99, "{}", rr.mean("error_rate"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_that_are_not_one_small_utf8_yaml_document_get_located_errors() {
    let dir = tmp("shapes");
    std::fs::create_dir_all(&dir).unwrap();
    let check = |name: &str, bytes: &[u8], says: &[&str]| {
        let f = dir.join(name);
        std::fs::write(&f, bytes).unwrap();
        let started = std::time::Instant::now();
        let out = meshbench(&["validate", f.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        for s in says {
            assert!(err.contains(s), "{name}: `{s}` not in {err}");
        }
        // Not a timing test: a parser gone quadratic takes tens of seconds here.
        assert!(started.elapsed().as_secs() < 30, "{name}");
    };
    let deep = format!(
        "{GOOD}extra: {}{}\n",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    check(
        "deep.yaml",
        deep.as_bytes(),
        &["deep.yaml:13:", "32 levels"],
    );
    check(
        "two.yaml",
        format!("{GOOD}---\nname: u\n").as_bytes(),
        &["two.yaml:13:1", "second YAML document"],
    );
    check(
        "latin1.yaml",
        &[&b"name: t\ndescription: caf\xe9\n"[..], GOOD.as_bytes()].concat(),
        &["latin1.yaml:2:17", "not UTF-8"],
    );
    let big = format!("{GOOD}#{}\n", "x".repeat(5 << 20));
    check("big.yaml", big.as_bytes(), &["at most 4194304"]);
    let mut laughs = String::from("policy:\n  a: &a [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9u8 {
        let (n, p) = (char::from(b'a' + i), char::from(b'a' + i - 1));
        laughs.push_str(&format!(
            "  {n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        ));
    }
    check(
        "laughs.yaml",
        format!("{GOOD}{laughs}").as_bytes(),
        &["laughs.yaml:15:", "aliases"],
    );
    // A FIFO would block a reader forever.
    let fifo = dir.join("fifo.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let out = meshbench(&["validate", fifo.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_refusal_names_a_field_and_stays_on_one_line() {
    // A syntax error names the keys around it; a duplicate or missing top-level field names
    // itself; a quoted multi-line value is escaped.
    for (yaml, want) in [
        (
            GOOD.replace(
                "rr: { balancer: { kind: round_robin } }",
                "rr: { balancer: { kind: a: b } }",
            ),
            "bad.yaml:4:28: strategies.rr:",
        ),
        (
            format!("{GOOD}seed: 1\nseed: 2\n"),
            ": seed: duplicate field `seed`",
        ),
        (GOOD.replace("clients:", "clientz:"), "clientz"),
        (
            GOOD.replace("duration: 10s", "duration: |\n  10s\n  20s"),
            "duration: unknown duration unit `s\\n20s`",
        ),
    ] {
        let (code, err) = invalid(&yaml);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(want), "`{want}` not in {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}

#[test]
fn sweep_point_errors_point_at_the_sweep_entry() {
    let (code, err) = invalid(&format!(
        "{GOOD}sweep:\n  clients.load.arrival.rate: [100/s, 200/s]\n  services.backend.instances: [4, 0]\n"
    ));
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.yaml:15:3: services.backend.instances") && err.contains("sweep point"),
        "{err}"
    );
    let (_, err) =
        invalid(&GOOD.replace("    instances: 4", "    instances: 4\n    error_rate: 1.5"));
    assert!(
        err.contains("bad.yaml:8:17: services.backend.error_rate: probability"),
        "{err}"
    );
}

/// `meshbench serve` with a control token: requests without it get 401, with it 200.
#[test]
fn the_control_endpoint_wants_its_token() {
    let dir = tmp("control");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("served.yaml");
    std::fs::write(&file, GOOD).unwrap();
    let token = "0123456789abcdef0123";
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshbench"))
        .args(["serve", file.to_str().unwrap(), "--no-faults"])
        .args(["--control-token", token])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve starts");
    // Read serve's stdout to its end on a thread: closing the pipe early would end the server
    // at its next line.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("control: http://") {
                let _ = tx.send(rest.split('/').next().map(str::to_owned));
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .ok()
        .flatten()
        .expect("serve prints its control address");
    assert!(
        addr.starts_with("127.0.0.1:"),
        "loopback by default: {addr}"
    );
    let get = |auth: Option<&str>| -> (u16, String) {
        let header = auth.map(|t| format!("Authorization: Bearer {t}"));
        super::observe::http_get(
            &addr,
            "/instances",
            &header.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    let without = get(None);
    let wrong = get(Some("0123456789abcdef0124"));
    let with = get(Some(token));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(without.0, 401, "{without:?}");
    assert_eq!(wrong.0, 401, "{wrong:?}");
    assert!(with.0 == 200 && with.1.contains("backend/0"), "{with:?}");
    let short = meshbench(&["serve", file.to_str().unwrap(), "--control-token", "short"]);
    assert_eq!(short.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn thousands_of_endpoints_render_aggregated() {
    let dir = tmp("wide");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("wide.yaml");
    std::fs::write(
        &file,
        GOOD.replace("instances: 4", "instances: 5000")
            .replace("duration: 10s", "duration: 3s")
            .replace("rate: 100/s", "rate: 20000/s"),
    )
    .unwrap();
    let out = dir.join("out");
    run_ok(&[
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let share = String::from_utf8(read(&out, "load_share.svg")).unwrap();
    assert!(share.contains("sorted (5000 endpoints)"), "not aggregated");
    let heat = String::from_utf8(read(&out, "endpoint_heatmap.svg")).unwrap();
    assert!(heat.contains("5000 endpoints in 200 groups"), "not grouped");
    // One bar per endpoint made megabytes; the aggregated page stays small.
    let html = read(&out, "index.html").len();
    assert!(html < 1 << 20, "index.html is {html} bytes");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn samples_files_outside_the_scenario_need_data_dir() {
    let base = tmp("data-dir");
    let (scen, data) = (base.join("scenario"), base.join("data"));
    std::fs::create_dir_all(&scen).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("samples.csv"), "4ms\n5ms\n6ms\n").unwrap();
    let file = scen.join("emp.yaml");
    let samples = data.join("samples.csv");
    std::fs::write(
        &file,
        GOOD.replace(
            "{ dist: exponential, mean: 5ms }",
            &format!("{{ dist: empirical, file: \"{}\" }}", samples.display()),
        ),
    )
    .unwrap();
    let refused = meshbench(&["validate", file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--data-dir"));
    let ok = meshbench(&[
        "validate",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The named directory is the limit: a sibling is still refused.
    let other = meshbench(&[
        "validate",
        file.to_str().unwrap(),
        "--data-dir",
        scen.to_str().unwrap(),
    ]);
    assert_eq!(other.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn live_and_fidelity_refuse_a_day_of_traffic_before_sending_any() {
    let dir = tmp("live-limit");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("long.yaml");
    std::fs::write(&file, GOOD.replace("duration: 10s", "duration: 30h")).unwrap();
    let out = dir.join("out");
    for cmd in ["live", "fidelity"] {
        let run = meshbench(&[cmd, file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("long.yaml:2:1: duration:") && err.contains("--allow-large"),
            "{cmd}: {err}"
        );
        assert!(!out.exists(), "{cmd} wrote a report");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
