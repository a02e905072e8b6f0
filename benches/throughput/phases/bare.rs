//! The bare limit: a consumer in the bench process with the worker's prefetch that only acks.

use crate::broker::{connect, preload};
use crate::proc::self_cpu;
use crate::report::Drain;
use crate::setup::{PREFETCH, event_body, single_webhook};
use crate::{Bench, STALL, err};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::time::Instant;

impl Bench {
    /// The bare limit: a consumer with the worker's prefetch that only acks.
    pub async fn bare(&mut self, n: u64) -> Result<Drain, String> {
        let (prefix, dir) = self.next_phase("bare");
        // The worker's topology (same queue arguments), so the queue is the same kind.
        let port = self.nginx.as_ref().map_or(443, |n| n.port);
        let ca = self.cert.ca_pem().to_string();
        let config = self
            .prepare(&dir, &prefix, port, &ca, &single_webhook(port), &[])
            .await?
            .map_err(|e| format!("config: {e}"))?;
        let connection = connect(&self.args.amqp_url).await?;
        let loaded = preload(&connection, &config.amqp, n, event_body).await?;
        eprintln!("pre-loaded {n} events in {:.1}s", loaded.as_secs_f64());

        let channel = connection.create_channel().await.map_err(err)?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(err)?;
        let cpu0 = self_cpu(self.clock_ticks);
        let mut consumer = channel
            .basic_consume(
                config.amqp.queue.as_str().into(),
                "relay-bench-bare".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
        let started = Instant::now();
        let mut acked = 0u64;
        while acked < n {
            let delivery = match tokio::time::timeout(STALL, consumer.next()).await {
                Ok(Some(Ok(delivery))) => delivery,
                Ok(Some(Err(e))) => return Err(format!("consume: {e}")),
                Ok(None) => return Err("the consumer ended".into()),
                Err(_) => {
                    return Err(format!(
                        "stalled: {acked} of {n} acked, nothing for {}s",
                        STALL.as_secs()
                    ));
                }
            };
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(err)?;
            acked += 1;
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu = self_cpu(self.clock_ticks).zip(cpu0).map(|(b, a)| b - a);
        let _ = connection.close(200, "done".into()).await;
        Ok(Drain {
            phase: "bare".into(),
            events: n,
            requests: None,
            seconds,
            peak_rss: None,
            cpu,
            versus_bare: true,
            bare_rate: None,
            notes: vec!["CPU is the bench process (the consumer)".into()],
        })
    }
}
