//! JWT verification: turns a client's bearer token into [`Claims`] or a
//! client-facing [`AuthError`].
//!
//! The backend mints the tokens; the gateway only verifies them, locally,
//! with either a shared secret (HS256/HS384/HS512) or a PEM public key (RSA:
//! RS256/RS384/RS512/PS256/PS384/PS512; EC: ES256/ES384).
//!
//! Invariants:
//! - the token's `alg` must be in the set allowed for the configured key:
//!   `none` is never accepted, and an HMAC `alg` is never accepted with a
//!   public key (the classic key-confusion attack);
//! - `exp` is required and checked with zero leeway (expired when
//!   `now >= exp`, RFC 7519 section 4.1.4); `nbf`, when present, is honoured;
//!   `aud` and `iss` are not checked;
//! - `sub` is required, non-empty, at most `max_name_bytes` (default 128)
//!   bytes and free of control characters; so is `device` when present;
//! - nothing here panics or allocates in proportion to untrusted input
//!   beyond [`MAX_TOKEN_BYTES`].

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde_json::Value;

/// Longest token accepted; anything longer is rejected before decoding.
pub const MAX_TOKEN_BYTES: usize = 8192;
/// Default limit on the byte length of the `sub` and `device` claims.
pub const DEFAULT_MAX_NAME_BYTES: usize = 128;

/// The identity a verified token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user id, from `sub`.
    pub user: String,
    /// The device id, from the optional `device` claim.
    pub device: Option<String>,
    /// Expiry, unix seconds, from `exp`.
    pub exp: u64,
    /// Room permissions, from the optional `rooms` claim (`crate::grants`).
    pub rooms: Option<std::sync::Arc<crate::grants::Grants>>,
}

impl Claims {
    /// Time left before the token expires, seen at `now_unix` (zero if it
    /// already has): what the shard arms its token-expiry timer with.
    pub fn remaining(&self, now_unix: u64) -> Duration {
        Duration::from_secs(self.exp.saturating_sub(now_unix))
    }
}

/// One shard's verifier, replaceable while it runs: a reload reaches each
/// shard as a command (`mesh::Command::Reload`) carrying the new
/// `Verifier`, which the shard puts in force here. Never shared between
/// threads, so no lock: a verification borrows it once per authentication
/// or refresh, never per message.
#[derive(Clone, Debug)]
pub struct Keys(std::rc::Rc<std::cell::RefCell<Verifier>>);

impl Keys {
    /// Starts with `v`.
    pub fn new(v: Verifier) -> Keys {
        Keys(std::rc::Rc::new(std::cell::RefCell::new(v)))
    }

    /// Verifies `token` with the verifier in force.
    pub fn verify_at(&self, token: &str, now_unix: u64) -> Result<Claims, AuthError> {
        self.0.borrow().verify_at(token, now_unix)
    }

    /// Puts `v` in force (tokens are verified with it from now on).
    pub fn replace(&self, v: Verifier) {
        *self.0.borrow_mut() = v;
    }
}

