//! Dead letters: what failed, for which webhook and why, carried as `x-relay-*` headers on a
//! copy of the original message. One dead letter per failed (event, webhook), so a replay can
//! target just that webhook.
//!
//! The body is the original event bytes, unchanged, and the original properties (message id,
//! content type, headers) are kept, so the event keeps its identity through a replay.

use crate::event::EventId;
use crate::outcome::{Failure, Reason};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use std::time::SystemTime;

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
    /// headers added to its own headers (replacing older `x-relay-*` from an earlier failure).
    pub fn properties(&self, original: &BasicProperties, routing_key: &str) -> BasicProperties {
        let mut table = original
            .headers()
            .as_ref()
            .map(|h| h.inner().clone())
            .unwrap_or_default();
        table.retain(|k, _| !k.as_str().starts_with("x-relay-"));
        let mut headers = FieldTable::from(table);
        let mut put = |name: &str, value: AMQPValue| {
            headers.insert(ShortString::from(name), value);
        };
        put(REASON, long_string(self.failure.reason.as_str()));
        if let Some(webhook) = &self.webhook {
            put(WEBHOOK, long_string(webhook));
        }
        put(
            ATTEMPTS,
            AMQPValue::LongLongInt(i64::from(self.failure.attempts)),
        );
        if let Some(status) = self.failure.last_status {
            put(LAST_STATUS, AMQPValue::LongLongInt(i64::from(status)));
        }
        let error: String = self
            .failure
            .last_error
            .chars()
            .take(LAST_ERROR_LIMIT)
            .collect();
        put(LAST_ERROR, long_string(&error));
        if let Some(id) = &self.event_id {
            put(EVENT_ID, long_string(&id.0));
        }
        put(
            FAILED_AT,
            long_string(&humantime::format_rfc3339_millis(self.failed_at).to_string()),
        );
        put(ROUTING_KEY, long_string(routing_key));
        original.clone().with_headers(headers).with_delivery_mode(2)
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
