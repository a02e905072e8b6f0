//! OAuth 2.0 client credentials (RFC 6749 section 4.4): the token of one webhook, fetched
//! through the shared HTTP client (same TLS roots, no redirects, the webhook's timeout) and
//! cached until shortly before it expires. Every delivery of the webhook shares it: when it
//! is missing or stale, one delivery fetches and the others wait for that fetch (a lock held
//! across it), so concurrent deliveries never stampede the token endpoint. A delivery that
//! got a 401 with token generation `g` asks for a token newer than `g`: the first to ask
//! fetches, the others get what it fetched.

use super::attempt::{ResponseInfo, send_and_read_up_to};
use super::classify::FailureClass;
use super::error::{AttemptError, chain};
use crate::config::{ClientAuth, OAuth2};
use crate::redact::{Redactor, Secret};
use reqwest::header::HeaderValue;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The longest a token is refreshed before it expires.
const MAX_EARLY_REFRESH: Duration = Duration::from_secs(30);

/// The largest token answer read: JWTs with many claims (Azure AD, Keycloak groups) pass 4 kB.
const TOKEN_BODY_LIMIT: usize = 64 * 1024;

/// `expires_in` is taken between these (seconds): a token endpoint cannot make every
/// delivery fetch a new token (0), nor overflow the clock (`u64::MAX`); a short lifetime the
/// provider means (1 s) is kept.
const MIN_LIFETIME_SECS: u64 = 1;
const MAX_LIFETIME_SECS: u64 = 24 * 60 * 60;

/// One access token as fetched.
#[derive(Debug)]
pub struct Token {
    /// The `Authorization` value, `Bearer <token>`, marked sensitive.
    pub header: HeaderValue,
    /// The access token itself, to scrub it from what an endpoint echoes back.
    pub value: Secret<String>,
    /// Counts the fetches of this cache: a 401 names the token it was refused with.
    pub generation: u64,
    /// When it stops being used; `None` when the endpoint gave no `expires_in`.
    refresh_at: Option<Instant>,
}

impl Token {
    fn fresh(&self) -> bool {
        self.refresh_at.is_none_or(|at| Instant::now() < at)
    }
}

/// The cached token of one webhook and the state of its fetches.
#[derive(Debug, Default)]
pub struct TokenCache {
    /// A digest of what the token was asked for and where it is sent (see
    /// [`TokenCache::for_webhook`]): a reload keeps the cache only while it is the same.
    identity: Vec<u8>,
    state: tokio::sync::Mutex<State>,
    /// Fetches started, readable without the lock.
    fetches: AtomicU64,
    /// Fetches that reached the endpoint (for tests and metrics).
    requests: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    token: Option<Arc<Token>>,
    /// The last fetch's error, and the fetch count it belongs to.
    failed: Option<(u64, AttemptError)>,
}

impl TokenCache {
    /// An empty cache for `webhook`, whose OAuth2 settings are `oauth`.
    pub fn for_webhook(webhook: &crate::config::Webhook, oauth: &OAuth2) -> TokenCache {
        TokenCache {
            identity: identity(webhook.url.expose(), oauth),
            ..TokenCache::default()
        }
    }

    /// Whether a token from this cache may be sent where `other` sends it: the same target
    /// origin, token endpoint, client, secret, scope and parameters. A reload that changes
    /// any of them must not hand the old token to the new target.
    pub fn same_identity(&self, other: &TokenCache) -> bool {
        self.identity == other.identity
    }

