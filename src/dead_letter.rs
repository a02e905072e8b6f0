//! Dead letters: what failed, for which webhook and why, carried as `x-relay-*` headers on a
//! copy of the original message. One dead letter per failed (event, webhook), so a replay can
//! target just that webhook.
//!
//! The body is the original event bytes, unchanged, and the original properties (message id,
//! content type, headers) are kept, so the event keeps its identity through a replay.

use crate::event::EventId;
use crate::outcome::{Failure, Parked, Reason, RetryState};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `delivery_failed`, `rejected`, `render_failed` or `invalid_event`.
pub const REASON: &str = "x-relay-reason";
/// The webhook the delivery was for; absent for `invalid_event`.
pub const WEBHOOK: &str = "x-relay-webhook";
/// Attempts made.
pub const ATTEMPTS: &str = "x-relay-attempts";
/// The last HTTP status, when one was received.
pub const LAST_STATUS: &str = "x-relay-last-status";
/// The last error, redacted.
pub const LAST_ERROR: &str = "x-relay-last-error";
/// The event identity, when the event decoded far enough to have one.
pub const EVENT_ID: &str = "x-relay-event-id";
/// When the failure became final, RFC 3339 UTC.
pub const FAILED_AT: &str = "x-relay-failed-at";
/// The routing key the event was published with.
pub const ROUTING_KEY: &str = "x-relay-routing-key";
/// On the retry path: when the first attempt failed, RFC 3339 UTC (for people).
pub const FIRST_FAILURE_AT: &str = "x-relay-first-failure-at";
/// On the retry path: when the first attempt failed, milliseconds since the epoch (exact).
pub const FIRST_FAILURE_MS: &str = "x-relay-first-failure-ms";
/// On the retry path: the delay asked for before the next attempt, in milliseconds.
pub const RETRY_DELAY_MS: &str = "x-relay-retry-delay-ms";

/// Longest `x-relay-last-error` kept; headers are not the place for a whole response body.
const LAST_ERROR_LIMIT: usize = 1024;

/// A dead letter ready to publish.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The webhook it is for; `None` for an event that matched nothing because it is invalid.
    pub webhook: Option<String>,
    /// The event identity, if known.
    pub event_id: Option<EventId>,
    /// What happened.
    pub failure: Failure,
    /// When it became final.
    pub failed_at: SystemTime,
}

impl DeadLetter {
    /// The properties to publish with: the original's, persistent, with the `x-relay-*`
    /// headers added to its own headers (replacing older `x-relay-*` from an earlier failure;
    /// the first-failure time of the retry path is kept).
    pub fn properties(&self, original: &BasicProperties, routing_key: &str) -> BasicProperties {
        let mut headers = RelayHeaders::from(original);
        headers.text(REASON, self.failure.reason.as_str());
        if let Some(webhook) = &self.webhook {
            headers.text(WEBHOOK, webhook);
        }
        headers.number(ATTEMPTS, i64::from(self.failure.attempts));
        if let Some(status) = self.failure.last_status {
            headers.number(LAST_STATUS, i64::from(status));
        }
        let error: String = self
            .failure
            .last_error
            .chars()
            .take(LAST_ERROR_LIMIT)
            .collect();
        headers.text(LAST_ERROR, &error);
        if let Some(id) = &self.event_id {
            headers.text(EVENT_ID, &id.0);
        }
        headers.text(
            FAILED_AT,
            &humantime::format_rfc3339_millis(self.failed_at).to_string(),
        );
        headers.text(ROUTING_KEY, routing_key);
        headers.into_properties(original)
    }
}

/// The properties of a delivery parked for a webhook's retry queue: the original's,
/// persistent, with the retry state in `x-relay-*` headers so that any worker, after any
/// restart, continues the same budget.
pub fn park_properties(
    original: &BasicProperties,
    webhook: &str,
    event_id: &EventId,
    parked: &Parked,
    routing_key: &str,
) -> BasicProperties {
    let mut headers = RelayHeaders::from(original);
    headers.text(WEBHOOK, webhook);
    headers.text(EVENT_ID, &event_id.0);
    headers.number(ATTEMPTS, i64::from(parked.state.attempts));
    let first = parked.state.first_failure;
    headers.text(
        FIRST_FAILURE_AT,
        &humantime::format_rfc3339_millis(first).to_string(),
    );
    let ms = first
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    headers.number(FIRST_FAILURE_MS, ms);
    headers.number(
        RETRY_DELAY_MS,
        i64::try_from(parked.next_delay.as_millis()).unwrap_or(i64::MAX),
    );
    if let Some(status) = parked.last_status {
        headers.number(LAST_STATUS, i64::from(status));
    }
    let error: String = parked.last_error.chars().take(LAST_ERROR_LIMIT).collect();
    headers.text(LAST_ERROR, &error);
    headers.text(ROUTING_KEY, routing_key);
    headers.into_properties(original)
}

