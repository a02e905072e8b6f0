//! `webhook-relay demo`: the seed's Test button for the whole pipeline. It runs the real
//! worker with the shipped Logz.io webhook (`config/webhooks/logzio.toml`) pointed at a
//! built-in HTTPS listener on 127.0.0.1 that answers like Logz.io, publishes one sample event
//! per trigger, prints each body as the listener received it, shows a failure landing in the
//! dead-letter queue with its headers, then deletes its queues. Nothing leaves the machine.

use crate::broker::dead_letter::DeadLetterInfo;
use crate::broker::{Broker, Inbound};
use crate::config::{self, Env};
use crate::devtools::local_logzio::{LocalLogzio, Received};
use crate::model::event::{self, Trigger};
use crate::ops::metrics::Metrics;
use crate::redact;
use crate::worker;
use lapin::BasicProperties;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The shipped Logz.io webhook, used as is except for its URL.
const SHIPPED_WEBHOOK: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/webhooks/logzio.toml"
));
/// The URL in the shipped webhook, replaced by the local listener's.
const SHIPPED_URL: &str = "https://listener.logz.io/?token=${LOGZIO_TOKEN}&type=apono";

/// Options of `webhook-relay demo`. `Debug` hides the broker URL: it carries the password.
#[derive(Clone, clap::Args)]
pub struct DemoArgs {
    /// The RabbitMQ to use. The demo declares its own uniquely named queues and deletes them.
    #[arg(
        long,
        env = "RABBITMQ_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// How long to wait for every delivery before giving up.
    #[arg(long, default_value = "60s", value_parser = config::parse_duration)]
    pub timeout: Duration,
}

impl std::fmt::Debug for DemoArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoArgs")
            .field("amqp_url", &redact::redact_url(&self.amqp_url))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why the demo failed: one line, with any broker URL's password masked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoError(String);

/// Runs the demo end to end; `Ok` when every sample event arrived and the failure landed in
/// the dead-letter queue.
pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    demo(&args)
        .await
        .map_err(|message| DemoError(redact::redact_url(&message)))
}

async fn demo(args: &DemoArgs) -> Result<(), String> {
    let token = format!("demo-{:016x}", rand_u64());
    let listener = LocalLogzio::start(&token)
        .await
        .map_err(|e| format!("cannot start the local listener: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp folder: {e}"))?;
    let prefix = format!("webhook-relay-demo-{}", std::process::id());
    write_config(dir.path(), &listener, &prefix)?;
    let env = Env::from_pairs([
        ("LOGZIO_TOKEN", token.as_str()),
        ("DEMO_WRONG_TOKEN", "not-the-token"),
        ("DEMO_AMQP_URL", args.amqp_url.as_str()),
    ]);
    let config = Arc::new(config::load(dir.path(), &env).map_err(|e| e.to_string())?);

    print_intro(&config, &listener);

    let admin = Broker::connect(&config.amqp, &config.redactor)
        .await
        .map_err(|e| {
            format!(
                "{e}\nStart RabbitMQ first: `scripts/demo` does it for you, or run \
                 `rabbitmq-server -detached`, or `docker compose up -d rabbitmq`."
            )
        })?;
    admin
        .declare_topology(&config.amqp)
        .await
        .map_err(|e| e.to_string())?;

    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let worker = tokio::spawn(worker::run(
        config.clone(),
        shutdown.clone(),
        metrics.clone(),
    ));

    let result = publish_and_show(&admin, &config, &listener, args.timeout).await;

    shutdown.cancel();
    match worker.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("worker: {e}"),
        Err(e) => eprintln!("worker task: {e}"),
    }
    let cleaned = admin.delete_topology(&config.amqp, &config.webhooks).await;
    admin.close().await;
    result?;
    cleaned.map_err(|e| format!("cleanup: {e}"))?;
    println!(
        "Demo complete: {} delivered, {} dead-lettered, queues deleted.",
        metrics.delivered(),
        metrics.dead_lettered()
    );
    Ok(())
}

/// What the demo is about to use.
fn print_intro(config: &config::Config, listener: &LocalLogzio) {
    println!("webhook-relay demo");
    println!("  broker    {}", config.amqp.url_redacted);
    println!(
        "  listener  https://127.0.0.1:{} (a local stand-in for Logz.io, throwaway certificate)",
        listener.port()
    );
    println!(
        "  queues    {} and {} (deleted at the end)",
        config.amqp.queue, config.amqp.dead_letter_queue
    );
    println!(
        "  webhooks  logzio-audit (the shipped config/webhooks/logzio.toml, every trigger)\n            \
         logzio-wrong-token (RequestFailed only, with a wrong token: it will be dead-lettered)"
    );
    println!();
}

