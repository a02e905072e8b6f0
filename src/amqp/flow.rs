//! Flow control for message bodies in flight: a byte [`Budget`] shared by every consumer of
//! one worker, and the [`Window`] that sets one consumer's prefetch from it. Pure: no I/O,
//! so the policy is unit-tested here and [`super::intake`] only applies what it decides.
//!
//! RabbitMQ bounds unacked messages by count (`basic.qos`), not by bytes (it ignores
//! `prefetch_size`). A prefetch of 256 is right for events of a few kB and ruinous for events
//! of 450 kB. So each consumer starts with a small window and grows it like TCP's slow start
//! (doubling once per full window received), as long as the window's worth of bodies of the
//! size it has recently seen fits in what the budget has left; it shrinks at once when a
//! larger body comes in. In flight stays near the budget whatever the sizes: it overshoots by
//! at most the messages the broker had already sent when the sizes jumped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Smallest body size a window is computed with: below this, per-message overhead (the
/// parsed event, rendered bodies, tasks) dominates, and the configured prefetch governs.
pub const MIN_ESTIMATE: u64 = 4 * 1024;

/// The window a consumer starts with (unless its configured prefetch is lower).
pub const INITIAL_WINDOW: u16 = 8;

/// Bytes of message bodies in flight for one worker, against a limit.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    in_flight: AtomicU64,
}

impl Budget {
    /// A budget of `limit` bytes, nothing in flight.
    pub fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            in_flight: AtomicU64::new(0),
        })
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes of bodies held right now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// One consumer's share of a [`Budget`]: what it holds, counted both here and in the budget.
#[derive(Debug)]
pub struct Account {
    budget: Arc<Budget>,
    own: AtomicU64,
}

impl Account {
    /// A new account against `budget`.
    pub fn new(budget: Arc<Budget>) -> Arc<Account> {
        Arc::new(Account {
            budget,
            own: AtomicU64::new(0),
        })
    }

    /// Counts `bytes` as held until the returned lease is dropped.
    pub fn lease(self: &Arc<Self>, bytes: u64) -> Lease {
        self.own.fetch_add(bytes, Ordering::Relaxed);
        self.budget.in_flight.fetch_add(bytes, Ordering::Relaxed);
        Lease {
            account: self.clone(),
            bytes,
        }
    }

    /// Bytes this consumer holds.
    pub fn own(&self) -> u64 {
        self.own.load(Ordering::Relaxed)
    }

    /// What the budget has left for this consumer: the limit less what the others hold.
    pub fn room(&self) -> u64 {
        let others = self.budget.in_flight().saturating_sub(self.own());
        self.budget.limit.saturating_sub(others)
    }
}

/// Bytes of one body in flight; released when dropped (with the message, once settled).
#[derive(Debug)]
pub struct Lease {
    account: Arc<Account>,
    bytes: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.account.own.fetch_sub(self.bytes, Ordering::Relaxed);
        self.account
            .budget
            .in_flight
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// One consumer's prefetch, set from the sizes it receives and the room in its budget.
#[derive(Debug, Clone)]
pub struct Window {
    max: u16,
    current: u16,
    estimate: u64,
    received_since_change: u32,
}

impl Window {
    /// A window that never exceeds `max` (the configured prefetch) and starts at
    /// [`INITIAL_WINDOW`] or `max`, whichever is lower.
    pub fn new(max: u16) -> Window {
        let max = max.max(1);
        Window {
            max,
            current: INITIAL_WINDOW.min(max),
            estimate: MIN_ESTIMATE,
            received_since_change: 0,
        }
    }

    /// The prefetch to consume with now.
    pub fn current(&self) -> u16 {
        self.current
    }

    /// The body size the window is computed with: the largest recent one, decaying by 1/16
    /// per message, so one large body shrinks the window at once and a run of small ones
    /// lets it grow back.
    pub fn estimate(&self) -> u64 {
        self.estimate
    }

    /// Records a received body of `size` bytes, with `room` bytes of budget for this
    /// consumer. Returns the new prefetch when it should change.
    pub fn on_message(&mut self, size: u64, room: u64) -> Option<u16> {
        self.estimate = size
            .max(self.estimate - self.estimate / 16)
            .max(MIN_ESTIMATE);
        self.received_since_change = self.received_since_change.saturating_add(1);
        let fits = u16::try_from(room / self.estimate)
            .unwrap_or(u16::MAX)
            .clamp(1, self.max);
        let next = if fits < self.current {
            fits
        } else if fits > self.current && self.received_since_change >= u32::from(self.current) {
            fits.min(self.current.saturating_mul(2))
        } else {
            return None;
        };
        self.current = next;
        self.received_since_change = 0;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn leases_count_in_the_budget_until_dropped() {
        let budget = Budget::new(10 * MIB);
        let a = Account::new(budget.clone());
        let b = Account::new(budget.clone());
        let first = a.lease(3 * MIB);
        let _second = b.lease(MIB);
        assert_eq!(budget.in_flight(), 4 * MIB);
        assert_eq!(a.room(), 9 * MIB, "room excludes only what the others hold");
        assert_eq!(b.room(), 7 * MIB);
        drop(first);
        assert_eq!((budget.in_flight(), a.own()), (MIB, 0));
    }

    #[test]
    fn small_bodies_grow_the_window_by_doubling_to_the_prefetch() {
        let mut window = Window::new(256);
        assert_eq!(window.current(), INITIAL_WINDOW);
        let mut seen = vec![window.current()];
        for _ in 0..1000 {
            if let Some(next) = window.on_message(1_000, 24 * MIB) {
                seen.push(next);
            }
        }
        assert_eq!(seen, vec![8, 16, 32, 64, 128, 256]);
    }

    #[test]
    fn large_bodies_shrink_the_window_at_once_to_what_fits() {
        let mut window = Window::new(256);
        for _ in 0..1000 {
            window.on_message(1_000, 24 * MIB);
        }
        assert_eq!(window.current(), 256);
        // One 450 kB body: 24 MiB holds 55 of them.
        assert_eq!(window.on_message(450_000, 24 * MIB), Some(55));
        let mut in_flight_bound = u64::from(window.current()) * 450_000;
        for _ in 0..300 {
            window.on_message(450_000, 24 * MIB);
            in_flight_bound = in_flight_bound.max(u64::from(window.current()) * 450_000);
        }
        assert!(in_flight_bound <= 24 * MIB, "{in_flight_bound}");
        // Less room (other consumers hold bytes): smaller still, never below 1.
        assert_eq!(window.on_message(450_000, 2 * MIB), Some(4));
        assert_eq!(window.on_message(30 * MIB, 24 * MIB), Some(1));
    }

    #[test]
    fn the_window_grows_back_after_large_bodies_stop() {
        let mut window = Window::new(256);
        window.on_message(5 * MIB, 24 * MIB);
        assert_eq!(window.current(), 4);
        for _ in 0..5_000 {
            window.on_message(1_000, 24 * MIB);
        }
        assert_eq!(window.current(), 256);
    }

    #[test]
    fn the_window_never_exceeds_the_configured_prefetch() {
        let mut window = Window::new(3);
        assert_eq!(window.current(), 3);
        for _ in 0..100 {
            assert_eq!(window.on_message(10, 24 * MIB), None);
        }
        assert_eq!(Window::new(0).current(), 1);
    }
}
