//! The access-request event: its triggers, a typed view for matching, its identity, the JSON
//! Schema and built-in samples. Pure: no I/O, nothing from `amqp` or `delivery`.

use serde::de::{self, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

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
        match self {
            Trigger::RequestCreated => "RequestCreated",
            Trigger::RequestApproved => "RequestApproved",
            Trigger::RequestRejected => "RequestRejected",
            Trigger::RequestGranted => "RequestGranted",
            Trigger::RequestExpired => "RequestExpired",
            Trigger::RequestFailed => "RequestFailed",
            Trigger::Manual => "Manual",
        }
    }

    /// The vendor's `AccessRequest…` spelling, e.g. `AccessRequestCreated`. `Manual` has no
    /// attested vendor spelling; `AccessRequestManual` is accepted for symmetry.
    pub fn access_request_name(self) -> &'static str {
        match self {
            Trigger::RequestCreated => "AccessRequestCreated",
            Trigger::RequestApproved => "AccessRequestApproved",
            Trigger::RequestRejected => "AccessRequestRejected",
            Trigger::RequestGranted => "AccessRequestGranted",
            Trigger::RequestExpired => "AccessRequestExpired",
            Trigger::RequestFailed => "AccessRequestFailed",
            Trigger::Manual => "AccessRequestManual",
        }
    }

    /// Parses a canonical name or its `AccessRequest…` spelling; `None` for anything else.
    /// Matching is exact: case and surrounding whitespace matter.
    pub fn parse(s: &str) -> Option<Trigger> {
        Trigger::ALL
            .into_iter()
            .find(|t| t.as_str() == s || t.access_request_name() == s)
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no trigger, e.g. a misspelt trigger in a webhook's config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trigger `{0}`, expected one of {names}", names = Trigger::ALL.map(Trigger::as_str).join(", "))]
pub struct UnknownTrigger(pub String);

impl FromStr for Trigger {
    type Err = UnknownTrigger;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Trigger::parse(s).ok_or_else(|| UnknownTrigger(s.to_owned()))
    }
}

/// Accepts the same names as [`Trigger::parse`]; anything else is an [`UnknownTrigger`] error.
impl<'de> Deserialize<'de> for Trigger {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(de::Error::custom)
    }
}

/// Serialises as the canonical name.
impl Serialize for Trigger {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

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
}

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
    /// The whole JSON document: every field kept, object keys in name order.
    pub raw: Arc<serde_json::Value>,
    /// Typed fields used for matching.
    pub view: EventView,
}

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

/// Typed subset of the payload used by rules. Every field is optional: events may omit or null
/// any of them, and a field of the wrong type reads as absent rather than failing the decode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EventView {
    /// `data`
    #[serde(default, deserialize_with = "lenient")]
    pub data: Option<DataView>,
}

/// Typed subset of `data`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DataView {
    /// `data.id`: the access request's id, shared by every event of one request.
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    /// `data.friendly_id`, e.g. `AR-123`.
    #[serde(default, deserialize_with = "lenient")]
    pub friendly_id: Option<String>,
    /// `data.requester`: who asked.
    #[serde(default, deserialize_with = "lenient")]
    pub requester: Option<PersonView>,
    /// `data.access_flow`: the policy that handled the request.
    #[serde(default, deserialize_with = "lenient")]
    pub access_flow: Option<RefView>,
    /// `data.access_bundle`; `None` when null or absent.
    #[serde(default, deserialize_with = "lenient")]
    pub access_bundle: Option<RefView>,
    /// `data.access_groups[]`, one per integration touched. Indexes line up with the raw
    /// array: an entry that is not an object reads as an all-`None` group.
    #[serde(default, deserialize_with = "lenient_vec")]
    pub access_groups: Vec<AccessGroupView>,
}

/// A person: `data.requester`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PersonView {
    /// `id`
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    /// `name`
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
    /// `email`
    #[serde(default, deserialize_with = "lenient")]
    pub email: Option<String>,
}

/// An `{id, name}` reference: an access flow, an access bundle or a permission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RefView {
    /// `id`
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    /// `name`
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
}

