//! `spawn_app`-style harness, shared by both test binaries: every test gets its own exchange
//! and queues (unique names on the shared broker), its own local Logz.io listeners with
//! throwaway certificates, a config folder written to a temp dir, and the real worker running
//! in-process or as the real binary. What only the integration tests use is in
//! `tests/it/harness.rs`, on top of this.

use crate::support::logzio::{self, LocalLogzio};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use webhook_relay::broker::{Broker, Inbound};
use webhook_relay::config::{self, Config, Env};
use webhook_relay::ops::metrics::Metrics;
use webhook_relay::worker;

/// The broker every test shares; `RABBITMQ_URL` overrides it.
pub fn rabbitmq_url() -> String {
    std::env::var("RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

/// A unique prefix for one test's exchange and queues.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "it-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Events and webhooks for one test, before it starts. The fields that only the integration
/// tests set (`tests/it/harness.rs`) are visible to the crate.
pub struct AppBuilder {
    test: String,
    listeners: usize,
    webhooks: Vec<String>,
    relay_extra: String,
    pub(crate) amqp_extra: String,
    delivery: String,
    pub(crate) amqp_url: Option<String>,
    /// The broker the harness's own (admin) connection uses; [`rabbitmq_url`] unless set
    /// (the cluster tests point it at a cluster node).
    pub(crate) admin_url: Option<String>,
    env: Vec<(String, String)>,
    pub(crate) prefetch: u16,
}

/// Starts describing a test app. `test` names it in queue names.
pub fn app(test: &str) -> AppBuilder {
    AppBuilder {
        test: test.to_string(),
        listeners: 1,
        webhooks: Vec::new(),
        relay_extra: String::new(),
        amqp_extra: String::new(),
        delivery: r#"
timeout = "5s"
max_attempts = 4
initial_backoff = "50ms"
max_backoff = "200ms"
max_elapsed = "20s"
"#
        .to_string(),
        amqp_url: None,
        admin_url: None,
        env: Vec::new(),
        prefetch: 64,
    }
}

impl AppBuilder {
    /// How many local listeners to start; webhook text refers to them as `@URL0@`, `@URL1@`…
    /// (the URL with `${LOGZIO_TOKEN}` and `type=apono`).
    pub fn listeners(mut self, n: usize) -> Self {
        self.listeners = n;
        self
    }

    /// Adds webhook TOML (one or more `[[webhook]]` tables) as its own file.
    pub fn webhook(mut self, toml: &str) -> Self {
        self.webhooks.push(toml.to_string());
        self
    }

    /// Replaces the `[delivery]` table's body.
    pub fn delivery(mut self, body: &str) -> Self {
        self.delivery = body.to_string();
        self
    }

    /// Extra text appended to relay.toml (e.g. a `[shutdown]` table).
    pub fn relay_extra(mut self, text: &str) -> Self {
        self.relay_extra.push_str(text);
        self
    }

    /// An extra variable for `${VAR}` interpolation.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Writes the config, declares the topology and returns the app, worker not yet started.
    pub async fn build(self) -> TestApp {
        let mut listeners = Vec::new();
        for _ in 0..self.listeners {
            listeners.push(logzio::start().await);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let prefix = unique_prefix(&self.test);
        let ca: String = listeners.iter().map(|l| l.ca_pem().to_string()).collect();
        std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
        let ports: Vec<String> = listeners.iter().map(|l| l.port().to_string()).collect();
        let relay = format!(
            r#"[amqp]
url = "${{TEST_AMQP_URL}}"
exchange = "{prefix}"
queue = "{prefix}.in"
dead_letter_queue = "{prefix}.dlq"
prefetch = {prefetch}
reconnect_initial_backoff = "100ms"
reconnect_max_backoff = "500ms"
{amqp_extra}
[delivery]
{delivery}

[http]
ca_file = "ca.pem"

[policy]
allowed_ports = [{ports}]
{extra}
{shutdown}
"#,
            amqp_extra = self.amqp_extra,
            prefetch = self.prefetch,
            delivery = self.delivery,
            ports = ports.join(", "),
            extra = self.relay_extra,
            // A short grace, so a stuck test shows within the harness's own stop timeout.
            shutdown = [
                ("[shutdown]", "[shutdown]\ngrace = \"10s\"\n"),
                // Tests read the binary's log lines as text; the JSON test sets its own.
                ("[log]", "[log]\nformat = \"pretty\"\n"),
                // The binary would take the default 127.0.0.1:9090, which tests share.
                ("[server]", "[server]\nlisten = \"\"\n"),
            ]
            .iter()
            .filter(|(table, _)| !self.relay_extra.contains(table))
            .map(|(_, text)| *text)
            .collect::<String>(),
        );
        std::fs::write(dir.path().join("relay.toml"), relay).unwrap();
        std::fs::create_dir(dir.path().join("webhooks")).unwrap();
        for (i, text) in self.webhooks.iter().enumerate() {
            let mut text = text.clone();
            for (n, listener) in listeners.iter().enumerate() {
                text = text.replace(
                    &format!("@URL{n}@"),
                    &format!(
                        "https://127.0.0.1:{}/?token=${{LOGZIO_TOKEN}}&type=apono",
                        listener.port()
                    ),
                );
                text = text.replace(&format!("@PORT{n}@"), &listener.port().to_string());
            }
            std::fs::write(dir.path().join(format!("webhooks/{i:02}.toml")), text).unwrap();
        }
        let mut env = vec![
            ("LOGZIO_TOKEN".to_string(), logzio::TEST_TOKEN.to_string()),
            (
                "TEST_AMQP_URL".to_string(),
                self.amqp_url.clone().unwrap_or_else(rabbitmq_url),
            ),
        ];
        env.extend(self.env.clone());
        let config = config::load(dir.path(), &Env::from_pairs(env.clone()))
            .unwrap_or_else(|e| panic!("test config does not load:\n{e}"));
        let config = Arc::new(config);
        // The admin connection goes straight to the broker, never through a test's proxy.
        let admin_url = self.admin_url.clone().unwrap_or_else(rabbitmq_url);
        let mut admin_settings = config.amqp.clone();
        admin_settings.url = webhook_relay::redact::Secret::new(admin_url.clone());
        // The test's topology exists before the worker starts, even with `declare = false`.
        admin_settings.declare = true;
        let admin = Broker::connect(&admin_settings, &config.redactor)
            .await
            .expect("admin connection to RabbitMQ (is it running? scripts/test starts it)");
        admin
            .declare_topology(&admin_settings)
            .await
            .expect("declare test topology");
        admin
            .declare_retry_topology(&admin_settings, &config.webhooks)
            .await
            .expect("declare test retry topology");
        TestApp {
            dir,
            env,
            config,
            listeners,
            admin,
            admin_url,
            worker: None,
            cleaned: false,
        }
    }
}

/// A running in-process worker.
pub struct RunningWorker {
    pub shutdown: CancellationToken,
    pub metrics: Arc<Metrics>,
    pub handle: tokio::task::JoinHandle<Result<(), worker::WorkerError>>,
}

/// One test's world.
pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    pub config: Arc<Config>,
    pub listeners: Vec<LocalLogzio>,
    pub admin: Broker,
    /// The URL `admin` connected to (then `amqp.urls` in turn).
    pub admin_url: String,
    pub worker: Option<RunningWorker>,
    cleaned: bool,
}

impl TestApp {
    /// The first listener.
    pub fn listener(&self) -> &LocalLogzio {
        &self.listeners[0]
    }

    /// The config folder.
    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the worker in-process.
    pub fn start_worker(&mut self) {
        let shutdown = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        let handle = tokio::spawn(worker::run(
            self.config.clone(),
            shutdown.clone(),
            metrics.clone(),
        ));
        self.worker = Some(RunningWorker {
            shutdown,
            metrics,
            handle,
        });
    }

    /// The running worker's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.worker.as_ref().expect("worker started").metrics
    }

    /// Stops the in-process worker and waits for it.
    pub async fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.shutdown.cancel();
            let result = tokio::time::timeout(Duration::from_secs(30), worker.handle)
                .await
                .expect("worker stops within 30s")
                .expect("worker task does not panic");
            result.expect("worker ends without error");
        }
    }

    /// Takes up to `n` dead letters, waiting up to `timeout` for them. They stay unacked
    /// and are removed with the queue at the end.
    pub async fn dead_letters(&self, n: usize, timeout: Duration) -> Vec<Inbound> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n && Instant::now() < deadline {
            match self
                .admin
                .fetch(&self.config.amqp.dead_letter_queue)
                .await
                .expect("basic.get")
            {
                Some(letter) => out.push(letter),
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        out
    }

    /// Messages ready in a queue (not counting unacked ones).
    pub async fn ready_count(&self, queue: &str) -> u32 {
        let channel = self.admin.channel();
        let declared = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .expect("passive declare");
        declared.message_count()
    }

    /// Messages ready anywhere on `webhook`'s retry path (its retry queue and wait queues).
    pub async fn retry_path_count(&self, webhook: &str) -> u32 {
        let hook = self
            .config
            .webhook(webhook)
            .expect("webhook in the test config");
        let queue = &self.config.amqp.queue;
        let mut total = self
            .ready_count(&webhook_relay::broker::topology::retry_queue(
                queue, webhook,
            ))
            .await;
        for tier in webhook_relay::broker::topology::tiers(&hook.delivery) {
            total += self
                .ready_count(&webhook_relay::broker::topology::wait_queue(
                    queue, webhook, tier,
                ))
                .await;
        }
        total
    }

    /// Stops the worker and deletes the test's exchange and queues.
    pub async fn finish(mut self) {
        self.stop_worker().await;
        self.admin
            .delete_topology(&self.config.amqp, &self.config.webhooks)
            .await
            .expect("delete test topology");
        self.admin.close().await;
        self.cleaned = true;
    }
}

impl Drop for TestApp {
    /// A test that failed half-way still removes its queues, from a thread of its own since
    /// drop cannot await.
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        if let Some(worker) = &self.worker {
            worker.shutdown.cancel();
        }
        let settings = self.config.amqp.clone();
        let webhooks = self.config.webhooks.clone();
        let redactor = self.config.redactor.clone();
        let admin_url = self.admin_url.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let mut settings = settings;
                settings.url = webhook_relay::redact::Secret::new(admin_url);
                if let Ok(broker) = Broker::connect(&settings, &redactor).await {
                    let _ = broker.delete_topology(&settings, &webhooks).await;
                    broker.close().await;
                }
            });
        })
        .join();
    }
}

/// The harness's variables for a child process ([`crate::support::child`]), plus `extra`.
pub fn child_env(app: &TestApp, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = app.env.clone();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// A sample event of `trigger` with its fields adjusted by `edit`.
pub fn sample_with(
    trigger: webhook_relay::model::event::Trigger,
    edit: impl FnOnce(&mut Value),
) -> Value {
    let mut event = webhook_relay::model::event::sample(trigger);
    edit(&mut event);
    event
}
