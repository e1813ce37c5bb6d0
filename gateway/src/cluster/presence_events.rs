//! The backend's `online` and `offline` events: once per user per change,
//! cluster-wide, decided in Redis next to the presence the nodes write
//! (`cluster::presence`), so no node needs to know the others' users.
//!
//! A user's presence hash (`im:{user}:presence`) holds, besides one field
//! per node, two fields no node id can be (`~` is not a node id byte):
//! - `~on`: the cluster told the backend this user is online (Unix ms).
//! - `~off`: the last connection left: `deadline:last_seen` (Unix ms).
//!
//! Every write is one script on the user's hash (one slot, so it works on a
//! Redis Cluster), atomic whichever nodes race:
//! - a node writes its connections of the user: `~off` goes; `online` is
//!   told when `~on` was not there (`HSETNX`): a reconnect within the
//!   grace is no change;
//! - a node's last connection of the user goes: its field goes and, if no
//!   live node holds a field and `~on` is set, `~off` is set with the
//!   deadline `now + presence.offline_grace_ms`, and the user is added to
//!   the index `im:presence:offline` (a sorted set by deadline);
//! - every node sweeps the index twice a second: for a user past the
//!   deadline, a script on the user's hash checks again that no live node
//!   holds a field, removes `~off` and `~on` and tells `offline` with
//!   `last_seen` (the node that runs it first; the others find `~off`
//!   gone). The index entry goes only if its deadline is the one read (a
//!   newer one was set meanwhile: kept).
//!
//! Live means a node the registry lists with that incarnation or a later
//! one. A node killed without closing its connections leaves its fields:
//! each node also keeps the users it wrote in a set per incarnation
//! (`im:presence:users:<node>:<incarnation>`) and its incarnation's
//! heartbeat in `im:presence:incs`; an incarnation that the registry no
//! longer lists and whose heartbeat is older than [`STALE_MS`] is swept by
//! whichever node sees it: each of its users is handled as if that node's
//! last connection had gone (offline after the grace), then its set and
//! entry go. Its users hear `offline` up to `STALE_MS` plus the grace
//! after the node died.
//!
//! An event is appended to `backend.events_stream` after the script that
//! decided it; an append Redis refuses is retried (up to [`OUTBOX`] held).
//! A node that dies between the two loses that one event: the events
//! stream is at most once here, as for `connect` and `disconnect`.
//!
//! Cost: a script instead of an `HSET` per user change (coalesced per tick
//! as before), an `SADD`/`SREM`, and per node a `ZRANGEBYSCORE` twice a
//! second and an `HSET`/`HGETALL` of `incs` every two seconds: nothing per
//! message or heartbeat.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;

use super::View;
use crate::redis_client::Lazy;
use crate::store::redis::presence_key;

/// The index of users whose `offline` is pending, by deadline.
const INDEX: &str = "im:presence:offline";
/// Every incarnation that wrote presence, with its last heartbeat.
const INCS: &str = "im:presence:incs";
/// An incarnation not listed and not heard from for this long is dead.
pub(crate) const STALE_MS: u64 = 10_000;
/// Events held for a retry at most (older ones are dropped, counted).
const OUTBOX: usize = 100_000;
/// Index entries swept per round at most.
const SWEEP_BATCH: usize = 256;
const SWEEP_EVERY: Duration = Duration::from_millis(500);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// Is node `f`'s field `v` live, given `ARGV[from..]` as id, incarnation
/// pairs? (Incarnations are under 2^53: exact as Lua numbers.)
const LIVE: &str = "local function live(f, v, from) \
    for j = from, #ARGV, 2 do if ARGV[j] == f then \
    local inc = tonumber(string.match(v, '\"inc\":(%d+)')) \
    return inc ~= nil and inc >= tonumber(ARGV[j + 1]) end end return false end \
    local function any_live(from) local all = redis.call('HGETALL', KEYS[1]) \
    for i = 1, #all, 2 do if string.sub(all[i], 1, 1) ~= '~' and live(all[i], all[i + 1], from) \
    then return true end end return false end ";

