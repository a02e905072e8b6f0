//! The latency phases: a steady rate published while the consumer runs (the bare consumer,
//! or the worker into the in-process [`LocalLogzio`]), publish-to-received per event.

use crate::broker::{connect, wait_consuming};
use crate::proc::Worker;
use crate::report::{Latency, Skipped};
use crate::setup::{
    BATCH_TABLE, PREFETCH, SHIPPED_TEMPLATE_END, TOKEN, event_body, event_properties,
    not_available, single_webhook, trigger_of,
};
use crate::{Bench, STALL, err, first_line};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Confirmation, Connection};
use serde_json::Value;
use std::time::{Duration, Instant};
use webhook_relay::config::AmqpSettings;
use webhook_relay::devtools::local_logzio::LocalLogzio;

impl Bench {
    /// A steady rate through the worker into the in-process listener: publish-to-received
    /// latency per event.
    pub async fn latency(&mut self, batched: bool) -> Result<Result<Latency, Skipped>, String> {
        let name = if batched { "batched" } else { "single" };
        let sink = LocalLogzio::start(TOKEN).await.map_err(err)?;
        let (prefix, dir) = self.next_phase(&format!("latency-{name}"));
        let mut webhook = single_webhook(sink.port());
        assert!(
            webhook.contains(SHIPPED_TEMPLATE_END),
            "the seed template changed"
        );
        webhook = webhook.replace(
            SHIPPED_TEMPLATE_END,
            r#""type": "Apono", "seq": "{{ data.custom_fields.seq }}"}'''"#,
        );
        if batched {
            webhook.push_str(BATCH_TABLE);
        }
        let config = match self
            .prepare(&dir, &prefix, sink.port(), sink.ca_pem(), &webhook, &[])
            .await?
        {
            Ok(config) => config,
            Err(problem) => {
                return Ok(Err(Skipped {
                    phase: format!("latency {name}"),
                    why: not_available(&problem),
                }));
            }
        };
        let connection = connect(&self.args.amqp_url).await?;
        let mut worker = Worker::spawn(&dir, &self.env(), &self.args.rust_log)?;
        let probe = connection.create_channel().await.map_err(err)?;
        if let Err(exit) = wait_consuming(&probe, &config.amqp.queue, &mut worker).await? {
            return Err(format!(
                "the worker exited ({exit:?}) before consuming: {}",
                first_line(&worker.log_text())
            ));
        }
        let cpu0 = worker.cpu(self.clock_ticks);

        let (total, warmup) = self.latency_counts();
        let publishing = publish_steady(&connection, &config.amqp, total, self.args.latency_rate);
        let published = publishing.await?;
        let received = sink.wait_for_accepted(total, STALL).await.len();
        let cpu1 = worker.cpu(self.clock_ticks);
        let peak_rss = worker.peak_rss();
        worker.stop().await;
        let _ = connection.close(200, "done".into()).await;

        let mut arrivals = Vec::with_capacity(total);
        for request in sink.requests() {
            for line in &request.accepted_lines {
                let seq = match line.get("seq") {
                    Some(Value::String(s)) => s.parse::<u64>().ok(),
                    Some(Value::Number(n)) => n.as_u64(),
                    _ => None,
                };
                if let Some(seq) = seq {
                    arrivals.push((seq, request.at));
                }
            }
        }
        sink.shutdown().await;
        let mut latency = summarise(name, self.args.latency_rate, &published, &arrivals, warmup)
            .ok_or_else(|| format!("no event arrived ({received} lines accepted)"))?;
        latency.peak_rss = peak_rss;
        latency.cpu = cpu1.zip(cpu0).map(|(b, a)| b - a);
        Ok(Ok(latency))
    }

    /// Events published in the latency phases, and how many of the first are warm-up.
    fn latency_counts(&self) -> (usize, usize) {
        let rate = self.args.latency_rate as usize;
        (rate * self.args.latency_seconds as usize, rate)
    }

