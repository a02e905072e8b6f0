//! The queues' arguments on the real broker: what every declared queue carries, what the
//! broker does with a message it dead-letters (from the input queue into the dead-letter
//! queue, from a wait queue back into its retry queue), and the error an operator gets when a
//! queue exists with the arguments of an older version.
//!
//! Arguments are read back through the broker's own equivalence check: redeclaring a queue
//! with exactly the arguments the worker declared is accepted, and redeclaring it with one of
//! them left out is refused with `PRECONDITION_FAILED - inequivalent arg '<name>' … current is
//! <value>`, which names the argument and the value the broker holds.

use crate::binary::Relay;
use crate::harness::{app, child_env, rabbitmq_url};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicRejectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::time::{Duration, Instant};
use webhook_relay::broker::dead_letter::{header_number, header_text};
use webhook_relay::broker::topology::{self, InequivalentQueue, QueueSettings};
use webhook_relay::broker::{AmqpError, Broker};
use webhook_relay::config::QueueType;

const WAIT: Duration = Duration::from_secs(10);

const HOOK: &str = r#"
[[webhook]]
name = "hook"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#;

/// A fast retry schedule: wait queues of 100 ms and 200 ms.
const FAST_RETRIES: &str = r#"
timeout = "2s"
max_attempts = 5
initial_backoff = "100ms"
max_backoff = "200ms"
max_elapsed = "30s"
retry_window = "1ms"
"#;

/// A connection of the test's own: a refused declare closes its channel, never the harness's.
async fn connect() -> Connection {
    Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ")
}

