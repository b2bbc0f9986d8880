//! Waiting between attempts: the one backoff every retry uses (the broker session, Redis, a
//! store call, a confirmation), each wait cut short when the worker stops.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Delays that double from `first` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// A dependency that went away (down, restarting, failing over): it may be back any moment.
    pub const fn outage() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// A dependency that refused us (credentials, permissions, certificates): someone has to
    /// act, so retrying often is only noise.
    pub const fn refusal() -> Backoff {
        Backoff::new(Duration::from_secs(2), Duration::from_secs(30))
    }

    /// The delay to wait now; the next one doubles.
    pub fn delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// The next delay, without moving on.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// The attempt succeeded: the next failure starts from the first delay again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Waits `delay`, unless the worker stops first. False when it stopped.
    pub async fn wait(delay: Duration, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Waits the next delay, unless the worker stops first. False when it stopped.
    pub async fn sleep(&mut self, shutdown: &CancellationToken) -> bool {
        Backoff::wait(self.delay(), shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_longest_and_start_again_after_a_success() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| backoff.delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.delay(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_worker_stops() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut backoff = Backoff::refusal();
        let started = std::time::Instant::now();
        assert!(!backoff.sleep(&shutdown).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
