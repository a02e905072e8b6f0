//! The monitor: every `monitor.interval`, each webhook's circuit state and retry-queue depth,
//! the dead-letter depth and the bytes in flight, logged and set as gauges.

use super::pipeline::Pipeline;
use crate::broker::flow::Budget;
use crate::broker::{Broker, topology};
use crate::ops::metrics;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Logs each webhook's circuit state and retry depth every `monitor.interval`.
pub(super) async fn monitor(
    broker: Arc<Broker>,
    current: watch::Receiver<Arc<Pipeline>>,
    budget: Arc<Budget>,
    stop: CancellationToken,
) {
    loop {
        let interval = current.borrow().config.monitor_interval;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return,
        }
        let pipeline = current.borrow().clone();
        for webhook in &pipeline.config.webhooks {
            let queue = &pipeline.config.amqp.queue;
            let mut depth = broker
                .ready_count(&topology::retry_queue(queue, &webhook.name))
                .await
                .unwrap_or(0);
            for tier in topology::tiers(&webhook.delivery) {
                depth += broker
                    .ready_count(&topology::wait_queue(queue, &webhook.name, tier))
                    .await
                    .unwrap_or(0);
            }
            let state = pipeline.deliverer.breaker(&webhook.name).map(|b| b.state());
            if let Some(m) = pipeline.webhook_metrics.get(&webhook.name) {
                m.retry_depth.set(f64::from(depth));
                if let Some(state) = state {
                    m.circuit.set(state.as_gauge());
                }
            }
            let circuit = state.map(|s| s.to_string()).unwrap_or_default();
            tracing::info!(webhook = %webhook.name, %circuit, retry_depth = depth, "webhook status");
        }
        let dead_letters = broker
            .ready_count(&pipeline.config.amqp.dead_letter_queue)
            .await
            .unwrap_or(0);
        pipeline
            .metrics
            .gauge(metrics::DEAD_LETTER_DEPTH, vec![])
            .set(f64::from(dead_letters));
        let in_flight = budget.in_flight();
        pipeline
            .metrics
            .gauge(metrics::IN_FLIGHT_BYTES, vec![])
            .set(in_flight as f64);
        pipeline
            .metrics
            .gauge(metrics::IN_FLIGHT_BYTES_PEAK, vec![])
            .set(budget.peak() as f64);
        tracing::info!(
            in_flight_bytes = in_flight,
            memory_budget = budget.limit(),
            dead_letters,
            "worker status"
        );
    }
}
