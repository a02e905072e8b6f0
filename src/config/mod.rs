//! Configuration: `relay.toml` (worker settings, overridable by `RELAY__SECTION__KEY`
//! environment variables) and every `webhooks/*.toml` (webhook rules), loaded into one
//! immutable, validated [`Config`].
//!
//! Loading never stops at the first problem: it returns every problem it finds, each naming
//! its file, webhook and field. Webhook files are parsed one by one and concatenated, because
//! config-rs would let the last file's `webhook` array replace the others silently.

mod duration;
mod env;
pub mod lint;
mod problem;
mod relay;
mod webhook;

pub use duration::{parse as parse_duration, show as show_duration};
pub use env::{Env, Interpolated, interpolate};
use problem::mask_quoted;
pub use problem::{ConfigError, Problem, Severity};
pub use relay::{
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MEMORY_BUDGET, DeliveryOverrides, DeliverySettings,
    LogFormat, Policy, QueueType, RABBITMQ_DEFAULT_CONSUMER_TIMEOUT, RABBITMQ_DEFAULT_FRAME_MAX,
};
pub use webhook::{
    BatchSettings, ByteSize, Filters, Header, MAX_BATCH_BYTES, MAX_LINE_BYTES, Method, Status,
    Webhook, WebhookUrl, is_json_content_type, valid_name,
};

use crate::redact::{self, Redactor, Secret};
use relay::RawRelay;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use webhook::{WebhookContext, WebhookSpec, short_secret_message};

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

/// `[amqp]`, validated.
#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// Broker URL; carries the password, so it is secret. Use `url_redacted` to show it.
    pub url: Secret<String>,
    /// The URL with its password masked.
    pub url_redacted: String,
    /// Further broker URLs (cluster nodes), tried in turn after `url`; secret like `url`.
    pub fallback_urls: Vec<(Secret<String>, String)>,
    /// `classic` or `quorum`, for every queue the worker declares.
    pub queue_type: QueueType,
    /// With quorum queues: a message redelivered more than this many times is dead-lettered
    /// as `redelivery_limit` instead of being processed again.
    pub redelivery_limit: u32,
    /// Largest AMQP frame asked for. Message headers must fit in one frame, so this is at
    /// least RabbitMQ's default (128 KiB): any header a publisher with default settings can
    /// send is received. The client keeps buffers of 32 frames each way.
    pub frame_max: u32,
    /// Larger messages are dead-lettered unparsed as `too_large`.
    pub max_message_bytes: u32,
    /// Bytes of message bodies in flight (input and retry queues together) the worker aims
    /// to stay under, by lowering or raising its prefetch.
    pub memory_budget: u64,
    /// Topic exchange the input queue is bound to with `#`.
    pub exchange: String,
    /// Input queue.
    pub queue: String,
    /// Queue that dead letters are published to (through the default exchange).
    pub dead_letter_queue: String,
    /// Most unacked input messages at once; bounds work in flight and memory.
    pub prefetch: u16,
    /// Declare the exchange and queues (durable) at start; `false` expects them to exist.
    pub declare: bool,
    /// The broker's `consumer_timeout`; retries must finish well inside it.
    pub consumer_timeout: Duration,
    /// First delay before reconnecting to the broker.
    pub reconnect_initial_backoff: Duration,
    /// Longest delay between reconnect attempts.
    pub reconnect_max_backoff: Duration,
    /// Connection name shown in the management UI.
    pub connection_name: String,
}

/// `[http]`, validated.
#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    /// The extra root CAs file, if any.
    pub ca_file: Option<PathBuf>,
    /// Its PEM contents, read at load time.
    pub ca_pem: Option<Vec<u8>>,
}

/// `[shutdown]`, validated.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownSettings {
    /// How long in-flight deliveries may run after SIGTERM before the worker exits and lets
    /// the broker redeliver what did not finish.
    pub grace: Duration,
}

