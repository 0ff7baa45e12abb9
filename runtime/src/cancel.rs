//! Stopping cleanly on request: a [`Cancel`] is handed to what runs (apply, deploy, reconcile) by
//! whoever may want it stopped (the CLI's signal handler keeps a clone), instead of a process-wide
//! flag, so two deploys in one process (tests, a controller) stop independently.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A shared request to stop: cheap to clone, every clone sees [`Cancel::cancel`]. Work that gets
/// one starts nothing new once it is cancelled and lets what runs finish.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token nobody has cancelled yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks every holder to stop. Safe from a signal handler's thread; idempotent.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Waits `duration`, or less if cancelled meanwhile (checked every 50 ms); whether it was.
    pub fn sleep(&self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        while !self.is_cancelled() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clone_sees_a_cancel_and_sleeping_ends_early() {
        let cancel = Cancel::new();
        let held = cancel.clone();
        assert!(!held.is_cancelled());
        assert!(!cancel.sleep(Duration::from_millis(1)));
        let canceller = held.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            canceller.cancel();
        });
        let start = Instant::now();
        assert!(cancel.sleep(Duration::from_secs(30)));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(held.is_cancelled());
        thread.join().unwrap();
    }
}