/// ARGV: node, value, ttl, now. 1: tell `online`.
const ONLINE: &str = "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) \
    redis.call('PEXPIRE', KEYS[1], ARGV[3]) redis.call('HDEL', KEYS[1], '~off') \
    return redis.call('HSETNX', KEYS[1], '~on', ARGV[4])";

/// ARGV: node, its incarnation (a later one's field stays), now, deadline,
/// then live pairs. 1: `~off` set (index the user).
fn gone_script() -> String {
    format!(
        "{LIVE} local v = redis.call('HGET', KEYS[1], ARGV[1]) if v then \
        local inc = tonumber(string.match(v, '\"inc\":(%d+)')) \
        if inc ~= nil and inc > tonumber(ARGV[2]) then return 0 end \
        redis.call('HDEL', KEYS[1], ARGV[1]) end \
        if redis.call('HEXISTS', KEYS[1], '~on') == 0 or redis.call('HEXISTS', KEYS[1], '~off') == 1 \
        then return 0 end if any_live(5) then return 0 end \
        redis.call('HSET', KEYS[1], '~off', ARGV[4] .. ':' .. ARGV[3]) return 1"
    )
}

/// ARGV: now, then live pairs. {0}: nothing pending; {1, deadline}: not
/// yet; {2, last_seen}: tell `offline`.
fn sweep_script() -> String {
    format!(
        "{LIVE} local off = redis.call('HGET', KEYS[1], '~off') if not off then return {{0}} end \
        local deadline, seen = string.match(off, '(%d+):(%d+)') \
        if tonumber(deadline) > tonumber(ARGV[1]) then return {{1, deadline}} end \
        if any_live(2) then redis.call('HDEL', KEYS[1], '~off') return {{0}} end \
        redis.call('HDEL', KEYS[1], '~off', '~on') return {{2, seen}}"
    )
}

/// Removes an index entry only if its deadline is still `ARGV[2]`.
const UNINDEX: &str = "if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then \
    return redis.call('ZREM', KEYS[1], ARGV[1]) end return 0";

/// Where the events go and the grace.
#[derive(Debug, Clone)]
pub(crate) struct EventsConfig {
    /// `backend.events_stream`.
    pub stream: String,
    /// `backend.events_maxlen`.
    pub maxlen: u64,
    /// `presence.offline_grace_ms`.
    pub grace_ms: u64,
}

