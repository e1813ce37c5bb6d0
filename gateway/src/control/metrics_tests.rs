//! Tests of `metrics`.
use super::*;
use proto::v1::ErrorCode;
use std::time::Duration;

#[test]
fn sums_shards_and_names_codes() {
    let a = Arc::new(ShardStats::default());
    let b = Arc::new(ShardStats::default());
    a.error(ErrorCode::BadFrame);
    b.error(ErrorCode::BadFrame);
    ShardStats::inc(&b.deliveries);
    b.handshake(Duration::from_millis(3));
    let text = render(&[a, b], false);
    assert!(text.contains("gateway_errors_total{code=\"BAD_FRAME\"} 2"));
    assert!(text.contains("gateway_deliveries_total{shard=\"1\"} 1"));
    assert!(text.contains("gateway_handshake_seconds_bucket{le=\"0.005\"} 1"));
    assert!(text.contains("gateway_handshake_seconds_bucket{le=\"0.0025\"} 0"));
    assert!(text.contains("gateway_handshake_seconds_count 1"));
}
