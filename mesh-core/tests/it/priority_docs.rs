//! Envoy's priority-level and panic-threshold docs, table by table.
//!
//! Sources: envoy `docs/root/intro/arch_overview/upstream/load_balancing/priority.rst` and
//! `panic_threshold.rst`; code: `LoadBalancerBase` in `load_balancer_impl.cc`. Each priority has
//! 100 hosts so "72% healthy" is 72 healthy hosts.

use mesh_core::priority::{
    Availability, LevelHosts, PriorityConfig, PriorityLoad, choose_priority, priority_load,
};

fn load_with(healthy_percent: &[u64], config: &PriorityConfig) -> PriorityLoad {
    let levels: Vec<LevelHosts> = healthy_percent
        .iter()
        .map(|&h| LevelHosts::new(100, h))
        .collect();
    priority_load(&levels, config)
}

/// With Envoy's defaults (panic threshold 50%).
fn load(healthy_percent: &[u64]) -> PriorityLoad {
    load_with(healthy_percent, &PriorityConfig::default())
}

/// priority.rst describes priority load on its own; panic (panic_threshold.rst) is a separate
/// step that only matters once NTA < 100. Its tables are checked with panic disabled.
fn no_panic() -> PriorityConfig {
    PriorityConfig {
        healthy_panic_threshold: 0.0,
        ..Default::default()
    }
}

fn check(rows: &[(&[u64], &[u32])], doc: &str) {
    for (healthy, want) in rows {
        let got = load_with(healthy, &no_panic());
        assert_eq!(
            got.healthy, *want,
            "{doc}: healthy {healthy:?} should load {want:?}"
        );
        assert_eq!(
            got.healthy.iter().sum::<u32>() + got.degraded.iter().sum::<u32>(),
            100
        );
    }
}

/// priority.rst, first table: two priorities, P=1 100% healthy.
#[test]
fn priority_rst_two_levels_p1_healthy() {
    check(
        &[
            (&[100, 100], &[100, 0]),
            (&[72, 100], &[100, 0]),
            (&[71, 100], &[99, 1]),
            (&[50, 100], &[70, 30]),
            (&[25, 100], &[35, 65]),
            (&[0, 100], &[0, 100]),
        ],
        "priority.rst table 1",
    );
}

/// priority.rst, second table: both priorities degrade; {20,30}-style normalization.
#[test]
fn priority_rst_two_levels_normalized() {
    check(
        &[
            (&[100, 100], &[100, 0]),
            (&[72, 72], &[100, 0]),
            (&[71, 71], &[99, 1]),
            (&[50, 50], &[70, 30]),
            (&[25, 100], &[35, 65]),
            (&[25, 25], &[50, 50]),
        ],
        "priority.rst table 2",
    );
}

/// priority.rst, third table: three priorities.
#[test]
fn priority_rst_three_levels() {
    check(
        &[
            (&[100, 100, 100], &[100, 0, 0]),
            (&[72, 72, 100], &[100, 0, 0]),
            (&[71, 71, 100], &[99, 1, 0]),
            (&[50, 50, 100], &[70, 30, 0]),
            (&[25, 100, 100], &[35, 65, 0]),
            (&[25, 25, 100], &[35, 35, 30]),
        ],
        "priority.rst table 3",
    );
    // The table's last row says 36/36/28 for 25/25/20% healthy. Envoy's code gives health
    // 35/35/28 (NTA 98), loads 35/35/28 by integer division, and the 2-point remainder to the
    // first healthy priority: 37/35/28. We follow the code.
    assert_eq!(load_with(&[25, 25, 20], &no_panic()).healthy, [37, 35, 28]);
    // With the default 50% panic threshold all three levels panic (NTA 98 < 100) and load
    // follows host counts instead.
    let panicking = load(&[25, 25, 20]);
    assert!(panicking.total_panic());
    assert_eq!(panicking.healthy, [34, 33, 33]);
}

/// The prose example of priority.rst: health {20, 30} normalizes to load {40, 60}.
#[test]
fn priority_rst_normalization_example() {
    // 20 = 1.4 x 14.28..%, so build the health values directly: 1 of 7 hosts healthy is
    // health 20, 3 of 14 is health 30.
    let levels = [LevelHosts::new(7, 1), LevelHosts::new(14, 3)];
    let got = priority_load(&levels, &no_panic());
    assert_eq!(got.normalized_total_availability, 50);
    assert_eq!(got.healthy, [40, 60]);
}

/// panic_threshold.rst, first table: P=1 100% healthy, so NTA is 100 and nothing panics.
#[test]
fn panic_rst_p1_healthy_never_panics() {
    for (h0, want) in [
        (72, [100, 0]),
        (71, [99, 1]),
        (50, [70, 30]),
        (25, [35, 65]),
        (0, [0, 100]),
    ] {
        let got = load(&[h0, 100]);
        assert_eq!(got.healthy, want, "P=0 {h0}% healthy");
        assert_eq!(got.panic, [false, false]);
        assert_eq!(got.normalized_total_availability, 100);
    }
}