/// Reads and validates the config in `dir`: `dir/relay.toml` and `dir/webhooks/*.toml`, with
/// `${VAR}` and `RELAY__…` taken from `env`.
pub fn load(dir: &Path, env: &Env) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let relay_path = dir.join("relay.toml");

    warnings.extend(ignored_env_overrides(env, &relay_path));
    let raw = load_relay(&relay_path, env)?;
    let mut secrets: Vec<String> = Vec::new();

    // A URL that came whole from `RELAY__AMQP__URL` is named by its variable in errors,
    // never echoed, not even redacted.
    let url_var = format!("{ENV_PREFIX}{ENV_SEPARATOR}AMQP{ENV_SEPARATOR}URL");
    let url_from_env = env.get(&url_var).is_some();
    let mut fallback_urls = Vec::new();
    for (i, text) in raw.amqp.urls.iter().enumerate() {
        let field = format!("amqp.urls[{i}]");
        match amqp_url(text, env, &field, &mut secrets, &mut warnings, &relay_path) {
            Ok((value, shown)) => fallback_urls.push((Secret::new(value), shown)),
            Err(AmqpUrlError::Message(message)) => {
                problems.push(Problem::field(&relay_path, field, message))
            }
            Err(AmqpUrlError::Url(shown)) => problems.push(Problem::field(
                &relay_path,
                field,
                format!("`{shown}` is not an amqp:// or amqps:// URL"),
            )),
        }
    }
    let amqp = match amqp_url(
        &raw.amqp.url,
        env,
        "amqp.url",
        &mut secrets,
        &mut warnings,
        &relay_path,
    ) {
        Ok(url) => Some(url),
        Err(error) => {
            let message = match error {
                AmqpUrlError::Message(message) => message,
                AmqpUrlError::Url(_) if url_from_env => format!(
                    "the value of environment variable `{url_var}` is not an amqp:// or \
                     amqps:// URL"
                ),
                AmqpUrlError::Url(shown) => {
                    format!("`{shown}` is not an amqp:// or amqps:// URL")
                }
            };
            problems.push(Problem::field(&relay_path, "amqp.url", message));
            None
        }
    };
    for (field, value) in [
        ("amqp.exchange", &raw.amqp.exchange),
        ("amqp.queue", &raw.amqp.queue),
        ("amqp.dead_letter_queue", &raw.amqp.dead_letter_queue),
    ] {
        if value.trim().is_empty() || value.len() > 255 {
            problems.push(Problem::field(
                &relay_path,
                field,
                "must be a name of 1 to 255 bytes",
            ));
        }
    }
    if raw.amqp.queue == raw.amqp.dead_letter_queue {
        problems.push(Problem::field(
            &relay_path,
            "amqp.dead_letter_queue",
            "must differ from amqp.queue",
        ));
    }
    let server_listen = match raw.server.listen.trim() {
        "" => None,
        text => {
            match text.parse::<std::net::SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    problems.push(Problem::field(
                    &relay_path,
                    "server.listen",
                    format!("`{text}` is not an address like 127.0.0.1:9090 (\"\" turns the server off)"),
                ));
                    None
                }
            }
        }
    };
    if raw.monitor.interval.is_zero() {
        problems.push(Problem::field(
            &relay_path,
            "monitor.interval",
            "must be greater than 0",
        ));
    }
    if !(relay::RABBITMQ_DEFAULT_FRAME_MAX..=16 * 1024 * 1024).contains(&raw.amqp.frame_max) {
        problems.push(Problem::field(
            &relay_path,
            "amqp.frame_max",
            "must be between 131072 (RabbitMQ's default, so that any header a publisher can \
             send is received) and 16777216",
        ));
    }
    if raw.amqp.max_message_bytes == 0 {
        problems.push(Problem::field(
            &relay_path,
            "amqp.max_message_bytes",
            "must be at least 1",
        ));
    }
    if raw.amqp.memory_budget < u64::from(raw.amqp.max_message_bytes) {
        problems.push(Problem::field(
            &relay_path,
            "amqp.memory_budget",
            "must be at least amqp.max_message_bytes, so that one message of the largest \
             accepted size fits",
        ));
    }
    if raw.amqp.redelivery_limit == 0 {
        problems.push(Problem::field(
            &relay_path,
            "amqp.redelivery_limit",
            "must be at least 1",
        ));
    }
    if raw.amqp.prefetch == 0 {
        problems.push(Problem::field(
            &relay_path,
            "amqp.prefetch",
            "must be at least 1 (0 would mean unbounded)",
        ));
    }
    if raw.amqp.reconnect_initial_backoff.is_zero()
        || raw.amqp.reconnect_max_backoff < raw.amqp.reconnect_initial_backoff
    {
        problems.push(Problem::field(
            &relay_path,
            "amqp.reconnect_max_backoff",
            "must be at least amqp.reconnect_initial_backoff, which must be greater than 0",
        ));
    }

    let defaults = DeliverySettings::default().with(&raw.delivery);
    for (field, message) in defaults.problems(raw.amqp.consumer_timeout) {
        problems.push(Problem::field(
            &relay_path,
            format!("delivery.{field}"),
            message,
        ));
    }

    let http = match raw.http.ca_file.trim() {
        "" => HttpSettings::default(),
        file => {
            let path = dir.join(file);
            match std::fs::read(&path) {
                Ok(pem)
                    if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") =>
                {
                    HttpSettings {
                        ca_file: Some(path),
                        ca_pem: Some(pem),
                    }
                }
                Ok(_) => {
                    problems.push(Problem::field(
                        &relay_path,
                        "http.ca_file",
                        format!("{} holds no PEM certificate", path.display()),
                    ));
                    HttpSettings::default()
                }
                Err(e) => {
                    problems.push(Problem::field(
                        &relay_path,
                        "http.ca_file",
                        format!("cannot read {}: {e}", path.display()),
                    ));
                    HttpSettings::default()
                }
            }
        }
    };

    let ctx = WebhookContext {
        config_dir: dir,
        env,
        policy: &raw.policy,
        defaults,
        consumer_timeout: raw.amqp.consumer_timeout,
    };
    let webhooks = load_webhooks(dir, &ctx, &mut problems, &mut warnings, &mut secrets);

    // `amqp` is `None` only when an `amqp.url` problem was recorded.
    let Some((url, url_redacted)) = amqp.filter(|_| problems.is_empty()) else {
        return Err(ConfigError { problems });
    };
    Ok(Config {
        dir: dir.to_path_buf(),
        amqp: AmqpSettings {
            url: Secret::new(url),
            url_redacted,
            fallback_urls,
            queue_type: raw.amqp.queue_type,
            redelivery_limit: raw.amqp.redelivery_limit,
            frame_max: raw.amqp.frame_max,
            max_message_bytes: raw.amqp.max_message_bytes,
            memory_budget: raw.amqp.memory_budget,
            exchange: raw.amqp.exchange,
            queue: raw.amqp.queue,
            dead_letter_queue: raw.amqp.dead_letter_queue,
            prefetch: raw.amqp.prefetch,
            declare: raw.amqp.declare,
            consumer_timeout: raw.amqp.consumer_timeout,
            reconnect_initial_backoff: raw.amqp.reconnect_initial_backoff,
            reconnect_max_backoff: raw.amqp.reconnect_max_backoff,
            connection_name: raw.amqp.connection_name,
        },
        delivery: defaults,
        http,
        policy: raw.policy,
        shutdown: ShutdownSettings {
            grace: raw.shutdown.grace,
        },
        monitor_interval: raw.monitor.interval,
        server_listen,
        log_format: raw.log.format,
        webhooks,
        redactor: Redactor::new(secrets),
        warnings,
    })
}