fn write_config(dir: &Path, listener: &LocalLogzio, prefix: &str) -> Result<(), String> {
    let io = |e: std::io::Error| format!("cannot write the demo config: {e}");
    std::fs::write(dir.join("ca.pem"), listener.ca_pem()).map_err(io)?;
    let relay = format!(
        r#"[amqp]
url = "${{DEMO_AMQP_URL}}"
exchange = "{prefix}"
queue = "{prefix}.access-requests"
dead_letter_queue = "{prefix}.dead-letter"
prefetch = 32
connection_name = "webhook-relay demo"

[delivery]
timeout = "5s"
max_attempts = 3
initial_backoff = "200ms"
max_backoff = "1s"
max_elapsed = "30s"

[http]
ca_file = "ca.pem"

[policy]
require_https = true
allowed_ports = [{port}]

[shutdown]
grace = "5s"
"#,
        port = listener.port()
    );
    std::fs::write(dir.join("relay.toml"), relay).map_err(io)?;
    std::fs::create_dir(dir.join("webhooks")).map_err(io)?;
    let local_url = format!(
        "https://127.0.0.1:{}/?token=${{LOGZIO_TOKEN}}&type=apono",
        listener.port()
    );
    if !SHIPPED_WEBHOOK.contains(SHIPPED_URL) {
        return Err("config/webhooks/logzio.toml no longer holds the listener URL".into());
    }
    std::fs::write(
        dir.join("webhooks/logzio.toml"),
        SHIPPED_WEBHOOK.replace(SHIPPED_URL, &local_url),
    )
    .map_err(io)?;
    let wrong = format!(
        r#"[[webhook]]
name = "logzio-wrong-token"
url = "https://127.0.0.1:{}/?token=${{DEMO_WRONG_TOKEN}}&type=apono"
triggers = ["RequestFailed"]
body_template = '{{"message": "{{{{ event_type }}}} {{{{ data.friendly_id }}}}", "type": "Apono"}}'
"#,
        listener.port()
    );
    std::fs::write(dir.join("webhooks/wrong-token.toml"), wrong).map_err(io)
}

/// Publishes one sample per trigger, shows each as the listener received it, then the dead
/// letter of the webhook with the wrong token. Fails when anything is missing by `timeout`.
async fn publish_and_show(
    admin: &Broker,
    config: &config::Config,
    listener: &LocalLogzio,
    timeout: Duration,
) -> Result<(), String> {
    publish_samples(admin, config).await?;
    let deadline = Instant::now() + timeout;
    show_deliveries(listener, timeout).await?;
    let letter = wait_for_dead_letter(admin, config, deadline).await?;
    show_dead_letter(config, &letter);
    Ok(())
}

async fn publish_samples(admin: &Broker, config: &config::Config) -> Result<(), String> {
    let publisher = admin.publisher();
    for trigger in Trigger::ALL {
        let body = event::sample(trigger).to_string();
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        publisher
            .publish_confirmed(
                &config.amqp.exchange,
                trigger.as_str(),
                body.as_bytes(),
                properties,
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    println!(
        "Published {} sample events, one per trigger, all of access request AR-1042 \
         (confirmed by the broker).\n",
        Trigger::ALL.len()
    );
    Ok(())
}

/// Waits for one accepted line per trigger and prints every request the listener accepted.
async fn show_deliveries(listener: &LocalLogzio, timeout: Duration) -> Result<(), String> {
    let expected = Trigger::ALL.len();
    let received = listener.wait_for_accepted(expected, timeout).await;
    let requests = listener.requests();
    let accepted: Vec<&Received> = requests.iter().filter(|r| r.status == 200).collect();
    for (n, request) in accepted.iter().enumerate() {
        println!("{}", show_request(n + 1, expected, request));
    }
    if received.len() < expected {
        return Err(format!(
            "only {} of {expected} events reached the listener within {}s",
            received.len(),
            timeout.as_secs()
        ));
    }
    Ok(())
}

/// Takes the first dead letter off the queue, polling until `deadline`.
async fn wait_for_dead_letter(
    admin: &Broker,
    config: &config::Config,
    deadline: Instant,
) -> Result<Inbound, String> {
    loop {
        if let Some(letter) = admin
            .fetch(&config.amqp.dead_letter_queue)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(letter);
        }
        if Instant::now() >= deadline {
            return Err("the expected dead letter did not arrive".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn show_dead_letter(config: &config::Config, letter: &Inbound) {
    let info = DeadLetterInfo::from_properties(&letter.properties);
    println!(
        "One failure, as designed: logzio-wrong-token was answered 401, a permanent error, so \
         its RequestFailed event went straight to the dead-letter queue `{}`:",
        config.amqp.dead_letter_queue
    );
    let rows = [
        ("x-relay-reason", info.reason.map(|r| r.to_string())),
        ("x-relay-webhook", info.webhook),
        ("x-relay-attempts", info.attempts.map(|a| a.to_string())),
        (
            "x-relay-last-status",
            info.last_status.map(|s| s.to_string()),
        ),
        ("x-relay-last-error", info.last_error),
        ("x-relay-event-id", info.event_id),
        ("x-relay-failed-at", info.failed_at),
        ("x-relay-routing-key", info.routing_key),
    ];
    for (name, value) in rows {
        println!("  {name:<20} {}", value.unwrap_or_default());
    }
    println!(
        "  body                 the original event, unchanged ({} bytes)\n",
        letter.body.len()
    );
}

fn show_request(n: usize, of: usize, request: &Received) -> String {
    let mut out = String::new();
    let body = request.body_text();
    let parsed: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(|m| m.as_str())
        .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok());
    let event_type = message
        .as_ref()
        .and_then(|m| m.get("event_type"))
        .and_then(|t| t.as_str())
        .unwrap_or("?");
    let _ = writeln!(
        out,
        "[{n}/{of}] {event_type}: {} {} → HTTP {}",
        request.method,
        redact::redact_url(&format!(
            "https://listener{}?{}",
            request.path, request.query
        ))
        .trim_start_matches("https://listener"),
        request.status
    );
    let _ = writeln!(out, "  body as received: {body}");
    if let Some(message) = message {
        let pretty = serde_json::to_string_pretty(&message).unwrap_or_default();
        let _ = writeln!(out, "  its \"message\" field, parsed:");
        for line in pretty.lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    out
}

/// A random number for the demo's throwaway token, without a dependency on a RNG crate.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}