/// Verifies tokens against one key. Cheap to clone; build once per shard.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<keys::Keyed>,
    validation: Validation,
    max_name_bytes: usize,
    /// Longest `exp - now` accepted, in seconds (0: any).
    max_lifetime: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .field("max_name_bytes", &self.max_name_bytes)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds a verifier; with a PEM, detects whether it is an RSA or an EC
    /// public key and allows that family's algorithms.
    pub fn new(key: KeySource) -> Result<Verifier, KeyError> {
        let keys = keys::load(key)?;
        let mut algorithms: Vec<Algorithm> = Vec::new();
        for k in &keys {
            for a in &k.algorithms {
                if !algorithms.contains(a) {
                    algorithms.push(*a);
                }
            }
        }
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = 0;
        validation.validate_exp = false; // checked here, with RFC semantics
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Ok(Verifier {
            keys,
            validation,
            max_name_bytes: DEFAULT_MAX_NAME_BYTES,
            max_lifetime: 0,
        })
    }

    /// Requires `aud` to name `audience` and `iss` to be `issuer`, when
    /// given; refuses tokens whose `exp` is more than `max_lifetime_secs`
    /// away (0: any).
    pub fn with_claims_policy(
        mut self,
        audience: Option<&str>,
        issuer: Option<&str>,
        max_lifetime_secs: u64,
    ) -> Self {
        if let Some(aud) = audience {
            self.validation.set_audience(&[aud]);
            self.validation.validate_aud = true;
            self.validation.required_spec_claims.insert("aud".into());
        }
        if let Some(iss) = issuer {
            self.validation.set_issuer(&[iss]);
            self.validation.required_spec_claims.insert("iss".into());
        }
        self.max_lifetime = max_lifetime_secs;
        self
    }

    /// Sets the longest `sub` and `device` accepted (default 128 bytes).
    pub fn with_max_name_bytes(mut self, max: usize) -> Self {
        self.max_name_bytes = max;
        self
    }

    /// The `alg` values this verifier accepts.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.validation.algorithms
    }

    /// Verifies `token` against the system clock.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify_at(token, unix_now())
    }

    /// Verifies `token` as of `now_unix` (unix seconds).
    pub fn verify_at(&self, token: &str, now_unix: u64) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::MissingToken);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        // Check `alg` ourselves first: jsonwebtoken reports `none` or an
        // unknown algorithm as a JSON error, and the client deserves better.
        let header: Value = b64url_decode(header)
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(AuthError::Malformed)?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(AuthError::Malformed)?;
        let kid = header.get("kid").and_then(Value::as_str);
        let key = keys::pick(&self.keys, kid).ok_or(AuthError::UnknownKey)?;
        match alg.parse::<Algorithm>() {
            Ok(alg) if key.algorithms.contains(&alg) => {}
            _ => return Err(AuthError::WrongAlgorithm),
        }
        let mut validation = self.validation.clone();
        validation.algorithms.clone_from(&key.algorithms);
        let data =
            jsonwebtoken::decode::<RawClaims>(token, &key.key, &validation).map_err(|e| match e
                .kind()
            {
                ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                    AuthError::WrongAlgorithm
                }
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::WrongAudience,
                ErrorKind::MissingRequiredClaim(c) if c == "iss" => AuthError::WrongIssuer,
                _ => AuthError::Malformed,
            })?;
        self.check(data.claims, now_unix)
    }

    fn check(&self, raw: RawClaims, now_unix: u64) -> Result<Claims, AuthError> {
        let exp = match raw.exp {
            None | Some(Value::Null) => return Err(AuthError::MissingExp),
            Some(v) => numeric_date(&v).ok_or(AuthError::MissingExp)?,
        };
        if now_unix >= exp {
            return Err(AuthError::Expired);
        }
        if self.max_lifetime > 0 && exp - now_unix > self.max_lifetime {
            return Err(AuthError::LifetimeTooLong);
        }
        if let Some(nbf) = raw.nbf.as_ref().filter(|v| !v.is_null()) {
            if numeric_date(nbf).is_none_or(|nbf| nbf > now_unix) {
                return Err(AuthError::NotYetValid);
            }
        }
        let user = match raw.sub {
            None | Some(Value::Null) => return Err(AuthError::MissingSub),
            Some(Value::String(s)) if self.valid_name(&s) => s,
            Some(_) => return Err(AuthError::InvalidSub),
        };
        let device = match raw.device {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if self.valid_name(&s) => Some(s),
            Some(_) => return Err(AuthError::InvalidDevice),
        };
        let rooms = match raw.rooms {
            None | Some(Value::Null) => None,
            Some(v) => Some(std::sync::Arc::new(
                crate::grants::Grants::from_claim(&v).map_err(|_| AuthError::InvalidRooms)?,
            )),
        };
        Ok(Claims {
            user,
            device,
            exp,
            rooms,
        })
    }

    fn valid_name(&self, name: &str) -> bool {
        !name.is_empty() && name.len() <= self.max_name_bytes && !name.chars().any(char::is_control)
    }
}

/// The claims this module reads; others are ignored. Values stay untyped so
/// a wrong type gets its own precise error rather than "malformed".
#[derive(serde::Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    device: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    nbf: Option<Value>,
    #[serde(default)]
    rooms: Option<Value>,
}

#[derive(serde::Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<&'a str>,
    iat: u64,
    exp: u64,
}

/// Mints an HS256 token for `user` (and `device`), valid for `ttl` from now
/// (rounded up to a second): for development and the `gateway token` command.
pub fn mint_hs256(
    secret: &[u8],
    user: &str,
    device: Option<&str>,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = unix_now();
    let ttl_secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    let claims = MintClaims {
        sub: user,
        device,
        iat: now,
        exp: now.saturating_add(ttl_secs),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
}

/// Seconds since the unix epoch by the system clock (0 if it is before 1970).
pub fn unix_now() -> u64 {
    crate::clock::unix_ms_now() / 1000
}

mod decode;
mod error;
mod keys;
use decode::{b64url_decode, contains, numeric_date};
pub use error::{AuthError, KeyError, KeySource};

#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;
