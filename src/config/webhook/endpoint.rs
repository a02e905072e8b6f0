//! What a webhook asks of its endpoint beyond the URL and headers: `[webhook.auth]`,
//! `[webhook.signing]`, `[[webhook.response_validators]]` and `rate_limit`, as written
//! (`…Spec`) and validated.

use super::WebhookUrl;
use crate::redact::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// `[webhook.auth]` as written. Secret fields must be `${VAR}`.
#[derive(Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum AuthSpec {
    /// `Authorization: Bearer <token>`.
    Bearer { token: String },
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: String },
    /// OAuth 2.0 client credentials grant.
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        #[serde(default)]
        params: BTreeMap<String, String>,
        #[serde(default)]
        client_auth: ClientAuth,
    },
}

impl fmt::Debug for AuthSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            AuthSpec::Bearer { .. } => "bearer",
            AuthSpec::Basic { .. } => "basic",
            AuthSpec::Oauth2 { .. } => "oauth2",
        };
        write!(f, "AuthSpec({kind})")
    }
}

/// How an OAuth2 client authenticates at the token endpoint (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// HTTP Basic with the URL-encoded client id and secret (the RFC's default).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// A webhook's authentication, validated. Secret values never print.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: Secret<String>,
    },
    /// `Authorization: Basic <base64(username:password)>`.
    Basic {
        /// The whole header value, `Basic …`, computed once.
        header: Secret<String>,
        /// The user name (shown by `check` and `webhooks`).
        username: String,
    },
    /// OAuth 2.0 client credentials: a token fetched from `token_url` and cached.
    OAuth2(OAuth2),
}

impl Auth {
    /// The type as written: `bearer`, `basic` or `oauth2`.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::Bearer { .. } => "bearer",
            Auth::Basic { .. } => "basic",
            Auth::OAuth2(_) => "oauth2",
        }
    }

    /// A one-line description without any secret, e.g. `oauth2 (https://idp/token, client relay)`.
    pub fn describe(&self) -> String {
        match self {
            Auth::Bearer { .. } => "bearer".into(),
            Auth::Basic { username, .. } => format!("basic (user {username})"),
            Auth::OAuth2(o) => format!("oauth2 ({}, client {})", o.token_url, o.client_id_shown),
        }
    }
}

/// `type = "oauth2"`: the client credentials grant (RFC 6749 section 4.4). `Debug` shows the
/// client id as written (a `${VAR}` as `***`) and no secret.
#[derive(Clone)]
pub struct OAuth2 {
    /// The token endpoint, checked against `[policy]` like a webhook URL.
    pub token_url: WebhookUrl,
    /// The client id, as sent.
    pub client_id: String,
    /// The client id as it may be shown: each `${VAR}` in it as `***`.
    pub client_id_shown: String,
    /// The client secret.
    pub client_secret: Secret<String>,
    /// `scope`, when set.
    pub scope: Option<String>,
    /// Extra form fields (`audience`, …), values `${VAR}`-substituted.
    pub params: BTreeMap<String, Secret<String>>,
    /// Basic (default) or in the form body.
    pub client_auth: ClientAuth,
}

impl fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id_shown)
            .field("scope", &self.scope)
            .field("params", &self.params.keys().collect::<Vec<_>>())
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// `[webhook.signing]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SigningSpec {
    pub secrets: Vec<String>,
}

/// Standard Webhooks signing: one key per secret (several during a rotation).
#[derive(Debug, Clone)]
pub struct Signing {
    /// The decoded keys of the `whsec_` secrets, in the order written.
    pub keys: Vec<Secret<Vec<u8>>>,
}

/// The prefix of a Standard Webhooks secret.
pub const WHSEC_PREFIX: &str = "whsec_";

/// Decodes a `whsec_<base64>` secret into its key; the error never quotes the value.
pub fn decode_whsec(secret: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let Some(encoded) = secret.strip_prefix(WHSEC_PREFIX) else {
        return Err("is not a Standard Webhooks secret: it must start with `whsec_`".into());
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "is not a Standard Webhooks secret: `whsec_` must be followed by base64")?;
    if key.len() < 16 {
        return Err(format!(
            "is a {}-byte key; Standard Webhooks secrets are 24 to 64 bytes",
            key.len()
        ));
    }
    Ok(key)
}

/// `[[webhook.response_validators]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidatorSpec {
    pub path: String,
    pub expected: Vec<serde_json::Value>,
    #[serde(default)]
    pub retry_on_mismatch: bool,
}

/// One response validator: the value at `path` in a 2xx answer's JSON body must equal one of
/// `expected`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseValidator {
    /// The path as written and parsed.
    pub path: JsonPath,
    /// Scalars (string, number, boolean or null); never empty.
    pub expected: Vec<serde_json::Value>,
    /// A mismatch is retried instead of dead-lettered at once.
    pub retry_on_mismatch: bool,
}

