//! A hostile dead letter cannot drive the operator's terminal: `dlq show` and `dlq list` print
//! its control characters (ESC, CR, C1 controls, bidirectional overrides…) as escapes.

use crate::binary::Relay;
use crate::harness::{TestApp, app, child_env};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Clears the screen, sets the window title, moves the cursor, rewrites the line, reverses
/// the text, and uses the one-character CSI.
const HOSTILE: &str =
    "\u{1b}[2J\u{1b}]0;owned\u{7}\u{1b}[H\rfake: ok\u{202e}txt.exe\u{9b}31m\u{0}\u{7f}";

fn header(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text))
}

/// Publishes one dead letter whose message id, headers and body all carry [`HOSTILE`].
async fn publish_hostile(app: &TestApp) {
    let mut headers = FieldTable::default();
    headers.insert("x-relay-reason".into(), header("rejected"));
    headers.insert("x-relay-webhook".into(), header(&format!("hook{HOSTILE}")));
    headers.insert("x-relay-event-id".into(), header(&format!("id{HOSTILE}")));
    headers.insert(
        "x-relay-last-error".into(),
        header(&format!("http 400{HOSTILE}")),
    );
    headers.insert("x-relay-attempts".into(), AMQPValue::LongLongInt(1));
    headers.insert(format!("x-evil{HOSTILE}").as_str().into(), header("v"));
    let body = serde_json::json!({
        "event_type": format!("RequestApproved{HOSTILE}"),
        "data": {"justification": HOSTILE},
    });
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(format!("m{HOSTILE}").as_str().into())
        .with_headers(headers);
    app.admin
        .publisher()
        .publish_confirmed(
            "",
            &app.config.amqp.dead_letter_queue,
            body.to_string().as_bytes(),
            properties,
        )
        .await
        .expect("dead letter published");
}

/// No character in `out` can act on a terminal: no C0 control but the newline, no DEL, no C1
/// control, no bidirectional override.
fn assert_inert(what: &str, out: &str) {
    for c in out.chars() {
        let code = u32::from(c);
        assert!(
            c == '\n'
                || (code >= 0x20 && code != 0x7f && !(0x80..0xa0).contains(&code))
                    && c != '\u{202e}',
            "{what}: raw {code:#x} in:\n{out:?}"
        );
    }
}

#[tokio::test]
async fn dlq_show_and_list_escape_control_characters() {
    let app = app("terminal-dlq").build().await;
    publish_hostile(&app).await;
    let dir = app.config_dir().to_str().unwrap().to_owned();
    let env = child_env(&app, &[]);

    let show = Relay::spawn(&["dlq", "show", "1", "--config", &dir], &env)
        .exit_within(WAIT)
        .await;
    assert_eq!(show.code(), Some(0), "stderr:\n{}", show.stderr);
    assert_inert("dlq show", &show.stdout);
    let escaped = r"\x1b[2J\x1b]0;owned\x07\x1b[H\rfake: ok\u{202e}txt.exe\u{9b}31m\x00\x7f";
    for needle in [
        format!("  message_id: m{escaped}\n"),
        format!("  x-relay-webhook: hook{escaped}\n"),
        format!("  x-relay-event-id: id{escaped}\n"),
        format!("  x-evil{escaped}: v\n"),
    ] {
        assert!(
            show.stdout.contains(&needle),
            "{needle:?} in:\n{}",
            show.stdout
        );
    }
    // The body is still pretty JSON with the text in it: serde_json escapes C0 controls, the
    // rest is escaped for the terminal.
    assert!(
        show.stdout.contains(r#""justification": "\u001b[2J\u001b]0;owned\u0007\u001b[H\rfake: ok\u{202e}txt.exe\u{9b}31m\u0000\x7f""#),
        "{}",
        show.stdout
    );

    let list = Relay::spawn(&["dlq", "list", "--config", &dir], &env)
        .exit_within(WAIT)
        .await;
    assert_eq!(list.code(), Some(0), "stderr:\n{}", list.stderr);
    assert_inert("dlq list", &list.stdout);
    assert!(list.stdout.contains(r"id\x1b[2J"), "{}", list.stdout);
    assert!(list.stdout.contains(r"hook\x1b[2J"), "{}", list.stdout);
    assert!(
        list.stdout.contains("1 shown of 1 dead letters"),
        "{}",
        list.stdout
    );
    app.finish().await;
}
