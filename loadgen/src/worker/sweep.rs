//! The worker's periodic duties, on one timer instead of one per
//! connection: heartbeats (each connection once per period, spread over the
//! ticks; every `Plan::ping` while `Shared::pinging`), storms (drop a
//! fraction of the connections at once), handing over measurements, the
//! stop, and the direct-message sender.
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::io;
use super::{user_name, Worker};
use crate::target::{heartbeat, Encoder, Target};

/// Heartbeats, storms and the stop, until the stop.
///
/// Heartbeats are paced by wall time, not by wake-ups: a sweeper that wakes
/// late (its worker starved on a saturated box) sends every phase it
/// missed, so each connection still beats once per period and the gateway's
/// heartbeat deadline is not the load generator's artefact.
pub(super) async fn run(w: Rc<Worker>) {
    let start = Instant::now();
    let mut done_tick: u64 = 0;
    let mut storm_gen = w.shared.storm_gen.load(Relaxed);
    let tick_len = w.plan.tick();
    let ticks_per = |p: Duration| (p.as_millis() / tick_len.as_millis()).max(1) as u64;
    let mut frame = Vec::new();
    loop {
        monoio::time::sleep(tick_len).await;
        let tick = (start.elapsed().as_millis() / tick_len.as_millis()) as u64;
        if w.shared.stopping() {
            for (_, s) in w.slots.borrow().iter() {
                io::shutdown(s.fd);
            }
            if w.live.get() == 0 {
                return;
            }
            continue;
        }
        if w.plan.audit {
            hand_over_window(&w);
        }
        hand_over_rtt(&w);
        let gen = w.shared.storm_gen.load(Relaxed);
        if gen != storm_gen {
            storm_gen = gen;
            let permille = w.shared.storm_permille.load(Relaxed);
            // A long run (`audit`) cuts another set of users each time.
            let shift = if w.plan.audit {
                gen.wrapping_mul(104_729)
            } else {
                0
            };
            for (_, s) in w.slots.borrow_mut().iter_mut() {
                if s.ready && super::stormed(s.user.wrapping_add(shift), permille) {
                    s.stormed = true;
                    io::shutdown(s.fd);
                }
            }
        }
        let period = match w.shared.pinging.load(Relaxed) {
            true => w.plan.ping.or(w.plan.heartbeat),
            false => w.plan.heartbeat,
        };
        if let Some(every) = period.map(ticks_per) {
            // The phases of every tick since the last pass (at most a whole
            // period: each connection once).
            let due = Phases::since(done_tick, tick, every);
            done_tick = tick;
            let mut pings = 0;
            for (_, s) in w.slots.borrow().iter() {
                if !s.ready || s.stormed || !due.includes(s.user) {
                    continue;
                }
                frame.clear();
                // The send time, echoed in the pong: its round trip.
                heartbeat(&w.plan.spec, crate::payload::now_ns() / 1000, &mut frame);
                if let Some(path) = &s.post {
                    let dest = w.plan.dest_for(s.user);
                    super::post::spawn(&w, dest, path.clone(), frame.clone());
                    pings += 1;
                } else if s.send_whole(&frame) {
                    pings += 1;
                } else {
                    w.shared.note("heartbeat_send_blocked");
                }
            }
            w.shared.pings.fetch_add(pings, Relaxed);
        }
    }
}

/// Adds the worker's latencies since the last tick to the shared window.
fn hand_over_window(w: &Worker) {
    let mut mine = w.window.borrow_mut();
    if mine.is_empty() {
        return;
    }
    if let Ok(mut shared) = w.shared.window.lock() {
        match shared.as_mut() {
            Some(h) => {
                let _ = h.add(&*mine);
            }
            None => *shared = Some(mine.clone()),
        }
    }
    mine.reset();
}

/// Adds the worker's ping round trips since the last tick to the shared
/// ones.
fn hand_over_rtt(w: &Worker) {
    let mut mine = w.rtt.borrow_mut();
    let Some(mine) = mine.as_mut().filter(|r| !r.is_empty()) else {
        return;
    };
    if let Ok(mut shared) = w.shared.rtt.lock() {
        mine.hand_over(shared.get_or_insert_with(Default::default));
    }
}

/// The heartbeat phases due at a wake-up: those of every tick after the
/// last pass up to `tick` (at most a whole period: each connection once).
struct Phases {
    first: u64,
    count: u64,
    every: u64,
}

