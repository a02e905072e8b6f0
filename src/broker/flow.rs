//! Flow control for message bodies in flight: a byte [`Budget`] shared by every consumer of
//! one worker, the [`Window`] that sets one queue's prefetch from it, and the [`plan`] that
//! turns a window into consumers. Pure: no I/O, so the policy is unit-tested here and
//! [`super::intake`] only applies what it decides.
//!
//! RabbitMQ bounds unacked messages by count (`basic.qos`), not by bytes (it ignores
//! `prefetch_size`). A prefetch of 256 is right for events of a few kB and ruinous for events
//! of 450 kB. So each queue's window starts small, like TCP's slow start, and grows to what
//! the budget holds for the bodies it has seen once [`INITIAL_WINDOW`] of them back the
//! estimate; it shrinks at once when a larger body comes in.
//!
//! A consumer's prefetch is fixed when it starts (a later `basic.qos` does not change it, and
//! quorum queues refuse the channel-wide form), so a window is made of *lanes*: consumers of
//! the same queue, each with its own prefetch. Growing adds a lane; shrinking cancels lanes,
//! whose messages already received still settle. A new lane only gets the slots that neither
//! the active lanes nor the cancelled ones still draining can fill, so the messages that can
//! be in flight at once never exceed what the budget holds at the current size estimate:
//! in-flight bytes overshoot the budget only by the difference between the estimate and
//! bodies larger than any seen before.
//!
//! A body counts from the moment it is received until the broker is told its fate (the ack
//! or nack, see [`super::settle`]): that is when the broker may send another in its place.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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
    peak: AtomicU64,
}

impl Budget {
    /// A budget of `limit` bytes, nothing in flight.
    pub fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            in_flight: AtomicU64::new(0),
            peak: AtomicU64::new(0),
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

    /// The most bytes of bodies ever held at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
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

    /// Counts `bytes` as held until the returned lease is dropped; `lane`, the unacked count
    /// of the consumer the message came from, is decremented then too.
    pub fn lease(self: &Arc<Self>, bytes: u64, lane: Option<Arc<AtomicU32>>) -> Lease {
        self.own.fetch_add(bytes, Ordering::Relaxed);
        let now = self.budget.in_flight.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.budget.peak.fetch_max(now, Ordering::Relaxed);
        Lease {
            account: self.clone(),
            bytes,
            lane,
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
    lane: Option<Arc<AtomicU32>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.account.own.fetch_sub(self.bytes, Ordering::Relaxed);
        self.account
            .budget
            .in_flight
            .fetch_sub(self.bytes, Ordering::Relaxed);
        if let Some(lane) = &self.lane {
            lane.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One queue's window: how many messages it may have unacked, set from the sizes it receives
/// and the room in its budget.
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

    /// The window wanted now.
    pub fn current(&self) -> u16 {
        self.current
    }

    /// The body size the window is computed with: the largest recent one, decaying by 1/16
    /// per message, so one large body shrinks the window at once and a run of small ones
    /// lets it grow back.
    pub fn estimate(&self) -> u64 {
        self.estimate
    }

    /// How many bodies of the estimated size fit in `room` bytes.
    pub fn fits(&self, room: u64) -> u32 {
        u32::try_from(room / self.estimate).unwrap_or(u32::MAX)
    }

    /// Records a received body of `size` bytes, with `room` bytes of budget for this queue.
    /// Returns the new window when it changed: smaller at once when the bodies it sees no
    /// longer fit; larger, to what fits, once [`INITIAL_WINDOW`] bodies since its last change
    /// back the estimate. (Growing one window at a time, as TCP does, cost a batching webhook
    /// one linger per doubling at every start, about 0.8 s.)
    pub fn on_message(&mut self, size: u64, room: u64) -> Option<u16> {
        self.estimate = size
            .max(self.estimate - self.estimate / 16)
            .max(MIN_ESTIMATE);
        self.received_since_change = self.received_since_change.saturating_add(1);
        let fits = u16::try_from(self.fits(room))
            .unwrap_or(u16::MAX)
            .clamp(1, self.max);
        let seen_enough = self.received_since_change >= u32::from(INITIAL_WINDOW);
        let grow = fits > self.current && seen_enough;
        if fits >= self.current && !grow {
            return None;
        }
        let next = fits;
        self.current = next;
        self.received_since_change = 0;
        Some(next)
    }
}

/// Most consumers (lanes) one queue is consumed with at once.
pub const MAX_LANES: usize = 16;

/// One active lane as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneState {
    /// Its prefetch.
    pub prefetch: u16,
}

/// What to do to the lanes of one queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// How many of the most recently started active lanes to cancel.
    pub cancel: usize,
    /// The prefetch of a lane to start, if any.
    pub start: Option<u16>,
}

/// Plans the lanes for a window of `target` messages: cancels the newest lanes while the
/// active prefetches add up to more than the target, then starts one lane with the slots
/// still missing, but only with as many as `fits` (the messages of the estimated size the
/// budget holds) leaves after the active prefetches and the `draining` messages of cancelled
/// lanes. With no active lane left, a lane of 1 is started whatever the room, so the queue
/// never stalls.
pub fn plan(target: u16, fits: u32, active: &[LaneState], draining: u32) -> Plan {
    let mut sum: u32 = active.iter().map(|l| u32::from(l.prefetch)).sum();
    let mut cancel = 0;
    for lane in active.iter().rev() {
        if sum <= u32::from(target) {
            break;
        }
        sum -= u32::from(lane.prefetch);
        cancel += 1;
    }
    let remaining = active.len() - cancel;
    // Messages of cancelled lanes that are still unacked count until they settle; the lanes
    // cancelled now hold at most their prefetch each.
    let cancelled_now: u32 = active[remaining..]
        .iter()
        .map(|l| u32::from(l.prefetch))
        .sum();
    let free = fits
        .saturating_sub(sum)
        .saturating_sub(draining)
        .saturating_sub(cancelled_now);
    let missing = u32::from(target).saturating_sub(sum);
    let slots = missing.min(free);
    let start = if remaining == 0 {
        Some(u16::try_from(slots).unwrap_or(u16::MAX).max(1))
    } else if slots > 0 && remaining < MAX_LANES {
        Some(u16::try_from(slots).unwrap_or(u16::MAX))
    } else {
        None
    };
    Plan { cancel, start }
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
        let lane = Arc::new(AtomicU32::new(1));
        let first = a.lease(3 * MIB, Some(lane.clone()));
        let _second = b.lease(MIB, None);
        assert_eq!(budget.in_flight(), 4 * MIB);
        assert_eq!(a.room(), 9 * MIB, "room excludes only what the others hold");
        assert_eq!(b.room(), 7 * MIB);
        drop(first);
        assert_eq!((budget.in_flight(), a.own()), (MIB, 0));
        assert_eq!(budget.peak(), 4 * MIB);
        assert_eq!(
            lane.load(Ordering::Relaxed),
            0,
            "the lane's unacked count follows"
        );
    }

