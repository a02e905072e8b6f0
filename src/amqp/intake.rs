//! Consuming one queue with a prefetch that follows the memory budget, and that can be paused.
//!
//! RabbitMQ applies a consumer's prefetch (`basic.qos` with `global = false`) when the consumer
//! starts; a later `basic.qos` does not change it, and quorum queues refuse the channel-wide
//! (`global`) form. So an [`Intake`] changes its window by starting a new consumer with the new
//! prefetch and cancelling the old one. Deliveries the old consumer already received still
//! arrive (its stream drains, then ends) and are acked on the same channel, so nothing is
//! redelivered by the switch. Pausing cancels the consumer the same way; resuming starts one.
//!
//! Each message's body is counted against the worker's [`Budget`] from the moment it is
//! received until its [`Inbound`] is dropped, after it is settled.

use super::flow::{Account, Budget, Window};
use super::{AmqpError, Inbound, Settler};
use crate::redact::Redactor;
use futures_util::StreamExt;
use futures_util::stream::{BoxStream, SelectAll};
use lapin::Channel;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::sync::Arc;

/// A queue being consumed with an adaptive prefetch. Dropping it does not cancel the consumer;
/// call [`Intake::stop`] (or close the channel).
pub struct Intake {
    channel: Channel,
    queue: String,
    settler: Settler,
    redactor: Redactor,
    window: Window,
    account: Arc<Account>,
    /// The tag of the consumer the broker sends new messages to; `None` while paused.
    active: Option<String>,
    /// The active consumer and any cancelled ones still draining.
    streams: SelectAll<BoxStream<'static, Result<lapin::message::Delivery, lapin::Error>>>,
    /// A new prefetch decided by the window, applied by [`Intake::adjust`].
    wanted: Option<u16>,
}

impl Intake {
    pub(super) fn new(
        channel: Channel,
        queue: String,
        max_prefetch: u16,
        budget: Arc<Budget>,
        settler: Settler,
        redactor: Redactor,
    ) -> Intake {
        Intake {
            channel,
            queue,
            settler,
            redactor,
            window: Window::new(max_prefetch),
            account: Account::new(budget),
            active: None,
            streams: SelectAll::new(),
            wanted: None,
        }
    }

    /// The queue consumed.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The prefetch in force (or to be used on resume).
    pub fn prefetch(&self) -> u16 {
        self.window.current()
    }

    /// Whether a consumer is active (not paused or stopped).
    pub fn is_consuming(&self) -> bool {
        self.active.is_some()
    }

    /// The next message, with its body counted against the budget. `None` when the broker
    /// ended the active consumer (the queue was deleted, the channel closed) and nothing is
    /// left to drain; while paused, waits for ever once drained. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Inbound, AmqpError>> {
        loop {
            if self.streams.is_empty() {
                if self.active.is_some() {
                    return None;
                }
                std::future::pending::<()>().await;
            }
            match self.streams.next().await {
                Some(Ok(delivery)) => {
                    let size = delivery.data.len() as u64;
                    let lease = self.account.lease(size);
                    if let Some(prefetch) = self.window.on_message(size, self.account.room()) {
                        self.wanted = Some(prefetch);
                    }
                    return Some(Ok(self.settler.inbound(delivery, Some(lease))));
                }
                Some(Err(e)) => {
                    return Some(Err(AmqpError::Operation {
                        operation: format!("consume queue `{}`", self.queue),
                        message: self.redactor.scrub(&e.to_string()),
                    }));
                }
                // A stream ended: a consumer we cancelled has drained, or the broker ended
                // the active one.
                None if self.active.is_some() => return None,
                None => {}
            }
        }
    }

    /// Applies the prefetch the window asked for since the last call, by switching to a new
    /// consumer. Call it after [`Intake::next`], outside any `select!`.
    pub async fn adjust(&mut self) -> Result<(), AmqpError> {
        let Some(prefetch) = self.wanted.take() else {
            return Ok(());
        };
        if self.active.is_none() {
            return Ok(());
        }
        tracing::debug!(queue = %self.queue, prefetch, estimate = self.window.estimate(), "prefetch changed");
        self.cancel_active().await?;
        self.start(prefetch).await
    }

    /// Starts consuming with the current window. Does nothing if already consuming.
    pub async fn resume(&mut self) -> Result<(), AmqpError> {
        if self.active.is_some() {
            return Ok(());
        }
        self.start(self.window.current()).await
    }

    /// Stops the broker sending more; messages already received still arrive from
    /// [`Intake::next`] and can be settled.
    pub async fn pause(&mut self) -> Result<(), AmqpError> {
        self.cancel_active().await
    }

    /// [`Intake::pause`], for good: the last step before the channel is closed.
    pub async fn stop(&mut self) {
        let cancel = self.cancel_active();
        let _ = tokio::time::timeout(super::CLOSE_TIMEOUT, cancel).await;
    }

    async fn start(&mut self, prefetch: u16) -> Result<(), AmqpError> {
        let op = |operation: String| {
            let redactor = self.redactor.clone();
            move |e: lapin::Error| AmqpError::Operation {
                operation,
                message: redactor.scrub(&e.to_string()),
            }
        };
        self.channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(op(format!("set prefetch for `{}`", self.queue)))?;
        let consumer = self
            .channel
            .basic_consume(
                self.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(op(format!("consume queue `{}`", self.queue)))?;
        self.active = Some(consumer.tag().as_str().to_string());
        self.streams.push(consumer.boxed());
        Ok(())
    }

    async fn cancel_active(&mut self) -> Result<(), AmqpError> {
        let Some(tag) = self.active.take() else {
            return Ok(());
        };
        self.channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await
            .map_err(|e| AmqpError::Operation {
                operation: format!("cancel the consumer of `{}`", self.queue),
                message: self.redactor.scrub(&e.to_string()),
            })
    }
}
