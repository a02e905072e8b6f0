//! What delivery sends: a [`DeliveryRequest`] (a rendered body for one webhook) and the HTTP
//! request it becomes, with the webhook's headers and the ones the relay adds.

use super::signing::{self, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use crate::config::{Auth, Method, Webhook};
use crate::model::event::EventId;
use crate::pipeline::outcome::RetryState;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

/// `User-Agent` sent with every request.
pub const USER_AGENT: &str = concat!("webhook-relay/", env!("CARGO_PKG_VERSION"));
/// Header carrying the event identity.
pub const EVENT_ID_HEADER: &str = "x-relay-event-id";
/// Header carrying the number of events in a batch request.
pub const BATCH_SIZE_HEADER: &str = "x-relay-batch-size";
/// Header carrying the idempotency key (event identity + webhook name).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// One request to send: a rendered body for one webhook. Delivery's input is this, not an
/// event, so that a batcher can hand it a body of several lines.
#[derive(Debug, Clone)]
pub struct DeliveryRequest {
    /// The webhook to send to.
    pub webhook: Arc<Webhook>,
    /// The identity of the event the body was rendered from.
    pub event_id: EventId,
    /// The rendered body: one copy, shared by every attempt (cloning it only counts a
    /// reference). Always UTF-8, since it is built from a `String`.
    pub body: bytes::Bytes,
    /// Attempts made before this delivery came back from the retry queue, if it did.
    pub prior: Option<RetryState>,
    /// For an NDJSON batch: how many events its lines carry. `event_id` then identifies the
    /// batch, and the request carries `x-relay-batch-size` instead of `x-relay-event-id`.
    pub batch_size: Option<usize>,
}

impl DeliveryRequest {
    /// The body as text, for display.
    pub fn body_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// Stable across retries and redeliveries, distinct per event and webhook.
    pub fn idempotency_key(&self) -> String {
        header_safe(&format!("{}:{}", self.webhook.name, self.event_id))
    }

    /// Every header as sent, with secret values shown as `***`: the credential of
    /// `[webhook.auth]` as `Bearer ***` or `Basic ***`, each signature as `v1,***`, and the
    /// signing timestamp as `<attempt time>` (each attempt has its own).
    pub fn shown_headers(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .webhook
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.shown_value().to_string()))
            .collect();
        if let Some(auth) = &self.webhook.auth {
            let scheme = match auth {
                Auth::Basic { .. } => "Basic ***",
                Auth::Bearer { .. } | Auth::OAuth2(_) => "Bearer ***",
            };
            out.push(("Authorization".to_string(), scheme.to_string()));
        }
        out.extend(self.relay_headers());
        if let Some(signing) = &self.webhook.signing {
            out.push((WEBHOOK_ID.to_string(), self.idempotency_key()));
            out.push((WEBHOOK_TIMESTAMP.to_string(), "<attempt time>".to_string()));
            out.push((
                WEBHOOK_SIGNATURE.to_string(),
                signing::shown_signature(signing),
            ));
        }
        out
    }

    /// The headers the relay adds to every request.
    fn relay_headers(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("User-Agent".to_string(), USER_AGENT.to_string()),
            (IDEMPOTENCY_HEADER.to_string(), self.idempotency_key()),
        ];
        match self.batch_size {
            Some(n) => out.push((BATCH_SIZE_HEADER.to_string(), n.to_string())),
            None => out.push((EVENT_ID_HEADER.to_string(), header_safe(&self.event_id.0))),
        }
        out
    }

    /// The HTTP request on `client`, with the webhook's headers (`parsed`, when they were
    /// parsed up front), `authorization` (from `[webhook.auth]`), the relay's headers, the
    /// Standard Webhooks headers signed at `now` (Unix seconds) when the webhook signs, and the
    /// body.
    pub(super) fn build(
        &self,
        client: &reqwest::Client,
        parsed: Option<&HeaderMap>,
        authorization: Option<&HeaderValue>,
        now: u64,
    ) -> reqwest::RequestBuilder {
        let webhook = &self.webhook;
        let method = match webhook.method {
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Get => reqwest::Method::GET,
            Method::Delete => reqwest::Method::DELETE,
        };
        // The URL was parsed once at config load; the request takes a copy of the parsed
        // value, never its text (reqwest itself still derives its `http::Uri` from it).
        let mut builder = client
            .request(method, webhook.url.expose().clone())
            .timeout(webhook.delivery.timeout);
        match parsed {
            Some(map) => builder = builder.headers(map.clone()),
            // Not parseable up front: let reqwest report the bad header as a builder error.
            None => {
                for header in &webhook.headers {
                    builder = builder.header(header.name.as_str(), header.value.expose().as_str());
                }
            }
        }
        if let Some(value) = authorization {
            builder = builder.header(reqwest::header::AUTHORIZATION, value.clone());
        }
        for (name, value) in self.relay_headers() {
            builder = builder.header(name, value);
        }
        if let Some(signing) = &webhook.signing {
            let id = self.idempotency_key();
            let signature = signing::signature(signing, &id, now, &self.body);
            builder = builder
                .header(WEBHOOK_ID, id)
                .header(WEBHOOK_TIMESTAMP, now.to_string())
                .header(WEBHOOK_SIGNATURE, signature);
        }
        if !self.body.is_empty() {
            builder = builder.body(self.body.clone());
        }
        builder
    }
}

