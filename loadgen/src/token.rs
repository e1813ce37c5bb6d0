//! HS256 tokens for the gateway, minted as the backend (and `gateway token`)
//! would: claims `sub`, `iat`, `exp`.
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
}

/// Mints tokens with one secret and lifetime.
pub struct Minter {
    key: EncodingKey,
    ttl_secs: u64,
}

impl Minter {
    /// A minter for `secret`; tokens live `ttl_secs`.
    pub fn new(secret: &str, ttl_secs: u64) -> Self {
        Minter {
            key: EncodingKey::from_secret(secret.as_bytes()),
            ttl_secs,
        }
    }

    /// A token for `user`.
    pub fn mint(&self, user: &str) -> anyhow::Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            sub: user,
            iat: now,
            exp: now + self.ttl_secs,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.key,
        )?)
    }
}