    /// The same steady rate into a consumer that only acks: what the broker and the client
    /// library alone add.
    pub async fn latency_bare(&mut self) -> Result<Latency, String> {
        let (prefix, dir) = self.next_phase("latency-bare");
        let ca = self.cert.ca_pem().to_string();
        let config = self
            .prepare(&dir, &prefix, 443, &ca, &single_webhook(443), &[])
            .await?
            .map_err(|e| format!("config: {e}"))?;
        let connection = connect(&self.args.amqp_url).await?;
        let channel = connection.create_channel().await.map_err(err)?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(err)?;
        let mut consumer = channel
            .basic_consume(
                config.amqp.queue.as_str().into(),
                "relay-bench-latency-bare".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
        let (total, warmup) = self.latency_counts();
        let consuming = tokio::spawn(async move {
            let mut arrivals = Vec::with_capacity(total);
            while arrivals.len() < total {
                let Ok(Some(Ok(delivery))) = tokio::time::timeout(STALL, consumer.next()).await
                else {
                    break;
                };
                let at = Instant::now();
                let seq = serde_json::from_slice::<Value>(&delivery.data)
                    .ok()
                    .and_then(|v| v.pointer("/data/custom_fields/seq").and_then(Value::as_u64));
                if let Some(seq) = seq {
                    arrivals.push((seq, at));
                }
                if delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            arrivals
        });
        let published =
            publish_steady(&connection, &config.amqp, total, self.args.latency_rate).await;
        let arrivals = consuming.await.map_err(err)?;
        let _ = connection.close(200, "done".into()).await;
        let published = published?;
        summarise(
            "bare",
            self.args.latency_rate,
            &published,
            &arrivals,
            warmup,
        )
        .ok_or_else(|| "no event arrived".to_string())
    }
}

/// The sequence numbers of the latency phases start here, apart from the drains' numbers.
const SEQ_BASE: u64 = 1_000_000_000;

/// Publishes `total` events at `rate` per second (seq `SEQ_BASE + i`), confirms awaited on the
/// side, and returns the instant each was handed to the client library, and the rate achieved.
async fn publish_steady(
    connection: &Connection,
    amqp: &AmqpSettings,
    total: usize,
    rate: u64,
) -> Result<Published, String> {
    let bodies: Vec<Vec<u8>> = (0..total as u64)
        .map(|i| event_body(SEQ_BASE + i))
        .collect();
    let channel = connection.create_channel().await.map_err(err)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(err)?;
    let (confirms_tx, mut confirms_rx) = tokio::sync::mpsc::unbounded_channel();
    let confirmer = tokio::spawn(async move {
        let mut failed = 0u64;
        while let Some(confirm) = confirms_rx.recv().await {
            let confirm: lapin::PublisherConfirm = confirm;
            match tokio::time::timeout(STALL, confirm).await {
                Ok(Ok(Confirmation::Ack(None))) => {}
                _ => failed += 1,
            }
        }
        failed
    });
    let mut at = Vec::with_capacity(total);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for (i, body) in bodies.iter().enumerate() {
        ticks.tick().await;
        at.push(Instant::now());
        let confirm = channel
            .basic_publish(
                amqp.exchange.as_str().into(),
                trigger_of(SEQ_BASE + i as u64).as_str().into(),
                BasicPublishOptions::default(),
                body,
                event_properties(),
            )
            .await
            .map_err(err)?;
        let _ = confirms_tx.send(confirm);
    }
    let achieved_rate = total as f64 / started.elapsed().as_secs_f64();
    drop(confirms_tx);
    let not_confirmed = confirmer.await.unwrap_or(0);
    let _ = channel.close(200, "done".into()).await;
    Ok(Published {
        at,
        achieved_rate,
        not_confirmed,
    })
}

/// What [`publish_steady`] did.
struct Published {
    /// When event `SEQ_BASE + i` was published.
    at: Vec<Instant>,
    achieved_rate: f64,
    not_confirmed: u64,
}

/// Percentiles of arrival minus publish over the events after `warmup`, each event counted
/// at its first arrival. `None` when nothing arrived.
fn summarise(
    phase: &str,
    rate: u64,
    published: &Published,
    arrivals: &[(u64, Instant)],
    warmup: usize,
) -> Option<Latency> {
    let total = published.at.len();
    let mut seen = vec![false; total];
    let mut latencies = Vec::with_capacity(total);
    for &(seq, at) in arrivals {
        let Some(index) = seq
            .checked_sub(SEQ_BASE)
            .map(|s| s as usize)
            .filter(|&s| s < total)
        else {
            continue;
        };
        if std::mem::replace(&mut seen[index], true) {
            continue;
        }
        if index >= warmup {
            latencies.push(at.saturating_duration_since(published.at[index]));
        }
    }
    if latencies.is_empty() {
        return None;
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    let mut notes = Vec::new();
    if published.not_confirmed > 0 {
        notes.push(format!(
            "{} publishes not confirmed",
            published.not_confirmed
        ));
    }
    Some(Latency {
        phase: phase.into(),
        rate,
        measured: latencies.len(),
        missing: seen.iter().filter(|s| !**s).count(),
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        p999: pct(0.999),
        max: *latencies.last().expect("not empty"),
        achieved_rate: published.achieved_rate,
        peak_rss: None,
        cpu: None,
        notes,
    })
}
