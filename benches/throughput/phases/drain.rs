//! A backlog drained through the release worker into nginx: the single, batched and big
//! phases.

use crate::broker::{connect, message_count, preload, wait_consuming};
use crate::nginx::AccessLog;
use crate::proc::{Perf, Worker, free_port, gauge};
use crate::report::{Drain, Skipped};
use crate::setup::{
    BATCH_TABLE, big_event_body, big_sizes, event_body, not_available, single_webhook,
};
use crate::{Bench, STALL, err, first_line};
use lapin::{Channel, Connection};
use std::path::Path;
use std::time::{Duration, Instant};
use webhook_relay::config::{AmqpSettings, Config};
use webhook_relay::ops::metrics::{IN_FLIGHT_BYTES_PEAK, PREFETCH as PREFETCH_GAUGE, SETTLED};

/// How often the access log is read.
const LOG_POLL: Duration = Duration::from_millis(5);
/// How often `/metrics` is read for the last acks.
const ACK_POLL: Duration = Duration::from_millis(2);

/// One drain through the worker: what it is called, its backlog, and what differs from the
/// shipped config besides the bench's names, CA and port.
pub struct DrainSpec {
    /// The phase: its queue names, `--perf` file, and a skipped phase's line.
    pub name: &'static str,
    /// Its row in the tables.
    pub label: String,
    pub events: u64,
    /// `[webhook.batch]` added to the seed webhook.
    pub batched: bool,
    /// Events of ~450 kB ([`big_event_body`]) instead of the samples; the worker then serves
    /// `/metrics` on a port of its own and polls its gauges every second, so that the bench
    /// can read the bytes in flight.
    pub big: bool,
    /// `amqp.memory_budget`, when not the shipped one.
    pub memory_budget: Option<u64>,
}

impl DrainSpec {
    /// The seed webhook pointed at nginx on `port`, batched if asked for.
    fn webhook(&self, port: u16) -> String {
        let mut webhook = single_webhook(port);
        if self.batched {
            webhook.push_str(BATCH_TABLE);
        }
        webhook
    }

    /// The phase's own relay.toml settings: `/metrics` on `metrics_port` (where the bench
    /// reads the acks), polled gauges every second for big events.
    fn keys(&self, metrics_port: u16) -> Vec<(&'static str, String)> {
        let mut keys = vec![("listen", format!("\"127.0.0.1:{metrics_port}\""))];
        if self.big {
            keys.push(("interval", "\"1s\"".to_string()));
        }
        if let Some(budget) = self.memory_budget {
            keys.push(("memory_budget", budget.to_string()));
        }
        keys
    }
}

/// What the worker did between consuming and the N-th event answered.
struct Watched {
    seconds: f64,
    cpu: Option<Duration>,
    peak_rss: Option<u64>,
    /// The worker's log up to then.
    drain_log: String,
}

impl Bench {
    /// A drain through the release binary into nginx.
    pub async fn worker_drain(
        &mut self,
        spec: &DrainSpec,
    ) -> Result<Result<Drain, Skipped>, String> {
        let port = self.nginx_port()?;
        let (prefix, dir) = self.next_phase(spec.name);
        let metrics_port = free_port()?;
        let ca = self.cert.ca_pem().to_string();
        let webhook = spec.webhook(port);
        let keys = spec.keys(metrics_port);
        let config = match self
            .prepare(&dir, &prefix, port, &ca, &webhook, &keys)
            .await?
        {
            Ok(config) => config,
            Err(problem) => {
                return Ok(Err(Skipped {
                    phase: spec.name.into(),
                    why: not_available(&problem),
                }));
            }
        };
        let connection = connect(&self.args.amqp_url).await?;
        let body = if spec.big { big_event_body } else { event_body };
        let n = spec.events;
        let loaded = preload(&connection, &config.amqp, n, body).await?;
        eprintln!("pre-loaded {n} events in {:.1}s", loaded.as_secs_f64());
        let drained = self
            .drain(spec, &dir, &config, &connection, metrics_port)
            .await;
        let _ = connection.close(200, "done".into()).await;
        drained
    }

