//! Dead letters: what failed, for which webhook and why, carried as `x-relay-*` headers on a
//! copy of the original message. One dead letter per failed (event, webhook), so a replay can
//! target just that webhook.
//!
//! The body is the original event bytes, unchanged, and the original properties (message id,
//! content type, headers) are kept, so the event keeps its identity through a replay.

use crate::model::event::EventId;
use crate::pipeline::outcome::{Failure, Parked, Reason, RetryState};
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

/// Set instead of the original message's own headers when they were too large to carry
/// (see [`MAX_CARRIED_HEADER_BYTES`]): how many there were and their encoded size.
pub const HEADERS_DROPPED: &str = "x-relay-headers-dropped";

/// Longest `x-relay-last-error` kept, in bytes; headers are not the place for a whole
/// response body.
const LAST_ERROR_LIMIT: usize = 1024;

/// Most bytes of the original message's own headers that a dead letter or parked delivery
/// carries. Larger ones are dropped (and counted in [`HEADERS_DROPPED`]): every header must
/// fit in one AMQP frame (128 KiB by default), and the broker adds `x-death` on the way
/// through a wait queue, so what we write stays well under a frame whatever we received.
pub const MAX_CARRIED_HEADER_BYTES: usize = 64 * 1024;

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
        headers.text(
            LAST_ERROR,
            truncate(&self.failure.last_error, LAST_ERROR_LIMIT),
        );
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
    headers.text(LAST_ERROR, truncate(&parked.last_error, LAST_ERROR_LIMIT));
    headers.text(ROUTING_KEY, routing_key);
    headers.into_properties(original)
}