    /// How many times the token endpoint was asked.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// A fresh token newer than `refused` (the generation a 401 came with, if any), fetching
    /// one when needed. A caller that waited for a fetch that failed gets its error rather
    /// than fetching again.
    pub async fn token(
        &self,
        client: &reqwest::Client,
        oauth: &OAuth2,
        timeout: Duration,
        refused: Option<u64>,
        redactor: &Redactor,
    ) -> Result<Arc<Token>, AttemptError> {
        let seen = self.fetches.load(Ordering::Acquire);
        let mut state = self.state.lock().await;
        if let Some(token) = &state.token
            && token.fresh()
            && refused.is_none_or(|g| token.generation > g)
        {
            return Ok(Arc::clone(token));
        }
        if let Some((number, error)) = &state.failed
            && *number > seen
        {
            return Err(error.clone());
        }
        let number = self.fetches.fetch_add(1, Ordering::AcqRel) + 1;
        self.requests.fetch_add(1, Ordering::Relaxed);
        match fetch(client, oauth, timeout, number, redactor).await {
            Ok(token) => {
                let token = Arc::new(token);
                state.token = Some(Arc::clone(&token));
                state.failed = None;
                Ok(token)
            }
            Err(error) => {
                state.token = None;
                state.failed = Some((number, error.clone()));
                Err(error)
            }
        }
    }
}

/// The token endpoint's answer (RFC 6749 section 5.1).
#[derive(serde::Deserialize)]
struct Granted {
    access_token: String,
    expires_in: Option<u64>,
}

/// The token endpoint's refusal (RFC 6749 section 5.2).
#[derive(serde::Deserialize)]
struct Refused {
    error: String,
    error_description: Option<String>,
}

/// A SHA-256 digest of the target's origin and every OAuth2 setting (the secret included, as
/// a digest only).
fn identity(target: &url::Url, oauth: &OAuth2) -> Vec<u8> {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut field = |value: &str| {
        context.update(&(value.len() as u64).to_be_bytes());
        context.update(value.as_bytes());
    };
    field(&target.origin().ascii_serialization());
    field(oauth.token_url.expose().as_str());
    field(&oauth.client_id);
    field(oauth.client_secret.expose());
    field(oauth.scope.as_deref().unwrap_or(""));
    field(&format!("{:?}", oauth.client_auth));
    for (name, value) in &oauth.params {
        field(name);
        field(value.expose());
    }
    context.finish().as_ref().to_vec()
}

/// Asks the token endpoint once.
async fn fetch(
    client: &reqwest::Client,
    oauth: &OAuth2,
    timeout: Duration,
    generation: u64,
    redactor: &Redactor,
) -> Result<Token, AttemptError> {
    let mut builder = client
        .post(oauth.token_url.expose().clone())
        .timeout(timeout)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    if oauth.client_auth == ClientAuth::Basic {
        let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        let id: String = encode(&oauth.client_id);
        let secret: String = encode(oauth.client_secret.expose());
        let credential = crate::config::basic_credential(&id, &secret);
        let mut value = HeaderValue::from_str(&format!("Basic {credential}"))
            .map_err(|_| refused("the client id or secret cannot go in a header"))?;
        value.set_sensitive(true);
        builder = builder.header(reqwest::header::AUTHORIZATION, value);
    }
    let response = match send_and_read_up_to(builder.body(form(oauth)), TOKEN_BODY_LIMIT).await {
        Ok(response) => response,
        Err(err) => {
            let transport = FailureClass::of_transport(&err);
            let class = match transport {
                FailureClass::Builder => FailureClass::TokenRefused,
                _ => FailureClass::TokenUnavailable,
            };
            let err = err.without_url();
            let message = format!("oauth2 token endpoint: {transport}: {}", chain(&err));
            return Err(AttemptError::Token {
                class,
                message: redactor.scrub(&message),
            });
        }
    };
    if (200..300).contains(&response.status) && response.truncated {
        // Not a refusal: the answer is larger than anything a token endpoint should send.
        return Err(AttemptError::Token {
            class: FailureClass::TokenUnavailable,
            message: format!(
                "oauth2 token endpoint: http {} with a body over {TOKEN_BODY_LIMIT} bytes; \
                 not read as a token",
                response.status
            ),
        });
    }
    if (200..300).contains(&response.status) {
        granted(&response, generation, redactor)
    } else {
        Err(refusal(&response, redactor))
    }
}