    /// Starts the worker on the pre-loaded backlog and measures it until nginx has answered
    /// every event; stops it, and says what else happened.
    async fn drain(
        &self,
        spec: &DrainSpec,
        dir: &Path,
        config: &Config,
        connection: &Connection,
        metrics_port: u16,
    ) -> Result<Result<Drain, Skipped>, String> {
        let n = spec.events;
        let mut log = self
            .nginx
            .as_ref()
            .ok_or("nginx is not running")?
            .access_log()?;
        log.skip_to_end()?;
        let mut worker = Worker::spawn(dir, &self.env(), &self.args.rust_log)?;
        let spawned = Instant::now();
        let probe = connection.create_channel().await.map_err(err)?;
        if let Err(exit) = wait_consuming(&probe, &config.amqp.queue, &mut worker).await? {
            return not_consuming(spec.name, spec.batched, exit, &worker.log_text());
        }
        let started = Instant::now();
        let startup = started - spawned;
        let watched = match self
            .watch(spec.name, n, &mut worker, &mut log, metrics_port, started)
            .await
        {
            Ok(watched) => watched,
            Err(why) => {
                worker.stop().await;
                return Err(why);
            }
        };
        // Anything beyond N (a retried request) shows up within a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        log.read()?;
        let mut notes = vec![
            format!("worker start to consuming {:.2}s", startup.as_secs_f64()),
            format!("{} TLS connections to nginx", log.connections.len()),
        ];
        if spec.big {
            notes.extend(big_notes(spec, config, &worker, metrics_port, watched.seconds).await);
        }
        let exit = worker.stop().await;
        notes.extend(sink_notes(&log, n));
        notes.extend(queue_notes(&probe, &config.amqp).await);
        if exit != Some(0) {
            notes.push(format!("worker exit {exit:?}"));
        }
        let all_log = worker.log_text();
        notes.extend(worker_log_notes(
            &self.args.rust_log,
            &watched.drain_log,
            &all_log,
        ));
        Ok(Ok(Drain {
            phase: spec.label.clone(),
            events: n,
            requests: Some(log.requests),
            seconds: watched.seconds,
            peak_rss: watched.peak_rss,
            cpu: watched.cpu,
            versus_bare: !spec.big,
            bare_rate: None,
            notes,
        }))
    }

    /// From `started` (the worker consumes) to the worker's `n`-th ack, after nginx's log
    /// showed `n` events answered: the seconds, and the worker's CPU and peak RSS at that
    /// moment (`perf` records meanwhile with `--perf`).
    async fn watch(
        &self,
        name: &str,
        n: u64,
        worker: &mut Worker,
        log: &mut AccessLog,
        metrics_port: u16,
        started: Instant,
    ) -> Result<Watched, String> {
        let cpu0 = worker.cpu(self.clock_ticks);
        let perf = self
            .args
            .perf
            .as_ref()
            .map(|dir| Perf::start(dir, name, worker.pid));
        let finished = match answered(n, worker, log).await {
            Ok(_) => last_ack(n, worker, metrics_port).await,
            Err(e) => Err(e),
        };
        let cpu1 = worker.cpu(self.clock_ticks);
        let peak_rss = worker.peak_rss();
        let drain_log = worker.log_text();
        if let Some(perf) = perf {
            perf.stop();
        }
        Ok(Watched {
            seconds: (finished? - started).as_secs_f64(),
            cpu: cpu1.zip(cpu0).map(|(b, a)| b - a),
            peak_rss,
            drain_log,
        })
    }
}

/// Reads the access log every [`LOG_POLL`] until it shows `n` events answered 200: the instant
/// it did. An error when the worker exits or nothing moves for [`STALL`].
async fn answered(n: u64, worker: &mut Worker, log: &mut AccessLog) -> Result<Instant, String> {
    let mut last_progress = (0u64, Instant::now());
    loop {
        tokio::time::sleep(LOG_POLL).await;
        log.read()?;
        if log.events >= n {
            return Ok(Instant::now());
        }
        if log.events != last_progress.0 {
            last_progress = (log.events, Instant::now());
        } else if last_progress.1.elapsed() > STALL {
            return Err(format!(
                "stalled: {} of {n} events received, nothing for {}s",
                log.events,
                STALL.as_secs()
            ));
        }
        if let Some(exit) = worker.exited() {
            return Err(format!(
                "the worker exited ({exit:?}) after {} of {n} events: {}",
                log.events,
                first_line(&worker.log_text())
            ));
        }
    }
}

