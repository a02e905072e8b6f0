//! Queue names and arguments of every queue the worker declares. Pure: the same config always
//! yields the same names and arguments, so any worker (or a restarted one) finds the same
//! queues and redeclares them without a conflict.
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
//!
//! # What the broker moves, and how safely
//! The worker itself moves a message between queues only by publishing with confirms and then
//! acking (dead letters, parks): that is at least once whatever the queue type. Two moves are
//! the broker's own, through dead-lettering:
//! - the **TTL hop** from a wait queue back to its retry queue;
//! - a message the broker gives up on in the **input or a retry queue** (rejected without
//!   requeue by an operator or another client, expired or dropped by a policy's TTL or length
//!   limit, or over a quorum queue's delivery limit) goes to the dead-letter queue: both have
//!   `x-dead-letter-exchange = ""` and `x-dead-letter-routing-key = <dead-letter queue>`, so
//!   such a message lands there instead of vanishing. It carries the broker's `x-death` and
//!   `x-first-death-reason` headers, not the worker's `x-relay-reason`.
//!
//! With **quorum** queues those moves are at least once: the input, retry and wait queues
//! have `x-dead-letter-strategy = at-least-once`, which RabbitMQ honours only together with
//! `x-overflow = reject-publish` (it falls back to at-most-once with the default `drop-head`,
//! even without a length limit). The source queue keeps a dead-lettered message until every
//! target queue has confirmed it, so a leader change or a missing target delays it but does
//! not lose it; it may arrive twice (the `Idempotency-Key` covers the repeat). With no length
//! limit set, `reject-publish` changes nothing else; under a length limit set by a policy a
//! publish is refused (nacked) instead of the oldest message being dropped.
//!
//! The quorum input and retry queues also get `x-delivery-limit = amqp.redelivery_limit + 1`
//! ([`broker_delivery_limit`]). The broker hands a message out with `x-delivery-count` 0, 1, …
//! up to the limit and dead-letters it when it comes back once more, so the worker, which
//! dead-letters a message whose count exceeds `redelivery_limit` (reason
//! `redelivery_limit`), always sees it first; the broker's limit is only the backstop for a
//! worker that cannot even do that. It also replaces RabbitMQ 4.x's default limit of 20,
//! which would otherwise fire first and, without a dead-letter exchange, drop the message.
//! The dead-letter queue has no dead-letter exchange of its own, so its limit is
//! [`DEAD_LETTER_QUEUE_DELIVERY_LIMIT`]: in effect none. (`-1`, which means "no limit" to 4.x,
//! means "dead-letter at the first return" to 3.x, so it is not used.) Without it, every
//! `dlq list` (which returns what it read) would count towards 4.x's default limit of 20 and
//! the 21st would drop the dead letters.
//!
//! With **classic** queues the broker's dead-lettering is at most once: it removes the
//! message from the source queue and republishes it without confirms. A message whose target
//! queue is missing (a retry queue deleted by hand while its wait queues still hold messages,
//! a deleted dead-letter queue) is dropped, and a node that stops in the middle of the move
//! can lose it. A classic queue lives on one node: durable queues and persistent messages
//! survive a restart of that node, not the loss of its disk, and the queue is unavailable
//! while the node is down. Classic queues count no deliveries, so neither the worker's
//! `redelivery_limit` nor a broker delivery limit applies. Use quorum queues where a parked
//! delivery must survive the loss of a node.
//!
//! # Changing arguments
//! RabbitMQ cannot change the arguments of an existing queue: redeclaring it with other
//! arguments fails with `PRECONDITION_FAILED - inequivalent arg`. That happens on upgrading
//! from a version that declared fewer arguments, on switching `amqp.queue_type`, and on
//! changing `amqp.redelivery_limit` with quorum queues. [`InequivalentQueue`] turns the
//! broker's answer into one message naming the queue, the argument and what to do.

use crate::config::{AmqpSettings, DeliverySettings, QueueType, Webhook};
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

/// What queue arguments depend on: three settings of `[amqp]`.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings<'a> {
    /// The type of every queue.
    pub queue_type: QueueType,
    /// `amqp.redelivery_limit`; the quorum input and retry queues' delivery limit is one more.
    pub redelivery_limit: u32,
    /// Where the input and retry queues dead-letter to, through the default exchange.
    pub dead_letter_queue: &'a str,
}

