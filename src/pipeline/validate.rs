//! Validates a JSON document against the event's JSON Schema ([`crate::pipeline::event::json_schema`]).
//!
//! Only the keywords that schema uses are implemented: `type` (one or several), `enum`,
//! `required`, `properties`, `items` and `additionalProperties` (always `true` there, so
//! unknown fields pass). A schema change that uses another keyword must extend this module;
//! a unit test fails if the schema gains a keyword it does not know.

use serde_json::Value;

/// Keywords this validator understands, plus annotations it may ignore.
#[cfg(test)]
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

/// Every way `document` breaks the event schema, as `path: problem` lines (empty when valid).
pub fn validate_event(document: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    check(
        crate::pipeline::event::json_schema(),
        document,
        "",
        &mut problems,
    );
    problems
}

fn check(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    let at = if path.is_empty() { "the event" } else { path };
    if let Some(expected) = schema.get("type") {
        let allowed: Vec<&str> = match expected {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.is_empty() && !allowed.iter().any(|t| has_type(value, t)) {
            problems.push(format!(
                "{at}: expected {}, found {}",
                allowed.join(" or "),
                type_name(value)
            ));
            return;
        }
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(value)
    {
        let shown: String = value.to_string().chars().take(64).collect();
        problems.push(format!("{at}: {shown} is not one of the allowed values"));
    }
    if let Value::Object(object) = value {
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    problems.push(format!("{}: is required", join(path, name)));
                }
            }
        }
        if let Some(Value::Object(properties)) = schema.get("properties") {
            for (name, sub) in properties {
                if let Some(child) = object.get(name) {
                    check(sub, child, &join(path, name), problems);
                }
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{path}[{i}]"), problems);
        }
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

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
    use crate::pipeline::event::{Trigger, sample};
    use serde_json::json;

    #[test]
    fn every_sample_is_valid() {
        for trigger in Trigger::ALL {
            assert_eq!(validate_event(&sample(trigger)), Vec::<String>::new());
        }
    }

    #[test]
    fn problems_name_the_path() {
        let mut event = sample(Trigger::RequestApproved);
        event["event_time"] = json!("yesterday");
        event["data"]["requester"]["email"] = json!(42);
        event["data"]["access_groups"][0]["integration"] = json!([]);
        event["event_type"] = json!("RequestApprove");
        let problems = validate_event(&event);
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
        assert_eq!(
            validate_event(&json!({"data": {}})),
            vec!["event_type: is required"]
        );
        assert_eq!(
            validate_event(&json!([1])),
            vec!["the event: expected object, found array"]
        );
    }

    #[test]
    fn nulls_and_unknown_fields_are_allowed_where_the_schema_says() {
        let mut event = sample(Trigger::RequestCreated);
        event["data"]["access_bundle"] = Value::Null;
        event["data"]["something_new"] = json!({"x": 1});
        assert_eq!(validate_event(&event), Vec::<String>::new());
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
        walk(crate::pipeline::event::json_schema(), &mut unknown);
        assert_eq!(unknown, Vec::<String>::new());
    }
}
