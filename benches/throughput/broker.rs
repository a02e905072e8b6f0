//! RabbitMQ as the bench uses it: connections, the backlog pre-load, queue counts, waiting for
//! the worker's consumer, and deleting what the phases declared.

use crate::proc::Worker;
use crate::setup::{event_properties, trigger_of};
use crate::{STALL, Topologies, err, first_line};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection, ConnectionProperties};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use webhook_relay::broker::Broker;
use webhook_relay::config::{AmqpSettings, Config};

/// Outstanding publisher confirms while pre-loading.
const CONFIRM_WINDOW: usize = 4096;
/// How often the input queue is asked for its consumer count while the worker starts.
const CONSUMER_POLL: Duration = Duration::from_millis(2);

pub async fn connect(url: &str) -> Result<Connection, String> {
    let properties =
        ConnectionProperties::default().with_connection_name("webhook-relay bench".into());
    match tokio::time::timeout(
        Duration::from_secs(15),
        Connection::connect(url, properties),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(format!(
            "cannot connect to RabbitMQ: {e} (scripts/bench starts it)"
        )),
        Err(_) => Err("RabbitMQ did not answer within 15s".into()),
    }
}

pub async fn connect_broker(config: &Config) -> Result<Broker, String> {
    Broker::connect(&config.amqp, &config.redactor)
        .await
        .map_err(|e| format!("{e} (scripts/bench starts RabbitMQ)"))
}

/// Publishes `n` events (`body(i)` for event `i`) to the phase's exchange with pipelined
/// confirms (at most [`CONFIRM_WINDOW`] outstanding) and checks that the input queue holds
/// them all.
pub async fn preload(
    connection: &Connection,
    amqp: &AmqpSettings,
    n: u64,
    body: fn(u64) -> Vec<u8>,
) -> Result<Duration, String> {
    let started = Instant::now();
    let channel = connection.create_channel().await.map_err(err)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(err)?;
    let mut pending = VecDeque::with_capacity(CONFIRM_WINDOW);
    let settle = |confirm: lapin::PublisherConfirm| async move {
        match tokio::time::timeout(STALL, confirm).await {
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(other) => Err(format!("publish not confirmed: {other:?}")),
            Err(_) => Err("no publisher confirm within 60s".to_string()),
        }
    };
    for i in 0..n {
        let confirm = channel
            .basic_publish(
                amqp.exchange.as_str().into(),
                trigger_of(i).as_str().into(),
                BasicPublishOptions::default(),
                &body(i),
                event_properties(),
            )
            .await
            .map_err(err)?;
        pending.push_back(confirm);
        if pending.len() >= CONFIRM_WINDOW {
            settle(pending.pop_front().expect("not empty")).await?;
        }
    }
    for confirm in pending {
        settle(confirm).await?;
    }
    let _ = channel.close(200, "done".into()).await;
    let probe = connection.create_channel().await.map_err(err)?;
    let queued = message_count(&probe, &amqp.queue).await;
    let _ = probe.close(200, "done".into()).await;
    if queued != n {
        return Err(format!("the input queue holds {queued} events, not {n}"));
    }
    Ok(started.elapsed())
}

/// Ready messages in `queue` (0 when it cannot be asked).
pub async fn message_count(channel: &Channel, queue: &str) -> u64 {
    queue_state(channel, queue)
        .await
        .map_or(0, |(messages, _)| messages)
}

async fn queue_state(channel: &Channel, queue: &str) -> Result<(u64, u32), String> {
    let declared = tokio::time::timeout(
        Duration::from_secs(10),
        channel.queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .map_err(|_| "queue.declare: no answer within 10s".to_string())?
    .map_err(err)?;
    Ok((
        u64::from(declared.message_count()),
        declared.consumer_count(),
    ))
}

/// Waits until the broker reports a consumer on `queue`. `Ok(Err(exit))` when the worker
/// exited first.
pub async fn wait_consuming(
    probe: &Channel,
    queue: &str,
    worker: &mut Worker,
) -> Result<Result<(), Option<i32>>, String> {
    let deadline = Instant::now() + STALL;
    loop {
        if let Some(exit) = worker.exited() {
            return Ok(Err(exit));
        }
        let (_, consumers) = queue_state(probe, queue).await?;
        if consumers > 0 {
            return Ok(Ok(()));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the worker did not consume within {}s: {}",
                STALL.as_secs(),
                first_line(&worker.log_text())
            ));
        }
        tokio::time::sleep(CONSUMER_POLL).await;
    }
}

/// Deletes every registered topology.
pub async fn cleanup(url: &str, topologies: &Topologies) -> Result<(), String> {
    let list = std::mem::take(&mut *topologies.lock().expect("lock"));
    let Some((first, _)) = list.first() else {
        return Ok(());
    };
    let mut settings = first.clone();
    settings.url = webhook_relay::redact::Secret::new(url.to_string());
    let redactor = webhook_relay::redact::Redactor::default();
    let broker = tokio::time::timeout(
        Duration::from_secs(30),
        Broker::connect(&settings, &redactor),
    )
    .await
    .map_err(|_| "no connection within 30s".to_string())?
    .map_err(err)?;
    let mut failed = Vec::new();
    for (amqp, webhooks) in &list {
        match tokio::time::timeout(
            Duration::from_secs(30),
            broker.delete_topology(amqp, webhooks),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed.push(format!("{}: {e}", amqp.queue)),
            Err(_) => failed.push(format!("{}: timed out", amqp.queue)),
        }
    }
    broker.close().await;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}
