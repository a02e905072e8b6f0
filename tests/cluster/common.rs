//! What every cluster scenario shares: the cluster itself (`scripts/cluster`), one scenario
//! at a time, a test app whose queues are quorum queues on the cluster, in-process workers
//! that prefer a given node, bulk publishing, counting deliveries per event id, and finding
//! the node that leads a queue.

use crate::bulk::publish_confirmed;
pub use crate::bulk::{
    Outgoing, approvals, delivered, duplicates, event_id, missing, wait_delivered, wait_progress,
};
use crate::support::harness::{AppBuilder, TestApp, app};
use crate::support::logzio::{LocalLogzio, Received};
use crate::tools::run_tool;
use lapin::options::BasicGetOptions;
use lapin::{Connection, ConnectionProperties};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use webhook_relay::broker::Broker;
use webhook_relay::config::{self, Env};
use webhook_relay::ops::metrics::Metrics;
use webhook_relay::worker;

/// No scenario may take longer than this (each is meant to stay well under a minute).
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

/// Scenarios stop and start cluster nodes: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Set by `.ci/run`: without `rabbitmq-server`, a scenario fails instead of skipping.
pub const REQUIRE_ENV: &str = "CLUSTER_REQUIRE";

/// The header each worker adds to its requests (`CLUSTER_WORKER`), so the listener can tell
/// which worker sent what.
pub const WORKER_HEADER: &str = "x-cluster-worker";

/// Input prefetch of every worker in these scenarios.
pub const PREFETCH: usize = 16;

/// The cluster's nodes, numbered as `scripts/cluster` numbers them.
pub const NODES: [usize; 3] = [1, 2, 3];

/// The AMQP URL of node `n` (1..=3).
pub fn node_url(n: usize) -> String {
    format!("amqp://guest:guest@127.0.0.1:570{n}/%2f")
}

/// The nodes in the order a worker that prefers node `n` tries them: `n`, then the others.
pub fn prefer(n: usize) -> [String; 3] {
    [node_url(n), node_url(n % 3 + 1), node_url((n + 1) % 3 + 1)]
}

/// Runs one scenario alone, bounded by [`SCENARIO_LIMIT`], and prints how long it took.
pub async fn scenario(name: &str, body: impl Future<Output = ()>) {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    println!("[cluster] {name}: started");
    if tokio::time::timeout(SCENARIO_LIMIT, body).await.is_err() {
        panic!("[cluster] {name}: still running after {SCENARIO_LIMIT:?}");
    }
    println!(
        "[cluster] {name}: passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster")
}

/// Whether `rabbitmq-server` is installed here.
fn server_installed() -> bool {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/lib/rabbitmq/bin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.iter().any(|d| d.join("rabbitmq-server").is_file())
}

/// Makes sure the cluster is up (`scripts/cluster up`) and returns `true`; `false` after
/// printing why the scenario is skipped (a failure instead when [`REQUIRE_ENV`] is set).
pub async fn cluster_or_skip(scenario: &str) -> bool {
    if !server_installed() {
        let why = "rabbitmq-server is not installed, so scripts/cluster cannot start the \
                   local 3-node cluster";
        if std::env::var_os(REQUIRE_ENV).is_some() {
            panic!("[cluster] {scenario}: {why}, and {REQUIRE_ENV} is set");
        }
        println!("[cluster] {scenario}: SKIPPED: {why}");
        return false;
    }
    cluster(&["up"]).await;
    true
}

/// Runs `scripts/cluster args…`, failing the test if it fails or takes over 150 s.
pub async fn cluster(args: &[&str]) {
    run_tool(
        &script(),
        "scripts/cluster",
        args,
        Duration::from_secs(150),
        "cluster",
    )
    .await;
}

/// While alive after [`NodeStopped::stop`], dropping it (a failed test) starts the node again
/// so that the scenarios after it have a whole cluster.
pub struct NodeStopped {
    node: usize,
    stopped: bool,
}

impl NodeStopped {
    /// Stops node `n`'s RabbitMQ app (`scripts/cluster stop n`).
    pub async fn stop(node: usize) -> NodeStopped {
        let guard = NodeStopped {
            node,
            stopped: true,
        };
        cluster(&["stop", &node.to_string()]).await;
        guard
    }

    /// Starts the node again and waits until its app runs.
    pub async fn start(mut self) {
        cluster(&["start", &self.node.to_string()]).await;
        self.stopped = false;
    }
}

impl Drop for NodeStopped {
    fn drop(&mut self) {
        if self.stopped {
            let _ = std::process::Command::new(script())
                .args(["start", &self.node.to_string()])
                .status();
        }
    }
}

