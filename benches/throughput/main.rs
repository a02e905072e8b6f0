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
//!   reports the worker's consumer on the input queue (polled every 2 ms) and stops at the
//!   worker's N-th ack: once nginx's access log shows N events answered `200` (read every
//!   5 ms), the worker's `/metrics` is read every 2 ms until it has acked N.
//! - **batched**: the same webhook with `[webhook.batch] max_events = 200, max_bytes = "5MiB",
//!   linger = "200ms"`; a batched request carries `x-relay-batch-size: N`, which the access log
//!   records. Reported as not available when the build does not know the key.
//! - **bare** again.
//! - **big** (issue #9): 300 events of ~450 kB each (`data.justification` of 450,000
//!   characters, which the seed template embeds whole: each request body is ~450 kB, under
//!   Logz.io's 500,000-byte line), single as above with the shipped `amqp.memory_budget`,
//!   then again with a budget of 4 GB (labelled so) to show what the budget saves. The
//!   worker serves `/metrics` on a port of its own and polls its gauges every second there,
//!   so the bench can report the most bytes of bodies it held at once. Not compared with
//!   bare (other events).
//! - with `--rss-200k`, **single** with a 200,000-event backlog.
//! - **cluster** (only with `--phases cluster`; issue #11): 1, 2 and 3 release workers on the
//!   local 3-node cluster (`scripts/cluster up`), quorum queues, into nginx (broker-bound) and
//!   into a sink that answers after 20 ms (endpoint-bound), each against as many bare
//!   consumers on the same cluster; see `phases/cluster.rs`.
//! - **latency**: a steady rate (1,000 events/s for 10 s by default) published while the
//!   worker runs, sink = the in-process `LocalLogzio`, which records when each request
//!   arrived; each event carries `data.custom_fields.seq` and the webhook's body carries it,
//!   so received lines match published instants. The first second is warm-up.
//!
//! Before each drain the backlog is pre-loaded with pipelined publisher confirms: N events
//! shaped like the vendor's schema (`webhook_relay::model::event::sample`, triggers in turn), each
//! with its own `data.id` and `event_time`, persistent, on durable queues as the worker
//! declares them. The worker's peak RSS is `VmHWM` and its CPU `utime + stime` of
//! `/proc/<pid>`, counted from the moment it consumes to the N-th event received.
//!
//! Everything waits with a bound: a stalled phase is reported and the run goes on. Workers and
//! nginx are stopped and every queue and exchange deleted, also when a phase fails or panics.
//!
//! The modules: [`args`] (the command line), [`setup`] (the worker's config and the backlog's
//! events), [`broker`] (RabbitMQ: pre-load, queue counts, clean-up), [`nginx`] (the sink and
//! its access log), [`proc`] (the worker and `perf` processes, `/proc` readings),
//! [`phases`] (bare, the worker drains: single, batched, big; latency) and [`report`] (the
//! tables).

mod args;
mod broker;
mod nginx;
mod phases;
mod proc;
mod report;
mod setup;

use args::Args;
use broker::{cleanup, connect_broker};
use futures_util::FutureExt;
use nginx::Nginx;
use phases::Measured;
use proc::{clock_ticks, load_average};
use report::{Drain, Latency, Skipped, markdown, ms, print_machine, report};
use setup::{TOKEN, write_config};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use webhook_relay::config::{self, AmqpSettings, Config, Env, Webhook};
use webhook_relay::devtools::devcert::DevCert;

/// A phase making no progress this long is given up.
const STALL: Duration = Duration::from_secs(60);

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

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn first_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.chars().take(300).collect()
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

/// What the phases measured, in order.
#[derive(Default)]
struct Results {
    drains: Vec<Drain>,
    latencies: Vec<Latency>,
    skipped: Vec<Skipped>,
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
        Ok(results) => {
            print_results(&bench.args, &results);
            if let Err(e) = cleaned {
                eprintln!("cleanup: {e}");
                return 1;
            }
            if results.drains.is_empty() && results.latencies.is_empty() {
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

/// Prints the report, and the markdown tables (appended to `--markdown FILE` if given).
fn print_results(args: &Args, results: &Results) {
    let Results {
        drains,
        latencies,
        skipped,
    } = results;
    println!("{}", report(args, drains, latencies, skipped));
    let markdown = markdown(args, drains, latencies, skipped);
    let Some(path) = &args.markdown else {
        println!("{markdown}");
        return;
    };
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, markdown.as_bytes()))
    {
        Ok(()) => println!("markdown appended to {}", path.display()),
        Err(e) => eprintln!("error: cannot append to {}: {e}", path.display()),
    }
}

impl Bench {
    /// Every planned phase in turn, each tried once more when it fails.
    async fn phases(&mut self) -> Results {
        let mut results = Results::default();
        let needs_nginx = self
            .args
            .phases
            .iter()
            .any(|p| p == "single" || p == "batched" || p == "big" || p == "cluster")
            || self.args.rss_200k;
        if needs_nginx {
            self.start_nginx(&mut results);
        }
        for (phase, events) in self.plan() {
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
            results.record(&phase, result, load);
        }
        results
    }

    fn start_nginx(&mut self, results: &mut Results) {
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
                results.skipped.push(Skipped {
                    phase: "single, batched, big".into(),
                    why: format!("nginx: {e}"),
                });
            }
        }
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

    /// Writes and loads a phase's config (`keys`: its own settings in relay.toml) and declares
    /// its topology (registered for deletion).
    async fn prepare(
        &mut self,
        dir: &Path,
        prefix: &str,
        port: u16,
        ca_pem: &str,
        webhook: &str,
        keys: &[(&str, String)],
    ) -> Result<Result<Config, String>, String> {
        write_config(dir, prefix, port, ca_pem, webhook, keys)?;
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
}

impl Results {
    /// Adds what a phase produced (or why it did not), with the load average around it.
    fn record(&mut self, phase: &str, result: Result<Measured, String>, load: String) {
        match result {
            Ok(Measured::Drains(drains)) => {
                for mut drain in drains {
                    drain.notes.push(load.clone());
                    self.drains.push(drain);
                }
            }
            Ok(Measured::Drain(mut drain)) => {
                drain.notes.push(load);
                eprintln!(
                    "{}: {} events in {:.2}s = {:.0} events/s",
                    drain.phase,
                    drain.events,
                    drain.seconds,
                    drain.rate()
                );
                self.drains.push(drain);
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
                self.latencies.push(latency);
            }
            Ok(Measured::Skipped(skip)) => {
                eprintln!("{}: {}", skip.phase, skip.why);
                self.skipped.push(skip);
            }
            Err(why) => {
                eprintln!("{phase}: FAILED: {why}");
                self.skipped.push(Skipped {
                    phase: phase.to_string(),
                    why: format!("failed: {why}"),
                });
            }
        }
    }
}
