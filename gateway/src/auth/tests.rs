//! Unit tests of `auth`.
use super::*;
use serde_json::json;

const SECRET: &[u8] = b"test-secret";
pub(super) const NOW: u64 = 1_700_000_000;

const RSA_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCqozQWACFezkIv\n\
XT6WoqAZh+NWx282SsEz0PV//tZ28K0/QWuEjfSB3/MOuFINxqdo01CX0uzNqdQU\n\
h5kUw9KSBPy2PB7Mps5Vy95syfTEfkPyp1anOPBr3lr7njOQ+YVoBFnHUTe9mPGm\n\
D+Qyj+xW9z6AB14L68esIyeO2M4ULoqN3E3yDPst0lVydQjQo4/MW2R0JJlmcMNl\n\
4QvN5mICjiCs6Xc8LN7aU1tKJ7mP75fEV2QMoFdAXcKP+TYd6z4aSPkSlJgE3Fzh\n\
H19dDxt+8IfcEn8ARg+dxwT0wiQI3T0ChPn+hcltK2CMQtqSbnvygKqcOOeM88ki\n\
lpb14to9AgMBAAECggEACvNPxaSq/5BJf4wiltynXRQTIw/H44pPFUHw606hmT7v\n\
Q0qxuW85tHb4fGaYP3GS7z92YdPjpfwi09Fy4boCYqQGyrQXfucqgSeE5eLc/hoj\n\
Rqh1/2PATA/YM2MO6JwWs1rqHwgnhVeSFGfbK2KAloEl5eXzI101cmbMJFbl/LX3\n\
6Z3zxuufS5aQER6pCKYqAp+fz1puFhmRcQOgzJXb3QUVPw5HItMlnwcZxwupbxit\n\
N1phG7zpKAkZwZi7zKXm9CxuidRXfopNyu2hLNCb7eeq5+Mwlp+4h/bjwBGijaPA\n\
wvpgJcU2JL9zrxB/VE3kF2iEGesXzmet5MqcGi/dsQKBgQDpX+xsX/H79pikJUGy\n\
upeDwolE0RfwnFSNk6kqfMvBIJoI2o6cNOIAGxUimgVlMrkzfDegWKersdkgRWMu\n\
/0ppKt/sMk60rgg/9+mI0eVLGJTyK71XkYwLA9r1RdZ1pPBQDj0GuWWfK6inYsiX\n\
OBdzHZvaY82CCjWFa3Knztdj8QKBgQC7Ljgb1IUMUfiB8xXV+8zqhxTDlszXgTHk\n\
byo2EGAZLrZuhW4fyf7NY4PeE1bQrGV4Wfu7eoKDuJ+z8lOYd4fLDfk8dbLW0pKJ\n\
ZVuCfKD3MBJmtbLRWDd5kKjdLgHI0jtkTernf4m/ZxtPmVA9Tvl4S4lH7GHbWnLj\n\
9Hc5iBo3DQKBgAJB9U2PGA4x8oQUADC0cWbK6P0LcMnZGVBNT2Oj1WzG3fab9qk4\n\
Mb+Cg4/UIZ07AmOnHfqlIOoeTFVtlmoL+jJOQeBNFEnXLSlBQrcaILe7QyWcmrZQ\n\
KCSrIuEgjdSRhemgWaLJBFyn1XfZEsuztTZd4PYZ5REO/DmQMonBDIBhAoGARZVS\n\
AG6Jo2HZmx1t0aWQsOLUgj1OGxMJJB17OKvvvYzS/tUVcjXaRionfGf+Dwb3lb0F\n\
ytUpLaR1oiSElRpiXcbtD1/Fwvx2wyLt2N1RzXKOdKY5On+r58IyND8FJM2ajJg2\n\
qiaMY54F1hptbM0uCl0yRI2Id03xhfJ8W+PPswUCgYEAgp5mdAQ8368oy1IFICnw\n\
ZFiJ3GRiciL4tqSiGx5Ac8ZG73LUrKfiKhWsyL4BvgoocAYyu7meMOG2LYyjm9L2\n\
Dbjei9C5YbI6TdL+A+ZmBCvjX3nWpcAINARTm4fBd0G2JH4AWnrlC3dXCsEQOBnu\n\
AKy47J4h95+5odLE1rORxRY=\n\
-----END PRIVATE KEY-----\n\
";
const RSA_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqqM0FgAhXs5CL10+lqKg\n\
GYfjVsdvNkrBM9D1f/7WdvCtP0FrhI30gd/zDrhSDcanaNNQl9LszanUFIeZFMPS\n\
kgT8tjwezKbOVcvebMn0xH5D8qdWpzjwa95a+54zkPmFaARZx1E3vZjxpg/kMo/s\n\
Vvc+gAdeC+vHrCMnjtjOFC6KjdxN8gz7LdJVcnUI0KOPzFtkdCSZZnDDZeELzeZi\n\
Ao4grOl3PCze2lNbSie5j++XxFdkDKBXQF3Cj/k2Hes+Gkj5EpSYBNxc4R9fXQ8b\n\
fvCH3BJ/AEYPnccE9MIkCN09AoT5/oXJbStgjELakm578oCqnDjnjPPJIpaW9eLa\n\
PQIDAQAB\n\
-----END PUBLIC KEY-----\n\
";
const EC_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg+sD8lGFkM1OjLRJi\n\
UqA3ntwQYqy9uoYH1/vgB4wGjt2hRANCAASzS3aX31floojXuiD+jEiEQUr46LjO\n\
w0WdZCBI0guCb6wS6QRry5/HVlMxpHjlWfwHhWeFvOZ1rdS4rVnG8qel\n\
-----END PRIVATE KEY-----\n\
";
const EC_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEs0t2l99X5aKI17og/oxIhEFK+Oi4\n\
zsNFnWQgSNILgm+sEukEa8ufx1ZTMaR45Vn8B4Vnhbzmda3UuK1ZxvKnpQ==\n\
-----END PUBLIC KEY-----\n\
";