/// Why a broker URL was refused.
enum AmqpUrlError {
    /// A `${VAR}` problem, already worded.
    Message(String),
    /// Not an `amqp://` or `amqps://` URL; carries the URL as it may be shown.
    Url(String),
}

/// Interpolates and checks one broker URL (`amqp.url` or an entry of `amqp.urls`), recording
/// its secrets (every substituted value, the password as written and decoded) and a warning
/// for each one too short to be masked everywhere. Returns the URL and its shown form, with
/// every `${VAR}` and the password masked.
fn amqp_url(
    text: &str,
    env: &Env,
    field: &str,
    secrets: &mut Vec<String>,
    warnings: &mut Vec<Problem>,
    relay_path: &Path,
) -> Result<(String, String), AmqpUrlError> {
    let interpolated = interpolate(text, env).map_err(AmqpUrlError::Message)?;
    let shown = redact::redact_url(interpolated.url_display_source());
    let mut short: Vec<String> = Vec::new();
    for (name, value) in interpolated.names.iter().zip(&interpolated.substituted) {
        if value.len() < Redactor::FREE_TEXT_MIN_LEN {
            short.push(format!("`${{{name}}}`"));
        }
    }
    secrets.extend(interpolated.substituted.iter().cloned());
    let url = match url::Url::parse(&interpolated.value) {
        Ok(url) if matches!(url.scheme(), "amqp" | "amqps") => url,
        _ => return Err(AmqpUrlError::Url(shown)),
    };
    if let Some(password) = url.password()
        && password.len() < Redactor::FREE_TEXT_MIN_LEN
        && short.is_empty()
    {
        short.push("the password".into());
    }
    short.dedup();
    secrets.extend(redact::url_secrets(&url));
    warnings.extend(short.iter().map(|what| {
        Problem::field(relay_path, field, short_secret_message(what))
            .with_severity(Severity::Warning)
    }));
    Ok((interpolated.value, shown))
}

