//! The header-read timeout's clock: a coarse one, checked a few times a second.
//!
//! hyper arms its header-read timer anew for every request on a keep-alive connection.
//! With hyper-util's `TokioTimer` that is a boxed tokio `Sleep` each time, registered in
//! tokio's timer wheel when the connection waits and taken out again when the request's
//! head arrives (a lock each way): about 670 instructions on every request (this clock
//! costs about 300 of them; benches/ANALYSIS.md). A deadline of
//! seconds that may pass a quarter of a second late needs none of that. Here every
//! connection has one [`Slot`] for its current deadline and waker, and one task looks at
//! every slot four times a second and wakes the connections whose deadline has passed.
//! Arming the timer costs a small box, an atomic store and a waker registration.
//! Hand-written because no crate offers a coarse clock behind hyper's `Timer` trait;
//! tokio's precise one is what this replaces.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures_util::task::AtomicWaker;
use hyper::rt::{Sleep, Timer};
use tokio::task::JoinHandle;

/// How often the watcher looks at the deadlines: how late a timeout may fire.
pub const TICK: Duration = Duration::from_millis(250);

/// Means "no deadline" in a [`Slot`].
const UNARMED: u64 = u64::MAX;

/// The server's clock: the connections' slots and the task that watches them.
pub struct HeaderClock {
    shared: Arc<Shared>,
    watcher: JoinHandle<()>,
}

struct Shared {
    /// Deadlines are kept as milliseconds since this instant.
    epoch: Instant,
    /// Every connection's slot; dead ones are dropped at the next tick.
    slots: Mutex<Vec<Weak<Slot>>>,
}

/// One connection's deadline (milliseconds since the epoch, or [`UNARMED`]) and the waker
/// of the task serving it.
struct Slot {
    deadline_ms: AtomicU64,
    waker: AtomicWaker,
}

impl HeaderClock {
    /// Starts the watcher on the current tokio runtime.
    pub fn start() -> HeaderClock {
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            slots: Mutex::new(Vec::new()),
        });
        let watched = Arc::clone(&shared);
        let watcher = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(TICK);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                watched.wake_expired();
            }
        });
        HeaderClock { shared, watcher }
    }

    /// The timer for one new connection (give it to hyper's connection builder).
    pub fn connection(&self) -> ConnectionTimer {
        let slot = Arc::new(Slot {
            deadline_ms: AtomicU64::new(UNARMED),
            waker: AtomicWaker::new(),
        });
        self.shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&slot));
        ConnectionTimer {
            epoch: self.shared.epoch,
            slot,
        }
    }
}

impl Drop for HeaderClock {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl Shared {
    /// Wakes every connection whose deadline has passed, and forgets closed connections.
    fn wake_expired(&self) {
        let now = millis_since(self.epoch, Instant::now());
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|slot| match slot.upgrade() {
            Some(slot) => {
                if slot.deadline_ms.load(Ordering::Acquire) <= now {
                    slot.waker.wake();
                }
                true
            }
            None => false,
        });
    }
}

/// Milliseconds from `epoch` to `at`, rounded up (a deadline never moves earlier).
fn millis_since(epoch: Instant, at: Instant) -> u64 {
    let since = at.saturating_duration_since(epoch);
    let millis = since.as_millis() + u128::from(!since.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(millis).unwrap_or(UNARMED - 1)
}

/// hyper's timer for one connection: at most one deadline at a time, in its slot.
pub struct ConnectionTimer {
    epoch: Instant,
    slot: Arc<Slot>,
}

impl Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(CoarseSleep {
            deadline,
            deadline_ms: millis_since(self.epoch, deadline),
            slot: Arc::clone(&self.slot),
            armed: false,
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        // In place: a second sleep beside the first would share (and clear) the slot.
        match sleep.as_mut().downcast_mut_pin::<CoarseSleep>() {
            Some(mut sleep) => {
                sleep.disarm();
                sleep.deadline = new_deadline;
                sleep.deadline_ms = millis_since(self.epoch, new_deadline);
            }
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A deadline in its connection's slot; ready once it has passed.
struct CoarseSleep {
    deadline: Instant,
    deadline_ms: u64,
    slot: Arc<Slot>,
    /// Whether the slot holds this deadline (set on the first poll that waits).
    armed: bool,
}

impl CoarseSleep {
    fn disarm(&mut self) {
        if self.armed {
            self.slot.deadline_ms.store(UNARMED, Ordering::Release);
            self.armed = false;
        }
    }
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // The first poll only arms the slot, without reading the clock: that is the one
        // poll of every request (hyper polls the timer when the next request's head has
        // not arrived yet). A deadline that has already passed then fires at the next tick.
        if this.armed && Instant::now() >= this.deadline {
            this.disarm();
            return Poll::Ready(());
        }
        // The waker first, then the deadline: the watcher that sees the deadline finds the
        // waker to wake.
        this.slot.waker.register(cx.waker());
        if !this.armed {
            this.slot
                .deadline_ms
                .store(this.deadline_ms, Ordering::Release);
            this.armed = true;
        }
        Poll::Pending
    }
}

impl Sleep for CoarseSleep {}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        self.disarm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `sleep` once, so that it waits and arms its slot.
    async fn poll_once(sleep: &mut Pin<Box<dyn Sleep>>) {
        std::future::poll_fn(|cx| {
            assert!(sleep.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
    }

    // Real time, since hyper's deadlines are `std` instants. The upper bounds are generous:
    // they tell "fires" from "never fires", not how fast.

    #[tokio::test]
    async fn a_deadline_fires_after_it_passes_and_a_dropped_one_is_disarmed() {
        let clock = HeaderClock::start();
        let timer = clock.connection();
        let started = Instant::now();
        let sleep = timer.sleep(Duration::from_millis(300));
        tokio::time::timeout(Duration::from_secs(10), sleep)
            .await
            .expect("the sleep fired");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(timer.slot.deadline_ms.load(Ordering::Acquire), UNARMED);

        let mut sleep = timer.sleep(Duration::from_secs(60));
        poll_once(&mut sleep).await;
        assert_ne!(timer.slot.deadline_ms.load(Ordering::Acquire), UNARMED);
        drop(sleep);
        assert_eq!(timer.slot.deadline_ms.load(Ordering::Acquire), UNARMED);
    }

    #[tokio::test]
    async fn a_reset_deadline_moves_and_closed_connections_are_forgotten() {
        let clock = HeaderClock::start();
        let timer = clock.connection();
        let mut sleep = timer.sleep(Duration::from_secs(60));
        poll_once(&mut sleep).await;
        let started = Instant::now();
        timer.reset(&mut sleep, started + Duration::from_millis(400));
        assert_eq!(timer.slot.deadline_ms.load(Ordering::Acquire), UNARMED);
        tokio::time::timeout(Duration::from_secs(10), sleep)
            .await
            .expect("the reset sleep fired");
        assert!(started.elapsed() >= Duration::from_millis(400));

        drop(timer);
        tokio::time::sleep(3 * TICK).await;
        let slots = clock.shared.slots.lock().expect("slots").len();
        assert_eq!(slots, 0);
    }

    #[test]
    fn deadlines_round_up_to_the_millisecond() {
        let epoch = Instant::now();
        assert_eq!(millis_since(epoch, epoch), 0);
        assert_eq!(millis_since(epoch, epoch + Duration::from_micros(1)), 1);
        assert_eq!(millis_since(epoch, epoch + Duration::from_millis(7)), 7);
        assert_eq!(millis_since(epoch + Duration::from_secs(1), epoch), 0);
    }
}
