//! Configuration: `relay.toml` (worker settings, overridable by `RELAY__SECTION__KEY`
//! environment variables) and every `webhooks/*.toml` (webhook rules), loaded into one
//! immutable, validated [`Config`], and checked further by [`lint`] for `check`.
//!
//! Loading never stops at the first problem: it returns every problem it finds, each naming
//! its file, webhook and field. Webhook files are parsed one by one and concatenated, because
//! config-rs would let the last file's `webhook` array replace the others silently.
//!
//! # Layout
//! - [`load`] (here): reads the files, validates each section, collects the problems.
//! - `source`: reading `relay.toml` with its env overrides and each webhook file; library
//!   errors turned into problems that never show a secret.
//! - `env`: the environment snapshot and `${VAR}` interpolation.
//! - `amqp`, `delivery`, `relay` (`[http]`, `[policy]`, `[shutdown]`, `[monitor]`,
//!   `[server]`, `[log]`): each `relay.toml` section as written and validated.
//! - `webhook`: the validated [`Webhook`] and its types; `webhook::validate` checks one table
//!   concern by concern, `webhook::target` its URL.
//! - `batch`: `[webhook.batch]` and the receiver's size limits ([`MAX_LINE_BYTES`]).
//! - `secrets`: secrets too short to mask, and secrets written into files.
//! - `problem`: [`Problem`] and [`Severity`], shared by load errors, load warnings and
//!   [`lint`] findings; [`ConfigError`].
//! - `duration`: `"500ms"`-style durations.
//! - [`lint`]: what `check` reports about a loaded config beyond what loading refuses.

mod amqp;
mod batch;
mod delivery;
mod duration;
mod env;
pub mod lint;
mod problem;
mod relay;
mod secrets;
mod source;
mod webhook;

pub use amqp::{
    AmqpSettings, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MEMORY_BUDGET, QueueType,
    RABBITMQ_DEFAULT_CONSUMER_TIMEOUT, RABBITMQ_DEFAULT_FRAME_MAX,
};
pub use batch::{BatchSettings, ByteSize, MAX_BATCH_BYTES, MAX_LINE_BYTES};
pub use delivery::{DeliveryOverrides, DeliverySettings};
pub use duration::{parse as parse_duration, show as show_duration};
pub use env::{Env, Interpolated, interpolate};
pub use problem::{ConfigError, Problem, Severity};
pub use relay::{HttpSettings, LogFormat, Policy, ShutdownSettings};
pub use webhook::{
    Auth, ClientAuth, Filters, Header, JsonPath, Method, OAuth2, PathStep, RateLimit,
    ResponseValidator, Signing, Status, WHSEC_PREFIX, Webhook, WebhookUrl, decode_whsec,
    is_json_content_type, valid_name,
};

pub(crate) use webhook::basic_credential;

use crate::redact::Redactor;
use problem::{Findings, Place};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use webhook::WebhookContext;

/// The env var that picks the config folder when `--config` is not given.
pub const CONFIG_DIR_ENV: &str = "WEBHOOK_RELAY_CONFIG";
/// Prefix of the env vars that override `relay.toml`: `RELAY__AMQP__URL` sets `amqp.url`.
pub const ENV_PREFIX: &str = "RELAY";
/// Separator between the prefix and each key segment of an override.
pub const ENV_SEPARATOR: &str = "__";

