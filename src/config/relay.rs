//! `relay.toml`: the worker's own settings, with their defaults and field-by-field validation.

use super::duration;
use serde::Deserialize;
use std::time::Duration;

/// RabbitMQ's default `consumer_timeout` (30 minutes): an unacked delivery older than this
/// makes the broker close the channel.
pub const RABBITMQ_DEFAULT_CONSUMER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// `relay.toml` as written (after `RELAY__…` overrides), before validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawRelay {
    pub amqp: RawAmqp,
    pub delivery: DeliveryOverrides,
    pub http: RawHttp,
    pub policy: Policy,
    pub shutdown: RawShutdown,
    pub monitor: RawMonitor,
    pub server: RawServer,
    pub log: RawLog,
}

/// `[server]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawServer {
    pub listen: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:9090".into(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, human-readable when it is.
    #[default]
    Auto,
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[log]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawLog {
    pub format: LogFormat,
}

/// `[monitor]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawMonitor {
    #[serde(with = "duration")]
    pub interval: Duration,
}

impl Default for RawMonitor {
    fn default() -> Self {
        RawMonitor {
            interval: Duration::from_secs(30),
        }
    }
}

/// RabbitMQ's own default `frame_max`: a publisher with default settings can send message
/// headers up to this size, so the worker must accept frames this large.
pub const RABBITMQ_DEFAULT_FRAME_MAX: u32 = 128 * 1024;

/// Default `amqp.max_message_bytes`: 1 MiB, twice Logz.io's 500,000-byte line limit. Every
/// event whose line could fit that limit is accepted with room to spare (escaping only grows
/// what a template copies), and an event between the two is still judged by its webhook (a
/// batched webhook dead-letters a line over 500,000 bytes as `rejected`, saying so). Events
/// in this feed are a few kB: anything over 1 MiB is broken or hostile and is dead-lettered
/// unparsed as `too_large`, before it costs a parse.
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1024 * 1024;

/// Default `amqp.memory_budget`: bytes of message bodies in flight. A body in flight costs
/// three to four times its size at its peak (the bytes, the parsed event while it renders,
/// and each webhook's body on the wire, which the seed template makes about as large as the
/// event), so 16 MiB holds a backlog of 450 kB events at about 85 MiB resident, inside the
/// shipped 128 MiB pod limit with room for the rest of the process. Small events never reach
/// it: 16 MiB is 4,096 of them, far over the default prefetch.
pub const DEFAULT_MEMORY_BUDGET: u64 = 16 * 1024 * 1024;

/// `[amqp]` as written. `url` and `urls` may hold a password (or come whole from
/// `RELAY__AMQP__URL`), so `Debug` shows them as `***`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAmqp {
    pub url: String,
    pub urls: Vec<String>,
    pub queue_type: QueueType,
    pub redelivery_limit: u32,
    pub frame_max: u32,
    pub max_message_bytes: u32,
    pub memory_budget: u64,
    pub exchange: String,
    pub queue: String,
    pub dead_letter_queue: String,
    pub prefetch: u16,
    pub declare: bool,
    #[serde(with = "duration")]
    pub consumer_timeout: Duration,
    #[serde(with = "duration")]
    pub reconnect_initial_backoff: Duration,
    #[serde(with = "duration")]
    pub reconnect_max_backoff: Duration,
    pub connection_name: String,
}

impl std::fmt::Debug for RawAmqp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::redact::MASK;
        f.debug_struct("RawAmqp")
            .field("url", &MASK)
            .field("urls", &vec![MASK; self.urls.len()])
            .field("queue_type", &self.queue_type)
            .field("redelivery_limit", &self.redelivery_limit)
            .field("frame_max", &self.frame_max)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("memory_budget", &self.memory_budget)
            .field("exchange", &self.exchange)
            .field("queue", &self.queue)
            .field("dead_letter_queue", &self.dead_letter_queue)
            .field("prefetch", &self.prefetch)
            .field("declare", &self.declare)
            .field("consumer_timeout", &self.consumer_timeout)
            .field("reconnect_initial_backoff", &self.reconnect_initial_backoff)
            .field("reconnect_max_backoff", &self.reconnect_max_backoff)
            .field("connection_name", &self.connection_name)
            .finish()
    }
}