impl<'a> From<&'a AmqpSettings> for QueueSettings<'a> {
    fn from(settings: &'a AmqpSettings) -> Self {
        QueueSettings {
            queue_type: settings.queue_type,
            redelivery_limit: settings.redelivery_limit,
            dead_letter_queue: &settings.dead_letter_queue,
        }
    }
}

/// The dead-letter queue's `x-delivery-limit` with quorum queues: `i32::MAX`, in effect no
/// limit on every RabbitMQ version (4.x's default of 20 would drop dead letters that `dlq`
/// commands have read and returned 20 times).
pub const DEAD_LETTER_QUEUE_DELIVERY_LIMIT: i64 = i32::MAX as i64;

/// The broker's `x-delivery-limit` for the quorum input and retry queues:
/// `redelivery_limit + 1`, so the worker's own check (count > `redelivery_limit`) fires on the
/// last delivery the broker still makes.
pub fn broker_delivery_limit(redelivery_limit: u32) -> i64 {
    i64::from(redelivery_limit) + 1
}

/// Arguments every queue gets: its type.
pub fn queue_arguments(queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        long_string(queue_type.as_str()),
    );
    args
}

/// Arguments of the input queue: its type, dead-lettering into the dead-letter queue and,
/// with quorum queues, at-least-once dead-lettering and the broker's delivery limit.
pub fn input_queue_arguments(settings: QueueSettings<'_>) -> FieldTable {
    consumed_queue_arguments(settings)
}

/// Arguments of a webhook's retry queue: the same as the input queue's.
pub fn retry_queue_arguments(settings: QueueSettings<'_>) -> FieldTable {
    consumed_queue_arguments(settings)
}

/// Arguments of the dead-letter queue: its type and, with quorum queues, a delivery limit
/// that is in effect none ([`DEAD_LETTER_QUEUE_DELIVERY_LIMIT`]).
pub fn dead_letter_queue_arguments(settings: QueueSettings<'_>) -> FieldTable {
    let mut args = queue_arguments(settings.queue_type);
    if settings.queue_type == QueueType::Quorum {
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DEAD_LETTER_QUEUE_DELIVERY_LIMIT),
        );
    }
    args
}

/// Arguments of a wait queue: a fixed TTL, then dead-lettering through the default exchange
/// into the webhook's retry queue (at least once with quorum queues).
pub fn wait_queue_arguments(
    settings: QueueSettings<'_>,
    tier: Duration,
    retry_queue: &str,
) -> FieldTable {
    let mut args = queue_arguments(settings.queue_type);
    let ttl = i64::try_from(tier.as_millis()).unwrap_or(i64::MAX);
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
    dead_letter_into(&mut args, settings.queue_type, retry_queue);
    args
}

/// Every queue of `webhook`'s retry path with its arguments: the retry queue, then one wait
/// queue per tier, shortest first.
pub fn retry_path(
    input_queue: &str,
    webhook: &Webhook,
    settings: QueueSettings<'_>,
) -> Vec<(String, FieldTable)> {
    let retry = retry_queue(input_queue, &webhook.name);
    let mut queues = vec![(retry.clone(), retry_queue_arguments(settings))];
    for tier in tiers(&webhook.delivery) {
        queues.push((
            wait_queue(input_queue, &webhook.name, tier),
            wait_queue_arguments(settings, tier, &retry),
        ));
    }
    queues
}

fn consumed_queue_arguments(settings: QueueSettings<'_>) -> FieldTable {
    let mut args = queue_arguments(settings.queue_type);
    dead_letter_into(&mut args, settings.queue_type, settings.dead_letter_queue);
    if settings.queue_type == QueueType::Quorum {
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(broker_delivery_limit(settings.redelivery_limit)),
        );
    }
    args
}

