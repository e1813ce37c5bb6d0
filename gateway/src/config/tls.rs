//! `[tls]`: transport security for the client ports. With a certificate and
//! key, the WebSocket port speaks `wss` and the raw TCP port TLS; without,
//! both are plaintext (put a TLS-terminating proxy in front, see README).
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

/// `[tls]`: certificate files (PEM), read at start-up and on every reload
/// (SIGHUP, `POST /reload`; see `Control::reload`).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Certificate chain, PEM (leaf first). A relative path in the config
    /// file is relative to that file's directory. Default: unset.
    pub cert_file: Option<PathBuf>,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1). Default: unset.
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// True when both files are set.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }

    /// The rustls server configuration from the files (TLS 1.2 and 1.3,
    /// no client certificates, ALPN `http/1.1`); one clear line on error.
    pub fn server_config(&self) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Ok(None);
        };
        let certs = load_certs(cert, "tls.cert_file")?;
        let key = load_key(key, "tls.key_file")?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Provider)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(TlsError::Mismatch)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        // An upgrade moves TLS 1.3 connections with their traffic keys
        // (`shard::tls_move`), which rustls gives up only when allowed.
        cfg.enable_secret_extraction = true;
        Ok(Some(Arc::new(cfg)))
    }
}

/// The crypto provider of every TLS configuration (ring).
pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in the PEM file `path` (the config key `key`): at
/// least one.
pub(super) fn load_certs(
    path: &std::path::Path,
    key: &'static str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|error| TlsError::Cert {
            key,
            path: path.to_owned(),
            error,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            key,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The private key in the PEM file `path` (the config key `key`).
pub(super) fn load_key(
    path: &std::path::Path,
    key: &'static str,
) -> Result<rustls::pki_types::PrivateKeyDer<'static>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_file(path).map_err(|error| TlsError::Key {
        key,
        path: path.to_owned(),
        error,
    })
}

/// Why the TLS certificate and key cannot be used: the operator's files.
/// Each message is the whole line, cause included (no `source()`, so an
/// error chain printed in full does not repeat it).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate file cannot be read or is not PEM.
    #[error("{key} {}: {error}", .path.display())]
    Cert {
        /// The config key (`tls.cert_file`, `cluster.tls_ca_file`, ...).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        error: rustls::pki_types::pem::Error,
    },
    /// A certificate file holds no certificate.
    #[error("{key} {}: no certificate in it", .path.display())]
    NoCert {
        /// The config key.
        key: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A key file cannot be read or holds no private key.
    #[error("{key} {}: {error}", .path.display())]
    Key {
        /// The config key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        error: rustls::pki_types::pem::Error,
    },
    /// The crypto provider refused the protocol versions (a build fault).
    #[error("tls: {0}")]
    Provider(rustls::Error),
    /// The private key is not the certificate's.
    #[error("tls: the key does not fit the certificate: {0}")]
    Mismatch(rustls::Error),
    /// The bus's CA or server name cannot be used.
    #[error("{key}: {why}")]
    Bus {
        /// The config key.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
}