/// One event to append: its fields.
type Event = Vec<(&'static str, String)>;

/// What tells the events, on the presence writer's thread.
pub(crate) struct Tracker {
    cfg: EventsConfig,
    node_id: String,
    incarnation: u64,
    view: Arc<View>,
    outbox: VecDeque<Event>,
    last_sweep: Option<Instant>,
    last_heartbeat: Option<Instant>,
    gone: String,
    sweep: String,
    /// `online` and `offline` events appended.
    pub told: [u64; 2],
    /// Events dropped (outbox full).
    pub dropped: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Tracker {
    pub(crate) fn new(cfg: EventsConfig, node_id: &str, incarnation: u64, view: Arc<View>) -> Self {
        Tracker {
            cfg,
            node_id: node_id.to_owned(),
            incarnation,
            view,
            outbox: VecDeque::new(),
            last_sweep: None,
            last_heartbeat: None,
            gone: gone_script(),
            sweep: sweep_script(),
            told: [0; 2],
            dropped: 0,
        }
    }

    fn users_key(node: &str, inc: u64) -> String {
        format!("im:presence:users:{node}:{inc}")
    }

    /// Live nodes as script arguments: id, incarnation pairs (this node
    /// always, whatever the view says).
    fn live_args(&self, c: &mut redis::Cmd) {
        c.arg(&self.node_id).arg(self.incarnation);
        for n in self.view.nodes().iter().filter(|n| n.id != self.node_id) {
            c.arg(&n.id).arg(n.incarnation);
        }
    }

    /// The commands that write `user`'s value on this node. The first is
    /// the script, whose reply [`Tracker::written`] reads. A user's last
    /// connection here going also indexes the user, in the same pipeline
    /// (a node that dies after sending it leaves nothing half done); the
    /// sweep drops the entry if nothing turned out to be pending.
    pub(crate) fn write_cmds(
        &self,
        user: &str,
        value: Option<String>,
        ttl_ms: u64,
    ) -> Vec<redis::Cmd> {
        let key = presence_key("im", user);
        let mut set = redis::cmd(if value.is_some() { "SADD" } else { "SREM" });
        set.arg(Self::users_key(&self.node_id, self.incarnation))
            .arg(user);
        match value {
            Some(v) => {
                let mut c = redis::cmd("EVAL");
                c.arg(ONLINE).arg(1).arg(key).arg(&self.node_id);
                c.arg(format!("{{\"inc\":{},\"conns\":{v}}}", self.incarnation));
                c.arg(ttl_ms).arg(now_ms());
                vec![c, set]
            }
            None => {
                let [gone, index] = self.gone_cmds(user, &self.node_id, self.incarnation);
                vec![gone, index, set]
            }
        }
    }

    /// The script that removes `node`'s field of `user` (incarnation `inc`
    /// or older) and sets `~off` if none is live, and the index entry.
    fn gone_cmds(&self, user: &str, node: &str, inc: u64) -> [redis::Cmd; 2] {
        let now = now_ms();
        let deadline = now + self.cfg.grace_ms;
        let mut c = redis::cmd("EVAL");
        c.arg(&self.gone)
            .arg(1)
            .arg(presence_key("im", user))
            .arg(node)
            .arg(inc);
        c.arg(now).arg(deadline);
        self.live_args(&mut c);
        let mut z = redis::cmd("ZADD");
        z.arg(INDEX).arg(deadline).arg(user);
        [c, z]
    }

    /// The script's reply for a user who came online: 1 tells `online`.
    pub(crate) fn written(&mut self, user: &str, reply: &Value) {
        if matches!(reply, Value::Int(1)) {
            self.tell("online", user, None);
        }
    }

    fn tell(&mut self, kind: &'static str, user: &str, last_seen: Option<String>) {
        if self.outbox.len() >= OUTBOX {
            self.outbox.pop_front();
            self.dropped += 1;
        }
        let mut e: Event = vec![
            ("type", kind.to_owned()),
            ("user", user.to_owned()),
            ("node", self.node_id.clone()),
            ("ts", now_ms().to_string()),
        ];
        e.extend(last_seen.map(|s| ("last_seen", s)));
        self.outbox.push_back(e);
    }

    /// Once per writer round: sweeps what is due, heartbeats, appends the
    /// events. A Redis failure leaves everything for the next round.
    pub(crate) fn tick(&mut self, redis: &mut Lazy) -> Result<(), redis::RedisError> {
        let due = |last: Option<Instant>, every| last.is_none_or(|l| l.elapsed() >= every);
        if due(self.last_heartbeat, HEARTBEAT_EVERY) {
            self.heartbeat(redis)?;
            self.last_heartbeat = Some(Instant::now());
        }
        if due(self.last_sweep, SWEEP_EVERY) {
            self.sweep(redis)?;
            self.last_sweep = Some(Instant::now());
        }
        self.flush(redis)
    }

    /// Appends the outbox to the events stream.
    fn flush(&mut self, redis: &mut Lazy) -> Result<(), redis::RedisError> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        let cmds: Vec<redis::Cmd> = self
            .outbox
            .iter()
            .map(|fields| {
                let mut c = redis::cmd("XADD");
                c.arg(&self.cfg.stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.cfg.maxlen)
                    .arg("*");
                for (k, v) in fields {
                    c.arg(*k).arg(v);
                }
                c
            })
            .collect();
        redis.with(|c| c.pipeline(cmds))?;
        for e in self.outbox.drain(..) {
            self.told[usize::from(e[0].1 == "offline")] += 1;
        }
        Ok(())
    }

    /// Users past their deadline: told `offline`, or kept, or dropped.
    fn sweep(&mut self, redis: &mut Lazy) -> Result<(), redis::RedisError> {
        let mut range = redis::cmd("ZRANGEBYSCORE");
        range.arg(INDEX).arg("-inf").arg(now_ms()).arg("WITHSCORES");
        range.arg("LIMIT").arg(0).arg(SWEEP_BATCH);
        let due: Vec<(String, String)> = redis.with(|c| c.query(&range))?;
        if due.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let checks: Vec<redis::Cmd> = due
            .iter()
            .map(|(user, _)| {
                let mut c = redis::cmd("EVAL");
                c.arg(&self.sweep)
                    .arg(1)
                    .arg(presence_key("im", user))
                    .arg(now);
                self.live_args(&mut c);
                c
            })
            .collect();
        let replies = redis.with(|c| c.pipeline(checks))?;
        let mut after = Vec::new();
        for ((user, score), reply) in due.iter().zip(replies) {
            let parts: Vec<String> = redis::from_redis_value(reply).unwrap_or_default();
            match parts.first().map(String::as_str) {
                Some("1") => {
                    let mut z = redis::cmd("ZADD");
                    z.arg(INDEX).arg("XX").arg(&parts[1]).arg(user);
                    after.push(z);
                    continue;
                }
                Some("2") => self.tell("offline", user, parts.get(1).cloned()),
                _ => {}
            }
            let mut z = redis::cmd("EVAL");
            z.arg(UNINDEX).arg(1).arg(INDEX).arg(user).arg(score);
            after.push(z);
        }
        redis.with(|c| c.pipeline(after)).map(drop)
    }

    /// Refreshes this incarnation's heartbeat and sweeps dead ones.
    fn heartbeat(&mut self, redis: &mut Lazy) -> Result<(), redis::RedisError> {
        let me = format!("{}:{}", self.node_id, self.incarnation);
        let now = now_ms();
        let mut hset = redis::cmd("HSET");
        hset.arg(INCS).arg(&me).arg(now);
        redis.with(|c| c.query::<Value>(&hset))?;
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg(INCS);
        let all: Vec<(String, u64)> = redis.with(|c| c.query(&hgetall))?;
        let view = self.view.nodes();
        for (entry, seen) in all {
            let Some((node, inc)) = entry.rsplit_once(':') else {
                continue;
            };
            let Ok(inc) = inc.parse::<u64>() else {
                continue;
            };
            let listed = view.iter().any(|n| n.id == node && n.incarnation == inc);
            if entry == me || listed || now.saturating_sub(seen) < STALE_MS {
                continue;
            }
            self.sweep_dead(redis, node, inc)?;
            let mut hdel = redis::cmd("HDEL");
            hdel.arg(INCS).arg(&entry);
            redis.with(|c| c.query::<Value>(&hdel))?;
        }
        Ok(())
    }

    /// Every user a dead incarnation wrote: its field goes, and each user
    /// with no live node left gets its `offline` pending.
    fn sweep_dead(
        &mut self,
        redis: &mut Lazy,
        node: &str,
        inc: u64,
    ) -> Result<(), redis::RedisError> {
        let set = Self::users_key(node, inc);
        tracing::info!(node, inc, "presence: sweeping a dead node's users");
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SSCAN");
            scan.arg(&set).arg(cursor).arg("COUNT").arg(500);
            let (next, users): (u64, Vec<String>) = redis.with(|c| c.query(&scan))?;
            let cmds: Vec<redis::Cmd> = users
                .iter()
                .flat_map(|u| self.gone_cmds(u, node, inc))
                .collect();
            if !cmds.is_empty() {
                redis.with(|c| c.pipeline(cmds))?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut del = redis::cmd("DEL");
        del.arg(&set);
        redis.with(|c| c.query::<Value>(&del)).map(drop)
    }
}
