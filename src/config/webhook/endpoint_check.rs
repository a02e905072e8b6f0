//! Validating what a webhook asks of its endpoint: `[webhook.auth]`, `[webhook.signing]`,
//! `[[webhook.response_validators]]` and `rate_limit`. Every secret must come from `${VAR}`,
//! and every form it may travel in (the Basic credential, the `whsec_` key) is recorded for
//! the redactor.

use super::endpoint::{
    Auth, AuthSpec, ClientAuth, JsonPath, OAuth2, RateLimit, ResponseValidator, Signing,
    decode_whsec,
};
use super::target::check_url;
use super::validate::Check;
use super::{Header, WebhookUrl};
use crate::config::env::interpolate;
use crate::config::secrets::short_variables;
use crate::redact::{self, Secret};
use base64::Engine as _;
use std::collections::BTreeMap;

/// The message for a secret written into the file.
const NOT_FROM_ENV: &str =
    "must come from the environment as `${VAR}`: a secret is never written into a file";

/// `Basic <base64(user:password)>`.
pub(crate) fn basic_credential(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

impl Check<'_> {
    /// `field` interpolated; `${VAR}` substitutions are recorded as secrets. Returns the value
    /// and how it may be shown (substitutions as `***`).
    fn plain_value(&mut self, field: &str, raw: &str) -> Option<(String, String)> {
        match interpolate(raw, self.ctx.env) {
            Ok(interpolated) => {
                for what in short_variables(&interpolated) {
                    self.warn_short(field, &what);
                }
                self.found
                    .secrets
                    .extend(interpolated.substituted.iter().cloned());
                Some((interpolated.value, interpolated.shown))
            }
            Err(message) => {
                self.error(field, message);
                None
            }
        }
    }

    /// A secret `field`: it must hold a `${VAR}`; its value is recorded as a secret.
    fn secret_value(&mut self, field: &str, raw: &str) -> Option<String> {
        if !raw.contains("${") {
            self.error(field, NOT_FROM_ENV);
            return None;
        }
        let (value, _) = self.plain_value(field, raw)?;
        self.found.secrets.push(value.clone());
        if value.chars().any(char::is_control) {
            self.error(field, "value contains control characters");
            return None;
        }
        Some(value)
    }

    /// `[webhook.auth]`; refused next to an `Authorization` header, which it would replace.
    pub(super) fn auth(&mut self, headers: &[Header]) -> Option<Auth> {
        let spec = self.spec.auth.clone()?;
        if headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("authorization"))
        {
            self.error(
                "auth",
                "the webhook also sets an Authorization header; use one or the other",
            );
        }
        match spec {
            AuthSpec::Bearer { token } => {
                let token = self.secret_value("auth.token", &token)?;
                Some(Auth::Bearer {
                    token: Secret::new(token),
                })
            }
            AuthSpec::Basic { username, password } => {
                let (user, user_shown) = self.plain_value("auth.username", &username)?;
                let password = self.secret_value("auth.password", &password)?;
                if user.contains(':') {
                    self.error("auth.username", "must not contain `:` (HTTP Basic)");
                    return None;
                }
                let credential = basic_credential(&user, &password);
                self.found.secrets.push(credential.clone());
                Some(Auth::Basic {
                    header: Secret::new(format!("Basic {credential}")),
                    username: user_shown,
                })
            }
            AuthSpec::Oauth2 {
                token_url,
                client_id,
                client_secret,
                scope,
                params,
                client_auth,
            } => {
                let token_url = self.token_url(&token_url);
                let client_id = self.plain_value("auth.client_id", &client_id);
                let client_secret = self.secret_value("auth.client_secret", &client_secret);
                let mut values = BTreeMap::new();
                for (name, raw) in &params {
                    let field = format!("auth.params.{name}");
                    if matches!(
                        name.as_str(),
                        "grant_type" | "client_id" | "client_secret" | "scope"
                    ) {
                        self.error(&field, "is set by the relay; remove it from params");
                        continue;
                    }
                    if let Some((value, _)) = self.plain_value(&field, raw) {
                        values.insert(name.clone(), Secret::new(value));
                    }
                }
                let scope = match scope {
                    Some(raw) => Some(self.plain_value("auth.scope", &raw)?.0),
                    None => None,
                };
                let (client_id, client_id_shown) = client_id?;
                let client_secret = client_secret?;
                if client_auth == ClientAuth::Basic {
                    let encoded =
                        basic_credential(&url_encode(&client_id), &url_encode(&client_secret));
                    self.found.secrets.push(encoded);
                }
                Some(Auth::OAuth2(OAuth2 {
                    token_url: token_url?,
                    client_id,
                    client_id_shown,
                    client_secret: Secret::new(client_secret),
                    scope,
                    params: values,
                    client_auth,
                }))
            }
        }
    }

    /// `auth.token_url`: interpolated and held to the webhook URL policy.
    fn token_url(&mut self, raw: &str) -> Option<WebhookUrl> {
        let interpolated = match interpolate(raw, self.ctx.env) {
            Ok(i) => i,
            Err(message) => {
                self.error("auth.token_url", message);
                return None;
            }
        };
        self.found
            .secrets
            .extend(interpolated.substituted.iter().cloned());
        let shown = interpolated.url_display_source().to_string();
        match check_url(&interpolated.value, &shown, self.ctx.policy) {
            Ok(url) => {
                self.found.secrets.extend(redact::url_secrets(url.expose()));
                Some(url)
            }
            Err(message) => {
                self.error("auth.token_url", message);
                None
            }
        }
    }

    /// `[webhook.signing]`: one or more `whsec_` secrets, each from `${VAR}`.
    pub(super) fn signing(&mut self) -> Option<Signing> {
        let spec = self.spec.signing.clone()?;
        if spec.secrets.is_empty() {
            self.error("signing.secrets", "is empty; list at least one `${VAR}`");
            return None;
        }
        let mut keys = Vec::new();
        for (i, raw) in spec.secrets.iter().enumerate() {
            let field = format!("signing.secrets[{i}]");
            let Some(value) = self.secret_value(&field, raw) else {
                continue;
            };
            if let Some(encoded) = value.strip_prefix(super::endpoint::WHSEC_PREFIX) {
                self.found.secrets.push(encoded.to_string());
            }
            match decode_whsec(&value) {
                Ok(key) => keys.push(Secret::new(key)),
                Err(message) => self.error(&field, message),
            }
        }
        (keys.len() == spec.secrets.len()).then_some(Signing { keys })
    }

    /// `[[webhook.response_validators]]`: a parseable path and a non-empty list of scalars.
    pub(super) fn response_validators(&mut self) -> Vec<ResponseValidator> {
        let specs = self.spec.response_validators.clone();
        let mut out = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let field = format!("response_validators[{i}]");
            let path = JsonPath::parse(&spec.path)
                .map_err(|e| self.error(&format!("{field}.path"), e))
                .ok();
            if spec.expected.is_empty() {
                self.error(
                    &format!("{field}.expected"),
                    "is empty, which no value matches",
                );
                continue;
            }
            if let Some(bad) = spec.expected.iter().find(|v| v.is_array() || v.is_object()) {
                let kind = if bad.is_array() {
                    "an array"
                } else {
                    "a table"
                };
                self.error(
                    &format!("{field}.expected"),
                    format!("holds {kind}; list strings, numbers or booleans"),
                );
                continue;
            }
            if let Some(path) = path {
                out.push(ResponseValidator {
                    path,
                    expected: spec.expected,
                    retry_on_mismatch: spec.retry_on_mismatch,
                });
            }
        }
        out
    }

    /// `rate_limit`, e.g. `"20/s"`.
    pub(super) fn rate_limit(&mut self) -> Option<RateLimit> {
        let text = self.spec.rate_limit.clone()?;
        RateLimit::parse(&text)
            .map_err(|e| self.error("rate_limit", e))
            .ok()
    }
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 appendix B).
pub(crate) fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
