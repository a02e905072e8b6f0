//! The broker side: connecting, declaring the topology, consuming deliveries as [`Inbound`]
//! values and publishing with confirms. Nothing outside this module sees a delivery tag; an
//! [`Inbound`]'s [`SettleHandle`] is the only thing that can ack or nack it.
//!
//! Broker options, each with its reason:
//! - one channel consumes, with `basic.qos(prefetch)` so work in flight and memory are bounded
//!   (<https://www.rabbitmq.com/docs/consumer-prefetch>);
//! - manual acks (`no_ack = false`): a message is acked only once it is safe somewhere; acks
//!   are coalesced per channel into `multiple = true` over the contiguous prefix of settled
//!   delivery tags ([`acks`]), never covering a tag that is not settled;
//! - a second channel publishes in confirm mode (`confirm.select`), so a dead letter counts only
//!   once the broker has taken responsibility for it
//!   (<https://www.rabbitmq.com/docs/confirms#publisher-confirms>);
//! - dead letters are published `mandatory`, so a missing dead-letter queue is an error instead
//!   of a silent drop, and persistent (`delivery_mode = 2`);
//! - exchange and queues are durable, so they and their persistent messages survive a broker
//!   restart; `amqp.queue_type = "quorum"` makes every queue a replicated quorum queue
//!   (<https://www.rabbitmq.com/docs/quorum-queues>), which also counts redeliveries in
//!   `x-delivery-count`;
//! - each webhook's retry queue is consumed on a channel of its own with its own prefetch, so
//!   a webhook whose endpoint is down cannot use up the input's prefetch or another webhook's.
//!
//! The retry path's queue names and arguments are in [`topology`].

mod acks;
mod connection;
pub mod dead_letter;
pub mod dlq;
mod error;
pub mod flow;
mod inbound;
pub mod intake;
pub mod leader;
mod publish;
pub mod settle;
pub mod topology;

pub use connection::Broker;
pub use error::AmqpError;
pub use inbound::Inbound;
pub use inbound::SettleHandle;
pub use publish::Publisher;

use std::time::Duration;

/// How long a close or cancel may wait for the broker's answer: a broker that went away
/// must not hold up shutdown.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long connecting (handshake and channels) may take before it counts as a failure:
/// far more than a healthy broker needs, even over TLS across a region, and short enough that a
/// try cut half-way does not hold the worker long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
