//! Validating one `[[webhook]]` table, concern by concern: name, URL and policy, headers and
//! secret headers, filters, template, batch, delivery overrides. Every problem is recorded,
//! naming file, webhook and field, not only the first.

use super::target::{check_url, short_inline_credentials};
use super::{Header, Method, Webhook, WebhookSpec, WebhookUrl, is_json_content_type, valid_name};
use crate::config::batch::BatchSettings;
use crate::config::delivery::DeliverySettings;
use crate::config::env::{Env, interpolate};
use crate::config::problem::{Findings, Place};
use crate::config::relay::Policy;
use crate::config::secrets::{inline_url_secrets, short_secret_message, short_variables};
use crate::model::template::{Template, TemplateOptions};
use crate::redact::{self, Redactor, Secret};
use std::path::Path;
use std::time::Duration;

/// Context shared by every webhook of one config.
pub(crate) struct WebhookContext<'a> {
    /// The config folder, which `body_template_file` is relative to.
    pub config_dir: &'a Path,
    /// Where `${VAR}`s come from.
    pub env: &'a Env,
    /// `[policy]`: the rules every URL must follow.
    pub policy: &'a Policy,
    /// `[delivery]`: what each webhook's `[webhook.delivery]` starts from.
    pub defaults: DeliverySettings,
    /// The broker's consumer timeout, which in-process retries must stay under.
    pub consumer_timeout: Duration,
}

/// Validates one spec from `file`. Records in `found` every problem, every secret value the
/// webhook introduces, and a warning for each secret too short to be masked everywhere.
/// Returns the webhook when no error was found in it.
pub(crate) fn validate(
    spec: WebhookSpec,
    file: &Path,
    ctx: &WebhookContext<'_>,
    found: &mut Findings,
) -> Option<Webhook> {
    let errors_before = found.error_count();
    let mut check = Check {
        spec: &spec,
        place: Place {
            file,
            webhook: Some(&spec.name),
        },
        ctx,
        found,
        inline_secrets: inline_url_secrets(&spec.url),
    };
    check.name();
    let url = check.url();
    let headers = check.headers();
    let json_body = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .is_some_and(|h| is_json_content_type(h.value.expose()));
    check.filters();
    let template = check.template(json_body);
    let batch = check.batch(json_body);
    let delivery = check.delivery();
    let auth = check.auth(&headers);
    let signing = check.signing();
    let response_validators = check.response_validators();
    let rate_limit = check.rate_limit();
    let inline_secrets = check.inline_secrets;
    if found.error_count() > errors_before {
        return None;
    }
    let (template, template_source) = template?;
    let mut triggers = spec.triggers.clone();
    triggers.sort();
    triggers.dedup();
    Some(Webhook {
        name: spec.name,
        status: spec.status,
        method: spec.method,
        url: url?,
        headers,
        triggers,
        filters: spec.filters,
        template,
        template_source,
        strict: spec.strict,
        json_body,
        delivery: delivery?,
        source: file.to_path_buf(),
        batch,
        inline_secrets,
        auth,
        signing,
        response_validators,
        rate_limit,
    })
}

/// One webhook being validated: what it checks, and where it records what it finds.
pub(super) struct Check<'a> {
    pub(super) spec: &'a WebhookSpec,
    pub(super) place: Place<'a>,
    pub(super) ctx: &'a WebhookContext<'a>,
    pub(super) found: &'a mut Findings,
    /// Fields that hold a secret written into the file rather than taken from `${VAR}`.
    inline_secrets: Vec<String>,
}

