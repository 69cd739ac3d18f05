//! How a library thread that runs host callbacks (a worker's lanes, a
//! subscription's event thread) waits for its next piece of work: it looks
//! again for a short while, yielding its CPU, before it sleeps. Work that
//! comes within that time is taken without the system calls of a sleep and
//! a wake-up. The time is adaptive, so a thread whose work comes far apart
//! does not burn its core: halved after each look that found nothing (down
//! to none), back to the whole of it after a sleep shorter than it.

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest a thread looks before it sleeps.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

/// A thread's current looking time.
pub(crate) struct Spin {
    budget: Duration,
}

impl Default for Spin {
    fn default() -> Self {
        Spin { budget: SPIN }
    }
}

impl Spin {
    /// Looks for work with `poll` (which returns `Some` once there is some)
    /// for up to the current looking time, yielding the CPU between looks;
    /// `None` when none came. Adjusts the next looking time.
    pub(crate) fn look<T>(&mut self, mut poll: impl FnMut() -> Option<T>) -> Option<T> {
        let start = Instant::now();
        loop {
            if let Some(found) = poll() {
                self.budget = SPIN;
                return Some(found);
            }
            if start.elapsed() >= self.budget {
                self.budget = if self.budget < SPIN / 8 {
                    Duration::ZERO
                } else {
                    self.budget / 2
                };
                return None;
            }
            std::thread::yield_now();
        }
    }

    /// The next message of `rx`, looked for first, then waited for;
    /// `None` once every sender is gone.
    pub(crate) fn recv<T>(&mut self, rx: &mpsc::Receiver<T>) -> Option<T> {
        let ready = self.look(|| match rx.try_recv() {
            Ok(m) => Some(Some(m)),
            Err(mpsc::TryRecvError::Disconnected) => Some(None),
            Err(mpsc::TryRecvError::Empty) => None,
        });
        if let Some(m) = ready {
            return m;
        }
        let asleep = Instant::now();
        let m = rx.recv().ok();
        self.slept(asleep.elapsed());
        m
    }

    /// Notes a sleep that ended after `slept`: one shorter than [`SPIN`]
    /// would have been saved by looking, so the next look is whole again.
    pub(crate) fn slept(&mut self, slept: Duration) {
        if slept < SPIN {
            self.budget = SPIN;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looking_shrinks_while_it_finds_nothing_and_grows_back() {
        let mut s = Spin::default();
        assert_eq!(s.look(|| Some(1)), Some(1));
        assert_eq!(s.budget, SPIN);
        let mut looks = 0;
        while s.budget > Duration::ZERO {
            assert_eq!(s.look(|| None::<()>), None);
            looks += 1;
            assert!(looks < 10, "the looking time reaches zero");
        }
        let start = Instant::now();
        assert_eq!(s.look(|| None::<()>), None);
        assert!(start.elapsed() < SPIN, "no looking at zero");
        s.slept(Duration::from_secs(1));
        assert_eq!(s.budget, Duration::ZERO, "a long sleep keeps it at zero");
        s.slept(Duration::from_micros(10));
        assert_eq!(s.budget, SPIN, "a short sleep restores it");
    }

    #[test]
    fn recv_takes_what_was_sent_and_ends_when_the_senders_are_gone() {
        let (tx, rx) = mpsc::channel();
        let mut s = Spin::default();
        tx.send(1).unwrap();
        assert_eq!(s.recv(&rx), Some(1));
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(2).unwrap();
        });
        assert_eq!(s.recv(&rx), Some(2), "waited for past the looking time");
        late.join().unwrap();
        assert_eq!(s.recv(&rx), None);
    }
}
