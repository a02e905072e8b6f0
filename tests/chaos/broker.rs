//! The broker itself misbehaves: it closes every connection, then its app restarts.

use crate::common::{
    BrokerAppStopped, approvals, assert_all_and_report, assert_settled, ctl, delivered,
    publish_bulk, rabbitmqctl_or_skip, reconnect_admin, scenario, stats_of, wait_delivered,
    wait_progress,
};
use crate::support::harness::app;
use crate::support::logzio::Scripted;
use std::time::{Duration, Instant};

/// `steady` is slow but answers; `recovering` refuses its first requests, so that at each
/// disruption some of its deliveries wait on its retry path (in TTL wait queues).
const TWO_HOOKS: &str = r#"
[[webhook]]
name = "steady"
url = "@URL0@"
headers = { X-Chaos-Worker = "${CHAOS_WORKER}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'

[[webhook]]
name = "recovering"
url = "@URL1@"
headers = { X-Chaos-Worker = "${CHAOS_WORKER}" }
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
const REFUSED: usize = 3000;

const STEADY_DELIVERY: &str = r#"
timeout = "5s"
max_attempts = 5
initial_backoff = "100ms"
max_backoff = "500ms"
max_elapsed = "60s"
retry_window = "1s"
"#;

const PREFETCH: usize = 32;

/// Each broker disruption can make the worker deliver again what it held unacked: its input
/// prefetch plus its retry consumer's.
const DISRUPTION_DUPLICATE_BOUND: usize = PREFETCH + PREFETCH;

/// Scenario 3: during a run of 5,000 events the broker closes every connection
/// (`rabbitmqctl close_all_connections`), later its app stops and starts again, while one
/// webhook's deliveries are in flight and another's wait on its retry path. Nothing is lost
/// and the worker resumes by itself each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_closes_every_connection_and_restarts_mid_run_and_nothing_is_lost() {
    scenario("3 broker connections closed and app restarted", async {
        let Some(rabbitmqctl) = rabbitmqctl_or_skip("3 broker restart") else {
            return;
        };
        const N: usize = 5000;
        let mut app = app("chaos-broker")
            .listeners(2)
            .webhook(TWO_HOOKS)
            .delivery(STEADY_DELIVERY)
            .env("CHAOS_WORKER", "in-process")
            .env("RELAY__AMQP__PREFETCH", &PREFETCH.to_string())
            .build()
            .await;
        app.listeners[0].set_delay(Duration::from_millis(30));
        for _ in 0..REFUSED {
            app.listeners[1].push_response(Scripted::status(503));
        }
        let (ids, messages) = approvals("broker", N);
        publish_bulk(&app, &messages).await;
        let started = Instant::now();
        app.start_worker();
        let stats = stats_of(&app);
        let listener = app.listener();

        assert!(
            wait_progress(listener, N / 5, Duration::from_secs(30)).await,
            "a fifth delivered before the first disruption"
        );
        ctl(
            &rabbitmqctl,
            &["close_all_connections", "chaos test: every connection closed"],
        )
        .await;
        let closed_at = delivered(listener, |_| true).len();
        let deadline = Instant::now() + Duration::from_secs(20);
        while stats.connections() < 2 {
            assert!(
                Instant::now() < deadline,
                "the worker did not reconnect after close_all_connections"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "[chaos]   worker reconnected after close_all_connections ({closed_at} events delivered by then)"
        );
        assert!(
            wait_progress(listener, closed_at + N / 5, Duration::from_secs(30)).await,
            "deliveries resumed after the reconnect"
        );

        let stopped = BrokerAppStopped::stop(&rabbitmqctl).await;
        let refused_at_stop = app.listeners[1]
            .requests()
            .iter()
            .filter(|r| r.status == 503)
            .count();
        let stopped_at = delivered(listener, |_| true).len();
        tokio::time::sleep(Duration::from_secs(1)).await;
        stopped.start().await;
        reconnect_admin(&mut app).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while stats.connections() < 3 {
            assert!(
                Instant::now() < deadline,
                "the worker did not reconnect after the broker app restarted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "[chaos]   worker reconnected after stop_app/start_app ({stopped_at} events delivered at the stop; `recovering` had refused {refused_at_stop} requests)"
        );
        assert!(
            !app.worker.as_ref().unwrap().handle.is_finished(),
            "the worker is still running"
        );

        let listener = app.listener();
        let got = wait_delivered(listener, &ids, |_| true, Duration::from_secs(40)).await;
        let dups = assert_all_and_report("3 broker restart", "steady", &ids, &got, &got);
        let got = wait_delivered(&app.listeners[1], &ids, |_| true, Duration::from_secs(40)).await;
        let dups_recovering =
            assert_all_and_report("3 broker restart", "recovering", &ids, &got, &got);
        println!(
            "[chaos]   3 broker restart: all {N} in {:.1}s over {} connections; {dups} duplicates (bound 2 × {DISRUPTION_DUPLICATE_BOUND})",
            started.elapsed().as_secs_f64(),
            stats.connections()
        );
        assert!(dups <= 2 * DISRUPTION_DUPLICATE_BOUND, "{dups} duplicates");
        assert!(
            dups_recovering <= 2 * DISRUPTION_DUPLICATE_BOUND,
            "{dups_recovering} duplicates to `recovering`"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.stop_worker().await;
        assert_settled(&app, 0).await;
        assert_eq!(stats.dead_lettered(), 0);
        app.finish().await;
    })
    .await;
}
