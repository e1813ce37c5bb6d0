//! One Redis, or a Redis Cluster, behind one type: how every thread that
//! talks to Redis (the inbox store, the registry, the presence writer, the
//! backend streams) reaches whichever the operator configured, and `Lazy`,
//! the one connect-when-needed, drop-on-error helper they share. Base
//! layer: it knows nothing of what the keys mean.
//!
//! `redis` (config, `--redis`) is one URL for a single Redis, or a
//! comma-separated list of URLs (any of the masters) for a Redis Cluster.
//! Every key of one user, and every registry key, share a hash tag, so each
//! script runs on one node. Batches differ in one way: on a single Redis a
//! failed command fails only itself; a Redis Cluster pipeline reports
//! failure for its whole batch (the client library gives no per-command
//! results then), so every operation of that batch completes with the
//! error (senders retry, and the dedupe records keep a retried append
//! once).
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::{Cmd, ConnectionLike, FromRedisValue, IntoConnectionInfo, RedisResult, Value};

/// What every Redis client of the node uses besides the URL (built at
/// load from `redis_username`, `redis_password_file` or
/// `GATEWAY_REDIS_PASSWORD`, and `redis_ca_file`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisAccess {
    /// The ACL user (the URL's, when it names one, wins).
    pub username: Option<String>,
    /// The password (the URL's, when it has one, wins).
    pub password: Option<String>,
    /// PEM certificates of the CA that signed Redis' certificate, for
    /// `rediss://` (none: the system's roots).
    pub ca_pem: Option<Vec<u8>>,
}

/// The password and the CA never appear in a debug print.
impl std::fmt::Debug for RedisAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAccess")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .finish()
    }
}

/// A client for the configured Redis or Redis Cluster.
#[derive(Clone)]
pub(crate) enum Client {
    /// One Redis.
    Single(redis::Client),
    /// A Redis Cluster (the URLs are seeds: any of its masters).
    Cluster(ClusterClient),
}

/// An open connection (a cluster connection holds one per node it uses).
pub(crate) enum Conn {
    /// To one Redis.
    Single(redis::Connection),
    /// To a Redis Cluster (boxed: it is much larger).
    Cluster(Box<ClusterConnection>),
}

impl Client {
    /// True for a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Client::Cluster(_))
    }

    /// Opens a client for `url` (a comma-separated list: a cluster), with
    /// `timeout` for connecting and for each reply, as `access` says (the
    /// user and password when the URL has none; the CA for `rediss://`).
    pub(crate) fn open(url: &str, access: &RedisAccess, timeout: Duration) -> RedisResult<Client> {
        let urls: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let certs = access.ca_pem.as_ref().map(|pem| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        });
        if urls.len() > 1 || url.contains(',') {
            let mut b = ClusterClientBuilder::new(urls)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2);
            if let Some(user) = &access.username {
                b = b.username(user);
            }
            if let Some(password) = &access.password {
                b = b.password(password);
            }
            if let Some(certs) = certs {
                b = b.certs(certs);
            }
            Ok(Client::Cluster(b.build()?))
        } else {
            let mut info = url.into_connection_info()?;
            let mut settings = info.redis_settings().clone();
            if let (None, Some(user)) = (settings.username(), &access.username) {
                settings = settings.set_username(user);
            }
            if let (None, Some(password)) = (settings.password(), &access.password) {
                settings = settings.set_password(password);
            }
            info = info.set_redis_settings(settings);
            Ok(Client::Single(match certs {
                Some(certs) => redis::Client::build_with_tls(info, certs)?,
                None => redis::Client::open(info)?,
            }))
        }
    }

    /// Connects, with read and write timeouts of `timeout`.
    pub(crate) fn connect(
        &self,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> RedisResult<Conn> {
        match self {
            Client::Single(c) => {
                let conn = c.get_connection_with_timeout(connect_timeout)?;
                conn.set_read_timeout(Some(timeout))?;
                conn.set_write_timeout(Some(timeout))?;
                Ok(Conn::Single(conn))
            }
            Client::Cluster(c) => {
                let conn = c.get_connection()?;
                conn.set_read_timeout(Some(timeout))?;
                conn.set_write_timeout(Some(timeout))?;
                Ok(Conn::Cluster(Box::new(conn)))
            }
        }
    }
}

