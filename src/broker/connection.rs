//! The connection: connecting (trying every configured URL in turn), declaring the topology,
//! starting intakes on the input and retry queues, and closing.

use super::acks::AckQueue;
use super::flow::Budget;
use super::inbound::Settler;
use super::inbound::StoreTopology;
use super::intake::Intake;
use super::leader;
use super::publish::{Publisher, open_confirm_channel};
use super::{AmqpError, CLOSE_TIMEOUT, CONNECT_TIMEOUT, Inbound, topology};
use crate::config::{AmqpSettings, Webhook};
use crate::redact::Redactor;
use crate::redact::Secret;
use lapin::options::{
    BasicQosOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use std::sync::Arc;

/// An open connection with its consuming channel and its confirm-mode publishing channel.
pub struct Broker {
    connection: Arc<Connection>,
    consume_channel: Channel,
    /// The acks of `consume_channel`'s deliveries (input queue and `basic.get`).
    consume_acks: AckQueue,
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
        let candidates: Vec<(&Secret<String>, &String)> =
            std::iter::once((&settings.url, &settings.url_redacted))
                .chain(
                    settings
                        .fallback_urls
                        .iter()
                        .map(|(url, shown)| (url, shown)),
                )
                .collect();
        let candidates = leader_first(settings, redactor, candidates).await;
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

    /// Tries to connect to one URL, channels included, within [`CONNECT_TIMEOUT`]; `shown`
    /// names it in errors. The whole try is bounded, not only the handshake: a connection cut
    /// half-way (a proxy, a broker going down) must not hold the worker in a step that waits
    /// for an answer that never comes. A connection whose channels fail or time out is closed
    /// in the background (lapin's channels keep it alive when it is merely dropped).
    async fn connect_one(
        url: &str,
        shown: &str,
        settings: &AmqpSettings,
        redactor: &Redactor,
    ) -> Result<Self, AmqpError> {
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        let timed_out = || AmqpError::Connect {
            url: shown.to_string(),
            message: format!(
                "no connection with its channels within {}s",
                CONNECT_TIMEOUT.as_secs()
            ),
        };
        let properties = ConnectionProperties::default()
            .with_connection_name(settings.connection_name.clone().into());
        let url = with_frame_max(url, settings.frame_max);
        let connection =
            match tokio::time::timeout_at(deadline, Connection::connect(&url, properties)).await {
                Ok(Ok(connection)) => Arc::new(connection),
                Ok(Err(e)) => {
                    return Err(AmqpError::Connect {
                        url: shown.to_string(),
                        message: redactor.scrub(&e.to_string()),
                    });
                }
                Err(_) => return Err(timed_out()),
            };
        let channels = Self::open_channels(&connection, settings, redactor);
        let (consume_channel, publish_channel) =
            match tokio::time::timeout_at(deadline, channels).await {
                Ok(Ok(channels)) => channels,
                failed => {
                    let closing = connection.clone();
                    tokio::spawn(async move {
                        let close = closing.close(200, "connect failed".into());
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
                    });
                    return Err(match failed {
                        Ok(Err(e)) => e,
                        _ => timed_out(),
                    });
                }
            };
        Ok(Broker {
            publisher: Publisher::new(connection.clone(), publish_channel, redactor.clone()),
            connection,
            consume_channel,
            consume_acks: AckQueue::spawn(),
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

    /// Opens the consuming channel (with its prefetch) and the confirm-mode publishing one.
    async fn open_channels(
        connection: &Arc<Connection>,
        settings: &AmqpSettings,
        redactor: &Redactor,
    ) -> Result<(Channel, Channel), AmqpError> {
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
        let publish_channel = open_confirm_channel(connection, redactor).await?;
        Ok((consume_channel, publish_channel))
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
            let what = if passive {
                format!("queue `{queue}` (amqp.declare = false expects it to exist)")
            } else {
                format!("declare queue `{queue}`")
            };
            self.declare_queue(channel, queue, arguments, passive, what)
                .await?;
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
        for webhook in webhooks {
            let queues = topology::retry_path(&settings.queue, webhook, settings.into());
            for (queue, arguments) in queues {
                let what = format!("declare retry queue `{queue}`");
                self.declare_queue(channel, &queue, arguments, passive, what)
                    .await?;
            }
        }
        Ok(())
    }

    /// Declares one durable queue with `arguments`, or with `passive` only checks that it
    /// exists. A queue that exists with other arguments is the one clear
    /// [`topology::InequivalentQueue`] error; anything else is `what` failed.
    async fn declare_queue(
        &self,
        channel: &Channel,
        queue: &str,
        arguments: FieldTable,
        passive: bool,
        what: String,
    ) -> Result<(), AmqpError> {
        let options = QueueDeclareOptions {
            durable: true,
            passive,
            ..QueueDeclareOptions::default()
        };
        let arguments = if passive {
            FieldTable::default()
        } else {
            arguments
        };
        channel
            .queue_declare(queue.into(), options, arguments)
            .await
            .map(|_| ())
            .map_err(
                |e| match topology::InequivalentQueue::from_error(queue, &e) {
                    Some(inequivalent) => inequivalent.into(),
                    None => AmqpError::Operation {
                        operation: what,
                        message: self.redactor.scrub(&e.to_string()),
                    },
                },
            )
    }

    /// What settles the deliveries of the channel whose acks go through `acks`.
    fn settler(&self, acks: AckQueue) -> Settler {
        Settler {
            acks,
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
            self.settler(AckQueue::spawn()),
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
            self.settler(self.consume_acks.clone()),
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
        Ok(got.map(|message| {
            self.settler(self.consume_acks.clone())
                .inbound(message.delivery, None)
        }))
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

/// `candidates` with the URL of the node leading the input queue first, when
/// `amqp.management_url` says which (see [`super::leader`]); as written otherwise.
async fn leader_first<'a>(
    settings: &AmqpSettings,
    redactor: &Redactor,
    candidates: Vec<(&'a Secret<String>, &'a String)>,
) -> Vec<(&'a Secret<String>, &'a String)> {
    if settings.management_url.is_none() || candidates.len() < 2 {
        return candidates;
    }
    let (leader, listeners) = match leader::lookup(settings, redactor).await {
        Ok(found) => found,
        Err(why) => {
            tracing::warn!(
                queue = %settings.queue,
                error = %why,
                "cannot tell which node leads the input queue; trying the broker URLs in order"
            );
            return candidates;
        }
    };
    let addresses: Vec<(String, u16)> = candidates
        .iter()
        .map(|(url, _)| host_and_port(url.expose()))
        .collect();
    let order = leader::order(&addresses, &leader, &listeners);
    if let Some((_, shown)) = order.first().map(|&i| candidates[i])
        && order.first() != Some(&0)
    {
        tracing::info!(queue = %settings.queue, leader = %leader, first = %shown, "connecting to the input queue's leader first");
    }
    order.into_iter().map(|i| candidates[i]).collect()
}

/// The host and port of an AMQP URL (5672, or 5671 for `amqps`, when it names none).
fn host_and_port(url: &str) -> (String, u16) {
    match url::Url::parse(url) {
        Ok(url) => {
            let default = if url.scheme() == "amqps" { 5671 } else { 5672 };
            (
                url.host_str()
                    .unwrap_or_default()
                    .trim_matches(['[', ']'])
                    .to_string(),
                url.port().unwrap_or(default),
            )
        }
        Err(_) => (String::new(), 0),
    }
}