/// `relay.toml` layered with `RELAY__…` overrides from `env`.
///
/// Problems never echo a value that came from the environment or that sits in a secret
/// position (`amqp.url`, `amqp.urls`, a key named like a credential): they name the key, the
/// variable and the expected type instead. A syntax error gives its line, not the line's text.
fn load_relay(path: &Path, env: &Env) -> Result<RawRelay, ConfigError> {
    if !path.is_file() {
        return Err(Problem::file(
            path,
            "not found; the config folder needs a relay.toml (see config/relay.toml in the repository)",
        )
        .into());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problem::file(path, format!("cannot read: {e}")))?;
    // Parsed here first: config-rs would quote the offending line, password and all.
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(Problem::file(path, toml_error(&text, &e)).into());
    }
    let overrides: config::Map<String, String> = env
        .vars()
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let built = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator(ENV_SEPARATOR)
                .separator(ENV_SEPARATOR)
                .source(Some(overrides.clone())),
        )
        .build()
        .map_err(|e| library_problem(path, e, &overrides))?;
    built
        .try_deserialize::<RawRelay>()
        .map_err(|e| library_problem(path, e, &overrides).into())
}

/// A config-rs error as a problem that names the key, the variable it came from (if any) and
/// the expected type, but never shows a value from the environment or a secret position.
fn library_problem(
    path: &Path,
    error: config::ConfigError,
    overrides: &config::Map<String, String>,
) -> Problem {
    let (key, message) = match error {
        config::ConfigError::Type {
            unexpected,
            expected,
            key,
            ..
        } => (
            key,
            format!(
                "expected {expected}, found {}",
                kind_of_value(&unexpected.to_string())
            ),
        ),
        config::ConfigError::At { error, key, .. } => (key, one_line(&error.to_string())),
        other => (None, one_line(&other.to_string())),
    };
    // Whatever the key, a quoted piece of any override's value is hidden.
    let mut message = overrides
        .values()
        .fold(message, |m, value| mask_echoes(&m, value));
    if let Some(key) = &key {
        if key == "amqp.url" || key.starts_with("amqp.urls") || is_secret_key(key) {
            message = mask_quoted(&message, |_| true);
        }
        let var = format!(
            "{ENV_PREFIX}{ENV_SEPARATOR}{}",
            key.replace('.', ENV_SEPARATOR)
        );
        if let Some(name) = overrides.keys().find(|k| k.eq_ignore_ascii_case(&var)) {
            message = format!("{message} (from environment variable `{name}`, value not shown)");
        }
    }
    match key {
        Some(key) => Problem::field(path, key, message),
        None => Problem::file(path, message),
    }
}

/// Whether the last segment of a dotted key names a credential (`…token`, `…password`).
fn is_secret_key(key: &str) -> bool {
    key.rsplit('.').next().is_some_and(redact::is_secret_name)
}

/// What kind of value config-rs found, from its description (`string "…"`, ``64-bit integer
/// `5` ``), without the value itself.
fn kind_of_value(described: &str) -> &'static str {
    if described.starts_with("string") {
        "a string"
    } else if described.contains("integer") {
        "an integer"
    } else if described.starts_with("floating") {
        "a number with a fraction"
    } else if described.starts_with("boolean") {
        "a boolean"
    } else if described.starts_with("sequence") {
        "a list"
    } else if described.starts_with("map") {
        "a table"
    } else {
        "no value"
    }
}

/// `message` with every quoted piece of `value` masked, and `value` itself wherever it is
/// long enough to be told from ordinary words.
fn mask_echoes(message: &str, value: &str) -> String {
    if value.is_empty() {
        return message.to_string();
    }
    let masked = mask_quoted(message, |quoted| {
        !quoted.is_empty() && value.contains(quoted)
    });
    if value.len() >= Redactor::FREE_TEXT_MIN_LEN {
        masked.replace(value, redact::MASK)
    } else {
        masked
    }
}

