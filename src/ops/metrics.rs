//! Prometheus metrics and readiness. Each worker owns its own registry (no global recorder),
//! so several workers in one process, as in the tests, never mix their counts.
//!
//! Every stage records at its own boundary: consumed (amqp), matched (rules), delivery outcome
//! and latency (delivery), dead letters and parked deliveries (settle), reconnects and reloads
//! (worker). Label values are bounded: webhook names, outcomes, reasons and status classes,
//! never URLs or event ids.
//!
//! The registry is the one record of what the worker did: the getters ([`Metrics::acked`],
//! [`Metrics::delivered`], …) read the same series `/metrics` shows, for tests and the demo.

use ::metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Events taken from the input queue.
pub const EVENTS_CONSUMED: &str = "relay_events_consumed_total";
/// Events matched, per webhook.
pub const EVENTS_MATCHED: &str = "relay_events_matched_total";
/// Events that matched no webhook.
pub const EVENTS_UNMATCHED: &str = "relay_events_unmatched_total";
/// Deliveries by webhook and outcome (`success`, `retry`, `rejected`, `failed`).
pub const DELIVERIES: &str = "relay_deliveries_total";
/// Attempts' responses by webhook and status class (`2xx`…`5xx`, `error`).
pub const RESPONSES: &str = "relay_responses_total";
/// Time per attempt, per webhook, in seconds.
pub const DELIVERY_SECONDS: &str = "relay_delivery_duration_seconds";
/// Attempts a delivery took, per webhook.
pub const DELIVERY_ATTEMPTS: &str = "relay_delivery_attempts";
/// Dead letters published, by webhook and reason.
pub const DEAD_LETTERS: &str = "relay_dead_letters_total";
/// Deliveries in flight.
pub const IN_FLIGHT: &str = "relay_deliveries_in_flight";
/// Circuit state per webhook: 0 closed, 1 half-open, 2 open.
pub const CIRCUIT_STATE: &str = "relay_circuit_state";
/// Messages waiting on a webhook's retry path, polled.
pub const RETRY_DEPTH: &str = "relay_retry_queue_depth";
/// Messages in the dead-letter queue, polled.
pub const DEAD_LETTER_DEPTH: &str = "relay_dead_letter_queue_depth";
/// Bytes of message bodies in flight (the memory budget's use), polled.
pub const IN_FLIGHT_BYTES: &str = "relay_in_flight_bytes";
/// The most bytes of message bodies ever in flight at once, polled.
pub const IN_FLIGHT_BYTES_PEAK: &str = "relay_in_flight_bytes_peak";
/// The input queue's prefetch, as the memory budget sets it.
pub const PREFETCH: &str = "relay_prefetch";
/// Messages holding outcomes that the broker has not confirmed yet (the store is failing).
pub const STORE_HELD: &str = "relay_store_held_messages";
/// Tries to store a dead letter or a parked delivery that the broker did not confirm.
pub const STORE_FAILURES: &str = "relay_store_failures_total";
/// Messages taken from webhooks' retry queues.
pub const RETRIES_CONSUMED: &str = "relay_retries_consumed_total";
/// Messages settled, by result: `acked`, `requeued`, or `lost` (the channel went first).
pub const SETTLED: &str = "relay_messages_settled_total";
/// Successful connections to the broker, the first included.
pub const CONNECTIONS: &str = "relay_broker_connections_total";
/// Successful reconnections to the broker (the first connection does not count).
pub const RECONNECTS: &str = "relay_broker_reconnects_total";
/// Config reloads by result (`success`, `failure`).
pub const RELOADS: &str = "relay_config_reloads_total";
/// Always 1, labelled with the version.
pub const BUILD_INFO: &str = "relay_build_info";

static METADATA: Metadata<'static> = Metadata::new("webhook_relay", Level::INFO, None);

/// Bucket bounds of the delivery latency histogram, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Bucket bounds of the attempts histogram.
const ATTEMPT_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 13.0, 21.0];