fn sign(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

pub(super) fn hs(claims: Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
}

pub(super) fn secret_verifier() -> Verifier {
    Verifier::new(KeySource::Secret(SECRET.to_vec())).unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn hs256_round_trip() {
    let v = secret_verifier();
    let token = mint_hs256(SECRET, "alice", Some("phone"), Duration::from_secs(60)).unwrap();
    let claims = v.verify(&token).unwrap();
    assert_eq!(claims.user, "alice");
    assert_eq!(claims.device.as_deref(), Some("phone"));
    let now = unix_now();
    assert!(claims.exp >= now + 59 && claims.exp <= now + 61);
    assert_eq!(claims.remaining(claims.exp - 10), Duration::from_secs(10));
    assert_eq!(claims.remaining(claims.exp + 10), Duration::ZERO);

    let token = mint_hs256(SECRET, "bob", None, Duration::from_millis(1_500)).unwrap();
    assert_eq!(v.verify(&token).unwrap().device, None);
}

#[test]
fn hs384_and_hs512_accepted() {
    let v = secret_verifier();
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let key = EncodingKey::from_secret(SECRET);
        let token = sign(alg, &key, json!({"sub": "u", "exp": NOW + 10}));
        assert_eq!(v.verify_at(&token, NOW).unwrap().user, "u");
    }
}

#[test]
fn wrong_secret_is_bad_signature() {
    let v = Verifier::new(KeySource::Secret(b"other".to_vec())).unwrap();
    let token = hs(json!({"sub": "u", "exp": NOW + 10}));
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::BadSignature));
}

#[test]
fn expiry_has_no_leeway() {
    let v = secret_verifier();
    let token = hs(json!({"sub": "u", "exp": NOW}));
    assert_eq!(v.verify_at(&token, NOW - 1).unwrap().exp, NOW);
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::Expired));
    assert_eq!(v.verify_at(&token, NOW + 1), Err(AuthError::Expired));
    let minted = mint_hs256(SECRET, "u", None, Duration::ZERO).unwrap();
    assert_eq!(v.verify(&minted), Err(AuthError::Expired));
    let float = hs(json!({"sub": "u", "exp": (NOW + 5) as f64 + 0.5}));
    assert_eq!(v.verify_at(&float, NOW).unwrap().exp, NOW + 5);
}

#[test]
fn not_before_is_honoured() {
    let v = secret_verifier();
    let token = hs(json!({"sub": "u", "exp": NOW + 100, "nbf": NOW + 10}));
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::NotYetValid));
    assert!(v.verify_at(&token, NOW + 10).is_ok());
    let bad = hs(json!({"sub": "u", "exp": NOW + 100, "nbf": "soon"}));
    assert_eq!(v.verify_at(&bad, NOW), Err(AuthError::NotYetValid));
}

