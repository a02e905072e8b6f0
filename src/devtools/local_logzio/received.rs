//! What the listener recorded of each request.

use serde_json::Value;
use std::fmt;
use std::time::Instant;

/// One request as the listener saw it, with the status it decided to answer.
#[derive(Clone)]
pub struct Received {
    /// The HTTP method, for example `POST`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string (empty when there is none). It holds the token: never log it.
    pub query: String,
    /// The request headers in order, values decoded lossily as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The request body; empty when it was over
    /// [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) or could not be read.
    pub body: Vec<u8>,
    /// The status decided for the answer. Under
    /// [`LocalLogzio::set_hang`](super::LocalLogzio::set_hang) or
    /// [`LocalLogzio::set_delay`](super::LocalLogzio::set_delay) the client may have given up
    /// before it was sent.
    pub status: u16,
    /// The lines this request got accepted (also part of
    /// [`LocalLogzio::accepted`](super::LocalLogzio::accepted)).
    pub accepted_lines: Vec<Value>,
    /// When the request's headers arrived.
    pub at: Instant,
}

impl Received {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The decoded value of the first query parameter named `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(&self.query, name)
    }
}

impl fmt::Debug for Received {
    // The query holds the token and some headers hold credentials: keep them out of test
    // output and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let value = if is_sensitive_header(name) {
                    "<redacted>"
                } else {
                    value.as_str()
                };
                (name.as_str(), value)
            })
            .collect();
        f.debug_struct("Received")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &"<redacted>")
            .field("headers", &headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("status", &self.status)
            .field("accepted_lines", &self.accepted_lines)
            .field("at", &self.at)
            .finish()
    }
}

/// Whether a header's value is a credential that [`Received`]'s `Debug` must hide.
fn is_sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "authorization"
        || name == "proxy-authorization"
        || name == "cookie"
        || name.contains("token")
        || name.contains("api-key")
        || name.contains("secret")
}

/// The first value of the query parameter `name`, URL-decoded.
pub(super) fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}
