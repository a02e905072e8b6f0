//! A backlog drained through the release worker into nginx (the single and batched phases).

use crate::broker::{connect, message_count, preload, wait_consuming};
use crate::nginx::AccessLog;
use crate::proc::{Perf, Worker};
use crate::report::{Drain, Skipped};
use crate::setup::{BATCH_TABLE, not_available, single_webhook};
use crate::{Bench, STALL, err, first_line};
use lapin::Channel;
use std::time::{Duration, Instant};
use webhook_relay::config::AmqpSettings;

/// How often the access log is read.
const LOG_POLL: Duration = Duration::from_millis(5);

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
        if let Err(exit) = wait_consuming(&probe, &config.amqp.queue, &mut worker).await? {
            let _ = connection.close(200, "done".into()).await;
            return not_consuming(name, batched, exit, &worker.log_text());
        }
        let started = Instant::now();
        let startup = started - spawned;
        let watched = match self.watch(name, n, &mut worker, &mut log, started).await {
            Ok(watched) => watched,
            Err(why) => {
                worker.stop().await;
                let _ = connection.close(200, "done".into()).await;
                return Err(why);
            }
        };
        // Anything beyond N (a retried request) shows up within a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        log.read()?;
        let exit = worker.stop().await;

        let mut notes = vec![
            format!("worker start to consuming {:.2}s", startup.as_secs_f64()),
            format!("{} TLS connections to nginx", log.connections.len()),
        ];
        notes.extend(sink_notes(&log, n));
        notes.extend(queue_notes(&probe, &config.amqp).await);
        if exit != Some(0) {
            notes.push(format!("worker exit {exit:?}"));
        }
        notes.extend(worker_log_notes(
            &self.args.rust_log,
            &watched.drain_log,
            &worker.log_text(),
        ));
        let _ = connection.close(200, "done".into()).await;
        Ok(Ok(Drain {
            phase: if n == self.args.events {
                name.to_string()
            } else {
                format!("{name} ({}k)", n / 1000)
            },
            events: n,
            requests: Some(log.requests),
            seconds: watched.seconds,
            peak_rss: watched.peak_rss,
            cpu: watched.cpu,
            notes,
        }))
    }

    /// From `started` (the worker consumes) to nginx's log showing `n` events answered: the
    /// seconds, and the worker's CPU and peak RSS at that moment (`perf` records meanwhile
    /// with `--perf`).
    async fn watch(
        &self,
        name: &str,
        n: u64,
        worker: &mut Worker,
        log: &mut AccessLog,
        started: Instant,
    ) -> Result<Watched, String> {
        let cpu0 = worker.cpu(self.clock_ticks);
        let perf = self
            .args
            .perf
            .as_ref()
            .map(|dir| Perf::start(dir, name, worker.pid));
        let finished = answered(n, worker, log).await;
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
