//! `dlq list | show | replay | purge`: reading, replaying and purging dead letters.

use super::{WAIT, assert_exit, cli, cli_in, event, json, wait_ready};
use crate::binary::Relay;
use crate::harness::{TestApp, app, child_env};
use crate::support::logzio::{Scripted, TEST_TOKEN};
use serde_json::Value;
use std::time::Duration;
use webhook_relay::broker::dead_letter::DeadLetterInfo;
use webhook_relay::model::event::Trigger;

fn dlq(app: &TestApp) -> String {
    app.config.amqp.dead_letter_queue.clone()
}

/// The event id the relay gives `event` (no message id): `data.id:event_type:event_time`.
fn event_id(event: &Value) -> String {
    webhook_relay::model::event::decode(event.to_string().as_bytes(), None)
        .expect("a valid event")
        .id
        .0
}

/// `dlq list --json` as a value, asserting it exits 0.
async fn dlq_list_json(app: &TestApp) -> Value {
    let listed = cli(app, &["--json", "dlq", "list"], &[]).await;
    assert_exit(&listed, 0);
    json(&listed)
}

/// Copies the app's config folder, with every webhook file passed through `edit`.
fn edited_config(app: &TestApp, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("temp dir");
    let from = app.config_dir();
    std::fs::copy(from.join("relay.toml"), copy.path().join("relay.toml")).unwrap();
    std::fs::copy(from.join("ca.pem"), copy.path().join("ca.pem")).unwrap();
    std::fs::create_dir(copy.path().join("webhooks")).unwrap();
    for file in std::fs::read_dir(from.join("webhooks")).unwrap() {
        let file = file.unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        std::fs::write(
            copy.path().join("webhooks").join(file.file_name()),
            edit(text),
        )
        .unwrap();
    }
    copy
}

/// Two failing webhooks, one per trigger: `rejected` (wrong token, for approvals) and
/// `render_failed` (strict template missing a field, for creations).
const FAILING: &str = r#"
[[webhook]]
name = "wrong-token"
url = "https://127.0.0.1:@PORT0@/?token=${WRONG_TOKEN}&type=apono"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'

[[webhook]]
name = "strict-missing"
url = "@URL0@"
triggers = ["RequestCreated"]
strict = true
body_template = '{"id": "{{ data.id }}", "ticket": "{{ data.custom_fields.ticket }}"}'
"#;

/// Publishes `events` one at a time, each after the previous one's dead letter is in the
/// queue, so the dead letters' order is known.
async fn dead_letter_in_order(app: &TestApp, events: &[Value]) {
    let queue = dlq(app);
    for (i, e) in events.iter().enumerate() {
        app.publish(e).await;
        let n = u32::try_from(i + 1).unwrap();
        assert_eq!(wait_ready(app, &queue, n).await, n, "dead letter {n}");
    }
}