async fn channel(connection: &Connection) -> Channel {
    connection.create_channel().await.expect("open a channel")
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares `queue` with `arguments` on a channel of its own and returns the broker's answer.
async fn declare(
    connection: &Connection,
    queue: &str,
    arguments: FieldTable,
) -> Result<(), lapin::Error> {
    channel(connection)
        .await
        .queue_declare(queue.into(), durable(), arguments)
        .await
        .map(|_| ())
}

fn without(arguments: &FieldTable, name: &str) -> FieldTable {
    let mut table = arguments.inner().clone();
    table.remove(&ShortString::from(name));
    FieldTable::from(table)
}

/// `queue` exists on the broker with exactly `arguments`, which are `expected` (every one of
/// them, with these values as the broker prints them).
async fn assert_carries(
    connection: &Connection,
    queue: &str,
    arguments: &FieldTable,
    expected: &[(&str, &str)],
) {
    let mut declared: Vec<&str> = arguments.inner().keys().map(|k| k.as_str()).collect();
    let mut listed: Vec<&str> = expected.iter().map(|(name, _)| *name).collect();
    declared.sort_unstable();
    listed.sort_unstable();
    assert_eq!(
        declared, listed,
        "`{queue}`: the arguments the worker declares"
    );
    declare(connection, queue, arguments.clone())
        .await
        .unwrap_or_else(|e| panic!("`{queue}` carries the declared arguments: {e}"));
    for (name, value) in expected {
        if (*name, *value) == ("x-queue-type", "'classic'") {
            // The broker takes a declare without `x-queue-type` as classic: nothing to read.
            continue;
        }
        let refused = declare(connection, queue, without(arguments, name))
            .await
            .expect_err("a declare without one of the queue's arguments is refused");
        let inequivalent = InequivalentQueue::from_error(queue, &refused)
            .unwrap_or_else(|| panic!("`{queue}` has no `{name}`: {refused}"));
        assert_eq!(inequivalent.argument, *name);
        assert_eq!(inequivalent.current, *value, "`{queue}`: {inequivalent}");
        assert_eq!(inequivalent.declared, "none", "{inequivalent}");
    }
}

/// Takes one message from `queue` (waiting for it up to `WAIT`), unsettled.
async fn get(channel: &Channel, queue: &str) -> Option<lapin::message::BasicGetMessage> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let got = channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic.get");
        if got.is_some() {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn headers(properties: &BasicProperties) -> FieldTable {
    properties.headers().clone().unwrap_or_default()
}

/// With quorum queues: the input and retry queues dead-letter at least once into the
/// dead-letter queue with the broker's delivery limit one above the worker's; the wait queues
/// dead-letter at least once into their retry queue; the dead-letter queue has a limit that
/// is in effect none.
#[tokio::test]
async fn quorum_queues_carry_at_least_once_dead_lettering_and_the_delivery_limits() {
    let app = app("topology-quorum")
        .webhook(HOOK)
        .amqp_extra("queue_type = \"quorum\"\nredelivery_limit = 3")
        .delivery(FAST_RETRIES)
        .build()
        .await;
    let amqp = &app.config.amqp;
    let settings = QueueSettings::from(amqp);
    let connection = connect().await;
    let dlq = format!("'{}'", amqp.dead_letter_queue);
    let consumed = [
        ("x-queue-type", "'quorum'"),
        ("x-dead-letter-exchange", "''"),
        ("x-dead-letter-routing-key", dlq.as_str()),
        ("x-dead-letter-strategy", "'at-least-once'"),
        ("x-overflow", "'reject-publish'"),
        ("x-delivery-limit", "'4'"),
    ];
    assert_carries(
        &connection,
        &amqp.queue,
        &topology::input_queue_arguments(settings),
        &consumed,
    )
    .await;
    assert_carries(
        &connection,
        &amqp.dead_letter_queue,
        &topology::dead_letter_queue_arguments(settings),
        &[
            ("x-queue-type", "'quorum'"),
            ("x-delivery-limit", "'2147483647'"),
        ],
    )
    .await;

    let hook = app.config.webhook("hook").unwrap();
    let path = topology::retry_path(&amqp.queue, hook, settings);
    assert_eq!(path.len(), 3, "a retry queue and two wait queues");
    let retry = topology::retry_queue(&amqp.queue, "hook");
    assert_eq!(path[0].0, retry);
    assert_carries(&connection, &path[0].0, &path[0].1, &consumed).await;
    let retry_key = format!("'{retry}'");
    for ((wait, arguments), ttl) in path[1..].iter().zip(["'100'", "'200'"]) {
        assert_carries(
            &connection,
            wait,
            arguments,
            &[
                ("x-queue-type", "'quorum'"),
                ("x-message-ttl", ttl),
                ("x-dead-letter-exchange", "''"),
                ("x-dead-letter-routing-key", retry_key.as_str()),
                ("x-dead-letter-strategy", "'at-least-once'"),
                ("x-overflow", "'reject-publish'"),
            ],
        )
        .await;
    }
    let _ = connection.close(200, "done".into()).await;
    app.finish().await;
}

/// With classic queues the input and retry queues dead-letter into the dead-letter queue too
/// (at most once: classic queues know no other strategy).
#[tokio::test]
async fn classic_queues_dead_letter_into_the_dead_letter_queue() {
    let app = app("topology-classic")
        .webhook(HOOK)
        .delivery(FAST_RETRIES)
        .build()
        .await;
    let amqp = &app.config.amqp;
    let settings = QueueSettings::from(amqp);
    let connection = connect().await;
    let dlq = format!("'{}'", amqp.dead_letter_queue);
    let consumed = [
        ("x-queue-type", "'classic'"),
        ("x-dead-letter-exchange", "''"),
        ("x-dead-letter-routing-key", dlq.as_str()),
    ];
    assert_carries(
        &connection,
        &amqp.queue,
        &topology::input_queue_arguments(settings),
        &consumed,
    )
    .await;
    let hook = app.config.webhook("hook").unwrap();
    let path = topology::retry_path(&amqp.queue, hook, settings);
    assert_carries(&connection, &path[0].0, &path[0].1, &consumed).await;
    let _ = connection.close(200, "done".into()).await;
    app.finish().await;
}

/// A message rejected without requeue from the input queue (by an operator, another client)
/// is moved by the broker into the dead-letter queue, body and properties kept, for both
/// queue types.
#[tokio::test]
async fn a_message_rejected_from_the_input_queue_lands_in_the_dead_letter_queue() {
    for queue_type in [QueueType::Classic, QueueType::Quorum] {
        let app = app("topology-reject")
            .webhook(HOOK)
            .amqp_extra(&format!("queue_type = \"{}\"", queue_type.as_str()))
            .build()
            .await;
        let amqp = &app.config.amqp;
        app.publish_raw(
            br#"{"not": "processed"}"#,
            "RequestApproved",
            Some("rejected-1"),
        )
        .await;
        let connection = connect().await;
        let channel = channel(&connection).await;
        let message = get(&channel, &amqp.queue).await.expect("the input message");
        message
            .delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .expect("basic.reject");

        let letters = app.dead_letters(1, WAIT).await;
        assert_eq!(
            letters.len(),
            1,
            "{queue_type:?}: dead-lettered by the broker"
        );
        let letter = &letters[0];
        assert_eq!(letter.message_id(), Some("rejected-1"));
        assert_eq!(&letter.body[..], br#"{"not": "processed"}"#);
        let h = headers(&letter.properties);
        assert_eq!(
            header_text(&h, "x-first-death-reason").as_deref(),
            Some("rejected")
        );
        assert_eq!(
            header_text(&h, "x-first-death-queue").as_deref(),
            Some(amqp.queue.as_str())
        );
        assert_eq!(app.ready_count(&amqp.queue).await, 0);
        let _ = connection.close(200, "done".into()).await;
        app.finish().await;
    }
}

/// The broker's delivery limit is the backstop behind the worker's: with
/// `redelivery_limit = 1` the broker still delivers the message with `x-delivery-count` 2
/// (the delivery on which the worker dead-letters it as `redelivery_limit`), and a message
/// returned once more lands in the dead-letter queue instead of vanishing.
#[tokio::test]
async fn a_quorum_input_queue_dead_letters_a_message_over_its_delivery_limit() {
    let app = app("topology-limit")
        .webhook(HOOK)
        .amqp_extra("queue_type = \"quorum\"\nredelivery_limit = 1")
        .build()
        .await;
    let amqp = &app.config.amqp;
    app.publish_raw(br#"{"poison": true}"#, "RequestApproved", Some("poison-1"))
        .await;
    let connection = connect().await;
    let channel = channel(&connection).await;
    let mut counts = Vec::new();
    for _ in 0..3 {
        let message = get(&channel, &amqp.queue).await.expect("delivered again");
        counts.push(
            header_number(&headers(&message.delivery.properties), "x-delivery-count").unwrap_or(0),
        );
        message
            .delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await
            .expect("nack with requeue");
    }
    assert_eq!(counts, vec![0, 1, 2], "the worker's limit is reached first");

    let letters = app.dead_letters(1, WAIT).await;
    assert_eq!(letters.len(), 1, "the broker dead-lettered it");
    assert_eq!(letters[0].message_id(), Some("poison-1"));
    assert_eq!(
        header_text(&headers(&letters[0].properties), "x-first-death-reason").as_deref(),
        Some("delivery_limit")
    );
    assert!(
        channel
            .basic_get(amqp.queue.as_str().into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
            .is_none(),
        "gone from the input queue"
    );
    let _ = connection.close(200, "done".into()).await;
    app.finish().await;
}

/// A parked delivery comes back through the TTL hop on quorum queues (at-least-once
/// dead-lettering from the wait queue into the retry queue): body, properties and the
/// worker's retry headers arrive unchanged.
#[tokio::test]
async fn a_parked_delivery_comes_back_through_the_ttl_hop_on_quorum_queues() {
    let app = app("topology-hop")
        .webhook(HOOK)
        .amqp_extra("queue_type = \"quorum\"")
        .delivery(FAST_RETRIES)
        .build()
        .await;
    let amqp = &app.config.amqp;
    let hook = app.config.webhook("hook").unwrap();
    let retry = topology::retry_queue(&amqp.queue, "hook");
    let wait = topology::wait_queue_for(
        &amqp.queue,
        "hook",
        &hook.delivery,
        Duration::from_millis(150),
    );
    assert!(wait.ends_with(".wait-200ms"), "{wait}");

    let mut parked_headers = FieldTable::default();
    parked_headers.insert(
        "x-relay-webhook".into(),
        AMQPValue::LongString(LongString::from("hook")),
    );
    parked_headers.insert("x-relay-attempts".into(), AMQPValue::LongLongInt(3));
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id("parked-1".into())
        .with_headers(parked_headers);
    app.admin
        .publisher()
        .publish_confirmed("", &wait, br#"{"parked": true}"#, properties)
        .await
        .expect("park confirmed");

    let connection = connect().await;
    let channel = channel(&connection).await;
    let message = get(&channel, &retry)
        .await
        .expect("back in the retry queue after the TTL");
    let delivery = &message.delivery;
    assert_eq!(&delivery.data[..], br#"{"parked": true}"#);
    assert_eq!(
        delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("parked-1")
    );
    let h = headers(&delivery.properties);
    assert_eq!(header_text(&h, "x-relay-webhook").as_deref(), Some("hook"));
    assert_eq!(header_number(&h, "x-relay-attempts"), Some(3));
    assert_eq!(
        header_text(&h, "x-first-death-reason").as_deref(),
        Some("expired")
    );
    assert_eq!(
        header_text(&h, "x-first-death-queue").as_deref(),
        Some(wait.as_str())
    );
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    assert_eq!(app.retry_path_count("hook").await, 0);
    let _ = connection.close(200, "done".into()).await;
    app.finish().await;
}

/// Queues declared by an older version (fewer arguments) or of the other type: the worker
/// refuses to start with one error line that names the queue, the argument, both values and
/// what to do, instead of the broker's raw answer.
#[tokio::test]
async fn queues_with_older_arguments_fail_with_one_error_naming_queue_and_argument() {
    let app = app("topology-upgrade")
        .webhook(HOOK)
        .delivery(FAST_RETRIES)
        .build()
        .await;
    let amqp = app.config.amqp.clone();
    let connection = connect().await;
    let old_arguments = topology::queue_arguments(QueueType::Classic);

    // The input queue as the previous version declared it: its type and nothing more.
    replace_queue(&connection, &amqp.queue, old_arguments.clone()).await;
    let broker = Broker::connect(&amqp, &app.config.redactor)
        .await
        .expect("connect");
    let inequivalent = match broker.declare_topology(&amqp).await {
        Err(AmqpError::Inequivalent(e)) => e,
        other => panic!("expected an inequivalent queue, got {other:?}"),
    };
    assert_eq!(
        inequivalent,
        InequivalentQueue {
            queue: amqp.queue.clone(),
            argument: "x-dead-letter-exchange".into(),
            current: "none".into(),
            declared: "''".into(),
        }
    );
    broker.close().await;

    // The real binary: exit 1 and that one line, nothing of the broker's raw text.
    let mut relay = Relay::run(app.config_dir(), &child_env(&app, &[]));
    let finished = relay.exit_within(WAIT).await;
    let stderr = &finished.stderr;
    assert_eq!(finished.code(), Some(1), "stderr:\n{stderr}");
    let lines = finished.stderr_lines();
    let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "one error line; stderr:\n{stderr}");
    assert_eq!(lines.last(), Some(errors[0]), "{stderr}");
    // lapin logs the broker closing its channel (target `lapin::channel`, level ERROR) before
    // the worker's own line; nothing else is printed.
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.contains("Channel closed")),
        "{stderr}"
    );
    assert_eq!(*errors[0], format!("error: {inequivalent}"));
    assert!(
        errors[0].starts_with(&format!(
            "error: queue `{}` already exists with other arguments: `x-dead-letter-exchange` is none on the broker, this version declares '' (the first difference the broker found).",
            amqp.queue
        )),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("delete the queue"), "{}", errors[0]);
    assert!(!errors[0].contains("PRECONDITION"), "{}", errors[0]);

    // A retry queue of the previous version.
    replace_queue(
        &connection,
        &amqp.queue,
        topology::input_queue_arguments((&amqp).into()),
    )
    .await;
    let retry = topology::retry_queue(&amqp.queue, "hook");
    replace_queue(&connection, &retry, old_arguments.clone()).await;
    let broker = Broker::connect(&amqp, &app.config.redactor)
        .await
        .expect("connect");
    broker
        .declare_topology(&amqp)
        .await
        .expect("input queue upgraded");
    match broker
        .declare_retry_topology(&amqp, &app.config.webhooks)
        .await
    {
        Err(AmqpError::Inequivalent(e)) => {
            assert_eq!(e.queue, retry);
            assert_eq!(e.argument, "x-dead-letter-exchange");
        }
        other => panic!("expected an inequivalent retry queue, got {other:?}"),
    }
    broker.close().await;
    replace_queue(
        &connection,
        &retry,
        topology::retry_queue_arguments((&amqp).into()),
    )
    .await;

    // Switching `queue_type` over existing classic queues.
    let mut quorum = amqp.clone();
    quorum.queue_type = QueueType::Quorum;
    let broker = Broker::connect(&quorum, &app.config.redactor)
        .await
        .expect("connect");
    match broker.declare_topology(&quorum).await {
        Err(AmqpError::Inequivalent(e)) => {
            // The broker names the first argument it finds different (3.10 checks
            // `x-overflow` before `x-queue-type`): one the quorum declaration sets and the
            // classic queue does not have.
            assert_eq!(e.queue, amqp.queue);
            let quorum_arguments = topology::input_queue_arguments((&quorum).into());
            let classic_arguments = topology::input_queue_arguments((&amqp).into());
            let name = ShortString::from(e.argument.as_str());
            assert!(
                quorum_arguments.inner().get(&name) != classic_arguments.inner().get(&name),
                "{e}"
            );
            assert_eq!(e.current, "none", "{e}");
        }
        other => panic!("expected an inequivalent queue type, got {other:?}"),
    }
    broker.close().await;
    let _ = connection.close(200, "done".into()).await;
    app.finish().await;
}

/// Deletes `queue` and declares it again with `arguments`.
async fn replace_queue(connection: &Connection, queue: &str, arguments: FieldTable) {
    channel(connection)
        .await
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .expect("delete the queue");
    declare(connection, queue, arguments)
        .await
        .expect("declare the queue");
}
