//! The durable retry path: a delivery still failing after its short in-process window is
//! parked in its webhook's retry queue (through a TTL wait queue), the input is acked, and
//! later attempts come from the retry queue with the same budget, across restarts. Also the
//! circuit breaker, quorum queues with their redelivery limit, SIGHUP reload through the real
//! binary, and several broker URLs.

use crate::binary::Relay;
use crate::harness::{TestApp, app, child_env, rabbitmq_url, sample_with};
use crate::process::closed_port;
use crate::support::logzio::{LocalLogzio, Scripted};
use lapin::options::QueueDeclareOptions;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use webhook_relay::broker::dead_letter::{self, DeadLetterInfo};
use webhook_relay::broker::{Inbound, topology};
use webhook_relay::config::QueueType;
use webhook_relay::ops::metrics::Metrics;
use webhook_relay::pipeline::event::Trigger;
use webhook_relay::pipeline::outcome::Reason;

const WAIT: Duration = Duration::from_secs(10);

/// A webhook for approvals on listener `n`, body `{"id": data.id}`, with `extra` TOML lines
/// appended (e.g. a `[webhook.delivery]` table).
fn hook(name: &str, n: usize, extra: &str) -> String {
    format!(
        r#"
[[webhook]]
name = "{name}"
url = "@URL{n}@"
triggers = ["RequestApproved"]
body_template = '{{"id": "{{{{ data.id }}}}"}}'
{extra}
"#
    )
}

/// An approval whose `data.id` and message id (so its event id) are `id`.
async fn publish_id(app: &TestApp, id: &str) {
    let event = sample_with(Trigger::RequestApproved, |e| {
        e["data"]["id"] = id.into();
    });
    app.publish_raw(event.to_string().as_bytes(), "RequestApproved", Some(id))
        .await;
}

/// Publishes `{prefix}-{i}` for every `i` in `0..n`; returns the ids.
async fn publish_ids(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        publish_id(app, &id).await;
        ids.push(id);
    }
    ids
}

