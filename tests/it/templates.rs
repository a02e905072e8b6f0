//! Body templates the JSON depth analysis cannot follow are refused when the config loads:
//! one problem per webhook, naming its file, the webhook, the field and the line and column
//! of the construct, both through the library and through `webhook-relay check` and `run`.

use crate::binary::Relay;
use std::path::Path;
use std::time::Duration;
use webhook_relay::config::{self, Env};

const WAIT: Duration = Duration::from_secs(10);

/// (webhook name, body template, what its problem must say after `body_template: `).
const REFUSED: &[(&str, &str, &str)] = &[
    (
        "unicode-quote",
        r#"{"message": "{\u0022id\u0022: \"{{ data.id }}\"}"}"#,
        r#"line 1, column 15: `\u0022` is a JSON escape of `"`"#,
    ),
    (
        "unicode-backslash",
        r#"{"message": "{\"id\": \"\u005C{{ data.id }}\"}"}"#,
        r#"line 1, column 25: `\u005C` is a JSON escape of `\`"#,
    ),
    (
        "inline-partial",
        r#"{{#*inline "p"}}\"{{ data.id }}{{/inline}}{"message": "{{> p }}"}"#,
        "line 1, column 1: inline partials (`{{#*inline}}`) and decorators are not supported",
    ),
    (
        "partial",
        r#"{"message": "{{> p }}"}"#,
        "line 1, column 14: partials (`{{> name}}`, `{{#> name}}`) are not supported",
    ),
    (
        "partial-block",
        r#"{"message": "{{#> p }}x{{/p}}"}"#,
        "line 1, column 14: partials (`{{> name}}`, `{{#> name}}`) are not supported",
    ),
    (
        "triple-stash",
        r#"{"message": "{\"id\": \"{{{ data.id }}}\"}"}"#,
        "line 1, column 25: `{{{ }}}` (or `{{& }}`) inside a JSON string (depth 2)",
    ),
    (
        "unbalanced-if",
        r#"{"message": "{{#if data.id}}\"{{/if}}{{ data.justification }}"}"#,
        "line 1, column 14: the quotes inside `{{#if}}` do not balance",
    ),
    (
        "backslash-before-tag",
        r#"{"message": "\\{{ data.justification }}"}"#,
        "line 1, column 16: 1 backslash(es) right before `{{` inside a JSON string of depth 1",
    ),
    (
        "tilde-before-tag",
        r#"{"message": "\ {{~ data.justification }}"}"#,
        "line 1, column 16: 1 backslash(es) right before `{{` inside a JSON string of depth 1",
    ),
    (
        "unfinished-unicode",
        r#"{"message": "\u00{{ data.justification }}"}"#,
        "line 1, column 18: an unfinished `\\u00` escape right before `{{`",
    ),
];

/// Accepted: quotes in comments, whitespace control, a raw block, balanced branches.
const ACCEPTED: &str = r#"{"message": "{{! a quote: " }}{ \"id\": \"{{~ data.id ~}}\", \"raw\": \"{{{{raw}}}}{{ not a tag }}{{{{/raw}}}}\", \"bundle\": {{#if data.access_bundle}}\"{{ data.access_bundle.name }}\"{{else}}null{{/if}} }"}"#;

/// Writes a config folder: every refused template as its own webhook, one accepted webhook,
/// and one refused template read from a file.
fn write_config(dir: &Path) {
    std::fs::write(dir.join("relay.toml"), "").unwrap();
    std::fs::create_dir_all(dir.join("webhooks")).unwrap();
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    let mut text = String::new();
    let mut webhooks: Vec<(&str, &str)> = REFUSED.iter().map(|(n, t, _)| (*n, *t)).collect();
    webhooks.push(("accepted", ACCEPTED));
    for (name, template) in webhooks {
        text.push_str(&format!(
            "[[webhook]]\nname = \"{name}\"\nurl = \"https://127.0.0.1/?type={name}\"\n\
             triggers = [\"RequestApproved\"]\nbody_template = '''{template}'''\n\n"
        ));
    }
    text.push_str(
        "[[webhook]]\nname = \"from-file\"\nurl = \"https://127.0.0.1/\"\n\
         triggers = [\"RequestApproved\"]\nbody_template_file = \"templates/body.hbs\"\n",
    );
    std::fs::write(dir.join("webhooks/hooks.toml"), text).unwrap();
    std::fs::write(
        dir.join("templates/body.hbs"),
        "{\n  \"message\": \"{ \\\"id\\\": \\\"{{ data.id }}\\\" }\",\n  \"x\": \"{{> p }}\"\n}\n",
    )
    .unwrap();
}

/// The line `config` must print for webhook `name`.
fn expected_lines(dir: &Path) -> Vec<String> {
    let file = dir.join("webhooks/hooks.toml");
    let mut lines: Vec<String> = REFUSED
        .iter()
        .map(|(name, _, says)| {
            format!(
                "{}: webhook `{name}`: body_template: {says}",
                file.display()
            )
        })
        .collect();
    lines.push(format!(
        "{}: webhook `from-file`: body_template_file: line 3, column 9: partials",
        file.display()
    ));
    lines
}

#[test]
fn templates_the_depth_analysis_cannot_follow_are_refused_at_config_load() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let err = config::load(dir.path(), &Env::from_pairs(Vec::<(String, String)>::new()))
        .expect_err("the config is refused");
    let problems: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    let expected = expected_lines(dir.path());
    assert_eq!(
        problems.len(),
        expected.len(),
        "one problem per refused webhook, none for `accepted`:\n{err}"
    );
    for (problem, start) in problems.iter().zip(&expected) {
        assert!(
            problem.starts_with(start.as_str()),
            "{problem}\nexpected {start}…"
        );
        assert!(!problem.contains('\n'), "{problem}");
    }
}

#[tokio::test]
async fn check_and_run_print_one_line_per_refused_template() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let config = dir.path().to_str().unwrap();
    let env = [("PATH", std::env::var("PATH").unwrap_or_default())];
    let expected = expected_lines(dir.path());

    let check = Relay::spawn(&["check", "--config", config], &env)
        .exit_within(WAIT)
        .await;
    assert_eq!(check.code(), Some(1), "stderr:\n{}", check.stderr);
    let printed = format!("{}{}", check.stdout, check.stderr);
    for start in &expected {
        let line = format!("error: {start}");
        assert!(
            printed.lines().any(|l| l.starts_with(&line)),
            "missing {line}…\n{printed}"
        );
    }
    assert!(!printed.contains("webhook `accepted`"), "{printed}");

    let run = Relay::run(dir.path(), &env).exit_within(WAIT).await;
    assert_eq!(run.code(), Some(2), "stderr:\n{}", run.stderr);
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), expected.len(), "stderr:\n{}", run.stderr);
    for (line, start) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(&format!("error: {start}")),
            "{line}\nexpected error: {start}…"
        );
    }
}
