//! `webhooks/*.toml`: one or more `[[webhook]]` tables per file, each validated into a
//! [`Webhook`] with its URL checked against the policy and its template compiled.

use super::env::{Env, Interpolated, interpolate};
use super::problem::{Problem, Severity};
use super::relay::{DeliveryOverrides, DeliverySettings, Policy};
use crate::pipeline::event::Trigger;
use crate::pipeline::template::{Template, TemplateOptions};
use crate::redact::{self, Redactor, Secret};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether a webhook is in use. An inactive webhook matches no event (but `test` still works).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Receives the events it matches.
    #[default]
    Active,
    /// Matched by nothing.
    Inactive,
}

/// The HTTP method a webhook sends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `POST`
    #[default]
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `GET`
    Get,
    /// `DELETE`
    Delete,
}

impl Method {
    /// The method's name as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Get => "GET",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[webhook.filters]`: every listed filter must match; the values inside one filter are
/// OR-ed. An absent filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filters {
    /// `data.access_groups[].integration.name`
    pub integration_names: Option<Vec<String>>,
    /// `data.access_groups[].integration.type`
    pub integration_types: Option<Vec<String>>,
    /// `data.access_groups[].resource_types[].name`
    pub resource_types: Option<Vec<String>>,
    /// `data.access_flow.name`
    pub access_flow_names: Option<Vec<String>>,
    /// `data.access_bundle.name`
    pub bundle_names: Option<Vec<String>>,
    /// `data.requester.email`
    pub requester_emails: Option<Vec<String>>,
    /// `data.access_groups[].access_units[].permission.name`
    pub permissions: Option<Vec<String>>,
}

impl Filters {
    /// Every filter that is set, as `(field name, values)`, in a fixed order.
    pub fn listed(&self) -> Vec<(&'static str, &[String])> {
        [
            ("integration_names", &self.integration_names),
            ("integration_types", &self.integration_types),
            ("resource_types", &self.resource_types),
            ("access_flow_names", &self.access_flow_names),
            ("bundle_names", &self.bundle_names),
            ("requester_emails", &self.requester_emails),
            ("permissions", &self.permissions),
        ]
        .into_iter()
        .filter_map(|(name, values)| values.as_deref().map(|v| (name, v)))
        .collect()
    }
}

/// One `[[webhook]]` table as written. The URL and header values may hold secrets written
/// into the file, so `Debug` shows the URL redacted and header values as `***`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookSpec {
    pub name: String,
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub method: Method,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub secret_headers: Vec<String>,
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    pub body_template: Option<String>,
    pub body_template_file: Option<PathBuf>,
    #[serde(default)]
    pub strict: bool,
    #[serde(default)]
    pub filters: Filters,
    #[serde(default)]
    pub delivery: DeliveryOverrides,
    pub batch: Option<BatchSpec>,
}

impl fmt::Debug for WebhookSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|name| (name.as_str(), redact::MASK))
            .collect();
        f.debug_struct("WebhookSpec")
            .field("name", &self.name)
            .field("status", &self.status)
            .field("method", &self.method)
            .field("url", &redact::redact_url(&self.url))
            .field("headers", &headers)
            .field("secret_headers", &self.secret_headers)
            .field("triggers", &self.triggers)
            .field("body_template", &self.body_template)
            .field("body_template_file", &self.body_template_file)
            .field("strict", &self.strict)
            .field("filters", &self.filters)
            .field("delivery", &self.delivery)
            .field("batch", &self.batch)
            .finish()
    }
}

/// `[webhook.batch]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchSpec {
    #[serde(default = "default_max_events")]
    pub max_events: u32,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    #[serde(default = "default_linger", with = "super::duration")]
    pub linger: Duration,
}

fn default_max_events() -> u32 {
    200
}

fn default_max_bytes() -> ByteSize {
    ByteSize(5 * 1024 * 1024)
}

fn default_linger() -> Duration {
    Duration::from_millis(200)
}

