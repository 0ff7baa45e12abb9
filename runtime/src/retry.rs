//! Retrying transient failures (an API server that is briefly unavailable, throttling, a dropped
//! connection) with exponential backoff, so one hiccup does not fail a deploy. What is transient is
//! the error's call ([`Transient`], decided where the error is made, from its kind): a refused
//! object or a chart that does not exist is never retried.

use std::future::Future;
use std::time::{Duration, SystemTime};

/// How often and how long to wait between attempts: `first`, then doubling up to `max`, each delay
/// jittered down by up to a half so that parallel actions do not retry in lockstep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first one included (at least 1).
    pub attempts: u32,
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// Five attempts over about 15 seconds at most.
    fn default() -> Backoff {
        Backoff { attempts: 5, first: Duration::from_millis(500), max: Duration::from_secs(8) }
    }
}

/// An error that knows whether trying again may help; [`Backoff::retry`] asks it.
pub trait Transient {
    /// Whether the same operation may succeed if tried again soon (a dropped connection,
    /// throttling), as opposed to failing the same way (a refused object, a missing chart).
    fn is_transient(&self) -> bool;
}

impl Backoff {
    /// No waiting between attempts (tests).
    pub fn immediate(attempts: u32) -> Backoff {
        Backoff { attempts, first: Duration::ZERO, max: Duration::ZERO }
    }

    /// The wait before attempt `n + 1` (`n` ≥ 1 attempts made).
    pub fn delay(&self, n: u32) -> Duration {
        let full = self.first.saturating_mul(2u32.saturating_pow(n.saturating_sub(1))).min(self.max);
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        // Between a half and all of the full delay.
        full / 2 + full / 2 * (nanos % 1000) / 1000
    }

    /// The wait before attempt `n + 1` without jitter: `first` doubled `n - 1` times, at most
    /// `max` (for a schedule that is shown to people).
    pub fn ceiling(&self, n: u32) -> Duration {
        self.first.saturating_mul(2u32.saturating_pow(n.saturating_sub(1))).min(self.max)
    }

    /// Runs `op` until it succeeds, fails for good (the error is not [`Transient`]), or the
    /// attempts are used up; returns the last result. `what` names the operation in the log.
    pub fn retry<T, E: std::fmt::Display + Transient>(
        &self,
        what: &str,
        op: impl FnMut() -> Result<T, E>,
    ) -> Result<T, E> {
        self.retry_if(what, E::is_transient, op)
    }

    /// [`Backoff::retry`] with the caller saying which errors to try again on (an error that is
    /// worth waiting out only in one place: a kind the API server does not know *yet*).
    pub fn retry_if<T, E: std::fmt::Display>(
        &self,
        what: &str,
        transient: impl Fn(&E) -> bool,
        mut op: impl FnMut() -> Result<T, E>,
    ) -> Result<T, E> {
        let mut n = 1;
        loop {
            match op() {
                Err(error) if n < self.attempts.max(1) && transient(&error) => {
                    let delay = self.delay(n);
                    tracing::warn!(%error, attempt = n, ?delay, "{what} failed (transient); retrying");
                    std::thread::sleep(delay);
                    n += 1;
                }
                result => return result,
            }
        }
    }

    /// [`Backoff::retry`] for async operations (the Kubernetes client).
    pub async fn retry_async<T, E: std::fmt::Display + Transient, F: Future<Output = Result<T, E>>>(
        &self,
        what: &str,
        op: impl FnMut() -> F,
    ) -> Result<T, E> {
        self.retry_async_if(what, E::is_transient, op).await
    }

    /// [`Backoff::retry_if`] for async operations.
    pub async fn retry_async_if<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
        &self,
        what: &str,
        transient: impl Fn(&E) -> bool,
        mut op: impl FnMut() -> F,
    ) -> Result<T, E> {
        let mut n = 1;
        loop {
            match op().await {
                Err(error) if n < self.attempts.max(1) && transient(&error) => {
                    let delay = self.delay(n);
                    tracing::warn!(%error, attempt = n, ?delay, "{what} failed (transient); retrying");
                    tokio::time::sleep(delay).await;
                    n += 1;
                }
                result => return result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_retried_until_the_attempts_run_out() {
        let mut calls = 0;
        let result: Result<(), String> = Backoff::immediate(3).retry_if(
            "x",
            |_| true,
            || {
                calls += 1;
                Err(format!("attempt {calls}"))
            },
        );
        assert_eq!(result, Err("attempt 3".to_string()));
        assert_eq!(calls, 3);
    }

    #[test]
    fn a_success_after_a_transient_error_is_returned() {
        let mut calls = 0;
        let result: Result<u32, String> = Backoff::immediate(5).retry_if(
            "x",
            |_| true,
            || {
                calls += 1;
                if calls < 2 { Err("busy".to_string()) } else { Ok(calls) }
            },
        );
        assert_eq!(result, Ok(2));
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let mut calls = 0;
        let result: Result<(), String> = Backoff::immediate(5).retry_if(
            "x",
            |e| e != "forbidden",
            || {
                calls += 1;
                Err("forbidden".to_string())
            },
        );
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn delays_double_up_to_the_maximum_with_jitter_below() {
        let backoff = Backoff { attempts: 10, first: Duration::from_millis(100), max: Duration::from_millis(400) };
        for (n, full) in [(1, 100), (2, 200), (3, 400), (6, 400)] {
            let delay = backoff.delay(n);
            assert!(delay <= Duration::from_millis(full) && delay >= Duration::from_millis(full / 2), "{n}: {delay:?}");
        }
    }

    #[test]
    fn async_operations_are_retried_too() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let mut calls = 0;
        let result: Result<u32, String> = runtime.block_on(Backoff::immediate(4).retry_async_if(
            "x",
            |_| true,
            || {
                calls += 1;
                let n = calls;
                async move { if n < 3 { Err("busy".to_string()) } else { Ok(n) } }
            },
        ));
        assert_eq!(result, Ok(3));
    }
}
