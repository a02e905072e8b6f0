//! Throughput benchmark of the whole worker (issue #5): how fast a backlog drains through the
//! real release binary, RabbitMQ and an HTTPS sink, all on this machine, against the bare limit
//! of a consumer that only acks.
//!
//! `cargo bench --bench throughput -- [--events N] [--rss-200k] [...]` (or `scripts/bench`).
//! Needs RabbitMQ (`RABBITMQ_URL`, default amqp://guest:guest@127.0.0.1:5672/%2f) and nginx
//! (`NGINX`, default `nginx` on the PATH or /usr/sbin/nginx). Traffic goes to 127.0.0.1 only.
//!
//! Phases, each on its own uniquely named exchange and queues (deleted at the end):
//! - **bare**: a lapin consumer with the worker's prefetch that only acks each message. The
//!   clock starts when `basic.consume` is answered and stops at the N-th ack.
//! - **single**: the release binary (`run --config <dir>`) with the shipped seed webhook
//!   (`config/webhooks/logzio.toml`, one request per event) pointed at nginx, which answers
//!   `200` on `127.0.0.1` with a throwaway certificate. The clock starts when the broker
//!   reports the worker's consumer on the input queue (polled every 2 ms) and stops when
//!   nginx's access log shows N events answered `200` (read every 5 ms).
//! - **batched**: the same webhook with `[webhook.batch] max_events = 200, max_bytes = "5MiB",
//!   linger = "200ms"`; a batched request carries `x-relay-batch-size: N`, which the access log
//!   records. Reported as not available when the build does not know the key.
//! - **bare** again, then with `--rss-200k` **single** with a 200,000-event backlog.
//! - **latency**: a steady rate (1,000 events/s for 10 s by default) published while the
//!   worker runs, sink = the in-process [`LocalLogzio`], which records when each request
//!   arrived; each event carries `data.custom_fields.seq` and the webhook's body carries it,
//!   so received lines match published instants. The first second is warm-up.
//!
//! Before each drain the backlog is pre-loaded with pipelined publisher confirms: N events
//! shaped like the vendor's schema (`webhook_relay::pipeline::event::sample`, triggers in turn), each
//! with its own `data.id` and `event_time`, persistent, on durable queues as the worker
//! declares them. The worker's peak RSS is `VmHWM` and its CPU `utime + stime` of
//! `/proc/<pid>`, counted from the moment it consumes to the N-th event received.
//!
//! Everything waits with a bound: a stalled phase is reported and the run goes on. Workers and
//! nginx are stopped and every queue and exchange deleted, also when a phase fails or panics.

use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use serde_json::Value;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use webhook_relay::broker::Broker;
use webhook_relay::config::{self, AmqpSettings, Config, Env, Webhook};
use webhook_relay::devtools::devcert::DevCert;
use webhook_relay::devtools::local_logzio::LocalLogzio;
use webhook_relay::pipeline::event::{self, Trigger};

/// The release binary cargo built for this bench.
const WORKER_BIN: &str = env!("CARGO_BIN_EXE_webhook-relay");
/// The shipped worker settings; the bench changes only names, the CA file and the port.
const SHIPPED_RELAY: &str = include_str!("../../config/relay.toml");
/// The shipped Logz.io webhook, used as is except for its URL.
const SHIPPED_WEBHOOK: &str = include_str!("../../config/webhooks/logzio.toml");
/// The URL in the shipped webhook.
const SHIPPED_URL: &str = "https://listener.logz.io/?token=${LOGZIO_TOKEN}&type=apono";
/// The end of the shipped body template, where the latency phase adds the sequence number.
const SHIPPED_TEMPLATE_END: &str = r#""type": "Apono"}'''"#;
/// The batching settings of issue #5.
const BATCH_TABLE: &str = r#"
[webhook.batch]
max_events = 200
max_bytes = "5MiB"
linger = "200ms"
"#;
/// The log shipping token the bench's webhooks use.
const TOKEN: &str = "bench-token";
/// The worker's prefetch (the shipped value); the bare consumer uses the same.
const PREFETCH: u16 = 256;
/// Outstanding publisher confirms while pre-loading.
const CONFIRM_WINDOW: usize = 4096;
/// A phase making no progress this long is given up.
const STALL: Duration = Duration::from_secs(60);
/// How often the access log is read.
const LOG_POLL: Duration = Duration::from_millis(5);
/// How often the input queue is asked for its consumer count while the worker starts.
const CONSUMER_POLL: Duration = Duration::from_millis(2);

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("error: {message}\n\n{}", Args::USAGE);
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(run(args));
    drop(runtime);
    std::process::exit(code);
}

// ---------------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone)]
struct Args {
    events: u64,
    rss_200k: bool,
    phases: Vec<String>,
    latency_seconds: u64,
    latency_rate: u64,
    rust_log: String,
    amqp_url: String,
    markdown: Option<PathBuf>,
    perf: Option<PathBuf>,
}

