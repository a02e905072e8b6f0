//! The retry loop around single attempts: exponential backoff with jitter (backon), bounded
//! by `max_attempts` and `max_elapsed`, honouring `Retry-After`, in process for at most
//! `retry_window`, then parked for the durable retry queue.
//!
//! The loop knows the path to the webhook only through [`Endpoint`] (a slot, the circuit, one
//! attempt, a report), and keeps its arithmetic in [`Budget`], so both are tested here
//! without a network.

use super::attempt::Attempt;
use super::breaker::Admission;
use super::classify::Verdict;
use super::error::{AttemptError, LineCounts};
use crate::config::DeliverySettings;
use crate::pipeline::outcome::{Failure, Outcome, Parked, Reason, RetryState};
use backon::BackoffBuilder;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// Shortest wait for a concurrency slot, and shortest park delay.
const MIN_SLOT_WAIT: Duration = Duration::from_millis(10);

/// Why a delivery parks without an attempt when no slot came in time.
const NO_SLOT: &str = "no free slot under delivery.concurrency or rate_limit within \
                       retry_window: the endpoint is slow or rate limited";
/// Why a delivery parks without an attempt when the circuit is open.
const CIRCUIT_OPEN: &str = "circuit open: the endpoint failed repeatedly; waiting for a probe";
/// Why a delivery gives up when the circuit stayed open past `max_elapsed`.
const CIRCUIT_OUTLASTED: &str = "circuit open until max_elapsed ran out: the endpoint kept failing";

/// What the retry loop needs from the path to one webhook. The deliverer provides it over the
/// shared client; the tests below script it.
pub(super) trait Endpoint {
    /// A place under the webhook's concurrency limit (and its turn under the rate limit),
    /// held while an attempt runs.
    type Slot: Send;
    /// Waits for a slot for at most `wait`; `None` when none comes in time (a rate-limit turn
    /// that would come later is refused at once, without being reserved).
    fn slot(&self, wait: Duration) -> impl Future<Output = Option<Self::Slot>> + Send;
    /// Asks the webhook's circuit whether an attempt may go now.
    fn admit(&self) -> Admission;
    /// Makes attempt `number` in `slot`; the slot is free again when it returns.
    fn attempt(&self, number: u32, slot: Self::Slot) -> impl Future<Output = Attempt> + Send;
    /// Reports a finished attempt (its log line, the circuit).
    fn record(&self, attempt: &Attempt);
}

/// How a delivery finished: the outcome `settle` joins, and, in its typed form, the error of
/// the attempt that decided it.
#[derive(Debug, Clone)]
pub struct Finished {
    /// How the delivery ended.
    pub outcome: Outcome,
    /// The error of the attempt that decided the outcome; `None` when that attempt succeeded
    /// or when no attempt decided it (no slot in time, open circuit).
    pub last_error: Option<AttemptError>,
}

impl Finished {
    /// Logz.io's line counts, when the deciding attempt was a 400 answer that carried them.
    pub fn line_counts(&self) -> Option<LineCounts> {
        self.last_error.as_ref().and_then(AttemptError::line_counts)
    }

    fn without_attempt(outcome: Outcome) -> Self {
        Finished {
            outcome,
            last_error: None,
        }
    }

    fn after(outcome: Outcome, attempt: Attempt) -> Self {
        Finished {
            outcome,
            last_error: attempt.error,
        }
    }
}

/// Delivers with in-process retries for up to `retry_window`, then parks the delivery for
/// the durable retry queue. Gives up (dead letter) when `max_attempts` or `max_elapsed`,
/// counted across the retry queue's round trips through `prior`, runs out. A backoff sleep
/// that `cancel` interrupts also parks the delivery, so shutdown never sends the event to its
/// other webhooks again.
pub(super) async fn deliver(
    endpoint: &impl Endpoint,
    settings: DeliverySettings,
    prior: Option<RetryState>,
    cancel: &CancellationToken,
) -> Finished {
    let mut budget = Budget::new(settings, prior);
    loop {
        // The slot first, then the circuit: a delivery that waited behind the webhook's
        // concurrency limit must see the circuit as it is when its turn comes, not as it was
        // before the deliveries ahead of it failed.
        let Some(slot) = wait_for_slot(endpoint, budget.slot_wait(), cancel).await else {
            return Finished::without_attempt(budget.no_slot());
        };
        if let Admission::Rejected { retry_in } = endpoint.admit() {
            drop(slot);
            return Finished::without_attempt(budget.circuit_open(retry_in));
        }
        let attempt = endpoint.attempt(budget.start_attempt(), slot).await;
        endpoint.record(&attempt);
        let (delay, parked) = match budget.after(&attempt) {
            Next::Done(outcome) => return Finished::after(outcome, attempt),
            Next::Retry { delay, parked } => (delay, parked),
        };
        if budget.window_ends_within(delay) || cancelled_during(delay, cancel).await {
            return Finished::after(Outcome::Park(parked), attempt);
        }
    }
}