impl ResponseValidator {
    /// Whether `value` is one of the expected ones (numbers compare by value: `1` is `1.0`).
    pub fn accepts(&self, value: &serde_json::Value) -> bool {
        self.expected.iter().any(|e| match (e, value) {
            (serde_json::Value::Number(a), serde_json::Value::Number(b)) => {
                a.as_f64() == b.as_f64()
            }
            _ => e == value,
        })
    }
}

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    /// `.name` or `['name']`.
    Key(String),
    /// `[3]`.
    Index(usize),
}

/// A JSON path of the simple form `$.a.b[0]['c d']`: keys and array indexes from the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    /// As written.
    pub text: String,
    /// The steps from the root.
    pub steps: Vec<PathStep>,
}

impl JsonPath {
    /// Parses `$` followed by `.key`, `[index]` or `['key']` steps.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let Some(mut rest) = text.strip_prefix('$') else {
            return Err(format!(
                "`{text}` must start with `$` (e.g. `$.data.status`)"
            ));
        };
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let key = &after[..end];
                if key.is_empty() || key == "*" {
                    return Err(format!("`{text}`: a `.` must be followed by a key name"));
                }
                steps.push(PathStep::Key(key.to_string()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix("['") {
                let Some(end) = after.find("']") else {
                    return Err(format!("`{text}`: `['` without a closing `']`"));
                };
                steps.push(PathStep::Key(after[..end].to_string()));
                rest = &after[end + 2..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after
                    .find(']')
                    .ok_or_else(|| format!("`{text}`: `[` without a closing `]`"))?;
                let index = after[..end].parse::<usize>().map_err(|_| {
                    format!(
                        "`{text}`: `[{}]` is not an array index (wildcards, filters and \
                         slices are not supported)",
                        &after[..end]
                    )
                })?;
                steps.push(PathStep::Index(index));
                rest = &after[end + 1..];
            } else {
                return Err(format!(
                    "`{text}`: expected `.key`, `[index]` or `['key']` after `$`"
                ));
            }
        }
        if steps.is_empty() {
            return Err(format!(
                "`{text}` is the whole body; name a field (e.g. `$.data.status`)"
            ));
        }
        Ok(JsonPath {
            text: text.to_string(),
            steps,
        })
    }

    /// The value at this path in `value`, if there is one.
    pub fn find<'a>(&self, value: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        self.steps.iter().try_fold(value, |v, step| match step {
            PathStep::Key(k) => v.get(k),
            PathStep::Index(i) => v.get(i),
        })
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `rate_limit = "20/s"`: at most `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per `per`; at least 1.
    pub count: u32,
    /// The period: one second, minute or hour.
    pub per: Duration,
}

impl RateLimit {
    /// Parses `N/s`, `N/m` or `N/h` (also `N/sec`, `N/min`, `N/hour`).
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let bad =
            || format!("`{text}` is not a rate; write it like \"20/s\", \"600/m\" or \"1000/h\"");
        let (count, unit) = text.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!(
                "`{text}` allows no request; remove rate_limit for no limit"
            ));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(RateLimit { count, per })
    }

    /// The rate as written in config, e.g. `20/s`.
    pub fn show(&self) -> String {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        format!("{}/{unit}", self.count)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.show())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_paths_parse_and_find() {
        let path = JsonPath::parse("$.data.items[1]['a b'].status").unwrap();
        assert_eq!(
            path.steps,
            [
                PathStep::Key("data".into()),
                PathStep::Key("items".into()),
                PathStep::Index(1),
                PathStep::Key("a b".into()),
                PathStep::Key("status".into()),
            ]
        );
        let body = json!({"data": {"items": [{}, {"a b": {"status": "ok"}}]}});
        assert_eq!(path.find(&body), Some(&json!("ok")));
        assert_eq!(JsonPath::parse("$.nope").unwrap().find(&body), None);
        for bad in [
            "data.status",
            "$",
            "$.",
            "$..x",
            "$.a[*]",
            "$.a[0",
            "$x",
            "$.a['b",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validators_compare_numbers_by_value() {
        let v = ResponseValidator {
            path: JsonPath::parse("$.n").unwrap(),
            expected: vec![json!(1), json!("ok"), json!(true)],
            retry_on_mismatch: false,
        };
        assert!(v.accepts(&json!(1.0)) && v.accepts(&json!("ok")) && v.accepts(&json!(true)));
        assert!(!v.accepts(&json!("1")) && !v.accepts(&json!(2)) && !v.accepts(&json!(null)));
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            RateLimit::parse("20/s"),
            Ok(RateLimit {
                count: 20,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(
            RateLimit::parse("600/m").unwrap().per,
            Duration::from_secs(60)
        );
        assert_eq!(RateLimit::parse("600/m").unwrap().show(), "600/m");
        assert_eq!(RateLimit::parse("5 / h").unwrap().show(), "5/h");
        for bad in ["20", "x/s", "20/d", "-1/s", "20/"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
        assert!(RateLimit::parse("0/s").unwrap_err().contains("no request"));
    }

    #[test]
    fn whsec_secrets_decode_and_errors_never_quote_them() {
        let key = decode_whsec("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(key.len(), 24);
        for bad in [
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "whsec_not base64!",
            "whsec_AAAA",
        ] {
            let err = decode_whsec(bad).unwrap_err();
            assert!(!err.contains(bad), "{err}");
        }
    }
}
