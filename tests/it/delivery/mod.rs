//! The main path end to end: matching, rendering, delivery, retries and dead letters.

use crate::harness::TestApp;
use std::time::Duration;
use webhook_relay::broker::Inbound;
use webhook_relay::broker::dead_letter::DeadLetterInfo;
use webhook_relay::model::event::{Trigger, sample};
use webhook_relay::ops::metrics::Metrics;

mod attempts;
mod dead_letters;
mod path;

const WAIT: Duration = Duration::from_secs(20);

/// The identity the worker derives for a built-in sample: `data.id:Trigger:event_time`.
fn sample_id(trigger: Trigger) -> String {
    format!("req-5f2c9a:{trigger}:{}", sample(trigger)["event_time"])
}

/// The `x-relay-*` headers of a dead letter.
fn info(letter: &Inbound) -> DeadLetterInfo {
    DeadLetterInfo::from_properties(&letter.properties)
}

/// Waits until `n` input messages are acked, then checks that nothing was requeued and that
/// the input queue holds nothing ready: every message was settled for good.
async fn assert_all_acked(app: &TestApp, n: u64) {
    assert!(
        app.wait_count(Metrics::acked, n, WAIT).await,
        "expected {n} acked, got {}",
        app.count(Metrics::acked)
    );
    assert_eq!(app.count(Metrics::acked), n, "acked");
    assert_eq!(app.count(Metrics::requeued), 0, "requeued");
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0, "input");
}

/// A webhook that takes every approval, sending `{"id": …}` to listener 0.
const SIMPLE: &str = r#"
[[webhook]]
name = "simple"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}", "type": "{{ event_type }}"}'
"#;