/// `dlq list` changes nothing: listing twice prints the same, `--json` before and after are
/// equal, and draining the queue afterwards finds every dead letter, unchanged, in order.
#[tokio::test]
async fn dlq_list_and_show_leave_the_queue_unchanged() {
    let mut app = app("cli-dlq-list")
        .webhook(FAILING)
        .env("WRONG_TOKEN", "not-the-token")
        .start()
        .await;
    let events = vec![
        event(Trigger::RequestApproved, "list-1"),
        event(Trigger::RequestCreated, "list-2"),
        event(Trigger::RequestApproved, "list-3"),
        event(Trigger::RequestCreated, "list-4"),
        event(Trigger::RequestApproved, "list-5"),
    ];
    dead_letter_in_order(&app, &events).await;
    app.stop_worker().await;

    let before = dlq_list_json(&app).await;
    let listed = before.as_array().expect("an array");
    assert_eq!(listed.len(), events.len(), "{before:#}");
    for (i, (line, e)) in listed.iter().zip(&events).enumerate() {
        assert_eq!(line["position"], i + 1);
        assert_eq!(line["event_id"], event_id(e));
        assert_eq!(line["event_type"], e["event_type"]);
        let (webhook, reason) = if e["event_type"] == "RequestApproved" {
            ("wrong-token", "rejected")
        } else {
            ("strict-missing", "render_failed")
        };
        assert_eq!(line["webhook"], webhook, "{line:#}");
        assert_eq!(line["reason"], reason, "{line:#}");
    }
    assert_eq!(listed[0]["last_status"], 401);
    assert_eq!(listed[0]["attempts"], 1);

    let first = cli(&app, &["dlq", "list"], &[]).await;
    let second = cli(&app, &["dlq", "list"], &[]).await;
    assert_exit(&first, 0);
    assert_eq!(first.stdout, second.stdout, "listing twice prints the same");
    let lines: Vec<&str> = first.stdout.lines().collect();
    assert_eq!(lines.len(), 1 + events.len() + 1, "{}", first.stdout);
    assert!(lines[0].starts_with("#  FAILED AT"), "{}", first.stdout);
    assert!(
        lines[1].starts_with("1  ") && lines[1].contains(&event_id(&events[0])),
        "{}",
        first.stdout
    );
    assert_eq!(
        *lines.last().unwrap(),
        format!("5 shown of 5 dead letters in `{}`", dlq(&app))
    );

    // Filters and --limit select without changing anything either.
    let rejected = json(
        &cli(
            &app,
            &[
                "--json", "dlq", "list", "--reason", "rejected", "--limit", "2",
            ],
            &[],
        )
        .await,
    );
    let positions: Vec<&Value> = rejected
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["position"])
        .collect();
    assert_eq!(positions, [1, 3], "{rejected:#}");
    let strict = json(
        &cli(
            &app,
            &["--json", "dlq", "list", "--webhook", "strict-missing"],
            &[],
        )
        .await,
    );
    assert_eq!(strict.as_array().unwrap().len(), 2, "{strict:#}");

    // show, by position and by event id.
    let shown = cli(&app, &["dlq", "show", "2"], &[]).await;
    assert_exit(&shown, 0);
    assert!(
        shown.stdout.starts_with("dead letter #2\n"),
        "{}",
        shown.stdout
    );
    for needle in [
        "  x-relay-reason: render_failed",
        "  x-relay-webhook: strict-missing",
        "  x-relay-attempts: 0",
        &format!("  x-relay-event-id: {}", event_id(&events[1])),
        "  x-relay-routing-key: RequestCreated",
        "  x-relay-last-error: ",
    ] {
        assert!(
            shown.stdout.contains(needle),
            "`{needle}`:\n{}",
            shown.stdout
        );
    }
    let body_text = shown.stdout.split("\nbody\n").nth(1).expect("a body");
    let body: Value = serde_json::from_str(body_text).expect("the body is pretty JSON");
    assert_eq!(body, events[1]);
    let by_id = json(&cli(&app, &["--json", "dlq", "show", &event_id(&events[4])], &[]).await);
    assert_eq!(by_id["position"], 5);
    assert_eq!(by_id["headers"]["x-relay-last-status"], "401");
    assert_eq!(by_id["body"], events[4]);
    let missing = cli(&app, &["dlq", "show", "99"], &[]).await;
    assert_exit(&missing, 1);

    let after = dlq_list_json(&app).await;
    assert_eq!(before, after, "the listing did not change");
    assert_eq!(app.ready_count(&dlq(&app)).await, 5);
    let drained = app
        .dead_letters(events.len() + 1, Duration::from_secs(1))
        .await;
    assert_eq!(drained.len(), events.len(), "nothing lost, nothing added");
    for (letter, e) in drained.iter().zip(&events) {
        assert_eq!(
            letter.body,
            e.to_string().into_bytes(),
            "the original bytes, in order"
        );
        let info = DeadLetterInfo::from_properties(&letter.properties);
        assert_eq!(info.event_id, Some(event_id(e)));
    }
    app.finish().await;
}