/// The token in a 2xx answer (RFC 6749 section 5.1).
fn granted(
    response: &ResponseInfo,
    generation: u64,
    redactor: &Redactor,
) -> Result<Token, AttemptError> {
    let granted: Granted = serde_json::from_str(&response.body).map_err(|_| {
        refused(&format!(
            "oauth2 token endpoint: http {} without a JSON access_token; check auth.token_url",
            response.status
        ))
    })?;
    let scrub = redactor.merged(&Redactor::new([granted.access_token.as_str()]));
    let mut header =
        HeaderValue::from_str(&format!("Bearer {}", granted.access_token)).map_err(|_| {
            refused(&scrub.scrub("oauth2 token endpoint: the token cannot go in a header"))
        })?;
    header.set_sensitive(true);
    let refresh_at = granted.expires_in.map(|secs| {
        let lifetime = Duration::from_secs(secs.clamp(MIN_LIFETIME_SECS, MAX_LIFETIME_SECS));
        Instant::now() + lifetime - (lifetime / 10).min(MAX_EARLY_REFRESH)
    });
    Ok(Token {
        header,
        value: Secret::new(granted.access_token),
        generation,
        refresh_at,
    })
}

/// The error for a non-2xx answer: the OAuth error code and description when the body has
/// them (RFC 6749 section 5.2), otherwise the start of the body, and what to check.
fn refusal(response: &ResponseInfo, redactor: &Redactor) -> AttemptError {
    let class = FailureClass::of_token_status(response.status);
    let detail = match serde_json::from_str::<Refused>(&response.body) {
        Ok(r) => match r.error_description {
            Some(d) => format!("{}: {d}", r.error),
            None => r.error,
        },
        Err(_) => response
            .body
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    };
    let detail: String = redactor.scrub(&detail).chars().take(200).collect();
    let status = match detail.is_empty() {
        true => format!("http {}", response.status),
        false => format!("http {}: {detail}", response.status),
    };
    let hint = refusal_hint(&detail, class);
    AttemptError::Token {
        class,
        message: redactor.scrub(&format!("oauth2 token endpoint: {status}{hint}")),
    }
}

/// The form body of a token request: the grant, `scope`, `params`, and the client's
/// credentials when `client_auth = "body"`.
fn form(oauth: &OAuth2) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if let Some(scope) = &oauth.scope {
        form.append_pair("scope", scope);
    }
    for (name, value) in &oauth.params {
        form.append_pair(name, value.expose());
    }
    if oauth.client_auth == ClientAuth::Body {
        form.append_pair("client_id", &oauth.client_id);
        form.append_pair("client_secret", oauth.client_secret.expose());
    }
    form.finish()
}

/// A permanent token failure with `message` (already free of secrets).
fn refused(message: &str) -> AttemptError {
    AttemptError::Token {
        class: FailureClass::TokenRefused,
        message: message.to_string(),
    }
}

