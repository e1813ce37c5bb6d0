//! Unit tests of the token policy (`aud`, `iss`, lifetime) and of key sets.
use super::tests::{hs, secret_verifier, NOW};
use super::*;
use serde_json::{json, Value};

#[test]
fn audience_issuer_and_lifetime_policy() {
    let v = secret_verifier().with_claims_policy(Some("chat"), Some("https://id.example"), 3600);
    let ok = json!({"sub": "u", "exp": NOW + 60, "aud": "chat", "iss": "https://id.example"});
    assert!(v.verify_at(&hs(ok.clone()), NOW).is_ok());
    let with = |k: &str, val: Value| {
        let mut c = ok.clone();
        c[k] = val;
        c
    };
    let without = |k: &str| {
        let mut c = ok.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let cases = [
        (with("aud", json!("other")), AuthError::WrongAudience),
        (with("aud", json!(["other", "x"])), AuthError::WrongAudience),
        (without("aud"), AuthError::WrongAudience),
        (
            with("iss", json!("https://evil.example")),
            AuthError::WrongIssuer,
        ),
        (without("iss"), AuthError::WrongIssuer),
        (with("exp", json!(NOW + 3601)), AuthError::LifetimeTooLong),
        (with("exp", json!(1e20)), AuthError::LifetimeTooLong),
    ];
    for (claims, want) in cases {
        assert_eq!(v.verify_at(&hs(claims.clone()), NOW), Err(want), "{claims}");
    }
    // An `aud` list naming us is fine; without a policy nothing is checked.
    assert!(v
        .verify_at(&hs(with("aud", json!(["x", "chat"]))), NOW)
        .is_ok());
    assert!(secret_verifier()
        .verify_at(&hs(with("aud", json!("other"))), NOW)
        .is_ok());
}

#[test]
fn a_jwks_picks_the_key_by_kid() {
    let b64 = |s: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    use base64::Engine as _;
    let set = json!({"keys": [
        {"kty": "oct", "kid": "a", "k": b64(b"secret-a")},
        {"kty": "oct", "kid": "b", "alg": "HS256", "k": b64(b"secret-b")},
    ]});
    let v = Verifier::new(KeySource::Jwks(set.to_string().into_bytes())).unwrap();
    let sign_kid = |kid: Option<&str>, alg: Algorithm, secret: &[u8]| {
        let mut h = Header::new(alg);
        h.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(
            &h,
            &json!({"sub": "u", "exp": NOW + 60}),
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    assert!(v
        .verify_at(&sign_kid(Some("a"), Algorithm::HS384, b"secret-a"), NOW)
        .is_ok());
    assert!(v
        .verify_at(&sign_kid(Some("b"), Algorithm::HS256, b"secret-b"), NOW)
        .is_ok());
    let cases = [
        (
            sign_kid(Some("b"), Algorithm::HS256, b"secret-a"),
            AuthError::BadSignature,
        ),
        (
            sign_kid(Some("b"), Algorithm::HS512, b"secret-b"),
            AuthError::WrongAlgorithm,
        ),
        (
            sign_kid(Some("zz"), Algorithm::HS256, b"secret-a"),
            AuthError::UnknownKey,
        ),
        (
            sign_kid(None, Algorithm::HS256, b"secret-a"),
            AuthError::UnknownKey,
        ),
    ];
    for (token, want) in cases {
        assert_eq!(v.verify_at(&token, NOW), Err(want));
    }
    for bad in [
        json!({"keys": []}),
        json!({"keys": [{"kty": "oct", "k": "eA"}, {"kty": "oct", "k": "eQ"}]}),
        json!("x"),
    ] {
        assert!(
            matches!(
                Verifier::new(KeySource::Jwks(bad.to_string().into_bytes())),
                Err(KeyError::BadJwks(_))
            ),
            "{bad}"
        );
    }
}
