//! TLS for the gateway's client ports (`--tls-ca`): rustls' sans-IO
//! `ClientConnection` between the protocol session and the socket. The
//! connection task deciphers what it reads before the session sees it; the
//! task and the sweeper (heartbeats, direct sends) encipher before they
//! write. Both run on the worker's one thread, so the state is shared by
//! `Rc<RefCell>`, and every write is one whole record run (a short write
//! shuts the connection, as on plaintext).
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection};

/// One connection's TLS state.
pub type Tls = Rc<RefCell<ClientConnection>>;

/// The client side, shared by every connection of the run.
#[derive(Clone)]
pub struct Client {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("name", &self.name).finish()
    }
}

impl Client {
    /// Trusts the certificates in `ca` (PEM) only, and checks the server's
    /// certificate against `name`.
    pub fn new(ca: &Path, name: &str) -> anyhow::Result<Client> {
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow::anyhow!("--tls-ca {}: {e}", ca.display()))?;
        for c in certs {
            roots.add(c)?;
        }
        if roots.is_empty() {
            anyhow::bail!("--tls-ca {}: no certificate in it", ca.display());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| anyhow::anyhow!("--tls-name {name}: {e}"))?;
        Ok(Client {
            config: Arc::new(config),
            name,
        })
    }

    /// A new connection's state (its ClientHello is queued).
    pub fn connect(&self) -> io::Result<Tls> {
        let conn = ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(io::Error::other)?;
        Ok(Rc::new(RefCell::new(conn)))
    }
}

/// Queues `plain` (sent once the handshake is done) and appends every TLS
/// record ready to go to `cipher`.
pub fn seal(tls: &Tls, plain: &[u8], cipher: &mut Vec<u8>) -> io::Result<()> {
    let mut conn = tls.borrow_mut();
    if !plain.is_empty() {
        conn.writer().write_all(plain)?;
    }
    while conn.wants_write() {
        conn.write_tls(cipher)?;
    }
    Ok(())
}

/// Deciphers `cipher` (read from the socket) and appends the plaintext to
/// `plain`. Handshake answers stay queued for the next `seal`.
pub fn open(tls: &Tls, mut cipher: &[u8], plain: &mut Vec<u8>) -> io::Result<()> {
    let mut conn = tls.borrow_mut();
    while !cipher.is_empty() {
        conn.read_tls(&mut cipher)?;
        conn.process_new_packets().map_err(io::Error::other)?;
        match conn.reader().read_to_end(plain) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
