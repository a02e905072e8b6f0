//! The retry loop around single attempts: exponential backoff with jitter (backon), bounded
//! by `max_attempts` and `max_elapsed`, honouring `Retry-After`, in process for at most
//! `retry_window`, then parked for the durable retry queue.

use super::breaker::Admission;
use super::{Attempt, Deliverer, DeliveryRequest, Verdict};
use crate::config::DeliverySettings;
use crate::pipeline::outcome::{Failure, Outcome, Parked, Reason, RetryState};
use backon::BackoffBuilder;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// Shortest wait for a concurrency slot, and shortest park delay.
const MIN_SLOT_WAIT: Duration = Duration::from_millis(10);

/// The delays between attempts of one delivery: exponential from `initial_backoff`, with
/// jitter, each capped at `max_backoff`. A pure iterator, so the maths is unit-tested.
pub struct Backoff {
    inner: backon::ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    /// The schedule for these settings; yields `max_attempts - 1` delays.
    pub fn new(settings: &DeliverySettings) -> Self {
        let inner = backon::ExponentialBuilder::default()
            .with_min_delay(settings.initial_backoff)
            .with_max_delay(settings.max_backoff)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(settings.max_attempts.saturating_sub(1) as usize)
            .build();
        Backoff {
            inner,
            max: settings.max_backoff,
        }
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.inner.next().map(|d| d.min(self.max))
    }
}

/// The delay before the next attempt: the server's `Retry-After` when it gave one (capped at
/// `max_backoff`), otherwise the schedule's.
fn next_delay(scheduled: Duration, retry_after: Option<Duration>, max: Duration) -> Duration {
    match retry_after {
        Some(asked) => asked.min(max),
        None => scheduled,
    }
}

/// Delivers with in-process retries for up to `retry_window`, then parks the delivery for
/// the durable retry queue. Gives up (dead letter) when `max_attempts` or `max_elapsed`,
/// counted across the retry queue's round trips through `request.prior`, runs out. A
/// backoff sleep that `cancel` interrupts also parks the delivery, so shutdown never sends
/// the event to its other webhooks again.
pub(super) async fn deliver(
    deliverer: &Deliverer,
    request: &DeliveryRequest,
    settings: DeliverySettings,
    cancel: &CancellationToken,
) -> Outcome {
    let window_started = Instant::now();
    let (mut number, mut first_failure) = match request.prior {
        // Clamped again here: `prior` may come from any caller, and the loop below skips one
        // schedule step per prior attempt.
        Some(prior) => (
            prior.attempts.min(settings.max_attempts.saturating_sub(1)),
            Some(prior.first_failure),
        ),
        None => (0, None),
    };
    // Attempt k's failure waits the schedule's k-th delay: skip those already used.
    let mut schedule = Backoff::new(&settings);
    for _ in 0..number {
        schedule.next();
    }
    let breaker = deliverer.breaker(&request.webhook.name);
    loop {
        // The slot first, then the circuit: a delivery that waited behind the webhook's
        // concurrency limit must see the circuit as it is when its turn comes, not as it was
        // before the deliveries ahead of it failed.
        // Waiting for a slot counts against the retry window too: a slow endpoint must not
        // hold the input event longer than an attempt that fails would.
        let wait = settings
            .retry_window
            .saturating_sub(window_started.elapsed())
            .max(MIN_SLOT_WAIT);
        let slot = tokio::select! {
            slot = tokio::time::timeout(wait, deliverer.slot(&request.webhook.name)) => slot.ok(),
            _ = cancel.cancelled() => None,
        };
        let Some(slot) = slot else {
            let first = first_failure.unwrap_or_else(SystemTime::now);
            return Outcome::Park(Parked {
                state: RetryState {
                    attempts: number,
                    first_failure: first,
                },
                next_delay: settings.initial_backoff,
                last_status: None,
                last_error: "no free slot under delivery.concurrency within retry_window: the \
                             endpoint is slow"
                    .into(),
            });
        };
        if let Some(breaker) = breaker
            && let Admission::Rejected { retry_in } = breaker.admit()
        {
            drop(slot);
            let first = first_failure.unwrap_or_else(SystemTime::now);
            // Only the delivery's own failing time counts: an open circuit says the endpoint
            // is down, not that this delivery has used up its budget.
            let failing_for = SystemTime::now().duration_since(first).unwrap_or_default();
            let Some(left) = settings.max_elapsed.checked_sub(failing_for) else {
                return Outcome::DeadLetter(Failure {
                    reason: Reason::DeliveryFailed,
                    attempts: number,
                    last_status: None,
                    last_error: "circuit open until max_elapsed ran out: the endpoint kept failing"
                        .into(),
                });
            };
            return Outcome::Park(Parked {
                state: RetryState {
                    attempts: number,
                    first_failure: first,
                },
                next_delay: retry_in.min(left).max(MIN_SLOT_WAIT),
                last_status: None,
                last_error: "circuit open: the endpoint failed repeatedly; waiting for a probe"
                    .into(),
            });
        }
        number = number.saturating_add(1);
        let attempt = deliverer.send_in_slot(request, number).await;
        drop(slot);
        log_attempt(request, &attempt);
        let failed = matches!(attempt.verdict, Verdict::Retry { .. });
        if let Some(breaker) = breaker
            && let Some(state) = breaker.record(failed)
        {
            tracing::warn!(webhook = %request.webhook.name, circuit = %state, "circuit state changed");
            if let Some(m) = deliverer.webhook_metrics(&request.webhook.name) {
                m.circuit.set(state.as_gauge());
            }
        }
        let retry_after = match attempt.verdict {
            Verdict::Success => {
                return Outcome::Delivered {
                    attempts: number,
                    status: attempt.response.map_or(0, |r| r.status),
                };
            }
            Verdict::Permanent => return dead_letter(Reason::Rejected, &attempt),
            Verdict::Retry { retry_after } => retry_after,
        };
        let first = *first_failure.get_or_insert_with(SystemTime::now);
        let Some(scheduled) = schedule.next() else {
            return dead_letter(Reason::DeliveryFailed, &attempt);
        };
        if number >= settings.max_attempts {
            return dead_letter(Reason::DeliveryFailed, &attempt);
        }
        let delay = next_delay(scheduled, retry_after, settings.max_backoff);
        let failing_for = SystemTime::now().duration_since(first).unwrap_or_default();
        if failing_for + delay >= settings.max_elapsed {
            return dead_letter(Reason::DeliveryFailed, &attempt);
        }
        let park = || {
            Outcome::Park(Parked {
                state: RetryState {
                    attempts: number,
                    first_failure: first,
                },
                next_delay: delay,
                last_status: attempt.response.as_ref().map(|r| r.status),
                last_error: attempt.error.clone(),
            })
        };
        if window_started.elapsed() + delay > settings.retry_window {
            return park();
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return park(),
        }
    }
}

