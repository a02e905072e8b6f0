//! One channel's acks, coalesced: an ack with `multiple = true` over the contiguous prefix of
//! settled delivery tags instead of one frame per message.
//!
//! Delivery tags are numbered 1, 2, 3, … per channel by the broker, whichever consumer (or
//! `basic.get`) received them. A [`Ledger`] remembers, per tag, whether its message asked for an
//! ack that has not been sent (`Ready`) or was settled on the wire already (`Done`: a nack, or
//! an ack of its own). `basic.ack(t, multiple)` is sent only when *every* tag from the last one
//! covered up to `t` is `Ready` or `Done`. A tag the ledger has never heard of (a message still
//! being delivered, or one settled elsewhere) breaks the prefix, so a multiple ack can never
//! cover a message that is not safe yet: "acked only once safe" stays exact.
//!
//! An [`AckQueue`] is a small task per channel. It waits up to [`LINGER`] after the first ack
//! it has not sent (or until [`FLUSH_AT`] are waiting), then sends one multiple ack for the
//! prefix and one ack each for the tags beyond a gap, so a message that takes long (a slow
//! endpoint) never holds back the acks of those after it. Frames go out in the order they are
//! decided, one after the other, so an ack or nack of one tag is always on the wire before a
//! multiple ack that covers it. Each caller waits until its own ack is written.

use super::AmqpError;
use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long the first unsent ack may wait for others to join it.
pub const LINGER: Duration = Duration::from_millis(1);

/// Acks waiting that make the queue send at once.
pub const FLUSH_AT: usize = 64;

/// What one settle asks of the channel.
enum Request {
    Ack(u64, Acker, Reply),
    Requeue(u64, Acker, Reply),
}

/// Where the result of one ack or nack goes.
type Reply = oneshot::Sender<Result<(), AmqpError>>;

/// The sending side of one channel's coalescing ack task. Cloned into every message's settle
/// handle; the task ends (after sending what is left) when the last clone is dropped.
#[derive(Clone)]
pub(super) struct AckQueue {
    requests: mpsc::UnboundedSender<Request>,
}

impl AckQueue {
    /// Starts the task for one channel.
    pub(super) fn spawn() -> AckQueue {
        let (requests, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(receiver));
        AckQueue { requests }
    }

    /// Acks the delivery `tag` (whose own handle is `acker`); returns once the frame that acks
    /// it is written. `ChannelLost` when the channel went first.
    pub(super) async fn ack(&self, tag: u64, acker: &Acker) -> Result<(), AmqpError> {
        let (reply, result) = oneshot::channel();
        self.send(Request::Ack(tag, acker.clone(), reply), result, "ack")
            .await
    }

    /// Nacks the delivery `tag` with requeue, in order with the acks of this channel.
    pub(super) async fn requeue(&self, tag: u64, acker: &Acker) -> Result<(), AmqpError> {
        let (reply, result) = oneshot::channel();
        self.send(Request::Requeue(tag, acker.clone(), reply), result, "nack")
            .await
    }

    async fn send(
        &self,
        request: Request,
        result: oneshot::Receiver<Result<(), AmqpError>>,
        what: &'static str,
    ) -> Result<(), AmqpError> {
        if self.requests.send(request).is_err() {
            return Err(AmqpError::ChannelLost(what));
        }
        result.await.unwrap_or(Err(AmqpError::ChannelLost(what)))
    }
}

/// Tags settled on their own beyond a gap that make the ledger give up the prefix: a tag it
/// never hears of (a delivery dropped unsettled) would otherwise keep them for ever. From then
/// on every ack of the channel is sent on its own.
const MAX_DONE: usize = 1 << 17;

/// The tags of one channel that asked for an ack, and those settled on their own, above the
/// highest tag a multiple ack has covered.
#[derive(Debug)]
pub(super) struct Ledger<T> {
    /// Every tag up to here is settled on the wire.
    floor: u64,
    /// Asked to be acked; not sent yet.
    ready: BTreeMap<u64, T>,
    /// Above the floor and settled on the wire already (a nack, or an ack of its own).
    done: BTreeSet<u64>,
    /// Whether multiple acks are still sent (see [`MAX_DONE`]).
    coalescing: bool,
}