/// One event, two webhooks: A (wrong token) fails and is dead-lettered, B is delivered. A
/// replay goes to A only: skipped while A is not in the config, a new dead letter when it
/// fails again, nothing with `--dry-run`, and delivered (dead letter removed) once the token
/// is right. B never hears of it again.
#[tokio::test]
async fn dlq_replay_reaches_only_the_named_webhook_and_takes_the_fixed_token() {
    let mut app = app("cli-dlq-replay")
        .listeners(2)
        .webhook(
            r#"
[[webhook]]
name = "a"
url = "https://127.0.0.1:@PORT0@/?token=${A_TOKEN}&type=apono"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}", "email": "{{ data.requester.email }}"}'

[[webhook]]
name = "b"
url = "@URL1@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}", "email": "{{ data.requester.email }}"}'
"#,
        )
        .env("A_TOKEN", "not-the-token")
        .start()
        .await;
    let approved = event(Trigger::RequestApproved, "replay-1");
    app.publish(&approved).await;
    assert_eq!(wait_ready(&app, &dlq(&app), 1).await, 1);
    assert_eq!(app.listeners[1].wait_for_requests(1, WAIT).await.len(), 1);
    app.stop_worker().await;
    let (a, b) = (&app.listeners[0], &app.listeners[1]);
    assert_eq!(a.requests().len(), 1);
    assert_eq!(a.requests()[0].status, 401);
    let delivered_to_b = b.requests()[0].body.clone();
    let original = dlq_list_json(&app).await;
    assert_eq!(original[0]["webhook"], "a");
    assert_eq!(original[0]["reason"], "rejected");

    // A is not in this config (renamed): skipped, exit 1, the dead letter stays as it was.
    let renamed = edited_config(&app, |t| t.replace("name = \"a\"", "name = \"a2\""));
    let skipped = cli_in(
        &app,
        renamed.path(),
        &["dlq", "replay", "--all"],
        &[("A_TOKEN", TEST_TOKEN)],
        None,
    )
    .await;
    assert_exit(&skipped, 1);
    assert!(
        skipped
            .stdout
            .contains("skipped: 1 × webhook `a` is not in the current config"),
        "{}",
        skipped.stdout
    );
    assert_eq!(dlq_list_json(&app).await, original);

    // --dry-run: says what it would do, does nothing.
    let dry = cli(&app, &["dlq", "replay", "--all", "--dry-run"], &[]).await;
    assert_exit(&dry, 0);
    assert!(
        dry.stdout
            .contains(&format!("would replay #1 {} → a", event_id(&approved))),
        "{}",
        dry.stdout
    );
    assert_eq!(dlq_list_json(&app).await, original);

    // An id that is not there is an error.
    let unknown = cli(&app, &["dlq", "replay", "7"], &[]).await;
    assert_exit(&unknown, 1);
    assert!(
        unknown
            .stderr
            .contains("no dead letter at position or with event id `7`"),
        "{}",
        unknown.stderr
    );
    assert_eq!(a.requests().len(), 1, "no request so far");

    // Fails again (the endpoint answers 503; one attempt): exactly one dead letter, with the
    // new failure's headers, and exit 1.
    a.push_response(Scripted::status(503));
    let again = cli(
        &app,
        &["dlq", "replay", "1", "--attempts", "1"],
        &[("A_TOKEN", TEST_TOKEN)],
    )
    .await;
    assert_exit(&again, 1);
    assert!(
        again
            .stdout
            .contains("failed again: 1 × delivery_failed (http 503)"),
        "{}",
        again.stdout
    );
    assert_eq!(a.requests().len(), 2);
    let replaced = dlq_list_json(&app).await;
    let replaced = replaced.as_array().unwrap();
    assert_eq!(replaced.len(), 1, "one dead letter, not two: {replaced:#?}");
    assert_eq!(replaced[0]["webhook"], "a");
    assert_eq!(replaced[0]["reason"], "delivery_failed");
    assert_eq!(replaced[0]["last_status"], 503);
    assert_eq!(replaced[0]["event_id"], original[0]["event_id"]);
    assert_ne!(replaced[0]["failed_at"], original[0]["failed_at"]);

    // The token fixed (the variable is right now): delivered to A, the dead letter is gone.
    let fixed = cli(
        &app,
        &["--json", "dlq", "replay", "--all"],
        &[("A_TOKEN", TEST_TOKEN)],
    )
    .await;
    assert_exit(&fixed, 0);
    let summary = json(&fixed);
    assert_eq!(summary["delivered"], 1, "{summary:#}");
    assert_eq!(summary["results"][0]["webhook"], "a");
    assert_eq!(summary["results"][0]["result"], "delivered");
    let to_a = a.requests();
    assert_eq!(to_a.len(), 3);
    assert_eq!(to_a[2].status, 200);
    assert_eq!(
        to_a[2].body, delivered_to_b,
        "the same event, rendered the same"
    );
    assert_eq!(b.requests().len(), 1, "B got nothing more");
    assert_eq!(
        app.ready_count(&dlq(&app)).await,
        0,
        "the dead letter is gone"
    );
    assert_eq!(
        app.ready_count(&app.config.amqp.queue).await,
        0,
        "no fan-out"
    );
    app.finish().await;
}

