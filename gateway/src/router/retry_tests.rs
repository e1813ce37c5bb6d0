//! The retry queue on simulated time: order, backoff, the bound and the
//! give-up age.
use super::*;

const WINDOW: Duration = Duration::from_secs(600);

fn msg(n: u64) -> (Arc<str>, Stored, String) {
    let mut stored = Stored::for_test("", "", 0);
    stored.msg_id = n.to_string();
    (Arc::from("u"), stored, format!("room:{n}"))
}

/// Arrival of message `n`: submitted at once (and recorded) or held.
fn arrive(r: &mut AppendRetry, n: u64, now: Instant) -> bool {
    let (user, m, id) = msg(n);
    match r.arrive(user, m, id, now) {
        Some(p) => {
            r.submitted(&p, false);
            true
        }
        None => false,
    }
}

fn ids(v: &[Pending]) -> Vec<&str> {
    v.iter().map(|p| p.msg.msg_id.as_str()).collect()
}

/// Submits what is due, as the owner does, and returns its ids.
fn retry_due(r: &mut AppendRetry, now: Instant) -> Vec<String> {
    let (due, too_old) = r.take_due(now);
    assert!(too_old.is_empty(), "{} given up", too_old.len());
    for p in &due {
        r.submitted(p, true);
    }
    ids(&due).into_iter().map(str::to_owned).collect()
}

#[test]
fn refused_appends_go_back_in_arrival_order() {
    let t0 = Instant::now();
    let mut r = AppendRetry::new(WINDOW);
    // 1 and 2 go to the store (one pipeline round); 1 is refused.
    assert!(arrive(&mut r, 1, t0));
    assert!(arrive(&mut r, 2, t0));
    assert!(r.completed(Some(msg(1)), t0).is_none());
    // 3 arrives while 1 waits: it queues behind.
    assert!(!arrive(&mut r, 3, t0));
    // 2 is refused too, after 3 arrived: it still goes before 3.
    assert!(r.completed(Some(msg(2)), t0).is_none());
    assert!(retry_due(&mut r, t0 + FIRST_DELAY - Duration::from_millis(1)).is_empty());
    assert_eq!(retry_due(&mut r, t0 + FIRST_DELAY), ["1", "2", "3"]);
    // While those are at the store, a new arrival waits behind them ...
    assert!(!arrive(&mut r, 4, t0));
    for _ in 0..3 {
        assert!(r.completed(None, t0 + FIRST_DELAY).is_none());
    }
    // ... and goes out at the next tick once they are stored.
    assert_eq!(retry_due(&mut r, t0 + FIRST_DELAY), ["4"]);
    assert!(r.completed(None, t0 + FIRST_DELAY).is_none());
    assert!(
        arrive(&mut r, 5, t0 + FIRST_DELAY),
        "nothing waits any more"
    );
}

/// An append still at the store may yet be refused and belong before what
/// is queued: nothing is resubmitted until the store has answered it.
#[test]
fn no_retry_overtakes_an_append_still_at_the_store() {
    let t0 = Instant::now();
    let mut r = AppendRetry::new(WINDOW);
    assert!(arrive(&mut r, 1, t0));
    assert!(arrive(&mut r, 2, t0));
    r.completed(Some(msg(1)), t0);
    assert!(!arrive(&mut r, 3, t0));
    assert!(
        retry_due(&mut r, t0 + FIRST_DELAY).is_empty(),
        "2 is at the store"
    );
    r.completed(Some(msg(2)), t0 + FIRST_DELAY);
    assert_eq!(retry_due(&mut r, t0 + FIRST_DELAY), ["1", "2", "3"]);
}

#[test]
fn the_delay_doubles_to_a_cap_and_resets_on_success() {
    let mut now = Instant::now();
    let mut r = AppendRetry::new(WINDOW);
    assert!(arrive(&mut r, 1, now));
    let mut delays = Vec::new();
    for _ in 0..7 {
        r.completed(Some(msg(1)), now);
        let mut waited = Duration::ZERO;
        while retry_due(&mut r, now + waited).is_empty() {
            waited += Duration::from_millis(100);
        }
        now += waited;
        delays.push(waited.as_millis());
    }
    assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
    r.completed(None, now);
    assert!(arrive(&mut r, 2, now));
    r.completed(Some(msg(2)), now);
    assert_eq!(retry_due(&mut r, now + FIRST_DELAY), ["2"]);
}

#[test]
fn an_append_too_old_to_dedupe_is_given_up() {
    let t0 = Instant::now();
    let mut r = AppendRetry::new(WINDOW);
    // Refused on its last retry inside the window.
    assert!(arrive(&mut r, 1, t0));
    r.completed(Some(msg(1)), t0);
    assert_eq!(retry_due(&mut r, t0 + WINDOW / 2), ["1"]);
    let given_up = r.completed(Some(msg(1)), t0 + WINDOW).expect("given up");
    assert_eq!(given_up.msg.msg_id, "1");
    // Or due too close to the window's end for a retry to land inside it.
    assert!(arrive(&mut r, 2, t0));
    r.completed(Some(msg(2)), t0);
    let (due, too_old) = r.take_due(t0 + WINDOW - DEDUPE_MARGIN);
    assert!(due.is_empty());
    assert_eq!(ids(&too_old), ["2"]);
    assert_eq!(r.unsettled(), (0, 0));
}

#[test]
fn past_the_bound_the_oldest_is_given_up() {
    let t0 = Instant::now();
    let mut r = AppendRetry::new(WINDOW);
    assert!(arrive(&mut r, 0, t0));
    r.completed(Some(msg(0)), t0);
    for n in 1..MAX_QUEUED as u64 {
        assert!(!arrive(&mut r, n, t0));
        assert!(r.trim().is_none());
    }
    assert!(!arrive(&mut r, u64::MAX, t0));
    assert_eq!(r.trim().expect("over the bound").msg.msg_id, "0");
    assert_eq!(r.unsettled(), (MAX_QUEUED, 0));
}
