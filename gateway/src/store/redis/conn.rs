//! One Redis, or a Redis Cluster, behind one type: how the store's threads
//! and the registry talk to whichever the operator configured.
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
use redis::{Cmd, ConnectionLike, FromRedisValue, RedisResult, Value};

/// A client for the configured Redis or Redis Cluster.
pub enum Client {
    /// One Redis.
    Single(redis::Client),
    /// A Redis Cluster (the URLs are seeds: any of its masters).
    Cluster(ClusterClient),
}

/// An open connection (a cluster connection holds one per node it uses).
pub enum Conn {
    /// To one Redis.
    Single(redis::Connection),
    /// To a Redis Cluster (boxed: it is much larger).
    Cluster(Box<ClusterConnection>),
}

impl Client {
    /// Opens a client for `url` (a comma-separated list: a cluster), with
    /// `timeout` for connecting and for each reply.
    pub fn open(url: &str, timeout: Duration) -> RedisResult<Client> {
        let urls: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if urls.len() > 1 || url.contains(',') {
            let client = ClusterClientBuilder::new(urls)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2)
                .build()?;
            Ok(Client::Cluster(client))
        } else {
            Ok(Client::Single(redis::Client::open(url)?))
        }
    }

    /// Connects, with read and write timeouts of `timeout`.
    pub fn connect(&self, connect_timeout: Duration, timeout: Duration) -> RedisResult<Conn> {
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
    pub fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        cmd.query(self.like())
    }

    /// `cmds` as one pipeline: one reply per command, a failed command's
    /// reply being its error (`Value::ServerError`) on a single Redis; on
    /// a cluster any failed command fails the call.
    pub fn pipeline(&mut self, cmds: Vec<Cmd>) -> RedisResult<Vec<Value>> {
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
