//! The access-request event: its triggers, a typed view for matching, its identity, the JSON
//! Schema and built-in samples. Pure: no I/O, nothing from `amqp` or `delivery`.
//!
//! # Layout
//! One module per responsibility. Their public items are re-exported here; `schema` is public
//! too, for [`schema::check`] and its [`schema::SchemaViolation`].
//! - `trigger`: [`Trigger`], the normalised `event_type`.
//! - `identity`: [`EventId`] and the rule that derives it.
//! - `decode`: bytes to an [`Event`], or the [`InvalidEvent`] that dead-letters them.
//! - `view`: the typed views rules match on ([`EventView`] and its parts).
//! - `lenient`: reading a view field so that a wrong type is absent, not an error.
//! - [`schema`]: the embedded JSON Schema, the template paths it describes, and checking a
//!   document against it.
//! - `samples`: the built-in sample event of each trigger.

mod decode;
mod identity;
mod lenient;
mod samples;
pub mod schema;
mod trigger;
mod view;

pub use decode::{InvalidEvent, MAX_REPORTED_EVENT_TYPE, decode};
pub use identity::{EventId, MAX_EVENT_ID_BYTES};
pub use samples::sample;
pub use schema::{FieldPath, field_paths, json_schema, schema_allows_path};
pub use trigger::{Trigger, UnknownTrigger};
pub use view::{
    AccessGroupView, AccessUnitView, DataView, EventView, IntegrationView, PersonView, RefView,
    ResourceTypeView, ResourceView,
};

use std::sync::Arc;

/// A decoded event. `raw` is the JSON exactly as published (unknown fields kept) and is what
/// templates see; `view` is the typed subset that rules match on.
#[derive(Debug, Clone)]
pub struct Event {
    /// The normalised trigger.
    pub trigger: Trigger,
    /// The event's identity.
    pub id: EventId,
    /// The whole JSON document: every field kept, object keys in name order.
    pub raw: Arc<serde_json::Value>,
    /// Typed fields used for matching.
    pub view: EventView,
}

/// Test helper: a document as the bytes a publisher sends.
#[cfg(test)]
fn encode(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}
