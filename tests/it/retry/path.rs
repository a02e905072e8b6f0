//! The retry path itself: parked past the window, delivered from the retry queue, the budget
//! (`max_attempts`, `max_elapsed`) counted across passes and across a restart.

use super::{WAIT, header_number, hook, retry_path_drained};
use crate::harness::{TestApp, app, publish_id, publish_ids, received_ids};
use crate::support::logzio::{LocalLogzio, Scripted};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use webhook_relay::broker::dead_letter::{self, DeadLetterInfo};
use webhook_relay::broker::{Inbound, topology};
use webhook_relay::ops::metrics::Metrics;
use webhook_relay::pipeline::outcome::Reason;

/// Queues `n` scripted 503s.
fn fail_next(listener: &LocalLogzio, n: usize) {
    for _ in 0..n {
        listener.push_response(Scripted::status(503));
    }
}

/// A header of a message as text.
fn header_text(message: &Inbound, name: &str) -> Option<String> {
    dead_letter::header_text(message.properties.headers().as_ref()?, name)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Waits until `queue` holds `n` ready messages.
async fn wait_ready(app: &TestApp, queue: &str, n: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if app.ready_count(queue).await == n {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Deliveries that succeed first time, or after a couple of 503s inside the retry window,
/// cost one consume and one ack per event: nothing is parked, nothing is read back from a
/// retry queue, nothing is dead-lettered.
#[tokio::test]
async fn happy_path_and_short_retries_publish_nothing_extra() {
    let app = app("retry-happy")
        .webhook(&hook("approvals", 0, ""))
        .delivery(
            r#"
timeout = "5s"
max_attempts = 5
initial_backoff = "50ms"
max_backoff = "200ms"
max_elapsed = "20s"
retry_window = "5s"
"#,
        )
        .start()
        .await;
    // The first two requests fail; whichever events they belong to are retried in process.
    fail_next(app.listener(), 2);
    let ids = publish_ids(&app, "happy", 0..20).await;

    assert!(
        app.wait_count(Metrics::acked, 20, WAIT).await,
        "all acked; acked = {}",
        app.count(Metrics::acked)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = received_ids(app.listener());
    assert_eq!(
        received.keys().cloned().collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(app.listener().requests().len(), 22, "20 events + 2 retries");
    assert_eq!(app.listener().accepted().len(), 20, "each delivered once");
    assert_eq!(app.count(Metrics::consumed), 20, "one consume per event");
    assert_eq!(app.count(Metrics::acked), 20, "one ack per event");
    assert_eq!(app.count(Metrics::delivered), 20);
    assert_eq!(app.count(Metrics::parked), 0, "nothing parked");
    assert_eq!(
        app.count(Metrics::retries_consumed),
        0,
        "no retry-queue pass"
    );
    assert_eq!(app.count(Metrics::dead_lettered), 0);
    assert_eq!(app.count(Metrics::requeued), 0);
    assert_eq!(app.retry_path_count("approvals").await, 0);
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0);
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);
    app.finish().await;
}

/// Parking is confirmed before the input is acked: with the webhook's wait queues gone the
/// park is unroutable and not stored. The worker keeps the outcome (no requeue, no second
/// request), declares the wait queue again and stores the park; the delivery then comes back
/// from the retry path and succeeds.
#[tokio::test]
async fn an_unstored_park_is_stored_again_once_its_wait_queue_is_declared() {
    let app = app("retry-unstored")
        .webhook(&hook("flaky", 0, ""))
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
        .start()
        .await;
    // The worker declared the retry path when it connected; take the wait queues away.
    assert!(app.wait_count(Metrics::connections, 1, WAIT).await);
    let hook = app.config.webhook("flaky").unwrap().clone();
    for tier in topology::tiers(&hook.delivery) {
        let name = topology::wait_queue(&app.config.amqp.queue, "flaky", tier);
        app.admin
            .channel()
            .queue_delete(name.as_str().into(), Default::default())
            .await
            .expect("delete a wait queue");
    }
    fail_next(app.listener(), 1);
    publish_id(&app, "unstored-1").await;

    assert_eq!(
        app.listener().wait_for_accepted(1, WAIT).await,
        vec![json!({"id": "unstored-1"})],
        "delivered from the retry path"
    );
    assert!(
        app.wait_count(Metrics::acked, 2, WAIT).await,
        "input and retry acked"
    );
    assert_eq!(app.count(Metrics::requeued), 0, "never requeued");
    assert_eq!(
        app.count(Metrics::parked),
        1,
        "parked once it could be stored"
    );
    assert_eq!(app.count(Metrics::consumed), 1, "the input was taken once");
    assert_eq!(app.count(Metrics::retries_consumed), 1);
    assert_eq!(app.listener().requests().len(), 2, "503, then 200");
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0);
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);
    app.admin
        .declare_retry_topology(&app.config.amqp, &app.config.webhooks)
        .await
        .expect("declare the retry path again for the clean-up");
    app.finish().await;
}

/// An endpoint failing longer than the retry window: the delivery is parked and the input
/// acked while the endpoint still fails; once it answers 200 the event comes from the retry
/// path, one request per retry-queue pass, and the retry path drains. The healthy webhook of
/// the same event got it exactly once: a parked delivery goes to its own webhook only.
#[tokio::test]
async fn a_delivery_failing_past_the_window_is_parked_then_delivered_from_the_retry_path() {
    let app = app("retry-park")
        .listeners(2)
        .webhook(&hook("flaky", 0, ""))
        .webhook(&hook("healthy", 1, ""))
        .delivery(
            r#"
timeout = "2s"
max_attempts = 20
initial_backoff = "100ms"
max_backoff = "400ms"
max_elapsed = "30s"
retry_window = "200ms"
"#,
        )
        .start()
        .await;
    let (flaky, healthy) = (&app.listeners[0], &app.listeners[1]);
    const FAILURES: usize = 6;
    fail_next(flaky, FAILURES);
    publish_id(&app, "parked-1").await;

    // Parked while the endpoint still fails: the input is acked (the only ack so far).
    assert!(
        app.wait_count(Metrics::parked, 1, WAIT).await,
        "the delivery is parked"
    );
    assert!(
        flaky.accepted().is_empty(),
        "the endpoint still fails when the delivery is parked"
    );
    assert_eq!(app.count(Metrics::consumed), 1);
    assert!(app.count(Metrics::acked) >= 1, "the input is acked");
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0);
    assert_eq!(healthy.wait_for_accepted(1, WAIT).await.len(), 1);
    assert!(
        app.eventually(WAIT, || app.count(Metrics::retries_consumed) >= 1)
            .await,
        "the delivery comes back from its retry queue"
    );

    // The endpoint recovers after its scripted failures.
    let accepted = flaky.wait_for_accepted(1, WAIT).await;
    assert_eq!(accepted, vec![json!({"id": "parked-1"})]);
    assert!(
        retry_path_drained(&app, "flaky", WAIT).await,
        "the retry path drains"
    );
    assert!(app.wait_count(Metrics::delivered, 2, WAIT).await);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let requests = flaky.requests();
    assert_eq!(
        requests.len(),
        FAILURES + 1,
        "the failures, then one success"
    );
    let keys: BTreeSet<_> = requests
        .iter()
        .map(|r| r.header("idempotency-key").unwrap_or("?").to_string())
        .collect();
    assert_eq!(keys.len(), 1, "one idempotency key across passes: {keys:?}");
    let passes = app.count(Metrics::retries_consumed) as usize;
    let in_window = requests.len() - passes;
    assert!(
        (1..=2).contains(&in_window),
        "one request per retry-queue pass: {} requests, {passes} passes",
        requests.len()
    );
    assert_eq!(
        app.count(Metrics::parked) as usize,
        passes,
        "parked once from the input, then again by every pass but the last"
    );
    assert_eq!(
        healthy.requests().len(),
        1,
        "the healthy webhook got it once"
    );
    assert_eq!(
        app.count(Metrics::consumed),
        1,
        "the input was consumed once"
    );
    assert_eq!(app.count(Metrics::delivered), 2);
    assert_eq!(app.count(Metrics::dead_lettered), 0);
    assert_eq!(app.count(Metrics::requeued), 0);
    assert_eq!(app.retry_path_count("healthy").await, 0);
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);
    app.finish().await;
}