/// A size in bytes, written as a number or with a unit: `"5MiB"`, `"500KB"`, `"10MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"5MiB"`, `"500 KB"`, `"1048576"` (KB/MB are powers of 1000, KiB/MiB of 1024).
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a size; write it like \"5MiB\" or \"500KB\""))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "kib" => 1024,
            "mb" => 1000 * 1000,
            "mib" => 1024 * 1024,
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}`; use B, KB, KiB, MB or MiB"
                ));
            }
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("`{text}` is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// The largest request body Logz.io's listener takes (10 MB); a batch must stay below it.
pub const MAX_BATCH_BYTES: u64 = 10 * 1024 * 1024;
/// The longest line Logz.io's listener takes: 500,000 bytes. A batched body longer than this
/// is refused before it is sent, and a batch must have room for at least one such line.
pub const MAX_LINE_BYTES: usize = 500_000;

/// `[webhook.batch]`, validated: several rendered bodies sent as one NDJSON request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Events per request, at most.
    pub max_events: u32,
    /// Bytes per request, at most.
    pub max_bytes: u64,
    /// Longest wait for a batch to fill before it is sent anyway.
    pub linger: Duration,
}

/// A webhook URL: the full URL (secret: it may carry a token) and its redacted form.
#[derive(Clone)]
pub struct WebhookUrl {
    url: Secret<url::Url>,
    shown: String,
}

impl WebhookUrl {
    /// The URL to send to. Never print it: use `Display`, which is redacted.
    pub fn expose(&self) -> &url::Url {
        self.url.expose()
    }

    /// The redacted URL, e.g. `https://listener.logz.io/?token=***&type=apono`.
    pub fn redacted(&self) -> &str {
        &self.shown
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({})", self.shown)
    }
}

/// One configured request header.
#[derive(Debug, Clone)]
pub struct Header {
    /// Header name as written.
    pub name: String,
    /// Header value, `${VAR}`s substituted.
    pub value: Secret<String>,
    /// Whether the value is secret: listed in `secret_headers`, named like a credential
    /// (`Authorization`, `X-Api-Key`, …) or filled from an environment variable.
    pub secret: bool,
}

impl Header {
    /// The value as it may be shown: `***` when secret.
    pub fn shown_value(&self) -> &str {
        if self.secret {
            redact::MASK
        } else {
            self.value.expose()
        }
    }
}

/// A validated webhook: immutable, shared by every delivery that uses it.
#[derive(Debug)]
pub struct Webhook {
    /// Unique name: letters, digits, `-` and `_`.
    pub name: String,
    /// Active or inactive.
    pub status: Status,
    /// HTTP method.
    pub method: Method,
    /// Target URL (redacted when displayed).
    pub url: WebhookUrl,
    /// Request headers, `Content-Type` included (defaulted to `application/json`).
    pub headers: Vec<Header>,
    /// Event types it fires on; empty means it fires on nothing.
    pub triggers: Vec<Trigger>,
    /// Which events it accepts besides the trigger.
    pub filters: Filters,
    /// The compiled body template.
    pub template: Template,
    /// The template source, for `render` and `check`.
    pub template_source: String,
    /// Missing template fields are errors instead of empty.
    pub strict: bool,
    /// The body must be JSON (Content-Type is JSON); a body that does not parse is never sent.
    pub json_body: bool,
    /// Timeouts, retries and concurrency, defaults and overrides merged.
    pub delivery: DeliverySettings,
    /// The file it came from.
    pub source: PathBuf,
    /// Set when the webhook sends its events in NDJSON batches.
    pub batch: Option<BatchSettings>,
    /// Fields that hold a secret written into the file instead of taken from `${VAR}`, e.g.
    /// `url (query parameter token)` or `headers.Authorization`. `check` warns about them.
    pub inline_secrets: Vec<String>,
}

impl Webhook {
    /// Whether it can receive events at all.
    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }
}

/// The outcome of validating one spec: the webhook, the secret values it introduced, and
/// what is allowed but probably wrong (a secret too short to mask everywhere).
pub(crate) struct Validated {
    pub webhook: Webhook,
    pub secrets: Vec<String>,
    pub warnings: Vec<Problem>,
}

/// Context shared by every webhook of one config.
pub(crate) struct WebhookContext<'a> {
    pub config_dir: &'a Path,
    pub env: &'a Env,
    pub policy: &'a Policy,
    pub defaults: DeliverySettings,
    pub consumer_timeout: Duration,
}

/// Whether `name` is a valid webhook name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether a Content-Type names a JSON document (`application/json`, `…+json`).
pub fn is_json_content_type(value: &str) -> bool {
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || mime.ends_with("+json")
}

