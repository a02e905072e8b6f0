//! The access-request event: its triggers, a typed view for matching, its identity, the JSON
//! Schema and built-in samples. Pure: no I/O, nothing from `amqp` or `delivery`.

use serde::Deserialize;
use std::fmt;
use std::sync::Arc;

/// The trigger an event fires: the `event_type` field, normalised.
/// `AccessRequestCreated` and the other `AccessRequest…` spellings parse as the same trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    /// `RequestCreated`
    RequestCreated,
    /// `RequestApproved`
    RequestApproved,
    /// `RequestRejected`
    RequestRejected,
    /// `RequestGranted`
    RequestGranted,
    /// `RequestExpired`
    RequestExpired,
    /// `RequestFailed`
    RequestFailed,
    /// `Manual`
    Manual,
}

impl Trigger {
    /// Every trigger, in the order the seed lists them.
    pub const ALL: [Trigger; 7] = [
        Trigger::RequestCreated,
        Trigger::RequestApproved,
        Trigger::RequestRejected,
        Trigger::RequestGranted,
        Trigger::RequestExpired,
        Trigger::RequestFailed,
        Trigger::Manual,
    ];

    /// The canonical name, e.g. `RequestCreated`.
    pub fn as_str(self) -> &'static str {
        todo!()
    }

    /// Parses a canonical name or its `AccessRequest…` spelling; `None` for anything else.
    pub fn parse(_s: &str) -> Option<Trigger> {
        todo!()
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event's identity: the AMQP `message_id` when the publisher set one, otherwise
/// `data.id:event_type:event_time`. Used for `Idempotency-Key`, `x-relay-event-id` and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(pub String);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A decoded event. `raw` is the JSON exactly as published (unknown fields kept) and is what
/// templates see; `view` is the typed subset that rules match on.
#[derive(Debug, Clone)]
pub struct Event {
    /// The normalised trigger.
    pub trigger: Trigger,
    /// The event's identity.
    pub id: EventId,
    /// The whole JSON document.
    pub raw: Arc<serde_json::Value>,
    /// Typed fields used for matching.
    pub view: EventView,
}

/// Why bytes could not become an [`Event`]; dead-lettered as `invalid_event`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InvalidEvent {
    /// The bytes are not a JSON document.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The document is not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// `event_type` is missing or not a string.
    #[error("missing `event_type`")]
    MissingEventType,
    /// `event_type` names no known trigger.
    #[error("unknown event_type `{0}`")]
    UnknownEventType(String),
}

/// Typed subset of the payload used by rules. Every field is optional: events may omit or null
/// any of them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventView {
    /// `data`
    #[serde(default)]
    pub data: Option<DataView>,
}

/// Typed subset of `data`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DataView {
    /// `data.id`
    pub id: Option<String>,
}

/// Decodes published bytes. `message_id` is the AMQP property, if set.
pub fn decode(_bytes: &[u8], _message_id: Option<&str>) -> Result<Event, InvalidEvent> {
    todo!()
}

/// The event payload's JSON Schema (draft 2020-12).
pub fn json_schema() -> &'static serde_json::Value {
    todo!()
}

/// A complete built-in sample event for `trigger`, shaped like the vendor's schema.
pub fn sample(_trigger: Trigger) -> serde_json::Value {
    todo!()
}

impl<'de> Deserialize<'de> for Trigger {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Trigger::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown trigger `{s}`")))
    }
}