impl Default for RawAmqp {
    fn default() -> Self {
        RawAmqp {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            urls: Vec::new(),
            queue_type: QueueType::Classic,
            redelivery_limit: 20,
            frame_max: RABBITMQ_DEFAULT_FRAME_MAX,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            exchange: "access-requests".into(),
            queue: "access-requests".into(),
            dead_letter_queue: "access-requests.dead-letter".into(),
            prefetch: 256,
            declare: true,
            consumer_timeout: RABBITMQ_DEFAULT_CONSUMER_TIMEOUT,
            reconnect_initial_backoff: Duration::from_millis(500),
            reconnect_max_backoff: Duration::from_secs(30),
            connection_name: "webhook-relay".into(),
        }
    }
}

/// The kind of every queue the worker declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// RabbitMQ's classic queue: one node.
    #[default]
    Classic,
    /// A replicated quorum queue: survives the loss of a minority of cluster nodes, and
    /// counts redeliveries (`x-delivery-count`).
    Quorum,
}

impl QueueType {
    /// The `x-queue-type` argument value.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

/// `[http]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawHttp {
    pub ca_file: String,
}

/// `[shutdown]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawShutdown {
    #[serde(with = "duration")]
    pub grace: Duration,
}

impl Default for RawShutdown {
    fn default() -> Self {
        RawShutdown {
            grace: Duration::from_secs(30),
        }
    }
}

/// `[policy]`: the seed's URL rules. On by default: HTTPS only, no custom ports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Refuse webhook URLs that are not `https://`.
    pub require_https: bool,
    /// Allow `run` to start with no active webhook. The worker then connects but consumes
    /// nothing (and reports not ready) until a reload brings an active webhook: without it,
    /// every event would be acked and dropped.
    pub allow_idle: bool,
    /// Ports besides the scheme's default that webhook URLs may name (e.g. `[8071]` for the
    /// Logz.io listener's TLS port). As an env override: `RELAY__POLICY__ALLOWED_PORTS=8071,8443`.
    #[serde(deserialize_with = "ports")]
    pub allowed_ports: Vec<u16>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            require_https: true,
            allow_idle: false,
            allowed_ports: Vec::new(),
        }
    }
}

/// Accepts a TOML array of ports, or a comma-separated string (how an env override arrives).
fn ports<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ports {
        List(Vec<u16>),
        One(u16),
        Text(String),
    }
    match Ports::deserialize(d)? {
        Ports::List(list) => Ok(list),
        Ports::One(port) => Ok(vec![port]),
        Ports::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u16>()
                    .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a port number")))
            })
            .collect(),
    }
}

/// Delivery settings as written in `[delivery]` or a webhook's `[webhook.delivery]`: every
/// field optional, so a webhook overrides only what it names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryOverrides {
    /// Per-attempt timeout.
    #[serde(with = "duration::option")]
    pub timeout: Option<Duration>,
    /// Attempts in all, the first included.
    pub max_attempts: Option<u32>,
    /// First backoff delay.
    #[serde(with = "duration::option")]
    pub initial_backoff: Option<Duration>,
    /// Longest backoff delay, also the cap on `Retry-After`.
    #[serde(with = "duration::option")]
    pub max_backoff: Option<Duration>,
    /// Longest time from the first attempt to giving up.
    #[serde(with = "duration::option")]
    pub max_elapsed: Option<Duration>,
    /// Most requests in flight to this webhook at once.
    pub concurrency: Option<u32>,
    /// How long to retry in process before parking the delivery in its retry queue.
    #[serde(with = "duration::option")]
    pub retry_window: Option<Duration>,
    /// Consecutive failures that open the webhook's circuit (0 turns the breaker off).
    pub circuit_failures: Option<u32>,
    /// How long an open circuit waits before letting one probe through.
    #[serde(with = "duration::option")]
    pub circuit_cooldown: Option<Duration>,
}

