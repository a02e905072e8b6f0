//! The rate limit, measured where it matters: the most requests the endpoint saw in any
//! sliding one-second window, with fresh deliveries, in-process retries and deliveries back
//! from the retry queue all going through one webhook's limiter. And a delivery whose turn
//! would come after its retry window parks instead of waiting.

use super::{QUICK, Setup, deliver};
use crate::endpoint_server::{Endpoint, Reply, Seen};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};
use webhook_relay::pipeline::outcome::{Outcome, RetryState};

/// Most arrivals inside any half-open one-second window that starts at an arrival.
fn max_per_second(arrivals: &[Instant]) -> usize {
    arrivals
        .iter()
        .map(|start| {
            arrivals
                .iter()
                .filter(|t| **t >= *start && **t < *start + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn webhook(endpoint: &Endpoint, rate: &str) -> String {
    format!(
        "[[webhook]]\nname = \"limited\"\nurl = \"{}\"\ntriggers = [\"RequestApproved\"]\n\
         body_template = '{{}}'\nrate_limit = \"{rate}\"\n",
        endpoint.url("/hook")
    )
}

#[tokio::test]
async fn the_endpoint_never_sees_more_than_the_limit_in_any_second() {
    // The first three answers fail, so in-process retries compete for turns too.
    let calls = AtomicU32::new(0);
    let endpoint = Endpoint::start(move |_: &Seen| {
        if calls.fetch_add(1, Ordering::Relaxed) < 3 {
            Reply::new(503, "")
        } else {
            Reply::new(200, "{}")
        }
    })
    .await;
    let setup = Setup::new(&webhook(&endpoint, "5/s"), &[&endpoint], &[], QUICK);
    let deliverer = setup.deliverer();
    // Half fresh, half as they come back from the retry queue.
    let requests: Vec<_> = (0..16)
        .map(|i| {
            let mut request = setup.request("limited", &format!("e{i}"), "{}");
            if i % 2 == 1 {
                request.prior = Some(RetryState {
                    attempts: 1,
                    first_failure: SystemTime::now(),
                });
            }
            request
        })
        .collect();
    let outcomes =
        futures_util::future::join_all(requests.iter().map(|r| deliver(&deliverer, r))).await;
    for outcome in &outcomes {
        assert!(matches!(outcome, Outcome::Delivered { .. }), "{outcome:?}");
    }
    let arrivals: Vec<Instant> = endpoint.seen().iter().map(|s| s.at).collect();
    assert_eq!(arrivals.len(), 19, "16 deliveries and 3 retries");
    let max = max_per_second(&arrivals);
    assert!(
        max <= 5,
        "the endpoint saw {max} requests within one second"
    );
}

#[tokio::test]
async fn a_turn_after_the_retry_window_parks_without_an_attempt() {
    let endpoint = Endpoint::start(|_: &Seen| Reply::new(200, "{}")).await;
    let delivery = QUICK.replace("retry_window = \"10s\"", "retry_window = \"300ms\"");
    let setup = Setup::new(&webhook(&endpoint, "2/s"), &[&endpoint], &[], &delivery);
    let deliverer = setup.deliverer();
    let requests: Vec<_> = (0..4)
        .map(|i| setup.request("limited", &format!("e{i}"), "{}"))
        .collect();
    let outcomes =
        futures_util::future::join_all(requests.iter().map(|r| deliver(&deliverer, r))).await;
    let delivered = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Delivered { .. }))
        .count();
    let parked: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Park(parked) => Some(parked),
            _ => None,
        })
        .collect();
    assert_eq!((delivered, parked.len()), (1, 3), "{outcomes:?}");
    for p in parked {
        assert_eq!(p.state.attempts, 0, "parked before any attempt");
        assert!(p.last_error.contains("rate_limit"), "{}", p.last_error);
    }
    assert_eq!(endpoint.seen().len(), 1);
}

/// Turns are taken after the OAuth2 token is in hand: deliveries waiting for a slow token
/// fetch do not all leave the moment it arrives.
#[tokio::test]
async fn a_slow_token_fetch_does_not_bunch_requests_together() {
    let endpoint = Endpoint::start(|seen: &Seen| match seen.path.as_str() {
        "/token" => Reply::new(200, r#"{"access_token":"tok-1","expires_in":3600}"#)
            .after(Duration::from_millis(600)),
        _ => Reply::new(200, "{}"),
    })
    .await;
    let webhook = format!(
        "{}[webhook.auth]\ntype = \"oauth2\"\ntoken_url = \"{}\"\nclient_id = \"relay\"\n\
         client_secret = \"${{CLIENT_SECRET}}\"\n",
        webhook(&endpoint, "4/s"),
        endpoint.url("/token")
    );
    let setup = Setup::new(
        &webhook,
        &[&endpoint],
        &[("CLIENT_SECRET", "client-secret-1")],
        QUICK,
    );
    let deliverer = setup.deliverer();
    let requests: Vec<_> = (0..10)
        .map(|i| setup.request("limited", &format!("e{i}"), "{}"))
        .collect();
    let outcomes =
        futures_util::future::join_all(requests.iter().map(|r| deliver(&deliverer, r))).await;
    for outcome in &outcomes {
        assert!(matches!(outcome, Outcome::Delivered { .. }), "{outcome:?}");
    }
    assert_eq!(endpoint.seen_at("/token").len(), 1);
    let arrivals: Vec<Instant> = endpoint.seen_at("/hook").iter().map(|s| s.at).collect();
    assert_eq!(arrivals.len(), 10);
    let max = max_per_second(&arrivals);
    assert!(
        max <= 4,
        "the endpoint saw {max} requests within one second"
    );
}

/// Through the whole worker: with a retry window shorter than the backlog takes, deliveries
/// park in the retry queue and come back through the same limiter; the endpoint still never
/// sees more than the limit in any second, and every event arrives.
#[tokio::test]
async fn the_worker_keeps_the_limit_across_the_intake_and_the_retry_queue() {
    let app = crate::harness::app("rate-limit")
        .webhook(
            r#"
[[webhook]]
name = "limited"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
rate_limit = "4/s"
"#,
        )
        .delivery(
            "timeout = \"5s\"\nmax_attempts = 4\ninitial_backoff = \"50ms\"\n\
             max_backoff = \"200ms\"\nmax_elapsed = \"60s\"\nretry_window = \"500ms\"\n",
        )
        .start()
        .await;
    let ids = crate::harness::publish_ids(&app, "rl", 0..12).await;
    let accepted = app
        .listener()
        .wait_for_accepted(12, Duration::from_secs(30))
        .await;
    assert_eq!(accepted.len(), 12, "every event arrives");
    let mut got: Vec<String> = accepted
        .iter()
        .map(|v| v["id"].as_str().unwrap_or_default().to_string())
        .collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "each event once");
    let arrivals: Vec<Instant> = app.listener().requests().iter().map(|r| r.at).collect();
    let max = max_per_second(&arrivals);
    assert!(
        max <= 4,
        "the endpoint saw {max} requests within one second"
    );
    assert!(
        app.metrics().retries_consumed() > 0,
        "some deliveries came back through the retry queue"
    );
    app.finish().await;
}
