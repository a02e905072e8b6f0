//! Scripted answers: what a test queues to be answered instead of the normal behaviour.

use std::time::Duration;

/// A scripted answer, used for one request instead of the normal behaviour
/// (see [`LocalLogzio::push_response`]).
///
/// [`LocalLogzio::push_response`]: super::LocalLogzio::push_response
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scripted {
    /// The status to answer. One that is not a valid HTTP status (outside 100..=999) is sent
    /// as `500`.
    pub status: u16,
    /// Headers to send, for example `("Retry-After", "1")`. Invalid names or values are skipped.
    pub headers: Vec<(String, String)>,
    /// The body to send.
    pub body: String,
    /// How long to wait before answering, on top of
    /// [`LocalLogzio::set_delay`](super::LocalLogzio::set_delay).
    pub delay: Duration,
}

impl Scripted {
    /// An answer with `status`, no headers, an empty body and no delay.
    pub fn status(status: u16) -> Scripted {
        Scripted {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Scripted {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<String>) -> Scripted {
        self.body = body.into();
        self
    }

    /// Sets the delay before answering.
    pub fn with_delay(mut self, delay: Duration) -> Scripted {
        self.delay = delay;
        self
    }
}
