//! Nodes go away under a draining worker: the node it is connected to, the node leading the
//! input queue, and every node in turn (a rolling restart).

use crate::common::{
    NODES, NodeStopped, PREFETCH, Worker, approvals, assert_all_within, assert_settled,
    cluster_app, cluster_or_skip, delivered, duplicates_by_worker, finish, leader_of, prefer,
    publish_bulk, scenario, wait_delivered, wait_progress,
};
use std::time::{Duration, Instant};

/// One webhook, answering after a delay so that a drain lasts a few seconds.
pub const STEADY_HOOK: &str = r#"
[[webhook]]
name = "steady"
url = "@URL0@"
headers = { X-Cluster-Worker = "${CLUSTER_WORKER}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#;

/// How long the sink takes per answer during a drain.
pub const STEADY_ANSWER: Duration = Duration::from_millis(40);

/// How long it takes while a node is being stopped: at 16 in flight per worker that is at
/// most ~200 events over a ~6 s stop, far fewer than the drain has left.
pub const FAULT_DELAY: Duration = Duration::from_millis(500);

/// Retries that outlast a node's restart.
pub const STEADY_DELIVERY: &str = r#"
timeout = "5s"
max_attempts = 5
initial_backoff = "100ms"
max_backoff = "500ms"
max_elapsed = "60s"
retry_window = "1s"
"#;

/// Waits until the drain resumes after a fault (one more event delivered than `at`);
/// returns how long after `since` that was.
async fn recovery(
    listener: &crate::support::logzio::LocalLogzio,
    at: usize,
    since: Instant,
) -> Duration {
    assert!(
        wait_progress(listener, at + 1, Duration::from_secs(45)).await,
        "deliveries did not resume within 45s of the fault"
    );
    since.elapsed()
}

/// The node a worker is connected to stops mid-drain; the worker moves to the next node of
/// `amqp.urls`, nothing is lost, and the node is started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_node_stops_mid_drain_and_comes_back_and_nothing_is_lost() {
    scenario("1 worker's node stopped", async {
        if !cluster_or_skip("1 worker's node stopped").await {
            return;
        }
        const N: usize = 2000;
        let app = cluster_app("cluster-own-node", STEADY_HOOK)
            .delivery(STEADY_DELIVERY)
            .build()
            .await;
        let listener = app.listener();
        listener.set_delay(STEADY_ANSWER);
        let (ids, messages) = approvals("own-node", N);
        publish_bulk(&app, &messages).await;
        // Node 1 leads the queues (they were declared through it); the worker is on node 2.
        let worker = Worker::start(&app, "w-node2", &prefer(2));
        worker.wait_connections(1, Duration::from_secs(20)).await;

        assert!(
            wait_progress(listener, N / 4, Duration::from_secs(30)).await,
            "a quarter delivered before the fault"
        );
        // Slowed while the node stops (~6 s), so the drain cannot end before the fault
        // however fast this machine is; back to the steady pace once it is in place.
        listener.set_delay(FAULT_DELAY);
        let stopped = NodeStopped::stop(2).await;
        let since = Instant::now();
        let at = delivered(listener, |_| true).len();
        listener.set_delay(STEADY_ANSWER);
        assert!(at < N, "the fault lands mid-drain ({at}/{N} delivered)");
        worker.wait_connections(2, Duration::from_secs(30)).await;
        let recovered = recovery(listener, at, since).await;
        println!(
            "[cluster]   node 2 stopped with {at}/{N} delivered; the worker reconnected and \
             delivered again {:.1}s after the stop",
            recovered.as_secs_f64()
        );
        stopped.start().await;

        let got = wait_delivered(listener, &ids, |_| true, Duration::from_secs(60)).await;
        assert_all_within("1 worker's node stopped", "steady", &ids, &got, PREFETCH);
        assert!(worker.is_running(), "the worker is still running");
        worker.stop().await;
        assert_settled(&app, 0).await;
        finish(app).await;
    })
    .await;
}