impl<T> Default for Ledger<T> {
    fn default() -> Self {
        Ledger {
            floor: 0,
            ready: BTreeMap::new(),
            done: BTreeSet::new(),
            coalescing: true,
        }
    }
}

/// What a flush of the ledger sends.
#[derive(Debug, PartialEq)]
pub(super) struct Flush<T> {
    /// `basic.ack(tag, multiple = true)` and the waiters it answers, when the prefix has one.
    pub(super) multiple: Option<(u64, Vec<T>)>,
    /// One `basic.ack(tag)` each: ready tags beyond a gap.
    pub(super) single: Vec<(u64, T)>,
}

impl<T> Ledger<T> {
    /// Records that `tag` asks to be acked.
    pub(super) fn ready(&mut self, tag: u64, waiter: T) {
        let settled = self.coalescing && (tag <= self.floor || self.done.contains(&tag));
        if !settled {
            self.ready.insert(tag, waiter);
        }
    }

    /// Records that `tag` was settled on the wire on its own (its frame is written before any
    /// later flush's). A ready entry for it is removed and returned.
    pub(super) fn done(&mut self, tag: u64) -> Option<T> {
        if self.coalescing && tag > self.floor {
            self.done.insert(tag);
        }
        self.ready.remove(&tag)
    }

    /// Acks waiting to be sent.
    pub(super) fn waiting(&self) -> usize {
        self.ready.len()
    }

    /// Takes every ready tag: the contiguous prefix above the floor as one multiple ack (when it
    /// holds a ready tag), the rest one by one; the floor moves to the prefix's end.
    pub(super) fn flush(&mut self) -> Flush<T> {
        let mut prefix = Vec::new();
        let mut highest_ready = None;
        if self.coalescing {
            let mut end = self.floor;
            loop {
                let next = end + 1;
                if let Some(waiter) = self.ready.remove(&next) {
                    prefix.push(waiter);
                    highest_ready = Some(next);
                } else if !self.done.remove(&next) {
                    break;
                }
                end = next;
            }
            self.floor = end;
        }
        let single: Vec<(u64, T)> = std::mem::take(&mut self.ready).into_iter().collect();
        if self.coalescing {
            self.done.extend(single.iter().map(|(tag, _)| *tag));
            if self.done.len() > MAX_DONE {
                self.done.clear();
                self.coalescing = false;
            }
        }
        Flush {
            multiple: highest_ready.map(|tag| (tag, prefix)),
            single,
        }
    }
}

/// A ready ack: the handle that can send it, and who waits for it.
struct Waiting {
    acker: Acker,
    reply: Reply,
}