/// A test app on the cluster: quorum queues, declared through node 1 (so node 1 leads them),
/// `amqp.url` and `amqp.urls` from `TEST_AMQP_URL`, `CLUSTER_URL_B` and `CLUSTER_URL_C`
/// (each worker sets its own order), prefetch [`PREFETCH`].
pub fn cluster_app(test: &str, webhooks: &str) -> AppBuilder {
    let [a, b, c] = prefer(1);
    let mut builder = app(test)
        .webhook(webhooks)
        .env("CLUSTER_WORKER", "harness")
        .env("CLUSTER_URL_B", &b)
        .env("CLUSTER_URL_C", &c);
    builder.amqp_url = Some(a.clone());
    builder.admin_url = Some(a);
    builder.prefetch = PREFETCH as u16;
    builder.amqp_extra =
        "queue_type = \"quorum\"\nurls = [\"${CLUSTER_URL_B}\", \"${CLUSTER_URL_C}\"]\n"
            .to_string();
    builder
}

/// One in-process worker with its own broker URL order.
pub struct Worker {
    /// Its name, also sent in the [`WORKER_HEADER`] header.
    pub name: String,
    /// Its counters (connections made, messages acked, …).
    pub metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<Result<(), worker::WorkerError>>>,
}

impl Worker {
    /// Starts a worker of `app` named `name` that connects to `urls[0]`, then `urls[1]`,
    /// then `urls[2]`.
    pub fn start(app: &TestApp, name: &str, urls: &[String; 3]) -> Worker {
        Worker::start_with(app, name, urls, &[])
    }

    /// [`Worker::start`] with more variables in its environment (e.g. `RELAY__…` overrides).
    pub fn start_with(
        app: &TestApp,
        name: &str,
        urls: &[String; 3],
        extra: &[(&str, &str)],
    ) -> Worker {
        let mut overrides = vec![
            ("TEST_AMQP_URL", urls[0].as_str()),
            ("CLUSTER_URL_B", urls[1].as_str()),
            ("CLUSTER_URL_C", urls[2].as_str()),
            ("CLUSTER_WORKER", name),
        ];
        overrides.extend_from_slice(extra);
        let mut env: Vec<(String, String)> = app
            .env
            .iter()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .cloned()
            .collect();
        env.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let config = config::load(app.config_dir(), &Env::from_pairs(env))
            .unwrap_or_else(|e| panic!("worker {name}'s config does not load:\n{e}"));
        let shutdown = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        let handle = tokio::spawn(worker::run(
            Arc::new(config),
            shutdown.clone(),
            metrics.clone(),
        ));
        Worker {
            name: name.to_string(),
            metrics,
            shutdown,
            handle: Some(handle),
        }
    }