/// One entry of `data.access_groups[]`: the access requested in one integration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AccessGroupView {
    /// `integration`
    #[serde(default, deserialize_with = "lenient")]
    pub integration: Option<IntegrationView>,
    /// `resource_types[]`; indexes line up with the raw array.
    #[serde(default, deserialize_with = "lenient_vec")]
    pub resource_types: Vec<ResourceTypeView>,
    /// `access_units[]`; indexes line up with the raw array.
    #[serde(default, deserialize_with = "lenient_vec")]
    pub access_units: Vec<AccessUnitView>,
}

/// `data.access_groups[].integration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct IntegrationView {
    /// `id`
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    /// `type`, e.g. `postgresql`.
    #[serde(default, rename = "type", deserialize_with = "lenient")]
    pub kind: Option<String>,
    /// `name`, e.g. `prod-postgres`.
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
}

/// A resource type: `data.access_groups[].resource_types[]` and
/// `data.access_groups[].access_units[].resource.type`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ResourceTypeView {
    /// `id`
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    /// `name`, e.g. `Database`.
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
    /// `display_path`, e.g. `Postgresql/Database`.
    #[serde(default, deserialize_with = "lenient")]
    pub display_path: Option<String>,
}

/// One entry of `data.access_groups[].access_units[]`: a permission on a resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AccessUnitView {
    /// `resource`
    #[serde(default, deserialize_with = "lenient")]
    pub resource: Option<ResourceView>,
    /// `permission`
    #[serde(default, deserialize_with = "lenient")]
    pub permission: Option<RefView>,
}

/// `data.access_groups[].access_units[].resource`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ResourceView {
    /// `id`
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    /// `name`, e.g. `orders`.
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
    /// `path`, e.g. `prod-postgres/orders`.
    #[serde(default, deserialize_with = "lenient")]
    pub path: Option<String>,
    /// `type`: the resource's type.
    #[serde(default, rename = "type", deserialize_with = "lenient")]
    pub kind: Option<ResourceTypeView>,
}

/// Deserialises a value that may be null or of the wrong type: whatever does not deserialise
/// as `T` becomes `None` and is skipped, so one odd field never fails the enclosing struct.
/// Pair it with `#[serde(default)]` so that a missing field is `None` too.
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_any(LenientVisitor(PhantomData))
}

/// Like [`lenient`] for an array: a non-array is empty, and an element that does not
/// deserialise as `T` becomes `T::default()` so indexes keep matching the raw array.
fn lenient_vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    let items: Option<Vec<Lenient<T>>> = lenient(deserializer)?;
    Ok(items
        .unwrap_or_default()
        .into_iter()
        .map(|item| item.0.unwrap_or_default())
        .collect())
}

/// An element read with [`lenient`].
struct Lenient<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        lenient(deserializer).map(Lenient)
    }
}

/// Sees whatever the input holds and offers it to `T`; `T`'s refusal is `None`. Sequences and
/// maps are always read to their end so that the enclosing deserializer stays consistent.
struct LenientVisitor<T>(PhantomData<T>);

/// `T` from a self-contained deserializer, its error discarded.
fn attempt<'de, T, E, D>(deserializer: D) -> Option<T>
where
    T: Deserialize<'de>,
    E: de::Error,
    D: Deserializer<'de, Error = E>,
{
    T::deserialize(deserializer).ok()
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(attempt::<T, E, _>(v.into_deserializer()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(attempt::<T, E, _>(v.into_deserializer()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(attempt::<T, E, _>(v.into_deserializer()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(attempt::<T, E, _>(v.into_deserializer()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(attempt::<T, E, _>(v.into_deserializer()))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(attempt::<T, E, _>(de::value::BorrowedStrDeserializer::new(
            v,
        )))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(attempt::<T, E, _>(v.into_deserializer()))
    }

    fn visit_bytes<E: de::Error>(self, _v: &[u8]) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        lenient(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        lenient(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let value = T::deserialize(ArrayOnly(&mut seq)).ok();
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(value)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let value = T::deserialize(de::value::MapAccessDeserializer::new(&mut map)).ok();
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(value)
    }
}

/// A sequence offered to `T` as an array only. Serde's derived structs also accept an array
/// of their fields in order; an array where an object belongs is a wrong type here.
struct ArrayOnly<A>(A);

impl<'de, A: SeqAccess<'de>> Deserializer<'de> for ArrayOnly<A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_seq(self.0)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        Err(de::Error::invalid_type(de::Unexpected::Seq, &visitor))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

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
    let id = identity(&raw, trigger, message_id);
    Ok(Event {
        trigger,
        id,
        raw: Arc::new(raw),
        view,
    })
}

/// The identity rule described on [`decode`].
fn identity(raw: &Value, trigger: Trigger, message_id: Option<&str>) -> EventId {
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

/// The schema's source; see [`json_schema`].
const SCHEMA_TEXT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schema/access-request-event.schema.json"
));

/// The reference sample, a `RequestApproved` event; see [`sample`].
const SAMPLE_TEXT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schema/sample-event.json"
));

static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(SCHEMA_TEXT).expect("schema/access-request-event.schema.json is JSON")
});

static SAMPLE: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(SAMPLE_TEXT).expect("schema/sample-event.json is JSON"));

/// The event payload's JSON Schema (draft 2020-12).
///
/// Every object allows additional properties (unknown fields are kept); only `event_type` and
/// `data` are required. An object schema without `properties` (`data.custom_fields`) is
/// free-form: any path below it may exist.
pub fn json_schema() -> &'static serde_json::Value {
    &SCHEMA
}

