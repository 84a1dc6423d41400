//! Back-off between retries, as kubelet's: 10 s doubling to 5 min, measured from the failure
//! (a container's exit, a failed pull).

use std::time::{Duration, SystemTime};

const INITIAL: Duration = Duration::from_secs(10);
const MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before failing starts its back-off afresh.
pub const RESET_AFTER_RUNNING: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Default)]
pub struct Backoff {
    steps: u32,
}

impl Backoff {
    /// The wait after a failure: none before the first step, then 10 s, 20 s ... 5 min.
    pub fn delay(&self) -> Duration {
        match self.steps {
            0 => Duration::ZERO,
            n => INITIAL.checked_mul(1 << (n - 1).min(16)).unwrap_or(MAX).min(MAX),
        }
    }

    /// One more failure: the next wait doubles.
    pub fn step(&mut self) {
        self.steps = self.steps.saturating_add(1);
    }

    pub fn reset(&mut self) {
        self.steps = 0;
    }

    /// When a retry after a failure at `failed_at` may run.
    pub fn retry_at(&self, failed_at: SystemTime) -> SystemTime {
        failed_at + self.delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_at_zero_then_double_from_ten_seconds_to_five_minutes() {
        let mut backoff = Backoff::default();
        let mut delays = Vec::new();
        for _ in 0..9 {
            delays.push(backoff.delay().as_secs());
            backoff.step();
        }
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300, 300]);
        let failed = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(backoff.retry_at(failed), failed + Duration::from_secs(300));
        backoff.reset();
        assert_eq!(backoff.retry_at(failed), failed);
    }
}
