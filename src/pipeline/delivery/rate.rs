//! Per-webhook rate limit: GCRA with a burst of one. Requests leave at least one interval
//! apart, the interval being the period divided by the count, plus [`JITTER_MARGIN`]: so no
//! one-second window ever holds more than the limit at the sender, and network jitter up to
//! the margin cannot push the endpoint's own count over it. A turn is reserved only when it
//! comes before the caller's deadline, so a delivery that would wait past its retry window
//! parks instead of holding its input message.

use crate::config::RateLimit;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// How much slower than the limit the limiter runs, as a share of the interval: 5%, so that
/// N requests span 1.05 s instead of 1 s and arrivals up to 50 ms late still fit.
pub const JITTER_MARGIN: f64 = 0.05;

/// One webhook's limiter: when the next request may leave.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    interval: Duration,
    /// The theoretical time of the next turn (GCRA's TAT).
    next: Mutex<Instant>,
}

impl RateLimiter {
    /// A limiter for `limit`, with its first turn free at once.
    pub fn new(limit: RateLimit) -> Self {
        let interval = limit
            .per
            .div_f64(f64::from(limit.count))
            .mul_f64(1.0 + JITTER_MARGIN);
        RateLimiter {
            limit,
            interval,
            next: Mutex::new(Instant::now()),
        }
    }

    /// The limit it enforces.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// The time between two turns.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Reserves the next turn if it comes no later than `deadline`; returns its time.
    fn reserve(&self, deadline: Instant) -> Option<Instant> {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let at = (*next).max(Instant::now());
        if at > deadline {
            return None;
        }
        *next = at + self.interval;
        Some(at)
    }

    /// Waits for a turn no later than `deadline`; `false` at once when none is free by then.
    pub async fn turn(&self, deadline: Instant) -> bool {
        match self.reserve(deadline) {
            Some(at) => {
                tokio::time::sleep_until(at).await;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(text: &str) -> RateLimiter {
        RateLimiter::new(RateLimit::parse(text).unwrap())
    }

    /// Most turns inside any half-open window of `window` starting at a turn.
    fn max_in_window(turns: &[Instant], window: Duration) -> usize {
        turns
            .iter()
            .map(|start| {
                turns
                    .iter()
                    .filter(|t| **t >= *start && **t < *start + window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn no_second_holds_more_than_the_limit_even_from_a_full_start() {
        let limiter = limiter("10/s");
        let far = Instant::now() + Duration::from_secs(3600);
        let mut turns = Vec::new();
        for _ in 0..35 {
            assert!(limiter.turn(far).await);
            turns.push(Instant::now());
        }
        assert_eq!(max_in_window(&turns, Duration::from_secs(1)), 10);
        // The spacing leaves the margin for jitter: 10 turns span more than a second.
        assert!(turns[10] - turns[0] >= Duration::from_millis(1050));
    }

    #[tokio::test(start_paused = true)]
    async fn per_minute_limits_hold_per_second_too() {
        let limiter = limiter("600/m");
        let far = Instant::now() + Duration::from_secs(3600);
        let mut turns = Vec::new();
        for _ in 0..40 {
            assert!(limiter.turn(far).await);
            turns.push(Instant::now());
        }
        assert!(max_in_window(&turns, Duration::from_secs(1)) <= 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_past_the_deadline_is_refused_and_not_reserved() {
        let limiter = limiter("1/s");
        let soon = Instant::now() + Duration::from_millis(500);
        assert!(limiter.turn(soon).await, "the first turn is free");
        assert!(!limiter.turn(soon).await, "the next is 1.05 s away");
        assert!(!limiter.turn(Instant::now()).await);
        // Nothing was reserved by the refusals: the next turn is still one interval on.
        let later = Instant::now() + Duration::from_secs(2);
        let before = Instant::now();
        assert!(limiter.turn(later).await);
        assert_eq!(Instant::now() - before, limiter.interval());
    }
}