/// The whole validated configuration. Immutable: a reload builds a new one.
#[derive(Debug)]
pub struct Config {
    /// The config folder it was read from.
    pub dir: PathBuf,
    /// `[amqp]`
    pub amqp: AmqpSettings,
    /// `[delivery]`: the defaults every webhook starts from.
    pub delivery: DeliverySettings,
    /// `[http]`
    pub http: HttpSettings,
    /// `[policy]`
    pub policy: Policy,
    /// `[shutdown]`
    pub shutdown: ShutdownSettings,
    /// `[monitor] interval`: how often each webhook's circuit state and retry-queue depth
    /// are logged.
    pub monitor_interval: Duration,
    /// `[server] listen`: where `/metrics`, `/healthz` and `/readyz` are served; `None` when
    /// set to `""` (no server).
    pub server_listen: Option<std::net::SocketAddr>,
    /// `[log] format`.
    pub log_format: LogFormat,
    /// Every webhook, in file order, then table order.
    pub webhooks: Vec<Arc<Webhook>>,
    /// Scrubs every secret value this config introduced.
    pub redactor: Redactor,
    /// Things that are allowed but probably wrong (e.g. an ignored `RELAY_…` variable); each
    /// has [`Severity::Warning`].
    pub warnings: Vec<Problem>,
}

impl Config {
    /// The webhook called `name`.
    pub fn webhook(&self, name: &str) -> Option<&Arc<Webhook>> {
        self.webhooks.iter().find(|w| w.name == name)
    }
}

/// Reads and validates the config in `dir`: `dir/relay.toml` and `dir/webhooks/*.toml`, with
/// `${VAR}` and `RELAY__…` taken from `env`. Each section validates itself, recording its
/// problems; the config is built only when none of them is an error.
pub fn load(dir: &Path, env: &Env) -> Result<Config, ConfigError> {
    let relay_file = dir.join("relay.toml");
    let relay = Place {
        file: &relay_file,
        webhook: None,
    };
    let mut found = Findings::default();
    source::ignored_env_overrides(env, &relay_file, &mut found);
    let raw = source::read_relay(&relay_file, env)?;

    let consumer_timeout = raw.amqp.consumer_timeout;
    let defaults = DeliverySettings::default().with(&raw.delivery);
    let amqp = raw.amqp.validate(&relay_file, env, &mut found);
    let delivery = defaults.validate(relay, consumer_timeout, &mut found);
    let http = raw.http.validate(dir, &relay_file, &mut found);
    let monitor_interval = raw.monitor.validate(&relay_file, &mut found);
    let server_listen = raw.server.validate(&relay_file, &mut found);
    let ctx = WebhookContext {
        config_dir: dir,
        env,
        policy: &raw.policy,
        defaults,
        consumer_timeout,
    };
    let webhooks = load_webhooks(dir, &ctx, &mut found);

    let (Some(amqp), Some(delivery)) = (amqp, delivery) else {
        return Err(found.into_error());
    };
    let (warnings, secrets) = found.finish()?;
    Ok(Config {
        dir: dir.to_path_buf(),
        amqp,
        delivery,
        http,
        policy: raw.policy,
        shutdown: raw.shutdown,
        monitor_interval,
        server_listen,
        log_format: raw.log.format,
        webhooks,
        redactor: Redactor::new(secrets),
        warnings,
    })
}

/// Every webhook of every `webhooks/*.toml`, each file parsed on its own, in file-name
/// order. A name may be used once in the whole config.
fn load_webhooks(dir: &Path, ctx: &WebhookContext<'_>, found: &mut Findings) -> Vec<Arc<Webhook>> {
    let mut webhooks: Vec<Arc<Webhook>> = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for file in source::webhook_files(dir, found) {
        for spec in source::parse_webhook_file(&file, found) {
            if let Some(first) = seen.get(&spec.name) {
                found.push(Problem::webhook(
                    &file,
                    &spec.name,
                    "name",
                    format!("is already used by a webhook in {}", first.display()),
                ));
                continue;
            }
            seen.insert(spec.name.clone(), file.clone());
            if let Some(webhook) = webhook::validate(spec, &file, ctx, found) {
                webhooks.push(Arc::new(webhook));
            }
        }
    }
    if webhooks.is_empty() && !found.has_errors() {
        found.warn(Problem::file(
            &dir.join("webhooks"),
            "no webhook is configured: every event will be acked without delivery",
        ));
    }
    webhooks
}

#[cfg(test)]
mod tests;
