//! The values one delivery ends with. `settle` joins them per input message and decides the
//! message's fate; nothing else does.

use std::fmt;
use std::time::{Duration, SystemTime};

/// Why a delivery became a dead letter; sent as the `x-relay-reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Retryable failures until `max_attempts` or `max_elapsed` ran out.
    DeliveryFailed,
    /// The endpoint answered with a permanent status (4xx other than 408/429, or a redirect).
    Rejected,
    /// The template failed (strict mode, or a JSON body that does not parse).
    RenderFailed,
    /// The message is not an access-request event (not JSON, no or unknown `event_type`).
    InvalidEvent,
    /// The broker redelivered the message more than `amqp.redelivery_limit` times without it
    /// being settled (a poison message that crashes or stalls the worker).
    RedeliveryLimit,
    /// The message is larger than `amqp.max_message_bytes`; dead-lettered without parsing.
    TooLarge,
    /// The endpoint answered 2xx, but its body failed the webhook's response validators (not
    /// JSON, or a value missing or not among the expected ones).
    ResponseRejected,
}

impl Reason {
    /// Every reason, for parsing and listing.
    pub const ALL: [Reason; 7] = [
        Reason::DeliveryFailed,
        Reason::Rejected,
        Reason::RenderFailed,
        Reason::InvalidEvent,
        Reason::RedeliveryLimit,
        Reason::TooLarge,
        Reason::ResponseRejected,
    ];

    /// The header value, e.g. `delivery_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DeliveryFailed => "delivery_failed",
            Reason::Rejected => "rejected",
            Reason::RenderFailed => "render_failed",
            Reason::InvalidEvent => "invalid_event",
            Reason::RedeliveryLimit => "redelivery_limit",
            Reason::TooLarge => "too_large",
            Reason::ResponseRejected => "response_rejected",
        }
    }

    /// Parses a header value.
    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A final failure of one (event, webhook): what its dead letter says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why it failed.
    pub reason: Reason,
    /// Attempts made (0 when it never reached the network).
    pub attempts: u32,
    /// Last HTTP status received, if any.
    pub last_status: Option<u16>,
    /// Last error, already redacted: it goes into a header and the logs.
    pub last_error: String,
}

impl Failure {
    /// A failure for `reason` with its error text (already redacted), before any attempt and
    /// without a status: add them with [`Failure::with_attempts`] and [`Failure::with_status`].
    pub fn new(reason: Reason, last_error: impl Into<String>) -> Self {
        Failure {
            reason,
            attempts: 0,
            last_status: None,
            last_error: last_error.into(),
        }
    }

    /// The same failure after `attempts` attempts in all.
    pub fn with_attempts(self, attempts: u32) -> Self {
        Failure { attempts, ..self }
    }

    /// The same failure with the last HTTP status received, if any.
    pub fn with_status(self, last_status: Option<u16>) -> Self {
        Failure {
            last_status,
            ..self
        }
    }

    /// The same failure with another error text (already redacted).
    pub fn with_error(self, last_error: impl Into<String>) -> Self {
        Failure {
            last_error: last_error.into(),
            ..self
        }
    }
}

/// Where one (event, webhook) stands in its retry budget. It travels in the headers of the
/// webhook's retry queue, so the budget holds across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryState {
    /// Attempts made so far.
    pub attempts: u32,
    /// When the first attempt failed; `max_elapsed` counts from here.
    pub first_failure: SystemTime,
}

/// A delivery that is still failing after its in-process retry window (or whose webhook's
/// circuit is open): it moves to the webhook's durable retry queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// Attempts made so far, and when the first failed.
    pub state: RetryState,
    /// How long to wait before the next attempt.
    pub next_delay: Duration,
    /// The last HTTP status, if any.
    pub last_status: Option<u16>,
    /// The last error, redacted.
    pub last_error: String,
}

impl Parked {
    /// A delivery parked at `state`, to be tried again after `next_delay`, with the last error
    /// text (already redacted) and no status: add one with [`Parked::with_status`].
    pub fn new(state: RetryState, next_delay: Duration, last_error: impl Into<String>) -> Self {
        Parked {
            state,
            next_delay,
            last_status: None,
            last_error: last_error.into(),
        }
    }

    /// The same park with the last HTTP status received, if any.
    pub fn with_status(self, last_status: Option<u16>) -> Self {
        Parked {
            last_status,
            ..self
        }
    }

    /// The dead letter this park becomes when nothing will retry it (its budget ran out, or a
    /// replay does not park): `delivery_failed`, with its attempts, status and error.
    pub fn into_failure(self) -> Failure {
        Failure::new(Reason::DeliveryFailed, self.last_error)
            .with_attempts(self.state.attempts)
            .with_status(self.last_status)
    }
}

/// How the delivery of one (event, webhook) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint accepted it (2xx). Final.
    Delivered {
        /// Attempts it took.
        attempts: u32,
        /// The accepting status.
        status: u16,
    },
    /// It failed for good and needs a dead letter. Final once the dead letter is confirmed.
    DeadLetter(Failure),
    /// It must be retried later from the webhook's retry queue. Final once that publish is
    /// confirmed.
    Park(Parked),
}

impl Outcome {
    /// A short label for logs: `delivered`, `dead_letter:<reason>` or `parked`.
    pub fn label(&self) -> String {
        match self {
            Outcome::Delivered { .. } => "delivered".into(),
            Outcome::DeadLetter(f) => format!("dead_letter:{}", f.reason),
            Outcome::Park(_) => "parked".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_starts_before_any_attempt_without_a_status() {
        let failure = Failure::new(Reason::InvalidEvent, "not JSON");
        assert_eq!(
            failure,
            Failure {
                reason: Reason::InvalidEvent,
                attempts: 0,
                last_status: None,
                last_error: "not JSON".into(),
            }
        );
        let failure = failure
            .with_attempts(3)
            .with_status(Some(503))
            .with_error("http 503 Service Unavailable");
        assert_eq!(
            failure,
            Failure {
                reason: Reason::InvalidEvent,
                attempts: 3,
                last_status: Some(503),
                last_error: "http 503 Service Unavailable".into(),
            }
        );
    }

    #[test]
    fn a_park_given_up_is_a_delivery_failure_with_its_attempts() {
        let state = RetryState {
            attempts: 4,
            first_failure: SystemTime::UNIX_EPOCH,
        };
        let parked = Parked::new(state, Duration::from_secs(2), "http 502").with_status(Some(502));
        assert_eq!(
            parked,
            Parked {
                state,
                next_delay: Duration::from_secs(2),
                last_status: Some(502),
                last_error: "http 502".into(),
            }
        );
        assert_eq!(
            parked.into_failure(),
            Failure::new(Reason::DeliveryFailed, "http 502")
                .with_attempts(4)
                .with_status(Some(502))
        );
    }
}
