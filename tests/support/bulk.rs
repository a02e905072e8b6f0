//! Backlogs for the failure tests (`tests/chaos`, `tests/cluster`): approvals with their own
//! event ids, published persistent and mandatory with pipelined publisher confirms, and the
//! tally of what the listener received per event id.
//! Included only by the binaries that use it (`#[path]`), like `endpoint.rs`.

use crate::support::harness::sample_with;
use crate::support::logzio::{LocalLogzio, Received};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation, Connection};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use webhook_relay::model::event::Trigger;

/// One message to publish.
pub struct Outgoing {
    /// The bytes, as published.
    pub body: Vec<u8>,
    /// The routing key on the test's exchange.
    pub routing_key: String,
    /// The AMQP `message_id`, which is also the event id the worker uses.
    pub message_id: String,
}

/// `n` approvals with message ids (so event ids) `{prefix}-{i}`, and those ids.
pub fn approvals(prefix: &str, n: usize) -> (Vec<String>, Vec<Outgoing>) {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let messages = ids.iter().map(|id| approval(id)).collect();
    (ids, messages)
}

/// One approval with message id `id` (also its `data.id`).
pub fn approval(id: &str) -> Outgoing {
    let event = sample_with(Trigger::RequestApproved, |e| {
        e["data"]["id"] = id.into();
    });
    Outgoing {
        body: event.to_string().into_bytes(),
        routing_key: "RequestApproved".into(),
        message_id: id.to_string(),
    }
}

/// Publishes every message to `exchange` on a channel of `connection`, persistent and
/// mandatory, with the confirms pipelined: everything is sent first, then every confirm is
/// awaited. Panics on a nack or an unroutable message.
pub async fn publish_confirmed(connection: &Connection, exchange: &str, messages: &[Outgoing]) {
    let channel = connection
        .create_channel()
        .await
        .expect("publisher channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let mut confirms = Vec::with_capacity(messages.len());
    for message in messages {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(message.message_id.as_str().into());
        let confirm = channel
            .basic_publish(
                exchange.into(),
                message.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                properties,
            )
            .await
            .expect("basic.publish");
        confirms.push(confirm);
    }
    let results = futures_util::future::join_all(confirms).await;
    for (message, result) in messages.iter().zip(results) {
        match result {
            Ok(Confirmation::Ack(None)) => {}
            other => panic!(
                "publishing {} was not confirmed: {other:?}",
                message.message_id
            ),
        }
    }
}

/// The event id a request was for.
pub fn event_id(request: &Received) -> Option<&str> {
    request.header("x-relay-event-id")
}

/// Per event id, how many `2xx` requests the listener recorded among those `keep` accepts.
pub fn delivered(
    listener: &LocalLogzio,
    keep: impl Fn(&Received) -> bool,
) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for request in listener.requests() {
        if !(200..300).contains(&request.status) || !keep(&request) {
            continue;
        }
        if let Some(id) = event_id(&request) {
            *out.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// The ids in `ids` that `got` lacks.
pub fn missing<'a>(ids: &'a [String], got: &HashMap<String, usize>) -> Vec<&'a str> {
    ids.iter()
        .filter(|id| !got.contains_key(id.as_str()))
        .map(String::as_str)
        .collect()
}

/// Deliveries beyond the first, summed over every event.
pub fn duplicates(got: &HashMap<String, usize>) -> usize {
    got.values().map(|n| n.saturating_sub(1)).sum()
}

/// Waits until every id in `ids` has a `2xx` request that `keep` accepts, or `timeout`
/// passes; returns the tally at that point.
pub async fn wait_delivered(
    listener: &LocalLogzio,
    ids: &[String],
    keep: impl Fn(&Received) -> bool,
    timeout: Duration,
) -> HashMap<String, usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = delivered(listener, &keep);
        if missing(ids, &got).is_empty() || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until at least `n` distinct events have a `2xx` request; returns whether they did.
pub async fn wait_progress(listener: &LocalLogzio, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if delivered(listener, |_| true).len() >= n {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
