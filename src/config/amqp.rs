//! `[amqp]`: the broker to connect to, the queues the worker declares and consumes, and the
//! limits on what it takes in at once.

use super::env::{Env, interpolate};
use super::problem::{Findings, Place, Problem};
use super::secrets::{short_secret_message, short_variables};
use super::{ENV_PREFIX, ENV_SEPARATOR, duration};
use crate::redact::{self, Redactor, Secret};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// RabbitMQ's default `consumer_timeout` (30 minutes): an unacked delivery older than this
/// makes the broker close the channel.
pub const RABBITMQ_DEFAULT_CONSUMER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// RabbitMQ's own default `frame_max`: a publisher with default settings can send message
/// headers up to this size, so the worker must accept frames this large.
pub const RABBITMQ_DEFAULT_FRAME_MAX: u32 = 128 * 1024;

/// The largest `amqp.frame_max` accepted (16 MiB).
const MAX_FRAME_MAX: u32 = 16 * 1024 * 1024;

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
/// event), so 16 MiB holds a backlog of 450 kB events at about 72 MiB resident, inside the
/// shipped 128 MiB pod limit with room for the rest of the process. Small events never reach
/// it: 16 MiB is 4,096 of them, far over the default prefetch.
pub const DEFAULT_MEMORY_BUDGET: u64 = 16 * 1024 * 1024;

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

/// `[amqp]`, validated.
#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// Broker URL; carries the password, so it is secret. Use `url_redacted` to show it.
    pub url: Secret<String>,
    /// The URL with its password masked.
    pub url_redacted: String,
    /// Further broker URLs (cluster nodes), tried in turn after `url`; secret like `url`.
    pub fallback_urls: Vec<(Secret<String>, String)>,
    /// The management API, asked at each connect which node leads the input queue so that
    /// node's URL is tried first (`amqp.management_url`); secret like `url`, with its shown
    /// form. `None`: the URLs are tried in the order written.
    pub management_url: Option<(Secret<String>, String)>,
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

/// `[amqp]` as written. `url` and `urls` may hold a password (or come whole from
/// `RELAY__AMQP__URL`), so `Debug` shows them as `***`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAmqp {
    pub url: String,
    pub urls: Vec<String>,
    pub management_url: String,
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
            .field("management_url", &MASK)
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
            management_url: String::new(),
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

impl RawAmqp {
    /// Validates `[amqp]` of `file`: the broker URLs (interpolated from `env`, their secrets
    /// and short-secret warnings recorded in `found`), then the names and limits. Returns the
    /// settings, or `None` when anything is refused (every problem recorded).
    pub(crate) fn validate(
        self,
        file: &Path,
        env: &Env,
        found: &mut Findings,
    ) -> Option<AmqpSettings> {
        let fallback_urls = self.fallback_urls(file, env, found);
        let url = self.main_url(file, env, found);
        let management_url = self.management_url(file, env, found);
        let place = Place {
            file,
            webhook: None,
        };
        let valid = found.fields(place, "amqp.", self.problems());
        let ((url, url_redacted), fallback_urls) = url.zip(fallback_urls).filter(|_| valid)?;
        Some(AmqpSettings {
            url: Secret::new(url),
            url_redacted,
            fallback_urls,
            management_url: management_url?,
            queue_type: self.queue_type,
            redelivery_limit: self.redelivery_limit,
            frame_max: self.frame_max,
            max_message_bytes: self.max_message_bytes,
            memory_budget: self.memory_budget,
            exchange: self.exchange,
            queue: self.queue,
            dead_letter_queue: self.dead_letter_queue,
            prefetch: self.prefetch,
            declare: self.declare,
            consumer_timeout: self.consumer_timeout,
            reconnect_initial_backoff: self.reconnect_initial_backoff,
            reconnect_max_backoff: self.reconnect_max_backoff,
            connection_name: self.connection_name,
        })
    }

    /// `amqp.urls`, each as `(url, shown)`; `None` when any of them is refused.
    fn fallback_urls(
        &self,
        file: &Path,
        env: &Env,
        found: &mut Findings,
    ) -> Option<Vec<(Secret<String>, String)>> {
        let mut urls = Vec::new();
        let mut refused = false;
        for (i, text) in self.urls.iter().enumerate() {
            let field = format!("amqp.urls[{i}]");
            match broker_url(text, env, file, &field, found) {
                Ok((value, shown)) => urls.push((Secret::new(value), shown)),
                Err(error) => {
                    found.push(Problem::field(file, field, error.message()));
                    refused = true;
                }
            }
        }
        (!refused).then_some(urls)
    }

