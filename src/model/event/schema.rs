//! The event payload's JSON Schema, embedded at build time: the paths it describes (for
//! templates) and [`check`], which lists every way a document breaks it (for `publish`).
//!
//! [`check`] implements only the keywords the schema uses: `type` (one or several), `enum`,
//! `required`, `properties`, `items` and `additionalProperties` (always `true` there, so
//! unknown fields pass). A schema change that uses another keyword must extend [`check`]; a
//! unit test fails if the schema gains a keyword it does not know.

use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::sync::LazyLock;

/// The schema's source; see [`json_schema`].
const SCHEMA_TEXT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schema/access-request-event.schema.json"
));

static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(SCHEMA_TEXT).expect("schema/access-request-event.schema.json is JSON")
});

/// The event payload's JSON Schema (draft 2020-12).
///
/// Every object allows additional properties (unknown fields are kept); only `event_type` and
/// `data` are required. An object schema without `properties` (`data.custom_fields`) is
/// free-form: any path below it may exist.
pub fn json_schema() -> &'static serde_json::Value {
    &SCHEMA
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
            let path = join(prefix, name);
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
    let ty = types(node).map_or_else(|| "any".to_owned(), |types| types.join(" | "));
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
    types(node).is_some_and(|types| types.contains(&"object"))
        && node.get("properties").is_none()
        && node.get("additionalProperties") != Some(&Value::Bool(false))
}

/// The JSON types a schema node allows: its `type`, one name or a list. `None` when the node
/// has no `type` (or one that is neither), which allows any value.
fn types(node: &Value) -> Option<Vec<&str>> {
    match node.get("type")? {
        Value::String(ty) => Some(vec![ty.as_str()]),
        Value::Array(types) => Some(types.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

/// `path.name`, or `name` at the top.
fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// One way a document breaks the event schema. Displays as the text `publish` prints for it,
/// `path: problem`, e.g. `data.requester.email: expected string, found number`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// Where: property names joined with `.`, array items as `[i]`, e.g.
    /// `data.access_groups[0].integration`. Empty for the document itself, which displays as
    /// `the event`.
    pub path: String,
    /// What is wrong there.
    pub problem: SchemaProblem,
}

/// What is wrong with one value of a document, per the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaProblem {
    /// The value's JSON type is none of those the schema allows.
    #[error("expected {}, found {found}", expected.join(" or "))]
    WrongType {
        /// The types the schema allows, in its order.
        expected: Vec<&'static str>,
        /// The value's type.
        found: &'static str,
    },
    /// The value is not in the schema's `enum`. Holds its JSON text, cut to 64 characters.
    #[error("{0} is not one of the allowed values")]
    NotAllowed(String),
    /// A required property is missing; the violation's path names it.
    #[error("is required")]
    Missing,
}

/// How many characters of a value outside an `enum` [`SchemaProblem::NotAllowed`] keeps.
const MAX_SHOWN_VALUE: usize = 64;

impl fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.path.is_empty() {
            "the event"
        } else {
            &self.path
        };
        write!(f, "{at}: {}", self.problem)
    }
}

/// Every way `document` breaks the event schema; empty when it conforms. A value's own
/// problems come before those below it, properties in name order and items in index order.
/// A value of the wrong type is one violation, and nothing below it is checked.
pub fn check(document: &Value) -> Vec<SchemaViolation> {
    let mut violations = Vec::new();
    check_value(json_schema(), document, "", &mut violations);
    violations
}

/// [`check`] of `value`, found at `path`, against the schema node `schema`.
fn check_value(
    schema: &'static Value,
    value: &Value,
    path: &str,
    violations: &mut Vec<SchemaViolation>,
) {
    let violation = |problem| SchemaViolation {
        path: path.to_owned(),
        problem,
    };
    if let Some(expected) = types(schema)
        && !expected.is_empty()
        && !expected.iter().any(|ty| has_type(value, ty))
    {
        let found = type_name(value);
        violations.push(violation(SchemaProblem::WrongType { expected, found }));
        return;
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(value)
    {
        let shown = value.to_string().chars().take(MAX_SHOWN_VALUE).collect();
        violations.push(violation(SchemaProblem::NotAllowed(shown)));
    }
    if let Value::Object(object) = value {
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    violations.push(SchemaViolation {
                        path: join(path, name),
                        problem: SchemaProblem::Missing,
                    });
                }
            }
        }
        if let Some(Value::Object(properties)) = schema.get("properties") {
            for (name, sub) in properties {
                if let Some(child) = object.get(name) {
                    check_value(sub, child, &join(path, name), violations);
                }
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check_value(item_schema, item, &format!("{path}[{i}]"), violations);
        }
    }
}

