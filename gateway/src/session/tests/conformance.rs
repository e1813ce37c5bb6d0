//! RFC 6455 conformance of the session, table-driven on both subprotocols:
//! each protocol violation closes with the code section 7.4.1 gives it;
//! and the abuse limits of the read path (a small pre-auth frame limit,
//! liveness from complete frames only).
use proto::v1::ErrorCode;

use super::*;

/// A raw client frame: FIN, RSV bits, opcode, masked or not, any length.
fn raw(fin: bool, rsv: u8, opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let m = u8::from(masked) << 7;
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=65535 => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [1u8, 2, 3, 4];
    if masked {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw(true, 0, opcode, true, payload)
}

/// An authenticated WebSocket session on `subprotocol` (None: binary).
fn open_ws(subprotocol: Option<&str>) -> Harness {
    let mut h = Harness::new(Transport::WebSocket);
    let token = h.token("alice", Some("phone"), 3600);
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("Authorization", bearer.as_str())];
    if let Some(p) = subprotocol {
        headers.push(("Sec-WebSocket-Protocol", p));
    }
    h.feed(upgrade(&headers, "/ws").as_bytes());
    assert!(h.s.output().starts_with(b"HTTP/1.1 101"));
    h.output();
    h.routes();
    h
}

#[test]
fn each_violation_gets_its_rfc_close_code() {
    let mut long_len = vec![0x82, 0xFF];
    long_len.extend_from_slice(&(1u64 << 63).to_be_bytes());
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked frame", raw(true, 0, 0x2, false, b"x"), 1002),
        (
            "RSV1 without an extension",
            raw(true, 4, 0x2, true, b"x"),
            1002,
        ),
        ("RSV3", raw(true, 1, 0x1, true, b"{}"), 1002),
        ("reserved data opcode", masked(0x3, b""), 1002),
        ("reserved control opcode", masked(0xB, b""), 1002),
        ("control frame over 125 bytes", masked(0x9, &[0; 126]), 1002),
        (
            "fragmented control frame",
            raw(false, 0, 0x9, true, b""),
            1002,
        ),
        ("stray continuation", masked(0x0, b"x"), 1002),
        (
            "interleaved data frame",
            [raw(false, 0, 0x1, true, b"{"), masked(0x2, b"x")].concat(),
            1002,
        ),
        ("close with a 1-byte payload", masked(0x8, &[3]), 1002),
        (
            "close code 1005 on the wire",
            masked(0x8, &1005u16.to_be_bytes()),
            1002,
        ),
        ("close code 999", masked(0x8, &999u16.to_be_bytes()), 1002),
        ("64-bit length with the top bit set", long_len, 1002),
        ("text that is not UTF-8", masked(0x1, &[0xC3, 0x28]), 1007),
        (
            "text not UTF-8 across fragments",
            [
                raw(false, 0, 0x1, true, &[b'{', 0xE2, 0x82]),
                masked(0x0, &[0x28, b'}']),
            ]
            .concat(),
            1007,
        ),
        (
            "close reason that is not UTF-8",
            masked(0x8, &[0x03, 0xE8, 0xFF, 0xFE]),
            1007,
        ),
    ];
    for subprotocol in [None, Some("im.gateway.v1+json")] {
        for (what, bytes, want) in &cases {
            let mut h = open_ws(subprotocol);
            h.feed(bytes);
            let code = ws_close_code(h.output());
            assert_eq!(code, Some(*want), "{what} ({subprotocol:?})");
            assert!(h.s.is_closing(), "{what}");
        }
    }
}

#[test]
fn a_valid_close_is_answered_with_its_code_and_a_good_frame_is_not_a_violation() {
    for subprotocol in [None, Some("im.gateway.v1+json")] {
        let mut h = open_ws(subprotocol);
        h.feed(&masked(0x9, b"ping"));
        assert!(!h.s.is_closing(), "a ping is fine");
        h.feed(&masked(0x8, &[0x03, 0xE8, b'o', b'k']));
        assert_eq!(ws_close_code(h.output()), Some(1000));
    }
}

#[test]
fn before_auth_a_frame_over_the_preauth_limit_is_refused() {
    for transport in [Transport::Tcp, Transport::WebSocket] {
        let mut h = Harness::new(transport);
        if transport == Transport::WebSocket {
            h.feed(upgrade(&[], "/ws").as_bytes());
            h.output();
        }
        let limit = h.env.limits.max_preauth_frame_bytes;
        let mut head = Vec::new();
        match transport {
            Transport::Tcp => head.extend_from_slice(&((limit + 1) as u32).to_be_bytes()),
            Transport::WebSocket => proto::ws::encode_header(
                true,
                Opcode::Binary,
                limit + 1,
                Some([1, 2, 3, 4]),
                &mut head,
            ),
        }
        h.feed(&head);
        assert!(
            h.s.is_closing(),
            "{transport:?}: refused from the header alone"
        );
        let frames = h.frames();
        assert_eq!(
            error_code(&frames[0]),
            Some((ErrorCode::FrameTooLarge, true))
        );
    }
}

#[test]
fn a_trickled_partial_frame_is_not_liveness() {
    let mut h = Harness::open(Transport::Tcp);
    let timeout = Duration::from_millis(h.env.limits.heartbeat_timeout_ms);
    // A frame announced and never finished, one byte at a time.
    h.feed(&100u32.to_be_bytes());
    let step = Duration::from_secs(1);
    let mut elapsed = Duration::ZERO;
    while elapsed + step < timeout {
        h.advance(step);
        h.feed(b"x");
        elapsed += step;
    }
    assert!(!h.s.is_closing());
    h.advance(timeout - elapsed);
    assert!(
        h.s.is_closing(),
        "closed at the heartbeat deadline of its last complete frame"
    );
}

#[test]
fn a_client_flooding_frames_is_closed_rate_limited() {
    let limits = crate::config::Limits {
        max_frames_per_sec: 10,
        ..Default::default()
    };
    let mut h = Harness::with(Transport::Tcp, limits, Default::default());
    h.authenticate("alice", "phone", 3600);
    let rate = h.env.limits.max_frames_per_sec as usize;
    let ping = client_bytes(
        Wire::Tcp,
        proto::v1::client_frame::Frame::Ping(proto::v1::Ping { nonce: 1 }),
    );
    // The burst (twice the rate) at one instant is fine...
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 2 * rate)
        .collect();
    h.feed(&burst);
    assert!(!h.s.is_closing());
    h.output();
    // ...one more is a flood.
    h.feed(&ping);
    assert!(h.s.is_closing());
    let frames = h.frames();
    assert_eq!(
        error_code(frames.last().unwrap()),
        Some((ErrorCode::RateLimited, true))
    );
}
