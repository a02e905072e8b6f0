//! One channel's acks, coalesced: an ack with `multiple = true` over the settled prefix of
//! delivery tags instead of one frame per message.
//!
//! Delivery tags are numbered 1, 2, 3, … per channel by the broker, whichever consumer (or
//! `basic.get`) received them. Every delivery is registered with its channel's [`AckQueue`]
//! when it becomes an `Inbound`, before anything can settle it. The [`Ledger`] knows which
//! tags were received (all of them up to some tag, plus any that arrived out of order), which
//! of those are still open (not settled), and which asked to be acked and wait to be sent.
//! `basic.ack(t, multiple)` is sent only for a `t` below every open tag and at most the last
//! tag up to which every delivery was received: every message it covers is either in this
//! flush or settled on the wire before it. A delivery never registered (one dropped before it
//! became an `Inbound`) stops the prefix, so a multiple ack never covers a message that is not
//! safe: "acked only once safe" stays exact. What the ledger holds is bounded by what is in
//! flight on the channel; a slow message only means that the acks beyond it go one by one
//! until it settles.
//!
//! An [`AckQueue`] is a small task per channel. It waits up to [`LINGER`] after the first ack
//! it has not sent (or until [`FLUSH_AT`] are waiting), then sends one multiple ack for the
//! prefix and one ack each for the tags beyond an open one, so a message that takes long (a
//! slow endpoint) never holds back the acks of those after it. Frames go out in the order
//! they are decided, one after the other, so an ack or nack of one tag is always on the wire
//! before a multiple ack that covers it. Each caller waits until its own ack is written.

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

/// What a delivery or its settle tells the channel's task.
enum Request {
    /// A delivery was received (registered before anything can settle it).
    Received(u64),
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