    /// `amqp.management_url` as `(url, shown)`: `Some(None)` when empty, `None` when refused.
    fn management_url(
        &self,
        file: &Path,
        env: &Env,
        found: &mut Findings,
    ) -> Option<Option<(Secret<String>, String)>> {
        if self.management_url.trim().is_empty() {
            return Some(None);
        }
        let field = "amqp.management_url";
        match secret_url(&self.management_url, env, file, field, found, HTTP_SCHEMES) {
            Ok((url, shown)) => Some(Some((Secret::new(url), shown))),
            Err(error) => {
                found.push(Problem::field(file, field, error.message()));
                None
            }
        }
    }

    /// `amqp.url` as `(url, shown)`. A URL that came whole from `RELAY__AMQP__URL` is named by
    /// its variable when refused, never echoed, not even redacted.
    fn main_url(&self, file: &Path, env: &Env, found: &mut Findings) -> Option<(String, String)> {
        let url_var = format!("{ENV_PREFIX}{ENV_SEPARATOR}AMQP{ENV_SEPARATOR}URL");
        match broker_url(&self.url, env, file, "amqp.url", found) {
            Ok(url) => Some(url),
            Err(error) => {
                let message = match error {
                    UrlError::Url(..) if env.get(&url_var).is_some() => format!(
                        "the value of environment variable `{url_var}` is not an amqp:// or \
                         amqps:// URL"
                    ),
                    error => error.message(),
                };
                found.push(Problem::field(file, "amqp.url", message));
                None
            }
        }
    }

    /// Field-by-field and cross-field problems of the names and limits, as
    /// `(field, message)` with the field inside `[amqp]`.
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        for (field, value) in [
            ("exchange", &self.exchange),
            ("queue", &self.queue),
            ("dead_letter_queue", &self.dead_letter_queue),
        ] {
            if value.trim().is_empty() || value.len() > 255 {
                out.push((field, "must be a name of 1 to 255 bytes".into()));
            }
        }
        if self.queue == self.dead_letter_queue {
            out.push(("dead_letter_queue", "must differ from amqp.queue".into()));
        }
        if !(RABBITMQ_DEFAULT_FRAME_MAX..=MAX_FRAME_MAX).contains(&self.frame_max) {
            out.push((
                "frame_max",
                "must be between 131072 (RabbitMQ's default, so that any header a publisher \
                 can send is received) and 16777216"
                    .into(),
            ));
        }
        if self.max_message_bytes == 0 {
            out.push(("max_message_bytes", "must be at least 1".into()));
        }
        if self.memory_budget < u64::from(self.max_message_bytes) {
            out.push((
                "memory_budget",
                "must be at least amqp.max_message_bytes, so that one message of the largest \
                 accepted size fits"
                    .into(),
            ));
        }
        if self.redelivery_limit == 0 {
            out.push(("redelivery_limit", "must be at least 1".into()));
        }
        if self.prefetch == 0 {
            out.push((
                "prefetch",
                "must be at least 1 (0 would mean unbounded)".into(),
            ));
        }
        if self.reconnect_initial_backoff.is_zero()
            || self.reconnect_max_backoff < self.reconnect_initial_backoff
        {
            out.push((
                "reconnect_max_backoff",
                "must be at least amqp.reconnect_initial_backoff, which must be greater than 0"
                    .into(),
            ));
        }
        out
    }
}

/// Why a broker URL was refused.
enum UrlError {
    /// A `${VAR}` problem, already worded.
    Message(String),
    /// Not a URL of the schemes asked for; carries the URL as it may be shown, and the
    /// schemes.
    Url(String, &'static [&'static str]),
}

/// The schemes of a broker URL.
const AMQP_SCHEMES: &[&str] = &["amqp", "amqps"];
/// The schemes of the management API's URL.
const HTTP_SCHEMES: &[&str] = &["http", "https"];

impl UrlError {
    /// The problem's message, showing the URL only in its redacted form.
    fn message(self) -> String {
        match self {
            UrlError::Message(message) => message,
            UrlError::Url(shown, schemes) => {
                let schemes: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
                format!("`{shown}` is not an {} URL", schemes.join(" or "))
            }
        }
    }
}

/// Interpolates and checks one broker URL (`amqp.url` or an entry of `amqp.urls`, named by
/// `field`): [`secret_url`] with the AMQP schemes.
fn broker_url(
    text: &str,
    env: &Env,
    file: &Path,
    field: &str,
    found: &mut Findings,
) -> Result<(String, String), UrlError> {
    secret_url(text, env, file, field, found, AMQP_SCHEMES)
}

