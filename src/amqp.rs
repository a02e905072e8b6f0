//! The broker side: connecting, declaring the topology, consuming deliveries as [`Inbound`]
//! values and publishing with confirms. Nothing outside this module sees a delivery tag; an
//! [`Inbound`]'s [`SettleHandle`] is the only thing that can ack or nack it.
//!
//! Broker options, each with its reason:
//! - one channel consumes, with `basic.qos(prefetch)` so work in flight and memory are bounded
//!   (<https://www.rabbitmq.com/docs/consumer-prefetch>);
//! - manual acks (`no_ack = false`): a message is acked only once it is safe somewhere;
//! - a second channel publishes in confirm mode (`confirm.select`), so a dead letter counts only
//!   once the broker has taken responsibility for it
//!   (<https://www.rabbitmq.com/docs/confirms#publisher-confirms>);
//! - dead letters are published `mandatory`, so a missing dead-letter queue is an error instead
//!   of a silent drop, and persistent (`delivery_mode = 2`);
//! - exchange and queues are durable, so they and their persistent messages survive a broker
//!   restart.

use crate::config::AmqpSettings;
use crate::redact::Redactor;
use futures_util::{Stream, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use std::time::Duration;

/// How long connecting may take before it counts as a failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A broker operation that failed. Messages are redacted: they never carry the password.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The connection could not be opened.
    #[error("cannot connect to the broker at {url}: {message}")]
    Connect {
        /// The broker URL, password masked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A broker operation failed (declare, consume, publish, ack…).
    #[error("{operation}: {message}")]
    Operation {
        /// What was being done, e.g. `declare queue \`x\``.
        operation: String,
        /// What went wrong.
        message: String,
    },
    /// The broker refused a publish (`basic.nack`) or could not route it.
    #[error("publish to {target}: {message}")]
    NotConfirmed {
        /// Exchange and routing key.
        target: String,
        /// Why.
        message: String,
    },
    /// The channel the message came in on is gone; the broker will redeliver the message.
    #[error("{0}: the channel is closed; the broker will redeliver the message")]
    ChannelLost(&'static str),
}

/// An open connection with its consuming channel and its confirm-mode publishing channel.
pub struct Broker {
    connection: Connection,
    consume_channel: Channel,
    publisher: Publisher,
    redactor: Redactor,
    dead_letter_queue: String,
}

impl Broker {
    /// Connects and opens both channels. Fails within [`CONNECT_TIMEOUT`].
    pub async fn connect(settings: &AmqpSettings, redactor: &Redactor) -> Result<Self, AmqpError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(settings.connection_name.clone().into());
        let connect = Connection::connect(settings.url.expose(), properties);
        let connection = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => {
                return Err(AmqpError::Connect {
                    url: settings.url_redacted.clone(),
                    message: redactor.scrub(&e.to_string()),
                });
            }
            Err(_) => {
                return Err(AmqpError::Connect {
                    url: settings.url_redacted.clone(),
                    message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                });
            }
        };
        let op = |operation: &str| {
            let operation = operation.to_string();
            let redactor = redactor.clone();
            move |e: lapin::Error| AmqpError::Operation {
                operation,
                message: redactor.scrub(&e.to_string()),
            }
        };
        let consume_channel = connection
            .create_channel()
            .await
            .map_err(op("open consume channel"))?;
        consume_channel
            .basic_qos(settings.prefetch, BasicQosOptions::default())
            .await
            .map_err(op("set prefetch"))?;
        let publish_channel = connection
            .create_channel()
            .await
            .map_err(op("open publish channel"))?;
        publish_channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(op("enable publisher confirms"))?;
        Ok(Broker {
            connection,
            consume_channel,
            publisher: Publisher {
                channel: publish_channel,
                redactor: redactor.clone(),
            },
            redactor: redactor.clone(),
            dead_letter_queue: settings.dead_letter_queue.clone(),
        })
    }

    /// Declares the durable topic exchange, the input queue bound to it with `#`, and the
    /// dead-letter queue. With `declare = false` it only checks (passively) that they exist.
    pub async fn declare_topology(&self, settings: &AmqpSettings) -> Result<(), AmqpError> {
        let channel = &self.consume_channel;
        let passive = !settings.declare;
        let op = |what: String| {
            let redactor = self.redactor.clone();
            move |e: lapin::Error| AmqpError::Operation {
                operation: what,
                message: redactor.scrub(&e.to_string()),
            }
        };
        let queue_options = QueueDeclareOptions {
            durable: true,
            passive,
            ..QueueDeclareOptions::default()
        };
        if settings.declare {
            channel
                .exchange_declare(
                    settings.exchange.as_str().into(),
                    lapin::ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(op(format!("declare exchange `{}`", settings.exchange)))?;
        }
        for queue in [&settings.queue, &settings.dead_letter_queue] {
            channel
                .queue_declare(queue.as_str().into(), queue_options, FieldTable::default())
                .await
                .map_err(op(if passive {
                    format!("queue `{queue}` (amqp.declare = false expects it to exist)")
                } else {
                    format!("declare queue `{queue}`")
                }))?;
        }
        if settings.declare {
            channel
                .queue_bind(
                    settings.queue.as_str().into(),
                    settings.exchange.as_str().into(),
                    "#".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(op(format!(
                    "bind queue `{}` to exchange `{}`",
                    settings.queue, settings.exchange
                )))?;
        }
        Ok(())
    }

    /// Starts consuming the input queue with manual acks. The stream ends (or yields an
    /// error) when the channel or connection is lost.
    pub async fn consume(
        &self,
        settings: &AmqpSettings,
    ) -> Result<impl Stream<Item = Result<Inbound, AmqpError>> + Unpin + use<>, AmqpError> {
        let consumer = self
            .consume_channel
            .basic_consume(
                settings.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| AmqpError::Operation {
                operation: format!("consume queue `{}`", settings.queue),
                message: self.redactor.scrub(&e.to_string()),
            })?;
        let publisher = self.publisher.clone();
        let redactor = self.redactor.clone();
        let dead_letter_queue = self.dead_letter_queue.clone();
        Ok(consumer.map(move |delivery| match delivery {
            Ok(delivery) => Ok(Inbound {
                body: delivery.data,
                routing_key: delivery.routing_key.as_str().to_string(),
                redelivered: delivery.redelivered,
                properties: delivery.properties,
                handle: SettleHandle {
                    acker: delivery.acker,
                    publisher: publisher.clone(),
                    dead_letter_queue: dead_letter_queue.clone(),
                },
            }),
            Err(e) => Err(AmqpError::Operation {
                operation: "consume".into(),
                message: redactor.scrub(&e.to_string()),
            }),
        }))
    }

    /// The confirm-mode publisher of this connection.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// A plain channel, for administrative work (tests, the demo, the CLI).
    pub fn channel(&self) -> &Channel {
        &self.consume_channel
    }

    /// Whether the connection is still up.
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// Closes the connection; unacked deliveries go back to their queue.
    pub async fn close(&self) {
        let _ = self.connection.close(200, "shutdown".into()).await;
    }

    /// Takes one message from `queue` without acking it (`basic.get`); it goes back to the
    /// queue when the channel closes unless settled through the handle.
    pub async fn fetch(&self, queue: &str) -> Result<Option<Inbound>, AmqpError> {
        let got = self
            .consume_channel
            .basic_get(queue.into(), lapin::options::BasicGetOptions::default())
            .await
            .map_err(|e| AmqpError::Operation {
                operation: format!("get from queue `{queue}`"),
                message: self.redactor.scrub(&e.to_string()),
            })?;
        Ok(got.map(|message| {
            let delivery = message.delivery;
            Inbound {
                body: delivery.data,
                routing_key: delivery.routing_key.as_str().to_string(),
                redelivered: delivery.redelivered,
                properties: delivery.properties,
                handle: SettleHandle {
                    acker: delivery.acker,
                    publisher: self.publisher.clone(),
                    dead_letter_queue: self.dead_letter_queue.clone(),
                },
            }
        }))
    }

    /// Deletes the exchange and both queues (demo and test cleanup).
    pub async fn delete_topology(&self, settings: &AmqpSettings) -> Result<(), AmqpError> {
        let channel = &self.consume_channel;
        for queue in [&settings.queue, &settings.dead_letter_queue] {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(|e| AmqpError::Operation {
                    operation: format!("delete queue `{queue}`"),
                    message: e.to_string(),
                })?;
        }
        channel
            .exchange_delete(
                settings.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(|e| AmqpError::Operation {
                operation: format!("delete exchange `{}`", settings.exchange),
                message: e.to_string(),
            })
    }
}

/// Publishes with publisher confirms: a publish returns only once the broker has the message.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    redactor: Redactor,
}

impl Publisher {
    /// Publishes `body` as mandatory and waits for the broker's confirm. A nack, an
    /// unroutable message or a lost channel is an error.
    pub async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
        let target = if exchange.is_empty() {
            format!("queue `{routing_key}`")
        } else {
            format!("exchange `{exchange}` with routing key `{routing_key}`")
        };
        let failed = |message: String| AmqpError::NotConfirmed {
            target: target.clone(),
            message,
        };
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await
            .map_err(|e| failed(self.redactor.scrub(&e.to_string())))?;
        match confirm.await {
            Ok(Confirmation::Ack(None)) => Ok(()),
            Ok(Confirmation::Ack(Some(returned))) => Err(failed(format!(
                "unroutable ({}): no queue is bound for it",
                returned.reply_text
            ))),
            Ok(Confirmation::Nack(_)) => Err(failed("the broker refused it (nack)".into())),
            Ok(Confirmation::NotRequested) => Err(failed(
                "publisher confirms are not enabled on this channel".into(),
            )),
            Err(e) => Err(failed(self.redactor.scrub(&e.to_string()))),
        }
    }
}

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
}

/// The only way to settle an [`Inbound`]: ack it, requeue it, or publish its dead letters
/// (on the same connection, with confirms). Held by `settle` alone.
pub struct SettleHandle {
    acker: lapin::Acker,
    publisher: Publisher,
    dead_letter_queue: String,
}

impl SettleHandle {
    /// Publishes one dead letter to the dead-letter queue and waits for the confirm.
    pub async fn publish_dead_letter(
        &self,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
        self.publisher
            .publish_confirmed("", &self.dead_letter_queue, body, properties)
            .await
    }

    /// Acks the message. An error means the channel is gone and the broker will redeliver it.
    pub async fn ack(&self) -> Result<(), AmqpError> {
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(AmqpError::ChannelLost("ack")),
            Err(e) => Err(AmqpError::Operation {
                operation: "ack".into(),
                message: e.to_string(),
            }),
        }
    }

    /// Returns the message to the queue for redelivery.
    pub async fn requeue(&self) -> Result<(), AmqpError> {
        let options = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        match self.acker.nack(options).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(AmqpError::ChannelLost("nack")),
            Err(e) => Err(AmqpError::Operation {
                operation: "nack".into(),
                message: e.to_string(),
            }),
        }
    }
}
