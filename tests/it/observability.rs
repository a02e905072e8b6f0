//! Metrics, health and readiness, and structured logs.

use crate::binary::Relay;
use crate::harness::{app, child_env, http_get, metric, sample_with};
use crate::support::logzio::TEST_TOKEN;
use crate::support::proxy::TcpProxy;
use std::time::Duration;
use webhook_relay::model::event::{Trigger, sample};
use webhook_relay::ops::metrics::Metrics;

const WAIT: Duration = Duration::from_secs(20);

/// `/metrics` shows the exact counts of what the worker did, by label, and no secret.
#[tokio::test]
async fn metrics_count_what_happened_by_label() {
    let app = app("metrics")
        .webhook(
            r#"
[[webhook]]
name = "good"
url = "@URL0@"
triggers = ["RequestApproved", "RequestGranted"]
body_template = '{"id": "{{ data.id }}"}'

[[webhook]]
name = "bad"
url = "https://127.0.0.1:@PORT0@/?token=${WRONG}&type=apono"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#,
        )
        .env("WRONG", "wrong-token-value")
        .start()
        .await;
    let base = app.serve_operations().await;
    for n in 0..3 {
        app.publish(&sample_with(Trigger::RequestApproved, |e| {
            e["event_time"] = serde_json::json!(1_764_064_800 + n);
        }))
        .await;
    }
    app.publish(&sample(Trigger::RequestGranted)).await;
    app.publish(&sample(Trigger::Manual)).await;
    app.publish_raw(b"not json", "junk", None).await;
    assert!(app.wait_count(Metrics::acked, 6, WAIT).await);

    let (status, metrics) = http_get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    let expect = [
        ("relay_events_consumed_total", 6.0),
        (r#"relay_events_matched_total{webhook="good"}"#, 4.0),
        (r#"relay_events_matched_total{webhook="bad"}"#, 3.0),
        ("relay_events_unmatched_total", 1.0),
        (
            r#"relay_deliveries_total{webhook="good",outcome="success"}"#,
            4.0,
        ),
        (
            r#"relay_deliveries_total{webhook="bad",outcome="rejected"}"#,
            3.0,
        ),
        (
            r#"relay_deliveries_total{webhook="good",outcome="failed"}"#,
            0.0,
        ),
        (
            r#"relay_responses_total{webhook="good",status_class="2xx"}"#,
            4.0,
        ),
        (
            r#"relay_responses_total{webhook="bad",status_class="4xx"}"#,
            3.0,
        ),
        (
            r#"relay_dead_letters_total{webhook="bad",reason="rejected"}"#,
            3.0,
        ),
        (
            r#"relay_dead_letters_total{webhook="",reason="invalid_event"}"#,
            1.0,
        ),
        (
            r#"relay_delivery_duration_seconds_count{webhook="good"}"#,
            4.0,
        ),
        (r#"relay_delivery_attempts_count{webhook="good"}"#, 4.0),
        (r#"relay_circuit_state{webhook="good"}"#, 0.0),
        (r#"relay_deliveries_in_flight{webhook="good"}"#, 0.0),
    ];
    for (series, expected) in expect {
        assert_eq!(metric(&metrics, series), expected, "{series}\n{metrics}");
    }
    assert!(metrics.contains("relay_build_info{version="), "{metrics}");
    assert!(!metrics.contains(TEST_TOKEN) && !metrics.contains("wrong-token-value"));
    assert!(!metrics.contains("req-5f2c9a"), "no event ids as labels");

    let (status, body) = http_get(&format!("{base}/healthz")).await;
    assert_eq!((status, body.trim()), (200, "ok"));
    app.finish().await;
}

/// `/readyz` turns 503 with a reason while the broker connection is cut, and back to 200 after
/// the worker reconnects.
#[tokio::test]
async fn readiness_follows_the_broker_connection() {
    let proxy = TcpProxy::start(crate::harness::rabbitmq_addr());
    let app = app("readyz")
        .amqp_url(&format!("amqp://guest:guest@{}/%2f", proxy.addr()))
        .webhook(
            r#"
[[webhook]]
name = "good"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#,
        )
        .start()
        .await;
    let base = app.serve_operations().await;
    let ready = |want: u16| {
        let url = format!("{base}/readyz");
        async move {
            let deadline = std::time::Instant::now() + WAIT;
            loop {
                let (status, body) = http_get(&url).await;
                if status == want || std::time::Instant::now() > deadline {
                    return (status, body);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (status, body) = ready(200).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"ready":true}"#);

    proxy.set_refusing(true);
    proxy.sever();
    let (status, body) = ready(503).await;
    assert_eq!(status, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(json["ready"], false);
    assert!(
        json["reason"].as_str().unwrap().contains("reconnecting"),
        "{body}"
    );
    assert!(!body.contains("guest:guest"), "no password in the reason");

    proxy.set_refusing(false);
    let (status, body) = ready(200).await;
    assert_eq!(status, 200, "{body}");
    app.publish(&sample(Trigger::RequestApproved)).await;
    assert_eq!(app.listener().wait_for_accepted(1, WAIT).await.len(), 1);
    let (_, metrics) = http_get(&format!("{base}/metrics")).await;
    assert!(
        metric(&metrics, "relay_broker_reconnects_total") >= 1.0,
        "{metrics}"
    );
    app.finish().await;
}

/// With `[log] format = "json"`, every log line of the real binary is a JSON object, and the
/// delivery outcome line carries the event id, event type and webhook; the token appears
/// nowhere.
#[tokio::test]
async fn json_logs_carry_event_and_webhook() {
    let app = app("json-logs")
        .webhook(
            r#"
[[webhook]]
name = "good"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#,
        )
        .relay_extra("\n[log]\nformat = \"json\"\n")
        .build()
        .await;
    app.publish(&sample(Trigger::RequestApproved)).await;
    let mut relay = Relay::run(app.config_dir(), &child_env(&app, &[("RUST_LOG", "debug")]));
    assert_eq!(app.listener().wait_for_accepted(1, WAIT).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.terminate();
    let finished = relay.exit_within(WAIT).await;
    assert_eq!(finished.code(), Some(0), "{}", finished.stderr);
    let lines = finished.stderr_lines();
    assert!(lines.len() > 3, "{}", finished.stderr);
    let mut outcome = None;
    for line in &lines {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if json["message"] == "delivered" {
            outcome = Some(json);
        }
    }
    let outcome = outcome.expect("a `delivered` line");
    assert_eq!(outcome["level"], "INFO");
    assert_eq!(outcome["webhook"], "good");
    assert_eq!(
        outcome["event_id"],
        "req-5f2c9a:RequestApproved:1764064800.123456"
    );
    assert_eq!(outcome["event_type"], "RequestApproved");
    assert!(
        !finished.stderr.contains(TEST_TOKEN),
        "no token in the logs"
    );
    app.finish().await;
}
