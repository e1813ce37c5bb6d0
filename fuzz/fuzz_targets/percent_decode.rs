//! `proto::handshake::percent_decode`, the one percent-decoder (query
//! tokens at the upgrade, user ids in admin paths): never panics; what it
//! accepts is UTF-8 and never longer than its input; and escaping any
//! string then decoding it gives the string back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::handshake::percent_decode;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(decoded) = percent_decode(s) {
            assert!(decoded.len() <= s.len());
        }
        // Every byte escaped: must decode to exactly the original.
        let escaped: String = s.bytes().map(|b| format!("%{b:02X}")).collect();
        assert_eq!(percent_decode(&escaped).as_deref(), Ok(s));
        // Unreserved characters pass through as they are.
        let plain: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        assert_eq!(percent_decode(&plain).as_deref(), Ok(plain.as_str()));
    }
});
