//! What every chaos scenario shares: one scenario at a time, bulk publishing with pipelined
//! confirms, counting deliveries per event id, and driving the broker with `rabbitmqctl`.

use crate::bulk::publish_confirmed;
pub use crate::bulk::{
    Outgoing, approval, approvals, delivered, duplicates, event_id, missing, wait_delivered,
    wait_progress,
};
use crate::support::harness::{TestApp, rabbitmq_url};
use crate::support::logzio::Received;
use crate::tools::run_tool;
use lapin::{Connection, ConnectionProperties};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use webhook_relay::broker::Broker;

/// No scenario may take longer than this (each is meant to stay well under a minute).
const SCENARIO_LIMIT: Duration = Duration::from_secs(90);

/// Some scenarios stop the broker or close all its connections, and all of them load the
/// machine: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The header each worker process adds to its requests (`CHAOS_WORKER`), so the listener can
/// tell which process sent what.
pub const WORKER_HEADER: &str = "x-chaos-worker";

/// Runs one scenario alone, bounded by [`SCENARIO_LIMIT`], and prints how long it took.
pub async fn scenario(name: &str, body: impl Future<Output = ()>) {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    println!("[chaos] {name}: started");
    if tokio::time::timeout(SCENARIO_LIMIT, body).await.is_err() {
        panic!("[chaos] {name}: still running after {SCENARIO_LIMIT:?}");
    }
    println!(
        "[chaos] {name}: passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Publishes every message persistent and mandatory on a connection of its own, with the
/// confirms pipelined ([`publish_confirmed`]). Panics on a nack or an unroutable message.
pub async fn publish_bulk(app: &TestApp, messages: &[Outgoing]) {
    let started = Instant::now();
    let connection = Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
        .await
        .expect("publisher connection");
    publish_confirmed(&connection, &app.config.amqp.exchange, messages).await;
    let _ = connection.close(200, "published".into()).await;
    println!(
        "[chaos]   published {} messages in {:.2}s",
        messages.len(),
        started.elapsed().as_secs_f64()
    );
}

/// The worker process a request came from (`CHAOS_WORKER`).
pub fn worker_of(request: &Received) -> &str {
    request.header(WORKER_HEADER).unwrap_or("?")
}

/// Asserts that every id got through, and prints how often each got through more than once.
pub fn assert_all_and_report(
    scenario: &str,
    webhook: &str,
    ids: &[String],
    evidence: &HashMap<String, usize>,
    all: &HashMap<String, usize>,
) -> usize {
    let lost = missing(ids, evidence);
    assert!(
        lost.is_empty(),
        "{scenario}: {} of {} events never reached `{webhook}`, e.g. {:?}",
        lost.len(),
        ids.len(),
        &lost[..lost.len().min(10)]
    );
    let dups = duplicates(all);
    let most = all.values().copied().max().unwrap_or(0);
    println!(
        "[chaos]   {scenario}: `{webhook}` received all {} events; {dups} duplicate deliveries \
         (most for one event: {most})",
        ids.len()
    );
    dups
}

/// Once the workers are stopped, nothing may be left anywhere: the input queue and every
/// webhook's retry path are empty, and the dead-letter queue holds exactly `dead_letters`.
pub async fn assert_settled(app: &TestApp, dead_letters: u32) {
    assert_eq!(
        app.ready_count(&app.config.amqp.queue).await,
        0,
        "messages left in the input queue"
    );
    for webhook in &app.config.webhooks {
        assert_eq!(
            app.retry_path_count(&webhook.name).await,
            0,
            "messages left on the retry path of `{}`",
            webhook.name
        );
    }
    assert_eq!(
        app.ready_count(&app.config.amqp.dead_letter_queue).await,
        dead_letters,
        "dead letters"
    );
}

/// The in-process worker's counters, kept past its stop.
pub fn stats_of(app: &TestApp) -> std::sync::Arc<webhook_relay::ops::metrics::Metrics> {
    app.worker.as_ref().expect("worker started").metrics.clone()
}

/// Replaces the harness's admin connection (the broker closed it).
pub async fn reconnect_admin(app: &mut TestApp) {
    let mut settings = app.config.amqp.clone();
    settings.url = webhook_relay::redact::Secret::new(rabbitmq_url());
    app.admin = Broker::connect(&settings, &app.config.redactor)
        .await
        .expect("admin connection after the broker came back");
}

/// Waits until the broker accepts AMQP connections again.
pub async fn wait_broker_ready(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect(&rabbitmq_url(), ConnectionProperties::default()),
        )
        .await;
        if let Ok(Ok(connection)) = attempt {
            let _ = connection.close(200, "ready".into()).await;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the broker does not accept connections {timeout:?} after start_app"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Set by `.ci/run`: a scenario that needs `rabbitmqctl` fails instead of skipping.
pub const REQUIRE_CTL_ENV: &str = "CHAOS_REQUIRE_RABBITMQCTL";

/// `rabbitmqctl`, if it is installed and the broker is the local one it controls.
pub fn rabbitmqctl() -> Option<PathBuf> {
    let url = url::Url::parse(&rabbitmq_url()).ok()?;
    if !matches!(url.host_str(), Some("127.0.0.1" | "localhost")) {
        return None;
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/lib/rabbitmq/bin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("rabbitmqctl"))
        .find(|p| p.is_file())
}

/// `rabbitmqctl`, or `None` after printing why the scenario is skipped (a failure instead
/// when [`REQUIRE_CTL_ENV`] is set).
pub fn rabbitmqctl_or_skip(scenario: &str) -> Option<PathBuf> {
    let found = rabbitmqctl();
    if found.is_none() {
        let why = "rabbitmqctl is not installed (it comes with the rabbitmq-server package; \
                   scripts/ensure-rabbitmq installs it) or RABBITMQ_URL is not a local broker";
        if std::env::var_os(REQUIRE_CTL_ENV).is_some() {
            panic!("[chaos] {scenario}: {why}, and {REQUIRE_CTL_ENV} is set");
        }
        println!("[chaos] {scenario}: SKIPPED: {why}");
    }
    found
}

/// Runs `rabbitmqctl args…`, failing the test if it fails or takes over a minute.
pub async fn ctl(path: &std::path::Path, args: &[&str]) {
    run_tool(path, "rabbitmqctl", args, Duration::from_secs(60), "chaos").await;
}

/// While alive after `rabbitmqctl stop_app`, dropping it (a failed test) starts the broker
/// app again so that the scenarios after it have a broker.
pub struct BrokerAppStopped {
    ctl: PathBuf,
    stopped: bool,
}

impl BrokerAppStopped {
    /// Stops the broker app.
    pub async fn stop(ctl_path: &std::path::Path) -> BrokerAppStopped {
        let guard = BrokerAppStopped {
            ctl: ctl_path.to_path_buf(),
            stopped: true,
        };
        ctl(ctl_path, &["stop_app"]).await;
        guard
    }

    /// Starts the broker app and waits until it accepts connections.
    pub async fn start(mut self) {
        ctl(&self.ctl, &["start_app"]).await;
        self.stopped = false;
        wait_broker_ready(Duration::from_secs(60)).await;
    }
}

impl Drop for BrokerAppStopped {
    fn drop(&mut self) {
        if self.stopped {
            let _ = std::process::Command::new(&self.ctl)
                .arg("start_app")
                .status();
        }
    }
}
