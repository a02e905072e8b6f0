//! [`decode`]: published bytes to an [`Event`], or the [`InvalidEvent`] that dead-letters them.

use super::{Event, EventId, EventView, Trigger};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// Why bytes could not become an [`Event`]; dead-lettered as `invalid_event`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InvalidEvent {
    /// The bytes are not a JSON document. Holds serde_json's message, with line and column.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The document is not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// `event_type` is missing or not a string.
    #[error("missing `event_type`")]
    MissingEventType,
    /// `event_type` names no known trigger. Holds the value, cut to
    /// [`MAX_REPORTED_EVENT_TYPE`] characters with control characters escaped, since it is
    /// publisher-controlled and ends up in logs and dead-letter headers.
    #[error("unknown event_type `{0}`")]
    UnknownEventType(String),
}

/// How many characters of an unknown `event_type` [`InvalidEvent::UnknownEventType`] keeps.
pub const MAX_REPORTED_EVENT_TYPE: usize = 64;

/// Decodes published bytes. `message_id` is the AMQP property, if set.
///
/// The bytes must be a JSON object whose `event_type` is a string naming a trigger (either
/// spelling); nothing else is checked. The identity is `message_id` when it is set and not
/// blank, otherwise `data.id:Trigger:event_time` with the canonical trigger name and the
/// number's JSON text, each missing (or wrongly typed) part written `-`.
pub fn decode(bytes: &[u8], message_id: Option<&str>) -> Result<Event, InvalidEvent> {
    let raw: Value =
        serde_json::from_slice(bytes).map_err(|e| InvalidEvent::NotJson(e.to_string()))?;
    let object = raw.as_object().ok_or(InvalidEvent::NotAnObject)?;
    let event_type = object
        .get("event_type")
        .and_then(Value::as_str)
        .ok_or(InvalidEvent::MissingEventType)?;
    let trigger = Trigger::parse(event_type)
        .ok_or_else(|| InvalidEvent::UnknownEventType(for_report(event_type)))?;
    // Every view field is lenient, so this cannot fail on an object; the default is a
    // belt-and-braces fallback, not an expected path.
    let view = EventView::deserialize(&raw).unwrap_or_default();
    let id = EventId::for_event(&raw, trigger, message_id);
    Ok(Event {
        trigger,
        id,
        raw: Arc::new(raw),
        view,
    })
}

/// A publisher-controlled string made safe to print: cut and with control characters escaped.
fn for_report(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_REPORTED_EVENT_TYPE {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::{AccessGroupView, encode, sample};
    use serde_json::json;

    #[test]
    fn odd_data_never_invalidates_an_event() {
        let odd = [
            json!({"event_type": "RequestCreated"}),
            json!({"event_type": "RequestCreated", "data": null}),
            json!({"event_type": "RequestCreated", "data": "text"}),
            json!({"event_type": "RequestCreated", "data": [1, 2]}),
            json!({"event_type": "RequestCreated", "data": {
                "id": 42, "friendly_id": ["AR"], "requester": "dana", "access_flow": 1,
                "access_bundle": null,
                "access_groups": [null, {"integration": "x", "resource_types": {},
                                         "access_units": [{"resource": {"type": "db"}}]}]
            }}),
        ];
        for event in odd {
            let decoded = decode(&encode(&event), None).unwrap();
            assert_eq!(decoded.trigger, Trigger::RequestCreated);
            assert_eq!(*decoded.raw, event);
        }
        let decoded = decode(
            &encode(&json!({"event_type": "RequestCreated", "data": {
                "id": 42, "requester": {"name": "Dana", "email": false},
                "access_groups": [null, {"access_units": [{"resource": {"type": "db",
                                                                        "name": "orders"}}]}]
            }})),
            None,
        )
        .unwrap();
        let data = decoded.view.data.unwrap();
        assert_eq!(data.id, None);
        let requester = data.requester.unwrap();
        assert_eq!(requester.name.as_deref(), Some("Dana"));
        assert_eq!(requester.email, None);
        assert_eq!(data.access_groups.len(), 2);
        assert_eq!(data.access_groups[0], AccessGroupView::default());
        let resource = data.access_groups[1].access_units[0]
            .resource
            .clone()
            .unwrap();
        assert_eq!(resource.kind, None);
        assert_eq!(resource.name.as_deref(), Some("orders"));
    }

    #[test]
    fn decode_rejects_what_is_not_an_event() {
        match decode(b"{\"event_type\": ", None) {
            Err(InvalidEvent::NotJson(message)) => {
                assert!(message.contains("line 1 column"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode(b"\xff\xfe", None),
            Err(InvalidEvent::NotJson(_))
        ));
        assert!(matches!(decode(b"", None), Err(InvalidEvent::NotJson(_))));
        assert_eq!(decode(b"[1]", None).unwrap_err(), InvalidEvent::NotAnObject);
        assert_eq!(
            decode(b"\"RequestCreated\"", None).unwrap_err(),
            InvalidEvent::NotAnObject
        );
        assert_eq!(
            decode(b"{}", None).unwrap_err(),
            InvalidEvent::MissingEventType
        );
        assert_eq!(
            decode(br#"{"event_type": 5}"#, None).unwrap_err(),
            InvalidEvent::MissingEventType
        );
        assert_eq!(
            decode(br#"{"event_type": null}"#, None).unwrap_err(),
            InvalidEvent::MissingEventType
        );
        let err = decode(br#"{"event_type": "requestcreated"}"#, None).unwrap_err();
        assert_eq!(err, InvalidEvent::UnknownEventType("requestcreated".into()));
        assert_eq!(err.to_string(), "unknown event_type `requestcreated`");
    }

    #[test]
    fn unknown_event_type_is_cut_and_escaped() {
        let long = format!("Evil\n{}", "x".repeat(200));
        let event = json!({ "event_type": long });
        let InvalidEvent::UnknownEventType(reported) = decode(&encode(&event), None).unwrap_err()
        else {
            panic!("wrong variant")
        };
        assert!(reported.starts_with("Evil\\nxxx"), "{reported}");
        assert!(!reported.contains('\n'));
        assert!(reported.ends_with('…'));
        assert_eq!(reported.chars().count(), MAX_REPORTED_EVENT_TYPE + 2);
    }

    #[test]
    fn decode_keeps_the_document_unchanged() {
        let mut event = sample(Trigger::RequestGranted);
        event["vendor_extra"] = json!({"nested": [1, 2.5, null]});
        event["data"]["custom_fields"] = json!({"ticket": "INC-1"});
        let bytes = encode(&event);
        let decoded = decode(&bytes, None).unwrap();
        assert_eq!(*decoded.raw, event);
        assert_eq!(
            *decoded.raw,
            serde_json::from_slice::<Value>(&bytes).unwrap()
        );
        assert_eq!(decoded.trigger, Trigger::RequestGranted);
    }
}