/// Dead-lettering through the default exchange into `target`; at least once for quorum
/// queues, which needs `reject-publish` overflow.
fn dead_letter_into(args: &mut FieldTable, queue_type: QueueType, target: &str) {
    args.insert("x-dead-letter-exchange".into(), long_string(""));
    args.insert("x-dead-letter-routing-key".into(), long_string(target));
    if queue_type == QueueType::Quorum {
        args.insert(
            "x-dead-letter-strategy".into(),
            long_string("at-least-once"),
        );
        args.insert("x-overflow".into(), long_string("reject-publish"));
    }
}

fn long_string(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text))
}

/// A queue that exists with other arguments than the ones this version declares (the broker
/// answered `PRECONDITION_FAILED - inequivalent arg`). Its message names the queue, the
/// argument, both values and what to do; it never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "queue `{queue}` already exists with other arguments: `{argument}` is {current} on the broker, \
     this version declares {declared} (the first difference the broker found). RabbitMQ cannot change the arguments of an existing queue, \
     so it must be recreated: stop every worker, move its messages aside (e.g. with a shovel to a \
     temporary queue), delete the queue, start one worker to declare it anew, then move the \
     messages back (README: \"Upgrading the queues\")"
)]
pub struct InequivalentQueue {
    /// The queue's name.
    pub queue: String,
    /// The argument (or property, e.g. `durable`) whose value differs.
    pub argument: String,
    /// Its value on the broker, as the broker printed it (`none` when not set).
    pub current: String,
    /// The value this version declared (`none` when it sets none).
    pub declared: String,
}

impl InequivalentQueue {
    /// Recognises the broker's `PRECONDITION_FAILED - inequivalent arg` answer to declaring
    /// `queue`; `None` for any other error.
    pub fn from_error(queue: &str, error: &lapin::Error) -> Option<Self> {
        let lapin::ErrorKind::ProtocolError(amqp) = error.kind() else {
            return None;
        };
        if !matches!(
            amqp.kind(),
            lapin::protocol::AMQPErrorKind::Soft(
                lapin::protocol::AMQPSoftError::PRECONDITIONFAILED
            )
        ) {
            return None;
        }
        Self::from_message(queue, amqp.get_message().as_str())
    }

    /// Parses the broker's text, e.g. `PRECONDITION_FAILED - inequivalent arg
    /// 'x-dead-letter-exchange' for queue 'q' in vhost '/': received the value '' of type
    /// 'longstr' but current is none`.
    fn from_message(queue: &str, message: &str) -> Option<Self> {
        let rest = &message[message.find("inequivalent arg '")? + "inequivalent arg '".len()..];
        let (argument, rest) = rest.split_once('\'')?;
        let (declared, current) = match rest.split_once(": received ") {
            Some((_, values)) => match values.split_once(" but current is ") {
                Some((declared, current)) => (broker_value(declared), broker_value(current)),
                None => ("?".to_owned(), "?".to_owned()),
            },
            None => ("?".to_owned(), "?".to_owned()),
        };
        Some(InequivalentQueue {
            queue: queue.to_owned(),
            argument: argument.to_owned(),
            current,
            declared,
        })
    }
}