async fn run(mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut ledger = Ledger::<Waiting>::default();
    let mut open = true;
    while open || ledger.waiting() > 0 {
        if ledger.waiting() == 0 {
            match requests.recv().await {
                Some(request) => take(&mut ledger, request).await,
                None => break,
            }
        }
        let deadline = tokio::time::Instant::now() + LINGER;
        while open && ledger.waiting() < FLUSH_AT {
            tokio::select! {
                request = requests.recv() => match request {
                    Some(request) => take(&mut ledger, request).await,
                    None => open = false,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        send(ledger.flush()).await;
    }
}

/// Puts one request in the ledger; a nack is sent at once.
async fn take(ledger: &mut Ledger<Waiting>, request: Request) {
    match request {
        Request::Ack(tag, acker, reply) => ledger.ready(tag, Waiting { acker, reply }),
        Request::Requeue(tag, acker, reply) => {
            if let Some(waiting) = ledger.done(tag) {
                let _ = waiting.reply.send(Err(AmqpError::Operation {
                    operation: "nack".into(),
                    message: "the message was already asked to be acked".into(),
                }));
            }
            let options = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            let result = acker.nack(options).await;
            let _ = reply.send(answer(result, "nack"));
        }
    }
}

async fn send(flush: Flush<Waiting>) {
    if let Some((_, mut waiting)) = flush.multiple
        && let Some(last) = waiting.pop()
    {
        let result = last.acker.ack(BasicAckOptions { multiple: true }).await;
        for other in waiting {
            let _ = other.reply.send(answer_ref(&result, "ack"));
        }
        let _ = last.reply.send(answer(result, "ack"));
    }
    for (_, waiting) in flush.single {
        let result = waiting.acker.ack(BasicAckOptions::default()).await;
        let _ = waiting.reply.send(answer(result, "ack"));
    }
}

fn answer(result: lapin::Result<bool>, what: &'static str) -> Result<(), AmqpError> {
    answer_ref(&result, what)
}

fn answer_ref(result: &lapin::Result<bool>, what: &'static str) -> Result<(), AmqpError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(AmqpError::ChannelLost(what)),
        Err(e) => Err(AmqpError::Operation {
            operation: what.into(),
            message: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flushed(ledger: &mut Ledger<u64>) -> (Option<(u64, Vec<u64>)>, Vec<u64>) {
        let flush = ledger.flush();
        (
            flush.multiple,
            flush.single.into_iter().map(|(tag, _)| tag).collect(),
        )
    }

    #[test]
    fn a_contiguous_prefix_is_one_multiple_ack() {
        let mut ledger = Ledger::default();
        for tag in [3, 1, 2] {
            ledger.ready(tag, tag);
        }
        assert_eq!(flushed(&mut ledger), (Some((3, vec![1, 2, 3])), vec![]));
        assert_eq!(ledger.floor, 3);
        assert_eq!(ledger.waiting(), 0);
    }

    #[test]
    fn a_gap_is_never_covered_and_the_tags_beyond_it_go_one_by_one() {
        let mut ledger = Ledger::default();
        for tag in [1, 2, 4, 6] {
            ledger.ready(tag, tag);
        }
        assert_eq!(flushed(&mut ledger), (Some((2, vec![1, 2])), vec![4, 6]));
        // 3 (and 5) are still out: 4 and 6 are sent, so the floor waits at 2.
        assert_eq!(ledger.floor, 2);
        ledger.ready(3, 3);
        assert_eq!(
            flushed(&mut ledger),
            (Some((3, vec![3])), vec![]),
            "the prefix stops before 5, which is unknown; 4 was acked on its own"
        );
        assert_eq!(ledger.floor, 4);
        ledger.ready(5, 5);
        assert_eq!(flushed(&mut ledger), (Some((5, vec![5])), vec![]));
        assert_eq!(ledger.floor, 6);
    }

    #[test]
    fn a_prefix_of_nacked_tags_alone_sends_nothing_but_moves_the_floor() {
        let mut ledger: Ledger<u64> = Ledger::default();
        assert_eq!(ledger.done(1), None);
        assert_eq!(ledger.done(2), None);
        assert_eq!(flushed(&mut ledger), (None, vec![]));
        assert_eq!(ledger.floor, 2);
        ledger.ready(4, 4);
        ledger.done(3);
        assert_eq!(flushed(&mut ledger), (Some((4, vec![4])), vec![]));
    }

    #[test]
    fn tags_at_or_below_the_floor_are_ignored() {
        let mut ledger = Ledger::default();
        ledger.ready(1, 1);
        ledger.flush();
        ledger.ready(1, 1);
        assert_eq!(ledger.waiting(), 0);
        assert_eq!(ledger.done(1), None);
    }

    #[test]
    fn a_tag_never_heard_of_ends_coalescing_instead_of_growing_the_ledger() {
        let mut ledger = Ledger::default();
        // Tag 1 is never settled through the ledger.
        for tag in 2..(MAX_DONE as u64 + 3) {
            ledger.ready(tag, tag);
        }
        let (multiple, single) = flushed(&mut ledger);
        assert_eq!(multiple, None, "1 is unknown: nothing may cover it");
        assert_eq!(single.len(), MAX_DONE + 1);
        assert!(!ledger.coalescing);
        assert!(ledger.done.is_empty());
        ledger.ready(1, 1);
        assert_eq!(
            flushed(&mut ledger),
            (None, vec![1]),
            "one by one from now on"
        );
    }

    #[test]
    fn a_nack_replaces_a_waiting_ack_of_the_same_tag() {
        let mut ledger = Ledger::default();
        ledger.ready(1, 10);
        assert_eq!(ledger.done(1), Some(10));
        assert_eq!(ledger.waiting(), 0);
        assert_eq!(flushed(&mut ledger), (None, vec![]));
    }
}