/// Validates one spec, returning every problem found in it.
pub(crate) fn validate(
    spec: WebhookSpec,
    file: &Path,
    ctx: &WebhookContext<'_>,
) -> Result<Validated, Vec<Problem>> {
    let name = spec.name.clone();
    let mut problems = Vec::new();
    let mut secrets = Vec::new();
    let problem = |field: &str, message: String| Problem::webhook(file, &name, field, message);

    if !valid_name(&name) {
        problems.push(problem(
            "name",
            "must be 1 to 64 letters, digits, '-' or '_'".to_string(),
        ));
    }

    let mut inline_secrets = inline_url_secrets(&spec.url);
    // Where a secret shorter than the free-text threshold sits, for one warning each.
    let mut short_secrets: Vec<(String, String)> = Vec::new();
    let url = match interpolate(&spec.url, ctx.env) {
        Ok(interpolated) => {
            short_secrets.extend(short_substitutions(&interpolated, "url"));
            secrets.extend(interpolated.substituted.iter().cloned());
            match check_url(
                &interpolated.value,
                interpolated.url_display_source(),
                ctx.policy,
            ) {
                Ok(url) => {
                    // Short inline credentials (substituted ones are warned about above).
                    let userinfo_written = spec.url.split_once('@').is_some_and(|(before, _)| {
                        before.contains("://") && !before.contains("${")
                    });
                    if userinfo_written
                        && let Some(password) = url.expose().password()
                        && password.len() < Redactor::FREE_TEXT_MIN_LEN
                    {
                        short_secrets.push(("url".into(), "the password".into()));
                    }
                    for (name, value) in url.expose().query_pairs() {
                        let inline = format!("url (query parameter {name})");
                        if inline_secrets.contains(&inline)
                            && value.len() < Redactor::FREE_TEXT_MIN_LEN
                        {
                            short_secrets.push(("url".into(), format!("query parameter `{name}`")));
                        }
                    }
                    // Inline credentials (`user:pw@`, `?token=abc`) and the decoded forms
                    // of substituted ones.
                    secrets.extend(redact::url_secrets(url.expose()));
                    Some(url)
                }
                Err(message) => {
                    problems.push(problem("url", message));
                    None
                }
            }
        }
        Err(message) => {
            problems.push(problem("url", message));
            None
        }
    };

    let mut headers = Vec::new();
    for unknown in spec
        .secret_headers
        .iter()
        .filter(|h| !spec.headers.keys().any(|k| k.eq_ignore_ascii_case(h)))
    {
        problems.push(problem(
            "secret_headers",
            format!("`{unknown}` is not one of this webhook's headers"),
        ));
    }
    for (header_name, raw_value) in &spec.headers {
        let field = format!("headers.{header_name}");
        if !valid_header_name(header_name) {
            problems.push(problem(&field, "is not a valid header name".to_string()));
            continue;
        }
        match interpolate(raw_value, ctx.env) {
            Ok(interpolated) => {
                if interpolated
                    .value
                    .chars()
                    .any(|c| c.is_control() && c != '\t')
                {
                    problems.push(problem(&field, "value contains control characters".into()));
                    continue;
                }
                let from_env = !interpolated.substituted.is_empty();
                let secret = from_env
                    || redact::is_secret_name(header_name)
                    || spec
                        .secret_headers
                        .iter()
                        .any(|h| h.eq_ignore_ascii_case(header_name));
                short_secrets.extend(short_substitutions(&interpolated, &field));
                if secret {
                    secrets.push(interpolated.value.clone());
                    // `Bearer abc`: the credential after the scheme is a secret on its own.
                    secrets.extend(
                        interpolated
                            .value
                            .split_whitespace()
                            .skip(1)
                            .map(str::to_string),
                    );
                    if !from_env {
                        inline_secrets.push(format!("headers.{header_name}"));
                        if interpolated.value.len() < Redactor::FREE_TEXT_MIN_LEN {
                            short_secrets.push((field.clone(), "the value".into()));
                        }
                    }
                }
                secrets.extend(interpolated.substituted);
                headers.push(Header {
                    name: header_name.clone(),
                    value: Secret::new(interpolated.value),
                    secret,
                });
            }
            Err(message) => problems.push(problem(&field, message)),
        }
    }
    let content_type = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map(|h| h.value.expose().clone());
    let content_type = match content_type {
        Some(value) => value,
        None => {
            headers.push(Header {
                name: "Content-Type".into(),
                value: Secret::new("application/json".into()),
                secret: false,
            });
            "application/json".into()
        }
    };
    let json_body = is_json_content_type(&content_type);

    let mut triggers = spec.triggers.clone();
    triggers.sort();
    triggers.dedup();

    for (filter, values) in spec.filters.listed() {
        if values.is_empty() {
            problems.push(problem(
                &format!("filters.{filter}"),
                "is an empty list, which no event matches; remove it to match every event"
                    .to_string(),
            ));
        }
    }

    let template_source = match (&spec.body_template, &spec.body_template_file) {
        (Some(_), Some(_)) => {
            problems.push(problem(
                "body_template",
                "set either body_template or body_template_file, not both".to_string(),
            ));
            None
        }
        (Some(text), None) => Some(text.clone()),
        (None, Some(path)) => {
            let full = ctx.config_dir.join(path);
            match std::fs::read_to_string(&full) {
                Ok(text) => Some(text),
                Err(e) => {
                    problems.push(problem(
                        "body_template_file",
                        format!("cannot read {}: {e}", full.display()),
                    ));
                    None
                }
            }
        }
        (None, None) if matches!(spec.method, Method::Get | Method::Delete) => Some(String::new()),
        (None, None) => {
            problems.push(problem(
                "body_template",
                format!(
                    "is required for {} (or set body_template_file)",
                    spec.method
                ),
            ));
            None
        }
    };
    let template = template_source.as_ref().and_then(|source| {
        let options = TemplateOptions {
            strict: spec.strict,
            json: json_body && !source.is_empty(),
        };
        match Template::compile(source, options) {
            Ok(template) => Some(template),
            Err(e) => {
                let field = if spec.body_template_file.is_some() {
                    "body_template_file"
                } else {
                    "body_template"
                };
                problems.push(problem(field, e.to_string()));
                None
            }
        }
    });

    let batch = spec.batch.as_ref().map(|b| BatchSettings {
        max_events: b.max_events,
        max_bytes: b.max_bytes.0,
        linger: b.linger,
    });
    if let Some(b) = &batch {
        if b.max_events == 0 {
            problems.push(problem("batch.max_events", "must be at least 1".into()));
        }
        if b.max_bytes < MAX_LINE_BYTES as u64 || b.max_bytes > MAX_BATCH_BYTES {
            problems.push(problem(
                "batch.max_bytes",
                format!(
                    "must be between 500KB (one line's limit) and 10MiB (Logz.io takes at most \
                     10 MB per request), not {} bytes",
                    b.max_bytes
                ),
            ));
        }
        if b.linger.is_zero() {
            problems.push(problem("batch.linger", "must be greater than 0".into()));
        }
        if !json_body {
            problems.push(problem(
                "batch",
                "batches are NDJSON: each body must be a JSON document, so Content-Type must be JSON"
                    .into(),
            ));
        }
    }
    let delivery = ctx.defaults.with(&spec.delivery);
    for (field, message) in delivery.problems(ctx.consumer_timeout) {
        problems.push(problem(&format!("delivery.{field}"), message));
    }

    match (url, template, template_source) {
        (Some(url), Some(template), Some(template_source)) if problems.is_empty() => {
            Ok(Validated {
                webhook: Webhook {
                    name: spec.name,
                    status: spec.status,
                    method: spec.method,
                    url,
                    headers,
                    triggers,
                    filters: spec.filters,
                    template,
                    template_source,
                    strict: spec.strict,
                    json_body,
                    delivery,
                    source: file.to_path_buf(),
                    batch,
                    inline_secrets,
                },
                secrets,
                warnings: short_secrets
                    .into_iter()
                    .map(|(field, what)| {
                        Problem::webhook(file, &name, field, short_secret_message(&what))
                            .with_severity(Severity::Warning)
                    })
                    .collect(),
            })
        }
        _ => Err(problems),
    }
}