impl Phases {
    fn since(done_tick: u64, tick: u64, every: u64) -> Phases {
        let count = tick.saturating_sub(done_tick).clamp(1, every);
        Phases {
            first: (tick + 1 - count) % every,
            count,
            every,
        }
    }

    /// True when `user`'s phase is among them.
    fn includes(&self, user: u64) -> bool {
        (user % self.every + self.every - self.first) % self.every < self.count
    }
}

/// Sends direct messages from user `2k` to user `2k+1` of this worker at
/// this worker's share of `rate` per second, round robin over ready pairs.
pub(super) async fn direct(w: Rc<Worker>, rate: f64, size: usize, secs: Duration) {
    let users = w.by_user.borrow().len() as u64;
    let pairs = users / 2;
    if pairs == 0 {
        return;
    }
    let share = rate * users as f64 / w.plan.conns.max(1) as f64;
    let mut seqs = vec![0u64; pairs as usize];
    let mut next_pair = 0u64;
    let mut sent = 0u64;
    let mut started: Option<Instant> = None;
    let mut frame = Vec::new();
    let mut body = Vec::new();
    while !w.shared.stopping() {
        monoio::time::sleep(Duration::from_millis(5)).await;
        // Start the clock once the main thread says go (every connection
        // up and, on a cluster, every receiver known at its sender's node).
        if started.is_none() {
            if !w.shared.go.load(Relaxed) {
                continue;
            }
            started = Some(Instant::now());
        }
        let elapsed = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        if elapsed >= secs.as_secs_f64() {
            return;
        }
        let due = (elapsed * share) as u64;
        let mut tries = 0;
        while sent < due && tries < pairs {
            let pair = next_pair;
            next_pair = (next_pair + 1) % pairs;
            tries += 1;
            let (from, to) = (pair * 2, pair * 2 + 1);
            if !is_ready(&w, from) || !is_ready(&w, to) {
                continue;
            }
            let Some(seq) = seqs.get_mut(pair as usize) else {
                continue;
            };
            body.clear();
            crate::payload::encode(*seq, crate::payload::now_ns(), size, &mut body);
            frame.clear();
            match w.plan.spec.target {
                Target::Gateway => Encoder(w.plan.spec.wire, w.plan.spec.qos1).to_user(
                    &user_name(w.first + to),
                    w.plan.audit.then_some(*seq),
                    &body,
                    &mut frame,
                ),
                Target::Nats | Target::Nchan => {
                    crate::target::nats_pub(&user_name(w.first + to), &body, &mut frame)
                }
            }
            if send_from(&w, from, &frame) {
                *seq += 1;
                sent += 1;
                tries = 0;
                w.shared.sent.fetch_add(1, Relaxed);
            } else {
                w.shared.note("direct_send_blocked");
            }
        }
    }
}

fn is_ready(w: &Worker, local: u64) -> bool {
    slot_of(w, local).is_some_and(|slot| w.slots.borrow().get(slot).is_some_and(|s| s.ready))
}

fn slot_of(w: &Worker, local: u64) -> Option<usize> {
    *w.by_user.borrow().get(local as usize)?
}

/// Sends `frame` on user `local`'s connection (see `Slot::send_whole`).
fn send_from(w: &Worker, local: u64, frame: &[u8]) -> bool {
    let slots = w.slots.borrow();
    slot_of(w, local)
        .and_then(|slot| slots.get(slot))
        .is_some_and(|s| s.send_whole(frame))
}

#[cfg(test)]
mod tests {
    /// The phase test of `run`: over any sequence of wake-ups, each user is
    /// due exactly once per period of ticks, however late the wake-ups.
    #[test]
    fn late_wake_ups_still_beat_every_connection_once_per_period() {
        let every = 250u64;
        let mut beats = vec![0u32; 1000];
        let mut done_tick = 0u64;
        // Wake-ups at irregular ticks, some far apart (a starved worker).
        let mut tick = 0u64;
        for step in [1u64, 1, 7, 1, 40, 3, 1, 120, 1, 77] {
            tick += step;
            let due = super::Phases::since(done_tick, tick, every);
            done_tick = tick;
            for (user, b) in beats.iter_mut().enumerate() {
                if due.includes(user as u64) {
                    *b += 1;
                }
            }
        }
        // 252 ticks passed: every user beat once, those whose phase came
        // round again (phases 251 and 252 % 250) twice.
        for (user, b) in beats.iter().enumerate() {
            let phase = user as u64 % every;
            let want = if (1..=2).contains(&phase) { 2 } else { 1 };
            assert_eq!(*b, want, "user {user} (phase {phase})");
        }
    }
}