/// `purge` needs `--yes` (exit 2 without it) and deletes only what the filter selects.
#[tokio::test]
async fn dlq_purge_by_reason_deletes_only_those() {
    let mut app = app("cli-dlq-purge")
        .webhook(FAILING)
        .env("WRONG_TOKEN", "not-the-token")
        .start()
        .await;
    let events = vec![
        event(Trigger::RequestApproved, "purge-1"),
        event(Trigger::RequestCreated, "purge-2"),
        event(Trigger::RequestApproved, "purge-3"),
    ];
    dead_letter_in_order(&app, &events).await;
    app.stop_worker().await;

    let unconfirmed = cli(&app, &["dlq", "purge", "--reason", "rejected"], &[]).await;
    assert_exit(&unconfirmed, 2);
    assert!(
        unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    assert_eq!(app.ready_count(&dlq(&app)).await, 3);

    let purged = cli(
        &app,
        &["dlq", "purge", "--reason", "rejected", "--yes"],
        &[],
    )
    .await;
    assert_exit(&purged, 0);
    assert_eq!(
        purged.stdout.trim_end(),
        format!("deleted 2 of 3 dead letters in `{}`", dlq(&app))
    );
    let left = dlq_list_json(&app).await;
    let left = left.as_array().unwrap();
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0]["reason"], "render_failed");
    assert_eq!(left[0]["event_id"], event_id(&events[1]));

    let by_webhook = cli(
        &app,
        &[
            "--json",
            "dlq",
            "purge",
            "--webhook",
            "strict-missing",
            "--yes",
        ],
        &[],
    )
    .await;
    assert_exit(&by_webhook, 0);
    assert_eq!(json(&by_webhook)["deleted"], 1);
    assert_eq!(app.ready_count(&dlq(&app)).await, 0);
    app.finish().await;
}

/// A webhook whose dead letters are all `rejected` until the right token is set.
const WRONG_TOKEN_ONLY: &str = r#"
[[webhook]]
name = "wrong-token"
url = "https://127.0.0.1:@PORT0@/?token=${WRONG_TOKEN}&type=apono"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#;

/// Three `rejected` dead letters for `wrong-token`; the worker is stopped afterwards.
async fn three_rejected(app: &mut TestApp) {
    app.start_worker();
    let events: Vec<Value> = (1..=3)
        .map(|i| event(Trigger::RequestApproved, &format!("stop-{i}")))
        .collect();
    dead_letter_in_order(app, &events).await;
    app.stop_worker().await;
    app.listener().clear();
}