impl Args {
    const USAGE: &'static str = "\
usage: cargo bench --bench throughput -- [options]
  --events N            backlog per phase (default 50000)
  --rss-200k            also drain a 200,000-event backlog through the single phase (RSS check)
  --phases LIST         comma-separated, from bare,single,batched,latency
                        (default bare,single,batched,bare,latency)
  --latency-seconds S   length of the steady-rate phase, warm-up second included (default 11)
  --rate R              events/s offered in the latency phase (default 1000)
  --rust-log FILTER     RUST_LOG of the worker (default warn)
  --markdown FILE       append the markdown results to FILE
  --perf DIR            record the worker with `perf record --call-graph dwarf` during each worker drain
                        (slows it down: numbers of such a run are not comparable)";

    fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut args = Args {
            events: 50_000,
            rss_200k: false,
            phases: ["bare", "single", "batched", "bare", "latency"]
                .map(String::from)
                .to_vec(),
            latency_seconds: 11,
            latency_rate: 1000,
            rust_log: "warn".into(),
            amqp_url: std::env::var("RABBITMQ_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            markdown: None,
            perf: None,
        };
        while let Some(arg) = argv.next() {
            let mut value = |name: &str| argv.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                // cargo bench passes --bench to every bench binary.
                "--bench" => {}
                "--events" => args.events = number(&value("--events")?)?,
                "--rss-200k" => args.rss_200k = true,
                "--phases" => {
                    args.phases = value("--phases")?
                        .split(',')
                        .map(|p| p.trim().to_string())
                        .filter(|p| !p.is_empty())
                        .collect();
                    for phase in &args.phases {
                        if !["bare", "single", "batched", "latency"].contains(&phase.as_str()) {
                            return Err(format!("unknown phase `{phase}`"));
                        }
                    }
                }
                "--latency-seconds" => args.latency_seconds = number(&value("--latency-seconds")?)?,
                "--rate" => args.latency_rate = number(&value("--rate")?)?.max(1),
                "--rust-log" => args.rust_log = value("--rust-log")?,
                "--markdown" => args.markdown = Some(value("--markdown")?.into()),
                "--perf" => args.perf = Some(value("--perf")?.into()),
                "-h" | "--help" => return Err("help".into()),
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        if args.events == 0 {
            return Err("--events must be at least 1".into());
        }
        Ok(args)
    }
}

fn number(text: &str) -> Result<u64, String> {
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))
}

// ---------------------------------------------------------------------------------------------
// The run

/// What one drain phase measured.
#[derive(Debug, Clone)]
struct Drain {
    phase: String,
    events: u64,
    requests: Option<u64>,
    seconds: f64,
    /// Worker peak RSS in bytes (not for bare).
    peak_rss: Option<u64>,
    /// CPU of the consumer (the worker, or the bench process for bare) during the drain.
    cpu: Option<Duration>,
    notes: Vec<String>,
}

impl Drain {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

/// What the latency phase measured.
#[derive(Debug, Clone)]
struct Latency {
    phase: String,
    rate: u64,
    measured: usize,
    missing: usize,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
    achieved_rate: f64,
    peak_rss: Option<u64>,
    cpu: Option<Duration>,
    notes: Vec<String>,
}

/// What a phase produced.
enum Measured {
    Drain(Drain),
    Latency(Latency),
    Skipped(Skipped),
}

impl From<Result<Drain, Skipped>> for Measured {
    fn from(result: Result<Drain, Skipped>) -> Self {
        result.map_or_else(Measured::Skipped, Measured::Drain)
    }
}

impl From<Result<Latency, Skipped>> for Measured {
    fn from(result: Result<Latency, Skipped>) -> Self {
        result.map_or_else(Measured::Skipped, Measured::Latency)
    }
}

/// A phase that did not produce a number.
#[derive(Debug)]
struct Skipped {
    phase: String,
    why: String,
}

/// The queues and exchanges made so far, deleted at the end whatever happens.
type Topologies = Arc<Mutex<Vec<(AmqpSettings, Vec<Arc<Webhook>>)>>>;

struct Bench {
    args: Args,
    tmp: tempfile::TempDir,
    cert: DevCert,
    nginx: Option<Nginx>,
    topologies: Topologies,
    phase_number: u32,
    clock_ticks: u64,
}

async fn run(args: Args) -> i32 {
    let tmp = match tempfile::Builder::new().prefix("relay-bench-").tempdir() {
        Ok(tmp) => tmp,
        Err(e) => {
            eprintln!("error: cannot make a temp dir: {e}");
            return 1;
        }
    };
    let cert = DevCert::generate().expect("throwaway certificate");
    let mut bench = Bench {
        args: args.clone(),
        tmp,
        cert,
        nginx: None,
        topologies: Arc::default(),
        phase_number: 0,
        clock_ticks: clock_ticks(),
    };
    print_machine(&args);

    let outcome = std::panic::AssertUnwindSafe(bench.phases())
        .catch_unwind()
        .await;

    // Cleanup, also after a panic: workers were stopped by their guards on the way out.
    if let Some(mut nginx) = bench.nginx.take() {
        nginx.stop();
    }
    let cleaned = cleanup(&bench.args.amqp_url, &bench.topologies).await;
    match outcome {
        Ok((drains, latencies, skipped)) => {
            let report = report(&bench.args, &drains, &latencies, &skipped);
            println!("{report}");
            if let Some(path) = &bench.args.markdown {
                let markdown = markdown(&bench.args, &drains, &latencies, &skipped);
                match std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, markdown.as_bytes()))
                {
                    Ok(()) => println!("markdown appended to {}", path.display()),
                    Err(e) => eprintln!("error: cannot append to {}: {e}", path.display()),
                }
            } else {
                println!("{}", markdown(&bench.args, &drains, &latencies, &skipped));
            }
            if let Err(e) = cleaned {
                eprintln!("cleanup: {e}");
                return 1;
            }
            if drains.is_empty() && latencies.is_empty() {
                1
            } else {
                0
            }
        }
        Err(_) => {
            eprintln!("the benchmark panicked; workers and nginx stopped, queues deleted");
            1
        }
    }
}

