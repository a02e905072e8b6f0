//! Dead letters and parked deliveries survive the loss of the node that leads their queues:
//! quorum queues keep them, and the wait queues' TTL hop back to the retry queue is
//! at-least-once dead-lettering, so parked deliveries still come back.

use crate::common::{
    NodeStopped, Worker, approvals, assert_all_within, assert_settled, cluster_app,
    cluster_or_skip, finish, leader_of, missing, peek_event_ids, prefer, publish_bulk, ready_count,
    scenario, wait_delivered,
};
use crate::support::logzio::Scripted;
use std::time::{Duration, Instant};

/// `rejecting` has a wrong token: every delivery is refused (401, permanent) and
/// dead-lettered. `later` refuses every first attempt (503), so every event is parked in
/// its wait queue for a few seconds.
const HOOKS: &str = r#"
[[webhook]]
name = "rejecting"
url = "https://127.0.0.1:@PORT0@/?token=wrong-token&type=apono"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'

[[webhook]]
name = "later"
url = "@URL1@"
headers = { X-Cluster-Worker = "${CLUSTER_WORKER}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
[webhook.delivery]
max_attempts = 10
initial_backoff = "6s"
max_backoff = "6s"
retry_window = "100ms"
max_elapsed = "120s"
circuit_failures = 0
"#;

/// Every event is dead-lettered for `rejecting` and parked for `later`; then node 1, which
/// leads the input, dead-letter, retry and wait queues, stops. The dead letters are all
/// still there (read through another node), the parked deliveries come back after their TTL
/// and reach `later`, and after node 1 is back the dead letters are still all there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_parked_deliveries_survive_the_loss_of_their_leader_node() {
    scenario("5 dead letters and parked deliveries", async {
        if !cluster_or_skip("5 dead letters and parked deliveries").await {
            return;
        }
        const N: usize = 600;
        let app = cluster_app("cluster-parked", HOOKS)
            .listeners(2)
            .delivery(super::node_loss::STEADY_DELIVERY)
            .build()
            .await;
        for _ in 0..N {
            app.listeners[1].push_response(Scripted::status(503));
        }
        let (ids, messages) = approvals("parked", N);
        publish_bulk(&app, &messages).await;
        let dlq = app.config.amqp.dead_letter_queue.clone();
        assert_eq!(
            leader_of(&dlq).await,
            1,
            "node 1 leads the dead-letter queue"
        );
        let worker = Worker::start(&app, "w-node2", &prefer(2));

        // Everything dead-lettered for `rejecting` and parked for `later`.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let letters = ready_count(&[2], &dlq).await as usize;
            let refused = app.listeners[1].requests().len();
            if letters >= N && refused >= N {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "within 30s: {letters} dead letters and {refused} refused deliveries, not {N}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The deliveries to `later` are parked, and still will be when node 1 stops half a
        // second from now (their TTL is 6 s). Counted before the stop: while a quorum
        // queue elects a new leader, its message count reads 0.
        let hook = app.config.webhook("later").expect("later");
        let queue = &app.config.amqp.queue;
        let mut parked = 0;
        for tier in webhook_relay::broker::topology::tiers(&hook.delivery) {
            let wait = webhook_relay::broker::topology::wait_queue(queue, "later", tier);
            parked += ready_count(&[2, 3], &wait).await as usize;
        }
        assert!(parked > 0, "deliveries are parked when node 1 stops");
        let stopped = NodeStopped::stop(1).await;
        let since = Instant::now();

        let letters = peek_event_ids(&[2, 3], &dlq, 2 * N).await;
        let lost = missing(&ids, &letters);
        assert!(
            lost.is_empty(),
            "{} dead letters missing with node 1 down, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        println!(
            "[cluster]   node 1 stopped with {parked} deliveries parked: all {N} dead letters \
             readable through node 2 ({} in all)",
            letters.values().sum::<usize>()
        );
        let got = wait_delivered(&app.listeners[1], &ids, |_| true, Duration::from_secs(60)).await;
        assert_all_within(
            "5 parked deliveries",
            "later",
            &ids,
            &got,
            crate::common::PREFETCH,
        );
        println!(
            "[cluster]   every parked delivery came back and reached `later` {:.1}s after \
             the stop",
            since.elapsed().as_secs_f64()
        );
        stopped.start().await;
        let letters = peek_event_ids(&[1], &dlq, 2 * N).await;
        assert!(
            missing(&ids, &letters).is_empty(),
            "every dead letter is still there once node 1 is back"
        );
        assert!(worker.is_running());
        worker.stop().await;
        assert_settled(&app, N as u32).await;
        finish(app).await;
    })
    .await;
}
