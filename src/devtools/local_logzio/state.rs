//! The state the handle shares with the accept loop and every connection.

use super::{Received, Scripted};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// What the listener has recorded, and the answers still scripted.
#[derive(Default)]
pub(super) struct Record {
    pub(super) requests: Vec<Received>,
    pub(super) accepted: Vec<Value>,
    pub(super) scripted: VecDeque<Scripted>,
}

/// State shared by the handle and every connection.
pub(super) struct Shared {
    /// The token a request must carry.
    pub(super) token: String,
    record: Mutex<Record>,
    /// Bumped after every recorded request, so waiters wake without polling.
    pub(super) recorded: watch::Sender<u64>,
    /// While `true`, answers are withheld.
    pub(super) hang: watch::Sender<bool>,
    /// Added before every answer.
    delay: Mutex<Duration>,
    /// TCP connections accepted so far.
    pub(super) connections: AtomicU64,
}

impl Shared {
    /// Nothing recorded or scripted yet, no hang, no delay.
    pub(super) fn new(token: &str) -> Self {
        Shared {
            token: token.to_owned(),
            record: Mutex::new(Record::default()),
            recorded: watch::Sender::new(0),
            hang: watch::Sender::new(false),
            delay: Mutex::new(Duration::ZERO),
            connections: AtomicU64::new(0),
        }
    }

    /// The record, locked.
    pub(super) fn record(&self) -> MutexGuard<'_, Record> {
        // A panicking test thread must not turn every later call into a panic.
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a request and the lines it got accepted, and wakes every waiter.
    pub(super) fn keep(&self, received: Received) {
        {
            let mut record = self.record();
            record
                .accepted
                .extend(received.accepted_lines.iter().cloned());
            record.requests.push(received);
        }
        self.recorded.send_modify(|count| *count += 1);
    }

    /// The delay before every answer.
    pub(super) fn delay(&self) -> Duration {
        *self.delay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap_or_else(PoisonError::into_inner) = delay;
    }
}
