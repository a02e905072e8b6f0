//! `amqp.management_url`: a worker whose URLs start with a follower connects to the node
//! leading the input queue, and after that node stops, to the new leader.

use crate::common::{
    NODES, NodeStopped, PREFETCH, Worker, approvals, assert_all_within, assert_settled,
    cluster_app, cluster_or_skip, finish, leader_of, prefer, publish_bulk, scenario,
    wait_delivered, wait_progress,
};
use crate::node_loss::{FAULT_DELAY, STEADY_ANSWER, STEADY_DELIVERY, STEADY_HOOK};
use std::time::{Duration, Instant};

/// The management API of node 3, which this scenario never stops.
const MANAGEMENT: &str = "http://127.0.0.1:15703";

/// The node (1..3) of the open connection named `name`, as the management API lists it;
/// `None` while it is not listed (the API learns of a connection within a few seconds).
async fn node_of_connection(name: &str) -> Option<usize> {
    webhook_relay::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let response = client
        .get(format!("{MANAGEMENT}/api/connections"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .ok()?;
    let body = response.bytes().await.ok()?;
    let connections: Vec<serde_json::Value> = serde_json::from_slice(&body).ok()?;
    connections
        .iter()
        .filter(|c| c["state"] != "closed")
        .find(|c| c["client_properties"]["connection_name"] == name)
        .and_then(|c| c["node"].as_str())
        .and_then(|node| node.strip_prefix("relay"))
        .and_then(|rest| rest.split('@').next())
        .and_then(|n| n.parse().ok())
}

/// Waits until the connection named `name` is listed on `node`; panics after 30 s, saying
/// where it was.
async fn wait_connected_to(name: &str, node: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = node_of_connection(name).await;
        if seen == Some(node) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("connection {name} is on node {seen:?}, not on node {node} (the leader)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_connect_to_the_input_queues_leader_before_and_after_it_moves() {
    scenario("6 leader first", async {
        if !cluster_or_skip("6 leader first").await {
            return;
        }
        const N: usize = 1500;
        let connection_name = format!("cluster-leader-first-{}", std::process::id());
        let mut builder =
            cluster_app("cluster-leader-first", STEADY_HOOK).delivery(STEADY_DELIVERY);
        builder.amqp_extra.push_str(&format!(
            "management_url = \"{MANAGEMENT}\"\nconnection_name = \"{connection_name}\"\n"
        ));
        let app = builder.build().await;
        let listener = app.listener();
        listener.set_delay(STEADY_ANSWER);
        let (ids, messages) = approvals("leader-first", N);
        publish_bulk(&app, &messages).await;
        let queue = app.config.amqp.queue.clone();
        let leader = leader_of(&queue).await;
        // Its URLs start with a follower: only the management API can send it to the leader.
        let follower = NODES
            .into_iter()
            .find(|n| *n != leader && *n != 3)
            .unwrap_or(3);
        let worker = Worker::start(&app, "w-leader-first", &prefer(follower));
        worker.wait_connections(1, Duration::from_secs(20)).await;
        wait_connected_to(&connection_name, leader).await;
        println!(
            "[cluster]   {queue} is led by node {leader}; the worker, given node {follower} \
             first, connected to node {leader}"
        );
        assert!(
            wait_progress(listener, N / 4, Duration::from_secs(30)).await,
            "a quarter delivered before the fault"
        );
        // The leader goes. The worker reconnects at once, while the queue may still be
        // electing, so it lands wherever the lookup pointed then; a worker that connects once
        // the election is over is sent to the new leader.
        listener.set_delay(FAULT_DELAY);
        let stopped = NodeStopped::stop(leader).await;
        listener.set_delay(STEADY_ANSWER);
        worker.wait_connections(2, Duration::from_secs(30)).await;
        let new_leader = leader_of(&queue).await;
        assert_ne!(new_leader, leader, "a new leader was elected");
        let elsewhere = NODES
            .into_iter()
            .find(|n| *n != new_leader && *n != leader)
            .expect("a third node");
        let second_name = format!("{connection_name}-second");
        let second = Worker::start_with(
            &app,
            "w-after-election",
            &prefer(elsewhere),
            &[("RELAY__AMQP__CONNECTION_NAME", second_name.as_str())],
        );
        second.wait_connections(1, Duration::from_secs(20)).await;
        wait_connected_to(&second_name, new_leader).await;
        println!(
            "[cluster]   node {leader} stopped: node {new_leader} leads now; the worker \
             reconnected to node {:?}, and a worker given node {elsewhere} first connected \
             to node {new_leader}",
            node_of_connection(&connection_name).await
        );
        stopped.start().await;
        let got = wait_delivered(listener, &ids, |_| true, Duration::from_secs(60)).await;
        assert_all_within("6 leader first", "steady", &ids, &got, 2 * PREFETCH);
        worker.stop().await;
        second.stop().await;
        assert_settled(&app, 0).await;
        finish(app).await;
    })
    .await;
}
