//! Publishing with publisher confirms on a channel that reopens itself.

use super::AmqpError;
use crate::redact::Redactor;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use std::sync::Arc;

/// Opens a channel in confirm mode (`confirm.select`).
pub(super) async fn open_confirm_channel(
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
    pub(super) redactor: Redactor,
}

impl Publisher {
    /// A publisher on `channel` (in confirm mode) of `connection`.
    pub(super) fn new(connection: Arc<Connection>, channel: Channel, redactor: Redactor) -> Self {
        Publisher {
            connection,
            channel: Arc::new(tokio::sync::Mutex::new(channel)),
            redactor,
        }
    }

    /// The open confirm-mode channel, reopened first if the broker closed it.
    pub(super) async fn channel(&self) -> Result<Channel, AmqpError> {
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