/// Percent-encodes what a header value cannot carry (anything but visible ASCII and space).
pub fn header_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `Authorization` value of a static `[webhook.auth]` (bearer or basic), marked
/// sensitive; `None` for OAuth2 (fetched per token) or no auth, or when it does not parse.
pub(super) fn static_authorization(webhook: &Webhook) -> Option<HeaderValue> {
    let text = match webhook.auth.as_ref()? {
        Auth::Bearer { token } => format!("Bearer {}", token.expose()),
        Auth::Basic { header, .. } => header.expose().clone(),
        Auth::OAuth2(_) => return None,
    };
    let mut value = HeaderValue::from_str(&text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// A webhook's headers as a ready header map (secret values marked sensitive), or `None` when
/// one does not parse.
pub(super) fn header_map(webhook: &Webhook) -> Option<HeaderMap> {
    let mut map = HeaderMap::with_capacity(webhook.headers.len());
    for header in &webhook.headers {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let mut value = HeaderValue::from_str(header.value.expose()).ok()?;
        value.set_sensitive(header.secret);
        map.append(name, value);
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, load};

    /// The request for webhook `extra` (TOML after `url`) from a loaded config.
    fn request(extra: &str) -> DeliveryRequest {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("relay.toml"), "").unwrap();
        std::fs::create_dir(dir.path().join("webhooks")).unwrap();
        let toml = format!(
            "[[webhook]]\nname = \"w\"\nurl = \"https://h/\"\nbody_template = '{{}}'\n{extra}"
        );
        std::fs::write(dir.path().join("webhooks/w.toml"), toml).unwrap();
        let env = Env::from_pairs([
            ("TOKEN", "bearer-token-1"),
            ("WHSEC", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
        ]);
        let config = load(dir.path(), &env).unwrap();
        DeliveryRequest {
            webhook: Arc::clone(&config.webhooks[0]),
            event_id: EventId("evt-1".into()),
            body: bytes::Bytes::from_static(b"{}"),
            prior: None,
            batch_size: None,
        }
    }

    #[test]
    fn signed_requests_carry_the_standard_webhooks_headers_and_auth() {
        crate::tls::install_crypto_provider();
        let request = request(
            "[webhook.auth]\ntype = \"bearer\"\ntoken = \"${TOKEN}\"\n\
             [webhook.signing]\nsecrets = [\"${WHSEC}\"]\n",
        );
        let auth = static_authorization(&request.webhook).unwrap();
        assert!(auth.is_sensitive());
        let built = request
            .build(&reqwest::Client::new(), None, Some(&auth), 1649367553)
            .build()
            .unwrap();
        let header = |name: &str| built.headers()[name].to_str().unwrap().to_string();
        assert_eq!(header("authorization"), "Bearer bearer-token-1");
        assert_eq!(header(WEBHOOK_ID), "w:evt-1");
        assert_eq!(header(WEBHOOK_ID), header(IDEMPOTENCY_HEADER));
        assert_eq!(header(WEBHOOK_TIMESTAMP), "1649367553");
        let signing = request.webhook.signing.as_ref().unwrap();
        assert_eq!(
            header(WEBHOOK_SIGNATURE),
            signing::signature(signing, "w:evt-1", 1649367553, b"{}")
        );

        let shown = request.shown_headers();
        let shown = |name: &str| {
            shown
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(shown("authorization").as_deref(), Some("Bearer ***"));
        assert_eq!(shown(WEBHOOK_SIGNATURE).as_deref(), Some("v1,***"));
        assert_eq!(shown(WEBHOOK_ID).as_deref(), Some("w:evt-1"));
    }

    #[test]
    fn unsigned_requests_without_auth_carry_neither() {
        crate::tls::install_crypto_provider();
        let request = request("");
        assert!(static_authorization(&request.webhook).is_none());
        let built = request
            .build(&reqwest::Client::new(), None, None, 1)
            .build()
            .unwrap();
        for name in [
            "authorization",
            WEBHOOK_ID,
            WEBHOOK_SIGNATURE,
            WEBHOOK_TIMESTAMP,
        ] {
            assert!(!built.headers().contains_key(name), "{name}");
        }
        assert_eq!(built.method(), reqwest::Method::POST);
    }
}