/// Variables that look like overrides but that config-rs would skip without a word, such as
/// `RELAY_AMQP__URL` (one underscore after the prefix) or lowercase `relay__amqp__url`.
fn ignored_env_overrides(env: &Env, relay_path: &Path) -> Vec<Problem> {
    let proper = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
    let mut names: Vec<&String> = env
        .vars()
        .keys()
        .filter(|k| {
            let upper = k.to_ascii_uppercase();
            upper.starts_with(&format!("{ENV_PREFIX}_")) && !k.starts_with(&proper)
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            Problem::file(
                relay_path,
                format!(
                    "environment variable `{name}` is ignored; overrides are spelled \
                     {ENV_PREFIX}{ENV_SEPARATOR}SECTION{ENV_SEPARATOR}KEY, e.g. RELAY__AMQP__URL"
                ),
            )
            .with_severity(Severity::Warning)
        })
        .collect()
}

/// Every `webhooks/*.toml`, each parsed on its own, in file-name order.
fn load_webhooks(
    dir: &Path,
    ctx: &WebhookContext<'_>,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
    secrets: &mut Vec<String>,
) -> Vec<Arc<Webhook>> {
    let webhooks_dir = dir.join("webhooks");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&webhooks_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
            .collect(),
        Err(e) => {
            warnings.push(
                Problem::file(
                    &webhooks_dir,
                    format!("cannot read the webhooks folder ({e}); no webhook is configured"),
                )
                .with_severity(Severity::Warning),
            );
            Vec::new()
        }
    };
    files.sort();

    let mut webhooks: Vec<Arc<Webhook>> = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        for spec in parse_webhook_file(&file, problems) {
            if let Some(first) = seen.get(&spec.name) {
                problems.push(Problem::webhook(
                    &file,
                    &spec.name,
                    "name",
                    format!("is already used by a webhook in {}", first.display()),
                ));
                continue;
            }
            seen.insert(spec.name.clone(), file.clone());
            match webhook::validate(spec, &file, ctx) {
                Ok(validated) => {
                    secrets.extend(validated.secrets);
                    warnings.extend(validated.warnings);
                    webhooks.push(Arc::new(validated.webhook));
                }
                Err(found) => problems.extend(found),
            }
        }
    }
    if webhooks.is_empty() && problems.is_empty() {
        warnings.push(
            Problem::file(
                &webhooks_dir,
                "no webhook is configured: every event will be acked without delivery",
            )
            .with_severity(Severity::Warning),
        );
    }
    webhooks
}

/// The `[[webhook]]` tables of one file. A table that does not deserialize is reported with
/// its name (when it has one) and skipped, so the other tables are still checked.
fn parse_webhook_file(file: &Path, problems: &mut Vec<Problem>) -> Vec<WebhookSpec> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            problems.push(Problem::file(file, format!("cannot read: {e}")));
            return Vec::new();
        }
    };
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            problems.push(Problem::file(file, toml_error(&text, &e)));
            return Vec::new();
        }
    };
    for key in table.keys().filter(|k| k.as_str() != "webhook") {
        problems.push(Problem::file(
            file,
            format!("unknown top-level key `{key}`; a webhook file holds [[webhook]] tables"),
        ));
    }
    let Some(entries) = table.get("webhook") else {
        return Vec::new();
    };
    let Some(entries) = entries.as_array() else {
        problems.push(Problem::file(
            file,
            "`webhook` must be an array of tables: write [[webhook]]",
        ));
        return Vec::new();
    };
    let mut specs = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let label = entry
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("#{}", index + 1));
        match entry.clone().try_into::<WebhookSpec>() {
            Ok(spec) => specs.push(spec),
            Err(e) => {
                let field = error_key_path(&e);
                let mut message = one_line(e.message());
                // A mistyped `url` or `headers` must not quote what it holds.
                if field
                    .as_deref()
                    .is_some_and(|f| f == "url" || f.starts_with("headers") || is_secret_key(f))
                {
                    message = mask_quoted(&message, |_| true);
                }
                problems.push(Problem {
                    webhook: Some(label),
                    field,
                    ..Problem::file(file, message)
                });
            }
        }
    }
    specs
}

/// The key path a table's deserialization error is about (`triggers`, `delivery.timeout`).
/// toml keeps it out of [`toml::de::Error::message`] and shows it only as the last line of
/// its `Display`: ``in `triggers` ``.
fn error_key_path(e: &toml::de::Error) -> Option<String> {
    let shown = e.to_string();
    let last = shown.lines().rev().find(|line| !line.trim().is_empty())?;
    let path = last.strip_prefix("in `")?.strip_suffix('`')?;
    (!path.is_empty()).then(|| path.to_string())
}

fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", one_line(e.message()))
        }
        None => one_line(e.message()),
    }
}

/// Folds a multi-line library message into one line.
fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;
