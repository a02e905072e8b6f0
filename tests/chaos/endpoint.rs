//! Endpoints that misbehave: one hangs while another is healthy; one flaps.

use crate::common::{
    approvals, assert_all_and_report, assert_settled, delivered, publish_bulk, scenario, stats_of,
    wait_delivered,
};
use crate::support::harness::app;
use crate::support::logzio::{LocalLogzio, Scripted};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Webhook A hangs, webhook B is healthy; both match every event.
const HANGING_AND_HEALTHY: &str = r#"
[[webhook]]
name = "hanging"
url = "@URL0@"
headers = { X-Chaos-Worker = "${CHAOS_WORKER}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'

[[webhook]]
name = "healthy"
url = "@URL1@"
headers = { X-Chaos-Worker = "${CHAOS_WORKER}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
[webhook.delivery]
timeout = "5s"
"#;

/// Short timeouts, a one-second retry window and a breaker that opens after five timeouts and
/// probes every second. The healthy webhook keeps a generous timeout, so that a loaded
/// machine does not make it fail too.
const HANG_DELIVERY: &str = r#"
timeout = "1s"
max_attempts = 10
initial_backoff = "250ms"
max_backoff = "1s"
max_elapsed = "60s"
retry_window = "1s"
circuit_failures = 5
circuit_cooldown = "1s"
"#;

/// How long after the last request to the hanging endpoint every worker request to it has
/// certainly timed out (the 1s timeout plus a margin).
const HANG_QUIET: Duration = Duration::from_millis(1300);

/// Releases the hanging listener at a moment when no request to it is pending: every request
/// it recorded so far has timed out on the worker's side and got no answer. Returns that
/// moment; only requests recorded from then on were answered.
async fn release_when_quiet(listener: &LocalLogzio) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = Instant::now();
        let last = listener.requests().iter().map(|r| r.at).max();
        if last.is_none_or(|at| now.duration_since(at) > HANG_QUIET) {
            listener.set_hang(false);
            return now;
        }
        assert!(
            now < deadline,
            "the hanging endpoint is never quiet for {HANG_QUIET:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Scenario 1: A's endpoint hangs and B's is healthy. B receives all 2,000 events while A
/// still hangs (A's deliveries are parked, not holding the input), then A recovers and
/// receives all 2,000 from its retry path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_webhook_does_not_hold_back_a_healthy_one_and_recovers_from_its_retry_path() {
    scenario("1 hanging endpoint", async {
        const N: usize = 2000;
        let mut app = app("chaos-hang")
            .listeners(2)
            .webhook(HANGING_AND_HEALTHY)
            .delivery(HANG_DELIVERY)
            .env("CHAOS_WORKER", "in-process")
            .build()
            .await;
        app.listeners[0].set_hang(true);
        let (ids, messages) = approvals("hang", N);
        publish_bulk(&app, &messages).await;
        let started = Instant::now();
        app.start_worker();

        let hanging = &app.listeners[0];
        let healthy = &app.listeners[1];
        let got = wait_delivered(healthy, &ids, |_| true, Duration::from_secs(40)).await;
        assert_all_and_report("1 hanging endpoint", "healthy", &ids, &got, &got);
        println!(
            "[chaos]   healthy webhook had all {N} after {:.1}s; the hanging one got {} requests, none answered; {} parked, {} taken back from the retry path so far",
            started.elapsed().as_secs_f64(),
            hanging.requests().len(),
            app.metrics().parked(),
            app.metrics().retries_consumed(),
        );
        assert_eq!(
            app.metrics().consumed(),
            N as u64,
            "every input message was taken"
        );
        assert_eq!(
            app.ready_count(&app.config.amqp.queue).await,
            0,
            "the input queue is drained while A still hangs"
        );
        let parked = app.retry_path_count("hanging").await;
        assert!(
            parked > 0,
            "A's deliveries wait on its retry path while it hangs"
        );

        let released = release_when_quiet(hanging).await;
        let answered = |r: &crate::support::logzio::Received| r.at >= released;
        let got = wait_delivered(hanging, &ids, answered, Duration::from_secs(40)).await;
        let all = delivered(hanging, answered);
        let dups = assert_all_and_report("1 hanging endpoint", "hanging", &ids, &got, &all);
        println!(
            "[chaos]   hanging webhook recovered: all {N} from its retry path {:.1}s after release",
            released.elapsed().as_secs_f64()
        );
        println!("[chaos]   1 hanging endpoint: {dups} duplicates to the recovered webhook");
        let stats = stats_of(&app);
        // Let the last acks land before stopping.
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.stop_worker().await;
        assert_settled(&app, 0).await;
        assert_eq!(stats.dead_lettered(), 0, "nothing dead-lettered");
        app.finish().await;
    })
    .await;
}

/// Retries cheap and plentiful; the breaker on (10 consecutive failures), which strict
/// alternation never reaches.
const FLAP_DELIVERY: &str = r#"
timeout = "2s"
max_attempts = 40
initial_backoff = "10ms"
max_backoff = "50ms"
max_elapsed = "60s"
retry_window = "2s"
circuit_failures = 10
circuit_cooldown = "500ms"
"#;

const ONE_HOOK: &str = r#"
[[webhook]]
name = "flapping"
url = "@URL0@"
headers = { X-Chaos-Worker = "${CHAOS_WORKER}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#;

/// Scenario 5: the endpoint answers 503 to every other request. Every one of 1,000 events is
/// delivered and none is dead-lettered, since the retry budget holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_endpoint_gets_every_event_and_nothing_is_dead_lettered() {
    scenario("5 flapping endpoint", async {
        const N: usize = 1000;
        const PAIRS: usize = 6000;
        let mut app = app("chaos-flap")
            .webhook(ONE_HOOK)
            .delivery(FLAP_DELIVERY)
            .env("CHAOS_WORKER", "in-process")
            .build()
            .await;
        let listener = &app.listeners[0];
        for _ in 0..PAIRS {
            listener.push_response(Scripted::status(503));
            listener.push_response(Scripted::status(200));
        }
        let (ids, messages) = approvals("flap", N);
        publish_bulk(&app, &messages).await;
        app.start_worker();

        let listener = &app.listeners[0];
        let got = wait_delivered(listener, &ids, |_| true, Duration::from_secs(40)).await;
        let dups = assert_all_and_report("5 flapping endpoint", "flapping", &ids, &got, &got);
        let stats = stats_of(&app);
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.stop_worker().await;

        let requests = app.listeners[0].requests();
        assert!(
            requests.len() < 2 * PAIRS,
            "the alternation held for the whole run ({} requests)",
            requests.len()
        );
        let mut attempts: HashMap<&str, u32> = HashMap::new();
        for r in &requests {
            *attempts
                .entry(crate::common::event_id(r).unwrap_or("?"))
                .or_insert(0) += 1;
        }
        let most = attempts.values().copied().max().unwrap_or(0);
        let refused = requests.iter().filter(|r| r.status == 503).count();
        println!(
            "[chaos]   5 flapping endpoint: {} requests, {refused} answered 503, at most {most} attempts for one event, {dups} duplicates",
            requests.len()
        );
        assert!(most <= 40, "no event went past max_attempts");
        assert_eq!(
            stats.dead_lettered(),
            0,
            "nothing dead-lettered"
        );
        assert_settled(&app, 0).await;
        app.finish().await;
    })
    .await;
}