/// One worker's metrics registry, and its readiness.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Connected and consuming, or why not (`/readyz`).
    pub readiness: Readiness,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A fresh registry with `relay_build_info` set.
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DELIVERY_SECONDS.into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(DELIVERY_ATTEMPTS.into()), ATTEMPT_BUCKETS)
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let metrics = Metrics {
            recorder,
            handle,
            readiness: Readiness::default(),
        };
        metrics
            .gauge(
                BUILD_INFO,
                vec![Label::new("version", env!("CARGO_PKG_VERSION"))],
            )
            .set(1.0);
        metrics
    }

    /// The text exposition (`/metrics`).
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram windows; call it periodically (the server's upkeep task does).
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// A counter handle.
    pub fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    /// A gauge handle.
    pub fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &METADATA)
    }

    /// A histogram handle.
    pub fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder
            .register_histogram(&Key::from_parts(name, labels), &METADATA)
    }

    /// The handles of one webhook, created once per config (labels stay bounded).
    pub fn webhook(&self, name: &str) -> WebhookMetrics {
        let label = || vec![Label::new("webhook", name.to_string())];
        let outcome = |o: &'static str| {
            self.counter(
                DELIVERIES,
                vec![
                    Label::new("webhook", name.to_string()),
                    Label::new("outcome", o),
                ],
            )
        };
        let class = |c: &'static str| {
            self.counter(
                RESPONSES,
                vec![
                    Label::new("webhook", name.to_string()),
                    Label::new("status_class", c),
                ],
            )
        };
        WebhookMetrics {
            matched: self.counter(EVENTS_MATCHED, label()),
            success: outcome("success"),
            retry: outcome("retry"),
            rejected: outcome("rejected"),
            failed: outcome("failed"),
            responses: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
                class("error"),
            ],
            latency: self.histogram(DELIVERY_SECONDS, label()),
            attempts: self.histogram(DELIVERY_ATTEMPTS, label()),
            circuit: self.gauge(CIRCUIT_STATE, label()),
            retry_depth: self.gauge(RETRY_DEPTH, label()),
            in_flight: self.gauge(IN_FLIGHT, label()),
        }
    }

    /// Counts a config reload that took effect (`ok`) or was refused.
    pub fn record_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.counter(RELOADS, vec![Label::new("result", result)])
            .increment(1);
    }

    /// The counters every message touches, registered once (a lookup per message would put
    /// a lock and an allocation on the hot path).
    pub fn message_counters(&self) -> MessageCounters {
        let settled =
            |result: &'static str| self.counter(SETTLED, vec![Label::new("result", result)]);
        MessageCounters {
            consumed: self.counter(EVENTS_CONSUMED, vec![]),
            retries_consumed: self.counter(RETRIES_CONSUMED, vec![]),
            unmatched: self.counter(EVENTS_UNMATCHED, vec![]),
            acked: settled("acked"),
            requeued: settled("requeued"),
            lost: settled("lost"),
        }
    }

    /// The sum of every series of counter or gauge `name` whose labels include
    /// `label="value"` (every series when `label` is `None`), as `/metrics` shows it; 0 when
    /// there is none. For tests and the demo: it renders the registry.
    pub fn total(&self, name: &str, label: Option<(&str, &str)>) -> u64 {
        let wanted = label.map(|(key, value)| format!("{key}=\"{value}\""));
        self.render()
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(name)?;
                let (labels, value) = match rest.strip_prefix('{') {
                    Some(rest) => rest.split_once("} ")?,
                    None => ("", rest.strip_prefix(' ')?),
                };
                let matches = wanted
                    .as_ref()
                    .is_none_or(|w| labels.split(',').any(|pair| pair == w.as_str()));
                matches.then(|| value.trim().parse::<f64>().ok())?
            })
            .map(|v| v as u64)
            .sum()
    }

    /// Messages taken from the input queue.
    pub fn consumed(&self) -> u64 {
        self.total(EVENTS_CONSUMED, None)
    }

    /// Messages taken from retry queues.
    pub fn retries_consumed(&self) -> u64 {
        self.total(RETRIES_CONSUMED, None)
    }

    /// Events that matched no webhook (acked without delivery).
    pub fn unmatched(&self) -> u64 {
        self.total(EVENTS_UNMATCHED, None)
    }

    /// Deliveries that succeeded, counted once their message was acked.
    pub fn delivered(&self) -> u64 {
        self.total(DELIVERIES, Some(("outcome", "success")))
    }

    /// Dead letters published and confirmed, counted once their message was acked.
    pub fn dead_lettered(&self) -> u64 {
        self.total(DEAD_LETTERS, None)
    }

    /// Deliveries parked in a retry queue, confirmed, counted once their message was acked.
    pub fn parked(&self) -> u64 {
        self.total(DELIVERIES, Some(("outcome", "retry")))
    }

    /// Messages acked.
    pub fn acked(&self) -> u64 {
        self.total(SETTLED, Some(("result", "acked")))
    }

    /// Messages requeued.
    pub fn requeued(&self) -> u64 {
        self.total(SETTLED, Some(("result", "requeued")))
    }

    /// Store tries (dead letters, parks) the broker did not confirm.
    pub fn store_failures(&self) -> u64 {
        self.total(STORE_FAILURES, None)
    }

    /// Successful connections to the broker, the first included.
    pub fn connections(&self) -> u64 {
        self.total(CONNECTIONS, None)
    }

    /// Config reloads that took effect.
    pub fn reloads(&self) -> u64 {
        self.total(RELOADS, Some(("result", "success")))
    }

    /// Config reloads refused.
    pub fn reloads_refused(&self) -> u64 {
        self.total(RELOADS, Some(("result", "failure")))
    }

    /// Counts one dead letter.
    pub fn dead_letter(&self, webhook: Option<&str>, reason: &'static str) {
        self.counter(
            DEAD_LETTERS,
            vec![
                Label::new("webhook", webhook.unwrap_or("").to_string()),
                Label::new("reason", reason),
            ],
        )
        .increment(1);
    }
}

