//! The broker side: quorum queues with their redelivery limit, and several broker URLs
//! tried in turn.

use super::{WAIT, header_number, hook, retry_path_drained};
use crate::harness::{TestApp, app, closed_port, publish_id, rabbitmq_url};
use crate::support::logzio::Scripted;
use lapin::options::QueueDeclareOptions;
use serde_json::json;
use webhook_relay::broker::dead_letter::DeadLetterInfo;
use webhook_relay::broker::topology;
use webhook_relay::config::QueueType;
use webhook_relay::ops::metrics::Metrics;
use webhook_relay::pipeline::outcome::Reason;

/// With `queue_type = "quorum"` every queue is a quorum queue: an event is delivered end to
/// end, through the quorum retry path too, and a message the broker delivered more than
/// `redelivery_limit` times is dead-lettered unprocessed as `redelivery_limit`.
#[tokio::test]
async fn quorum_queues_deliver_and_dead_letter_a_poison_message() {
    let mut app = app("retry-quorum")
        .webhook(&hook("approvals", 0, ""))
        .amqp_extra("queue_type = \"quorum\"\nredelivery_limit = 2")
        .delivery(
            r#"
timeout = "2s"
max_attempts = 5
initial_backoff = "100ms"
max_backoff = "200ms"
max_elapsed = "30s"
retry_window = "1ms"
"#,
        )
        .build()
        .await;
    let queue = app.config.amqp.queue.clone();
    assert_quorum_queues(&app, "approvals").await;
    publish_id(&app, "poison").await;
    // Delivered and returned three times (redelivery_limit + 1) before any worker runs.
    for returned in 0..3 {
        let message = app
            .admin
            .fetch(&queue)
            .await
            .expect("basic.get")
            .expect("the poison message");
        let count = header_number(&message, "x-delivery-count").unwrap_or(0);
        assert_eq!(count, returned, "x-delivery-count before return {returned}");
        webhook_relay::broker::settle::release(&message)
            .await
            .expect("nack requeue");
    }

    app.start_worker();
    let letters = app.dead_letters(1, WAIT).await;
    assert_eq!(letters.len(), 1, "the poison message is dead-lettered");
    let info = DeadLetterInfo::from_properties(&letters[0].properties);
    assert_eq!(info.reason, Some(Reason::RedeliveryLimit));
    assert_eq!(info.attempts, Some(0), "unprocessed");
    assert_eq!(letters[0].message_id(), Some("poison"));
    assert!(app.wait_count(Metrics::acked, 1, WAIT).await);
    assert!(
        app.listener().requests().is_empty(),
        "no request for the poison message"
    );

    // A good event, failing once: parked in the quorum wait queue, then delivered.
    app.listener().push_response(Scripted::status(503));
    publish_id(&app, "good-1").await;
    assert_eq!(
        app.listener().wait_for_accepted(1, WAIT).await,
        vec![json!({"id": "good-1"})]
    );
    assert!(retry_path_drained(&app, "approvals", WAIT).await);
    assert!(app.wait_count(Metrics::acked, 3, WAIT).await);
    assert_eq!(app.listener().requests().len(), 2, "one 503, one 200");
    assert_eq!(app.count(Metrics::parked), 1);
    assert_eq!(app.count(Metrics::retries_consumed), 1);
    assert_eq!(app.count(Metrics::dead_lettered), 1);
    assert_eq!(app.ready_count(&queue).await, 0);
    app.finish().await;
}

/// Every queue of the app and of `webhook`'s retry path is a quorum queue: declaring it again
/// with the quorum arguments is accepted (the broker refuses a declare whose `x-queue-type`,
/// or any other argument, differs).
async fn assert_quorum_queues(app: &TestApp, webhook: &str) {
    let amqp = &app.config.amqp;
    assert_eq!(amqp.queue_type, QueueType::Quorum);
    let settings = topology::QueueSettings::from(amqp);
    let mut queues = vec![
        (
            amqp.queue.clone(),
            topology::input_queue_arguments(settings),
        ),
        (
            amqp.dead_letter_queue.clone(),
            topology::dead_letter_queue_arguments(settings),
        ),
    ];
    let hook = app.config.webhook(webhook).expect("webhook in the config");
    queues.extend(topology::retry_path(&amqp.queue, hook, settings));
    for (name, arguments) in queues {
        let declared = app
            .admin
            .channel()
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments,
            )
            .await;
        assert!(declared.is_ok(), "`{name}` is a quorum queue: {declared:?}");
    }
}

/// `amqp.url` names a closed port and `amqp.urls` the real broker: the worker tries them in
/// turn, connects and delivers.
#[tokio::test]
async fn several_broker_urls_are_tried_in_turn() {
    let closed = format!("amqp://guest:guest@127.0.0.1:{}/%2f", closed_port());
    let app = app("retry-urls")
        .webhook(&hook("approvals", 0, ""))
        .amqp_url(&closed)
        .amqp_extra(&format!("urls = [\"{}\"]", rabbitmq_url()))
        .start()
        .await;
    publish_id(&app, "urls-1").await;
    assert_eq!(
        app.listener().wait_for_accepted(1, WAIT).await,
        vec![json!({"id": "urls-1"})]
    );
    assert!(app.wait_count(Metrics::acked, 1, WAIT).await);
    assert_eq!(app.count(Metrics::connections), 1);
    app.finish().await;
}