/// What to check for an OAuth error code (RFC 6749 section 5.2).
fn refusal_hint(detail: &str, class: FailureClass) -> &'static str {
    if class == FailureClass::TokenUnavailable {
        return " (transient; retried)";
    }
    let code = detail.split(':').next().unwrap_or("");
    match code {
        "invalid_client" => {
            "; the client was not recognised: check auth.client_id and auth.client_secret, \
             and auth.client_auth (\"basic\" or \"body\") for this provider"
        }
        "invalid_scope" => "; check auth.scope",
        "unauthorized_client" => {
            "; this client may not use the client credentials grant: enable it at the provider"
        }
        "invalid_request" | "invalid_grant" | "unsupported_grant_type" => {
            "; the provider refused the request: check auth.params and auth.client_auth"
        }
        _ => "; check auth.token_url, auth.client_id and auth.client_secret",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn oauth(client_auth: ClientAuth) -> OAuth2 {
        let url = url::Url::parse("https://idp.example.com/token").unwrap();
        OAuth2 {
            token_url: crate::config::WebhookUrl::for_tests(url),
            client_id: "relay id".into(),
            client_id_shown: "relay id".into(),
            client_secret: Secret::new("s3cret&=".into()),
            scope: Some("events.write".into()),
            params: BTreeMap::from([("audience".into(), Secret::new("https://api".into()))]),
            client_auth,
        }
    }

    #[test]
    fn the_form_carries_the_grant_scope_params_and_body_credentials_only_when_asked() {
        assert_eq!(
            form(&oauth(ClientAuth::Basic)),
            "grant_type=client_credentials&scope=events.write&audience=https%3A%2F%2Fapi"
        );
        assert_eq!(
            form(&oauth(ClientAuth::Body)),
            "grant_type=client_credentials&scope=events.write&audience=https%3A%2F%2Fapi\
             &client_id=relay+id&client_secret=s3cret%26%3D"
        );
    }

    fn answer(status: u16, body: &str) -> ResponseInfo {
        ResponseInfo {
            status,
            headers: Vec::new(),
            body: body.into(),
            truncated: false,
        }
    }

    #[test]
    fn refusals_quote_the_oauth_error_and_are_classified() {
        let redactor = Redactor::new(["s3cret-value"]);
        let e = refusal(
            &answer(
                401,
                r#"{"error":"invalid_client","error_description":"bad s3cret-value"}"#,
            ),
            &redactor,
        );
        assert_eq!(e.class(), FailureClass::TokenRefused);
        let text = e.to_string();
        assert!(
            text.starts_with("oauth2 token endpoint: http 401: invalid_client: bad ***; "),
            "{text}"
        );
        let e = refusal(&answer(503, ""), &redactor);
        assert_eq!(e.class(), FailureClass::TokenUnavailable);
        assert_eq!(
            e.to_string(),
            "oauth2 token endpoint: http 503 (transient; retried)"
        );
        let e = granted(&answer(200, "<html>"), 1, &redactor).unwrap_err();
        assert_eq!(e.class(), FailureClass::TokenRefused);
        let token = granted(
            &answer(200, r#"{"access_token":"t0k","expires_in":60}"#),
            7,
            &redactor,
        )
        .unwrap();
        assert_eq!((token.generation, token.header.is_sensitive()), (7, true));
        assert!(token.fresh());
    }

    #[test]
    fn an_invalid_client_says_what_to_check() {
        let hint = refusal_hint("invalid_client: bad secret", FailureClass::TokenRefused);
        assert!(hint.contains("auth.client_secret"), "{hint}");
        assert!(refusal_hint("invalid_scope", FailureClass::TokenRefused).contains("scope"));
        assert!(refusal_hint("oops", FailureClass::TokenUnavailable).contains("retried"));
    }

    #[test]
    fn any_expires_in_is_taken_within_bounds() {
        let redactor = Redactor::default();
        let huge = granted(
            &answer(
                200,
                r#"{"access_token":"t","expires_in":18446744073709551615}"#,
            ),
            1,
            &redactor,
        )
        .expect("a huge lifetime is clamped, not an overflow");
        let refresh_at = huge.refresh_at.unwrap();
        assert!(refresh_at <= Instant::now() + Duration::from_secs(MAX_LIFETIME_SECS));
        let zero = granted(
            &answer(200, r#"{"access_token":"t","expires_in":0}"#),
            1,
            &redactor,
        )
        .unwrap();
        assert!(zero.fresh(), "kept at least {MIN_LIFETIME_SECS} s");
    }

    #[test]
    fn the_identity_changes_with_the_target_origin_and_every_setting() {
        let target = url::Url::parse("https://api.example.com/hook?x=1").unwrap();
        let base = identity(&target, &oauth(ClientAuth::Basic));
        let same_origin = url::Url::parse("https://api.example.com/other").unwrap();
        assert_eq!(identity(&same_origin, &oauth(ClientAuth::Basic)), base);
        let elsewhere = url::Url::parse("https://evil.example.com/hook").unwrap();
        assert_ne!(identity(&elsewhere, &oauth(ClientAuth::Basic)), base);
        assert_ne!(identity(&target, &oauth(ClientAuth::Body)), base);
        let mut secret = oauth(ClientAuth::Basic);
        secret.client_secret = Secret::new("another".into());
        assert_ne!(identity(&target, &secret), base);
        let mut scope = oauth(ClientAuth::Basic);
        scope.scope = None;
        assert_ne!(identity(&target, &scope), base);
    }
}