/// panic_threshold.rst, second table: panic is checked only once NTA < 100.
#[test]
fn panic_rst_both_levels_degrade() {
    type Row = (u64, u64, [u32; 2], [bool; 2], u32);
    let rows: [Row; 3] = [
        (72, 72, [100, 0], [false, false], 100),
        (71, 71, [99, 1], [false, false], 100),
        (25, 25, [50, 50], [true, true], 70),
    ];
    for (h0, h1, want, panic, nta) in rows {
        let got = load(&[h0, h1]);
        assert_eq!(got.healthy, want, "{h0}%/{h1}%");
        assert_eq!(got.panic, panic, "{h0}%/{h1}%");
        assert_eq!(got.normalized_total_availability, nta, "{h0}%/{h1}%");
    }
    // Row "5% / 65%": NTA 98, P=0 (5%) panics and P=1 (65%) does not, as the table says. Its
    // loads (7/93) are the health values; the code's integer division (7, 92) gives the
    // remainder to P=0: 8/92.
    let got = load(&[5, 65]);
    assert_eq!(got.normalized_total_availability, 98);
    assert_eq!(got.panic, [true, false]);
    assert_eq!(got.healthy, [8, 92]);
    // Rows "50%/60%" and "25%/100%" in that table predate the overprovisioning factor (they
    // read 50/50 and 25/75); with OPF 1.4 they are 70/30 and 35/65, matching priority.rst.
    assert_eq!(load(&[50, 60]).healthy, [70, 30]);
    assert_eq!(load(&[25, 100]).healthy, [35, 65]);
}

/// panic_threshold.rst: "Panic mode can be disabled by setting the panic threshold to 0%" and
/// with every host unhealthy and panic disabled, P=0 nominally gets 100% and picks fail.
#[test]
fn panic_threshold_zero_disables_panic() {
    let cfg = PriorityConfig {
        healthy_panic_threshold: 0.0,
        ..Default::default()
    };
    let got = priority_load(&[LevelHosts::new(10, 1), LevelHosts::new(10, 1)], &cfg);
    assert_eq!(got.panic, [false, false]);
    let none = priority_load(&[LevelHosts::new(10, 0), LevelHosts::new(10, 0)], &cfg);
    assert_eq!(none.healthy, [100, 0]);
    assert_eq!(none.panic, [false, false]);
}

/// With every host unhealthy and panic enabled, every level panics and load follows host
/// counts (`recalculateLoadInTotalPanic`).
#[test]
fn total_panic_splits_by_host_count() {
    let levels = [LevelHosts::new(30, 0), LevelHosts::new(10, 0)];
    let got = priority_load(&levels, &PriorityConfig::default());
    assert!(got.total_panic());
    assert_eq!(got.healthy, [75, 25]);
    let levels = [LevelHosts::new(1, 0), LevelHosts::new(2, 0)];
    // 33 + 66 = 99; the remainder goes to the first non-empty level.
    assert_eq!(
        priority_load(&levels, &PriorityConfig::default()).healthy,
        [34, 66]
    );
}

/// Degraded hosts take load only after healthy availability is used up (priority.rst,
/// "degraded"); the code comment's example: health 10/20/10 %, degraded 20/10/0 %.
#[test]
fn degraded_hosts_take_the_remaining_load() {
    // OPF 1.0 so the percents are the host shares.
    let cfg = PriorityConfig {
        overprovisioning_factor: 1.0,
        ..no_panic()
    };
    let levels = [
        LevelHosts {
            total: 100,
            healthy: 10,
            degraded: 20,
        },
        LevelHosts {
            total: 100,
            healthy: 20,
            degraded: 10,
        },
        LevelHosts {
            total: 100,
            healthy: 10,
            degraded: 0,
        },
    ];
    let got = priority_load(&levels, &cfg);
    // Envoy's comment: "they will get 16% / 28% / 14% load to healthy hosts and 28% / 14% / 0%
    // load to degraded hosts ... the first healthy priority is receiving 2% additional load".
    assert_eq!(got.healthy, [16, 28, 14]);
    assert_eq!(got.degraded, [28, 14, 0]);
}

#[test]
fn choose_priority_follows_cumulative_loads() {
    let got = load(&[50, 100]); // 70 / 30
    let mut hits = [0u32; 2];
    for h in 0..100u64 {
        let (p, a) = choose_priority(h, &got).unwrap();
        assert_eq!(a, Availability::Healthy);
        hits[p] += 1;
    }
    assert_eq!(hits, [70, 30]);
}
