use serde_json::{Value, json};

use super::nesting::KNOWN_HELPERS;
use super::*;

/// The Logz.io body template, verbatim from the vendor's guide (including its
/// `access_bundle_name` that reads `data.access_bundle.id`).
const SEED: &str = r#"{"message": "{ \"event_type\": \"{{ event_type }}\", \"event_time\": \"{{ event_time }}\", \"id\": \"{{ data.id }}\", \"friendly_id\": \"{{ data.friendly_id }}\", \"requester_id\": \"{{ data.requester.id }}\", \"requester_name\": \"{{ data.requester.name }}\", \"requester_email\": \"{{ data.requester.email }}\", \"justification\": \"{{ data.justification }}\", \"creation_date\": \"{{ data.creation_date }}\", \"access_flow_id\": \"{{ data.access_flow.id }}\", \"access_flow_name\": \"{{ data.access_flow.name }}\", \"access_bundle_id\": \"{{ data.access_bundle.id }}\", \"access_bundle_name\": \"{{ data.access_bundle.id }}\", \"access_groups_integration_name\": \"{{ data.access_groups.[0].integration.name }}\", \"access_groups_integration_type\": \"{{ data.access_groups.[0].integration.type }}\"}", "type": "Apono"}"#;

/// The reference sample event.
const SAMPLE: &str = r#"{
  "event_type": "RequestApproved",
  "event_time": 1764064800.123456,
  "data": {
    "id": "req-5f2c9a",
    "friendly_id": "AR-1042",
    "requester": {"id": "usr-17", "name": "Dana Scully", "email": "dana@example.com"},
    "grantee": {"id": "usr-17", "source_id": "dana@example.com", "name": "Dana Scully", "type": "user"},
    "justification": "Investigating INC-2211: \"orders\" table is slow",
    "creation_date": 1764064797.62,
    "revocation_date": 1764068400.0,
    "access_flow": {"id": "af-1", "name": "Production DB access"},
    "access_bundle": {"id": "ab-1", "name": "DBA bundle"},
    "access_duration_in_seconds": 3600,
    "access_groups": [
      {
        "integration": {"id": "int-1", "type": "postgresql", "name": "prod-postgres"},
        "resource_types": [{"id": "postgresql-database", "name": "Database", "display_path": "Postgresql/Database"}],
        "access_units": [
          {
            "resource": {"id": "res-1", "name": "orders", "path": "prod-postgres/orders",
                         "type": {"id": "postgresql-database", "name": "Database", "display_path": "Postgresql/Database"}},
            "permission": {"id": "perm-1", "name": "readonly"}
          }
        ]
      }
    ],
    "approvals_logical_relation": "OR",
    "approvals": [
      {"name": "DBA on call", "type": "user", "status": "approved",
       "approver": {"id": "usr-9", "name": "Fox Mulder", "email": "fox@example.com"}}
    ],
    "custom_fields": {}
  }
}"#;

const LENIENT: TemplateOptions = TemplateOptions {
    strict: false,
    json: false,
};
const STRICT: TemplateOptions = TemplateOptions {
    strict: true,
    json: false,
};
const JSON_BODY: TemplateOptions = TemplateOptions {
    strict: false,
    json: true,
};

fn sample() -> Value {
    serde_json::from_str(SAMPLE).unwrap()
}

fn compile(source: &str, options: TemplateOptions) -> Template {
    Template::compile(source, options).unwrap_or_else(|e| panic!("{source}: {e}"))
}

fn render(source: &str, event: &Value) -> String {
    compile(source, LENIENT).render(event).unwrap()
}