impl Bench {
    async fn phases(&mut self) -> (Vec<Drain>, Vec<Latency>, Vec<Skipped>) {
        let mut drains = Vec::new();
        let mut latencies = Vec::new();
        let mut skipped = Vec::new();
        let needs_nginx = self
            .args
            .phases
            .iter()
            .any(|p| p == "single" || p == "batched")
            || self.args.rss_200k;
        if needs_nginx {
            match Nginx::start(self.tmp.path(), &self.cert) {
                Ok(nginx) => {
                    eprintln!(
                        "nginx: https://127.0.0.1:{} (pid {})",
                        nginx.port,
                        nginx.pid()
                    );
                    self.nginx = Some(nginx);
                }
                Err(e) => {
                    skipped.push(Skipped {
                        phase: "single, batched".into(),
                        why: format!("nginx: {e}"),
                    });
                }
            }
        }
        let n = self.args.events;
        let mut phases: Vec<(String, u64)> = Vec::new();
        for phase in &self.args.phases {
            if phase == "latency" {
                // The broker's own share first, then the worker, then batching if it exists.
                phases.push(("latency-bare".into(), 0));
                phases.push(("latency".into(), 0));
                if self.args.phases.iter().any(|p| p == "batched") {
                    phases.push(("latency-batched".into(), 0));
                }
            } else {
                phases.push((phase.clone(), n));
            }
        }
        if self.args.rss_200k {
            // Before the latency phases, so the table's drains come first.
            let at = phases
                .iter()
                .position(|(p, _)| p.starts_with("latency"))
                .unwrap_or(phases.len());
            phases.insert(at, ("single".into(), 200_000));
        }
        for (phase, events) in phases {
            if events > 0 {
                eprintln!(
                    "\n== {phase} ({events} events, load average {})",
                    load_average()
                );
            } else {
                eprintln!("\n== {phase} (load average {})", load_average());
            }
            let load = load_average();
            let mut result = self.phase(&phase, events).await;
            if let Err(why) = &result {
                // The broker is shared: someone else's test may have closed every connection.
                eprintln!("{phase}: failed: {why}\n{phase}: trying once more in 5s");
                tokio::time::sleep(Duration::from_secs(5)).await;
                result = self.phase(&phase, events).await;
            }
            let load = format!("load average {load} before, {} after", load_average());
            match result {
                Ok(Measured::Drain(mut drain)) => {
                    drain.notes.push(load);
                    eprintln!(
                        "{}: {} events in {:.2}s = {:.0} events/s",
                        drain.phase,
                        drain.events,
                        drain.seconds,
                        drain.rate()
                    );
                    drains.push(drain);
                }
                Ok(Measured::Latency(mut latency)) => {
                    latency.notes.push(load);
                    eprintln!(
                        "latency {}: p50 {} p99 {} max {} ({} events)",
                        latency.phase,
                        ms(latency.p50),
                        ms(latency.p99),
                        ms(latency.max),
                        latency.measured
                    );
                    latencies.push(latency);
                }
                Ok(Measured::Skipped(skip)) => {
                    eprintln!("{}: {}", skip.phase, skip.why);
                    skipped.push(skip);
                }
                Err(why) => {
                    eprintln!("{phase}: FAILED: {why}");
                    skipped.push(Skipped {
                        phase: phase.clone(),
                        why: format!("failed: {why}"),
                    });
                }
            }
        }
        (drains, latencies, skipped)
    }

