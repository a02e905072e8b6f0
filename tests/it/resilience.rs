//! Broker loss and reconnection: the worker talks to RabbitMQ through a [`TcpProxy`] that the
//! test cuts or turns away, while the harness's admin connection goes to the broker directly.

use crate::harness::{self, TestApp, app, closed_port, publish_ids, received_ids};
use crate::support::proxy::TcpProxy;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use webhook_relay::ops::metrics::Metrics;
use webhook_relay::worker;

const WAIT: Duration = Duration::from_secs(10);

const WEBHOOK: &str = r#"
[[webhook]]
name = "approvals"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#;

/// Waits until every id in `ids` has reached the listener at least once.
async fn wait_all_received(app: &TestApp, ids: &[String], timeout: Duration) -> bool {
    let listener = app.listener();
    app.eventually(timeout, || {
        let got = received_ids(listener);
        ids.iter().all(|id| got.contains_key(id))
    })
    .await
}

fn worker_finished(app: &TestApp) -> bool {
    app.worker
        .as_ref()
        .expect("worker started")
        .handle
        .is_finished()
}

fn proxied_url(proxy: &TcpProxy) -> String {
    format!("amqp://guest:guest@{}/%2f", proxy.addr())
}

/// The connection is cut while deliveries are in flight: the worker stays up, reconnects by
/// itself, the broker hands back what was unacked, and later events flow too.
#[tokio::test]
async fn broker_connection_cut_mid_delivery_reconnects_and_loses_nothing() {
    let proxy = TcpProxy::start(harness::rabbitmq_addr());
    let app = app("cut")
        .amqp_url(&proxied_url(&proxy))
        .webhook(WEBHOOK)
        .start()
        .await;
    assert!(
        app.eventually(WAIT, || app.metrics().connections() == 1)
            .await,
        "the worker connects through the proxy"
    );
    assert_eq!(proxy.connection_count(), 1);

    // A slow endpoint: the deliveries are still waiting for their answer at the cut.
    app.listener().set_delay(Duration::from_millis(1500));
    let before = publish_ids(&app, "before", 0..6).await;
    let in_flight = app.listener().wait_for_requests(6, WAIT).await;
    assert_eq!(in_flight.len(), 6, "every event is in flight");

    proxy.sever();
    // The answers to the requests already made keep their delay; redeliveries are quick.
    app.listener().set_delay(Duration::ZERO);

    assert!(
        proxy.wait_for_connections(2, WAIT).await,
        "the worker reconnects through the proxy"
    );
    assert!(
        app.eventually(WAIT, || app.metrics().connections() >= 2)
            .await,
        "the worker counts a second connection"
    );
    assert!(!worker_finished(&app), "the worker did not exit");

    let after = publish_ids(&app, "after", 0..4).await;
    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    assert!(
        wait_all_received(&app, &all, WAIT).await,
        "every event reached the listener; got {:?}",
        received_ids(app.listener())
    );
    assert!(
        app.eventually(WAIT, || app.metrics().acked() >= all.len() as u64)
            .await,
        "every event is acked in the end (acked {})",
        app.metrics().acked()
    );
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0);
    assert_eq!(
        app.ready_count(&app.config.amqp.dead_letter_queue).await,
        0,
        "nothing was dead-lettered"
    );

    let counts = received_ids(app.listener());
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    println!("requests per event after the cut: {counts:?} ({duplicates} duplicates)");
    let unknown: BTreeSet<&String> = counts.keys().filter(|id| !all.contains(id)).collect();
    assert!(unknown.is_empty(), "unexpected event ids: {unknown:?}");
    assert!(!worker_finished(&app), "the worker is still running");
    app.finish().await;
}

/// The broker looks down for a while (connections turned away): the worker keeps retrying
/// with backoff, not in a hot loop, and resumes once it is back.
#[tokio::test]
async fn broker_refusing_for_a_while_then_back_the_worker_retries_and_resumes() {
    let proxy = TcpProxy::start(harness::rabbitmq_addr());
    let app = app("refuse")
        .amqp_url(&proxied_url(&proxy))
        .webhook(WEBHOOK)
        .start()
        .await;
    assert!(
        app.eventually(WAIT, || app.metrics().connections() == 1)
            .await,
        "the worker connects through the proxy"
    );
    let first = publish_ids(&app, "first", 0..2).await;
    assert!(wait_all_received(&app, &first, WAIT).await);

    proxy.set_refusing(true);
    proxy.sever();
    // Events published while the worker is cut off wait in the queue.
    let during = publish_ids(&app, "during", 0..3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let refused = proxy.refused_count();
    assert!(
        refused >= 2,
        "the worker keeps retrying (refused {refused})"
    );
    // reconnect_initial_backoff = 100ms, reconnect_max_backoff = 500ms: a handful of tries a
    // second, far from a hot loop.
    assert!(
        refused <= 15,
        "the worker backs off (refused {refused} in 1s)"
    );
    assert_eq!(app.metrics().connections(), 1, "no connection yet");
    assert!(!worker_finished(&app), "the worker did not give up");

    proxy.set_refusing(false);
    assert!(
        app.eventually(WAIT, || app.metrics().connections() >= 2)
            .await,
        "the worker reconnects once the broker is back"
    );
    let after = publish_ids(&app, "after", 0..2).await;
    let expected: Vec<String> = during.iter().chain(&after).cloned().collect();
    assert!(
        wait_all_received(&app, &expected, WAIT).await,
        "events published during and after the outage are delivered; got {:?}",
        received_ids(app.listener())
    );
    assert!(
        app.eventually(WAIT, || app.metrics().acked() >= 7).await,
        "every event is acked (acked {})",
        app.metrics().acked()
    );
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0);
    assert!(!worker_finished(&app), "the worker is still running");
    app.finish().await;
}

/// A broker that is not there at start is one quick error naming it, password masked.
#[tokio::test]
async fn broker_unreachable_at_start_is_a_quick_error_with_the_password_masked() {
    const PASSWORD: &str = "n0t-the-real-pw";
    let port = closed_port();
    let app = app("unreachable")
        .amqp_url(&format!("amqp://guest:{PASSWORD}@127.0.0.1:{port}/%2f"))
        .webhook(WEBHOOK)
        .build()
        .await;

    let started = Instant::now();
    let result = tokio::time::timeout(
        WAIT,
        worker::run(
            app.config.clone(),
            CancellationToken::new(),
            Arc::new(Metrics::new()),
        ),
    )
    .await
    .expect("run returns instead of retrying forever");
    let elapsed = started.elapsed();
    let error = result.expect_err("an unreachable broker at start is an error");
    let text = error.to_string();
    let debug = format!("{error:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(
        text.contains(&format!("amqp://guest:***@127.0.0.1:{port}")),
        "names the broker with the password masked: {text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!debug.contains(PASSWORD), "{debug}");
    app.finish().await;
}
