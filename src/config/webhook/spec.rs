//! One `[[webhook]]` table as written, before validation.

use super::endpoint::{AuthSpec, SigningSpec, ValidatorSpec};
use super::{Filters, Method, Status};
use crate::config::batch::BatchSpec;
use crate::config::delivery::DeliveryOverrides;
use crate::model::event::Trigger;
use crate::redact;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

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
    pub auth: Option<AuthSpec>,
    pub signing: Option<SigningSpec>,
    #[serde(default)]
    pub response_validators: Vec<ValidatorSpec>,
    pub rate_limit: Option<String>,
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
            .field("auth", &self.auth)
            .field("signing", &self.signing.as_ref().map(|s| s.secrets.len()))
            .field("response_validators", &self.response_validators)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}