/// A slot, or `None` when none came within `wait` or `cancel` fired first.
async fn wait_for_slot<E: Endpoint>(
    endpoint: &E,
    wait: Duration,
    cancel: &CancellationToken,
) -> Option<E::Slot> {
    tokio::select! {
        slot = tokio::time::timeout(wait, endpoint.slot(wait)) => slot.ok().flatten(),
        _ = cancel.cancelled() => None,
    }
}

/// Sleeps for `delay`; `true` when `cancel` fired first.
async fn cancelled_during(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = cancel.cancelled() => true,
    }
}

/// What comes after an attempt.
#[derive(Debug)]
enum Next {
    /// The delivery is over.
    Done(Outcome),
    /// Try again after `delay`, or park as `parked` when that cannot happen in process.
    Retry { delay: Duration, parked: Parked },
}

/// One delivery's retry budget: attempts made, when the first failed, the backoff schedule
/// and the in-process window. Every decision of the loop is made here.
struct Budget {
    settings: DeliverySettings,
    window_started: Instant,
    attempts: u32,
    first_failure: Option<SystemTime>,
    schedule: Backoff,
}

impl Budget {
    /// The budget of a delivery that made `prior` attempts before (through the retry queue).
    fn new(settings: DeliverySettings, prior: Option<RetryState>) -> Self {
        let (attempts, first_failure) = match prior {
            // Clamped again here: `prior` may come from any caller, and one schedule step is
            // skipped per prior attempt.
            Some(prior) => (
                prior.attempts.min(settings.max_attempts.saturating_sub(1)),
                Some(prior.first_failure),
            ),
            None => (0, None),
        };
        // Attempt k's failure waits the schedule's k-th delay: skip those already used.
        let mut schedule = Backoff::new(&settings);
        for _ in 0..attempts {
            schedule.next();
        }
        Budget {
            settings,
            window_started: Instant::now(),
            attempts,
            first_failure,
            schedule,
        }
    }

    /// How long to wait for a slot. Waiting counts against the retry window too: a slow
    /// endpoint must not hold the input event longer than an attempt that fails would.
    fn slot_wait(&self) -> Duration {
        self.settings
            .retry_window
            .saturating_sub(self.window_started.elapsed())
            .max(MIN_SLOT_WAIT)
    }

    /// Whether a wait of `delay` would end after the in-process window.
    fn window_ends_within(&self, delay: Duration) -> bool {
        self.window_started.elapsed() + delay > self.settings.retry_window
    }

    /// Where the delivery stands, its first failure being now if it has not failed yet.
    fn state(&self) -> RetryState {
        RetryState {
            attempts: self.attempts,
            first_failure: self.first_failure.unwrap_or_else(SystemTime::now),
        }
    }

    /// No slot came in time (or shutdown came first): park without an attempt.
    fn no_slot(&self) -> Outcome {
        Outcome::Park(Parked::new(
            self.state(),
            self.settings.initial_backoff,
            NO_SLOT,
        ))
    }

    /// The circuit refused an attempt and opens again in `retry_in`: park until then, or give
    /// up when `max_elapsed` has run out. Only the delivery's own failing time counts: an open
    /// circuit says the endpoint is down, not that this delivery has used up its budget.
    fn circuit_open(&self, retry_in: Duration) -> Outcome {
        let state = self.state();
        match self
            .settings
            .max_elapsed
            .checked_sub(since(state.first_failure))
        {
            None => Outcome::DeadLetter(
                Failure::new(Reason::DeliveryFailed, CIRCUIT_OUTLASTED)
                    .with_attempts(self.attempts),
            ),
            Some(left) => Outcome::Park(Parked::new(
                state,
                retry_in.min(left).max(MIN_SLOT_WAIT),
                CIRCUIT_OPEN,
            )),
        }
    }

    /// Counts a new attempt; returns its number.
    fn start_attempt(&mut self) -> u32 {
        self.attempts = self.attempts.saturating_add(1);
        self.attempts
    }