/// Always 503 with max_attempts = 4 and a tiny window: exactly four requests across the
/// in-process and retry-queue passes, then one `delivery_failed` dead letter saying 4.
#[tokio::test]
async fn max_attempts_counts_across_in_process_and_retry_queue_passes() {
    let app = app("retry-budget")
        .webhook(&hook("down", 0, ""))
        .delivery(
            r#"
timeout = "2s"
max_attempts = 4
initial_backoff = "50ms"
max_backoff = "200ms"
max_elapsed = "30s"
retry_window = "150ms"
"#,
        )
        .start()
        .await;
    fail_next(app.listener(), 10);
    publish_id(&app, "budget-1").await;

    let letters = app.dead_letters(1, WAIT).await;
    assert_eq!(letters.len(), 1, "one dead letter");
    let info = DeadLetterInfo::from_properties(&letters[0].properties);
    assert_eq!(info.reason, Some(Reason::DeliveryFailed));
    assert_eq!(info.attempts, Some(4));
    assert_eq!(info.last_status, Some(503));
    assert_eq!(info.webhook.as_deref(), Some("down"));
    assert_eq!(info.event_id.as_deref(), Some("budget-1"));
    assert_eq!(
        info.routing_key.as_deref(),
        Some("RequestApproved"),
        "the original routing key, not the retry queue's name"
    );
    assert_eq!(letters[0].message_id(), Some("budget-1"));
    assert!(app.wait_count(Metrics::dead_lettered, 1, WAIT).await);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(app.listener().requests().len(), 4, "exactly four requests");
    assert!(
        app.count(Metrics::retries_consumed) >= 1,
        "at least one attempt came from the retry queue"
    );
    assert_eq!(app.count(Metrics::dead_lettered), 1);
    assert_eq!(app.count(Metrics::consumed), 1);
    assert_eq!(app.retry_path_count("down").await, 0);
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0);
    app.finish().await;
}