    /// Whether it is still running (it must not give up while nodes come and go).
    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Waits until it has made `n` connections in all, or panics after `timeout`.
    pub async fn wait_connections(&self, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.metrics.connections() < n {
            assert!(
                Instant::now() < deadline,
                "worker {} made {} connections, not {n}, within {timeout:?}",
                self.name,
                self.metrics.connections()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Shuts it down and waits for it; it must end without error.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let handle = self.handle.take().expect("running");
        let result = tokio::time::timeout(Duration::from_secs(40), handle)
            .await
            .unwrap_or_else(|_| panic!("worker {} stops within 40s", self.name))
            .expect("worker task does not panic");
        if let Err(e) = result {
            panic!("worker {} ended with an error: {e}", self.name);
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Opens a connection to the first node of `nodes` that answers.
pub async fn connect_any(nodes: &[usize]) -> Connection {
    for n in nodes {
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect(&node_url(*n), ConnectionProperties::default()),
        )
        .await;
        if let Ok(Ok(connection)) = attempt {
            return connection;
        }
    }
    panic!("no cluster node of {nodes:?} accepts connections");
}

/// Publishes every message to the app's exchange through node 1, persistent and mandatory,
/// with the confirms pipelined ([`publish_confirmed`]). Panics on a nack or an unroutable
/// message.
pub async fn publish_bulk(app: &TestApp, messages: &[Outgoing]) {
    let started = Instant::now();
    let connection = connect_any(&[1]).await;
    publish_confirmed(&connection, &app.config.amqp.exchange, messages).await;
    let _ = connection.close(200, "published".into()).await;
    println!(
        "[cluster]   published {} messages in {:.2}s",
        messages.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Messages ready in `queue`, asked of the first node of `nodes` that answers.
pub async fn ready_count(nodes: &[usize], queue: &str) -> u32 {
    let connection = connect_any(nodes).await;
    let channel = connection.create_channel().await.expect("channel");
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
    let _ = connection.close(200, "counted".into()).await;
    declared.message_count()
}

/// Reads up to `max` messages of `queue` through the first node of `nodes` that answers,
/// without taking them (they go back when the connection closes), and counts them per
/// `x-relay-event-id` header (or message id). While a quorum queue elects a new leader the
/// broker refuses `basic.get` (`INTERNAL_ERROR … noproc`, closing the connection): the read
/// starts over, for up to 30 s.
pub async fn peek_event_ids(nodes: &[usize], queue: &str, max: usize) -> HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match try_peek(nodes, queue, max).await {
            Ok(ids) => return ids,
            Err(e) if Instant::now() < deadline => {
                println!("[cluster]   reading {queue} again: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("cannot read {queue} for 30s: {e}"),
        }
    }
}

async fn try_peek(
    nodes: &[usize],
    queue: &str,
    max: usize,
) -> Result<HashMap<String, usize>, lapin::Error> {
    let connection = connect_any(nodes).await;
    let channel = connection.create_channel().await?;
    let mut out = HashMap::new();
    for _ in 0..max {
        let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let properties = &message.delivery.properties;
        let id = properties
            .headers()
            .as_ref()
            .and_then(|h| webhook_relay::broker::dead_letter::header_text(h, "x-relay-event-id"))
            .or_else(|| properties.message_id().as_ref().map(|m| m.to_string()))
            .unwrap_or_default();
        *out.entry(id).or_insert(0) += 1;
    }
    let _ = connection.close(200, "peeked".into()).await;
    Ok(out)
}

/// The node (1..=3) that leads quorum queue `queue` (`scripts/cluster leader`).
pub async fn leader_of(queue: &str) -> usize {
    let output = run_tool(
        &script(),
        "scripts/cluster",
        &["leader", queue],
        Duration::from_secs(60),
        "cluster",
    )
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("scripts/cluster leader {queue} printed {text:?}"))
}

/// Replaces the harness's admin connection (its node stopped) with one to the first node of
/// `nodes` that answers.
pub async fn reconnect_admin(app: &mut TestApp, nodes: &[usize]) {
    for n in nodes {
        let mut settings = app.config.amqp.clone();
        settings.url = webhook_relay::redact::Secret::new(node_url(*n));
        settings.fallback_urls.clear();
        if let Ok(broker) = Broker::connect(&settings, &app.config.redactor).await {
            app.admin = broker;
            app.admin_url = node_url(*n);
            return;
        }
    }
    panic!("no node of {nodes:?} accepts the admin connection");
}

/// The worker a request came from.
pub fn worker_of(request: &Received) -> &str {
    request.header(WORKER_HEADER).unwrap_or("?")
}

/// Per worker, how many of its `2xx` requests repeated an event already delivered (by
/// anyone): who the duplicates came from.
pub fn duplicates_by_worker(listener: &LocalLogzio) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::HashSet::new();
    let mut out = std::collections::BTreeMap::new();
    for request in listener.requests() {
        if !(200..300).contains(&request.status) {
            continue;
        }
        if let Some(id) = event_id(&request) {
            if !seen.insert(id.to_string()) {
                *out.entry(worker_of(&request).to_string()).or_insert(0) += 1;
            }
        }
    }
    out
}

/// Asserts that every id reached `webhook` and that the duplicates stay within `bound`;
/// prints the figures and returns the duplicates.
pub fn assert_all_within(
    scenario: &str,
    webhook: &str,
    ids: &[String],
    got: &HashMap<String, usize>,
    bound: usize,
) -> usize {
    let lost = missing(ids, got);
    assert!(
        lost.is_empty(),
        "{scenario}: {} of {} events never reached `{webhook}`, e.g. {:?}",
        lost.len(),
        ids.len(),
        &lost[..lost.len().min(10)]
    );
    let dups = duplicates(got);
    let most = got.values().copied().max().unwrap_or(0);
    println!(
        "[cluster]   {scenario}: `{webhook}` received all {} events; {dups} duplicate deliveries \
         (bound {bound}; most for one event: {most})",
        ids.len()
    );
    assert!(
        dups <= bound,
        "{scenario}: {dups} duplicate deliveries to `{webhook}`, more than {bound}"
    );
    dups
}

/// Once the workers are stopped, nothing is left in the input queue nor on any webhook's
/// retry path, and the dead-letter queue holds `dead_letters` messages.
pub async fn assert_settled(app: &TestApp, dead_letters: u32) {
    let queue = &app.config.amqp.queue;
    assert_eq!(
        ready_count(&NODES, queue).await,
        0,
        "messages left in the input queue"
    );
    for webhook in &app.config.webhooks {
        let mut names = vec![webhook_relay::broker::topology::retry_queue(
            queue,
            &webhook.name,
        )];
        for tier in webhook_relay::broker::topology::tiers(&webhook.delivery) {
            names.push(webhook_relay::broker::topology::wait_queue(
                queue,
                &webhook.name,
                tier,
            ));
        }
        for name in names {
            assert_eq!(
                ready_count(&NODES, &name).await,
                0,
                "messages left in {name}"
            );
        }
    }
    assert_eq!(
        ready_count(&NODES, &app.config.amqp.dead_letter_queue).await,
        dead_letters,
        "dead letters"
    );
}

/// Deletes the app's queues through a live node and stops its harness.
pub async fn finish(mut app: TestApp) {
    reconnect_admin(&mut app, &NODES).await;
    app.finish().await;
}