/// Interpolates and checks one URL of the broker (named by `field`) against `schemes`,
/// recording its secrets (every substituted value, the password as written and
/// decoded) and a warning for each one too short to be masked everywhere. Returns the URL
/// and its shown form, with every `${VAR}` and the password masked.
fn secret_url(
    text: &str,
    env: &Env,
    file: &Path,
    field: &str,
    found: &mut Findings,
    schemes: &'static [&'static str],
) -> Result<(String, String), UrlError> {
    let interpolated = interpolate(text, env).map_err(UrlError::Message)?;
    let shown = redact::redact_url(interpolated.url_display_source());
    let mut short = short_variables(&interpolated);
    found
        .secrets
        .extend(interpolated.substituted.iter().cloned());
    let url = match url::Url::parse(&interpolated.value) {
        Ok(url) if schemes.contains(&url.scheme()) => url,
        _ => return Err(UrlError::Url(shown, schemes)),
    };
    if let Some(password) = url.password()
        && password.len() < Redactor::FREE_TEXT_MIN_LEN
        && short.is_empty()
    {
        short.push("the password".into());
    }
    found.secrets.extend(redact::url_secrets(&url));
    for what in short {
        found.warn(Problem::field(file, field, short_secret_message(&what)));
    }
    Ok((interpolated.value, shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(RawAmqp::default().problems(), Vec::new());
    }

    #[test]
    fn names_and_limits_are_checked_field_by_field() {
        let raw = RawAmqp {
            exchange: " ".into(),
            dead_letter_queue: "access-requests".into(),
            frame_max: 4096,
            max_message_bytes: 0,
            redelivery_limit: 0,
            prefetch: 0,
            reconnect_initial_backoff: Duration::ZERO,
            ..RawAmqp::default()
        };
        let fields: Vec<&str> = raw.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "exchange",
                "dead_letter_queue",
                "frame_max",
                "max_message_bytes",
                "redelivery_limit",
                "prefetch",
                "reconnect_max_backoff",
            ]
        );
        let small_budget = RawAmqp {
            memory_budget: 10,
            ..RawAmqp::default()
        };
        assert_eq!(small_budget.problems()[0].0, "memory_budget");
    }

    #[test]
    fn a_refused_url_from_the_environment_is_named_not_shown() {
        let raw = RawAmqp {
            url: "${AMQP_URL}".into(),
            ..RawAmqp::default()
        };
        let env = Env::from_pairs([
            ("AMQP_URL", "http://u:env-secret@h/"),
            ("RELAY__AMQP__URL", "http://u:env-secret@h/"),
        ]);
        let mut found = Findings::default();
        assert!(
            raw.validate(Path::new("relay.toml"), &env, &mut found)
                .is_none()
        );
        let shown = found.finish().unwrap_err().to_string();
        assert_eq!(
            shown,
            "relay.toml: amqp.url: the value of environment variable `RELAY__AMQP__URL` is not \
             an amqp:// or amqps:// URL"
        );
    }

    #[test]
    fn short_url_secrets_are_warned_and_registered() {
        let raw = RawAmqp {
            url: "amqp://u:pw@h/%2f".into(),
            urls: vec!["amqp://u:${PW}@h2/%2f".into()],
            ..RawAmqp::default()
        };
        let env = Env::from_pairs([("PW", "Zq")]);
        let mut found = Findings::default();
        let amqp = raw
            .validate(Path::new("relay.toml"), &env, &mut found)
            .unwrap();
        assert_eq!(amqp.url_redacted, "amqp://u:***@h/%2f");
        assert_eq!(amqp.fallback_urls[0].1, "amqp://u:***@h2/%2f");
        let (warnings, secrets) = found.finish().unwrap();
        let warnings: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
        assert!(warnings[0].starts_with("relay.toml: amqp.urls[0]: `${PW}` is a secret"));
        assert!(warnings[1].starts_with("relay.toml: amqp.url: the password is a secret"));
        assert!(secrets.contains(&"Zq".to_string()) && secrets.contains(&"pw".to_string()));
    }

    #[test]
    fn the_management_url_is_an_http_url_whose_password_is_secret() {
        let raw = RawAmqp {
            management_url: "http://admin:${MGMT_PW}@rmq:15672".into(),
            ..RawAmqp::default()
        };
        let env = Env::from_pairs([("MGMT_PW", "management-password")]);
        let mut found = Findings::default();
        let amqp = raw
            .validate(Path::new("relay.toml"), &env, &mut found)
            .unwrap();
        let (url, shown) = amqp.management_url.unwrap();
        assert_eq!(url.expose(), "http://admin:management-password@rmq:15672");
        assert!(!shown.contains("management-password"), "{shown}");
        let (_, secrets) = found.finish().unwrap();
        assert!(secrets.contains(&"management-password".to_string()));

        let raw = RawAmqp {
            management_url: "amqp://h".into(),
            ..RawAmqp::default()
        };
        let mut found = Findings::default();
        assert!(
            raw.validate(Path::new("relay.toml"), &Env::default(), &mut found)
                .is_none()
        );
        assert_eq!(
            found.finish().unwrap_err().to_string(),
            "relay.toml: amqp.management_url: `amqp://h` is not an http:// or https:// URL"
        );
        let unset = RawAmqp::default()
            .validate(
                Path::new("relay.toml"),
                &Env::default(),
                &mut Findings::default(),
            )
            .unwrap();
        assert!(unset.management_url.is_none());
    }
}