#[test]
fn claim_errors() {
    let v = secret_verifier();
    let cases = [
        (json!({"exp": NOW + 10}), AuthError::MissingSub),
        (json!({"sub": null, "exp": NOW + 10}), AuthError::MissingSub),
        (json!({"sub": "", "exp": NOW + 10}), AuthError::InvalidSub),
        (json!({"sub": 42, "exp": NOW + 10}), AuthError::InvalidSub),
        (
            json!({"sub": "x".repeat(129), "exp": NOW + 10}),
            AuthError::InvalidSub,
        ),
        (
            json!({"sub": "a\nb", "exp": NOW + 10}),
            AuthError::InvalidSub,
        ),
        (json!({"sub": "u"}), AuthError::MissingExp),
        (
            json!({"sub": "u", "exp": "tomorrow"}),
            AuthError::MissingExp,
        ),
        (json!({"sub": "u", "exp": -5}), AuthError::MissingExp),
        (
            json!({"sub": "u", "exp": NOW + 10, "device": 7}),
            AuthError::InvalidDevice,
        ),
        (
            json!({"sub": "u", "exp": NOW + 10, "device": ""}),
            AuthError::InvalidDevice,
        ),
    ];
    for (claims, want) in cases {
        assert_eq!(v.verify_at(&hs(claims.clone()), NOW), Err(want), "{claims}");
    }
    let ok = hs(json!({"sub": "x".repeat(128), "exp": NOW + 10, "device": null}));
    assert_eq!(v.verify_at(&ok, NOW).unwrap().device, None);
    let short = secret_verifier().with_max_name_bytes(4);
    assert_eq!(short.verify_at(&ok, NOW), Err(AuthError::InvalidSub));
    let array = hs(json!([1, 2]));
    assert_eq!(v.verify_at(&array, NOW), Err(AuthError::Malformed));
}

#[test]
fn alg_none_rejected() {
    let v = secret_verifier();
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64url(json!({"sub": "u", "exp": NOW + 10}).to_string().as_bytes());
    assert_eq!(
        v.verify_at(&format!("{header}.{payload}."), NOW),
        Err(AuthError::WrongAlgorithm)
    );
    let sig = hs(json!({"sub": "u", "exp": NOW + 10}));
    let sig = sig.rsplit('.').next().unwrap();
    assert_eq!(
        v.verify_at(&format!("{header}.{payload}.{sig}"), NOW),
        Err(AuthError::WrongAlgorithm)
    );
    let no_alg = b64url(br#"{"typ":"JWT"}"#);
    assert_eq!(
        v.verify_at(&format!("{no_alg}.{payload}.{sig}"), NOW),
        Err(AuthError::Malformed)
    );
}

#[test]
fn malformed_tokens() {
    let v = secret_verifier();
    assert_eq!(v.verify(""), Err(AuthError::MissingToken));
    let good = hs(json!({"sub": "u", "exp": NOW + 10}));
    let too_long = format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES));
    // Correctly signed, but the payload is not a JSON object.
    let h = good.split('.').next().unwrap();
    let p = b64url(b"not json");
    let key = EncodingKey::from_secret(SECRET);
    let sig = jsonwebtoken::crypto::sign(format!("{h}.{p}").as_bytes(), &key, Algorithm::HS256);
    let bad_payload = format!("{h}.{p}.{}", sig.unwrap());
    for token in [
        "abc",
        "a.b",
        "a.b.c.d",
        "!!.b.c",
        "e.b.c",
        "eyJ.b.c",
        "....",
        &too_long,
        &format!("{good}.x"),
        &bad_payload,
        &format!("{}.{}.x", b64url(b"[1]"), b64url(b"{}")),
    ] {
        assert_eq!(
            v.verify_at(token, NOW),
            Err(AuthError::Malformed),
            "{token:.40}"
        );
    }
}