/// The retry state a message on the retry path carries, if it carries one.
pub fn retry_state(properties: &BasicProperties) -> Option<RetryState> {
    let headers = properties.headers().as_ref()?;
    let attempts = u32::try_from(header_number(headers, ATTEMPTS)?).ok()?;
    let ms = u64::try_from(header_number(headers, FIRST_FAILURE_MS)?).ok()?;
    Some(RetryState {
        attempts,
        first_failure: UNIX_EPOCH + Duration::from_millis(ms),
    })
}

/// An original message's headers with the relay's own replaced.
struct RelayHeaders {
    table: std::collections::BTreeMap<ShortString, AMQPValue>,
}

impl RelayHeaders {
    /// Relay headers that describe one failure; the first-failure time survives.
    const REPLACED: [&'static str; 11] = [
        REASON,
        WEBHOOK,
        ATTEMPTS,
        LAST_STATUS,
        LAST_ERROR,
        EVENT_ID,
        FAILED_AT,
        ROUTING_KEY,
        RETRY_DELAY_MS,
        "x-death",
        "x-delivery-count",
    ];

    fn from(original: &BasicProperties) -> Self {
        let mut table = original
            .headers()
            .as_ref()
            .map(|h| h.inner().clone())
            .unwrap_or_default();
        table.retain(|k, _| !Self::REPLACED.contains(&k.as_str()));
        RelayHeaders { table }
    }

    fn text(&mut self, name: &str, value: &str) {
        self.table
            .insert(ShortString::from(name), long_string(value));
    }

    fn number(&mut self, name: &str, value: i64) {
        self.table
            .insert(ShortString::from(name), AMQPValue::LongLongInt(value));
    }

    fn into_properties(self, original: &BasicProperties) -> BasicProperties {
        original
            .clone()
            .with_headers(FieldTable::from(self.table))
            .with_delivery_mode(2)
    }
}

fn long_string(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text.as_bytes().to_vec()))
}

/// The `x-relay-*` headers of a dead letter read back, for inspection and replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterInfo {
    /// `x-relay-reason`, when it parses.
    pub reason: Option<Reason>,
    /// `x-relay-webhook`
    pub webhook: Option<String>,
    /// `x-relay-attempts`
    pub attempts: Option<u32>,
    /// `x-relay-last-status`
    pub last_status: Option<u16>,
    /// `x-relay-last-error`
    pub last_error: Option<String>,
    /// `x-relay-event-id`
    pub event_id: Option<String>,
    /// `x-relay-failed-at`
    pub failed_at: Option<String>,
    /// `x-relay-routing-key`
    pub routing_key: Option<String>,
}

impl DeadLetterInfo {
    /// Reads the `x-relay-*` headers; anything missing or of the wrong type is `None`.
    pub fn from_properties(properties: &BasicProperties) -> Self {
        let empty = FieldTable::default();
        let headers = properties.headers().as_ref().unwrap_or(&empty);
        let text = |name: &str| header_text(headers, name);
        let number = |name: &str| header_number(headers, name);
        DeadLetterInfo {
            reason: text(REASON).and_then(|r| Reason::parse(&r)),
            webhook: text(WEBHOOK),
            attempts: number(ATTEMPTS).and_then(|n| u32::try_from(n).ok()),
            last_status: number(LAST_STATUS).and_then(|n| u16::try_from(n).ok()),
            last_error: text(LAST_ERROR),
            event_id: text(EVENT_ID),
            failed_at: text(FAILED_AT),
            routing_key: text(ROUTING_KEY),
        }
    }
}

/// A header's value as text, for string-typed values.
pub fn header_text(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// A header's value as an integer, for integer-typed values.
pub fn header_number(headers: &FieldTable, name: &str) -> Option<i64> {
    match headers.inner().get(name)? {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn headers_round_trip_and_keep_the_original_properties() {
        let mut original_headers = FieldTable::default();
        original_headers.insert("tenant".into(), long_string("acme"));
        original_headers.insert(REASON.into(), long_string("rejected"));
        let original = BasicProperties::default()
            .with_message_id("msg-1".into())
            .with_content_type("application/json".into())
            .with_headers(original_headers);
        let letter = DeadLetter {
            webhook: Some("logzio-audit".into()),
            event_id: Some(EventId("msg-1".into())),
            failure: Failure {
                reason: Reason::DeliveryFailed,
                attempts: 8,
                last_status: Some(503),
                last_error: "http 503 Service Unavailable".into(),
            },
            failed_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_064_800),
        };
        let props = letter.properties(&original, "RequestApproved");
        assert_eq!(props.message_id().as_ref().unwrap().as_str(), "msg-1");
        assert_eq!(*props.delivery_mode(), Some(2));
        let info = DeadLetterInfo::from_properties(&props);
        assert_eq!(
            info,
            DeadLetterInfo {
                reason: Some(Reason::DeliveryFailed),
                webhook: Some("logzio-audit".into()),
                attempts: Some(8),
                last_status: Some(503),
                last_error: Some("http 503 Service Unavailable".into()),
                event_id: Some("msg-1".into()),
                failed_at: Some("2025-11-25T10:00:00.000Z".into()),
                routing_key: Some("RequestApproved".into()),
            }
        );
        let headers = props.headers().clone().unwrap();
        assert_eq!(header_text(&headers, "tenant").as_deref(), Some("acme"));
    }
}
