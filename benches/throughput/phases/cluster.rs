//! The cluster phase (issue #11): 1, 2 and 3 release workers draining one quorum queue on the
//! local 3-node cluster (`scripts/cluster up`, nodes on 127.0.0.1:5701-5703), into a fast sink
//! (nginx: broker-bound) and into one that answers after 20 ms (the in-process `LocalLogzio`:
//! endpoint-bound), each against the same number of bare consumers on the same cluster.

use crate::broker::{connect, preload};
use crate::proc::{Worker, free_port};
use crate::report::{Drain, Skipped};
use crate::setup::{PREFETCH, TOKEN, event_body, single_webhook, write_config};
use crate::{Bench, STALL, err};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::time::{Duration, Instant};
use webhook_relay::broker::{Broker, leader};
use webhook_relay::config::{self, Config, Env};
use webhook_relay::devtools::local_logzio::LocalLogzio;
use webhook_relay::ops::metrics::SETTLED;
use webhook_relay::redact::Redactor;

/// The local cluster's nodes, as `scripts/cluster up` starts them.
pub const CLUSTER_PORTS: [u16; 3] = [5701, 5702, 5703];
/// The management API of the first node, when `scripts/cluster up` enabled it.
const MANAGEMENT_PORT: u16 = 15701;
/// What the slow sink waits before it answers.
const SLOW_ANSWER: Duration = Duration::from_millis(20);
/// The slow phase's per-webhook `concurrency`: small, so that each worker is bound by the
/// endpoint (16 / 20 ms = 800 events/s), not by the broker or the two cores.
const SLOW_CONCURRENCY: u32 = 16;
/// How often the workers' `/metrics` are read for their acks.
const ACK_POLL: Duration = Duration::from_millis(20);

/// Which sink a cluster drain delivers to.
#[derive(Clone, Copy, PartialEq)]
enum Sink {
    Fast,
    Slow,
}

impl Sink {
    fn label(self) -> &'static str {
        match self {
            Sink::Fast => "fast sink",
            Sink::Slow => "20 ms sink",
        }
    }
}

fn node_url(port: u16) -> String {
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

/// Whether every node of the local cluster accepts TCP connections.
fn cluster_up() -> bool {
    CLUSTER_PORTS.iter().all(|port| {
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], *port)),
            Duration::from_secs(1),
        )
        .is_ok()
    })
}

fn management_up() -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], MANAGEMENT_PORT)),
        Duration::from_secs(1),
    )
    .is_ok()
}

impl Bench {
    /// Every cluster drain: for 1, 2 and 3 workers, the fast sink and the slow one, each after
    /// as many bare consumers drained the same backlog.
    pub async fn cluster(&mut self) -> Result<Result<Vec<Drain>, Skipped>, String> {
        if !cluster_up() {
            return Ok(Err(Skipped {
                phase: "cluster".into(),
                why: "the local cluster is not running on 127.0.0.1:5701-5703 \
                      (scripts/bench --phases cluster starts it; or scripts/cluster up)"
                    .into(),
            }));
        }
        let mut drains = Vec::new();
        for sink in [Sink::Fast, Sink::Slow] {
            let events = match sink {
                Sink::Fast => self.args.cluster_events,
                Sink::Slow => self.args.cluster_events / 5,
            };
            for workers in 1..=3usize {
                eprintln!(
                    "\n== cluster, {}, {workers} worker(s), {events} events",
                    sink.label()
                );
                let bare = self.cluster_run(sink, workers, events, true).await?;
                eprintln!("bare x{workers}: {:.0} events/s", bare.rate());
                let mut drain = self.cluster_run(sink, workers, events, false).await?;
                drain.bare_rate = Some(bare.rate());
                eprintln!(
                    "workers x{workers}: {:.0} events/s ({:.2}x bare)",
                    drain.rate(),
                    drain.rate() / bare.rate()
                );
                drains.push(bare);
                drains.push(drain);
            }
        }
        Ok(Ok(drains))
    }

