//! Worker processes (the real binary) that die: SIGKILL mid-run, one of two workers killed,
//! a restart while deliveries wait on the retry path.

use crate::common::{
    approvals, assert_all_and_report, assert_settled, delivered, event_id, publish_bulk, scenario,
    wait_delivered, wait_progress, worker_of,
};
use crate::relay::Relay;
use crate::support::harness::{TestApp, app};
use crate::support::logzio::{Received, Scripted};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use webhook_relay::broker::dead_letter::{self, DeadLetterInfo};
use webhook_relay::pipeline::outcome::Reason;

const ONE_HOOK: &str = r#"
[[webhook]]
name = "slow"
url = "@URL0@"
headers = { X-Chaos-Worker = "${CHAOS_WORKER}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#;

const STEADY_DELIVERY: &str = r#"
timeout = "5s"
max_attempts = 5
initial_backoff = "100ms"
max_backoff = "500ms"
max_elapsed = "60s"
retry_window = "1s"
"#;

/// Input prefetch of each worker process in the kill scenarios.
const PREFETCH: usize = 32;
/// How slow the endpoint is: with [`PREFETCH`] this paces a run of thousands of events over
/// several seconds, so a kill lands mid-way.
const SLOW: Duration = Duration::from_millis(40);
/// The duplicates one killed worker can cause: its unacked input messages (prefetch) plus
/// its unacked retry-queue messages (the retry consumer's prefetch, min(concurrency,
/// prefetch)).
const KILL_DUPLICATE_BOUND: usize = PREFETCH + PREFETCH;

fn slow_app(test: &str) -> crate::support::harness::AppBuilder {
    app(test)
        .webhook(ONE_HOOK)
        .delivery(STEADY_DELIVERY)
        .env("CHAOS_WORKER", "harness")
        .env("RELAY__AMQP__PREFETCH", &PREFETCH.to_string())
}

/// The events a worker logged as delivered (it had the endpoint's `2xx` in hand).
fn logged_deliveries(log: &str) -> HashSet<String> {
    log.lines()
        .filter(|l| l.contains(" delivered "))
        .filter_map(|l| l.split("event_id=").nth(1))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_string)
        .collect()
}

/// Whether `request` counts as a delivery: it came from a worker still running, or from the
/// killed one, which logged that it got the `2xx` (a request in flight at the kill does not
/// count; its event must be delivered again).
fn answered(request: &Received, killed: &str, killed_log: &HashSet<String>) -> bool {
    worker_of(request) != killed || event_id(request).is_some_and(|id| killed_log.contains(id))
}

/// Prints how many of the killed worker's requests were in flight at the kill.
fn report_in_flight(
    listener: &crate::support::logzio::LocalLogzio,
    killed: &str,
    log: &HashSet<String>,
) {
    let in_flight = listener
        .requests()
        .iter()
        .filter(|r| worker_of(r) == killed && !event_id(r).is_some_and(|id| log.contains(id)))
        .count();
    println!(
        "[chaos]   {killed} logged {} deliveries; {in_flight} of its requests had no answer yet at the kill",
        log.len()
    );
}

