//! One message as the rest of the program sees it: bytes, properties and the handle that
//! alone can settle it. Nothing outside the broker layer sees a delivery tag.

use super::acks::AckQueue;
use super::flow::Lease;
use super::publish::Publisher;
use super::topology;
use crate::config::QueueType;
use lapin::BasicProperties;
use std::sync::Arc;

/// One message from the input queue: its bytes and properties, and the handle that alone can
/// settle it.
pub struct Inbound {
    /// The message body, as published.
    pub body: Vec<u8>,
    /// The message properties (message id, headers, …).
    pub properties: BasicProperties,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Whether the broker has delivered it before.
    pub redelivered: bool,
    /// Acks, requeues or dead-letters it.
    pub handle: SettleHandle,
}

impl Inbound {
    /// The publisher's `message_id`, if set.
    pub fn message_id(&self) -> Option<&str> {
        self.properties.message_id().as_ref().map(|id| id.as_str())
    }

    /// How often a quorum queue has delivered this message before (`x-delivery-count`).
    pub fn delivery_count(&self) -> Option<i64> {
        let headers = self.properties.headers().as_ref()?;
        crate::broker::dead_letter::header_number(headers, "x-delivery-count")
    }

    /// The routing key the event was first published with: kept in `x-relay-routing-key`
    /// through the retry path, where the message's own key is a queue name.
    pub fn original_routing_key(&self) -> String {
        self.properties
            .headers()
            .as_ref()
            .and_then(|h| {
                crate::broker::dead_letter::header_text(h, crate::broker::dead_letter::ROUTING_KEY)
            })
            .unwrap_or_else(|| self.routing_key.clone())
    }
}

/// What every [`Inbound`] of one connection needs to settle itself.
#[derive(Clone)]
pub(super) struct Settler {
    /// The acks of the channel the deliveries come from.
    pub(super) acks: AckQueue,
    pub(super) publisher: Publisher,
    pub(super) topology: Arc<StoreTopology>,
}

impl Settler {
    /// Wraps a broker delivery; from here on only its [`SettleHandle`] can ack or nack it.
    pub(super) fn inbound(
        &self,
        delivery: lapin::message::Delivery,
        lease: Option<Lease>,
    ) -> Inbound {
        self.acks.received(delivery.delivery_tag);
        Inbound {
            body: delivery.data,
            routing_key: delivery.routing_key.as_str().to_string(),
            redelivered: delivery.redelivered,
            properties: delivery.properties,
            handle: SettleHandle {
                tag: delivery.delivery_tag,
                acker: delivery.acker,
                acks: self.acks.clone(),
                publisher: self.publisher.clone(),
                topology: self.topology.clone(),
                lease: std::sync::Mutex::new(lease),
            },
        }
    }
}

/// Where a connection stores dead letters and parked deliveries, and whether it may declare
/// a store queue that went missing.
#[derive(Debug)]
pub(super) struct StoreTopology {
    pub(super) dead_letter_queue: String,
    pub(super) input_queue: String,
    pub(super) queue_type: QueueType,
    pub(super) redelivery_limit: u32,
    pub(super) declare: bool,
}

impl StoreTopology {
    /// What the arguments of the queues it may declare again depend on.
    pub(super) fn queue_settings(&self) -> topology::QueueSettings<'_> {
        topology::QueueSettings {
            queue_type: self.queue_type,
            redelivery_limit: self.redelivery_limit,
            dead_letter_queue: &self.dead_letter_queue,
        }
    }
}

/// The only way to settle an [`Inbound`]: ack it, requeue it, or publish its dead letters
/// (on the same connection, with confirms). Held by `settle` alone.
pub struct SettleHandle {
    /// The delivery tag, numbered per channel.
    pub(super) tag: u64,
    pub(super) acker: lapin::Acker,
    /// Sends the acker's ack or nack, coalesced with the channel's other acks.
    pub(super) acks: AckQueue,
    pub(super) publisher: Publisher,
    pub(super) topology: Arc<StoreTopology>,
    /// The body's bytes counted against the memory budget: released when the broker is told
    /// the message's fate (it may then send another in its place), or with the message.
    pub(super) lease: std::sync::Mutex<Option<Lease>>,
}