    /// One drain of `events` on its own quorum queue by `n` workers (or bare consumers), the
    /// queues deleted afterwards whatever happened.
    async fn cluster_run(
        &mut self,
        sink: Sink,
        n: usize,
        events: u64,
        bare: bool,
    ) -> Result<Drain, String> {
        let what = if bare { "bare" } else { "workers" };
        let (prefix, dir) = self.next_phase(&format!("cluster-{what}-{n}"));
        let slow = match sink {
            Sink::Slow => {
                let sink = LocalLogzio::start(TOKEN).await.map_err(err)?;
                sink.set_delay(SLOW_ANSWER);
                Some(sink)
            }
            Sink::Fast => None,
        };
        let (port, ca) = match &slow {
            Some(sink) => (sink.port(), sink.ca_pem().to_string()),
            None => (self.nginx_port()?, self.cert.ca_pem().to_string()),
        };
        let mut webhook = single_webhook(port);
        if sink == Sink::Slow {
            webhook = with_concurrency(&webhook, SLOW_CONCURRENCY);
        }
        let dirs: Vec<_> = (0..n.max(1))
            .map(|k| dir.join(format!("worker-{k}")))
            .collect();
        let mut metrics_ports = Vec::new();
        for (k, worker_dir) in dirs.iter().enumerate() {
            let metrics_port = free_port()?;
            metrics_ports.push(metrics_port);
            let keys = cluster_keys(k, metrics_port);
            write_config(worker_dir, &prefix, port, &ca, &webhook, &keys)?;
        }
        let env = cluster_env();
        let config = config::load(&dirs[0], &env).map_err(|e| e.to_string())?;
        let broker = Broker::connect(&config.amqp, &config.redactor)
            .await
            .map_err(err)?;
        broker.declare_topology(&config.amqp).await.map_err(err)?;
        broker
            .declare_retry_topology(&config.amqp, &config.webhooks)
            .await
            .map_err(err)?;
        let result = self
            .cluster_drain(&config, &dirs, &metrics_ports, &env, events, bare)
            .await;
        let _ = broker.delete_topology(&config.amqp, &config.webhooks).await;
        broker.close().await;
        if let Some(sink) = slow {
            sink.shutdown().await;
        }
        let mut drain = result?;
        drain.phase = format!(
            "cluster {}, {n} {}",
            sink.label(),
            if bare { "bare consumers" } else { "workers" }
        );
        Ok(drain)
    }

    async fn cluster_drain(
        &self,
        config: &Config,
        dirs: &[std::path::PathBuf],
        metrics_ports: &[u16],
        env: &Env,
        events: u64,
        bare: bool,
    ) -> Result<Drain, String> {
        let order = node_order(config).await;
        let connection = connect(&node_url(order[0])).await?;
        let loaded = preload(&connection, &config.amqp, events, event_body).await?;
        let _ = connection.close(200, "done".into()).await;
        eprintln!("pre-loaded {events} events in {:.1}s", loaded.as_secs_f64());
        if bare {
            return bare_consumers(config, dirs.len(), events, &order).await;
        }
        let mut workers = Vec::new();
        for dir in dirs {
            workers.push(Worker::spawn(dir, env, &self.args.rust_log)?);
        }
        let started = Instant::now();
        let finished = wait_acked(&mut workers, metrics_ports, events).await;
        let seconds = started.elapsed().as_secs_f64();
        let peaks: Vec<u64> = workers.iter().filter_map(Worker::peak_rss).collect();
        let acked = finished?;
        let mut notes = vec![format!(
            "clock from the workers' start to the last ack; peak RSS per worker: {}",
            peaks
                .iter()
                .map(|p| format!("{:.1} MiB", *p as f64 / (1024.0 * 1024.0)))
                .collect::<Vec<_>>()
                .join(", ")
        )];
        if acked > events {
            notes.push(format!("{} more acks than events", acked - events));
        }
        for worker in &mut workers {
            worker.stop().await;
        }
        Ok(Drain {
            phase: String::new(),
            events,
            requests: None,
            seconds,
            peak_rss: peaks.iter().copied().max(),
            cpu: None,
            versus_bare: false,
            bare_rate: None,
            notes,
        })
    }
}

/// Worker `k`'s `[amqp]` and `[server]` keys: the node `k` of the cluster first, the others
/// after it, quorum queues, and the management API (to connect to the leader) when up.
fn cluster_keys(k: usize, metrics_port: u16) -> Vec<(&'static str, String)> {
    let first = CLUSTER_PORTS[k % CLUSTER_PORTS.len()];
    let others: Vec<String> = CLUSTER_PORTS
        .iter()
        .filter(|p| **p != first)
        .map(|p| format!("\"{}\"", node_url(*p)))
        .collect();
    let mut keys = vec![
        ("url", format!("\"{}\"", node_url(first))),
        ("urls", format!("[{}]", others.join(", "))),
        ("queue_type", "\"quorum\"".to_string()),
        ("listen", format!("\"127.0.0.1:{metrics_port}\"")),
    ];
    if management_up() {
        keys.push((
            "# management_url",
            format!("\"http://127.0.0.1:{MANAGEMENT_PORT}\""),
        ));
    }
    keys
}