/// A complete built-in sample event for `trigger`, shaped like the vendor's schema.
///
/// All samples are events of one request (same `data.id`) at different `event_time`s, so
/// their derived identities differ. `RequestApproved` is the reference sample unchanged.
pub fn sample(trigger: Trigger) -> serde_json::Value {
    let mut event = SAMPLE.clone();
    event["event_type"] = Value::from(trigger.as_str());
    let data = &mut event["data"];
    let event_time = match trigger {
        Trigger::RequestCreated => {
            data["revocation_date"] = Value::Null;
            data["approvals"][0]["status"] = Value::from("pending");
            1764064797.75
        }
        Trigger::RequestApproved => 1764064800.123456,
        Trigger::RequestRejected => {
            data["revocation_date"] = Value::Null;
            data["approvals"][0]["status"] = Value::from("rejected");
            1764064800.5
        }
        Trigger::RequestGranted => 1764064801.25,
        Trigger::RequestExpired => 1764068400.5,
        Trigger::RequestFailed => {
            data["revocation_date"] = Value::Null;
            1764064801.75
        }
        Trigger::Manual => 1764064900.0,
    };
    event["event_time"] = Value::from(event_time);
    event
}

/// A path a template can name, derived from [`json_schema`]. Listed by `schema --fields` and
/// used by the template linter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldPath {
    /// Handlebars path, array items written `.[0]`: `data.access_groups.[0].integration.name`.
    pub path: String,
    /// The schema's type, alternatives joined with ` | `: `string`, `number | null`.
    pub ty: String,
    /// The schema's description.
    pub description: String,
}

/// Every path the schema describes, parents before children, properties in name order.
/// Nothing is listed below `data.custom_fields`, which is free-form.
pub fn field_paths() -> Vec<FieldPath> {
    let mut out = Vec::new();
    collect_field_paths(json_schema(), "", &mut out);
    out
}

fn collect_field_paths(node: &Value, prefix: &str, out: &mut Vec<FieldPath>) {
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            out.push(field_path(&path, child));
            collect_field_paths(child, &path, out);
        }
    }
    if let Some(items) = node.get("items") {
        let path = format!("{prefix}.[0]");
        out.push(field_path(&path, items));
        collect_field_paths(items, &path, out);
    }
}

fn field_path(path: &str, node: &Value) -> FieldPath {
    let ty = match node.get("type") {
        Some(Value::String(ty)) => ty.clone(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_owned(),
    };
    let description = node
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    FieldPath {
        path: path.to_owned(),
        ty,
        description,
    }
}

/// Whether a path can exist in an event, per the schema. Segments are property names or array
/// indexes (`"0"`, or Handlebars' `"[0]"`), e.g. `["data", "access_groups", "0",
/// "integration", "name"]`. Anything below a free-form object (`data.custom_fields`) is
/// allowed; the empty path (the event itself) is allowed.
pub fn schema_allows_path(path_segments: &[&str]) -> bool {
    let mut node = json_schema();
    for segment in path_segments {
        if is_free_form(node) {
            return true;
        }
        if let Some(child) = node.get("properties").and_then(|p| p.get(*segment)) {
            node = child;
            continue;
        }
        let index = segment
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(segment);
        match node.get("items") {
            Some(items) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
                node = items;
            }
            _ => return false,
        }
    }
    true
}

