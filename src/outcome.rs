//! The values one delivery ends with. `settle` joins them per input message and decides the
//! message's fate; nothing else does.

use std::fmt;

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
}

impl Reason {
    /// Every reason, for parsing and listing.
    pub const ALL: [Reason; 4] = [
        Reason::DeliveryFailed,
        Reason::Rejected,
        Reason::RenderFailed,
        Reason::InvalidEvent,
    ];

    /// The header value, e.g. `delivery_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DeliveryFailed => "delivery_failed",
            Reason::Rejected => "rejected",
            Reason::RenderFailed => "render_failed",
            Reason::InvalidEvent => "invalid_event",
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
    /// Shutdown came before it finished. Not final: the input message must go back to the
    /// broker so it is redelivered.
    Interrupted {
        /// Attempts made before stopping.
        attempts: u32,
    },
}

impl Outcome {
    /// A short label for logs: `delivered`, `dead_letter:<reason>` or `interrupted`.
    pub fn label(&self) -> String {
        match self {
            Outcome::Delivered { .. } => "delivered".into(),
            Outcome::DeadLetter(f) => format!("dead_letter:{}", f.reason),
            Outcome::Interrupted { .. } => "interrupted".into(),
        }
    }
}
