//! SIGHUP through the real binary: the new config for the next event, an invalid one
//! refused.

use super::{WAIT, hook};
use crate::binary::Relay;
use crate::harness::{TestApp, app, child_env, publish_id, received_ids};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A webhook file whose URL points at listener `n` of `app`, as the harness writes it.
fn hook_file(app: &TestApp, name: &str, n: usize, template: &str) -> String {
    format!(
        r#"
[[webhook]]
name = "{name}"
url = "https://127.0.0.1:{port}/?token=${{LOGZIO_TOKEN}}&type=apono"
triggers = ["RequestApproved"]
body_template = '{template}'
"#,
        port = app.listeners[n].port()
    )
}

/// Waits until the relay's stderr has `n` lines containing `needle`.
async fn wait_stderr(relay: &Relay, needle: &str, n: usize) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if relay.stderr_so_far().matches(needle).count() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The real binary and SIGHUP: a new template takes effect for the next event while one in
/// flight finishes with the old one; an invalid webhook file is refused with a line naming
/// it and the old config stays; a webhook added by reload starts receiving.
#[tokio::test]
async fn sighup_reloads_webhooks_and_refuses_an_invalid_config() {
    // The harness knows both webhooks (so it removes both retry paths at the end), but the
    // relay starts with the first only: the second comes with a reload.
    let app = app("retry-sighup")
        .listeners(2)
        .webhook(&hook("approvals", 0, ""))
        .webhook(&hook("second", 1, ""))
        .relay_extra("\n[shutdown]\ngrace = \"5s\"\n\n[monitor]\ninterval = \"300ms\"\n")
        .build()
        .await;
    let hook_path = app.config_dir().join("webhooks/00.toml");
    let second_path = app.config_dir().join("webhooks/01.toml");
    const V1: &str = r#"{"v": 1, "id": "{{ data.id }}"}"#;
    const V2: &str = r#"{"v": 2, "id": "{{ data.id }}"}"#;
    std::fs::write(&hook_path, hook_file(&app, "approvals", 0, V1)).unwrap();
    std::fs::remove_file(&second_path).unwrap();
    let mut relay = Relay::run(app.config_dir(), &child_env(&app, &[]));
    assert!(
        wait_stderr(&relay, "consuming", 1).await,
        "the relay starts; stderr:\n{}",
        relay.stderr_so_far()
    );
    let (first, second) = (&app.listeners[0], &app.listeners[1]);

    // In flight during the reload: rendered with v1, finishes, is not redelivered.
    first.set_delay(Duration::from_millis(1500));
    publish_id(&app, "e1").await;
    assert_eq!(first.wait_for_requests(1, WAIT).await.len(), 1);
    std::fs::write(&hook_path, hook_file(&app, "approvals", 0, V2)).unwrap();
    relay.hangup();
    assert!(
        wait_stderr(&relay, "config reloaded", 1).await,
        "stderr:\n{}",
        relay.stderr_so_far()
    );
    first.set_delay(Duration::ZERO);
    publish_id(&app, "e2").await;
    let accepted = first.wait_for_accepted(2, WAIT).await;
    let mut bodies: Vec<Value> = accepted.clone();
    bodies.sort_by_key(|v| v["id"].as_str().unwrap_or("").to_string());
    assert_eq!(
        bodies,
        vec![json!({"v": 1, "id": "e1"}), json!({"v": 2, "id": "e2"})],
        "stderr:\n{}",
        relay.stderr_so_far()
    );

    // An invalid webhook file: refused, naming the file; v2 stays in force.
    std::fs::write(
        &hook_path,
        hook_file(
            &app,
            "approvals",
            0,
            r#"{"v": 3, "id": "{{#if data.id }}"}"#,
        ),
    )
    .unwrap();
    relay.hangup();
    assert!(
        wait_stderr(&relay, "config reload refused", 1).await,
        "stderr:\n{}",
        relay.stderr_so_far()
    );
    let stderr = relay.stderr_so_far();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("config reload refused") && l.contains("00.toml")),
        "a refusal line names the file:\n{stderr}"
    );
    publish_id(&app, "e3").await;
    let accepted = first.wait_for_accepted(3, WAIT).await;
    assert!(
        accepted.contains(&json!({"v": 2, "id": "e3"})),
        "still v2: {accepted:?}"
    );

    // A second webhook added by reload starts receiving.
    std::fs::write(&hook_path, hook_file(&app, "approvals", 0, V2)).unwrap();
    std::fs::write(&second_path, hook_file(&app, "second", 1, V2)).unwrap();
    relay.hangup();
    assert!(
        wait_stderr(&relay, "config reloaded", 2).await,
        "stderr:\n{}",
        relay.stderr_so_far()
    );
    publish_id(&app, "e4").await;
    assert_eq!(
        second.wait_for_accepted(1, WAIT).await,
        vec![json!({"v": 2, "id": "e4"})]
    );
    let accepted = first.wait_for_accepted(4, WAIT).await;
    assert!(accepted.contains(&json!({"v": 2, "id": "e4"})));

    // The monitor logs each webhook's circuit and retry depth.
    assert!(wait_stderr(&relay, "webhook status", 2).await);
    let stderr = relay.stderr_so_far();
    assert!(
        stderr.lines().any(|l| l.contains("webhook status")
            && l.contains("circuit=closed")
            && l.contains("retry_depth=0")),
        "{stderr}"
    );

    relay.terminate();
    let finished = relay.exit_within(WAIT).await;
    assert_eq!(finished.code(), Some(0), "stderr:\n{}", finished.stderr);
    assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);
    let reloaded_at = finished.stderr.find("config reloaded").expect("reloaded");
    let e1_delivered_at = finished
        .stderr
        .find(" delivered event_id=e1 ")
        .unwrap_or_else(|| panic!("e1 delivered:\n{}", finished.stderr));
    assert!(
        reloaded_at < e1_delivered_at,
        "e1 was in flight during the reload:\n{}",
        finished.stderr
    );
    let ids = received_ids(first);
    assert_eq!(
        ids.values().copied().collect::<Vec<_>>(),
        vec![1, 1, 1, 1],
        "each event once, the one in flight during the reload included: {ids:?}"
    );
    assert_eq!(second.requests().len(), 1);
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0);
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);

    app.finish().await;
}
