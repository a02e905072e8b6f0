//! What a broker operation can fail with. Every message is redacted: it never carries the
//! broker password or a secret from the config.
//!
//! Unlike the delivery errors, these keep lapin's error as scrubbed text rather than as a
//! `#[source]`: lapin's messages can quote the connection URL (password included), and a
//! source is printed unscrubbed by anything that walks the error chain. What was being done
//! (`operation`, `target`) is kept as a field, so the error still reads context first.

use super::topology;

/// A broker operation that failed. Messages are redacted: they never carry the password.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The connection could not be opened.
    #[error("cannot connect to the broker at {url}: {message}")]
    Connect {
        /// The broker URL, password masked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A broker operation failed (declare, consume, publish, ack…).
    #[error("{operation}: {message}")]
    Operation {
        /// What was being done, e.g. `declare queue \`x\``.
        operation: String,
        /// What went wrong.
        message: String,
    },
    /// The broker refused a publish (`basic.nack`), or the channel failed before confirming.
    #[error("publish to {target}: {message}")]
    NotConfirmed {
        /// Exchange and routing key.
        target: String,
        /// Why.
        message: String,
    },
    /// The broker returned a mandatory publish: no queue is bound for it (e.g. the
    /// dead-letter queue was deleted).
    #[error("publish to {target}: unroutable ({reply}): no queue is bound for it")]
    Unroutable {
        /// Exchange and routing key.
        target: String,
        /// The broker's reply text.
        reply: String,
    },
    /// The channel the message came in on is gone; the broker will redeliver the message.
    #[error("{0}: the channel is closed; the broker will redeliver the message")]
    ChannelLost(&'static str),
    /// A queue exists with other arguments than the ones this version declares.
    #[error(transparent)]
    Inequivalent(#[from] topology::InequivalentQueue),
}
