//! Single-threaded wake-ups between the tasks of one shard (not OS signals:
//! those are the node's, see `node`).
//!
//! Shard state is not `Send`; these are `Cell`s, not atomics. `Notify` wakes
//! one waiting task and is consumed by it (edge); `Flag` is set once and wakes
//! every waiter (level), as drain does.
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes one task; a notify before the wait is remembered.
#[derive(Default)]
pub(crate) struct Notify {
    pending: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    /// Records a notification and wakes the waiter, if any.
    pub(crate) fn notify(&self) {
        self.pending.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Waits for a notification and consumes it.
    pub(crate) async fn notified(&self) {
        poll_fn(|cx| {
            if self.pending.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// A one-way switch that wakes every waiter when set.
#[derive(Default)]
pub(crate) struct Flag {
    set: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl Flag {
    /// Sets the flag and wakes all waiters.
    pub(crate) fn set(&self) {
        self.set.set(true);
        for w in self.wakers.take() {
            w.wake();
        }
    }

    /// True once set.
    pub(crate) fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Waits until the flag is set.
    pub(crate) async fn wait(&self) {
        wait_until(|| self.set.get(), &self.wakers).await
    }
}

/// A gate the shard's tasks pass while it is open; closed while an upgrade
/// moves the shard's connections (nothing is read, written or timed out).
#[derive(Default)]
pub(crate) struct Gate {
    closed: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl Gate {
    /// Closes the gate: tasks stop at `passed`.
    pub(crate) fn close(&self) {
        self.closed.set(true);
    }

    /// Opens the gate and wakes every task waiting at it.
    pub(crate) fn open(&self) {
        self.closed.set(false);
        for w in self.wakers.take() {
            w.wake();
        }
    }

    /// True while closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Waits until the gate is open.
    pub(crate) async fn passed(&self) {
        wait_until(|| !self.closed.get(), &self.wakers).await
    }
}

/// Waits until `ready()`, registered in `wakers` (woken all at once by
/// whoever makes it true) meanwhile.
async fn wait_until(ready: impl Fn() -> bool, wakers: &RefCell<Vec<Waker>>) {
    poll_fn(|cx| {
        if ready() {
            return Poll::Ready(());
        }
        let mut wakers = wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    })
    .await
}

/// A handle the shard's runtime can wait on for `fd` to become readable
/// (`.readable(false)`): an io_uring `PollAdd`, or the legacy driver's epoll.
///
/// It polls a duplicate, so that monoio owns (and closes) only its copy; the
/// std `TcpStream` is only a carrier for readiness, never read or written.
pub(crate) fn readiness(fd: RawFd) -> std::io::Result<monoio::net::TcpStream> {
    let dup = crate::sys::dup(fd)?;
    // SAFETY: `dup` is a fresh descriptor owned by nobody else.
    let carrier = unsafe { std::net::TcpStream::from_raw_fd(dup.into_raw_fd()) };
    monoio::net::TcpStream::from_std(carrier)
}

/// Lets the other tasks of the shard run once.
pub(crate) fn yield_now() -> impl Future<Output = ()> {
    struct Yield(bool);
    impl Future for Yield {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
    Yield(false)
}

/// Gives the runtime a full turn: the shard's other tasks run, and the
/// runtime polls its driver and fires due timers. A yield alone lets the
/// runtime poll its driver (with a task ready it submits: the legacy
/// driver's zero-timeout epoll) but never fire timers: those fire when it
/// parks. A timer of zero makes it park once; monoio rounds that timer up
/// to the next millisecond, so this can take up to 1 ms.
pub(crate) async fn runtime_turn() {
    yield_now().await;
    monoio::time::sleep(std::time::Duration::ZERO).await;
}

/// Awaits `fut` and says whether it had to wait (returned `Pending` at
/// least once). A wait answered at once gave the runtime no turn at all;
/// one that waited let other tasks run, though not necessarily timers.
pub(crate) async fn waited<F: Future>(fut: F) -> (F::Output, bool) {
    let mut fut = std::pin::pin!(fut);
    let mut pending = false;
    let out = poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(out),
        Poll::Pending => {
            pending = true;
            Poll::Pending
        }
    })
    .await;
    (out, pending)
}

/// Rounds in a row answered without a turn between two full turns.
const FULL_TURN_EVERY: u32 = 16;

/// The runtime's turns in a loop that waits on readiness. The legacy driver
/// answers a readiness it already knows at once, without `Pending`: a peer
/// that keeps a socket readable would keep such a loop from ever giving
/// the runtime a turn, and the listeners, the other sockets and the timers
/// would starve (io_uring always goes through the ring and always waits).
#[derive(Default)]
pub(crate) struct Turns {
    unanswered: Cell<u32>,
}

impl Turns {
    /// After a wait that reported `waited`: when it gave no turn, yields
    /// (the runtime polls its driver), and every `FULL_TURN_EVERY`th time in
    /// a row gives a full turn (timers too).
    pub(crate) async fn after_wait(&self, waited: bool) {
        if waited {
            self.unanswered.set(0);
            return;
        }
        let n = self.unanswered.get() + 1;
        self.unanswered.set(n);
        if n.is_multiple_of(FULL_TURN_EVERY) {
            runtime_turn().await;
        } else {
            yield_now().await;
        }
    }
}