/// `the value '' of type 'longstr'` → `''`; `'6'` and `none` stay as they are.
fn broker_value(text: &str) -> String {
    let text = text.trim();
    let text = text.strip_prefix("the value ").unwrap_or(text);
    match text.rfind(" of type '") {
        Some(i) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(args: &FieldTable) -> Vec<(String, String)> {
        args.inner()
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    AMQPValue::LongString(s) => format!("{:?}", s.to_string()),
                    AMQPValue::LongLongInt(n) => n.to_string(),
                    other => format!("{other:?}"),
                };
                (k.to_string(), value)
            })
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    }

    fn queue_settings(queue_type: QueueType) -> QueueSettings<'static> {
        QueueSettings {
            queue_type,
            redelivery_limit: 20,
            dead_letter_queue: "in.dead-letter",
        }
    }

    #[test]
    fn classic_queues_dead_letter_into_the_dead_letter_queue_and_nothing_more() {
        let s = queue_settings(QueueType::Classic);
        let consumed = pairs(&[
            ("x-queue-type", "\"classic\""),
            ("x-dead-letter-exchange", "\"\""),
            ("x-dead-letter-routing-key", "\"in.dead-letter\""),
        ]);
        assert_eq!(table(&input_queue_arguments(s)), consumed);
        assert_eq!(table(&retry_queue_arguments(s)), consumed);
        assert_eq!(
            table(&dead_letter_queue_arguments(s)),
            pairs(&[("x-queue-type", "\"classic\"")])
        );
        assert_eq!(
            table(&wait_queue_arguments(
                s,
                Duration::from_millis(500),
                "in.retry.h"
            )),
            pairs(&[
                ("x-queue-type", "\"classic\""),
                ("x-message-ttl", "500"),
                ("x-dead-letter-exchange", "\"\""),
                ("x-dead-letter-routing-key", "\"in.retry.h\""),
            ])
        );
    }

    #[test]
    fn quorum_queues_dead_letter_at_least_once_with_the_worker_limit_first() {
        let s = queue_settings(QueueType::Quorum);
        let consumed = pairs(&[
            ("x-queue-type", "\"quorum\""),
            ("x-dead-letter-exchange", "\"\""),
            ("x-dead-letter-routing-key", "\"in.dead-letter\""),
            ("x-dead-letter-strategy", "\"at-least-once\""),
            ("x-overflow", "\"reject-publish\""),
            ("x-delivery-limit", "21"),
        ]);
        assert_eq!(table(&input_queue_arguments(s)), consumed);
        assert_eq!(table(&retry_queue_arguments(s)), consumed);
        assert_eq!(
            table(&dead_letter_queue_arguments(s)),
            pairs(&[
                ("x-queue-type", "\"quorum\""),
                ("x-delivery-limit", "2147483647")
            ])
        );
        assert_eq!(
            table(&wait_queue_arguments(
                s,
                Duration::from_millis(500),
                "in.retry.h"
            )),
            pairs(&[
                ("x-queue-type", "\"quorum\""),
                ("x-message-ttl", "500"),
                ("x-dead-letter-exchange", "\"\""),
                ("x-dead-letter-routing-key", "\"in.retry.h\""),
                ("x-dead-letter-strategy", "\"at-least-once\""),
                ("x-overflow", "\"reject-publish\""),
            ])
        );
        // The worker dead-letters a message whose x-delivery-count exceeds redelivery_limit;
        // the broker still delivers counts up to its limit, so that delivery happens.
        for limit in [1, 2, 20, u32::MAX] {
            assert!(broker_delivery_limit(limit) > i64::from(limit));
            assert_eq!(broker_delivery_limit(limit), i64::from(limit) + 1);
        }
    }

    /// The broker's own texts, as RabbitMQ 3.10 sends them.
    #[test]
    fn inequivalent_arguments_are_named_with_both_values() {
        let cases = [
            (
                "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-exchange' for queue 'q' in vhost '/': received the value '' of type 'longstr' but current is none",
                "x-dead-letter-exchange",
                "none",
                "''",
            ),
            (
                "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-strategy' for queue 'q' in vhost '/': received none but current is the value 'at-least-once' of type 'longstr'",
                "x-dead-letter-strategy",
                "'at-least-once'",
                "none",
            ),
            (
                "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'q' in vhost '/': received '6' but current is '5'",
                "x-delivery-limit",
                "'5'",
                "'6'",
            ),
            (
                "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received 'quorum' but current is 'classic'",
                "x-queue-type",
                "'classic'",
                "'quorum'",
            ),
            (
                "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': something else",
                "durable",
                "?",
                "?",
            ),
        ];
        for (message, argument, current, declared) in cases {
            let e = InequivalentQueue::from_message("q", message).expect(message);
            assert_eq!(e.argument, argument);
            assert_eq!(e.current, current, "{message}");
            assert_eq!(e.declared, declared, "{message}");
        }
        assert_eq!(
            InequivalentQueue::from_message("q", "PRECONDITION_FAILED - invalid arg 'x-a'"),
            None
        );

        let text = InequivalentQueue::from_message("access-requests", cases[0].0)
            .unwrap()
            .to_string();
        assert!(
            text.starts_with(
                "queue `access-requests` already exists with other arguments: \
                 `x-dead-letter-exchange` is none on the broker, this version declares '' \
                 (the first difference the broker found). "
            ),
            "{text}"
        );
        assert!(text.contains("delete the queue"), "{text}");
        assert!(text.contains("Upgrading the queues"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

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
