//! The per-webhook circuit breaker. After `circuit_failures` consecutive retryable failures
//! the circuit opens: new deliveries to that webhook go straight to its retry queue without an
//! attempt, so a dead endpoint costs no timeouts and holds no events. After
//! `circuit_cooldown` one probe is let through; its success closes the circuit, its failure
//! opens it again.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The circuit's state, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Deliveries are attempted.
    Closed,
    /// Deliveries are parked without an attempt.
    Open,
    /// One probe is allowed to find out whether the endpoint is back.
    HalfOpen,
}

impl CircuitState {
    /// The `relay_circuit_state` gauge value: 0 closed, 1 half-open, 2 open.
    pub fn as_gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        })
    }
}

/// Whether a delivery may make an attempt now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Allowed,
    /// Go ahead: this attempt is the probe; report its result.
    Probe,
    /// The circuit is open: park the delivery for this long.
    Rejected {
        /// Until the next probe may go.
        retry_in: Duration,
    },
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// One webhook's breaker. `threshold == 0` turns it off (always closed).
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold,
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update; the state is still a
        // valid value, so keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks to make an attempt.
    pub fn admit(&self) -> Admission {
        if self.threshold == 0 {
            return Admission::Allowed;
        }
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admission::Allowed,
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    Admission::Rejected {
                        retry_in: until - now,
                    }
                } else {
                    *state = State::HalfOpen { probing: true };
                    Admission::Probe
                }
            }
            State::HalfOpen { probing: true } => Admission::Rejected {
                retry_in: self.cooldown,
            },
            State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                Admission::Probe
            }
        }
    }

    /// Reports an attempt's result: `failed` for a retryable failure (the endpoint is down or
    /// overloaded); a success or a permanent refusal shows the endpoint is up. Returns the new
    /// state when it changed.
    pub fn record(&self, failed: bool) -> Option<CircuitState> {
        if self.threshold == 0 {
            return None;
        }
        let mut state = self.lock();
        let before = state_of(&state);
        *state = match (&*state, failed) {
            (_, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 >= self.threshold => State::Open {
                until: Instant::now() + self.cooldown,
            },
            (State::Closed { failures }, true) => State::Closed {
                failures: failures + 1,
            },
            (State::HalfOpen { .. }, true) | (State::Open { .. }, true) => State::Open {
                until: Instant::now() + self.cooldown,
            },
        };
        let after = state_of(&state);
        (after != before).then_some(after)
    }

    /// The current state.
    pub fn state(&self) -> CircuitState {
        if self.threshold == 0 {
            return CircuitState::Closed;
        }
        state_of(&self.lock())
    }
}

fn state_of(state: &State) -> CircuitState {
    match state {
        State::Closed { .. } => CircuitState::Closed,
        State::Open { .. } => CircuitState::Open,
        State::HalfOpen { .. } => CircuitState::HalfOpen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = Breaker::new(3, Duration::from_secs(60));
        assert_eq!(b.record(true), None);
        assert_eq!(b.record(false), None, "a success resets the count");
        assert_eq!(b.record(true), None);
        assert_eq!(b.record(true), None);
        assert_eq!(b.record(true), Some(CircuitState::Open));
        assert!(matches!(b.admit(), Admission::Rejected { .. }));
    }

    #[test]
    fn probe_after_cooldown_closes_or_reopens() {
        let b = Breaker::new(1, Duration::from_millis(20));
        b.record(true);
        assert!(matches!(b.admit(), Admission::Rejected { .. }));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.admit(), Admission::Probe);
        assert!(
            matches!(b.admit(), Admission::Rejected { .. }),
            "one probe at a time"
        );
        assert_eq!(b.record(true), Some(CircuitState::Open), "failed probe");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.admit(), Admission::Probe);
        assert_eq!(b.record(false), Some(CircuitState::Closed));
        assert_eq!(b.admit(), Admission::Allowed);
    }

    #[test]
    fn threshold_zero_is_off() {
        let b = Breaker::new(0, Duration::from_secs(1));
        for _ in 0..100 {
            b.record(true);
        }
        assert_eq!(b.admit(), Admission::Allowed);
        assert_eq!(b.state(), CircuitState::Closed);
    }
}
