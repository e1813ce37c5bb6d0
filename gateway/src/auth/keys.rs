//! The keys a verifier holds: one (an HMAC secret or a PEM public key) or
//! a JSON Web Key Set (RFC 7517) where each token's `kid` header picks its
//! key. Each key allows its family's algorithms (or the one its `alg`
//! names), so a token can never be checked with another family's key.
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::{contains, KeyError, KeySource};

/// Most keys a JWKS may hold.
const MAX_KEYS: usize = 64;

/// One verification key.
#[derive(Clone)]
pub(super) struct Keyed {
    /// Its `kid` (None: the only key, used for tokens without `kid`).
    pub(super) kid: Option<String>,
    pub(super) key: DecodingKey,
    pub(super) algorithms: Vec<Algorithm>,
}

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];

/// The keys of `source`.
pub(super) fn load(source: KeySource) -> Result<Vec<Keyed>, KeyError> {
    let one = |key, algorithms: &[Algorithm]| {
        Ok(vec![Keyed {
            kid: None,
            key,
            algorithms: algorithms.to_vec(),
        }])
    };
    match source {
        KeySource::Secret(secret) if secret.is_empty() => Err(KeyError::EmptySecret),
        KeySource::Secret(secret) => one(DecodingKey::from_secret(&secret), &HMAC),
        KeySource::PublicKeyPem(pem) => {
            if contains(&pem, b"PRIVATE KEY-----") {
                return Err(KeyError::PrivateKey);
            }
            if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                return one(key, &RSA);
            }
            match DecodingKey::from_ec_pem(&pem) {
                Ok(key) => one(key, &EC),
                Err(e) => Err(KeyError::UnsupportedPem(e.to_string())),
            }
        }
        KeySource::Jwks(json) => jwks(&json),
    }
}

fn jwks(json: &[u8]) -> Result<Vec<Keyed>, KeyError> {
    let bad = |why: String| KeyError::BadJwks(why);
    let set: JwkSet = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    if set.keys.is_empty() || set.keys.len() > MAX_KEYS {
        return Err(bad(format!(
            "1 to {MAX_KEYS} keys needed, found {}",
            set.keys.len()
        )));
    }
    let mut keys = Vec::with_capacity(set.keys.len());
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        if set.keys.len() > 1 && kid.is_none() {
            return Err(bad("every key of a set of several needs a kid".into()));
        }
        let family: &[Algorithm] = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => &RSA,
            AlgorithmParameters::EllipticCurve(_) => &EC,
            AlgorithmParameters::OctetKey(_) => &HMAC,
            AlgorithmParameters::OctetKeyPair(_) => &[Algorithm::EdDSA],
        };
        let algorithms = match jwk.common.key_algorithm {
            Some(a) => {
                let alg = format!("{a:?}")
                    .parse::<Algorithm>()
                    .map_err(|_| bad(format!("unsupported alg {a:?}")))?;
                if !family.contains(&alg) {
                    return Err(bad(format!("alg {a:?} does not fit its key type")));
                }
                vec![alg]
            }
            None => family.to_vec(),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(e.to_string()))?;
        keys.push(Keyed {
            kid,
            key,
            algorithms,
        });
    }
    Ok(keys)
}

/// The key for a token whose header says `kid`.
pub(super) fn pick<'a>(keys: &'a [Keyed], kid: Option<&str>) -> Option<&'a Keyed> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .or_else(|| {
                // A single unnamed key answers for any kid.
                (keys.len() == 1 && keys[0].kid.is_none()).then(|| &keys[0])
            }),
        None => (keys.len() == 1).then(|| &keys[0]),
    }
}
