//! The integration suite's side of the harness: everything in
//! [`crate::support::harness`] (shared with the chaos tests), plus what only these tests use:
//! a proxied broker URL or a closed port, extra `[amqp]` keys, publishing single events and
//! approvals by id, requests per event id, counters and the operations endpoints of the
//! in-process worker (`http_get`, `metric`), and the shipped Logz.io webhook.

pub use crate::support::harness::*;

use crate::support::logzio::LocalLogzio;
use lapin::BasicProperties;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};
use webhook_relay::model::event::Trigger;
use webhook_relay::ops::metrics::Metrics;

/// The broker's `host:port`, for a proxy in front of it.
pub fn rabbitmq_addr() -> std::net::SocketAddr {
    let url = url::Url::parse(&rabbitmq_url()).expect("RABBITMQ_URL is a URL");
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(5672);
    format!("{host}:{port}")
        .parse()
        .expect("RABBITMQ_URL names an IP address and port")
}

impl AppBuilder {
    /// Extra keys appended to the `[amqp]` table (e.g. `queue_type = "quorum"`).
    pub fn amqp_extra(mut self, text: &str) -> Self {
        self.amqp_extra.push_str(text);
        self.amqp_extra.push('\n');
        self
    }

    /// `amqp.prefetch` (64 unless set).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// Connects the worker through this URL (e.g. a proxy) instead of the broker directly.
    pub fn amqp_url(mut self, url: &str) -> Self {
        self.amqp_url = Some(url.to_string());
        self
    }

    /// [`AppBuilder::build`], then starts the worker in-process.
    pub async fn start(self) -> TestApp {
        let mut app = self.build().await;
        app.start_worker();
        app
    }
}

impl TestApp {
    /// Serves the running worker's `/metrics`, `/healthz` and `/readyz` on 127.0.0.1 (an
    /// OS-chosen port) until the worker stops; returns the base URL.
    pub async fn serve_operations(&self) -> String {
        let worker = self.worker.as_ref().expect("worker started");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(webhook_relay::ops::server::serve(
            listener,
            worker.metrics.clone(),
            worker.shutdown.clone(),
        ));
        format!("http://{addr}")
    }

    /// Publishes an event with routing key = its event_type, persistent, confirmed.
    pub async fn publish(&self, event: &Value) {
        let key = event["event_type"]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        self.publish_raw(event.to_string().as_bytes(), &key, None)
            .await;
    }

    /// Publishes an event like [`TestApp::publish`], with the AMQP `message_id` set.
    pub async fn publish_with_id(&self, event: &Value, message_id: &str) {
        let key = event["event_type"]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        self.publish_raw(event.to_string().as_bytes(), &key, Some(message_id))
            .await;
    }

    /// Publishes raw bytes, optionally with a message id.
    pub async fn publish_raw(&self, body: &[u8], routing_key: &str, message_id: Option<&str>) {
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        if let Some(id) = message_id {
            properties = properties.with_message_id(id.into());
        }
        self.admin
            .publisher()
            .publish_confirmed(&self.config.amqp.exchange, routing_key, body, properties)
            .await
            .expect("publish confirmed");
    }

    /// Waits until `check` holds or `timeout` passes; returns whether it held.
    pub async fn eventually<F: Fn() -> bool>(&self, timeout: Duration, check: F) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        check()
    }

    /// The current value of one of the running worker's counters, e.g. `app.count(Metrics::acked)`.
    pub fn count(&self, pick: fn(&Metrics) -> u64) -> u64 {
        pick(self.metrics())
    }

    /// Waits until the counter picked by `pick` reaches at least `n`; returns whether it did
    /// within `timeout`.
    pub async fn wait_count(&self, pick: fn(&Metrics) -> u64, n: u64, timeout: Duration) -> bool {
        self.eventually(timeout, || self.count(pick) >= n).await
    }

    /// Deletes the dead-letter queue behind the worker's back (the worker declares it only when
    /// it connects), so that dead letters become unroutable.
    pub async fn delete_dead_letter_queue(&self) {
        self.admin
            .channel()
            .queue_delete(
                self.config.amqp.dead_letter_queue.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await
            .expect("delete the dead-letter queue");
    }

    /// Declares the test's exchange and queues again (e.g. after
    /// [`TestApp::delete_dead_letter_queue`]).
    pub async fn redeclare_topology(&self) {
        let mut settings = self.config.amqp.clone();
        settings.declare = true;
        self.admin
            .declare_topology(&settings)
            .await
            .expect("declare test topology again");
    }
}

/// The shipped Logz.io webhook (`config/webhooks/logzio.toml`), exactly as shipped except
/// that its URL points at listener 0 (`@URL0@`), as `webhook-relay demo` does.
pub fn shipped_logzio_webhook() -> String {
    const SHIPPED: &str = include_str!("../../config/webhooks/logzio.toml");
    const SHIPPED_URL: &str = "https://listener.logz.io/?token=${LOGZIO_TOKEN}&type=apono";
    assert!(
        SHIPPED.contains(SHIPPED_URL),
        "config/webhooks/logzio.toml no longer holds the listener URL"
    );
    SHIPPED.replace(SHIPPED_URL, "@URL0@")
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// An approval whose `data.id` and message id (so its event id) are `id`.
pub async fn publish_id(app: &TestApp, id: &str) {
    let event = sample_with(Trigger::RequestApproved, |e| {
        e["data"]["id"] = id.into();
    });
    app.publish_raw(event.to_string().as_bytes(), "RequestApproved", Some(id))
        .await;
}

/// Publishes an approval with id `{prefix}-{i}` (see [`publish_id`]) for every `i` in
/// `range`; returns the ids.
pub async fn publish_ids(app: &TestApp, prefix: &str, range: Range<usize>) -> Vec<String> {
    let mut ids = Vec::new();
    for i in range {
        let id = format!("{prefix}-{i}");
        publish_id(app, &id).await;
        ids.push(id);
    }
    ids
}

/// How many requests the listener got per event id.
pub fn received_ids(listener: &LocalLogzio) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in listener.requests() {
        let id = request
            .header("x-relay-event-id")
            .unwrap_or("?")
            .to_string();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// A plain GET (e.g. of the operations endpoints): the status and the body.
pub async fn http_get(url: &str) -> (u16, String) {
    webhook_relay::tls::install_crypto_provider();
    let response = reqwest::get(url).await.expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The value of one sample line of a Prometheus exposition, `0` when absent.
pub fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}
