//! [`EventId`]: an event's identity, and the rule that derives it from the message.

use super::Trigger;
use serde_json::Value;
use std::fmt;

/// An event's identity: the AMQP `message_id` when the publisher set one, otherwise
/// `data.id:event_type:event_time`. Used for `Idempotency-Key`, `x-relay-event-id` and logs.
///
/// The text comes from the publisher and is not sanitised: it may hold any character,
/// including ones that are not valid in an HTTP header value. It is bounded, though: an
/// identity longer than [`MAX_EVENT_ID_BYTES`] is kept as a short prefix followed by a hash
/// of the whole text (see [`EventId::bounded`]), so keys, headers and log fields written from
/// it stay small whatever the publisher sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(pub String);

/// Longest identity kept as written.
pub const MAX_EVENT_ID_BYTES: usize = 128;

/// How much of an over-long identity is kept in front of its hash, for people.
const EVENT_ID_PREFIX_BYTES: usize = 48;

impl EventId {
    /// `text` when it is at most [`MAX_EVENT_ID_BYTES`] long; otherwise its first bytes (cut
    /// at a character boundary) followed by `~sha256:` and the first 128 bits of the SHA-256
    /// of the whole text, in hex. Stable: the same text always gives the same identity, so
    /// retries and redeliveries of one event keep one `Idempotency-Key`.
    pub fn bounded(text: &str) -> EventId {
        if text.len() <= MAX_EVENT_ID_BYTES {
            return EventId(text.to_owned());
        }
        let mut cut = EVENT_ID_PREFIX_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        let hex: String = digest.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        EventId(format!("{}~sha256:{hex}", &text[..cut]))
    }

    /// The identity of an event with this document, trigger and AMQP `message_id`: the
    /// `message_id` when it is set and not blank, otherwise `data.id:Trigger:event_time`, each
    /// missing or wrongly typed part written `-` (the rule [`decode`](fn@super::decode)
    /// documents); [`bounded`](EventId::bounded) either way.
    pub(super) fn for_event(raw: &Value, trigger: Trigger, message_id: Option<&str>) -> EventId {
        if let Some(id) = message_id.filter(|id| !id.trim().is_empty()) {
            return EventId::bounded(id);
        }
        let request_id = raw
            .pointer("/data/id")
            .and_then(Value::as_str)
            .unwrap_or("-");
        let event_time = raw
            .get("event_time")
            .and_then(Value::as_number)
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        EventId::bounded(&format!("{request_id}:{trigger}:{event_time}"))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::{decode, encode, sample};
    use serde_json::json;

    #[test]
    fn identity_prefers_the_message_id() {
        let bytes = encode(&sample(Trigger::RequestApproved));
        assert_eq!(decode(&bytes, Some("msg-1")).unwrap().id.0, "msg-1");
        for blank in [Some(""), Some("  "), None] {
            assert_eq!(
                decode(&bytes, blank).unwrap().id.0,
                "req-5f2c9a:RequestApproved:1764064800.123456"
            );
        }
    }

    #[test]
    fn long_identities_are_hashed_into_a_bounded_stable_form() {
        let long_id = "r".repeat(50_000);
        let event = json!({"event_type": "Manual", "event_time": 1, "data": {"id": long_id}});
        let id = decode(&encode(&event), None).unwrap().id;
        assert!(id.0.len() <= MAX_EVENT_ID_BYTES, "{} bytes", id.0.len());
        assert!(id.0.starts_with("rrrr"), "{}", id.0);
        assert!(id.0.contains("~sha256:"), "{}", id.0);
        assert_eq!(decode(&encode(&event), None).unwrap().id, id, "stable");
        let other =
            json!({"event_type": "Manual", "event_time": 2, "data": {"id": "r".repeat(50_000)}});
        assert_ne!(decode(&encode(&other), None).unwrap().id, id, "distinct");
        // A cut never splits a character.
        let wide = EventId::bounded(&"é".repeat(200));
        assert!(wide.0.len() <= MAX_EVENT_ID_BYTES);
        assert_eq!(EventId::bounded("short").0, "short");
        let message_id = "m".repeat(255);
        assert!(
            decode(&encode(&event), Some(&message_id))
                .unwrap()
                .id
                .0
                .len()
                <= MAX_EVENT_ID_BYTES
        );
    }

    #[test]
    fn identity_writes_missing_parts_as_dashes() {
        let id = |event: Value| decode(&encode(&event), None).unwrap().id.0;
        assert_eq!(id(json!({"event_type": "Manual"})), "-:Manual:-");
        assert_eq!(
            id(json!({"event_type": "Manual", "event_time": "1764064800", "data": {"id": 3}})),
            "-:Manual:-"
        );
        assert_eq!(
            id(json!({"event_type": "Manual", "event_time": 1764064800, "data": {"id": "r"}})),
            "r:Manual:1764064800"
        );
    }

    #[test]
    fn identity_tells_apart_the_events_of_one_request() {
        let id = |event_type: &str, event_time: &str| {
            let text = format!(
                r#"{{"event_type": "{event_type}", "event_time": {event_time},
                    "data": {{"id": "req-1"}}}}"#
            );
            decode(text.as_bytes(), None).unwrap().id
        };
        let created = id("RequestCreated", "1764064797.62");
        let approved = id("RequestApproved", "1764064800.123456");
        let granted = id("RequestGranted", "1764064801.5");
        assert_eq!(created.0, "req-1:RequestCreated:1764064797.62");
        assert_ne!(created, approved);
        assert_ne!(approved, granted);
        assert_ne!(created, granted);
        // Same time, different trigger: still distinct.
        assert_ne!(
            id("RequestApproved", "1764064800.0"),
            id("RequestGranted", "1764064800.0")
        );
        // The vendor's spelling is the same event.
        assert_eq!(id("AccessRequestApproved", "1764064800.123456"), approved);
    }
}
