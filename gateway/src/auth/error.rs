//! Why a token or a key was refused, and where keys come from.

/// Why a token was refused. The client's fault in every case; retrying with
/// the same token never helps. [`AuthError::reason`] is the stable text sent
/// to the client (HTTP 401 body, error frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was presented.
    #[error("missing token")]
    MissingToken,
    /// Not three base64url parts, bad JSON, or longer than [`MAX_TOKEN_BYTES`].
    #[error("malformed token")]
    Malformed,
    /// The `alg` header is not allowed for the configured key (incl. `none`).
    #[error("wrong algorithm")]
    WrongAlgorithm,
    /// The signature does not verify with the configured key.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is at or before now.
    #[error("token expired")]
    Expired,
    /// `nbf` is after now.
    #[error("token not yet valid")]
    NotYetValid,
    /// No `exp` claim, or not a number.
    #[error("missing exp claim")]
    MissingExp,
    /// No `sub` claim.
    #[error("missing sub claim")]
    MissingSub,
    /// `sub` is not a string, is empty, too long or has control characters.
    #[error("invalid sub claim")]
    InvalidSub,
    /// `device` is not a string, is empty, too long or has control characters.
    #[error("invalid device claim")]
    InvalidDevice,
    /// The `rooms` claim is not a list of patterns or a join/publish object.
    #[error("invalid rooms claim")]
    InvalidRooms,
    /// `aud` is missing or names another audience (`auth.audience`).
    #[error("wrong audience")]
    WrongAudience,
    /// `iss` is missing or names another issuer (`auth.issuer`).
    #[error("wrong issuer")]
    WrongIssuer,
    /// `exp` is further away than `auth.max_lifetime_secs`.
    #[error("token lifetime too long")]
    LifetimeTooLong,
    /// The `kid` names no key of the set (or a set of several needs one).
    #[error("unknown key id")]
    UnknownKey,
}

impl AuthError {
    /// Stable short reason for the client; never changes between releases.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing token",
            AuthError::Malformed => "malformed token",
            AuthError::WrongAlgorithm => "wrong algorithm",
            AuthError::BadSignature => "bad signature",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "token not yet valid",
            AuthError::MissingExp => "missing exp claim",
            AuthError::MissingSub => "missing sub claim",
            AuthError::InvalidSub => "invalid sub claim",
            AuthError::InvalidDevice => "invalid device claim",
            AuthError::InvalidRooms => "invalid rooms claim",
            AuthError::WrongAudience => "wrong audience",
            AuthError::WrongIssuer => "wrong issuer",
            AuthError::LifetimeTooLong => "token lifetime too long",
            AuthError::UnknownKey => "unknown key id",
        }
    }
}

/// Where the verification key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// A shared HMAC secret (HS256/HS384/HS512).
    Secret(Vec<u8>),
    /// The contents of a PEM public key file (RSA or EC).
    PublicKeyPem(Vec<u8>),
    /// The contents of a JSON Web Key Set file: the token's `kid` picks.
    Jwks(Vec<u8>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Secret(_) => f.write_str("Secret(<redacted>)"),
            KeySource::PublicKeyPem(pem) => write!(f, "PublicKeyPem({} bytes)", pem.len()),
            KeySource::Jwks(json) => write!(f, "Jwks({} bytes)", json.len()),
        }
    }
}

/// A verification key that cannot be used. The operator's fault (bad config).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The HMAC secret is empty.
    #[error("the JWT secret is empty")]
    EmptySecret,
    /// A private key was given where the public key is expected.
    #[error("the file holds a private key; give the public key (openssl pkey -in KEY -pubout)")]
    PrivateKey,
    /// The PEM is neither an RSA nor an EC public key.
    #[error("not an RSA or EC public key in PEM format ({0})")]
    UnsupportedPem(String),
    /// The JWKS file is not a usable key set.
    #[error("bad JWKS: {0}")]
    BadJwks(String),
}