/// SIGTERM during a replay: the delivery in flight finishes and its dead letter is removed;
/// the others are not attempted, stay queued, and the exit code is 1.
#[tokio::test]
async fn dlq_replay_interrupted_reports_what_it_did_not_attempt() {
    let mut app = app("cli-dlq-sigterm")
        .webhook(WRONG_TOKEN_ONLY)
        .env("WRONG_TOKEN", "not-the-token")
        .build()
        .await;
    three_rejected(&mut app).await;
    app.listener().set_delay(Duration::from_secs(1));
    let dir = app.config_dir().to_str().unwrap().to_string();
    let mut relay = Relay::spawn(
        &["dlq", "replay", "--all", "--config", &dir],
        &child_env(&app, &[("WRONG_TOKEN", TEST_TOKEN)]),
    );
    let first = app.listener().wait_for_requests(1, WAIT).await;
    assert_eq!(first.len(), 1, "stderr:\n{}", relay.stderr_so_far());
    relay.terminate();
    let finished = relay.exit_within(WAIT).await;
    assert_exit(&finished, 1);
    assert!(
        finished
            .stdout
            .starts_with("replayed 1 of 3: 1 delivered, 0 failed again, 0 skipped\n"),
        "{}",
        finished.stdout
    );
    assert!(
        finished
            .stdout
            .contains("not attempted: 2, still queued (interrupted)"),
        "{}",
        finished.stdout
    );
    assert_eq!(app.listener().requests().len(), 1);
    let left = dlq_list_json(&app).await;
    let ids: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{left:#}");
    assert!(
        ids[0].starts_with("stop-2:") && ids[1].starts_with("stop-3:"),
        "{ids:?}"
    );
    app.finish().await;
}

/// RabbitMQ closes a channel whose basic.get deliveries stay unacked past its
/// consumer_timeout, taking them back. A replay stops before a delivery could end past it
/// (the worst case is max_elapsed + timeout) instead of delivering what it can no longer
/// remove.
#[tokio::test]
async fn dlq_replay_stops_before_the_consumer_timeout() {
    let mut app = app("cli-dlq-timeout")
        .webhook(WRONG_TOKEN_ONLY)
        .env("WRONG_TOKEN", "not-the-token")
        .delivery(
            r#"
timeout = "1s"
max_attempts = 1
initial_backoff = "50ms"
max_backoff = "100ms"
max_elapsed = "500ms"
"#,
        )
        .build()
        .await;
    three_rejected(&mut app).await;
    // Each delivery takes 700ms; the worst case is 1.5s. With a 2s consumer_timeout the first
    // fits, the second would not.
    app.listener().set_delay(Duration::from_millis(700));
    let out = cli(
        &app,
        &["dlq", "replay", "--all"],
        &[
            ("WRONG_TOKEN", TEST_TOKEN),
            ("RELAY__AMQP__CONSUMER_TIMEOUT", "2s"),
        ],
    )
    .await;
    assert_exit(&out, 1);
    assert!(
        out.stdout
            .starts_with("replayed 1 of 3: 1 delivered, 0 failed again, 0 skipped\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "not attempted: 2, still queued (stopped before the broker's consumer_timeout (2s)"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(app.listener().requests().len(), 1);
    assert_eq!(app.ready_count(&dlq(&app)).await, 2);
    app.finish().await;
}

/// Every `dlq` command on a broker where the dead-letter queue was never declared says so in
/// one line, with no library log line, and changes nothing.
#[tokio::test]
async fn dlq_commands_without_the_queue_say_so_in_one_line() {
    let app = app("cli-dlq-missing")
        .webhook(FAILING)
        .env("WRONG_TOKEN", "not-the-token")
        .build()
        .await;
    let missing = format!("{}.never-declared", dlq(&app));
    let env = [("RELAY__AMQP__DEAD_LETTER_QUEUE", missing.as_str())];
    let line = format!(
        "the dead-letter queue `{missing}` does not exist yet (no worker has declared it), so \
         there are no dead letters"
    );
    for (args, code) in [
        (&["dlq", "list"][..], 0),
        (&["--json", "dlq", "list"][..], 0),
        (&["dlq", "show", "1"][..], 1),
        (&["dlq", "replay", "--all"][..], 0),
        (&["dlq", "replay", "1"][..], 1),
        (&["dlq", "purge", "--yes"][..], 0),
    ] {
        let finished = cli(&app, args, &env).await;
        assert_exit(&finished, code);
        assert_eq!(
            finished.stderr.trim_end(),
            line,
            "{args:?}: {}",
            finished.stderr
        );
        let expected_stdout = match args {
            ["--json", ..] => "[]\n",
            _ => "",
        };
        assert_eq!(finished.stdout, expected_stdout, "{args:?}");
    }
}