impl Check<'_> {
    pub(super) fn error(&mut self, field: &str, message: impl Into<String>) {
        self.found.push(self.place.problem(field, message));
    }

    /// Warns that the secret `what` in `field` is too short to be masked everywhere.
    pub(super) fn warn_short(&mut self, field: &str, what: &str) {
        self.found
            .warn(self.place.problem(field, short_secret_message(what)));
    }

    /// `name`: 1 to 64 letters, digits, `-` and `_`.
    fn name(&mut self) {
        if !valid_name(&self.spec.name) {
            self.error("name", "must be 1 to 64 letters, digits, '-' or '_'");
        }
    }

    /// `url`: interpolated and checked against the policy. Its secrets (substituted values,
    /// inline credentials, and the decoded forms of both) are recorded.
    fn url(&mut self) -> Option<WebhookUrl> {
        let interpolated = match interpolate(&self.spec.url, self.ctx.env) {
            Ok(interpolated) => interpolated,
            Err(message) => {
                self.error("url", message);
                return None;
            }
        };
        for what in short_variables(&interpolated) {
            self.warn_short("url", &what);
        }
        self.found
            .secrets
            .extend(interpolated.substituted.iter().cloned());
        let shown = interpolated.url_display_source();
        match check_url(&interpolated.value, shown, self.ctx.policy) {
            Ok(url) => {
                let written = &self.spec.url;
                for what in short_inline_credentials(written, url.expose(), &self.inline_secrets) {
                    self.warn_short("url", &what);
                }
                self.found.secrets.extend(redact::url_secrets(url.expose()));
                Some(url)
            }
            Err(message) => {
                self.error("url", message);
                None
            }
        }
    }

    /// `secret_headers` and `headers`, in name order. Adds `Content-Type: application/json`
    /// when no header sets the content type.
    fn headers(&mut self) -> Vec<Header> {
        let spec = self.spec;
        for unknown in spec
            .secret_headers
            .iter()
            .filter(|h| !spec.headers.keys().any(|k| k.eq_ignore_ascii_case(h)))
        {
            self.error(
                "secret_headers",
                format!("`{unknown}` is not one of this webhook's headers"),
            );
        }
        let mut headers: Vec<Header> = spec
            .headers
            .iter()
            .filter_map(|(name, value)| self.header(name, value))
            .collect();
        if !headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-type"))
        {
            headers.push(Header {
                name: "Content-Type".into(),
                value: Secret::new("application/json".into()),
                secret: false,
            });
        }
        headers
    }

    /// One header: its name an HTTP token, its value interpolated and free of control
    /// characters. A value is secret when it comes from `${VAR}`, when the name looks like a
    /// credential or when `secret_headers` lists it; a secret value is recorded whole and
    /// word by word (`Bearer abc`: `abc` is a secret on its own). `None` when refused.
    fn header(&mut self, name: &str, raw_value: &str) -> Option<Header> {
        let field = format!("headers.{name}");
        if !valid_header_name(name) {
            self.error(&field, "is not a valid header name");
            return None;
        }
        let interpolated = match interpolate(raw_value, self.ctx.env) {
            Ok(interpolated) => interpolated,
            Err(message) => {
                self.error(&field, message);
                return None;
            }
        };
        if interpolated
            .value
            .chars()
            .any(|c| c.is_control() && c != '\t')
        {
            self.error(&field, "value contains control characters");
            return None;
        }
        let from_env = !interpolated.substituted.is_empty();
        let secret = from_env
            || redact::is_secret_name(name)
            || self
                .spec
                .secret_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name));
        for what in short_variables(&interpolated) {
            self.warn_short(&field, &what);
        }
        if secret {
            let words = interpolated.value.split_whitespace().skip(1);
            let words: Vec<String> = words.map(str::to_string).collect();
            self.found.secrets.push(interpolated.value.clone());
            self.found.secrets.extend(words);
            if !from_env {
                self.inline_secrets.push(field.clone());
                if interpolated.value.len() < Redactor::FREE_TEXT_MIN_LEN {
                    self.warn_short(&field, "the value");
                }
            }
        }
        self.found.secrets.extend(interpolated.substituted);
        Some(Header {
            name: name.to_string(),
            value: Secret::new(interpolated.value),
            secret,
        })
    }

    /// `filters`: a listed filter must name at least one value.
    fn filters(&mut self) {
        for (filter, values) in self.spec.filters.listed() {
            if values.is_empty() {
                self.error(
                    &format!("filters.{filter}"),
                    "is an empty list, which no event matches; remove it to match every event",
                );
            }
        }
    }

    /// The body template and its source, compiled; as JSON when `json_body` (and the source
    /// is not empty).
    fn template(&mut self, json_body: bool) -> Option<(Template, String)> {
        let source = self.template_source()?;
        let options = TemplateOptions {
            strict: self.spec.strict,
            json: json_body && !source.is_empty(),
        };
        match Template::compile(&source, options) {
            Ok(template) => Some((template, source)),
            Err(e) => {
                let field = if self.spec.body_template_file.is_some() {
                    "body_template_file"
                } else {
                    "body_template"
                };
                self.error(field, e.to_string());
                None
            }
        }
    }

    /// `body_template`, or the contents of `body_template_file` (relative to the config
    /// folder); empty for `GET` and `DELETE`, which may have neither.
    fn template_source(&mut self) -> Option<String> {
        let spec = self.spec;
        match (&spec.body_template, &spec.body_template_file) {
            (Some(_), Some(_)) => {
                self.error(
                    "body_template",
                    "set either body_template or body_template_file, not both",
                );
                None
            }
            (Some(text), None) => Some(text.clone()),
            (None, Some(path)) => {
                let full = self.ctx.config_dir.join(path);
                match std::fs::read_to_string(&full) {
                    Ok(text) => Some(text),
                    Err(e) => {
                        let message = format!("cannot read {}: {e}", full.display());
                        self.error("body_template_file", message);
                        None
                    }
                }
            }
            (None, None) if matches!(spec.method, Method::Get | Method::Delete) => {
                Some(String::new())
            }
            (None, None) => {
                let message = format!(
                    "is required for {} (or set body_template_file)",
                    spec.method
                );
                self.error("body_template", message);
                None
            }
        }
    }

    /// `[webhook.batch]`, if set; NDJSON needs JSON bodies (`json_body`).
    fn batch(&mut self, json_body: bool) -> Option<BatchSettings> {
        let batch = self.spec.batch.as_ref()?.settings();
        self.found.fields(self.place, "", batch.problems(json_body));
        Some(batch)
    }

    /// `[webhook.delivery]` over the `[delivery]` defaults; `None` when the merged settings
    /// are refused.
    fn delivery(&mut self) -> Option<DeliverySettings> {
        let settings = self.ctx.defaults.with(&self.spec.delivery);
        settings.validate(self.place, self.ctx.consumer_timeout, self.found)
    }
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
    use crate::config::Problem;

    /// Validates the first `[[webhook]]` of `toml` against the default delivery settings
    /// and policy, with `TOKEN` set.
    fn check(toml: &str) -> (Option<Webhook>, Vec<Problem>) {
        let table: toml::Table = toml.parse().unwrap();
        let spec: WebhookSpec = table["webhook"][0].clone().try_into().unwrap();
        let env = Env::from_pairs([
            ("TOKEN", "tok-123456"),
            ("PW", "pa:ss word"),
            ("CS", "client-secret-1"),
            ("WHSEC", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
            ("BAD_WHSEC", "whsec_???"),
        ]);
        let ctx = WebhookContext {
            config_dir: Path::new("."),
            env: &env,
            policy: &Policy::default(),
            defaults: DeliverySettings::default(),
            consumer_timeout: Duration::from_secs(1800),
        };
        let mut found = Findings::default();
        let webhook = validate(spec, Path::new("a.toml"), &ctx, &mut found);
        let problems = match found.finish() {
            Ok((warnings, _)) => warnings,
            Err(e) => e.problems,
        };
        (webhook, problems)
    }

    #[test]
    fn header_names_are_http_tokens() {
        assert!(valid_header_name("X-Api-Key"));
        assert!(!valid_header_name("X Api"));
    }

    #[test]
    fn content_type_defaults_to_json_and_get_needs_no_body() {
        let (webhook, problems) = check(
            "[[webhook]]\nname = \"a\"\nmethod = \"GET\"\nurl = \"https://h/?token=${TOKEN}\"\n",
        );
        assert_eq!(problems, Vec::new());
        let webhook = webhook.unwrap();
        assert!(webhook.json_body);
        assert_eq!(webhook.template_source, "");
        let content_type = &webhook.headers[0];
        assert_eq!(content_type.name, "Content-Type");
        assert_eq!(content_type.value.expose(), "application/json");
    }

    #[test]
    fn every_concern_is_checked_not_only_the_first() {
        let (webhook, problems) = check(
            "[[webhook]]\nname = \"a b\"\nurl = \"http://h/\"\n\
             headers = { \"X Y\" = \"v\" }\nsecret_headers = [\"X-Z\"]\n\
             [webhook.filters]\npermissions = []\n\
             [webhook.batch]\nmax_events = 0\n\
             [webhook.delivery]\nconcurrency = 0\n",
        );
        assert!(webhook.is_none());
        let fields: Vec<&str> = problems
            .iter()
            .map(|p| p.field.as_deref().unwrap_or_default())
            .collect();
        assert_eq!(
            fields,
            [
                "name",
                "url",
                "secret_headers",
                "headers.X Y",
                "filters.permissions",
                "body_template",
                "batch.max_events",
                "delivery.concurrency",
            ]
        );
        assert!(problems.iter().all(|p| p.webhook.as_deref() == Some("a b")));
    }

    const BASE: &str = "[[webhook]]\nname = \"a\"\nurl = \"https://h/\"\nbody_template = \"{}\"\n";

    fn fields(problems: &[Problem]) -> Vec<String> {
        problems
            .iter()
            .map(|p| p.field.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn auth_secrets_come_from_the_environment_and_are_known() {
        let (webhook, problems) = check(&format!(
            "{BASE}[webhook.auth]\ntype = \"basic\"\nusername = \"relay\"\npassword = \"${{PW}}\"\n"
        ));
        assert_eq!(problems, Vec::new());
        let webhook = webhook.unwrap();
        let Some(crate::config::Auth::Basic { header, username }) = &webhook.auth else {
            panic!("{:?}", webhook.auth);
        };
        assert_eq!(username, "relay");
        assert_eq!(header.expose(), "Basic cmVsYXk6cGE6c3Mgd29yZA==");

        let (webhook, problems) = check(&format!(
            "{BASE}[webhook.auth]\ntype = \"bearer\"\ntoken = \"written-in-the-file\"\n"
        ));
        assert!(webhook.is_none());
        assert_eq!(fields(&problems), ["auth.token"]);
        assert!(problems[0].message.contains("${VAR}"), "{}", problems[0]);
        assert!(!problems[0].to_string().contains("written-in-the-file"));
    }

    #[test]
    fn auth_next_to_an_authorization_header_is_refused() {
        let (_, problems) = check(&format!(
            "{BASE}headers = {{ Authorization = \"Bearer ${{TOKEN}}\" }}\n\
             [webhook.auth]\ntype = \"bearer\"\ntoken = \"${{TOKEN}}\"\n"
        ));
        assert_eq!(fields(&problems), ["auth"]);
    }

    #[test]
    fn oauth2_needs_a_policy_url_and_keeps_relay_fields_out_of_params() {
        let (webhook, problems) = check(&format!(
            "{BASE}[webhook.auth]\ntype = \"oauth2\"\ntoken_url = \"https://idp/token\"\n\
             client_id = \"relay\"\nclient_secret = \"${{CS}}\"\nscope = \"w\"\n\
             client_auth = \"body\"\nparams = {{ audience = \"api\" }}\n"
        ));
        assert_eq!(problems, Vec::new());
        let webhook = webhook.unwrap();
        assert!(!format!("{webhook:?}").contains("client-secret-1"));
        let Some(crate::config::Auth::OAuth2(oauth)) = &webhook.auth else {
            panic!("not oauth2");
        };
        assert_eq!(oauth.client_auth, crate::config::ClientAuth::Body);
        assert_eq!(oauth.params["audience"].expose(), "api");

        let (_, problems) = check(&format!(
            "{BASE}[webhook.auth]\ntype = \"oauth2\"\ntoken_url = \"http://idp:8443/token\"\n\
             client_id = \"relay\"\nclient_secret = \"${{CS}}\"\n\
             params = {{ grant_type = \"password\" }}\n"
        ));
        assert_eq!(
            fields(&problems),
            ["auth.token_url", "auth.params.grant_type"]
        );
    }

    #[test]
    fn signing_secrets_must_be_whsec_from_the_environment() {
        let (webhook, problems) = check(&format!(
            "{BASE}[webhook.signing]\nsecrets = [\"${{WHSEC}}\", \"${{WHSEC}}\"]\n"
        ));
        assert_eq!(problems, Vec::new());
        assert_eq!(webhook.unwrap().signing.unwrap().keys.len(), 2);
        let (webhook, problems) = check(&format!(
            "{BASE}[webhook.signing]\nsecrets = [\"${{BAD_WHSEC}}\", \"whsec_AAAA\"]\n"
        ));
        assert!(webhook.is_none());
        assert_eq!(
            fields(&problems),
            ["signing.secrets[0]", "signing.secrets[1]"]
        );
        assert!(problems.iter().all(|p| !p.to_string().contains("???")));
    }

    #[test]
    fn validators_need_a_path_and_scalars() {
        let (webhook, problems) = check(&format!(
            "{BASE}[[webhook.response_validators]]\npath = \"$.data.status\"\n\
             expected = [\"ok\", 1, true]\nretry_on_mismatch = true\n"
        ));
        assert_eq!(problems, Vec::new());
        let validators = webhook.unwrap().response_validators;
        assert_eq!(validators.len(), 1);
        assert!(validators[0].retry_on_mismatch);
        let (_, problems) = check(&format!(
            "{BASE}[[webhook.response_validators]]\npath = \"data.status\"\nexpected = [\"ok\"]\n\
             [[webhook.response_validators]]\npath = \"$.a\"\nexpected = []\n\
             [[webhook.response_validators]]\npath = \"$.b\"\nexpected = [[1]]\n"
        ));
        assert_eq!(
            fields(&problems),
            [
                "response_validators[0].path",
                "response_validators[1].expected",
                "response_validators[2].expected"
            ]
        );
    }

    #[test]
    fn rate_limits_parse() {
        let (webhook, problems) = check(&format!("rate_limit = \"20/s\"\n{BASE}").replace(
            "rate_limit = \"20/s\"\n[[webhook]]\n",
            "[[webhook]]\nrate_limit = \"20/s\"\n",
        ));
        assert_eq!(problems, Vec::new());
        assert_eq!(webhook.unwrap().rate_limit.unwrap().show(), "20/s");
        let (_, problems) =
            check(&BASE.replace("[[webhook]]\n", "[[webhook]]\nrate_limit = \"fast\"\n"));
        assert_eq!(fields(&problems), ["rate_limit"]);
    }
}