fn cluster_env() -> Env {
    Env::from_pairs([("LOGZIO_TOKEN", TOKEN)])
}

/// The seed webhook with `[webhook.delivery] concurrency` set.
fn with_concurrency(webhook: &str, concurrency: u32) -> String {
    format!("{webhook}\n[webhook.delivery]\nconcurrency = {concurrency}\n")
}

/// The node ports, the input queue's leader first when the management API says which.
async fn node_order(config: &Config) -> Vec<u16> {
    let mut ports = CLUSTER_PORTS.to_vec();
    if let Ok((leader_node, listeners)) = leader::lookup(&config.amqp, &Redactor::default()).await {
        let candidates: Vec<(String, u16)> = ports
            .iter()
            .map(|p| ("127.0.0.1".to_string(), *p))
            .collect();
        ports = leader::order(&candidates, &leader_node, &listeners)
            .into_iter()
            .map(|i| CLUSTER_PORTS[i])
            .collect();
    }
    ports
}

/// `n` lapin consumers, each on its own connection (to the leader when known, else node by
/// node), with the worker's prefetch, that only ack: from `basic.consume` to the last ack.
async fn bare_consumers(
    config: &Config,
    n: usize,
    events: u64,
    order: &[u16],
) -> Result<Drain, String> {
    let leader_known = management_up();
    let mut connections = Vec::new();
    for k in 0..n {
        let port = if leader_known {
            order[0]
        } else {
            CLUSTER_PORTS[k % CLUSTER_PORTS.len()]
        };
        connections.push(connect(&node_url(port)).await?);
    }
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (k, connection) in connections.iter().enumerate() {
        let channel = connection.create_channel().await.map_err(err)?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(err)?;
        let mut consumer = channel
            .basic_consume(
                config.amqp.queue.as_str().into(),
                format!("relay-bench-cluster-bare-{k}").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            use std::sync::atomic::Ordering;
            // The consumer whose ack is the N-th records that instant; the others only notice
            // the end at their next poll, which must not count.
            let mut last_ack = None;
            while acked.load(Ordering::Relaxed) < events {
                match tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
                    Ok(Some(Ok(delivery))) => {
                        delivery
                            .acker
                            .ack(BasicAckOptions::default())
                            .await
                            .map_err(err)?;
                        if acked.fetch_add(1, Ordering::Relaxed) + 1 == events {
                            last_ack = Some(Instant::now());
                        }
                    }
                    Ok(Some(Err(e))) => return Err(format!("consume: {e}")),
                    Ok(None) => return Err("a consumer ended".to_string()),
                    Err(_) => {}
                }
            }
            Ok::<_, String>(last_ack)
        }));
    }
    let deadline = tokio::time::Instant::now() + STALL;
    let mut last = started;
    for task in tasks {
        let done = tokio::time::timeout_at(deadline, task)
            .await
            .map_err(|_| format!("bare consumers stalled within {}s", STALL.as_secs()))?
            .map_err(err)??;
        if let Some(done) = done {
            last = last.max(done);
        }
    }
    for connection in connections {
        let _ = connection.close(200, "done".into()).await;
    }
    Ok(Drain {
        phase: String::new(),
        events,
        requests: None,
        seconds: (last - started).as_secs_f64(),
        peak_rss: None,
        cpu: None,
        versus_bare: false,
        bare_rate: None,
        notes: vec![format!(
            "{n} lapin consumer(s) in the bench process, prefetch {PREFETCH} each, acking one by one"
        )],
    })
}

/// Reads every worker's `/metrics` until together they acked `events`: that many acks, or
/// why not (a worker exited, or no progress for [`STALL`]).
async fn wait_acked(workers: &mut [Worker], ports: &[u16], events: u64) -> Result<u64, String> {
    let mut progress = (0u64, Instant::now());
    loop {
        let mut acked = 0u64;
        for (worker, port) in workers.iter_mut().zip(ports) {
            if let Some(exit) = worker.exited() {
                return Err(format!(
                    "a worker exited ({exit:?}): {}",
                    crate::first_line(&worker.log_text())
                ));
            }
            if let Ok(metrics) = worker.metrics(*port).await {
                acked += super::drain::counter(&metrics, SETTLED, "result=\"acked\"") as u64;
            }
        }
        if acked >= events {
            return Ok(acked);
        }
        if acked != progress.0 {
            progress = (acked, Instant::now());
        } else if progress.1.elapsed() > STALL {
            return Err(format!(
                "stalled: {acked} of {events} acked, nothing for {}s",
                STALL.as_secs()
            ));
        }
        tokio::time::sleep(ACK_POLL).await;
    }
}
