//! `proto::handshake::parse_request` and `parse_response` with the server's
//! `max_handshake_bytes`: never panic, never claim a head longer than the
//! limit or the input, and answer "need more" only below the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::handshake::{parse_request, parse_response};

fuzz_target!(|data: &[u8]| {
    let max = gateway::config::Config::default()
        .limits
        .max_handshake_bytes;
    match parse_request(data, max) {
        Ok(Some((n, req))) => {
            assert!(n <= data.len().min(max));
            assert!(req.path.starts_with('/'));
            assert!(req.version_ok);
        }
        Ok(None) => assert!(data.len() < max),
        Err(e) => assert!(matches!(e.status(), 400 | 405 | 426 | 431)),
    }
    match parse_response(data, max) {
        Ok(Some((n, _, _, _))) => assert!(n <= data.len().min(max)),
        Ok(None) => assert!(data.len() < max),
        Err(_) => {}
    }
});