/// Scenario 2: SIGKILL the worker mid-way through 5,000 events to a slow endpoint, then
/// start it again. Nothing is lost; duplicates stay within what was unacked at the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_restart_loses_nothing() {
    scenario("2 SIGKILL and restart", async {
        const N: usize = 5000;
        let app = slow_app("chaos-sigkill").build().await;
        let listener = app.listener();
        listener.set_delay(SLOW);
        let (ids, messages) = approvals("kill", N);
        publish_bulk(&app, &messages).await;

        let started = Instant::now();
        let mut first = Relay::start(&app, "w1", &[]);
        assert!(
            wait_progress(listener, N / 2, Duration::from_secs(40)).await,
            "half the events delivered; w1 stderr:\n{}",
            first.tail(30)
        );
        assert!(
            first.stderr().contains(&format!("prefetch={PREFETCH} ")),
            "the worker runs with prefetch {PREFETCH}:\n{}",
            first.tail(50)
        );
        first.kill();
        first.print_problems();
        let first_log = logged_deliveries(&first.stderr());
        report_in_flight(listener, "w1", &first_log);
        let before = delivered(listener, |_| true).len();
        println!(
            "[chaos]   SIGKILLed w1 after {:.1}s with {before} events delivered",
            started.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;

        let mut second = Relay::start(&app, "w2", &[]);
        let keep = |r: &Received| answered(r, "w1", &first_log);
        let got = wait_delivered(listener, &ids, keep, Duration::from_secs(40)).await;
        let all = delivered(listener, |_| true);
        let lost = crate::common::missing(&ids, &got);
        assert!(
            lost.is_empty(),
            "{} events lost, e.g. {:?}; w2 stderr:\n{}",
            lost.len(),
            &lost[..lost.len().min(5)],
            second.tail(30)
        );
        let dups = assert_all_and_report("2 SIGKILL and restart", "slow", &ids, &got, &all);
        assert_eq!(second.terminate(Duration::from_secs(15)).await, Some(0));
        second.print_problems();
        println!(
            "[chaos]   2 SIGKILL and restart: {dups} duplicates (bound: prefetch {PREFETCH} + retry prefetch {PREFETCH} = {KILL_DUPLICATE_BOUND})"
        );
        assert!(
            dups <= KILL_DUPLICATE_BOUND,
            "{dups} duplicates, more than were unacked at the kill"
        );
        assert_settled(&app, 0).await;
        app.finish().await;
    })
    .await;
}

/// Scenario 4: two workers on one (quorum) queue, one SIGKILLed half-way. Nothing is lost;
/// the survivor takes over what the killed one held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_one_killed_half_way_loses_nothing() {
    scenario("4 two workers, one killed", async {
        const N: usize = 4000;
        // Quorum queues here (classic in the other scenarios): the broker counts redeliveries,
        // and a kill must not push an event over the redelivery limit.
        let app = slow_app("chaos-two")
            .env("RELAY__AMQP__QUEUE_TYPE", "quorum")
            .build()
            .await;
        let listener = app.listener();
        listener.set_delay(SLOW);
        let (ids, messages) = approvals("two", N);
        publish_bulk(&app, &messages).await;

        let mut doomed = Relay::start(&app, "w1", &[]);
        let mut survivor = Relay::start(&app, "w2", &[]);
        assert!(
            wait_progress(listener, N / 2, Duration::from_secs(40)).await,
            "half the events delivered; w1:\n{}\nw2:\n{}",
            doomed.tail(20),
            survivor.tail(20)
        );
        doomed.kill();
        doomed.print_problems();
        let doomed_log = logged_deliveries(&doomed.stderr());
        report_in_flight(listener, "w1", &doomed_log);
        let mut by_worker: HashMap<String, usize> = HashMap::new();
        for r in listener.requests() {
            *by_worker.entry(worker_of(&r).to_string()).or_insert(0) += 1;
        }
        println!("[chaos]   SIGKILLed w1 half-way; requests so far by worker: {by_worker:?}");
        assert!(
            by_worker.get("w1").copied().unwrap_or(0) > 0
                && by_worker.get("w2").copied().unwrap_or(0) > 0,
            "both workers were delivering before the kill"
        );

        let keep = |r: &Received| answered(r, "w1", &doomed_log);
        let got = wait_delivered(listener, &ids, keep, Duration::from_secs(40)).await;
        let all = delivered(listener, |_| true);
        let lost = crate::common::missing(&ids, &got);
        assert!(
            lost.is_empty(),
            "{} events lost, e.g. {:?}; w2 stderr:\n{}",
            lost.len(),
            &lost[..lost.len().min(5)],
            survivor.tail(30)
        );
        let dups = assert_all_and_report("4 two workers, one killed", "slow", &ids, &got, &all);
        assert!(survivor.is_running(), "the survivor is still up");
        assert_eq!(survivor.terminate(Duration::from_secs(15)).await, Some(0));
        survivor.print_problems();
        println!(
            "[chaos]   4 two workers, one killed: {dups} duplicates (bound {KILL_DUPLICATE_BOUND})"
        );
        assert!(
            dups <= KILL_DUPLICATE_BOUND,
            "{dups} duplicates, more than the killed worker held"
        );
        assert_settled(&app, 0).await;
        app.finish().await;
    })
    .await;
}