/// The delivery policy of one webhook, defaults and overrides merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySettings {
    /// Per-attempt timeout (connect + request + response body).
    pub timeout: Duration,
    /// Attempts in all, the first included; at least 1.
    pub max_attempts: u32,
    /// First backoff delay; doubled per retry, with jitter.
    pub initial_backoff: Duration,
    /// Longest backoff delay, and the cap on a server's `Retry-After`.
    pub max_backoff: Duration,
    /// No attempt starts after this much time since the first failure, across restarts.
    pub max_elapsed: Duration,
    /// Most requests in flight to this webhook at once.
    pub concurrency: u32,
    /// In-process retries last at most this long; then the delivery moves to the webhook's
    /// durable retry queue and the input event can be acked.
    pub retry_window: Duration,
    /// Consecutive failures that open the circuit; 0 turns the breaker off.
    pub circuit_failures: u32,
    /// How long an open circuit sends deliveries straight to the retry queue before one probe
    /// is let through.
    pub circuit_cooldown: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(3600),
            concurrency: 64,
            retry_window: Duration::from_secs(5),
            circuit_failures: 10,
            circuit_cooldown: Duration::from_secs(30),
        }
    }
}

impl DeliverySettings {
    /// `self` with every field that `overrides` names replaced.
    pub fn with(self, overrides: &DeliveryOverrides) -> Self {
        DeliverySettings {
            timeout: overrides.timeout.unwrap_or(self.timeout),
            max_attempts: overrides.max_attempts.unwrap_or(self.max_attempts),
            initial_backoff: overrides.initial_backoff.unwrap_or(self.initial_backoff),
            max_backoff: overrides.max_backoff.unwrap_or(self.max_backoff),
            max_elapsed: overrides.max_elapsed.unwrap_or(self.max_elapsed),
            concurrency: overrides.concurrency.unwrap_or(self.concurrency),
            retry_window: overrides.retry_window.unwrap_or(self.retry_window),
            circuit_failures: overrides.circuit_failures.unwrap_or(self.circuit_failures),
            circuit_cooldown: overrides.circuit_cooldown.unwrap_or(self.circuit_cooldown),
        }
    }

    /// The longest a message can stay unacked because of this webhook: the in-process retry
    /// window (bounded by `max_elapsed`), plus one last attempt's timeout, plus the longest
    /// backoff sleep that may start inside the window.
    pub fn worst_case_hold(&self) -> Duration {
        self.retry_window.min(self.max_elapsed) + self.timeout
    }

    /// Field-by-field and cross-field problems, as `(field, message)`.
    pub fn problems(&self, consumer_timeout: Duration) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.timeout.is_zero() {
            out.push(("timeout", "must be greater than 0".to_string()));
        }
        if self.max_attempts == 0 {
            out.push(("max_attempts", "must be at least 1".to_string()));
        }
        if self.initial_backoff.is_zero() {
            out.push(("initial_backoff", "must be greater than 0".to_string()));
        }
        if self.max_backoff < self.initial_backoff {
            out.push((
                "max_backoff",
                format!(
                    "{} is shorter than initial_backoff ({})",
                    duration::show(self.max_backoff),
                    duration::show(self.initial_backoff)
                ),
            ));
        }
        if self.concurrency == 0 {
            out.push(("concurrency", "must be at least 1".to_string()));
        }
        if self.worst_case_hold() >= consumer_timeout {
            out.push((
                "retry_window",
                format!(
                    "{} plus one attempt's timeout ({}) reaches the broker's consumer timeout ({}, \
                     amqp.consumer_timeout); the broker would close the channel on a message \
                     still being retried in process",
                    duration::show(self.retry_window.min(self.max_elapsed)),
                    duration::show(self.timeout),
                    duration::show(consumer_timeout)
                ),
            ));
        }
        if self.circuit_failures > 0 && self.circuit_cooldown.is_zero() {
            out.push(("circuit_cooldown", "must be greater than 0".to_string()));
        }
        out
    }
}
