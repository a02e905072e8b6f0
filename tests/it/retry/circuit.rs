//! One webhook's trouble kept to itself: the circuit breaker parks without requests until a
//! probe closes it, and a hanging endpoint does not hold up a healthy one.

use super::{WAIT, hook, retry_path_drained};
use crate::harness::{app, publish_ids, received_ids};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use webhook_relay::ops::metrics::Metrics;

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
    let ids = publish_ids(&app, "circuit", 0..N).await;

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
    let ids = publish_ids(&app, "iso", 0..N).await;
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
