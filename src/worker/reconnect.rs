//! The reconnect schedule of the run loop.

use backon::BackoffBuilder;
use std::time::Duration;

/// The reconnect schedule: exponential with jitter from `amqp.reconnect_initial_backoff` to
/// `amqp.reconnect_max_backoff`. It starts over only after a connection stayed up for
/// `reconnect_max_backoff`: one that opens and dies at once keeps backing off.
pub(super) struct Reconnect {
    builder: backon::ExponentialBuilder,
    schedule: backon::ExponentialBackoff,
    max: Duration,
}

impl Reconnect {
    pub(super) fn new(initial: Duration, max: Duration) -> Reconnect {
        let builder = backon::ExponentialBuilder::default()
            .with_min_delay(initial)
            .with_max_delay(max)
            .with_jitter()
            .without_max_times();
        Reconnect {
            schedule: builder.build(),
            builder,
            max,
        }
    }

    /// The wait before the next try after a failed connect.
    pub(super) fn next_delay(&mut self) -> Duration {
        self.schedule.next().unwrap_or(self.max).min(self.max)
    }

    /// The wait before reconnecting after a connection that lasted `lasted` ended.
    pub(super) fn after_connection(&mut self, lasted: Duration) -> Duration {
        if lasted >= self.max {
            self.schedule = self.builder.build();
        }
        self.next_delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reconnect(initial_ms: u64, max_ms: u64) -> Reconnect {
        Reconnect::new(
            Duration::from_millis(initial_ms),
            Duration::from_millis(max_ms),
        )
    }

    #[test]
    fn a_connection_that_dies_at_once_keeps_backing_off() {
        let mut r = reconnect(100, 3_000);
        let delays: Vec<Duration> = (0..8)
            .map(|_| r.after_connection(Duration::from_millis(5)))
            .collect();
        assert!(delays[0] >= Duration::from_millis(100));
        assert!(
            delays[6] >= Duration::from_millis(3_000),
            "the schedule reached its cap: {delays:?}"
        );
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(3_000)));
    }

    #[test]
    fn the_backoff_starts_over_after_a_healthy_connection() {
        let mut r = reconnect(100, 3_000);
        for _ in 0..8 {
            r.next_delay();
        }
        let after_healthy = r.after_connection(Duration::from_secs(3));
        assert!(
            after_healthy < Duration::from_millis(300),
            "{after_healthy:?}"
        );
    }
}
