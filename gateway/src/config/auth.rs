//! `[auth]`: how client tokens are verified, and what they must say.
use std::path::PathBuf;

use serde::Deserialize;

/// `[auth]`: the JWT verification key. Set at most one of the two; with
/// neither, the node uses [`DEV_SECRET`] and warns.
#[derive(Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Shared HMAC secret (tokens signed HS256/HS384/HS512). Default: unset.
    pub jwt_secret: Option<String>,
    /// PEM file with an RSA (RS*/PS*) or EC (ES256/ES384) public key. A
    /// relative path in the config file is relative to that file's directory.
    /// Default: unset.
    pub jwt_public_key: Option<PathBuf>,
    /// Room permissions in tokens (a `rooms` claim, see `crate::grants`):
    /// `"enforce"` when a token has one, `"require"` (no claim: no room),
    /// or `"ignore"`. Default `"enforce"`.
    pub rooms_claim: crate::grants::RoomsClaim,
    /// A JSON Web Key Set file (RFC 7517): each token's `kid` header picks
    /// its key (RSA, EC or HMAC; a key's `alg`, when given, is the only one
    /// it verifies). Replaces `jwt_secret` / `jwt_public_key` (set one of
    /// the three). Re-read on reload (SIGHUP). A relative path in the config
    /// file is relative to that file's directory. Default: unset.
    pub jwks_file: Option<PathBuf>,
    /// Browser origins (`https://chat.example.com`) allowed to open a
    /// WebSocket; an upgrade with another `Origin` gets 403 (cross-site
    /// WebSocket hijacking). Clients that send no `Origin` (apps, servers)
    /// are not affected. Empty: any origin. Default empty.
    pub origins: Vec<String>,
    /// Required `aud` of every token (it must name this). Default: unset.
    pub audience: Option<String>,
    /// Required `iss` of every token. Default: unset.
    pub issuer: Option<String>,
    /// Tokens whose `exp` is further away than this are refused, in
    /// seconds (0: any lifetime; `exp` past ten years then means "never
    /// expires"). Default `0`.
    pub max_lifetime_secs: u64,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwt_public_key", &self.jwt_public_key)
            .field("rooms_claim", &self.rooms_claim)
            .field("jwks_file", &self.jwks_file)
            .field("origins", &self.origins)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("max_lifetime_secs", &self.max_lifetime_secs)
            .finish()
    }
}
