//! One worker's connection is cut by a TCP proxy while the other worker carries on, with
//! deliveries parked on the retry path at the time.

use crate::common::{
    PREFETCH, Worker, approvals, assert_all_within, assert_settled, cluster_app, cluster_or_skip,
    delivered, finish, node_url, prefer, publish_bulk, ready_count, scenario, wait_delivered,
    wait_progress, worker_of,
};
use crate::support::logzio::Scripted;
use crate::support::proxy::TcpProxy;
use std::time::{Duration, Instant};

/// `steady` answers after a delay; `recovering` refuses its first requests, so that
/// deliveries wait on its retry path (in the quorum wait queues) when the cut comes.
const TWO_HOOKS: &str = r#"
[[webhook]]
name = "steady"
url = "@URL0@"
headers = { X-Cluster-Worker = "${CLUSTER_WORKER}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'

[[webhook]]
name = "recovering"
url = "@URL1@"
headers = { X-Cluster-Worker = "${CLUSTER_WORKER}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
[webhook.delivery]
max_attempts = 30
initial_backoff = "500ms"
max_backoff = "1s"
retry_window = "200ms"
circuit_failures = 0
"#;

/// How many requests `recovering` answers with 503 before it recovers.
const REFUSED: usize = 2500;

/// Worker `w-proxied` reaches node 1 through a proxy that cuts its connection mid-drain;
/// `w-direct` on node 2 carries on. Nothing is lost to either webhook; the cut costs at most
/// the proxied worker's input and retry prefetch in duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_workers_connection_is_cut_while_the_other_carries_on_and_nothing_is_lost() {
    scenario("4 one worker's connection cut", async {
        if !cluster_or_skip("4 connection cut").await {
            return;
        }
        const N: usize = 2000;
        let app = cluster_app("cluster-cut", TWO_HOOKS)
            .listeners(2)
            .delivery(super::node_loss::STEADY_DELIVERY)
            .build()
            .await;
        let listener = app.listener();
        listener.set_delay(Duration::from_millis(40));
        for _ in 0..REFUSED {
            app.listeners[1].push_response(Scripted::status(503));
        }
        let (ids, messages) = approvals("cut", N);
        publish_bulk(&app, &messages).await;
        let proxy = TcpProxy::start("127.0.0.1:5701".parse().unwrap());
        let through_proxy = format!("amqp://guest:guest@{}/%2f", proxy.addr());
        let proxied = Worker::start(
            &app,
            "w-proxied",
            &[through_proxy, node_url(2), node_url(3)],
        );
        let direct = Worker::start(&app, "w-direct", &prefer(2));
        proxied.wait_connections(1, Duration::from_secs(20)).await;

        assert!(
            wait_progress(listener, N / 4, Duration::from_secs(30)).await,
            "a quarter delivered before the cut"
        );
        let hook = app.config.webhook("recovering").expect("recovering");
        let queue = &app.config.amqp.queue;
        let mut parked = 0;
        for tier in webhook_relay::broker::topology::tiers(&hook.delivery) {
            let wait = webhook_relay::broker::topology::wait_queue(queue, "recovering", tier);
            parked += ready_count(&[2, 3], &wait).await;
        }
        proxy.sever();
        let since = Instant::now();
        let at = delivered(listener, |_| true).len();
        assert!(
            parked > 0,
            "deliveries to `recovering` are parked at the time of the cut"
        );
        proxied.wait_connections(2, Duration::from_secs(30)).await;
        let from_direct = listener
            .requests()
            .iter()
            .filter(|r| worker_of(r) == "w-direct")
            .count();
        println!(
            "[cluster]   cut w-proxied's connection with {at}/{N} delivered and {parked} \
             deliveries parked; it reconnected in {:.1}s (w-direct had sent {from_direct})",
            since.elapsed().as_secs_f64()
        );
        assert!(proxy.connection_count() >= 2, "w-proxied reconnected");
        assert_eq!(
            direct.metrics.connections(),
            1,
            "w-direct kept its connection through the cut"
        );

        let got = wait_delivered(listener, &ids, |_| true, Duration::from_secs(60)).await;
        let bound = PREFETCH + PREFETCH;
        assert_all_within("4 connection cut", "steady", &ids, &got, bound);
        let got = wait_delivered(&app.listeners[1], &ids, |_| true, Duration::from_secs(60)).await;
        assert_all_within("4 connection cut", "recovering", &ids, &got, bound);
        assert!(proxied.is_running() && direct.is_running());
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxied.stop().await;
        direct.stop().await;
        assert_settled(&app, 0).await;
        finish(app).await;
    })
    .await;
}
