//! `gateway::auth::Verifier`, the hand-written split, base64url and claims
//! parse that attacker bytes reach before authentication: never panics;
//! whatever it accepts is a token the server may act on (a valid user and
//! device name within the server's `max_name_bytes`, not expired); and a
//! token minted with the secret verifies exactly when its names are valid
//! and it fits `MAX_TOKEN_BYTES`, to the same names.
#![no_main]

use gateway::auth::{
    mint_hs256, unix_now, AuthError, Claims, KeySource, Verifier, MAX_TOKEN_BYTES,
};
use gateway::config::Config;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

const SECRET: &[u8] = b"fuzz-secret";

/// The server's rule for a user or device name.
fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty() && name.len() <= max && !name.chars().any(char::is_control)
}

fn check_accepted(c: &Claims, now: u64, max: usize) {
    assert!(valid_name(&c.user, max), "{c:?}");
    assert!(
        c.device.as_deref().is_none_or(|d| valid_name(d, max)),
        "{c:?}"
    );
    assert!(c.exp > now, "{c:?} at {now}");
}

fuzz_target!(|data: &[u8]| {
    let max = Config::default().limits.max_name_bytes;
    let verifier = Verifier::new(KeySource::Secret(SECRET.to_vec()))
        .expect("an HMAC key")
        .with_max_name_bytes(max);
    let now = unix_now();

    // Attacker bytes as a token (tokens arrive as UTF-8 text).
    let text = String::from_utf8_lossy(data);
    if let Ok(c) = verifier.verify_at(&text, now) {
        check_accepted(&c, now, max);
    }

    // A real token for fuzzed names: `user \0 device`.
    let (user, device) = match text.split_once('\0') {
        Some((u, d)) => (u, Some(d)),
        None => (&*text, None),
    };
    let token = mint_hs256(SECRET, user, device, Duration::from_secs(3600)).expect("mint");
    let got = verifier.verify_at(&token, unix_now());
    if token.len() > MAX_TOKEN_BYTES {
        // Refused before it is split: too long to be one of ours.
        assert_eq!(got, Err(AuthError::Malformed), "{} bytes", token.len());
    } else if !valid_name(user, max) {
        assert!(
            matches!(got, Err(AuthError::InvalidSub) | Err(AuthError::Malformed)),
            "sub {user:?}: {got:?}"
        );
    } else if device.is_some_and(|d| !valid_name(d, max)) {
        assert_eq!(got, Err(AuthError::InvalidDevice), "device {device:?}");
    } else {
        let c = got.unwrap_or_else(|e| panic!("{user:?}/{device:?} refused: {e:?}"));
        assert_eq!((c.user.as_str(), c.device.as_deref()), (user, device));
        check_accepted(&c, now, max);
    }
});
