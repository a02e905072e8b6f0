//! Consuming one queue with a window that follows the memory budget, and that can be paused.
//!
//! The window is made of lanes (see [`super::flow`]): consumers of the same queue on the same
//! channel, each with its own prefetch. Growing starts a lane, shrinking cancels the newest
//! ones; deliveries a cancelled lane already received still arrive (its stream drains, then
//! ends) and are acked on the same channel, so nothing is redelivered by a change. Pausing
//! cancels every lane the same way; resuming starts one.
//!
//! Each message's body is counted against the worker's [`Budget`] from the moment it is
//! received until its [`Inbound`] is dropped, after it is settled.

use super::flow::{Account, Budget, LaneState, Window, plan};
use super::inbound::Settler;
use super::{AmqpError, Inbound};
use crate::redact::Redactor;
use futures_util::StreamExt;
use futures_util::stream::{BoxStream, SelectAll};
use lapin::Channel;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// One consumer of the queue.
struct Lane {
    tag: String,
    prefetch: u16,
    /// Its messages received and not yet settled.
    unacked: Arc<AtomicU32>,
}

/// What a lane's stream yields: a delivery, or `None` once when the stream ends.
type LaneItem = (
    Arc<AtomicU32>,
    String,
    Option<Result<lapin::message::Delivery, lapin::Error>>,
);

/// A queue being consumed with an adaptive window. Dropping it does not cancel the
/// consumers; call [`Intake::stop`] (or close the channel).
pub struct Intake {
    channel: Channel,
    queue: String,
    settler: Settler,
    redactor: Redactor,
    window: Window,
    account: Arc<Account>,
    /// Lanes the broker sends new messages to, oldest first; empty while paused.
    active: Vec<Lane>,
    /// Unacked counters of cancelled lanes whose messages are not all settled.
    draining: Vec<Arc<AtomicU32>>,
    /// Every lane's stream, active or draining.
    streams: SelectAll<BoxStream<'static, LaneItem>>,
    /// Whether the window should be applied by [`Intake::adjust`].
    wants_adjust: bool,
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
            active: Vec::new(),
            draining: Vec::new(),
            streams: SelectAll::new(),
            wants_adjust: false,
        }
    }

    /// The queue consumed.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The window: how many messages the budget lets this queue have unacked now.
    pub fn prefetch(&self) -> u16 {
        self.window.current()
    }

    /// Whether any lane is active (not paused or stopped).
    pub fn is_consuming(&self) -> bool {
        !self.active.is_empty()
    }

    /// The next message, with its body counted against the budget. `None` when the broker
    /// ended an active lane (the queue was deleted, the channel closed); while paused, waits
    /// for ever once every lane has drained. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Inbound, AmqpError>> {
        loop {
            if self.streams.is_empty() {
                if self.is_consuming() {
                    return None;
                }
                std::future::pending::<()>().await;
            }
            let Some((unacked, tag, item)) = self.streams.next().await else {
                continue;
            };
            match item {
                Some(Ok(delivery)) => {
                    let size = delivery.data.len() as u64;
                    unacked.fetch_add(1, Ordering::Relaxed);
                    let lease = self.account.lease(size, Some(unacked));
                    self.window.on_message(size, self.account.room());
                    self.wants_adjust = true;
                    return Some(Ok(self.settler.inbound(delivery, Some(lease))));
                }
                Some(Err(e)) => {
                    return Some(Err(AmqpError::Operation {
                        operation: format!("consume queue `{}`", self.queue),
                        message: self.redactor.scrub(&e.to_string()),
                    }));
                }
                None if self.active.iter().any(|lane| lane.tag == tag) => return None,
                None => {}
            }
        }
    }

    /// Applies the window after [`Intake::next`] returned a message: cancels lanes over it,
    /// starts one with the slots the budget has free. Call it outside any `select!`.
    pub async fn adjust(&mut self) -> Result<(), AmqpError> {
        if !std::mem::take(&mut self.wants_adjust) || !self.is_consuming() {
            return Ok(());
        }
        // The steady state (every message, at full window): nothing to plan.
        let active: u32 = self.active.iter().map(|l| u32::from(l.prefetch)).sum();
        if active == u32::from(self.window.current()) && self.draining.is_empty() {
            return Ok(());
        }
        self.apply_window().await
    }

    /// Starts consuming with the current window. Does nothing if already consuming.
    pub async fn resume(&mut self) -> Result<(), AmqpError> {
        if self.is_consuming() {
            return Ok(());
        }
        self.apply_window().await
    }

    /// Stops the broker sending more; messages already received still arrive from
    /// [`Intake::next`] and can be settled.
    pub async fn pause(&mut self) -> Result<(), AmqpError> {
        while !self.active.is_empty() {
            self.cancel_newest().await?;
        }
        Ok(())
    }

    /// [`Intake::pause`], for good: the last step before the channel is closed. On a channel
    /// that is already gone there is nobody to tell, so it returns at once.
    pub async fn stop(&mut self) {
        if !self.channel.status().connected() {
            self.active.clear();
            return;
        }
        let _ = tokio::time::timeout(super::CLOSE_TIMEOUT, self.pause()).await;
    }

    async fn apply_window(&mut self) -> Result<(), AmqpError> {
        self.draining
            .retain(|unacked| unacked.load(Ordering::Relaxed) > 0);
        let draining: u32 = self
            .draining
            .iter()
            .map(|unacked| unacked.load(Ordering::Relaxed))
            .sum();
        let lanes: Vec<LaneState> = self
            .active
            .iter()
            .map(|lane| LaneState {
                prefetch: lane.prefetch,
            })
            .collect();
        let fits = self.window.fits(self.account.room());
        let steps = plan(self.window.current(), fits, &lanes, draining);
        for _ in 0..steps.cancel {
            self.cancel_newest().await?;
        }
        if let Some(prefetch) = steps.start {
            self.start_lane(prefetch).await?;
        }
        Ok(())
    }

    async fn start_lane(&mut self, prefetch: u16) -> Result<(), AmqpError> {
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
        let tag = consumer.tag().as_str().to_string();
        let unacked = Arc::new(AtomicU32::new(0));
        let (counter, name) = (unacked.clone(), tag.clone());
        let stream = consumer
            .map(Some)
            .chain(futures_util::stream::once(async { None }))
            .map(move |item| (counter.clone(), name.clone(), item));
        self.streams.push(stream.boxed());
        tracing::debug!(queue = %self.queue, prefetch, lanes = self.active.len() + 1, "consumer lane started");
        self.active.push(Lane {
            tag,
            prefetch,
            unacked,
        });
        Ok(())
    }

    async fn cancel_newest(&mut self) -> Result<(), AmqpError> {
        let Some(lane) = self.active.pop() else {
            return Ok(());
        };
        self.draining.push(lane.unacked);
        self.channel
            .basic_cancel(lane.tag.as_str().into(), BasicCancelOptions::default())
            .await
            .map_err(|e| AmqpError::Operation {
                operation: format!("cancel a consumer of `{}`", self.queue),
                message: self.redactor.scrub(&e.to_string()),
            })
    }
}