/// Two webhooks whose endpoints both fail at first; after the restart one recovers and one
/// keeps failing.
const RECOVERS_AND_FAILS: &str = r#"
[[webhook]]
name = "recovers"
url = "@URL0@"
headers = { X-Chaos-Worker = "${CHAOS_WORKER}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'

[[webhook]]
name = "fails"
url = "@URL1@"
headers = { X-Chaos-Worker = "${CHAOS_WORKER}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#;

/// One wait tier of 3s (so parked deliveries wait long enough to kill the worker first), a
/// budget of 3 attempts, the breaker off so that every delivery makes its attempts.
const RESTART_DELIVERY: &str = r#"
timeout = "2s"
max_attempts = 3
initial_backoff = "3s"
max_backoff = "3s"
max_elapsed = "60s"
retry_window = "500ms"
circuit_failures = 0
"#;

const TIER: Duration = Duration::from_secs(3);

/// Every message now in `queue`, taken with basic.get and put back.
async fn peek_all(app: &TestApp, queue: &str, expected: usize) -> Vec<lapin::BasicProperties> {
    let mut taken = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while taken.len() < expected && Instant::now() < deadline {
        match app.admin.fetch(queue).await.expect("basic.get") {
            Some(message) => taken.push(message),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let properties = taken.iter().map(|m| m.properties.clone()).collect();
    for message in taken {
        webhook_relay::broker::settle::release(&message)
            .await
            .expect("requeue after peeking");
    }
    properties
}

/// Scenario 6: the worker is killed while deliveries wait on the retry path. After the
/// restart they are delivered on schedule with their attempt counts carried over: the
/// recovering webhook gets each event at attempt 2, the failing one dead-letters each after
/// exactly `max_attempts` attempts in all (one before the restart, two after), with the
/// carried count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_deliveries_on_the_retry_path_carries_their_attempts_over() {
    scenario("6 restart with a full retry path", async {
        const N: usize = 100;
        let app = app("chaos-restart")
            .listeners(2)
            .webhook(RECOVERS_AND_FAILS)
            .delivery(RESTART_DELIVERY)
            .env("CHAOS_WORKER", "harness")
            .build()
            .await;
        let (recovers, fails) = (&app.listeners[0], &app.listeners[1]);
        for _ in 0..N {
            recovers.push_response(Scripted::status(503));
        }
        for _ in 0..3 * N {
            fails.push_response(Scripted::status(503));
        }
        let (ids, messages) = approvals("restart", N);
        publish_bulk(&app, &messages).await;

        let mut first = Relay::start(&app, "w1", &[]);
        // Every delivery fails once and is parked for 3s; kill the worker before any comes back.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let parked = app.retry_path_count("recovers").await + app.retry_path_count("fails").await;
            if parked as usize == 2 * N && app.ready_count(&app.config.amqp.queue).await == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{parked} of {} deliveries parked; w1:\n{}",
                2 * N,
                first.tail(30)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Every input message is acked right after its parked deliveries are confirmed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.kill();
        first.print_problems();
        let killed_at = Instant::now();
        assert_eq!(recovers.requests().len(), N, "one attempt each before the kill");
        assert_eq!(fails.requests().len(), N, "one attempt each before the kill");
        let first_attempt: HashMap<String, Instant> = recovers
            .requests()
            .iter()
            .map(|r| (event_id(r).unwrap().to_string(), r.at))
            .collect();

        // While no worker runs, the wait queues hand everything to the retry queues; the
        // messages there carry their retry state.
        let mut first_failure_ms: HashMap<(String, String), i64> = HashMap::new();
        for webhook in ["recovers", "fails"] {
            let queue = webhook_relay::broker::topology::retry_queue(&app.config.amqp.queue, webhook);
            let seen = peek_all(&app, &queue, N).await;
            assert_eq!(seen.len(), N, "all of `{webhook}` moved to its retry queue");
            for properties in seen {
                let headers = properties.headers().clone().unwrap_or_default();
                let number = |name| dead_letter::header_number(&headers, name);
                let text = |name| dead_letter::header_text(&headers, name);
                assert_eq!(number(dead_letter::ATTEMPTS), Some(1), "x-relay-attempts");
                assert_eq!(text(dead_letter::WEBHOOK).as_deref(), Some(webhook));
                assert_eq!(number(dead_letter::LAST_STATUS), Some(503));
                let delay = number(dead_letter::RETRY_DELAY_MS).expect("retry delay");
                assert!(delay >= 3000, "retry delay {delay}ms");
                let id = text(dead_letter::EVENT_ID).expect("event id");
                let ms = number(dead_letter::FIRST_FAILURE_MS).expect("first failure");
                first_failure_ms.insert((webhook.to_string(), id), ms);
            }
        }
        println!(
            "[chaos]   w1 killed with {} deliveries on the retry path, each with x-relay-attempts = 1",
            2 * N
        );

        let restarted_at = Instant::now();
        let mut second = Relay::start(&app, "w2", &[]);
        let got = wait_delivered(recovers, &ids, |_| true, Duration::from_secs(20)).await;
        assert_all_and_report("6 restart", "recovers", &ids, &got, &got);
        let letters = app.dead_letters(N, Duration::from_secs(25)).await;
        assert_eq!(
            letters.len(),
            N,
            "every delivery to `fails` dead-lettered; w2:\n{}",
            second.tail(30)
        );
        assert_eq!(second.terminate(Duration::from_secs(15)).await, Some(0));
        second.print_problems();
        let log = second.stderr();

        // The recovering webhook: attempt 2, after the restart, no sooner than its wait.
        for id in &ids {
            let line = log
                .lines()
                .find(|l| l.contains(" delivered ") && l.contains(&format!("event_id={id} ")))
                .unwrap_or_else(|| panic!("no delivery logged for {id}"));
            assert!(
                line.contains("webhook=\"recovers\"") && line.contains("attempts=2"),
                "delivered at attempt 2 (carried over): {line}"
            );
        }
        for r in recovers.requests().iter().filter(|r| worker_of(r) == "w2") {
            let id = event_id(r).unwrap();
            let waited = r.at.duration_since(first_attempt[id]);
            assert!(waited >= TIER, "{id} retried after {waited:?}, before its wait ended");
            assert!(r.at >= restarted_at);
        }

        // The failing webhook: three attempts in all, two of them after the restart, each
        // after its wait; then a dead letter with the carried count.
        let mut times: HashMap<String, Vec<(Instant, String)>> = HashMap::new();
        for r in fails.requests() {
            times
                .entry(event_id(&r).unwrap().to_string())
                .or_default()
                .push((r.at, worker_of(&r).to_string()));
        }
        let mut slowest = Duration::ZERO;
        for id in &ids {
            let attempts = &times[id];
            let workers: Vec<&str> = attempts.iter().map(|(_, w)| w.as_str()).collect();
            assert_eq!(workers, ["w1", "w2", "w2"], "{id}: one attempt before the restart, two after");
            for pair in attempts.windows(2) {
                let gap = pair[1].0.duration_since(pair[0].0);
                assert!(gap >= TIER, "{id}: attempt after {gap:?}, before its wait ended");
                slowest = slowest.max(gap);
            }
            assert!(attempts[1].0 >= killed_at);
        }
        // "On schedule": the last attempt comes within the tier plus some slack of the one
        // before it (the one before comes right after the restart).
        for id in &ids {
            let gap = times[id][2].0.duration_since(times[id][1].0);
            assert!(gap < TIER + Duration::from_secs(3), "{id}: third attempt {gap:?} after the second");
        }
        for letter in &letters {
            let info = DeadLetterInfo::from_properties(&letter.properties);
            assert_eq!(info.reason, Some(Reason::DeliveryFailed), "{info:?}");
            assert_eq!(info.webhook.as_deref(), Some("fails"), "{info:?}");
            assert_eq!(info.attempts, Some(3), "the carried count: {info:?}");
            assert_eq!(info.last_status, Some(503), "{info:?}");
            let id = info.event_id.clone().expect("event id");
            let headers = letter.properties.headers().clone().unwrap_or_default();
            assert_eq!(
                dead_letter::header_number(&headers, dead_letter::FIRST_FAILURE_MS),
                Some(first_failure_ms[&("fails".to_string(), id.clone())]),
                "{id}: the first failure time is carried over"
            );
        }
        println!(
            "[chaos]   6 restart: `recovers` got all {N} at attempt 2, `fails` dead-lettered all {N} with x-relay-attempts = 3; 0 duplicates"
        );
        // The dead letters were taken unacked: give them back before counting.
        for letter in letters {
            webhook_relay::broker::settle::release(&letter).await.expect("requeue a dead letter");
        }
        assert_settled(&app, N as u32).await;
        app.finish().await;
    })
    .await;
}

/// Every first attempt fails and is parked for 1s; the retries are slow.
const RETRY_IN_FLIGHT_DELIVERY: &str = r#"
timeout = "5s"
max_attempts = 5
initial_backoff = "1s"
max_backoff = "1s"
max_elapsed = "60s"
retry_window = "200ms"
circuit_failures = 0
"#;

/// Scenario 6, graceful variant: SIGTERM while deliveries taken from the retry queue are in
/// flight. They finish within the grace period and are acked on the retry queue, so a
/// restart delivers nothing twice; then the restarted worker finds nothing left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_retry_deliveries_in_flight_settles_them_before_exiting() {
    scenario("6b SIGTERM with retry deliveries in flight", async {
        const N: usize = 50;
        let app = app("chaos-retry-inflight")
            .webhook(ONE_HOOK)
            .delivery(RETRY_IN_FLIGHT_DELIVERY)
            .relay_extra("\n[shutdown]\ngrace = \"10s\"\n")
            .env("CHAOS_WORKER", "harness")
            .build()
            .await;
        let listener = app.listener();
        for _ in 0..N {
            listener.push_response(Scripted::status(503));
        }
        let (ids, messages) = approvals("inflight", N);
        publish_bulk(&app, &messages).await;

        let mut first = Relay::start(&app, "w1", &[]);
        let failed = listener.wait_for_requests(N, Duration::from_secs(20)).await;
        assert_eq!(failed.len(), N, "first attempts; w1:\n{}", first.tail(20));
        // The retries (1s later, from the retry queue) hang for 2s each.
        listener.set_delay(Duration::from_secs(2));
        let retried = listener
            .wait_for_requests(2 * N, Duration::from_secs(20))
            .await;
        assert_eq!(
            retried.len(),
            2 * N,
            "retries in flight; w1:\n{}",
            first.tail(20)
        );
        let signalled = Instant::now();
        assert_eq!(first.terminate(Duration::from_secs(15)).await, Some(0));
        first.print_problems();
        println!(
            "[chaos]   w1 exited {:.1}s after SIGTERM with {N} retry deliveries in flight",
            signalled.elapsed().as_secs_f64()
        );
        let log = first.stderr();
        assert!(
            !log.contains("not settled"),
            "retry deliveries that finished in the grace period could not be acked:\n{}",
            first.tail(20)
        );
        let logged = logged_deliveries(&log);
        assert_eq!(logged.len(), N, "every retry delivered before the exit");

        // Nothing may be waiting to be delivered again.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            app.retry_path_count("slow").await,
            0,
            "retry deliveries that succeeded went back to the retry queue"
        );
        listener.set_delay(Duration::ZERO);
        let mut second = Relay::start(&app, "w2", &[]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(second.terminate(Duration::from_secs(15)).await, Some(0));
        let all = delivered(listener, |_| true);
        let dups = assert_all_and_report("6b SIGTERM", "slow", &ids, &all, &all);
        assert_eq!(dups, 0, "no event delivered twice");
        assert_settled(&app, 0).await;
        app.finish().await;
    })
    .await;
}