/// Requests per event id.
fn received_ids(listener: &LocalLogzio) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in listener.requests() {
        let id = request
            .header("x-relay-event-id")
            .unwrap_or("?")
            .to_string();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// Queues `n` scripted 503s.
fn fail_next(listener: &LocalLogzio, n: usize) {
    for _ in 0..n {
        listener.push_response(Scripted::status(503));
    }
}

/// A header of a message as an integer.
fn header_number(message: &Inbound, name: &str) -> Option<i64> {
    dead_letter::header_number(message.properties.headers().as_ref()?, name)
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

/// Waits until nothing is ready on `webhook`'s retry path.
async fn retry_path_drained(app: &TestApp, webhook: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if app.retry_path_count(webhook).await == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let ids = publish_ids(&app, "happy", 20).await;

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
        message.handle.requeue().await.expect("requeue");
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

/// After `circuit_failures` consecutive failures the circuit opens: deliveries are parked
/// without a request, so the input drains at once and the endpoint sees only probes. That
/// holds for deliveries that were queued behind the webhook's concurrency limit when the
/// circuit opened. Once the endpoint answers again a probe closes the circuit and every event
/// is delivered from the retry path.
#[tokio::test]
async fn an_open_circuit_parks_without_requests_and_a_probe_closes_it() {
    const N: usize = 30;
    const CONCURRENCY: usize = 4;
    let app = app("retry-circuit")
        .webhook(&hook(
            "hanging",
            0,
            &format!("[webhook.delivery]\nconcurrency = {CONCURRENCY}\n"),
        ))
        .delivery(
            r#"
timeout = "300ms"
max_attempts = 50
initial_backoff = "100ms"
max_backoff = "400ms"
max_elapsed = "60s"
retry_window = "200ms"
circuit_failures = 3
circuit_cooldown = "1s"
"#,
        )
        .start()
        .await;
    let listener = app.listener();
    listener.set_hang(true);
    let published = Instant::now();
    let ids = publish_ids(&app, "circuit", N).await;

    // The first requests (one per concurrency slot) time out and open the circuit; every
    // other delivery is parked without a request, so the input drains at once.
    assert!(
        app.wait_count(Metrics::consumed, N as u64, WAIT).await,
        "consumed = {}",
        app.count(Metrics::consumed)
    );
    assert!(
        app.eventually(Duration::from_secs(3), || app.count(Metrics::acked)
            >= N as u64)
            .await,
        "every input acked quickly; acked = {}",
        app.count(Metrics::acked)
    );
    let drained_in = published.elapsed();
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0);
    assert!(app.count(Metrics::parked) >= N as u64);

    // While the circuit stays open, only probes reach the endpoint (one per cooldown).
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let open_for = published.elapsed();
    let requests = listener.requests().len();
    let probes = (open_for.as_millis() / 1000) as usize + 1;
    assert!(
        requests <= CONCURRENCY + probes,
        "{requests} requests in {open_for:?} for {N} events (input drained in {drained_in:?})"
    );

    // The endpoint recovers: a probe closes the circuit, the retry path delivers the rest.
    let before_recovery = listener.requests().len();
    listener.set_hang(false);
    assert!(
        app.wait_count(Metrics::delivered, N as u64, WAIT).await,
        "delivered = {}",
        app.count(Metrics::delivered)
    );
    assert!(retry_path_drained(&app, "hanging", WAIT).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = received_ids(listener);
    assert_eq!(
        received.keys().cloned().collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect::<BTreeSet<_>>(),
        "every event reached the endpoint"
    );
    let after_recovery = listener.requests().len() - before_recovery;
    assert!(
        (N - 2..=N + 6).contains(&after_recovery),
        "about one request per event after the recovery, got {after_recovery}"
    );
    assert_eq!(app.count(Metrics::delivered), N as u64);
    assert_eq!(app.count(Metrics::dead_lettered), 0);
    assert_eq!(
        app.count(Metrics::consumed),
        N as u64,
        "no input redelivered"
    );
    app.finish().await;
}

/// A hanging endpoint does not hold the others up: its deliveries are parked, the healthy
/// webhook receives all 200 events while the other still hangs, and once it recovers the
/// hanging one receives all 200 from its retry path, the healthy one nothing more.
#[tokio::test]
async fn a_hanging_webhook_does_not_hold_up_a_healthy_one() {
    const N: usize = 200;
    let app = app("retry-isolation")
        .listeners(2)
        .webhook(&hook(
            "hanging",
            0,
            "[webhook.delivery]\ntimeout = \"1s\"\n",
        ))
        .webhook(&hook("healthy", 1, ""))
        .delivery(
            r#"
timeout = "5s"
max_attempts = 50
initial_backoff = "100ms"
max_backoff = "400ms"
max_elapsed = "60s"
retry_window = "200ms"
circuit_cooldown = "1s"
"#,
        )
        .start()
        .await;
    let (hanging, healthy) = (&app.listeners[0], &app.listeners[1]);
    hanging.set_hang(true);
    let ids = publish_ids(&app, "iso", N).await;
    let all: BTreeSet<String> = ids.iter().cloned().collect();

    assert_eq!(
        healthy.wait_for_accepted(N, WAIT).await.len(),
        N,
        "the healthy webhook gets every event while the other hangs"
    );
    assert!(
        app.wait_count(Metrics::consumed, N as u64, WAIT).await,
        "every input consumed"
    );
    assert!(
        app.eventually(WAIT, || app.count(Metrics::parked) >= N as u64)
            .await,
        "every delivery to the hanging webhook is parked; parked = {}",
        app.count(Metrics::parked)
    );
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0);
    let healthy_ids = received_ids(healthy);
    assert_eq!(healthy_ids.keys().cloned().collect::<BTreeSet<_>>(), all);
    assert!(healthy_ids.values().all(|n| *n == 1), "each once");
    assert!(
        app.wait_count(Metrics::delivered, N as u64, WAIT).await,
        "delivered = {}",
        app.count(Metrics::delivered)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.count(Metrics::delivered),
        N as u64,
        "only the healthy webhook's deliveries succeeded so far"
    );

    hanging.set_hang(false);
    assert!(
        app.wait_count(Metrics::delivered, 2 * N as u64, Duration::from_secs(15))
            .await,
        "delivered = {}",
        app.count(Metrics::delivered)
    );
    assert!(retry_path_drained(&app, "hanging", WAIT).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        received_ids(hanging)
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        all,
        "the recovered webhook gets every event from its retry path"
    );
    assert_eq!(
        healthy.requests().len(),
        N,
        "the healthy one got nothing more"
    );
    assert_eq!(
        app.count(Metrics::consumed),
        N as u64,
        "no input redelivered"
    );
    assert_eq!(app.count(Metrics::dead_lettered), 0);
    assert_eq!(app.retry_path_count("healthy").await, 0);
    app.finish().await;
}

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
        message.handle.requeue().await.expect("nack requeue");
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