/// The per-message counters of one worker.
#[derive(Clone)]
pub struct MessageCounters {
    /// Messages taken from the input queue.
    pub consumed: Counter,
    /// Messages taken from retry queues.
    pub retries_consumed: Counter,
    /// Events that matched no webhook.
    pub unmatched: Counter,
    /// Messages acked.
    pub acked: Counter,
    /// Messages requeued.
    pub requeued: Counter,
    /// Messages whose channel went before they were settled.
    pub lost: Counter,
}

/// The metric handles of one webhook.
#[derive(Clone)]
pub struct WebhookMetrics {
    /// Events it matched.
    pub matched: Counter,
    /// Deliveries that succeeded.
    pub success: Counter,
    /// Deliveries parked for a later retry.
    pub retry: Counter,
    /// Deliveries refused for good (dead-lettered as `rejected` or `render_failed`).
    pub rejected: Counter,
    /// Deliveries whose retries ran out (dead-lettered as `delivery_failed`).
    pub failed: Counter,
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx, then transport errors.
    pub responses: [Counter; 6],
    /// Seconds per attempt.
    pub latency: Histogram,
    /// Attempts per finished delivery.
    pub attempts: Histogram,
    /// 0 closed, 1 half-open, 2 open.
    pub circuit: Gauge,
    /// Messages on its retry path.
    pub retry_depth: Gauge,
    /// Deliveries in flight.
    pub in_flight: Gauge,
}

impl WebhookMetrics {
    /// Counts one attempt's answer: a status, or `None` for a transport error.
    pub fn response(&self, status: Option<u16>, seconds: f64) {
        let index = match status {
            Some(s) if (100..600).contains(&s) => usize::from(s / 100) - 1,
            _ => 5,
        };
        self.responses[index].increment(1);
        self.latency.record(seconds);
    }
}

