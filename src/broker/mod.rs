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
//!   restart; `amqp.queue_type = "quorum"` makes every queue a replicated quorum queue
//!   (<https://www.rabbitmq.com/docs/quorum-queues>), which also counts redeliveries in
//!   `x-delivery-count`;
//! - each webhook's retry queue is consumed on a channel of its own with its own prefetch, so
//!   a webhook whose endpoint is down cannot use up the input's prefetch or another webhook's.
//!
//! The retry path's queue names and arguments are in [`topology`].

pub mod dead_letter;
pub mod dlq;
pub mod flow;
pub mod intake;
pub mod settle;
pub mod topology;

use crate::config::{AmqpSettings, QueueType, Webhook};
use crate::redact::Redactor;
use flow::{Budget, Lease};
use intake::Intake;
use lapin::options::{
    BasicAckOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use std::sync::Arc;
use std::time::Duration;

/// How long a close or cancel may wait for the broker's answer: a broker that went away
/// must not hold up shutdown.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The broker refused a publish (`basic.nack`), or the channel failed before confirming.
    #[error("publish to {target}: {message}")]
    NotConfirmed {
        /// Exchange and routing key.
        target: String,
        /// Why.
        message: String,
    },
    /// The broker returned a mandatory publish: no queue is bound for it (e.g. the
    /// dead-letter queue was deleted).
    #[error("publish to {target}: unroutable ({reply}): no queue is bound for it")]
    Unroutable {
        /// Exchange and routing key.
        target: String,
        /// The broker's reply text.
        reply: String,
    },
    /// The channel the message came in on is gone; the broker will redeliver the message.
    #[error("{0}: the channel is closed; the broker will redeliver the message")]
    ChannelLost(&'static str),
    /// A queue exists with other arguments than the ones this version declares.
    #[error(transparent)]
    Inequivalent(#[from] topology::InequivalentQueue),
}

/// An open connection with its consuming channel and its confirm-mode publishing channel.
pub struct Broker {
    connection: Arc<Connection>,
    consume_channel: Channel,
    publisher: Publisher,
    redactor: Redactor,
    topology: Arc<StoreTopology>,
    /// The channels of the retry consumers. Held here, not only by the consumers, so that a
    /// cancelled consumer's channel stays open until [`Broker::close`]: its deliveries still
    /// in flight must be able to ack on it (a closed channel hands them back to the broker).
    retry_channels: std::sync::Mutex<Vec<Channel>>,
}

impl Broker {
    /// Connects to `amqp.url`, then to each of `amqp.urls` in turn until one answers, and
    /// opens both channels. Each try fails within [`CONNECT_TIMEOUT`].
    pub async fn connect(settings: &AmqpSettings, redactor: &Redactor) -> Result<Self, AmqpError> {
        let mut last_error = None;
        let candidates = std::iter::once((&settings.url, &settings.url_redacted)).chain(
            settings
                .fallback_urls
                .iter()
                .map(|(url, shown)| (url, shown)),
        );
        for (url, shown) in candidates {
            match Self::connect_one(url.expose(), shown, settings, redactor).await {
                Ok(broker) => return Ok(broker),
                Err(e) => {
                    if !settings.fallback_urls.is_empty() {
                        tracing::warn!(error = %e, "broker node unreachable; trying the next");
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or(AmqpError::Connect {
            url: settings.url_redacted.clone(),
            message: "no broker URL".into(),
        }))
    }

    async fn connect_one(
        url: &str,
        shown: &str,
        settings: &AmqpSettings,
        redactor: &Redactor,
    ) -> Result<Self, AmqpError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(settings.connection_name.clone().into());
        let url = with_frame_max(url, settings.frame_max);
        let connect = Connection::connect(&url, properties);
        let connection = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => {
                return Err(AmqpError::Connect {
                    url: shown.to_string(),
                    message: redactor.scrub(&e.to_string()),
                });
            }
            Err(_) => {
                return Err(AmqpError::Connect {
                    url: shown.to_string(),
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
        let connection = Arc::new(connection);
        let publish_channel = open_confirm_channel(&connection, redactor).await?;
        Ok(Broker {
            publisher: Publisher {
                connection: connection.clone(),
                channel: Arc::new(tokio::sync::Mutex::new(publish_channel)),
                redactor: redactor.clone(),
            },
            connection,
            consume_channel,
            redactor: redactor.clone(),
            topology: Arc::new(StoreTopology {
                dead_letter_queue: settings.dead_letter_queue.clone(),
                input_queue: settings.queue.clone(),
                queue_type: settings.queue_type,
                redelivery_limit: settings.redelivery_limit,
                declare: settings.declare,
            }),
            retry_channels: std::sync::Mutex::new(Vec::new()),
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
        let queues = [
            (
                &settings.queue,
                topology::input_queue_arguments(settings.into()),
            ),
            (
                &settings.dead_letter_queue,
                topology::dead_letter_queue_arguments(settings.into()),
            ),
        ];
        for (queue, arguments) in queues {
            let arguments = if passive {
                FieldTable::default()
            } else {
                arguments
            };
            channel
                .queue_declare(queue.as_str().into(), queue_options, arguments)
                .await
                .map_err(
                    |e| match topology::InequivalentQueue::from_error(queue, &e) {
                        Some(inequivalent) => inequivalent.into(),
                        None => op(if passive {
                            format!("queue `{queue}` (amqp.declare = false expects it to exist)")
                        } else {
                            format!("declare queue `{queue}`")
                        })(e),
                    },
                )?;
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

    /// Declares the retry path of each webhook: its retry queue and one wait queue per backoff
    /// step (see [`topology`]). With `declare = false` it only checks that they exist.
    ///
    /// It works on a channel of its own: a refused declare (a queue that exists with other
    /// arguments, on a reload) closes that channel only, never the one consuming.
    pub async fn declare_retry_topology(
        &self,
        settings: &AmqpSettings,
        webhooks: &[std::sync::Arc<Webhook>],
    ) -> Result<(), AmqpError> {
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|e| AmqpError::Operation {
                operation: "open a channel to declare the retry queues".into(),
                message: self.redactor.scrub(&e.to_string()),
            })?;
        let declared = self.declare_retry_path(&channel, settings, webhooks).await;
        if channel.status().connected() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "done".into())).await;
        }
        declared
    }

    async fn declare_retry_path(
        &self,
        channel: &Channel,
        settings: &AmqpSettings,
        webhooks: &[std::sync::Arc<Webhook>],
    ) -> Result<(), AmqpError> {
        let passive = !settings.declare;
        let options = QueueDeclareOptions {
            durable: true,
            passive,
            ..QueueDeclareOptions::default()
        };
        for webhook in webhooks {
            let queues = topology::retry_path(&settings.queue, webhook, settings.into());
            for (queue, arguments) in queues {
                let arguments = if passive {
                    FieldTable::default()
                } else {
                    arguments
                };
                channel
                    .queue_declare(queue.as_str().into(), options, arguments)
                    .await
                    .map_err(
                        |e| match topology::InequivalentQueue::from_error(&queue, &e) {
                            Some(inequivalent) => inequivalent.into(),
                            None => AmqpError::Operation {
                                operation: format!("declare retry queue `{queue}`"),
                                message: self.redactor.scrub(&e.to_string()),
                            },
                        },
                    )?;
            }
        }
        Ok(())
    }

    fn settler(&self) -> Settler {
        Settler {
            publisher: self.publisher.clone(),
            topology: self.topology.clone(),
        }
    }

    /// Messages ready in `queue` (0 when it does not exist).
    pub async fn ready_count(&self, queue: &str) -> Result<u32, AmqpError> {
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|e| AmqpError::Operation {
                operation: "open channel".into(),
                message: self.redactor.scrub(&e.to_string()),
            })?;
        let result = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let _ = channel.close(200, "done".into()).await;
        Ok(result.map(|q| q.message_count()).unwrap_or(0))
    }

    /// Starts consuming a webhook's retry queue on a channel of its own, with a prefetch of at
    /// most `prefetch` that follows `budget`. The channel stays open until [`Broker::close`],
    /// so deliveries taken before the intake is stopped can still be acked.
    pub async fn consume_retry(
        &self,
        settings: &AmqpSettings,
        webhook: &str,
        prefetch: u16,
        budget: &Arc<Budget>,
    ) -> Result<Intake, AmqpError> {
        let queue = topology::retry_queue(&settings.queue, webhook);
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|e| AmqpError::Operation {
                operation: format!("open channel for `{queue}`"),
                message: self.redactor.scrub(&e.to_string()),
            })?;
        self.retry_channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(channel.clone());
        let mut intake = Intake::new(
            channel,
            queue,
            prefetch,
            budget.clone(),
            self.settler(),
            self.redactor.clone(),
        );
        intake.resume().await?;
        Ok(intake)
    }

    /// Starts consuming the input queue with manual acks, with a prefetch of at most
    /// `amqp.prefetch` that follows `budget`.
    pub async fn consume(
        &self,
        settings: &AmqpSettings,
        budget: &Arc<Budget>,
    ) -> Result<Intake, AmqpError> {
        let mut intake = self.input_intake(settings, budget);
        intake.resume().await?;
        Ok(intake)
    }

    /// The input queue's [`Intake`], not consuming yet ([`Intake::resume`] starts it).
    pub fn input_intake(&self, settings: &AmqpSettings, budget: &Arc<Budget>) -> Intake {
        Intake::new(
            self.consume_channel.clone(),
            settings.queue.clone(),
            settings.prefetch,
            budget.clone(),
            self.settler(),
            self.redactor.clone(),
        )
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

    /// Closes the retry consumers' channels, then the connection; unacked deliveries go back
    /// to their queue. Closing each channel and waiting for it, rather than letting a dropped
    /// handle close it in the background, keeps that close from racing the connection's.
    pub async fn close(&self) {
        let retry_channels = std::mem::take(
            &mut *self
                .retry_channels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !self.connection.status().connected() {
            // Lost already: the broker has handed every unacked message back.
            return;
        }
        for channel in retry_channels {
            if channel.status().connected() {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "shutdown".into()))
                    .await;
            }
        }
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.connection.close(200, "shutdown".into()))
            .await;
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
        Ok(got.map(|message| self.settler().inbound(message.delivery, None)))
    }

    /// Deletes the exchange, both queues and every webhook's retry path (demo and test
    /// cleanup).
    pub async fn delete_topology(
        &self,
        settings: &AmqpSettings,
        webhooks: &[std::sync::Arc<Webhook>],
    ) -> Result<(), AmqpError> {
        let channel = &self.consume_channel;
        let mut queues = vec![settings.queue.clone(), settings.dead_letter_queue.clone()];
        for webhook in webhooks {
            queues.push(topology::retry_queue(&settings.queue, &webhook.name));
            for tier in topology::tiers(&webhook.delivery) {
                queues.push(topology::wait_queue(&settings.queue, &webhook.name, tier));
            }
        }
        for queue in &queues {
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

/// The URL with `frame_max` asked for, unless the URL sets it itself. lapin sizes its read and
/// write buffers at 32 frames, so the server's default (128 KiB) would cost 8 MiB per
/// connection.
fn with_frame_max(url: &str, frame_max: u32) -> String {
    if url.contains("frame_max=") {
        return url.to_string();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}frame_max={frame_max}")
}

/// Opens a channel in confirm mode (`confirm.select`).
async fn open_confirm_channel(
    connection: &Connection,
    redactor: &Redactor,
) -> Result<Channel, AmqpError> {
    let op = |operation: &'static str| {
        move |e: lapin::Error| AmqpError::Operation {
            operation: operation.into(),
            message: redactor.scrub(&e.to_string()),
        }
    };
    let channel = connection
        .create_channel()
        .await
        .map_err(op("open publish channel"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(op("enable publisher confirms"))?;
    Ok(channel)
}

/// Publishes with publisher confirms: a publish returns only once the broker has the message.
///
/// The channel is watched like the consuming one: when the broker closed it (a channel error),
/// the next publish opens a new one on the same connection, so a broken publish channel never
/// turns into lost or repeated work while the consuming channel, and its unacked messages,
/// stay as they are.
#[derive(Clone)]
pub struct Publisher {
    connection: Arc<Connection>,
    channel: Arc<tokio::sync::Mutex<Channel>>,
    redactor: Redactor,
}

impl Publisher {
    /// The open confirm-mode channel, reopened first if the broker closed it.
    async fn channel(&self) -> Result<Channel, AmqpError> {
        let mut channel = self.channel.lock().await;
        if !channel.status().connected() && self.connection.status().connected() {
            tracing::warn!("the publish channel was closed by the broker; opening a new one");
            *channel = open_confirm_channel(&self.connection, &self.redactor).await?;
        }
        Ok(channel.clone())
    }

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
            .channel()
            .await?
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
            Ok(Confirmation::Ack(Some(returned))) => Err(AmqpError::Unroutable {
                target,
                reply: returned.reply_text.to_string(),
            }),
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
    /// The body's bytes counted against the memory budget, released with the message.
    _lease: Option<Lease>,
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

/// Where a connection stores dead letters and parked deliveries, and whether it may declare
/// a store queue that went missing.
#[derive(Debug)]
struct StoreTopology {
    dead_letter_queue: String,
    input_queue: String,
    queue_type: QueueType,
    redelivery_limit: u32,
    declare: bool,
}

impl StoreTopology {
    /// What the arguments of the queues it may declare again depend on.
    fn queue_settings(&self) -> topology::QueueSettings<'_> {
        topology::QueueSettings {
            queue_type: self.queue_type,
            redelivery_limit: self.redelivery_limit,
            dead_letter_queue: &self.dead_letter_queue,
        }
    }
}

/// What every [`Inbound`] of one connection needs to settle itself.
#[derive(Clone)]
struct Settler {
    publisher: Publisher,
    topology: Arc<StoreTopology>,
}

impl Settler {
    /// Wraps a broker delivery; from here on only its [`SettleHandle`] can ack or nack it.
    fn inbound(&self, delivery: lapin::message::Delivery, lease: Option<Lease>) -> Inbound {
        Inbound {
            body: delivery.data,
            routing_key: delivery.routing_key.as_str().to_string(),
            redelivered: delivery.redelivered,
            properties: delivery.properties,
            handle: SettleHandle {
                acker: delivery.acker,
                publisher: self.publisher.clone(),
                topology: self.topology.clone(),
            },
            _lease: lease,
        }
    }
}

/// The only way to settle an [`Inbound`]: ack it, requeue it, or publish its dead letters
/// (on the same connection, with confirms). Held by `settle` alone.
pub struct SettleHandle {
    acker: lapin::Acker,
    publisher: Publisher,
    topology: Arc<StoreTopology>,
}

impl SettleHandle {
    /// Publishes one dead letter to the dead-letter queue and waits for the confirm.
    pub async fn publish_dead_letter(
        &self,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
        self.publisher
            .publish_confirmed("", &self.topology.dead_letter_queue, body, properties)
            .await
    }

    /// Publishes the message to the wait queue of `webhook` whose delay fits `delay`, and
    /// waits for the confirm. From there the broker moves it to the webhook's retry queue.
    pub async fn publish_park(
        &self,
        webhook: &Webhook,
        delay: std::time::Duration,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
        let queue = topology::wait_queue_for(
            &self.topology.input_queue,
            &webhook.name,
            &webhook.delivery,
            delay,
        );
        self.publisher
            .publish_confirmed("", &queue, body, properties)
            .await
    }

    /// Declares the dead-letter queue again, after a publish to it came back unroutable.
    /// `Ok(false)` when `amqp.declare = false` forbids it.
    pub async fn restore_dead_letter_queue(&self) -> Result<bool, AmqpError> {
        let arguments = topology::dead_letter_queue_arguments(self.topology.queue_settings());
        self.restore(&self.topology.dead_letter_queue, arguments)
            .await
    }

    /// Declares `webhook`'s wait queue for `delay` again, after a park to it came back
    /// unroutable. `Ok(false)` when `amqp.declare = false` forbids it.
    pub async fn restore_wait_queue(
        &self,
        webhook: &Webhook,
        delay: std::time::Duration,
    ) -> Result<bool, AmqpError> {
        let input = &self.topology.input_queue;
        let tier = topology::tier_for(&webhook.delivery, delay);
        let retry = topology::retry_queue(input, &webhook.name);
        let arguments =
            topology::wait_queue_arguments(self.topology.queue_settings(), tier, &retry);
        self.restore(&topology::wait_queue(input, &webhook.name, tier), arguments)
            .await
    }

    async fn restore(&self, queue: &str, arguments: FieldTable) -> Result<bool, AmqpError> {
        if !self.topology.declare {
            return Ok(false);
        }
        let channel = self.publisher.channel().await?;
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.into(), options, arguments)
            .await
            .map_err(|e| AmqpError::Operation {
                operation: format!("declare queue `{queue}` again"),
                message: self.publisher.redactor.scrub(&e.to_string()),
            })?;
        tracing::warn!(
            queue,
            "declared a missing queue again (amqp.declare = true)"
        );
        Ok(true)
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