/// Reads the worker's `/metrics` every [`ACK_POLL`] until it has acked `n` messages: the
/// instant it had. Called once nginx answered every event, so only the last acks are waited
/// for, and the polling does not slow the drain.
async fn last_ack(n: u64, worker: &mut Worker, port: u16) -> Result<Instant, String> {
    let deadline = Instant::now() + STALL;
    loop {
        let metrics = worker.metrics(port).await?;
        if counter(&metrics, SETTLED, "result=\"acked\"") >= n as f64 {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{n} events answered but not all acked within {}s",
                STALL.as_secs()
            ));
        }
        tokio::time::sleep(ACK_POLL).await;
    }
}

/// The sum of a counter's series whose labels hold `label` (e.g. `result="acked"`).
pub(super) fn counter(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.split_once("} ")?;
            labels
                .split(',')
                .any(|l| l == label)
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// The worker exited before it consumed: a batched phase whose build refuses the config is
/// skipped, anything else is a failure.
fn not_consuming(
    name: &str,
    batched: bool,
    exit: Option<i32>,
    log: &str,
) -> Result<Result<Drain, Skipped>, String> {
    let config_error = exit == Some(2);
    let why = if config_error && batched {
        format!(
            "not available in this build (the worker refused the config: {})",
            first_line(log)
        )
    } else {
        format!(
            "the worker exited ({exit:?}) before consuming: {}",
            first_line(log)
        )
    };
    if batched {
        return Ok(Err(Skipped {
            phase: name.into(),
            why,
        }));
    }
    Err(why)
}

/// For a big drain: the events' size against Logz.io's line, the bytes drained per second,
/// and, from the worker's `/metrics`, the most bytes of bodies it held at once (against its
/// budget) and the prefetch it ended with.
async fn big_notes(
    spec: &DrainSpec,
    config: &Config,
    worker: &Worker,
    port: u16,
    seconds: f64,
) -> Vec<String> {
    let event_bytes = big_event_body(0).len() as f64;
    let mut notes = vec![
        big_sizes(config),
        format!(
            "{:.1} MB of events drained per second",
            spec.events as f64 * event_bytes / seconds / 1e6
        ),
    ];
    // The gauges are polled every second ([monitor] interval = "1s"): wait for one poll
    // after the drain, so the peak is the drain's.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let metrics = match worker.metrics(port).await {
        Ok(metrics) => metrics,
        Err(e) => {
            notes.push(e);
            return notes;
        }
    };
    let mib = |bytes: f64| format!("{:.1} MiB", bytes / (1024.0 * 1024.0));
    if let Some(peak) = gauge(&metrics, IN_FLIGHT_BYTES_PEAK) {
        notes.push(format!(
            "at most {} of event bodies in flight (amqp.memory_budget {})",
            mib(peak),
            mib(config.amqp.memory_budget as f64)
        ));
    }
    if let Some(prefetch) = gauge(&metrics, PREFETCH_GAUGE) {
        notes.push(format!(
            "prefetch {prefetch} at the end (amqp.prefetch {})",
            config.amqp.prefetch
        ));
    }
    notes
}

/// What nginx saw besides the `n` events: duplicates and refusals.
fn sink_notes(log: &AccessLog, n: u64) -> Vec<String> {
    let mut notes = Vec::new();
    if log.events > n {
        notes.push(format!("{} events received more than once", log.events - n));
    }
    if log.rejected > 0 {
        notes.push(format!("{} requests not answered 200", log.rejected));
    }
    notes
}

/// Dead letters, and events left in the input queue, after the worker stopped.
async fn queue_notes(probe: &Channel, amqp: &AmqpSettings) -> Vec<String> {
    let mut notes = Vec::new();
    let dead = message_count(probe, &amqp.dead_letter_queue).await;
    if dead > 0 {
        notes.push(format!("{dead} dead letters"));
    }
    let left = message_count(probe, &amqp.queue).await;
    if left > 0 {
        notes.push(format!(
            "{left} events left in the queue after the worker stopped"
        ));
    }
    notes
}

/// What the worker logged during the drain (`drain_log`) and after SIGTERM (the rest of
/// `all_log`).
fn worker_log_notes(rust_log: &str, drain_log: &str, all_log: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let during = drain_log.lines().count();
    if during > 0 {
        notes.push(format!(
            "{during} worker log lines (RUST_LOG={rust_log}) during the drain, the first: {}",
            first_line(drain_log)
        ));
    }
    let at_stop = all_log.lines().count().saturating_sub(during);
    if at_stop > 0 {
        let stop_log = all_log.get(drain_log.len()..).unwrap_or_default();
        notes.push(format!(
            "{at_stop} worker log lines after SIGTERM, the first: {}",
            first_line(stop_log)
        ));
    }
    notes
}
