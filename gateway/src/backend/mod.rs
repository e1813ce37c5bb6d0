//! Fronting a chat backend: Redis streams up (client sends to `backend`,
//! lifecycle events) and down (the backend's pushes), and rate limits.
pub(crate) mod hook;
pub(crate) mod upstream;