/// The retry state a message on the retry path carries, read as untrusted data: the headers
/// come from whoever published the message. `None` when the message carries no retry state
/// (a first attempt).
///
/// - Attempts are clamped to `max_attempts - 1`: a message on the retry path always gets the
///   one attempt it was parked for, and a forged count cannot push any arithmetic or loop
///   past the configured budget.
/// - A first-failure time in the future is taken as now.
/// - A relay header that is present but malformed (wrong type, negative, out of range, or
///   one of the pair missing) is ignored with a warning: the delivery starts afresh.
pub fn retry_state(properties: &BasicProperties, max_attempts: u32) -> Option<RetryState> {
    let headers = properties.headers().as_ref()?;
    let attempts = headers.inner().get(ATTEMPTS);
    let first = headers.inner().get(FIRST_FAILURE_MS);
    if attempts.is_none() && first.is_none() {
        return None;
    }
    let parsed_attempts = header_number(headers, ATTEMPTS).and_then(|n| u32::try_from(n).ok());
    let parsed_first = header_number(headers, FIRST_FAILURE_MS).and_then(|n| u64::try_from(n).ok());
    let (Some(attempts), Some(ms)) = (parsed_attempts, parsed_first) else {
        tracing::warn!(
            "malformed {ATTEMPTS} / {FIRST_FAILURE_MS} headers on a retry; treating it as a first attempt"
        );
        return None;
    };
    let now = SystemTime::now();
    let first_failure = UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .filter(|t| *t <= now)
        .unwrap_or(now);
    Some(RetryState {
        attempts: attempts.min(max_attempts.saturating_sub(1)),
        first_failure,
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

    /// The original's headers without the relay's own; all of them dropped (and counted in
    /// [`HEADERS_DROPPED`]) when together they are over [`MAX_CARRIED_HEADER_BYTES`].
    fn from(original: &BasicProperties) -> Self {
        let mut table = original
            .headers()
            .as_ref()
            .map(|h| h.inner().clone())
            .unwrap_or_default();
        table.retain(|k, _| !Self::REPLACED.contains(&k.as_str()) && k.as_str() != HEADERS_DROPPED);
        let size: usize = table.iter().map(|(k, v)| entry_len(k, v)).sum();
        if size > MAX_CARRIED_HEADER_BYTES {
            let count = table.len();
            table.clear();
            table.insert(
                ShortString::from(HEADERS_DROPPED),
                long_string(&format!(
                    "{count} headers of {size} bytes: over {MAX_CARRIED_HEADER_BYTES} bytes, not carried"
                )),
            );
        }
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

/// `text` cut to at most `limit` bytes, at a character boundary.
fn truncate(text: &str, limit: usize) -> &str {
    let mut cut = text.len().min(limit);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// An upper bound of the encoded size of one field-table entry.
fn entry_len(name: &ShortString, value: &AMQPValue) -> usize {
    1 + name.as_str().len() + value_len(value)
}

/// An upper bound of the encoded size of a field value, type tag included.
fn value_len(value: &AMQPValue) -> usize {
    1 + match value {
        AMQPValue::ShortString(s) => 1 + s.as_str().len(),
        AMQPValue::LongString(s) => 4 + s.as_bytes().len(),
        AMQPValue::ByteArray(b) => 4 + b.as_slice().len(),
        AMQPValue::FieldArray(a) => 4 + a.as_slice().iter().map(value_len).sum::<usize>(),
        AMQPValue::FieldTable(t) => {
            4 + t
                .inner()
                .iter()
                .map(|(k, v)| entry_len(k, v))
                .sum::<usize>()
        }
        _ => 9,
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

    fn with_headers(pairs: &[(&str, AMQPValue)]) -> BasicProperties {
        let mut table = FieldTable::default();
        for (name, value) in pairs {
            table.insert((*name).into(), value.clone());
        }
        BasicProperties::default().with_headers(table)
    }

    #[test]
    fn forged_retry_headers_are_clamped() {
        let props = with_headers(&[
            (ATTEMPTS, AMQPValue::LongLongInt(4_294_967_295)),
            (FIRST_FAILURE_MS, AMQPValue::LongLongInt(i64::MAX)),
        ]);
        let state = retry_state(&props, 8).expect("a retry state");
        assert_eq!(state.attempts, 7);
        assert!(state.first_failure <= SystemTime::now());
        let props = with_headers(&[
            (ATTEMPTS, AMQPValue::LongUInt(u32::MAX)),
            (FIRST_FAILURE_MS, AMQPValue::LongLongInt(1_000)),
        ]);
        assert_eq!(retry_state(&props, 0).map(|s| s.attempts), Some(0));
    }

    #[test]
    fn malformed_retry_headers_mean_a_first_attempt() {
        assert_eq!(retry_state(&BasicProperties::default(), 8), None);
        for pairs in [
            vec![
                (ATTEMPTS, AMQPValue::LongLongInt(-1)),
                (FIRST_FAILURE_MS, AMQPValue::LongLongInt(1)),
            ],
            vec![
                (ATTEMPTS, long_string("many")),
                (FIRST_FAILURE_MS, AMQPValue::LongLongInt(1)),
            ],
            vec![(ATTEMPTS, AMQPValue::LongLongInt(3))],
            vec![
                (ATTEMPTS, AMQPValue::LongLongInt(3)),
                (FIRST_FAILURE_MS, AMQPValue::LongLongInt(-5)),
            ],
        ] {
            assert_eq!(retry_state(&with_headers(&pairs), 8), None, "{pairs:?}");
        }
        let ok = with_headers(&[
            (ATTEMPTS, AMQPValue::LongLongInt(3)),
            (FIRST_FAILURE_MS, AMQPValue::LongLongInt(1_000)),
        ]);
        assert_eq!(
            retry_state(&ok, 8),
            Some(RetryState {
                attempts: 3,
                first_failure: UNIX_EPOCH + Duration::from_secs(1)
            })
        );
    }

    #[test]
    fn oversized_original_headers_are_dropped_and_counted() {
        let big = with_headers(&[
            ("baggage", long_string(&"b".repeat(40_000))),
            ("trace", long_string(&"t".repeat(40_000))),
        ]);
        let letter = DeadLetter {
            webhook: Some("hook".into()),
            event_id: Some(EventId("e".into())),
            failure: Failure {
                reason: Reason::Rejected,
                attempts: 1,
                last_status: Some(400),
                last_error: "é".repeat(5_000),
            },
            failed_at: SystemTime::UNIX_EPOCH,
        };
        let props = letter.properties(&big, "Manual");
        let headers = props.headers().clone().unwrap();
        assert_eq!(header_text(&headers, "baggage"), None);
        assert!(
            header_text(&headers, HEADERS_DROPPED)
                .unwrap()
                .starts_with("2 headers of 80"),
        );
        let size: usize = headers.inner().iter().map(|(k, v)| entry_len(k, v)).sum();
        assert!(size < 4096, "{size} bytes written");
        assert!(header_text(&headers, LAST_ERROR).unwrap().len() <= LAST_ERROR_LIMIT);
        // Headers under the limit travel unchanged.
        let small = with_headers(&[("baggage", long_string("b"))]);
        let headers = letter
            .properties(&small, "Manual")
            .headers()
            .clone()
            .unwrap();
        assert_eq!(header_text(&headers, "baggage").as_deref(), Some("b"));
        assert_eq!(header_text(&headers, HEADERS_DROPPED), None);
    }
}