/// Why the worker is not taking events, as `/readyz` says it. The texts are fixed: a reason
/// never carries an error message, so never a broker host, user or URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// Not connected to the broker yet.
    Starting,
    /// The broker connection was lost; reconnecting with backoff.
    Reconnecting,
    /// Connected, but no webhook is active (`policy.allow_idle`): nothing is consumed.
    Idle,
    /// SIGTERM: finishing in-flight deliveries.
    ShuttingDown,
}

impl NotReady {
    /// The reason shown by `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotReady::Starting => "starting: not connected to the broker yet",
            NotReady::Reconnecting => "reconnecting to the broker",
            NotReady::Idle => "idle: no active webhook, so no events are consumed",
            NotReady::ShuttingDown => "shutting down",
        }
    }
}

/// The `/readyz` reason while dead letters or parked deliveries cannot be stored.
pub const STORE_FAILING: &str = "dead letters or parked deliveries cannot be stored: intake \
     paused until the broker confirms them again";

/// Whether the worker is taking events (`/readyz`): consuming, with a working store for dead
/// letters and parked deliveries.
#[derive(Debug)]
pub struct Readiness {
    broker: Mutex<Option<NotReady>>,
    store_failing: AtomicBool,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            broker: Mutex::new(Some(NotReady::Starting)),
            store_failing: AtomicBool::new(false),
        }
    }
}

impl Readiness {
    /// Connected and consuming.
    pub fn set_ready(&self) {
        *self.broker.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Not consuming, and why.
    pub fn set_not_ready(&self, reason: NotReady) {
        *self.broker.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// Whether dead letters or parked deliveries are failing to be stored.
    pub fn set_store_failing(&self, failing: bool) {
        self.store_failing.store(failing, Ordering::SeqCst);
    }

    /// `Ok(())` when ready, else the reason.
    pub fn check(&self) -> Result<(), &'static str> {
        if let Some(reason) = *self.broker.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(reason.as_str());
        }
        if self.store_failing.load(Ordering::SeqCst) {
            return Err(STORE_FAILING);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_independent_and_render_labels() {
        let a = Metrics::new();
        let b = Metrics::new();
        let hook = a.webhook("logzio-audit");
        hook.success.increment(2);
        hook.response(Some(503), 0.01);
        hook.response(None, 0.5);
        a.dead_letter(Some("logzio-audit"), "rejected");
        let text = a.render();
        assert!(
            text.contains(r#"relay_deliveries_total{webhook="logzio-audit",outcome="success"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"relay_responses_total{webhook="logzio-audit",status_class="5xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"relay_responses_total{webhook="logzio-audit",status_class="error"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"relay_dead_letters_total{webhook="logzio-audit",reason="rejected"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("relay_build_info{version="), "{text}");
        assert!(
            text.contains("relay_delivery_duration_seconds_bucket"),
            "{text}"
        );
        assert!(!b.render().contains("relay_deliveries_total"));
    }

    #[test]
    fn readiness_carries_its_reason() {
        let r = Readiness::default();
        assert!(r.check().unwrap_err().contains("starting"));
        r.set_ready();
        assert_eq!(r.check(), Ok(()));
        r.set_not_ready(NotReady::Reconnecting);
        assert_eq!(r.check().unwrap_err(), "reconnecting to the broker");
        r.set_ready();
        r.set_store_failing(true);
        assert_eq!(r.check().unwrap_err(), STORE_FAILING);
        r.set_not_ready(NotReady::ShuttingDown);
        assert_eq!(
            r.check().unwrap_err(),
            "shutting down",
            "the broker state comes first"
        );
        r.set_ready();
        r.set_store_failing(false);
        assert_eq!(r.check(), Ok(()));
    }
}
