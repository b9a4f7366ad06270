//! Envoy's zone-aware routing and locality weighting.
//!
//! Sources: envoy `docs/root/intro/arch_overview/upstream/load_balancing/zone_aware.rst`,
//! `locality_weight.rst`, and the worked examples in the comments of
//! `ZoneAwareLoadBalancerBase::regenerateLocalityRoutingStructures`.

use mesh_core::Seed;
use mesh_core::locality::{
    Locality, LocalityPicker, NoZoneRouting, ZoneAwareConfig, ZoneRouting, choose_zone,
    effective_weight, zone_routing,
};

fn cfg() -> ZoneAwareConfig {
    ZoneAwareConfig::default()
}

/// zone_aware.rst case 2: "The originating cluster local zone percentage is smaller than the one
/// in upstream cluster": the local upstream zone takes all local requests.
#[test]
fn local_zone_smaller_routes_all_locally() {
    let r = zone_routing(&[1, 1, 1], &[4, 2, 2], &cfg(), false, false);
    assert_eq!(r, ZoneRouting::Direct);
    let mut rng = Seed::new(1).rng();
    assert!((0..1000).all(|_| choose_zone(&r, &cfg(), &mut rng) == Some(0)));
}

/// Source comment: "if local percentage is 20% and upstream is 10% we can route only 50% of
/// requests directly".
#[test]
fn local_twenty_upstream_ten_routes_half_locally() {
    let r = zone_routing(&[2, 8], &[1, 9], &cfg(), false, false);
    match &r {
        ZoneRouting::Residual {
            local_percent_to_route,
            ..
        } => assert_eq!(*local_percent_to_route, 5000),
        other => panic!("expected residual routing, got {other:?}"),
    }
    let mut rng = Seed::new(2).rng();
    let local = (0..100_000)
        .filter(|_| choose_zone(&r, &cfg(), &mut rng) == Some(0))
        .count();
    assert!((49_000..51_000).contains(&local), "{local}");
}

/// Source comment: local 40/40/20 %, upstream 25/50/25 % gives residual capacity 0/10/15 %
/// (cumulative; Envoy's comment writes it in 1/100000, the code in 1/10000): cross-zone traffic
/// goes 2:1 to zones 1 and 2.
#[test]
fn residual_capacity_example() {
    let r = zone_routing(&[2, 2, 1], &[2, 4, 2], &cfg(), false, false);
    let ZoneRouting::Residual {
        local_percent_to_route,
        residual_capacity,
    } = &r
    else {
        panic!("expected residual routing, got {r:?}");
    };
    assert_eq!(residual_capacity, &[0, 1000, 1500]);
    assert_eq!(*local_percent_to_route, 2500 * 10_000 / 4000);
    let mut rng = Seed::new(3).rng();
    let mut z = [0u32; 3];
    for _ in 0..300_000 {
        z[choose_zone(&r, &cfg(), &mut rng).unwrap()] += 1;
    }
    let total = 300_000.0;
    // Upstream receives 25/50/25 of traffic when every zone's clients route this way: here the
    // local zone keeps 62.5% and the cross-zone 37.5% splits 2:1.
    assert!((f64::from(z[0]) / total - 0.625).abs() < 0.005, "{z:?}");
    assert!((f64::from(z[1]) / total - 0.25).abs() < 0.005, "{z:?}");
    assert!((f64::from(z[2]) / total - 0.125).abs() < 0.005, "{z:?}");
}

/// zone_aware.rst preconditions.
#[test]
fn preconditions_turn_zone_routing_off() {
    let c = cfg();
    assert_eq!(
        zone_routing(&[1, 1], &[3, 3], &c, true, false),
        ZoneRouting::Off(NoZoneRouting::Panic)
    );
    assert_eq!(
        zone_routing(&[1, 1], &[3, 3], &c, false, true),
        ZoneRouting::Off(NoZoneRouting::Panic)
    );
    assert_eq!(
        zone_routing(&[1, 1, 1], &[3, 3], &c, false, false),
        ZoneRouting::Off(NoZoneRouting::ZoneCountDiffers)
    );
    // min_cluster_size defaults to 6: 5 healthy upstream hosts are too few.
    assert_eq!(
        zone_routing(&[1, 1], &[3, 2], &c, false, false),
        ZoneRouting::Off(NoZoneRouting::ClusterTooSmall)
    );
    assert_eq!(
        zone_routing(&[1, 1], &[0, 8], &c, false, false),
        ZoneRouting::Off(NoZoneRouting::LocalZoneEmpty)
    );
    assert_eq!(
        zone_routing(&[1], &[8], &c, false, false),
        ZoneRouting::Off(NoZoneRouting::SingleZone)
    );
}

#[test]
fn routing_enabled_percent_applies_per_request() {
    let c = ZoneAwareConfig {
        routing_enabled: 30.0,
        ..cfg()
    };
    let r = ZoneRouting::Direct;
    let mut rng = Seed::new(4).rng();
    let on = (0..100_000)
        .filter(|_| choose_zone(&r, &c, &mut rng).is_some())
        .count();
    assert!((29_000..31_000).contains(&on), "{on}");
}

/// locality_weight.rst: effective weight = weight x min(1, 1.4 x available / total); a
/// locality with 50% available hosts keeps 70% of its weight.
#[test]
fn locality_weights_scale_with_availability() {
    let full = Locality {
        weight: 10,
        available: 10,
        total: 10,
    };
    let half = Locality {
        weight: 10,
        available: 5,
        total: 10,
    };
    let dead = Locality {
        weight: 10,
        available: 0,
        total: 10,
    };
    assert_eq!(effective_weight(&full, 1.4), 10.0);
    assert!((effective_weight(&half, 1.4) - 7.0).abs() < 1e-9);
    assert_eq!(effective_weight(&dead, 1.4), 0.0);
    let mut picker = LocalityPicker::new(&[full, half, dead], 1.4, Seed::new(5)).unwrap();
    let mut z = [0u32; 3];
    for _ in 0..17_000 {
        z[picker.pick().unwrap()] += 1;
    }
    assert_eq!(z[2], 0);
    assert!(
        (i64::from(z[0]) - 10_000).abs() <= 2 && (i64::from(z[1]) - 7_000).abs() <= 2,
        "{z:?}"
    );
}

#[test]
fn locality_picker_rejects_all_zero_weights_and_small_opf() {
    let zero = Locality {
        weight: 0,
        available: 3,
        total: 3,
    };
    let err = LocalityPicker::new(&[zero, zero], 1.4, Seed::new(1)).unwrap_err();
    assert_eq!(err.field, "localities.weight");
    let ok = Locality {
        weight: 1,
        available: 3,
        total: 3,
    };
    let err = LocalityPicker::new(&[ok], 0.9, Seed::new(1)).unwrap_err();
    assert_eq!(err.field, "overprovisioning_factor");
    assert!(err.message.contains(">= 1"), "{err}");
}
