//! Queue names and arguments of the durable retry path. Pure: the same config always yields
//! the same names, so any worker (or a restarted one) finds the same queues.
//!
//! ```text
//!                         ┌────────────────────────── TTL expires ──────────────────────────┐
//!                         ▼                                                                 │
//! <queue>.retry.<webhook>  ◄── x-dead-letter-routing-key ── <queue>.retry.<webhook>.wait-<ms>ms
//!   (consumed; one attempt)                                   (not consumed; x-message-ttl = <ms>)
//!         │ fails again: publish to the wait queue of the next delay ────────────────────────▲
//! ```
//!
//! Each webhook has a retry queue, consumed by the worker, and one wait queue per backoff
//! step (`initial_backoff`, doubled up to `max_backoff`). A wait queue holds messages for its
//! fixed TTL, then the broker dead-letters them through the default exchange into the retry
//! queue. One fixed TTL per queue means a message never waits behind one with a longer delay.

use crate::config::{DeliverySettings, QueueType};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use std::time::Duration;

/// At most this many wait queues per webhook.
const MAX_TIERS: usize = 16;

/// The retry queue of `webhook`, consumed by the worker.
pub fn retry_queue(input_queue: &str, webhook: &str) -> String {
    format!("{input_queue}.retry.{webhook}")
}

/// The wait queue of `webhook` that holds messages for `tier`.
pub fn wait_queue(input_queue: &str, webhook: &str, tier: Duration) -> String {
    format!("{input_queue}.retry.{webhook}.wait-{}ms", tier.as_millis())
}

/// The fixed delays of a webhook's wait queues: `initial_backoff`, doubling, up to and
/// including `max_backoff`.
pub fn tiers(settings: &DeliverySettings) -> Vec<Duration> {
    let mut out = Vec::new();
    let mut tier = settings.initial_backoff.max(Duration::from_millis(1));
    while tier < settings.max_backoff && out.len() + 1 < MAX_TIERS {
        out.push(tier);
        tier *= 2;
    }
    out.push(settings.max_backoff.max(settings.initial_backoff));
    out
}

/// The wait queue for a wanted `delay`: the shortest tier not below it (the longest tier when
/// the delay is longer than every tier), so a delivery never comes back before it is due.
pub fn wait_queue_for(
    input_queue: &str,
    webhook: &str,
    settings: &DeliverySettings,
    delay: Duration,
) -> String {
    wait_queue(input_queue, webhook, tier_for(settings, delay))
}

/// The tier a wanted `delay` waits in: the shortest not below it, or the longest.
pub fn tier_for(settings: &DeliverySettings, delay: Duration) -> Duration {
    let tiers = tiers(settings);
    tiers
        .iter()
        .find(|t| **t >= delay)
        .or(tiers.last())
        .copied()
        .unwrap_or(settings.max_backoff)
}

/// Arguments every queue gets: its type.
pub fn queue_arguments(queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from(queue_type.as_str())),
    );
    args
}

/// Arguments of a wait queue: a fixed TTL, then dead-lettering through the default exchange
/// into the webhook's retry queue.
pub fn wait_queue_arguments(
    queue_type: QueueType,
    tier: Duration,
    retry_queue: &str,
) -> FieldTable {
    let mut args = queue_arguments(queue_type);
    let ttl = i64::try_from(tier.as_millis()).unwrap_or(i64::MAX);
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from("")),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(LongString::from(retry_queue)),
    );
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(initial_ms: u64, max_ms: u64) -> DeliverySettings {
        DeliverySettings {
            initial_backoff: Duration::from_millis(initial_ms),
            max_backoff: Duration::from_millis(max_ms),
            ..DeliverySettings::default()
        }
    }

    #[test]
    fn tiers_double_up_to_the_cap() {
        let ms = |v: Vec<Duration>| v.iter().map(|d| d.as_millis()).collect::<Vec<_>>();
        assert_eq!(
            ms(tiers(&settings(500, 5000))),
            vec![500, 1000, 2000, 4000, 5000]
        );
        assert_eq!(ms(tiers(&settings(1000, 1000))), vec![1000]);
        assert_eq!(tiers(&settings(1, 3_600_000)).len(), MAX_TIERS);
    }

    #[test]
    fn a_delay_goes_to_the_shortest_tier_not_below_it() {
        let s = settings(500, 5000);
        let name = |ms| wait_queue_for("in", "hook", &s, Duration::from_millis(ms));
        assert_eq!(name(100), "in.retry.hook.wait-500ms");
        assert_eq!(name(1500), "in.retry.hook.wait-2000ms");
        assert_eq!(name(4000), "in.retry.hook.wait-4000ms");
        assert_eq!(name(60_000), "in.retry.hook.wait-5000ms");
        assert_eq!(retry_queue("in", "hook"), "in.retry.hook");
    }
}
