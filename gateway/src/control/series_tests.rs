use super::*;

fn reading(at_ms: u64, conns: u64, accepted: u64, cpu_ms: u64) -> Reading {
    let mut r = Reading {
        at_ms,
        ..Reading::default()
    };
    r.values[0] = conns;
    r.values[1] = accepted;
    r.values[8] = cpu_ms;
    r
}

fn points(ring: &Ring, name: &str) -> Vec<f64> {
    let (series, _) = ring.to_json();
    series[name]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn rates_are_differences_over_time_and_gauges_are_values() {
    let mut ring = Ring::default();
    ring.record(reading(0, 5, 100, 0));
    assert!(ring.is_empty(), "the first reading is the base");
    ring.record(reading(1000, 7, 130, 250));
    ring.record(reading(3000, 2, 170, 650));
    assert_eq!(points(&ring, "connections"), vec![7.0, 2.0]);
    assert_eq!(points(&ring, "connects"), vec![30.0, 20.0]);
    // 250 CPU-ms in 1 s is 25% of a core; 400 in 2 s is 20%.
    assert_eq!(points(&ring, "cpu"), vec![25.0, 20.0]);
}

#[test]
fn bus_bytes_published_every_two_seconds_make_a_steady_rate() {
    let mut ring = Ring::default();
    // Totals as a shard publishes them: a step of 2000 every other second.
    for (i, total) in [0, 0, 2000, 2000, 4000, 4000].iter().enumerate() {
        let mut r = reading(i as u64 * 1000, 0, 0, 0);
        r.values[7] = *total;
        ring.record(r);
    }
    assert_eq!(
        points(&ring, "bus_bytes"),
        vec![0.0, 1000.0, 1000.0, 1000.0, 1000.0]
    );
}

#[test]
fn a_counter_that_restarts_is_zero_not_negative() {
    let mut ring = Ring::default();
    let mut a = reading(0, 0, 0, 0);
    a.values[7] = 5000;
    let mut b = reading(1000, 0, 0, 0);
    b.values[7] = 100;
    ring.record(a);
    ring.record(b);
    assert_eq!(points(&ring, "bus_bytes"), vec![0.0]);
}

#[test]
fn the_ring_keeps_the_last_ten_minutes_oldest_first() {
    let mut ring = Ring::default();
    for i in 0..=(POINTS as u64 + 50) {
        ring.record(reading(i * 1000, i, 0, 0));
    }
    let conns = points(&ring, "connections");
    assert_eq!(conns.len(), POINTS);
    assert_eq!(conns[0], 51.0);
    assert_eq!(*conns.last().unwrap(), (POINTS + 50) as f64);
}

#[test]
fn only_codes_with_errors_are_listed() {
    let mut ring = Ring::default();
    let a = reading(0, 0, 0, 0);
    let mut b = reading(1000, 0, 0, 0);
    b.errors[2] = 3;
    ring.record(a);
    ring.record(b);
    let (_, errors) = ring.to_json();
    let listed: Vec<&String> = errors.as_object().unwrap().keys().collect();
    assert_eq!(listed, vec![ERROR_CODES[2].as_str_name()]);
    assert_eq!(errors[ERROR_CODES[2].as_str_name()][0], 3.0);
}

#[test]
fn this_process_has_cpu_time_and_resident_memory() {
    let (_, rss) = process_usage().expect("/proc/self is readable");
    assert!(rss > 0);
}