    /// Runs one phase, then deletes its queues and exchange, so that the broker has nothing
    /// of it left to tidy while the next one is measured.
    async fn phase(&mut self, phase: &str, events: u64) -> Result<Measured, String> {
        let result = match phase {
            "bare" => self.bare(events).await.map(Measured::Drain),
            "single" => self
                .worker_drain("single", events, false)
                .await
                .map(Measured::from),
            "batched" => self
                .worker_drain("batched", events, true)
                .await
                .map(Measured::from),
            "latency-bare" => self.latency_bare().await.map(Measured::Latency),
            "latency" => self.latency(false).await.map(Measured::from),
            "latency-batched" => self.latency(true).await.map(Measured::from),
            other => Err(format!("unknown phase {other}")),
        };
        if let Err(e) = cleanup(&self.args.amqp_url, &self.topologies).await {
            eprintln!("cleanup after {phase}: {e}");
        }
        result
    }

    /// A fresh, unique name prefix and config folder for one phase.
    fn next_phase(&mut self, name: &str) -> (String, PathBuf) {
        self.phase_number += 1;
        let prefix = format!(
            "relay-bench-{}-{}-{name}",
            std::process::id(),
            self.phase_number
        );
        let dir = self.tmp.path().join(&prefix);
        (prefix, dir)
    }

    /// Writes and loads a phase's config and declares its topology (registered for deletion).
    async fn prepare(
        &mut self,
        dir: &Path,
        prefix: &str,
        port: u16,
        ca_pem: &str,
        webhook: &str,
    ) -> Result<Result<Config, String>, String> {
        write_config(dir, prefix, port, ca_pem, webhook)?;
        let config = match config::load(dir, &self.env()) {
            Ok(config) => config,
            Err(e) => {
                let problems: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
                return Ok(Err(problems.join("; ")));
            }
        };
        let broker = connect_broker(&config).await?;
        self.topologies
            .lock()
            .expect("lock")
            .push((config.amqp.clone(), config.webhooks.clone()));
        broker
            .declare_topology(&config.amqp)
            .await
            .map_err(|e| e.to_string())?;
        broker
            .declare_retry_topology(&config.amqp, &config.webhooks)
            .await
            .map_err(|e| e.to_string())?;
        broker.close().await;
        Ok(Ok(config))
    }

    /// The variables the config is read with, in-process and by the worker.
    fn env(&self) -> Env {
        Env::from_pairs([
            ("LOGZIO_TOKEN", TOKEN),
            ("BENCH_AMQP_URL", self.args.amqp_url.as_str()),
        ])
    }

    fn nginx_port(&self) -> Result<u16, String> {
        self.nginx
            .as_ref()
            .map(|n| n.port)
            .ok_or_else(|| "nginx is not running".to_string())
    }

