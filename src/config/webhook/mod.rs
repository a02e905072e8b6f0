//! `webhooks/*.toml`: one or more `[[webhook]]` tables per file, each validated into a
//! [`Webhook`]: an immutable rule with its URL checked against the policy, its headers and
//! secrets known, and its template compiled.

mod endpoint;
mod endpoint_check;
mod spec;
mod target;
mod validate;

pub use endpoint::{
    Auth, ClientAuth, JsonPath, OAuth2, PathStep, RateLimit, ResponseValidator, Signing,
    WHSEC_PREFIX, decode_whsec,
};
pub(crate) use endpoint_check::basic_credential;
pub(crate) use spec::WebhookSpec;
pub(crate) use validate::{WebhookContext, validate};

use super::batch::BatchSettings;
use super::delivery::DeliverySettings;
use crate::model::event::Trigger;
use crate::model::template::Template;
use crate::redact::{self, Secret};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

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

/// A webhook URL: the full URL (secret: it may carry a token) and its redacted form.
#[derive(Clone)]
pub struct WebhookUrl {
    url: Secret<url::Url>,
    shown: String,
}

impl WebhookUrl {
    /// A URL written out (no `${VAR}`), shown redacted like one from a file; for unit tests
    /// that need a webhook URL without loading a config.
    #[cfg(test)]
    pub(crate) fn for_tests(url: url::Url) -> Self {
        let shown = redact::redact_parsed_url(&url);
        WebhookUrl {
            url: Secret::new(url),
            shown,
        }
    }

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
    /// `[webhook.auth]`: how each request authenticates, if at all.
    pub auth: Option<Auth>,
    /// `[webhook.signing]`: Standard Webhooks signatures, if set.
    pub signing: Option<Signing>,
    /// `[[webhook.response_validators]]`: what a 2xx answer's body must hold.
    pub response_validators: Vec<ResponseValidator>,
    /// `rate_limit`: most requests per period this process sends to the webhook.
    pub rate_limit: Option<RateLimit>,
}

impl Webhook {
    /// Whether it can receive events at all.
    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_content_types() {
        assert!(valid_name("logzio-audit_2"));
        assert!(!valid_name("logz io"));
        assert!(!valid_name(""));
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("application/vnd.api+json"));
        assert!(!is_json_content_type("text/plain"));
    }
}
