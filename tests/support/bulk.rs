//! Backlogs for the failure tests (`tests/chaos`, `tests/cluster`): approvals with their own
//! event ids, published persistent and mandatory with pipelined publisher confirms.
//! Included only by the binaries that use it (`#[path]`), like `endpoint.rs`.

use crate::support::harness::sample_with;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation, Connection};
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