/// The variables of `interpolated` whose value is shorter than the free-text threshold, as
/// `(field, "`${NAME}`")`, each once.
fn short_substitutions(interpolated: &Interpolated, field: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in interpolated.names.iter().zip(&interpolated.substituted) {
        let entry = (field.to_string(), format!("`${{{name}}}`"));
        if value.len() < Redactor::FREE_TEXT_MIN_LEN && !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

/// The warning about a secret too short to be masked everywhere; `what` names it
/// (`` `${TOKEN}` ``, `the password`), never shows it.
pub(crate) fn short_secret_message(what: &str) -> String {
    format!(
        "{what} is a secret shorter than {} bytes: easy to guess, and masked in output only \
         where it stands whole (a URL part, a header value, a name=value pair), not inside \
         other text",
        Redactor::FREE_TEXT_MIN_LEN
    )
}

/// Secret-looking query parameters whose value is written out rather than `${VAR}`.
fn inline_url_secrets(written: &str) -> Vec<String> {
    let Some((_, query)) = written.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, value)| {
            redact::is_secret_name(name) && !value.is_empty() && !value.contains("${")
        })
        .map(|(name, _)| format!("url (query parameter {name})"))
        .collect()
}

/// Parses a webhook URL and applies the policy: scheme, host, port. `shown` is the URL as
/// written with every `${VAR}` masked ([`Interpolated::url_display_source`]): the URL is
/// displayed from it, redacted further (password, secret query values, fragment), so that no
/// substituted value shows, wherever it sits.
fn check_url(text: &str, shown: &str, policy: &Policy) -> Result<WebhookUrl, String> {
    let shown = redact::redact_url(shown);
    let url = url::Url::parse(text).map_err(|e| format!("`{shown}` is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if !policy.require_https => {}
        "http" => {
            return Err(format!(
                "`{shown}` is not HTTPS; webhook URLs must use https:// (policy.require_https)"
            ));
        }
        other => return Err(format!("`{shown}`: scheme `{other}` is not supported")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{shown}` has no host"));
    }
    if let Some(port) = url.port()
        && !policy.allowed_ports.contains(&port)
    {
        return Err(format!(
            "`{shown}`: port {port} is not allowed; add it to policy.allowed_ports (now {:?})",
            policy.allowed_ports
        ));
    }
    Ok(WebhookUrl {
        url: Secret::new(url),
        shown,
    })
}

/// An HTTP token (RFC 9110 §5.6.2).
fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ports: &[u16]) -> Policy {
        Policy {
            require_https: true,
            allowed_ports: ports.to_vec(),
            ..Policy::default()
        }
    }

    #[test]
    fn url_policy() {
        assert!(
            check_url(
                "https://listener.logz.io/?token=x",
                "https://listener.logz.io/?token=x",
                &policy(&[])
            )
            .is_ok()
        );
        let err = check_url(
            "https://listener.logz.io:8071/?token=abc",
            "https://listener.logz.io:8071/?token=abc",
            &policy(&[]),
        )
        .unwrap_err();
        assert!(err.contains("port 8071 is not allowed"), "{err}");
        assert!(!err.contains("abc"), "{err}");
        assert!(
            check_url(
                "https://listener.logz.io:8071/?token=x",
                "https://listener.logz.io:8071/?token=x",
                &policy(&[8071])
            )
            .is_ok()
        );
        assert!(
            check_url("https://h:443/", "https://h:443/", &policy(&[])).is_ok(),
            "default port"
        );
        let err =
            check_url("http://h/?token=abc", "http://h/?token=abc", &policy(&[])).unwrap_err();
        assert!(
            err.contains("not HTTPS") && err.contains("token=***"),
            "{err}"
        );
        let lax = Policy {
            require_https: false,
            allowed_ports: vec![],
            ..Policy::default()
        };
        assert!(check_url("http://h/", "http://h/", &lax).is_ok());
        assert!(
            check_url("ftp://h/", "ftp://h/", &lax)
                .unwrap_err()
                .contains("scheme")
        );
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(ByteSize::parse("5MiB"), Ok(ByteSize(5 * 1024 * 1024)));
        assert_eq!(ByteSize::parse("500KB"), Ok(ByteSize(500_000)));
        assert_eq!(ByteSize::parse("42"), Ok(ByteSize(42)));
        assert_eq!(ByteSize::parse("1 MB"), Ok(ByteSize(1_000_000)));
        assert!(
            ByteSize::parse("5 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(ByteSize::parse("MiB").unwrap_err().contains("not a size"));
    }

    #[test]
    fn inline_secrets_are_found() {
        assert_eq!(
            inline_url_secrets("https://h/?token=abc123&type=x"),
            vec!["url (query parameter token)"]
        );
        assert!(inline_url_secrets("https://h/?token=${LOGZIO_TOKEN}&type=x").is_empty());
        assert!(inline_url_secrets("https://h/path").is_empty());
    }

    #[test]
    fn names_and_content_types() {
        assert!(valid_name("logzio-audit_2"));
        assert!(!valid_name("logz io"));
        assert!(!valid_name(""));
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("application/vnd.api+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(valid_header_name("X-Api-Key"));
        assert!(!valid_header_name("X Api"));
    }
}