    /// What `attempt`'s verdict leaves: an outcome, or a retry after the next delay (the
    /// server's `Retry-After` wins, capped) while attempts and `max_elapsed` allow one.
    fn after(&mut self, attempt: &Attempt) -> Next {
        let retry_after = match attempt.verdict {
            Verdict::Success => {
                return Next::Done(Outcome::Delivered {
                    attempts: self.attempts,
                    status: attempt.status().unwrap_or(0),
                });
            }
            Verdict::Permanent => return Next::Done(give_up(Reason::Rejected, attempt)),
            Verdict::Retry { retry_after } => retry_after,
        };
        let first_failure = *self.first_failure.get_or_insert_with(SystemTime::now);
        let Some(scheduled) = self.schedule.next() else {
            return Next::Done(give_up(Reason::DeliveryFailed, attempt));
        };
        if self.attempts >= self.settings.max_attempts {
            return Next::Done(give_up(Reason::DeliveryFailed, attempt));
        }
        let delay = next_delay(scheduled, retry_after, self.settings.max_backoff);
        if since(first_failure) + delay >= self.settings.max_elapsed {
            return Next::Done(give_up(Reason::DeliveryFailed, attempt));
        }
        let state = RetryState {
            attempts: self.attempts,
            first_failure,
        };
        Next::Retry {
            delay,
            parked: Parked::new(state, delay, attempt.error_text()).with_status(attempt.status()),
        }
    }
}

/// The dead letter for `attempt`, the last one: `response_rejected` whenever the validators
/// refused its answer, otherwise `reason`.
fn give_up(reason: Reason, attempt: &Attempt) -> Outcome {
    let reason = match &attempt.error {
        Some(error) if error.is_response_rejected() => Reason::ResponseRejected,
        _ => reason,
    };
    Outcome::DeadLetter(
        Failure::new(reason, attempt.error_text())
            .with_attempts(attempt.number)
            .with_status(attempt.status()),
    )
}