    #[test]
    fn small_bodies_grow_the_window_to_the_prefetch_once_enough_are_seen() {
        let mut window = Window::new(256);
        assert_eq!(window.current(), INITIAL_WINDOW);
        let mut seen = vec![window.current()];
        for n in 1..=1000 {
            if let Some(next) = window.on_message(1_000, 24 * MIB) {
                assert_eq!(n, usize::from(INITIAL_WINDOW), "after the first window");
                seen.push(next);
            }
        }
        assert_eq!(seen, vec![8, 256]);
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

    fn lanes(prefetches: &[u16]) -> Vec<LaneState> {
        prefetches
            .iter()
            .map(|&prefetch| LaneState { prefetch })
            .collect()
    }

    #[test]
    fn the_first_lane_starts_with_the_window() {
        assert_eq!(
            plan(8, 100, &[], 0),
            Plan {
                cancel: 0,
                start: Some(8)
            }
        );
        // No room at all: still one message at a time, never a stall.
        assert_eq!(
            plan(8, 0, &[], 5),
            Plan {
                cancel: 0,
                start: Some(1)
            }
        );
    }

    #[test]
    fn growing_adds_a_lane_with_the_free_slots_only() {
        assert_eq!(
            plan(16, 100, &lanes(&[8]), 0),
            Plan {
                cancel: 0,
                start: Some(8)
            }
        );
        // The budget holds 9: one more slot.
        assert_eq!(
            plan(16, 9, &lanes(&[8]), 0),
            Plan {
                cancel: 0,
                start: Some(1)
            }
        );
        // Draining messages of cancelled lanes take slots until they settle.
        assert_eq!(plan(16, 12, &lanes(&[8]), 4), Plan::default());
        assert_eq!(
            plan(8, 100, &lanes(&[8]), 0),
            Plan::default(),
            "at the target"
        );
    }

    #[test]
    fn shrinking_cancels_the_newest_lanes_and_refills_within_the_room() {
        let active = lanes(&[8, 8, 16, 32, 64, 128]);
        // Window 55 of 450 kB bodies: keep 8+8+16 = 32, cancel the rest (224 draining).
        let p = plan(55, 55, &active, 0);
        assert_eq!(
            p,
            Plan {
                cancel: 3,
                start: None
            }
        );
        // Once they drained, the missing 23 slots come back as a lane.
        assert_eq!(
            plan(55, 55, &lanes(&[8, 8, 16]), 0),
            Plan {
                cancel: 0,
                start: Some(23)
            }
        );
        // Everything cancelled: one lane of 1.
        // Window 1: the lane of 8 is cancelled and replaced by a lane of 1.
        assert_eq!(
            plan(1, 1, &lanes(&[8]), 0),
            Plan {
                cancel: 1,
                start: Some(1)
            }
        );
    }

    #[test]
    fn a_started_lane_never_takes_more_than_fits() {
        // Whatever the sequence, a lane is only started (the lone lane of 1 aside) when the
        // active prefetches plus the messages still draining stay within `fits`.
        let mut active: Vec<LaneState> = Vec::new();
        let mut draining = 0u32;
        let steps = [
            (8u16, 100u32),
            (16, 100),
            (32, 100),
            (64, 40),
            (40, 40),
            (9, 9),
            (9, 9),
            (30, 30),
        ];
        for (target, fits) in steps {
            let p = plan(target, fits, &active, draining);
            for lane in active.drain(active.len() - p.cancel..) {
                draining += u32::from(lane.prefetch);
            }
            if let Some(prefetch) = p.start {
                active.push(LaneState { prefetch });
                let total = active.iter().map(|l| u32::from(l.prefetch)).sum::<u32>() + draining;
                assert!(
                    total <= fits || (active.len() == 1 && prefetch == 1),
                    "{target}/{fits}: {active:?} + {draining}"
                );
            }
            // Half of what drains settles before the next step.
            draining /= 2;
        }
    }
}