#[test]
fn rsa_algorithms() {
    let v = Verifier::new(KeySource::PublicKeyPem(RSA_PUBLIC.as_bytes().to_vec())).unwrap();
    assert!(v.algorithms().contains(&Algorithm::PS512));
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
    ] {
        let token = sign(
            alg,
            &key,
            json!({"sub": "u", "device": "d", "exp": NOW + 10}),
        );
        let claims = v.verify_at(&token, NOW).unwrap();
        assert_eq!(
            claims,
            Claims {
                user: "u".into(),
                device: Some("d".into()),
                exp: NOW + 10,
                rooms: None,
            }
        );
    }
    // Tampered payload: the signature no longer matches.
    let token = sign(Algorithm::RS256, &key, json!({"sub": "u", "exp": NOW + 10}));
    let parts: Vec<&str> = token.split('.').collect();
    let forged = b64url(
        json!({"sub": "admin", "exp": NOW + 10})
            .to_string()
            .as_bytes(),
    );
    let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
    assert_eq!(v.verify_at(&tampered, NOW), Err(AuthError::BadSignature));
}

#[test]
fn public_key_refuses_hmac_and_other_families() {
    let v = Verifier::new(KeySource::PublicKeyPem(RSA_PUBLIC.as_bytes().to_vec())).unwrap();
    // Key confusion: HS256 "signed" with the public key as the secret.
    let confused = EncodingKey::from_secret(RSA_PUBLIC.as_bytes());
    let token = sign(
        Algorithm::HS256,
        &confused,
        json!({"sub": "u", "exp": NOW + 10}),
    );
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::WrongAlgorithm));
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::ES256, &ec, json!({"sub": "u", "exp": NOW + 10}));
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::WrongAlgorithm));
    // And a secret verifier refuses RS256.
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::RS256, &rsa, json!({"sub": "u", "exp": NOW + 10}));
    assert_eq!(
        secret_verifier().verify_at(&token, NOW),
        Err(AuthError::WrongAlgorithm)
    );
}

#[test]
fn ec_es256() {
    let v = Verifier::new(KeySource::PublicKeyPem(EC_PUBLIC.as_bytes().to_vec())).unwrap();
    assert_eq!(v.algorithms(), [Algorithm::ES256, Algorithm::ES384]);
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let token = sign(Algorithm::ES256, &key, json!({"sub": "u", "exp": NOW + 10}));
    assert_eq!(v.verify_at(&token, NOW).unwrap().user, "u");
    let other = Verifier::new(KeySource::PublicKeyPem(RSA_PUBLIC.as_bytes().to_vec())).unwrap();
    assert_eq!(other.verify_at(&token, NOW), Err(AuthError::WrongAlgorithm));
}

#[test]
fn key_errors() {
    assert!(matches!(
        Verifier::new(KeySource::Secret(Vec::new())),
        Err(KeyError::EmptySecret)
    ));
    let private = KeySource::PublicKeyPem(RSA_PRIVATE.as_bytes().to_vec());
    assert!(matches!(Verifier::new(private), Err(KeyError::PrivateKey)));
    let junk = KeySource::PublicKeyPem(b"not a pem".to_vec());
    assert!(matches!(
        Verifier::new(junk),
        Err(KeyError::UnsupportedPem(_))
    ));
    assert_eq!(
        format!("{:?}", KeySource::Secret(SECRET.to_vec())),
        "Secret(<redacted>)"
    );
    assert!(!format!("{:?}", secret_verifier()).contains("test-secret"));
}

#[test]
fn reasons_are_stable_and_distinct() {
    let all = [
        AuthError::MissingToken,
        AuthError::Malformed,
        AuthError::WrongAlgorithm,
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::MissingExp,
        AuthError::MissingSub,
        AuthError::InvalidSub,
        AuthError::InvalidDevice,
    ];
    let mut reasons: Vec<&str> = all.iter().map(AuthError::reason).collect();
    for e in &all {
        assert_eq!(e.to_string(), e.reason());
    }
    assert_eq!(reasons[0], "missing token");
    assert_eq!(reasons[4], "token expired");
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), all.len());
}

#[test]
fn b64url_decoder() {
    assert_eq!(b64url_decode("").unwrap(), b"");
    assert_eq!(b64url_decode("Zm9vYmFy").unwrap(), b"foobar");
    assert_eq!(b64url_decode("Zm9vYg").unwrap(), b"foob");
    assert_eq!(b64url_decode("_-8").unwrap(), [0xff, 0xef]);
    assert_eq!(
        b64url_decode(&b64url(b"hello world")).unwrap(),
        b"hello world"
    );
    assert!(b64url_decode("Zm9vY").is_none());
    assert!(b64url_decode("Zm9=").is_none());
    assert!(b64url_decode("Zm+v").is_none());
}