/// Always 503 with max_elapsed = 1s: `delivery_failed` well before max_attempts, and no
/// attempt starts more than max_elapsed after the first.
#[tokio::test]
async fn max_elapsed_counts_across_the_retry_path() {
    let app = app("retry-elapsed")
        .webhook(&hook("down", 0, ""))
        .delivery(
            r#"
timeout = "2s"
max_attempts = 50
initial_backoff = "100ms"
max_backoff = "400ms"
max_elapsed = "1s"
retry_window = "200ms"
"#,
        )
        .start()
        .await;
    fail_next(app.listener(), 60);
    publish_id(&app, "elapsed-1").await;

    let letters = app.dead_letters(1, WAIT).await;
    assert_eq!(letters.len(), 1, "one dead letter");
    let info = DeadLetterInfo::from_properties(&letters[0].properties);
    assert_eq!(info.reason, Some(Reason::DeliveryFailed));
    let attempts = info.attempts.expect("x-relay-attempts") as usize;
    assert!((2..50).contains(&attempts), "attempts = {attempts}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests = app.listener().requests();
    assert_eq!(
        requests.len(),
        attempts,
        "the dead letter counts every request"
    );
    let span = requests.last().unwrap().at - requests[0].at;
    assert!(
        span < Duration::from_millis(1200),
        "no attempt after max_elapsed: the last came {span:?} after the first"
    );
    assert!(
        app.count(Metrics::retries_consumed) >= 1,
        "the budget ran out on the retry path"
    );
    assert_eq!(app.retry_path_count("down").await, 0);
    app.finish().await;
}

/// The attempt count and first-failure time travel in headers, so a restarted worker
/// continues the same budget: with max_attempts = 3, two failures before the restart and one
/// after make a dead letter saying 3; a webhook whose endpoint recovers is delivered by the
/// restarted worker.
#[tokio::test]
async fn attempt_count_and_first_failure_survive_a_worker_restart() {
    let mut app = app("retry-restart")
        .listeners(2)
        .webhook(&hook("gives-up", 0, ""))
        .webhook(&hook("recovers", 1, ""))
        .delivery(
            r#"
timeout = "2s"
max_attempts = 3
initial_backoff = "1s"
max_backoff = "2s"
max_elapsed = "60s"
retry_window = "1ms"
"#,
        )
        .start()
        .await;
    fail_next(&app.listeners[0], 3);
    fail_next(&app.listeners[1], 2);
    let published_ms = now_ms();
    publish_id(&app, "restart-1").await;

    // Attempt 1 from the input, attempt 2 from the retry queue (after the 1s tier), each
    // parked again: 4 parkings. Attempt 3 would come after the 2s tier.
    assert!(
        app.wait_count(Metrics::parked, 4, WAIT).await,
        "two failures per webhook; parked = {}",
        app.count(Metrics::parked)
    );
    app.stop_worker().await;
    assert_eq!(app.listeners[0].requests().len(), 2);
    assert_eq!(app.listeners[1].requests().len(), 2);
    let stopped_ms = now_ms();

    // While no worker runs, each delivery arrives in its retry queue: read its state, put it
    // back.
    for webhook in ["gives-up", "recovers"] {
        let queue = topology::retry_queue(&app.config.amqp.queue, webhook);
        assert!(
            wait_ready(&app, &queue, 1, WAIT).await,
            "{webhook}: the delivery waits in `{queue}`"
        );
        let message = app
            .admin
            .fetch(&queue)
            .await
            .expect("basic.get")
            .expect("a message");
        assert_eq!(
            header_number(&message, dead_letter::ATTEMPTS),
            Some(2),
            "{webhook}"
        );
        let first = header_number(&message, dead_letter::FIRST_FAILURE_MS).expect("first failure");
        assert!(
            (published_ms..stopped_ms).contains(&first),
            "{webhook}: first failure {first} between publish {published_ms} and stop {stopped_ms}"
        );
        assert!(
            header_text(&message, dead_letter::FIRST_FAILURE_AT).is_some(),
            "{webhook}"
        );
        assert_eq!(
            header_text(&message, dead_letter::WEBHOOK).as_deref(),
            Some(webhook)
        );
        assert_eq!(
            header_text(&message, dead_letter::ROUTING_KEY).as_deref(),
            Some("RequestApproved")
        );
        assert_eq!(message.message_id(), Some("restart-1"));
        webhook_relay::broker::settle::release(&message)
            .await
            .expect("requeue");
    }

    app.start_worker();
    let letters = app.dead_letters(1, WAIT).await;
    assert_eq!(letters.len(), 1, "one dead letter");
    let info = DeadLetterInfo::from_properties(&letters[0].properties);
    assert_eq!(info.reason, Some(Reason::DeliveryFailed));
    assert_eq!(info.webhook.as_deref(), Some("gives-up"));
    assert_eq!(
        info.attempts,
        Some(3),
        "two attempts before the restart, one after"
    );
    assert_eq!(
        app.listeners[1].wait_for_accepted(1, WAIT).await,
        vec![json!({"id": "restart-1"})]
    );
    assert!(app.wait_count(Metrics::acked, 2, WAIT).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.listeners[0].requests().len(),
        3,
        "three attempts in all"
    );
    assert_eq!(
        app.listeners[1].requests().len(),
        3,
        "two failures, then 200"
    );
    assert_eq!(
        app.count(Metrics::consumed),
        0,
        "the input was acked before"
    );
    assert_eq!(app.count(Metrics::retries_consumed), 2);
    assert_eq!(app.count(Metrics::delivered), 1);
    assert_eq!(app.count(Metrics::dead_lettered), 1);
    assert_eq!(app.retry_path_count("gives-up").await, 0);
    assert_eq!(app.retry_path_count("recovers").await, 0);
    app.finish().await;
}