    /// The bare limit: a consumer with the worker's prefetch that only acks.
    async fn bare(&mut self, n: u64) -> Result<Drain, String> {
        let (prefix, dir) = self.next_phase("bare");
        // The worker's topology (same queue arguments), so the queue is the same kind.
        let port = self.nginx.as_ref().map_or(443, |n| n.port);
        let ca = self.cert.ca_pem().to_string();
        let config = self
            .prepare(&dir, &prefix, port, &ca, &single_webhook(port))
            .await?
            .map_err(|e| format!("config: {e}"))?;
        let connection = connect(&self.args.amqp_url).await?;
        let loaded = preload(&connection, &config.amqp, n).await?;
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
            notes: vec!["CPU is the bench process (the consumer)".into()],
        })
    }

    /// A drain through the release binary into nginx.
    async fn worker_drain(
        &mut self,
        name: &str,
        n: u64,
        batched: bool,
    ) -> Result<Result<Drain, Skipped>, String> {
        let port = self.nginx_port()?;
        let (prefix, dir) = self.next_phase(name);
        let mut webhook = single_webhook(port);
        if batched {
            webhook.push_str(BATCH_TABLE);
        }
        let ca = self.cert.ca_pem().to_string();
        let config = match self.prepare(&dir, &prefix, port, &ca, &webhook).await? {
            Ok(config) => config,
            Err(problem) => {
                return Ok(Err(Skipped {
                    phase: name.into(),
                    why: not_available(&problem),
                }));
            }
        };
        let connection = connect(&self.args.amqp_url).await?;
        let loaded = preload(&connection, &config.amqp, n).await?;
        eprintln!("pre-loaded {n} events in {:.1}s", loaded.as_secs_f64());

        let mut log = self
            .nginx
            .as_ref()
            .ok_or("nginx is not running")?
            .access_log()?;
        log.skip_to_end()?;
        let mut worker = Worker::spawn(&dir, &self.env(), &self.args.rust_log)?;
        let spawned = Instant::now();
        let probe = connection.create_channel().await.map_err(err)?;
        match wait_consuming(&probe, &config.amqp.queue, &mut worker).await? {
            Ok(()) => {}
            Err(exit) => {
                let log = worker.log_text();
                let config_error = exit == Some(2);
                let why = if config_error && batched {
                    format!(
                        "not available in this build (the worker refused the config: {})",
                        first_line(&log)
                    )
                } else {
                    format!(
                        "the worker exited ({exit:?}) before consuming: {}",
                        first_line(&log)
                    )
                };
                let _ = connection.close(200, "done".into()).await;
                if batched {
                    return Ok(Err(Skipped {
                        phase: name.into(),
                        why,
                    }));
                }
                return Err(why);
            }
        }
        let started = Instant::now();
        let startup = started - spawned;
        let cpu0 = worker.cpu(self.clock_ticks);
        let perf = self
            .args
            .perf
            .as_ref()
            .map(|dir| Perf::start(dir, name, worker.pid));

        let mut last_progress = (0u64, Instant::now());
        let finished = loop {
            tokio::time::sleep(LOG_POLL).await;
            log.read()?;
            if log.events >= n {
                break Ok(Instant::now());
            }
            if log.events != last_progress.0 {
                last_progress = (log.events, Instant::now());
            } else if last_progress.1.elapsed() > STALL {
                break Err(format!(
                    "stalled: {} of {n} events received, nothing for {}s",
                    log.events,
                    STALL.as_secs()
                ));
            }
            if let Some(exit) = worker.exited() {
                break Err(format!(
                    "the worker exited ({exit:?}) after {} of {n} events: {}",
                    log.events,
                    first_line(&worker.log_text())
                ));
            }
        };
        let cpu1 = worker.cpu(self.clock_ticks);
        let peak_rss = worker.peak_rss();
        let drain_log = worker.log_text();
        if let Some(perf) = perf {
            perf.stop();
        }
        let finished = match finished {
            Ok(at) => at,
            Err(why) => {
                worker.stop().await;
                let _ = connection.close(200, "done".into()).await;
                return Err(why);
            }
        };
        let seconds = (finished - started).as_secs_f64();
        // Anything beyond N (a retried request) shows up within a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        log.read()?;
        let exit = worker.stop().await;

        let mut notes = vec![
            format!("worker start to consuming {:.2}s", startup.as_secs_f64()),
            format!("{} TLS connections to nginx", log.connections.len()),
        ];
        if log.events > n {
            notes.push(format!("{} events received more than once", log.events - n));
        }
        if log.rejected > 0 {
            notes.push(format!("{} requests not answered 200", log.rejected));
        }
        let dead = message_count(&probe, &config.amqp.dead_letter_queue).await;
        if dead > 0 {
            notes.push(format!("{dead} dead letters"));
        }
        let left = message_count(&probe, &config.amqp.queue).await;
        if left > 0 {
            notes.push(format!(
                "{left} events left in the queue after the worker stopped"
            ));
        }
        if exit != Some(0) {
            notes.push(format!("worker exit {exit:?}"));
        }
        let during = drain_log.lines().count();
        if during > 0 {
            notes.push(format!(
                "{during} worker log lines (RUST_LOG={}) during the drain, the first: {}",
                self.args.rust_log,
                first_line(&drain_log)
            ));
        }
        let all_log = worker.log_text();
        let at_stop = all_log.lines().count().saturating_sub(during);
        if at_stop > 0 {
            let stop_log = all_log.get(drain_log.len()..).unwrap_or_default();
            notes.push(format!(
                "{at_stop} worker log lines after SIGTERM, the first: {}",
                first_line(stop_log)
            ));
        }
        let _ = connection.close(200, "done".into()).await;
        Ok(Ok(Drain {
            phase: if n == self.args.events {
                name.to_string()
            } else {
                format!("{name} ({}k)", n / 1000)
            },
            events: n,
            requests: Some(log.requests),
            seconds,
            peak_rss,
            cpu: cpu1.zip(cpu0).map(|(b, a)| b - a),
            notes,
        }))
    }

    /// A steady rate through the worker into the in-process listener: publish-to-received
    /// latency per event.
    async fn latency(&mut self, batched: bool) -> Result<Result<Latency, Skipped>, String> {
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
            .prepare(&dir, &prefix, sink.port(), sink.ca_pem(), &webhook)
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
    async fn latency_bare(&mut self) -> Result<Latency, String> {
        let (prefix, dir) = self.next_phase("latency-bare");
        let ca = self.cert.ca_pem().to_string();
        let config = self
            .prepare(&dir, &prefix, 443, &ca, &single_webhook(443))
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

// ---------------------------------------------------------------------------------------------
// Config and events

/// The shipped seed webhook pointed at `https://127.0.0.1:<port>`.
fn single_webhook(port: u16) -> String {
    assert!(
        SHIPPED_WEBHOOK.contains(SHIPPED_URL),
        "config/webhooks/logzio.toml no longer holds the listener URL"
    );
    SHIPPED_WEBHOOK.replace(
        SHIPPED_URL,
        &format!("https://127.0.0.1:{port}/?token=${{LOGZIO_TOKEN}}&type=apono"),
    )
}

/// Writes `dir/relay.toml` (the shipped one with the bench's names, CA and port),
/// `dir/ca.pem` and `dir/webhooks/logzio.toml`.
fn write_config(
    dir: &Path,
    prefix: &str,
    port: u16,
    ca_pem: &str,
    webhook: &str,
) -> Result<(), String> {
    let mut relay = SHIPPED_RELAY.to_string();
    for (key, value) in [
        ("url", "\"${BENCH_AMQP_URL}\"".to_string()),
        ("exchange", format!("\"{prefix}\"")),
        ("queue", format!("\"{prefix}.in\"")),
        ("dead_letter_queue", format!("\"{prefix}.dlq\"")),
        ("prefetch", PREFETCH.to_string()),
        ("ca_file", "\"ca.pem\"".to_string()),
        ("allowed_ports", format!("[{port}]")),
    ] {
        relay = set_key(&relay, key, &value)?;
    }
    std::fs::create_dir_all(dir.join("webhooks")).map_err(err)?;
    std::fs::write(dir.join("relay.toml"), relay).map_err(err)?;
    std::fs::write(dir.join("ca.pem"), ca_pem).map_err(err)?;
    std::fs::write(dir.join("webhooks/logzio.toml"), webhook).map_err(err)?;
    Ok(())
}

/// Replaces the first `key = …` line of `text` (comment and all).
fn set_key(text: &str, key: &str, value: &str) -> Result<String, String> {
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let is_key = line
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            if is_key && !done {
                done = true;
                format!("{key} = {value}")
            } else {
                line.to_string()
            }
        })
        .collect();
    if !done {
        return Err(format!("config/relay.toml has no `{key} =` line"));
    }
    Ok(lines.join("\n") + "\n")
}