/// The node leading the input queue stops mid-drain while one worker is connected to it
/// and another to a follower: a new leader is elected, both carry on, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_input_queues_leader_stops_mid_drain_and_nothing_is_lost() {
    scenario("2 leader's node stopped", async {
        if !cluster_or_skip("2 leader's node stopped").await {
            return;
        }
        const N: usize = 3000;
        let app = cluster_app("cluster-leader", STEADY_HOOK)
            .delivery(STEADY_DELIVERY)
            .build()
            .await;
        let listener = app.listener();
        listener.set_delay(STEADY_ANSWER);
        let (ids, messages) = approvals("leader", N);
        publish_bulk(&app, &messages).await;
        let queue = app.config.amqp.queue.clone();
        let leader = leader_of(&queue).await;
        let follower = NODES.into_iter().find(|n| *n != leader).unwrap();
        println!("[cluster]   {queue} is led by node {leader}");
        let on_leader = Worker::start(&app, "w-leader", &prefer(leader));
        let on_follower = Worker::start(&app, "w-follower", &prefer(follower));

        assert!(
            wait_progress(listener, N / 4, Duration::from_secs(30)).await,
            "a quarter delivered before the fault"
        );
        listener.set_delay(FAULT_DELAY);
        let stopped = NodeStopped::stop(leader).await;
        let since = Instant::now();
        let at = delivered(listener, |_| true).len();
        listener.set_delay(STEADY_ANSWER);
        assert!(at < N, "the fault lands mid-drain ({at}/{N} delivered)");
        on_leader.wait_connections(2, Duration::from_secs(30)).await;
        let recovered = recovery(listener, at, since).await;
        let new_leader = leader_of(&queue).await;
        println!(
            "[cluster]   leader node {leader} stopped with {at}/{N} delivered; node \
             {new_leader} leads now; deliveries resumed {:.1}s after the stop",
            recovered.as_secs_f64()
        );
        assert_ne!(new_leader, leader, "a new leader was elected");
        assert_eq!(
            on_follower.metrics.connections(),
            1,
            "the worker on a follower kept its connection while the leader moved"
        );
        stopped.start().await;

        let got = wait_delivered(listener, &ids, |_| true, Duration::from_secs(60)).await;
        assert_all_within(
            "2 leader's node stopped",
            "steady",
            &ids,
            &got,
            2 * PREFETCH,
        );
        println!(
            "[cluster]   duplicates by worker: {:?}",
            duplicates_by_worker(listener)
        );
        assert!(on_leader.is_running() && on_follower.is_running());
        on_leader.stop().await;
        on_follower.stop().await;
        assert_settled(&app, 0).await;
        finish(app).await;
    })
    .await;
}

/// A rolling restart: nodes 1, 2 and 3 in turn are stopped and started again while two
/// workers (on nodes 1 and 2) drain. Nothing is lost; each restart costs at most a
/// prefetch of duplicates per worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_loses_nothing() {
    scenario("3 rolling restart", async {
        if !cluster_or_skip("3 rolling restart").await {
            return;
        }
        const N: usize = 3000;
        let app = cluster_app("cluster-rolling", STEADY_HOOK)
            .delivery(STEADY_DELIVERY)
            .build()
            .await;
        let listener = app.listener();
        // Two workers of 16 in flight each at ~200 ms per request: about 160 events/s, so
        // the drain outlasts the three restarts.
        listener.set_delay(Duration::from_millis(200));
        let (ids, messages) = approvals("rolling", N);
        publish_bulk(&app, &messages).await;
        let started = Instant::now();
        let workers = [
            Worker::start(&app, "w-node1", &prefer(1)),
            Worker::start(&app, "w-node2", &prefer(2)),
        ];
        assert!(
            wait_progress(listener, N / 10, Duration::from_secs(30)).await,
            "a tenth delivered before the first restart"
        );
        let mut slowest = Duration::ZERO;
        for node in NODES {
            let connections: Vec<u64> = workers.iter().map(|w| w.metrics.connections()).collect();
            let stopped = NodeStopped::stop(node).await;
            let since = Instant::now();
            let at = delivered(listener, |_| true).len();
            // The worker connected to this node moves to another.
            if node <= workers.len() {
                workers[node - 1]
                    .wait_connections(connections[node - 1] + 1, Duration::from_secs(30))
                    .await;
            }
            let recovered = if at < N {
                recovery(listener, at, since).await
            } else {
                Duration::ZERO
            };
            slowest = slowest.max(recovered);
            println!(
                "[cluster]   node {node} stopped with {at}/{N} delivered; deliveries resumed \
                 {:.1}s after the stop",
                recovered.as_secs_f64()
            );
            stopped.start().await;
        }

        let got = wait_delivered(listener, &ids, |_| true, Duration::from_secs(90)).await;
        assert_all_within(
            "3 rolling restart",
            "steady",
            &ids,
            &got,
            NODES.len() * workers.len() * PREFETCH,
        );
        println!(
            "[cluster]   duplicates by worker: {:?}",
            duplicates_by_worker(listener)
        );
        println!(
            "[cluster]   3 rolling restart: all {N} in {:.1}s; longest pause {:.1}s",
            started.elapsed().as_secs_f64(),
            slowest.as_secs_f64()
        );
        for worker in workers {
            assert!(worker.is_running(), "worker {} still running", worker.name);
            worker.stop().await;
        }
        assert_settled(&app, 0).await;
        finish(app).await;
    })
    .await;
}