/// Time since `then`; zero when the clock went back.
fn since(then: SystemTime) -> Duration {
    SystemTime::now().duration_since(then).unwrap_or_default()
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::delivery::attempt::ResponseInfo;
    use crate::redact::Redactor;
    use std::collections::VecDeque;
    use std::sync::Mutex;

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

    /// An endpoint that answers with the statuses it was given, in turn.
    struct Scripted {
        statuses: Mutex<VecDeque<u16>>,
        admission: Admission,
        slot_free: bool,
        recorded: Mutex<Vec<u32>>,
    }

    impl Scripted {
        fn new(statuses: &[u16]) -> Self {
            Scripted {
                statuses: Mutex::new(statuses.iter().copied().collect()),
                admission: Admission::Allowed,
                slot_free: true,
                recorded: Mutex::new(Vec::new()),
            }
        }

        fn recorded(&self) -> Vec<u32> {
            self.recorded.lock().unwrap().clone()
        }
    }

    impl Endpoint for Scripted {
        type Slot = ();

        async fn slot(&self, _wait: Duration) -> Option<()> {
            if !self.slot_free {
                std::future::pending::<()>().await;
            }
            Some(())
        }

        fn admit(&self) -> Admission {
            self.admission
        }

        async fn attempt(&self, number: u32, _slot: ()) -> Attempt {
            let status = self.statuses.lock().unwrap().pop_front().unwrap_or(503);
            let response = ResponseInfo {
                status,
                headers: Vec::new(),
                body: String::new(),
                truncated: false,
            };
            Attempt::new(number, Duration::ZERO, Ok(response), &Redactor::default())
        }

        fn record(&self, attempt: &Attempt) {
            self.recorded.lock().unwrap().push(attempt.number);
        }
    }

    fn quick(max_attempts: u32) -> DeliverySettings {
        DeliverySettings {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            ..DeliverySettings::default()
        }
    }

    /// Settings without an in-process window: the first retry parks.
    fn windowless() -> DeliverySettings {
        DeliverySettings {
            retry_window: Duration::ZERO,
            ..quick(5)
        }
    }

    fn parked(finished: &Finished) -> &Parked {
        match &finished.outcome {
            Outcome::Park(parked) => parked,
            other => panic!("not parked: {other:?}"),
        }
    }

    async fn run(
        endpoint: &Scripted,
        settings: DeliverySettings,
        prior: Option<RetryState>,
    ) -> Finished {
        deliver(endpoint, settings, prior, &CancellationToken::new()).await
    }

    #[tokio::test]
    async fn retryable_failures_are_retried_until_success() {
        let endpoint = Scripted::new(&[503, 429, 200]);
        let finished = run(&endpoint, quick(5), None).await;
        assert_eq!(
            finished.outcome,
            Outcome::Delivered {
                attempts: 3,
                status: 200
            }
        );
        assert!(finished.last_error.is_none());
        assert_eq!(endpoint.recorded(), [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_permanent_answer_is_rejected_at_once_with_its_typed_error() {
        let endpoint = Scripted::new(&[400]);
        let finished = run(&endpoint, quick(5), None).await;
        assert_eq!(
            finished.outcome,
            Outcome::DeadLetter(
                Failure::new(Reason::Rejected, "http 400 Bad Request")
                    .with_attempts(1)
                    .with_status(Some(400))
            )
        );
        assert_eq!(
            finished
                .last_error
                .as_ref()
                .and_then(AttemptError::status_code),
            Some(400)
        );
        assert_eq!(finished.line_counts(), None, "the body holds no counts");
    }

    #[tokio::test]
    async fn retries_run_out_at_max_attempts() {
        let endpoint = Scripted::new(&[]);
        let finished = run(&endpoint, quick(3), None).await;
        assert_eq!(
            finished.outcome,
            Outcome::DeadLetter(
                Failure::new(Reason::DeliveryFailed, "http 503 Service Unavailable")
                    .with_attempts(3)
                    .with_status(Some(503))
            )
        );
        assert_eq!(endpoint.recorded(), [1, 2, 3]);
    }

    #[tokio::test]
    async fn prior_attempts_count_and_are_clamped() {
        let endpoint = Scripted::new(&[]);
        let prior = RetryState {
            attempts: 10,
            first_failure: SystemTime::now(),
        };
        let finished = run(&endpoint, quick(3), Some(prior)).await;
        assert!(matches!(
            finished.outcome,
            Outcome::DeadLetter(Failure {
                reason: Reason::DeliveryFailed,
                attempts: 3,
                ..
            })
        ));
        assert_eq!(endpoint.recorded(), [3], "one attempt left of three");
    }

    #[tokio::test]
    async fn a_failure_past_the_window_parks_with_its_status() {
        let endpoint = Scripted::new(&[503]);
        let finished = run(&endpoint, windowless(), None).await;
        let parked = parked(&finished);
        assert_eq!(parked.state.attempts, 1);
        assert_eq!(parked.last_status, Some(503));
        assert_eq!(parked.last_error, "http 503 Service Unavailable");
        assert!(parked.next_delay >= Duration::from_millis(1));
        assert!(finished.last_error.is_some());
    }

    #[tokio::test]
    async fn an_open_circuit_parks_without_an_attempt_until_max_elapsed() {
        let mut endpoint = Scripted::new(&[200]);
        endpoint.admission = Admission::Rejected {
            retry_in: Duration::from_secs(5),
        };
        let finished = run(&endpoint, quick(5), None).await;
        let parked = parked(&finished);
        assert_eq!(parked.state.attempts, 0);
        assert_eq!(parked.next_delay, Duration::from_secs(5));
        assert_eq!(parked.last_error, CIRCUIT_OPEN);
        assert!(finished.last_error.is_none());

        let long_ago = RetryState {
            attempts: 2,
            first_failure: SystemTime::now() - Duration::from_secs(24 * 3600),
        };
        let settings = DeliverySettings {
            max_elapsed: Duration::from_secs(60),
            ..quick(5)
        };
        let finished = run(&endpoint, settings, Some(long_ago)).await;
        assert_eq!(
            finished.outcome,
            Outcome::DeadLetter(
                Failure::new(Reason::DeliveryFailed, CIRCUIT_OUTLASTED).with_attempts(2)
            )
        );
        assert!(endpoint.recorded().is_empty());
    }

    #[tokio::test]
    async fn no_slot_within_the_window_parks_without_an_attempt() {
        let mut endpoint = Scripted::new(&[200]);
        endpoint.slot_free = false;
        let finished = run(&endpoint, windowless(), None).await;
        let parked = parked(&finished);
        assert_eq!(parked.state.attempts, 0);
        assert_eq!(parked.next_delay, windowless().initial_backoff);
        assert_eq!(
            (parked.last_status, parked.last_error.as_str()),
            (None, NO_SLOT)
        );
        assert!(endpoint.recorded().is_empty());
    }
}