fn trigger_of(i: u64) -> Trigger {
    Trigger::ALL[(i % Trigger::ALL.len() as u64) as usize]
}

/// Event number `i`: the built-in sample of a trigger (in turn), with its own `data.id`,
/// `friendly_id`, `event_time` and `data.custom_fields.seq = i`.
fn event_body(i: u64) -> Vec<u8> {
    let mut event = event::sample(trigger_of(i));
    event["event_time"] = Value::from(1_764_064_800.0 + i as f64 / 1000.0);
    let data = &mut event["data"];
    data["id"] = Value::from(format!("req-{i:010x}"));
    data["friendly_id"] = Value::from(format!("AR-{i}"));
    data["custom_fields"]["seq"] = Value::from(i);
    serde_json::to_vec(&event).expect("event serialises")
}

fn event_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn connect(url: &str) -> Result<Connection, String> {
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

async fn connect_broker(config: &Config) -> Result<Broker, String> {
    Broker::connect(&config.amqp, &config.redactor)
        .await
        .map_err(|e| format!("{e} (scripts/bench starts RabbitMQ)"))
}

/// Publishes `n` events to the phase's exchange with pipelined confirms (at most
/// [`CONFIRM_WINDOW`] outstanding) and checks that the input queue holds them all.
async fn preload(connection: &Connection, amqp: &AmqpSettings, n: u64) -> Result<Duration, String> {
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
                &event_body(i),
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
async fn message_count(channel: &Channel, queue: &str) -> u64 {
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
async fn wait_consuming(
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
async fn cleanup(url: &str, topologies: &Topologies) -> Result<(), String> {
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

// ---------------------------------------------------------------------------------------------
// Processes

/// The release worker, stopped (SIGTERM, then SIGKILL) when dropped.
struct Worker {
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl Worker {
    fn spawn(dir: &Path, env: &Env, rust_log: &str) -> Result<Worker, String> {
        let log = dir.join("worker.log");
        let stderr = std::fs::File::create(&log).map_err(err)?;
        let mut command = Command::new(WORKER_BIN);
        command
            .arg("run")
            .arg("--config")
            .arg(dir)
            .env("RUST_LOG", rust_log)
            .env_remove(config::CONFIG_DIR_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("RELAY__") {
                command.env_remove(name);
            }
        }
        for (name, value) in env.vars() {
            command.env(name, value);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {WORKER_BIN}: {e}"))?;
        Ok(Worker {
            pid: child.id(),
            child,
            log,
        })
    }

    /// The exit code once it has exited (`Some(None)` for a signal).
    fn exited(&mut self) -> Option<Option<i32>> {
        self.child.try_wait().ok().flatten().map(|s| s.code())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `utime + stime` so far.
    fn cpu(&self, clock_ticks: u64) -> Option<Duration> {
        proc_cpu(&format!("/proc/{}/stat", self.pid), clock_ticks)
    }

    /// `VmHWM`: the peak resident set size, in bytes.
    fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// SIGTERM, wait up to 40s (the worker's grace is 30s), then SIGKILL. The exit code.
    async fn stop(&mut self) -> Option<i32> {
        if let Some(exit) = self.exited() {
            return exit;
        }
        signal(self.pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Some(exit) = self.exited() {
                return exit;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("worker {} ignored SIGTERM for 40s; killing it", self.pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        signal(self.pid, "TERM");
        for _ in 0..250 {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `utime + stime` of a `/proc/<pid>/stat` file.
fn proc_cpu(path: &str, clock_ticks: u64) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks as f64,
    ))
}

fn self_cpu(clock_ticks: u64) -> Option<Duration> {
    proc_cpu("/proc/self/stat", clock_ticks)
}

/// `getconf CLK_TCK`, 100 when it cannot be asked.
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Why a phase's config does not load, said briefly when it is the missing batch key.
fn not_available(problem: &str) -> String {
    if problem.contains("unknown field `batch`") {
        "not available in this build (the config has no [webhook.batch])".into()
    } else {
        format!("not available in this build (config: {problem})")
    }
}

/// The 1, 5 and 15 minute load averages: the machine is shared, so every phase says how busy
/// it was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn first_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.chars().take(300).collect()
}

/// nginx in the foreground, answering 200 on 127.0.0.1 over TLS; stopped when dropped.
struct Nginx {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    fn start(tmp: &Path, cert: &DevCert) -> Result<Nginx, String> {
        let binary = std::env::var("NGINX").unwrap_or_else(|_| {
            if Path::new("/usr/sbin/nginx").exists() {
                "/usr/sbin/nginx".into()
            } else {
                "nginx".into()
            }
        });
        let dir = tmp.join("nginx");
        std::fs::create_dir_all(&dir).map_err(err)?;
        std::fs::write(dir.join("cert.pem"), cert.cert_pem()).map_err(err)?;
        std::fs::write(dir.join("key.pem"), cert.key_pem()).map_err(err)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(err)?
            .port();
        let d = dir.display();
        let conf = format!(
            r#"# written by benches/throughput.rs
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '$status $http_x_relay_batch_size $connection';
    access_log {d}/access.log bench;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_max_body_size 64m;
    client_body_buffer_size 1m;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        location / {{ return 200; }}
    }}
}}
"#
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(err)?;
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {binary}: {e} (scripts/bench installs it)"))?;
        let mut nginx = Nginx {
            child: Some(child),
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(nginx);
            }
            let exited = nginx
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let mut stderr = String::new();
                if let Some(mut child) = nginx.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                    if let Some(mut pipe) = child.stderr.take() {
                        let _ = pipe.read_to_string(&mut stderr);
                    }
                }
                let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
                return Err(format!(
                    "nginx did not start: {} {}",
                    first_line(&stderr),
                    first_line(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn access_log(&self) -> Result<AccessLog, String> {
        AccessLog::open(&self.dir.join("access.log"))
    }

    /// SIGQUIT (graceful), then SIGTERM, then SIGKILL, each with a bounded wait.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        for sig in ["QUIT", "TERM"] {
            signal(child.id(), sig);
            for _ in 0..250 {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// nginx's access log read as it grows: one line per request,
/// `<status> <x-relay-batch-size or -> <connection serial>`.
struct AccessLog {
    file: std::fs::File,
    partial: String,
    /// The connections seen since the last [`AccessLog::skip_to_end`].
    connections: std::collections::HashSet<u64>,
    /// Events in requests answered 200 (a line without a batch size is one event).
    events: u64,
    /// Requests answered 200.
    requests: u64,
    /// Requests answered anything else.
    rejected: u64,
}

impl AccessLog {
    fn open(path: &Path) -> Result<AccessLog, String> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(AccessLog {
            file,
            partial: String::new(),
            connections: Default::default(),
            events: 0,
            requests: 0,
            rejected: 0,
        })
    }

    fn skip_to_end(&mut self) -> Result<(), String> {
        self.file.seek(SeekFrom::End(0)).map_err(err)?;
        self.partial.clear();
        self.connections.clear();
        Ok(())
    }

    /// Reads what was appended since the last call.
    fn read(&mut self) -> Result<(), String> {
        let mut bytes = Vec::new();
        self.file.read_to_end(&mut bytes).map_err(err)?;
        if bytes.is_empty() {
            return Ok(());
        }
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        let complete = match self.partial.rfind('\n') {
            Some(end) => end + 1,
            None => return Ok(()),
        };
        let text: String = self.partial.drain(..complete).collect();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let status = parts.next().unwrap_or("");
            let size = parts.next().unwrap_or("-");
            if let Some(connection) = parts.next().and_then(|c| c.parse().ok()) {
                self.connections.insert(connection);
            }
            if status == "200" {
                self.requests += 1;
                self.events += size.parse::<u64>().unwrap_or(1);
            } else if !status.is_empty() {
                self.rejected += 1;
            }
        }
        Ok(())
    }
}

/// `perf record -g` of the worker, stopped with SIGINT.
struct Perf {
    child: Option<Child>,
}

impl Perf {
    fn start(dir: &Path, phase: &str, pid: u32) -> Perf {
        let _ = std::fs::create_dir_all(dir);
        let out = dir.join(format!("perf-{phase}-{pid}.data"));
        let child = Command::new("perf")
            .args([
                "record",
                "-F",
                "499",
                "--call-graph",
                "dwarf,16384",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => {
                eprintln!("perf: recording the worker into {}", out.display());
                Perf { child: Some(child) }
            }
            Err(e) => {
                eprintln!("perf: cannot start: {e}");
                Perf { child: None }
            }
        }
    }

    fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "INT");
            for _ in 0..500 {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Report

fn print_machine(args: &Args) {
    eprintln!("webhook-relay throughput benchmark");
    eprintln!("  worker   {WORKER_BIN}");
    eprintln!(
        "  broker   {}",
        webhook_relay::redact::redact_url(&args.amqp_url)
    );
    eprintln!(
        "  backlog  {} events per phase{}",
        args.events,
        if args.rss_200k {
            ", and 200,000 for the RSS check"
        } else {
            ""
        }
    );
    eprintln!("  phases   {}", args.phases.join(", "));
}

fn bare_rate(drains: &[Drain]) -> Option<f64> {
    let bare: Vec<f64> = drains
        .iter()
        .filter(|d| d.phase == "bare")
        .map(Drain::rate)
        .collect();
    (!bare.is_empty()).then(|| bare.iter().sum::<f64>() / bare.len() as f64)
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn cpu_per_1k(cpu: Option<Duration>, events: u64) -> String {
    cpu.map_or("-".into(), |c| {
        format!("{:.0}", c.as_secs_f64() * 1000.0 * 1000.0 / events as f64)
    })
}

fn rows(drains: &[Drain]) -> Vec<[String; 8]> {
    let bare = bare_rate(drains);
    drains
        .iter()
        .map(|d| {
            [
                d.phase.clone(),
                d.events.to_string(),
                d.requests.map_or("-".into(), |r| r.to_string()),
                format!("{:.2}", d.seconds),
                format!("{:.0}", d.rate()),
                bare.map_or("-".into(), |b| format!("{:.2}x", d.rate() / b)),
                d.peak_rss.map_or("-".into(), mb),
                cpu_per_1k(d.cpu, d.events),
            ]
        })
        .collect()
}

const HEADERS: [&str; 8] = [
    "phase",
    "events",
    "requests",
    "seconds",
    "events/s",
    "x bare",
    "peak RSS MB",
    "CPU ms/1k ev",
];

fn report(args: &Args, drains: &[Drain], latencies: &[Latency], skipped: &[Skipped]) -> String {
    let mut out = String::from("\nResults\n");
    let rows = rows(drains);
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == 0 {
                let _ = write!(s, "{cell:<w$}  ", w = widths[i]);
            } else {
                let _ = write!(s, "{cell:>w$}  ", w = widths[i]);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&HEADERS.map(String::from)));
    for row in &rows {
        out.push_str(&line(row));
    }
    for d in drains {
        for note in &d.notes {
            let _ = writeln!(out, "  {}: {note}", d.phase);
        }
    }
    for s in skipped {
        let _ = writeln!(out, "{}: {}", s.phase, s.why);
    }
    for l in latencies {
        let _ = writeln!(
            out,
            "\nLatency, publish to received, {} at {} events/s offered ({:.0} achieved), after a 1s warm-up: \
             {} events, p50 {}, p90 {}, p99 {}, p99.9 {}, max {}{}; worker peak RSS {} MB, CPU {} ms/1k events",
            l.phase,
            l.rate,
            l.achieved_rate,
            l.measured,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
            if l.missing > 0 {
                format!(", {} missing", l.missing)
            } else {
                String::new()
            },
            l.peak_rss.map_or("-".into(), mb),
            cpu_per_1k(l.cpu, (l.rate * args.latency_seconds).max(1)),
        );
        for note in &l.notes {
            let _ = writeln!(out, "  {note}");
        }
    }
    out
}

fn markdown(args: &Args, drains: &[Drain], latencies: &[Latency], skipped: &[Skipped]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n<!-- cargo bench --bench throughput -- --events {}{} -->\n",
        args.events,
        if args.rss_200k { " --rss-200k" } else { "" }
    );
    let _ = writeln!(out, "| {} |", HEADERS.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADERS.len()));
    for row in rows(drains) {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    for s in skipped {
        let _ = writeln!(
            out,
            "| {} | {} | | | | | | |",
            s.phase,
            s.why.replace('|', "/")
        );
    }
    if !latencies.is_empty() {
        let _ = writeln!(
            out,
            "\n| latency | offered/s | events | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | CPU ms/1k ev |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
        for l in latencies {
            let f = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                l.phase,
                l.rate,
                l.measured,
                f(l.p50),
                f(l.p90),
                f(l.p99),
                f(l.p999),
                f(l.max),
                cpu_per_1k(l.cpu, (l.rate * args.latency_seconds).max(1)),
            );
        }
    }
    out
}