impl Conn {
    fn like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(c) => c,
            Conn::Cluster(c) => &mut **c,
        }
    }

    /// One command (on a cluster: routed by its key, or to every master
    /// for commands such as `SCRIPT LOAD`).
    pub(crate) fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        cmd.query(self.like())
    }

    /// `cmds` as one pipeline: one reply per command, a failed command's
    /// reply being its error (`Value::ServerError`) on a single Redis; on
    /// a cluster any failed command fails the call.
    pub(crate) fn pipeline(&mut self, cmds: Vec<Cmd>) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query(c)
            }
            Conn::Cluster(c) => {
                let mut pipe = redis::cluster::cluster_pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query(c)
            }
        }
    }
}

/// Runs on every new connection before it is used (e.g. loading a script).
type OnConnect = Box<dyn Fn(&mut Conn) -> RedisResult<()> + Send>;

/// A connection made when first needed and dropped after any failed call
/// (its reply stream may be out of step), for a thread that retries on its
/// own schedule: the next call connects again. With a name, an outage is
/// logged once, when a call first fails (`{name}: {down}: {error}`), and
/// its end once, when a call next succeeds (`{name}: redis answers again`).
pub(crate) struct Lazy {
    client: Client,
    connect_timeout: Duration,
    timeout: Duration,
    on_connect: Option<OnConnect>,
    log: Option<(&'static str, &'static str)>,
    conn: Option<Conn>,
    down: bool,
}

impl Lazy {
    /// Connects through `client` when needed, with these timeouts (see
    /// [`Client::connect`]); logs nothing.
    pub(crate) fn new(client: Client, connect_timeout: Duration, timeout: Duration) -> Lazy {
        Lazy {
            client,
            connect_timeout,
            timeout,
            on_connect: None,
            log: None,
            conn: None,
            down: false,
        }
    }

    /// Logs outages as `{name}: {down}: {error}` and their ends.
    pub(crate) fn logged(mut self, name: &'static str, down: &'static str) -> Lazy {
        self.log = Some((name, down));
        self
    }

    /// Runs `f` on each new connection first; a failure is the call's.
    pub(crate) fn on_connect(
        mut self,
        f: impl Fn(&mut Conn) -> RedisResult<()> + Send + 'static,
    ) -> Lazy {
        self.on_connect = Some(Box::new(f));
        self
    }

    /// The connection, made now if there is none. Neither drops it on
    /// failure nor logs: see [`Lazy::with`].
    pub(crate) fn get(&mut self) -> RedisResult<&mut Conn> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let mut conn = self.client.connect(self.connect_timeout, self.timeout)?;
                if let Some(f) = &self.on_connect {
                    f(&mut conn)?;
                }
                conn
            }
        };
        Ok(self.conn.insert(conn))
    }

    /// Runs `f` on the connection (made now if there is none). Any failure,
    /// connecting or `f`'s, drops the connection.
    pub(crate) fn with<T, E>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T, E>) -> Result<T, E>
    where
        E: From<redis::RedisError> + std::fmt::Display,
    {
        let result = match self.get() {
            Ok(conn) => f(conn),
            Err(e) => Err(e.into()),
        };
        match &result {
            Ok(_) => {
                if std::mem::take(&mut self.down) {
                    if let Some((name, _)) = self.log {
                        tracing::info!("{name}: redis answers again");
                    }
                }
            }
            Err(e) => {
                self.conn = None;
                if !std::mem::replace(&mut self.down, true) {
                    if let Some((name, down)) = self.log {
                        tracing::warn!("{name}: {down}: {e}");
                    }
                }
            }
        }
        result
    }

    /// Drops the connection (the next call connects again); not an outage.
    pub(crate) fn reset(&mut self) {
        self.conn = None;
    }
}
