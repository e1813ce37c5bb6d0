//! TLS on the bus (`cluster.tls_cert_file`, `tls_key_file`, `tls_ca_file`):
//! every link between two nodes is TLS 1.3, and each end checks the other's
//! certificate against the cluster CA: mutual authentication by the CA,
//! confidentiality and integrity of every byte after the handshake. The
//! relay's protocol runs unchanged inside (hello, the cluster secret's
//! challenge-response, batches), so the secret still proves membership
//! even to a node that holds a certificate of the same CA.
//!
//! The dialer checks the name `tls_server_name` in the peer's certificate
//! (one name for the cluster's node certificates), or, unset, the peer's
//! bus IP address (then each node certificate carries its IP). ALPN
//! `gateway-bus/1` on both sides: a client of another protocol that holds
//! a certificate of the same CA is refused.
use std::sync::Arc;

use rustls::pki_types::ServerName;

use super::cluster::ClusterConfig;
use super::tls::{load_certs, load_key, provider, TlsError};

/// The bus's ALPN protocol.
const ALPN: &[u8] = b"gateway-bus/1";

/// The rustls configurations of the bus, both ends.
#[derive(Clone)]
pub struct BusTls {
    /// Dialing a peer: this node's certificate, the cluster CA as roots.
    pub client: Arc<rustls::ClientConfig>,
    /// A peer dialing in: its certificate required, from the cluster CA.
    pub server: Arc<rustls::ServerConfig>,
    /// `tls_server_name`, checked in every peer's certificate (else the
    /// peer's IP address).
    pub server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for BusTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl BusTls {
    /// The name to check in the certificate of the peer at `ip`.
    pub fn name_for(&self, ip: std::net::IpAddr) -> ServerName<'static> {
        self.server_name
            .clone()
            .unwrap_or(ServerName::IpAddress(ip.into()))
    }
}

impl ClusterConfig {
    /// True when any of the bus's TLS files is set.
    pub fn tls_configured(&self) -> bool {
        self.tls_cert_file.is_some() || self.tls_key_file.is_some() || self.tls_ca_file.is_some()
    }

    /// The bus's TLS from the files (`None`: plaintext); one clear line on
    /// error.
    pub fn bus_tls(&self) -> Result<Option<BusTls>, TlsError> {
        let (Some(cert), Some(key), Some(ca)) =
            (&self.tls_cert_file, &self.tls_key_file, &self.tls_ca_file)
        else {
            return match self.tls_configured() {
                true => Err(TlsError::Bus {
                    key: "cluster.tls_cert_file",
                    why: "set tls_cert_file, tls_key_file and tls_ca_file together".into(),
                }),
                false => Ok(None),
            };
        };
        let certs = load_certs(cert, "cluster.tls_cert_file")?;
        let key = load_key(key, "cluster.tls_key_file")?;
        let mut roots = rustls::RootCertStore::empty();
        for ca_cert in load_certs(ca, "cluster.tls_ca_file")? {
            roots.add(ca_cert).map_err(|e| TlsError::Bus {
                key: "cluster.tls_ca_file",
                why: format!("not a CA certificate: {e}"),
            })?;
        }
        let roots = Arc::new(roots);
        let tls13 = &[&rustls::version::TLS13];
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| TlsError::Bus {
                    key: "cluster.tls_ca_file",
                    why: e.to_string(),
                })?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(tls13)
            .map_err(TlsError::Provider)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(TlsError::Mismatch)?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(tls13)
            .map_err(TlsError::Provider)?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(TlsError::Mismatch)?;
        client.alpn_protocols = vec![ALPN.to_vec()];
        let server_name = match &self.tls_server_name {
            Some(n) => Some(ServerName::try_from(n.clone()).map_err(|e| TlsError::Bus {
                key: "cluster.tls_server_name",
                why: format!("{n:?} is not a DNS name or IP address: {e}"),
            })?),
            None => None,
        };
        Ok(Some(BusTls {
            client: Arc::new(client),
            server: Arc::new(server),
            server_name,
        }))
    }
}