/// Whether `value` is of the schema type `ty`; an unknown type name allows anything.
fn has_type(value: &Value, ty: &str) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    }
}

/// The JSON type of `value`, as [`SchemaProblem::WrongType`] reports it (no `integer`).
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::samples::SAMPLE_TEXT;
    use crate::model::event::{Trigger, decode, encode, sample};
    use serde_json::json;

    // --- the schema, and the samples it describes ----------------------------------------

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

    // --- check ---------------------------------------------------------------------------

    /// Keywords [`check`] understands, plus annotations it may ignore.
    const KNOWN_KEYWORDS: &[&str] = &[
        "$schema",
        "title",
        "description",
        "examples",
        "type",
        "enum",
        "required",
        "properties",
        "items",
        "additionalProperties",
    ];

    /// The violations of `document` as the lines `publish` prints.
    fn lines(document: &Value) -> Vec<String> {
        check(document).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_sample_is_valid() {
        for trigger in Trigger::ALL {
            assert_eq!(lines(&sample(trigger)), Vec::<String>::new());
        }
    }

    #[test]
    fn problems_name_the_path() {
        let mut event = sample(Trigger::RequestApproved);
        event["event_time"] = json!("yesterday");
        event["data"]["requester"]["email"] = json!(42);
        event["data"]["access_groups"][0]["integration"] = json!([]);
        event["event_type"] = json!("RequestApprove");
        let problems = lines(&event);
        assert_eq!(
            problems,
            vec![
                "data.access_groups[0].integration: expected object, found array",
                "data.requester.email: expected string, found number",
                "event_time: expected number, found string",
                "event_type: \"RequestApprove\" is not one of the allowed values",
            ],
            "{problems:#?}"
        );
        assert_eq!(lines(&json!({"data": {}})), vec!["event_type: is required"]);
        assert_eq!(
            lines(&json!([1])),
            vec!["the event: expected object, found array"]
        );
    }

    #[test]
    fn violations_are_typed() {
        assert_eq!(
            check(&json!({"event_type": "Manual", "data": {"requester": {"id": 1}}})),
            [SchemaViolation {
                path: "data.requester.id".into(),
                problem: SchemaProblem::WrongType {
                    expected: vec!["string"],
                    found: "number"
                },
            }]
        );
        assert_eq!(
            check(&json!({"event_type": "Manual"})),
            [SchemaViolation {
                path: "data".into(),
                problem: SchemaProblem::Missing,
            }]
        );
        let long = "x".repeat(100);
        let [violation] = &check(&json!({"event_type": long, "data": {}}))[..] else {
            panic!("one violation")
        };
        assert_eq!(violation.path, "event_type");
        let SchemaProblem::NotAllowed(shown) = &violation.problem else {
            panic!("{violation:?}")
        };
        assert_eq!(shown.chars().count(), MAX_SHOWN_VALUE);
    }

    #[test]
    fn nulls_and_unknown_fields_are_allowed_where_the_schema_says() {
        let mut event = sample(Trigger::RequestCreated);
        event["data"]["access_bundle"] = Value::Null;
        event["data"]["something_new"] = json!({"x": 1});
        assert_eq!(lines(&event), Vec::<String>::new());
    }

    #[test]
    fn the_schema_uses_only_known_keywords() {
        fn walk(node: &Value, unknown: &mut Vec<String>) {
            let Value::Object(map) = node else { return };
            for (key, child) in map {
                if !KNOWN_KEYWORDS.contains(&key.as_str()) {
                    unknown.push(key.clone());
                }
                match key.as_str() {
                    "properties" => {
                        if let Value::Object(props) = child {
                            props.values().for_each(|p| walk(p, unknown));
                        }
                    }
                    "items" | "additionalProperties" => walk(child, unknown),
                    _ => {}
                }
            }
        }
        let mut unknown = Vec::new();
        walk(json_schema(), &mut unknown);
        assert_eq!(unknown, Vec::<String>::new());
    }
}