    /// Registers the delivery `tag` as received (and not settled). Must come before its ack
    /// or nack; a tag never registered is never covered by a multiple ack.
    pub(super) fn received(&self, tag: u64) {
        let _ = self.requests.send(Request::Received(tag));
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

/// One channel's deliveries as far as acking them goes.
#[derive(Debug)]
pub(super) struct Ledger<T> {
    /// Every tag up to here was received.
    received: u64,
    /// Tags above `received + 1` received out of order.
    early: BTreeSet<u64>,
    /// Received and not settled: not asked to be acked, not nacked.
    open: BTreeSet<u64>,
    /// Asked to be acked; not sent yet.
    ready: BTreeMap<u64, T>,
}

impl<T> Default for Ledger<T> {
    fn default() -> Self {
        Ledger {
            received: 0,
            early: BTreeSet::new(),
            open: BTreeSet::new(),
            ready: BTreeMap::new(),
        }
    }
}

/// What a flush of the ledger sends.
#[derive(Debug, PartialEq)]
pub(super) struct Flush<T> {
    /// `basic.ack(tag, multiple = true)` and the waiters it answers, when there is a prefix.
    pub(super) multiple: Option<(u64, Vec<T>)>,
    /// One `basic.ack(tag)` each: ready tags above an open or never-received one.
    pub(super) single: Vec<(u64, T)>,
}

impl<T> Ledger<T> {
    /// Records that delivery `tag` was received and is open.
    pub(super) fn receive(&mut self, tag: u64) {
        if tag <= self.received {
            return;
        }
        self.open.insert(tag);
        if tag == self.received + 1 {
            self.received = tag;
            while self.early.remove(&(self.received + 1)) {
                self.received += 1;
            }
        } else {
            self.early.insert(tag);
        }
    }

    /// Records that `tag` asks to be acked.
    pub(super) fn ready(&mut self, tag: u64, waiter: T) {
        self.open.remove(&tag);
        self.ready.insert(tag, waiter);
    }

    /// Records that `tag` was settled on the wire on its own (a nack, written before any later
    /// flush's frames). A ready entry for it is removed and returned.
    pub(super) fn done(&mut self, tag: u64) -> Option<T> {
        self.open.remove(&tag);
        self.ready.remove(&tag)
    }

    /// Acks waiting to be sent.
    pub(super) fn waiting(&self) -> usize {
        self.ready.len()
    }

    /// Takes every ready tag: those below every open tag and received without a gap as one
    /// multiple ack, the rest one by one.
    pub(super) fn flush(&mut self) -> Flush<T> {
        let below_open = self.open.first().map_or(u64::MAX, |open| open - 1);
        let limit = self.received.min(below_open);
        let single: Vec<(u64, T)> = match limit.checked_add(1) {
            Some(above) => self.ready.split_off(&above).into_iter().collect(),
            None => Vec::new(),
        };
        let prefix = std::mem::take(&mut self.ready);
        let multiple = prefix
            .last_key_value()
            .map(|(tag, _)| *tag)
            .map(|tag| (tag, prefix.into_values().collect()));
        Flush { multiple, single }
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
        Request::Received(tag) => ledger.receive(tag),
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

    fn received(tags: impl IntoIterator<Item = u64>) -> Ledger<u64> {
        let mut ledger = Ledger::default();
        for tag in tags {
            ledger.receive(tag);
        }
        ledger
    }

    #[test]
    fn a_settled_prefix_is_one_multiple_ack() {
        let mut ledger = received(1..=3);
        for tag in [3, 1, 2] {
            ledger.ready(tag, tag);
        }
        assert_eq!(flushed(&mut ledger), (Some((3, vec![1, 2, 3])), vec![]));
        assert_eq!(ledger.waiting(), 0);
    }

    #[test]
    fn an_open_tag_is_never_covered_and_the_tags_beyond_it_go_one_by_one() {
        let mut ledger = received(1..=6);
        for tag in [1, 2, 4, 6] {
            ledger.ready(tag, tag);
        }
        assert_eq!(flushed(&mut ledger), (Some((2, vec![1, 2])), vec![4, 6]));
        ledger.ready(3, 3);
        assert_eq!(
            flushed(&mut ledger),
            (Some((3, vec![3])), vec![]),
            "5 is still open: 3 is covered, nothing above it"
        );
        ledger.ready(5, 5);
        assert_eq!(flushed(&mut ledger), (Some((5, vec![5])), vec![]));
    }

    #[test]
    fn a_tag_not_received_yet_stops_the_prefix() {
        // 1 and 3 arrived (out of order through two lanes); 2 is still on its way.
        let mut ledger = received([1, 3]);
        ledger.ready(1, 1);
        ledger.ready(3, 3);
        assert_eq!(flushed(&mut ledger), (Some((1, vec![1])), vec![3]));
        ledger.receive(2);
        ledger.ready(2, 2);
        assert_eq!(flushed(&mut ledger), (Some((2, vec![2])), vec![]));
        assert_eq!(ledger.received, 3);
    }

    #[test]
    fn a_nacked_tag_no_longer_holds_the_prefix() {
        let mut ledger = received(1..=3);
        assert_eq!(ledger.done(1), None);
        ledger.ready(3, 3);
        assert_eq!(flushed(&mut ledger), (None, vec![3]), "2 is open");
        ledger.done(2);
        ledger.receive(4);
        ledger.ready(4, 4);
        assert_eq!(flushed(&mut ledger), (Some((4, vec![4])), vec![]));
    }

    #[test]
    fn a_slow_message_costs_coalescing_only_until_it_settles_and_memory_stays_bounded() {
        let mut ledger = received([1]);
        for tag in 2..100_000 {
            ledger.receive(tag);
            ledger.ready(tag, tag);
            if tag % 64 == 0 {
                let (multiple, _) = flushed(&mut ledger);
                assert_eq!(multiple, None, "1 is open: nothing may cover it");
            }
        }
        flushed(&mut ledger);
        assert!(ledger.open.len() == 1 && ledger.early.is_empty() && ledger.ready.is_empty());
        ledger.ready(1, 1);
        ledger.receive(100_000);
        ledger.ready(100_000, 100_000);
        assert_eq!(
            flushed(&mut ledger),
            (Some((100_000, vec![1, 100_000])), vec![]),
            "coalescing again as soon as the slow one settled"
        );
    }

    #[test]
    fn a_nack_replaces_a_waiting_ack_of_the_same_tag() {
        let mut ledger = received([1]);
        ledger.ready(1, 10);
        assert_eq!(ledger.done(1), Some(10));
        assert_eq!(ledger.waiting(), 0);
        assert_eq!(flushed(&mut ledger), (None, vec![]));
    }
}