fn depths(source: &str) -> Vec<usize> {
    compile(source, LENIENT)
        .analysis
        .mustaches
        .iter()
        .map(|m| m.depth)
        .collect()
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// ~30 hostile texts: every control character, quotes and backslashes in every combination
/// that matters, separators, non-ASCII, and attempts to inject a field.
fn hostile_texts() -> Vec<String> {
    let mut texts: Vec<String> = (0u32..0x20)
        .map(|c| format!("a{}b", char::from_u32(c).unwrap()))
        .collect();
    texts.extend(
        [
            "",
            "\"",
            "\\",
            "\\\"",
            "\\\\\"",
            "\\\\\\\"",
            "\"\"\"",
            "\\\\\\",
            "line1\nline2\r\n\ttabbed",
            "\u{2028}\u{2029}",
            "é ü 中文 🚀 \u{7f} \u{feff}",
            "\", \"requester_email\": \"x",
            "\\\", \\\"requester_email\\\": \\\"x",
            "\"}, \"type\": \"evil\", \"x\": {\"",
            "\" } ",
            "{{ data.id }}",
            "</script><script>alert(1)</script> & ' <b>",
            "\\u0022 \\n \\\\u0022",
            "trailing backslash \\",
            "}\", \"type\": \"x",
            "\u{0}\u{1f}\"\\\u{2028}",
        ]
        .map(str::to_owned),
    );
    texts
}

#[test]
fn seed_template_renders_the_exact_logzio_body() {
    let body = compile(SEED, JSON_BODY).render(&sample()).unwrap();
    let expected = r#"{"message": "{ \"event_type\": \"RequestApproved\", \"event_time\": \"1764064800.123456\", \"id\": \"req-5f2c9a\", \"friendly_id\": \"AR-1042\", \"requester_id\": \"usr-17\", \"requester_name\": \"Dana Scully\", \"requester_email\": \"dana@example.com\", \"justification\": \"Investigating INC-2211: \\\"orders\\\" table is slow\", \"creation_date\": \"1764064797.62\", \"access_flow_id\": \"af-1\", \"access_flow_name\": \"Production DB access\", \"access_bundle_id\": \"ab-1\", \"access_bundle_name\": \"ab-1\", \"access_groups_integration_name\": \"prod-postgres\", \"access_groups_integration_type\": \"postgresql\"}", "type": "Apono"}"#;
    assert_eq!(body, expected);

    let outer = parse(&body);
    assert_eq!(outer["type"], "Apono");
    let inner = parse(outer["message"].as_str().unwrap());
    assert_eq!(
        inner["justification"],
        "Investigating INC-2211: \"orders\" table is slow"
    );
    assert_eq!(inner["event_time"], "1764064800.123456");
}

#[test]
fn seed_template_values_are_at_depth_two() {
    assert_eq!(depths(SEED), vec![2; 15]);
}

#[test]
fn hostile_justifications_stay_one_exact_field() {
    let template = compile(SEED, JSON_BODY);
    let benign = parse(
        parse(&template.render(&sample()).unwrap())["message"]
            .as_str()
            .unwrap(),
    );
    let benign_keys: Vec<&String> = benign.as_object().unwrap().keys().collect();

    for text in hostile_texts() {
        let mut event = sample();
        event["data"]["justification"] = Value::String(text.clone());
        let body = template
            .render(&event)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        // (a) the body is JSON, (b) so is its message, (c) the field is the exact text.
        let outer = parse(&body);
        assert_eq!(outer.as_object().unwrap().len(), 2, "{text:?}: {body}");
        assert_eq!(outer["type"], "Apono", "{text:?}");
        let inner = parse(outer["message"].as_str().unwrap());
        assert_eq!(
            inner["justification"],
            Value::String(text.clone()),
            "{body}"
        );
        let keys: Vec<&String> = inner.as_object().unwrap().keys().collect();
        assert_eq!(keys, benign_keys, "{text:?}: {body}");
        assert_eq!(inner["requester_email"], "dana@example.com", "{text:?}");
    }
}

#[test]
fn hostile_values_at_depth_one_and_three_round_trip() {
    let depth1 = compile(r#"{"j": "{{ v }}", "n": 1}"#, JSON_BODY);
    let depth3 = compile(
        r#"{"a": "{\"b\": \"{\\\"c\\\": \\\"{{ v }}\\\", \\\"d\\\": 1}\", \"e\": 2}", "f": 3}"#,
        JSON_BODY,
    );
    assert_eq!(depth3.analysis.mustaches[0].depth, 3);
    for text in hostile_texts() {
        let event = json!({ "v": text });
        let one = parse(&depth1.render(&event).unwrap());
        assert_eq!(one, json!({"j": text, "n": 1}));

        let body = depth3.render(&event).unwrap();
        let level1 = parse(&body);
        assert_eq!(level1["f"], 3, "{body}");
        let level2 = parse(level1["a"].as_str().unwrap());
        assert_eq!(level2["e"], 2, "{body}");
        let level3 = parse(level2["b"].as_str().unwrap());
        assert_eq!(level3, json!({"c": text, "d": 1}), "{body}");
    }
}

#[test]
fn depth_is_read_from_the_literal_text() {
    // Depth 0: a number outside any string, also after a string closes.
    assert_eq!(depths(r#"{"n": {{ n }}}"#), vec![0]);
    assert_eq!(
        depths(r#"{"a": "x", "b": {{ b }}, "c": "{{ c }}"}"#),
        vec![0, 1]
    );
    // Depth 1: inside a plain string.
    assert_eq!(
        depths(r#"{"s": "{{ s }}", "t": "a {{ t }} b"}"#),
        vec![1, 1]
    );
    // Depth 2: inside a string inside a string; and back to 1 after the inner one closes.
    assert_eq!(
        depths(r#"{"m": "{\"k\": \"{{ k }}\", \"n\": {{ n }}}", "o": {{ o }}}"#),
        vec![2, 1, 0]
    );
    // Depth 3 and 4.
    assert_eq!(
        depths(r#""{\"a\": \"{\\\"b\\\": \\\"{{ b }}\\\"}\"}""#),
        vec![3]
    );
    assert_eq!(
        depths(r#""\"\\\"\\\\\\\"{{ x }}\\\\\\\"\\\"\"" {{ y }}"#),
        vec![4, 0]
    );
    // An escaped backslash before a closing quote still closes (`"C:\\"`).
    assert_eq!(depths(r#"{"p": "C:\\", "n": {{ n }}}"#), vec![0]);
    // A quote of another level is plain text: `\"` outside strings, `"` at depth 2.
    assert_eq!(depths(r#"\" {{ a }}"#), vec![0]);
    assert_eq!(depths(r#""\"" {{ a }}"#), vec![2]);
    // Tags are opaque: quotes inside helper arguments and comments do not count.
    assert_eq!(
        depths(r#""{{ lookup data "k" }}{{! " }}{{ x }}""#),
        vec![1, 1]
    );
    // Text is read in source order through blocks.
    assert_eq!(
        depths(r#"[{{#each items}}"{{ this }}"{{#unless @last}}, {{/unless}}{{/each}}] {{ n }}"#),
        vec![1, 0]
    );
}

#[test]
fn whitespace_control_and_escaped_mustaches_still_work() {
    let event = json!({"v": "a\"b", "w": 1});
    assert_eq!(
        render(r#""{\"k\": \"  {{~ v ~}}  \"}""#, &event),
        r#""{\"k\": \"a\\\"b\"}""#
    );
    assert_eq!(render("[ {{~ w ~}} ]", &event), "[1]");
    assert_eq!(render(r#""\{{ v }}""#, &event), r#""{{ v }}""#);
}

#[test]
fn triple_stash_is_raw_outside_strings_and_refused_inside_them() {
    let event = json!({"v": "a\"b", "n": 5});
    let t = compile(r#"{"n": {{{ n }}}, "m": {{& n }}}"#, LENIENT);
    assert!(t.analysis.mustaches.iter().all(|m| m.raw && m.depth == 0));
    assert_eq!(t.render(&event).unwrap(), r#"{"n": 5, "m": 5}"#);
    assert_eq!(render("[{{{ v }}}]", &event), "[a\"b]");
    for (source, column) in [
        (r#""{{{ v }}}""#, 2),
        (r#""{{& v }}""#, 2),
        (r#"{"k": "{\"j\": \"{{{ v }}}\"}"}"#, 18),
    ] {
        let err = Template::compile(source, LENIENT).unwrap_err().0;
        assert!(
            err.starts_with(&format!(
                "line 1, column {column}: `{{{{{{ }}}}}}` (or `{{{{& }}}}`) inside a JSON string"
            )),
            "{source}: {err}"
        );
        assert!(err.contains("unescaped"), "{err}");
    }
}

/// The error of compiling `source`, which must fail.
fn refused(source: &str) -> String {
    match Template::compile(source, LENIENT) {
        Ok(_) => panic!("compiled, but should be refused: {source}"),
        Err(e) => {
            assert!(!e.0.contains('\n'), "{e}");
            e.0
        }
    }
}

#[test]
fn json_unicode_escapes_of_quote_and_backslash_are_refused() {
    for (source, at, escape) in [
        (
            r#"{"m": "{\u0022k\u0022: 1}"}"#,
            "line 1, column 9: ",
            r"\u0022",
        ),
        (r#"{"m": "a\u005cb"}"#, "line 1, column 9: ", r"\u005c"),
        (r#"{"m": "a\u005Cb"}"#, "line 1, column 9: ", r"\u005C"),
        (
            "{\"m\":\n  \"ok \\\\u0022\"}",
            "line 2, column 8: ",
            r"\u0022",
        ),
        (r#""{{ v }} \u0022""#, "line 1, column 10: ", r"\u0022"),
        // Split by a comment, which writes nothing: still one escape.
        (r#""\u00{{! c }}22""#, "line 1, column 14: ", r"\u0022"),
    ] {
        let err = refused(source);
        assert!(
            err.starts_with(&format!("{at}`{escape}` is a JSON escape of ")),
            "{source}: {err}"
        );
    }
    // Other unicode escapes are plain text.
    let event = json!({"v": "x"});
    let body = compile(
        r#"{"m": "\u0041\u00e9 {\"k\": \"{{ v }}\u2028\"}"}"#,
        JSON_BODY,
    )
    .render(&event)
    .unwrap();
    let inner = parse(
        parse(&body)["m"]
            .as_str()
            .unwrap()
            .trim_start_matches("Aé "),
    );
    assert_eq!(inner["k"], "x\u{2028}");
}

#[test]
fn backslashes_before_a_tag_must_be_whole_escapes() {
    // handlebars drops one backslash of a run right before `{{`: `\\{{` writes `\` + tag.
    for (source, at) in [
        (
            r#""\\{{ v }}""#,
            "line 1, column 4: 1 backslash(es) right before `{{` inside a JSON string of depth 1",
        ),
        (
            r#""\"\\\{{ v }}\"""#,
            "line 1, column 7: 2 backslash(es) right before `{{` inside a JSON string of depth 2",
        ),
        (
            r#"\\{{ v }}"#,
            "line 1, column 3: 1 backslash(es) right before `{{` outside any JSON string",
        ),
        (
            r#""\\{{#if v}}x{{/if}}""#,
            "line 1, column 4: 1 backslash(es)",
        ),
        (
            r#""{{#if v}}x\\{{/if}}""#,
            "line 1, column 2: 1 backslash(es)",
        ),
        (
            r#""{{#if v}}x\\{{else}}y{{/if}}""#,
            "line 1, column 2: 1 backslash(es)",
        ),
        (
            r#""\\{{! c }}{{ v }}""#,
            "line 1, column 12: 1 backslash(es)",
        ),
        // Whitespace control removes the space: the backslash ends up right before the tag.
        (r#""\ {{~ v }}""#, "line 1, column 4: 1 backslash(es)"),
    ] {
        let err = refused(source);
        assert!(err.starts_with(at), "{source}: {err}");
        assert!(
            err.contains("would escape the first character the tag writes"),
            "{err}"
        );
    }
    // Whole escapes are fine, and the value stays one value.
    let event = json!({"v": "\"}, \"x\": \""});
    let body = compile(
        r#"{"a": "C:\\\{{ v }}", "b": "{\"c\": \"\\\\\{{ v }}\"}"}"#,
        JSON_BODY,
    )
    .render(&event)
    .unwrap();
    let outer = parse(&body);
    assert_eq!(
        outer["a"],
        json!(format!("C:\\{}", event["v"].as_str().unwrap()))
    );
    let inner = parse(outer["b"].as_str().unwrap());
    assert_eq!(
        inner["c"],
        json!(format!("\\{}", event["v"].as_str().unwrap()))
    );
    assert_eq!(depths(r#""\\ {{~ v }}""#), vec![1]);
    // A backslash at the very end stands before no tag.
    assert_eq!(render(r"{{ v }} \", &json!({"v": 1})), r"1 \");
}

#[test]
fn an_unfinished_unicode_escape_before_a_tag_is_refused() {
    for source in [
        r#""\u00{{ v }}""#,
        r#""\u{{ v }}""#,
        r#""\u002{{#if v}}2{{/if}}""#,
    ] {
        let err = refused(source);
        assert!(err.contains("an unfinished `\\u"), "{source}: {err}");
    }
    assert_eq!(depths(r#""\u0041{{ v }}""#), vec![1]);
}

#[test]
fn partials_inline_partials_and_decorators_are_refused() {
    for (source, at, what) in [
        ("{{> p }}", "line 1, column 1: ", "partials"),
        ("x\n {{#> p }}\"{{/p}}", "line 2, column 2: ", "partials"),
        (
            r#"{{#*inline "p"}}"{{/inline}}"{{> p }}{{ v }}""#,
            "line 1, column 1: ",
            "inline partials",
        ),
        ("{{* d }}", "line 1, column 1: ", "inline partials"),
    ] {
        let err = refused(source);
        assert!(err.starts_with(&format!("{at}{what}")), "{source}: {err}");
        assert!(err.contains("write the text in place"), "{err}");
    }
}

#[test]
fn every_branch_of_a_block_must_end_at_the_depth_it_started_at() {
    for (source, at, message) in [
        (
            r#""\"{{#if x}}\"{{/if}}{{ v }}\"""#,
            "line 1, column 4: ",
            "the quotes inside `{{#if}}` do not balance: the block starts at JSON string depth 2 and its body ends at depth 1",
        ),
        (
            r#""{{#if x}}{{else}}\"{{/if}}{{ v }}""#,
            "line 1, column 2: ",
            "its `{{else}}` branch ends at depth 2",
        ),
        (
            r#"[{{#each a}}"{{ this }}{{/each}}]"#,
            "line 1, column 2: ",
            "`{{#each}}` do not balance",
        ),
        (
            r#"{{#if x}}{{else if y}}"{{/if}}"#,
            "line 1, column ",
            "do not balance",
        ),
    ] {
        let err = refused(source);
        assert!(
            err.starts_with(at) && err.contains(message),
            "{source}: {err}"
        );
    }
    // Balanced branches, blocks inside strings, and standalone block lines are fine.
    let event = json!({"x": true, "a": ["p\"q", "r"]});
    assert_eq!(
        render(
            r#"{{#if x}}"yes"{{else}}"no"{{/if}} "{{#if x}}a\"b\"{{/if}}""#,
            &event
        ),
        r#""yes" "a\"b\"""#
    );
    let t = compile(
        "{\"l\": [\n{{#each a}}\n  \"{{ this }}\"{{#unless @last}},{{/unless}}\n{{/each}}\n]}",
        JSON_BODY,
    );
    assert_eq!(parse(&t.render(&event).unwrap())["l"], json!(["p\"q", "r"]));
}

#[test]
fn comments_and_raw_blocks_are_read_as_what_they_write() {
    // Quotes in comments count for nothing; a comment between a backslash and a quote writes
    // nothing, so the two join up (`\"`, a quote one level down).
    assert_eq!(
        depths(r#""{{! " }}{{!-- "\" }} --}}{{ a }}\\{{! c }}"{{ b }}\"""#),
        vec![1, 2]
    );
    // A raw block writes its text literally, tags included; its quotes count.
    let event = json!({"v": "a\"b"});
    let source = r#""{{{{raw}}}}{{ x }} \"{{{{/raw}}}}{{ v }}\"""#;
    assert_eq!(depths(source), vec![2]);
    let body = render(source, &event);
    let outer: String = serde_json::from_str(&body).unwrap();
    assert_eq!(outer, r#"{{ x }} "a\"b""#);
}

#[test]
fn helper_calls_inside_strings_are_escaped_per_level() {
    let event = sample();
    // `json` at depth 1 inside the message: the inner document gets a real array.
    let body = render(r#"{"m": "{\"groups\": {{json data.approvals}}}"}"#, &event);
    let inner = parse(parse(&body)["m"].as_str().unwrap());
    assert_eq!(inner["groups"], event["data"]["approvals"]);

    // `json` at depth 2: the inner document gets the JSON text as a string.
    let body = render(
        r#"{"m": "{\"groups\": \"{{json data.approvals}}\"}"}"#,
        &event,
    );
    let inner = parse(parse(&body)["m"].as_str().unwrap());
    assert_eq!(
        parse(inner["groups"].as_str().unwrap()),
        event["data"]["approvals"]
    );

    // Other helpers and subexpressions at depth 2.
    let event = json!({"t": 1764064800.123456, "m": {"k": "a\"b"}, "key": "k"});
    assert_eq!(
        render(
            r#""{\"at\": \"{{ rfc3339 t }}\", \"v\": \"{{ lookup m key }}\", \"w\": \"{{ (lookup m key) }}\"}""#,
            &event
        ),
        r#""{\"at\": \"2025-11-25T10:00:00.123456Z\", \"v\": \"a\\\"b\", \"w\": \"a\\\"b\"}""#
    );
}

#[test]
fn json_helper_writes_compact_raw_json() {
    let event = sample();
    let body = render(
        r#"{"groups": {{json data.access_groups}}, "none": {{json data.nope}}, "s": {{ json data.friendly_id }}}"#,
        &event,
    );
    let compact = serde_json::to_string(&event["data"]["access_groups"]).unwrap();
    assert!(
        body.starts_with(&format!(r#"{{"groups": {compact}, "#)),
        "{body}"
    );
    let value = parse(&body);
    assert_eq!(value["groups"], event["data"]["access_groups"]);
    assert_eq!(value["none"], Value::Null);
    assert_eq!(value["s"], "AR-1042");

    let err = compile("{{json data.nope}}", STRICT)
        .render(&event)
        .unwrap_err();
    assert!(err.0.contains("`data.nope` is missing"), "{err}");
}

#[test]
fn rfc3339_helper_formats_epoch_seconds() {
    let event = json!({
        "t": 1764064800.123456, "s": "1764064800.5", "i": 3600, "zero": 0, "null": null,
        "neg": -1, "big": 1e300, "word": "soon", "obj": {}, "trunc": 1.0000009,
        "long": "9".repeat(200)
    });
    let r = |expr: &str| render(&format!("{{{{rfc3339 {expr}}}}}"), &event);
    assert_eq!(r("t"), "2025-11-25T10:00:00.123456Z");
    assert_eq!(r("s"), "2025-11-25T10:00:00.500000Z");
    assert_eq!(r("i"), "1970-01-01T01:00:00.000000Z");
    assert_eq!(r("zero"), "1970-01-01T00:00:00.000000Z");
    assert_eq!(r("trunc"), "1970-01-01T00:00:01.000000Z");
    for empty in ["null", "missing", "neg", "big", "word", "obj"] {
        assert_eq!(r(empty), "", "{empty}");
    }

    let strict = |expr: &str| compile(&format!("{{{{rfc3339 {expr}}}}}"), STRICT).render(&event);
    assert_eq!(strict("null").unwrap(), "");
    assert!(
        strict("missing")
            .unwrap_err()
            .0
            .contains("`missing` is missing")
    );
    for bad in ["neg", "big", "word", "long"] {
        let err = strict(bad).unwrap_err();
        assert!(
            err.0.starts_with("line 1, column 1: rfc3339: `")
                && err.0.contains("not epoch seconds"),
            "{err}"
        );
        assert!(err.0.chars().count() < 150, "{err}");
    }
}

#[test]
fn values_render_as_json_prints_them() {
    let event = sample();
    assert_eq!(
        render(
            "{{ event_time }} {{ data.access_duration_in_seconds }} {{ data.creation_date }} {{ data.revocation_date }} {{ data.custom_fields.x }}|",
            &event
        ),
        "1764064800.123456 3600 1764064797.62 1764068400.0 |"
    );
    assert_eq!(
        render("{{ b }} {{ n }}|", &json!({"b": true, "n": null})),
        "true |"
    );
    // Never HTML-escaped.
    assert_eq!(
        render("{{ v }}", &json!({"v": "<a href='x'>&</a>"})),
        "<a href='x'>&</a>"
    );
}

#[test]
fn missing_fields_are_empty_unless_strict() {
    let event = sample();
    let source = r#"{"a": "{{ data.nope }}", "b": "{\"c\": \"{{ data.requester.nope }}\"}"}"#;
    assert_eq!(
        compile(source, LENIENT).render(&event).unwrap(),
        r#"{"a": "", "b": "{\"c\": \"\"}"}"#
    );

    let err = compile(source, STRICT).render(&event).unwrap_err();
    assert_eq!(
        err.0,
        "line 1, column 8: `data.nope` is missing (strict mode)"
    );

    // A nested (rewritten) value and helper parameters are checked too.
    let err = compile(r#""{\"c\": \"{{ data.requester.nope }}\"}""#, STRICT)
        .render(&event)
        .unwrap_err();
    assert_eq!(
        err.0,
        "line 1, column 12: `data.requester.nope` is missing (strict mode)"
    );
    for source in [
        "{{ rfc3339 data.nope }}",
        r#""\"{{ rfc3339 data.nope }}\"""#,
        r#""{{ json data.nope }}""#,
        "{{#each data.nope}}x{{/each}}",
    ] {
        let err = compile(source, STRICT).render(&event).unwrap_err();
        assert!(
            err.0.contains("`data.nope` is missing (strict mode)"),
            "{source}: {err}"
        );
    }
    assert!(
        compile("{{ eq data.nope 1 }}", STRICT)
            .render(&event)
            .is_err()
    );
    // `#if` is how a strict template tests for a field.
    assert_eq!(
        compile("{{#if data.nope}}yes{{else}}no{{/if}}", STRICT)
            .render(&event)
            .unwrap(),
        "no"
    );
    // Paths inside `#each` are checked against the item.
    let err = compile("{{#each data.approvals}}{{ nope }}{{/each}}", STRICT)
        .render(&event)
        .unwrap_err();
    assert!(err.0.contains("`nope` is missing"), "{err}");
}

#[test]
fn null_access_bundle() {
    let mut event = sample();
    event["data"]["access_bundle"] = Value::Null;
    let body = compile(SEED, JSON_BODY).render(&event).unwrap();
    let inner = parse(parse(&body)["message"].as_str().unwrap());
    assert_eq!(inner["access_bundle_id"], "");
    assert_eq!(inner["access_bundle_name"], "");
    assert_eq!(inner["access_flow_id"], "af-1");

    // Null itself renders empty, strict or not; a path through it does not exist.
    let strict = compile("[{{ data.access_bundle }}]", STRICT);
    assert_eq!(strict.render(&event).unwrap(), "[]");
    let err = compile(SEED, STRICT).render(&event).unwrap_err();
    assert!(
        err.0.contains("`data.access_bundle.id` is missing"),
        "{err}"
    );
    assert_eq!(
        compile(
            "{{#if data.access_bundle}}{{ data.access_bundle.id }}{{else}}none{{/if}}",
            STRICT
        )
        .render(&event)
        .unwrap(),
        "none"
    );
}

#[test]
fn json_bodies_must_parse() {
    let template = compile(r#"{"a": {{ v }}}"#, JSON_BODY);
    assert_eq!(template.render(&json!({"v": 1})).unwrap(), r#"{"a": 1}"#);
    let err = template.render(&json!({"v": "not json"})).unwrap_err();
    assert!(err.0.starts_with("body is not valid JSON: "), "{err}");
    assert!(template.render(&json!({})).is_err());
    // Without `json`, anything goes.
    assert_eq!(
        compile(r#"{"a": {{ v }}}"#, LENIENT)
            .render(&json!({"v": "not json"}))
            .unwrap(),
        r#"{"a": not json}"#
    );
    // A body that parses is returned as rendered, not reformatted.
    let spaced = "{ \"a\" :  [ 1 ,2 ] ,\n \"b\": \"{{ v }}\" }\n";
    assert_eq!(
        compile(spaced, JSON_BODY)
            .render(&json!({"v": "x"}))
            .unwrap(),
        spaced.replace("{{ v }}", "x")
    );
}

#[test]
fn compile_errors_are_one_lowercase_line_with_a_position() {
    let cases = [
        (
            "{\"a\": \"{{ data.id\"}",
            "line 1, column 18: invalid handlebars syntax: expected ",
        ),
        ("line one\n{{#if x}}open", "line 2, column "),
        (
            "{{#if x}}{{/each}}",
            "line 1, column 10: helper \"if\" was opened, but \"each\" is closing",
        ),
        (
            "{{ nope data.id }}",
            "line 1, column 1: unknown helper `nope`",
        ),
        (
            "a\n {{#unknown x}}{{/unknown}}",
            "line 2, column 2: unknown helper `unknown`",
        ),
        (
            "{{ json (nope x) }}",
            "line 1, column 1: unknown helper `nope`",
        ),
        ("{{ __nest 1 x }}", "line 1, column 1: `__nest` is reserved"),
        ("{{ __nest }}", "line 1, column 1: `__nest` is reserved"),
    ];
    for (source, prefix) in cases {
        let err = Template::compile(source, LENIENT).unwrap_err().to_string();
        assert!(err.starts_with(prefix), "{source:?}: {err}");
        assert!(!err.contains('\n'), "{source:?}: {err}");
    }
}

#[test]
fn expressions_lists_root_paths() {
    let t = compile(SEED, LENIENT);
    let paths = t.expressions();
    assert_eq!(
        paths.len(),
        14,
        "access_bundle.id is listed once: {paths:?}"
    );
    assert_eq!(paths[0], ["event_type"]);
    assert_eq!(
        paths[13],
        ["data", "access_groups", "0", "integration", "type"]
    );

    let t = compile(
        r#"{{ rfc3339 event_time }} {{json (lookup data.approvals 0)}} {{{ data.id }}}
{{#each data.access_groups as |g|}}{{ g.integration.name }}{{ this }}{{ @index }}{{ ../event_type }}{{ @root.data.friendly_id }}{{else}}{{ data.none }}{{/each}}
{{#with data.requester}}{{ email }}{{/with}}{{#if data.access_bundle}}{{ data.access_bundle.name }}{{/if}}
{{ this.data.grantee.id }} {{ lookup data.custom_fields key=data.grantee.type }}"#,
        LENIENT,
    );
    let expected: Vec<Vec<&str>> = vec![
        vec!["event_time"],
        vec!["data", "approvals"],
        vec!["data", "id"],
        vec!["data", "access_groups"],
        vec!["data", "friendly_id"],
        vec!["data", "none"],
        vec!["data", "requester"],
        vec!["data", "access_bundle"],
        vec!["data", "access_bundle", "name"],
        vec!["data", "grantee", "id"],
        vec!["data", "custom_fields"],
        vec!["data", "grantee", "type"],
    ];
    assert_eq!(t.expressions(), expected);
}

#[test]
fn every_known_helper_exists() {
    let event = json!({"a": [1], "b": 1});
    for name in KNOWN_HELPERS {
        let source = match *name {
            "each" | "with" | "if" | "unless" => format!("{{{{#{name} a}}}}x{{{{/{name}}}}}"),
            "raw" => "{{{{raw}}}}x{{{{/raw}}}}".to_owned(),
            "len" => "{{len a}}".to_owned(),
            "not" | "json" | "rfc3339" | "log" => format!("{{{{{name} b}}}}"),
            _ => format!("{{{{{name} b 1}}}}"),
        };
        let result = compile(&source, LENIENT).render(&event);
        assert!(result.is_ok(), "{source}: {result:?}");
    }
}

#[test]
fn templates_are_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Template>();
}

#[test]
fn objects_arrays_and_array_names_follow_handlebars() {
    let event = json!({"o": {"a": 1}, "a": [1, "x", {"b": 2}]});
    assert_eq!(
        render("{{ o }}|{{ a }}", &event),
        "[object]|[1, x, [object]]"
    );
    // A name into an array is an error even when lenient (handlebars), not an empty value.
    let err = compile("{{ a.b }}", LENIENT).render(&event).unwrap_err();
    assert_eq!(
        err.0,
        "line 1, column 1: cannot access array/vector with string index, b"
    );
}

/// Property tests: whatever text an event carries, the seed Logz.io template's body is JSON,
/// its `message` is JSON too, and each field gives back exactly the text.
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Pieces that stress the escaping: quotes, backslashes, every control character, the
    /// separators, characters outside the BMP, JSON escapes written as text, and text that
    /// looks like Handlebars.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => any::<char>().prop_map(String::from),
            3 => prop::sample::select(vec![
                "\"", "\\", "\\\"", "\\\\", "\"\"", "'", "/", "\u{2028}", "\u{2029}", "\u{7f}",
                "\u{feff}", "\u{1F680}", "\u{10FFFF}", "\u{1D11E}", "é", "中",
            ])
            .prop_map(str::to_owned),
            2 => (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap().to_string()),
            2 => prop::sample::select(vec![
                "{{x}}", "{{{x}}}", "{{> p}}", "{{#if x}}", "{{/if}}", "\\{{x}}", "}}", "{{",
                "\\u0022", "\\u005c", "\\n", "\", \"type\": \"evil", "\\\", \\\"k\\\": \\\"",
                "}\", \"x\": {\"",
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn hostile() -> impl Strategy<Value = String> {
        prop::collection::vec(piece(), 0..24).prop_map(|pieces| pieces.concat())
    }

    /// The string fields of the sample event that the seed template writes.
    const FIELDS: [&[&str]; 6] = [
        &["data", "justification"],
        &["data", "requester", "name"],
        &["data", "requester", "email"],
        &["data", "access_flow", "name"],
        &["data", "friendly_id"],
        &["event_type"],
    ];
    /// Where each of [`FIELDS`] lands in the inner document.
    const INNER: [&str; 6] = [
        "justification",
        "requester_name",
        "requester_email",
        "access_flow_name",
        "friendly_id",
        "event_type",
    ];

    fn set(event: &mut Value, path: &[&str], text: &str) {
        let mut at = event;
        for segment in path {
            at = &mut at[*segment];
        }
        *at = Value::String(text.to_owned());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn seed_template_round_trips_any_text(texts in prop::array::uniform6(hostile())) {
            let template = compile(SEED, JSON_BODY);
            let mut event = sample();
            for (path, text) in FIELDS.iter().zip(&texts) {
                set(&mut event, path, text);
            }
            let body = template.render(&event).map_err(|e| TestCaseError::fail(e.0))?;
            let outer: Value = serde_json::from_str(&body)
                .map_err(|e| TestCaseError::fail(format!("body is not JSON ({e}): {body}")))?;
            let outer = outer.as_object().expect("an object");
            prop_assert_eq!(outer.len(), 2);
            prop_assert_eq!(&outer["type"], "Apono");
            let message = outer["message"].as_str().expect("message is a string");
            let inner: Value = serde_json::from_str(message)
                .map_err(|e| TestCaseError::fail(format!("message is not JSON ({e}): {message}")))?;
            prop_assert_eq!(inner.as_object().map(|o| o.len()), Some(15));
            for (key, text) in INNER.iter().zip(&texts) {
                prop_assert_eq!(&inner[*key], &Value::String(text.clone()), "{}", key);
            }
            prop_assert_eq!(&inner["requester_id"], "usr-17");
        }

        #[test]
        fn any_text_round_trips_at_depth_three(text in hostile()) {
            let template = compile(
                r#"{"a": "{\"b\": \"{\\\"c\\\": \\\"{{ v }}\\\"}\"}"}"#,
                JSON_BODY,
            );
            let body = template.render(&json!({ "v": text })).map_err(|e| TestCaseError::fail(e.0))?;
            let level1: Value = serde_json::from_str(&body).expect("level 1");
            let level2: Value = serde_json::from_str(level1["a"].as_str().unwrap()).expect("level 2");
            let level3: Value = serde_json::from_str(level2["b"].as_str().unwrap()).expect("level 3");
            prop_assert_eq!(level3, json!({ "c": text }));
        }
    }
}