fn dead_letter(reason: Reason, attempt: &Attempt) -> Outcome {
    Outcome::DeadLetter(Failure {
        reason,
        attempts: attempt.number,
        last_status: attempt.response.as_ref().map(|r| r.status),
        last_error: attempt.error.clone(),
    })
}

fn log_attempt(request: &DeliveryRequest, attempt: &Attempt) {
    tracing::debug!(
        event_id = %request.event_id,
        webhook = %request.webhook.name,
        attempt = attempt.number,
        status = attempt.response.as_ref().map(|r| r.status),
        latency_ms = attempt.latency.as_millis() as u64,
        error = %attempt.error,
        "delivery attempt"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_attempts: u32) -> DeliverySettings {
        DeliverySettings {
            max_attempts,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..DeliverySettings::default()
        }
    }

    #[test]
    fn schedule_has_one_delay_fewer_than_attempts() {
        assert_eq!(Backoff::new(&settings(1)).count(), 0);
        assert_eq!(Backoff::new(&settings(5)).count(), 4);
    }

    #[test]
    fn schedule_grows_with_jitter_and_stays_under_the_cap() {
        for _ in 0..50 {
            let delays: Vec<Duration> = Backoff::new(&settings(8)).collect();
            // Jitter adds up to one more delay: the n-th lies in [100ms·2ⁿ, 2·100ms·2ⁿ].
            for (n, d) in delays.iter().enumerate() {
                let base = Duration::from_millis(100 * (1 << n)).min(Duration::from_secs(1));
                assert!(*d >= base, "delay {n} = {d:?} below {base:?}");
                assert!(
                    *d <= Duration::from_secs(1),
                    "delay {n} = {d:?} over the cap"
                );
            }
        }
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let max = Duration::from_secs(60);
        let s = Duration::from_millis(500);
        assert_eq!(next_delay(s, None, max), s);
        assert_eq!(
            next_delay(s, Some(Duration::from_secs(3)), max),
            Duration::from_secs(3)
        );
        assert_eq!(next_delay(s, Some(Duration::from_secs(3600)), max), max);
        assert_eq!(next_delay(s, Some(Duration::ZERO), max), Duration::ZERO);
    }
}