/// An object schema that lists no properties and does not forbid others: any key may exist.
fn is_free_form(node: &Value) -> bool {
    let is_object = match node.get("type") {
        Some(Value::String(ty)) => ty == "object",
        Some(Value::Array(types)) => types.iter().any(|t| t == "object"),
        _ => false,
    };
    is_object
        && node.get("properties").is_none()
        && node.get("additionalProperties") != Some(&Value::Bool(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(value: &Value) -> Vec<u8> {
        serde_json::to_vec(value).unwrap()
    }

    // --- Trigger -------------------------------------------------------------------------

    #[test]
    fn trigger_names_round_trip_in_both_spellings() {
        for trigger in Trigger::ALL {
            assert_eq!(Trigger::parse(trigger.as_str()), Some(trigger));
            assert_eq!(Trigger::parse(trigger.access_request_name()), Some(trigger));
            assert_eq!(trigger.to_string(), trigger.as_str());
        }
        assert_eq!(
            Trigger::parse("AccessRequestCreated"),
            Some(Trigger::RequestCreated)
        );
    }

    #[test]
    fn trigger_parse_is_exact() {
        for bad in [
            "requestcreated",
            "REQUESTCREATED",
            " RequestCreated",
            "RequestCreated ",
            "AccessManual",
            "Created",
            "",
        ] {
            assert_eq!(Trigger::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn trigger_from_str_error_names_the_value_and_the_choices() {
        let err = "RequestApprove".parse::<Trigger>().unwrap_err();
        assert_eq!(err, UnknownTrigger("RequestApprove".into()));
        assert_eq!(
            err.to_string(),
            "unknown trigger `RequestApprove`, expected one of RequestCreated, RequestApproved, \
             RequestRejected, RequestGranted, RequestExpired, RequestFailed, Manual"
        );
        assert_eq!("Manual".parse::<Trigger>(), Ok(Trigger::Manual));
    }

    #[test]
    fn trigger_serde_uses_the_same_names() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Webhook {
            triggers: Vec<Trigger>,
        }
        let ok: Webhook =
            serde_json::from_str(r#"{"triggers": ["RequestGranted", "AccessRequestExpired"]}"#)
                .unwrap();
        assert_eq!(
            ok.triggers,
            [Trigger::RequestGranted, Trigger::RequestExpired]
        );
        let err = serde_json::from_str::<Webhook>(r#"{"triggers": ["RequestApprove"]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unknown trigger `RequestApprove`, expected one of RequestCreated, "),
            "{err}"
        );
        assert_eq!(
            serde_json::to_value(Trigger::RequestFailed).unwrap(),
            json!("RequestFailed")
        );
    }

    // --- lenient -------------------------------------------------------------------------

    #[derive(Debug, Default, PartialEq, Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "lenient")]
        text: Option<String>,
        #[serde(default, deserialize_with = "lenient")]
        count: Option<u32>,
        #[serde(default, deserialize_with = "lenient")]
        nested: Option<RefView>,
        #[serde(default, deserialize_with = "lenient_vec")]
        list: Vec<RefView>,
        #[serde(default, deserialize_with = "lenient")]
        after: Option<String>,
    }

    /// Decodes `input` both from a parsed `Value` and straight from text.
    fn probe(input: Value) -> Probe {
        let from_value = Probe::deserialize(&input).unwrap();
        let from_text: Probe = serde_json::from_str(&input.to_string()).unwrap();
        assert_eq!(from_value, from_text, "{input}");
        from_value
    }

    #[test]
    fn lenient_keeps_well_typed_values() {
        let p = probe(json!({
            "text": "a", "count": 3, "nested": {"id": "i", "name": "n"},
            "list": [{"id": "x"}], "after": "z"
        }));
        assert_eq!(p.text.as_deref(), Some("a"));
        assert_eq!(p.count, Some(3));
        assert_eq!(p.nested.unwrap().name.as_deref(), Some("n"));
        assert_eq!(p.list.len(), 1);
        assert_eq!(p.list[0].id.as_deref(), Some("x"));
        assert_eq!(p.after.as_deref(), Some("z"));
    }

    #[test]
    fn lenient_turns_missing_null_and_wrong_types_into_none() {
        assert_eq!(probe(json!({})), Probe::default());
        assert_eq!(
            probe(json!({"text": null, "count": null, "nested": null, "list": null})),
            Probe::default()
        );
        let wrong = [
            json!(true),
            json!(-1),
            json!(1.5),
            json!(u64::MAX),
            json!([1, "two", {"three": 3}]),
            json!({"a": [1, 2], "b": {"c": null}}),
        ];
        for value in wrong {
            let p = probe(json!({
                "text": value, "count": value, "nested": value, "list": value,
                "after": "still read"
            }));
            assert_eq!(p.text, None, "{value}");
            assert_eq!(p.count, None, "{value}");
            // An object is the right type for `nested`, with none of its fields.
            let nested = value.is_object().then(RefView::default);
            assert_eq!(p.nested, nested, "{value}");
            // An array is the right type for `list`; its non-object entries read as defaults.
            let entries = value.as_array().map_or(0, Vec::len);
            assert_eq!(p.list, vec![RefView::default(); entries], "{value}");
            // The skipped value was read to its end: the next field is intact.
            assert_eq!(p.after.as_deref(), Some("still read"), "{value}");
        }
        let p = probe(json!({"text": 7, "count": "7", "nested": "n", "list": {"id": "x"}}));
        assert_eq!(p, Probe::default());
    }

    #[test]
    fn lenient_vec_keeps_indexes_aligned() {
        let p = probe(json!({"list": [1, {"id": "b"}, "c", {"id": 4, "name": "d"}]}));
        assert_eq!(
            p.list,
            [
                RefView::default(),
                RefView {
                    id: Some("b".into()),
                    name: None
                },
                RefView::default(),
                RefView {
                    id: None,
                    name: Some("d".into())
                },
            ]
        );
    }

    #[test]
    fn view_reads_the_matching_fields() {
        let view = EventView::deserialize(&sample(Trigger::RequestApproved)).unwrap();
        let data = view.data.unwrap();
        assert_eq!(data.id.as_deref(), Some("req-5f2c9a"));
        assert_eq!(data.friendly_id.as_deref(), Some("AR-1042"));
        let requester = data.requester.unwrap();
        assert_eq!(requester.email.as_deref(), Some("dana@example.com"));
        assert_eq!(
            data.access_flow.unwrap().name.as_deref(),
            Some("Production DB access")
        );
        assert_eq!(
            data.access_bundle.unwrap().name.as_deref(),
            Some("DBA bundle")
        );
        let group = &data.access_groups[0];
        let integration = group.integration.as_ref().unwrap();
        assert_eq!(integration.kind.as_deref(), Some("postgresql"));
        assert_eq!(integration.name.as_deref(), Some("prod-postgres"));
        assert_eq!(group.resource_types[0].name.as_deref(), Some("Database"));
        let unit = &group.access_units[0];
        let resource = unit.resource.as_ref().unwrap();
        assert_eq!(resource.path.as_deref(), Some("prod-postgres/orders"));
        assert_eq!(
            resource.kind.as_ref().unwrap().display_path.as_deref(),
            Some("Postgresql/Database")
        );
        assert_eq!(
            unit.permission.as_ref().unwrap().name.as_deref(),
            Some("readonly")
        );
    }

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

    // --- decode --------------------------------------------------------------------------

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

    // --- schema --------------------------------------------------------------------------

    fn type_allows(schema: &Value, value: &Value) -> bool {
        let name = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_f64() => "number",
            Value::Number(_) => "integer",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let allowed: Vec<&str> = match &schema["type"] {
            Value::String(ty) => vec![ty.as_str()],
            Value::Array(types) => types.iter().filter_map(Value::as_str).collect(),
            _ => return true,
        };
        allowed.contains(&name) || (name == "integer" && allowed.contains(&"number"))
    }

    /// Asserts that every path present in `value` is described by `schema`, with a type the
    /// schema allows and a value its `enum` lists.
    fn assert_described(value: &Value, schema: &Value, path: &str) {
        assert!(
            type_allows(schema, value),
            "{path}: {value} is not a {}",
            schema["type"]
        );
        if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
            assert!(
                choices.contains(value),
                "{path}: {value} is not in the enum"
            );
        }
        match value {
            Value::Object(map) => {
                if is_free_form(schema) {
                    return;
                }
                for key in schema["required"].as_array().into_iter().flatten() {
                    assert!(map.contains_key(key.as_str().unwrap()), "{path}.{key}");
                }
                for (key, child) in map {
                    let child_schema = schema["properties"]
                        .get(key)
                        .unwrap_or_else(|| panic!("{path}.{key} is not in the schema"));
                    assert_described(child, child_schema, &format!("{path}.{key}"));
                }
            }
            Value::Array(items) => {
                let items_schema = schema
                    .get("items")
                    .unwrap_or_else(|| panic!("{path} has no `items` in the schema"));
                for (i, item) in items.iter().enumerate() {
                    assert_described(item, items_schema, &format!("{path}.[{i}]"));
                }
            }
            _ => {}
        }
    }

    #[test]
    fn schema_parses_and_declares_draft_2020_12() {
        let schema: Value = serde_json::from_str(SCHEMA_TEXT).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(json_schema(), &schema);
        assert_eq!(schema["required"], json!(["event_type", "data"]));
    }

    /// Every property has a type and a description, every object allows unknown fields, and
    /// nothing below the top level is required.
    #[test]
    fn schema_is_described_and_open_everywhere() {
        fn walk(node: &Value, path: &str) {
            assert!(node.get("type").is_some(), "{path}: no type");
            assert!(
                node["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{path}: no description"
            );
            if type_allows(node, &json!({})) {
                assert_eq!(node["additionalProperties"], json!(true), "{path}");
            }
            if !path.is_empty() {
                assert!(node.get("required").is_none(), "{path}: required");
            }
            for (name, child) in node["properties"].as_object().into_iter().flatten() {
                walk(child, &format!("{path}.{name}"));
            }
            if let Some(items) = node.get("items") {
                walk(items, &format!("{path}.[0]"));
            }
        }
        walk(json_schema(), "");
    }

    #[test]
    fn schema_event_type_enum_matches_the_triggers() {
        let listed = json_schema()["properties"]["event_type"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect::<Vec<_>>();
        let expected = Trigger::ALL
            .map(Trigger::as_str)
            .into_iter()
            .chain(Trigger::ALL.map(Trigger::access_request_name))
            .collect::<Vec<_>>();
        assert_eq!(listed, expected);
    }

    #[test]
    fn schema_nullability_follows_the_reference() {
        let data = &json_schema()["properties"]["data"]["properties"];
        assert_eq!(data["access_bundle"]["type"], json!(["object", "null"]));
        assert_eq!(data["revocation_date"]["type"], json!(["number", "null"]));
        assert_eq!(data["custom_fields"]["type"], "object");
        assert!(is_free_form(&data["custom_fields"]));
    }

    #[test]
    fn reference_sample_validates_against_the_schema() {
        let reference: Value = serde_json::from_str(SAMPLE_TEXT).unwrap();
        assert_described(&reference, json_schema(), "");
    }

    // --- samples -------------------------------------------------------------------------

    #[test]
    fn every_sample_decodes_to_its_trigger_with_a_distinct_id() {
        let mut ids = Vec::new();
        for trigger in Trigger::ALL {
            let event = sample(trigger);
            assert_described(&event, json_schema(), "");
            let decoded = decode(&encode(&event), None).unwrap();
            assert_eq!(decoded.trigger, trigger);
            assert_eq!(event["data"]["id"], "req-5f2c9a", "one request's lifecycle");
            assert!(!ids.contains(&decoded.id), "{trigger}: {}", decoded.id);
            ids.push(decoded.id);
        }
    }

    #[test]
    fn samples_reflect_their_trigger() {
        let reference: Value = serde_json::from_str(SAMPLE_TEXT).unwrap();
        assert_eq!(sample(Trigger::RequestApproved), reference);
        let status = |t| sample(t)["data"]["approvals"][0]["status"].clone();
        assert_eq!(status(Trigger::RequestCreated), "pending");
        assert_eq!(status(Trigger::RequestRejected), "rejected");
        for trigger in [Trigger::RequestGranted, Trigger::RequestExpired] {
            assert!(sample(trigger)["data"]["revocation_date"].is_number());
        }
        for trigger in [
            Trigger::RequestCreated,
            Trigger::RequestRejected,
            Trigger::RequestFailed,
        ] {
            assert!(sample(trigger)["data"]["revocation_date"].is_null());
        }
    }

    // --- field paths ---------------------------------------------------------------------

    #[test]
    fn field_paths_cover_the_reference_table() {
        let paths = field_paths();
        let find = |p: &str| paths.iter().find(|f| f.path == p);
        let email = find("data.requester.email").expect("data.requester.email");
        assert_eq!(email.ty, "string");
        assert!(!email.description.is_empty());
        assert!(find("data.access_groups.[0].access_units.[0].permission.name").is_some());
        assert!(find("data.requester.mail").is_none());
        assert_eq!(find("data.access_bundle").unwrap().ty, "object | null");
        assert_eq!(find("data.access_groups").unwrap().ty, "array");
        let reference = [
            "event_type",
            "event_time",
            "data.id",
            "data.friendly_id",
            "data.requester.id",
            "data.requester.name",
            "data.grantee.id",
            "data.grantee.source_id",
            "data.grantee.name",
            "data.grantee.type",
            "data.justification",
            "data.creation_date",
            "data.revocation_date",
            "data.access_flow.id",
            "data.access_flow.name",
            "data.access_bundle.id",
            "data.access_bundle.name",
            "data.access_duration_in_seconds",
            "data.access_groups.[0].integration.id",
            "data.access_groups.[0].integration.type",
            "data.access_groups.[0].integration.name",
            "data.access_groups.[0].resource_types.[0].id",
            "data.access_groups.[0].resource_types.[0].name",
            "data.access_groups.[0].resource_types.[0].display_path",
            "data.access_groups.[0].access_units.[0].resource.id",
            "data.access_groups.[0].access_units.[0].resource.name",
            "data.access_groups.[0].access_units.[0].resource.path",
            "data.access_groups.[0].access_units.[0].resource.type.id",
            "data.access_groups.[0].access_units.[0].resource.type.name",
            "data.access_groups.[0].access_units.[0].resource.type.display_path",
            "data.access_groups.[0].access_units.[0].permission.id",
            "data.access_groups.[0].access_units.[0].permission.name",
            "data.approvals_logical_relation",
            "data.approvals.[0].name",
            "data.approvals.[0].type",
            "data.approvals.[0].status",
            "data.approvals.[0].approver.id",
            "data.approvals.[0].approver.name",
            "data.approvals.[0].approver.email",
            "data.custom_fields",
        ];
        for path in reference {
            assert!(find(path).is_some(), "{path} missing");
        }
        for field in &paths {
            let segments: Vec<&str> = field.path.split('.').collect();
            assert!(schema_allows_path(&segments), "{}", field.path);
        }
    }

    #[test]
    fn schema_allows_exactly_the_described_paths() {
        let allows = |path: &str| {
            let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
            schema_allows_path(&segments)
        };
        for ok in [
            "",
            "event_type",
            "data",
            "data.access_bundle.name",
            "data.access_groups",
            "data.access_groups.0.integration.name",
            "data.access_groups.[3].integration.name",
            "data.access_groups.0.access_units.12.resource.type.display_path",
            "data.custom_fields",
            "data.custom_fields.ticket",
            "data.custom_fields.anything.0.deeper",
        ] {
            assert!(allows(ok), "{ok} should be allowed");
        }
        for bad in [
            "data.requester.mail",
            "eventType",
            "data.access_groups.integration",
            "data.access_groups.first.integration",
            "data.access_groups.[].integration",
            "data.access_groups.-1.integration",
            "data.id.0",
            "data.requester.email.domain",
            "event_time.fraction",
            "data.access_bundle.0",
        ] {
            assert!(!allows(bad), "{bad} should be rejected");
        }
    }

    /// Every path the seed's Logz.io template names is reachable.
    #[test]
    fn seed_template_paths_are_allowed() {
        for path in [
            "event_type",
            "event_time",
            "data.id",
            "data.friendly_id",
            "data.requester.id",
            "data.requester.name",
            "data.requester.email",
            "data.justification",
            "data.creation_date",
            "data.access_flow.id",
            "data.access_flow.name",
            "data.access_bundle.id",
            "data.access_groups.[0].integration.name",
            "data.access_groups.[0].integration.type",
        ] {
            let segments: Vec<&str> = path.split('.').collect();
            assert!(schema_allows_path(&segments), "{path}");
        }
    }
}
