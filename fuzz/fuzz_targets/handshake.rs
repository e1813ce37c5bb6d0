//! `proto::handshake::parse_request` and `parse_response`: never panic, never
//! claim a head longer than the limit or the input, and answer "need more"
//! only below the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::handshake::{parse_request, parse_response};

const MAX: usize = 2048;

fuzz_target!(|data: &[u8]| {
    match parse_request(data, MAX) {
        Ok(Some((n, req))) => {
            assert!(n <= data.len().min(MAX));
            assert!(req.path.starts_with('/'));
            assert!(req.version_ok);
        }
        Ok(None) => assert!(data.len() < MAX),
        Err(e) => assert!(matches!(e.status(), 400 | 405 | 426 | 431)),
    }
    match parse_response(data, MAX) {
        Ok(Some((n, _, _, _))) => assert!(n <= data.len().min(MAX)),
        Ok(None) => assert!(data.len() < MAX),
        Err(_) => {}
    }
});
