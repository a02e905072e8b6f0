//! What can go wrong in delivery, as values: building the client ([`DeliveryError`]) and one
//! attempt ([`AttemptError`], with Logz.io's [`LineCounts`] when a 400 answer carries them).
//! What each error means (retry or not) is decided in [`super::classify`], nowhere else.
//!
//! Secrets stay out of every text here: reqwest errors lose their URL (`without_url`) before
//! they are kept or printed, and an attempt's text passes the redactor when it is built.

use super::attempt::ResponseInfo;
use super::classify::FailureClass;
use crate::redact::Redactor;
use std::error::Error as _;
use std::fmt;

/// Building the HTTP client failed.
///
/// Each text ends with its source, URL-free, because the binary prints an error as one line
/// (`to_string`); `source()` still hands the reqwest error to whoever asks what it is. A
/// printer that walks the chain would show that tail twice: the tail goes once `main` prints
/// chains, as ripgrep's does.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The extra CA file holds something that is not a certificate.
    #[error("http.ca_file: {source}")]
    CaFile {
        /// reqwest's refusal, without a URL.
        #[source]
        source: reqwest::Error,
    },
    /// reqwest refused the client configuration.
    #[error("http client: {}", chain(.source))]
    Client {
        /// reqwest's refusal, without a URL.
        #[source]
        source: reqwest::Error,
    },
}

impl DeliveryError {
    /// `http.ca_file` does not hold certificates reqwest accepts.
    pub(super) fn ca_file(source: reqwest::Error) -> Self {
        DeliveryError::CaFile {
            source: source.without_url(),
        }
    }

    /// reqwest refused to build the client.
    pub(super) fn client(source: reqwest::Error) -> Self {
        DeliveryError::Client {
            source: source.without_url(),
        }
    }
}

/// Why one attempt failed. Its text is what the dead letter's `x-relay-last-error` header and
/// the logs show, scrubbed by the redactor when the error is built.
///
/// Neither variant keeps the reqwest error as a `source`: an error below reqwest may quote the
/// host or another part of the URL (a TLS name mismatch quotes the host), which only the
/// redactor masks, and a source would let any chain printer show it raw. So the chain is kept
/// as scrubbed text, and its [`FailureClass`] as a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    /// No answer came: the request could not be built, sent, or answered in time.
    #[error("{message}")]
    Transport {
        /// What kind of failure; never [`FailureClass::Status`].
        class: FailureClass,
        /// `<class>: <error chain>`, scrubbed as one line, so that a short secret standing
        /// alone after the class is masked like a header value.
        message: String,
    },
    /// The endpoint answered with a status that is not 2xx.
    #[error(fmt = status_line)]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the response body: scrubbed, then whitespace folded and cut to 200
        /// characters (scrubbed before it is cut: a secret cut in half is no longer found).
        snippet: String,
        /// Logz.io's line counts, when a 400 answer carries them.
        line_counts: Option<LineCounts>,
    },
    /// The OAuth2 token endpoint gave no token, so the webhook was not called.
    #[error("{message}")]
    Token {
        /// [`FailureClass::TokenRefused`] or [`FailureClass::TokenUnavailable`].
        class: FailureClass,
        /// `oauth2 token endpoint: …` with a hint, scrubbed.
        message: String,
    },
    /// A 2xx answer whose body failed the response validators.
    #[error(fmt = rejected_line)]
    Response {
        /// The 2xx status.
        status: u16,
        /// What failed: which path had which value, or why the body could not be read.
        mismatches: Vec<String>,
        /// Whether a failing validator asks for a retry (`retry_on_mismatch`).
        retryable: bool,
    },
}

/// `response rejected (http 200): $.data.status is "error", expected one of "ok"`.
fn rejected_line(
    status: &u16,
    mismatches: &[String],
    _: &bool,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    write!(
        f,
        "response rejected (http {status}): {}",
        mismatches.join("; ")
    )
}

/// How much of a response body an error text quotes, in characters.
const SNIPPET_CHARS: usize = 200;

impl AttemptError {
    /// A transport error from reqwest, its URL dropped and its text scrubbed.
    pub(super) fn transport(err: reqwest::Error, redactor: &Redactor) -> Self {
        let class = FailureClass::of_transport(&err);
        let err = err.without_url();
        AttemptError::Transport {
            class,
            message: redactor.scrub(&format!("{class}: {}", chain(&err))),
        }
    }

    /// A response whose status is not 2xx; its body is scrubbed before it is quoted.
    pub(super) fn status(response: &ResponseInfo, redactor: &Redactor) -> Self {
        let snippet = redactor
            .scrub(&response.body)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(SNIPPET_CHARS)
            .collect();
        AttemptError::Status {
            status: response.status,
            snippet,
            line_counts: match response.status {
                400 => LineCounts::parse(&response.body),
                _ => None,
            },
        }
    }

    /// The class of the failure: what went wrong, for the verdict and the troubleshooting hint.
    pub fn class(&self) -> FailureClass {
        match self {
            AttemptError::Transport { class, .. } => *class,
            AttemptError::Status { status, .. } => FailureClass::Status(*status),
            AttemptError::Token { class, .. } => *class,
            AttemptError::Response { retryable, .. } => FailureClass::ResponseMismatch {
                retryable: *retryable,
            },
        }
    }

    /// Whether the endpoint answered 2xx and the response validators refused the body.
    pub fn is_response_rejected(&self) -> bool {
        matches!(self, AttemptError::Response { .. })
    }

    /// The HTTP status, when the endpoint answered.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            AttemptError::Transport { .. } | AttemptError::Token { .. } => None,
            AttemptError::Status { status, .. } | AttemptError::Response { status, .. } => {
                Some(*status)
            }
        }
    }

    /// Logz.io's line counts, when this is a 400 answer that carries them.
    pub fn line_counts(&self) -> Option<LineCounts> {
        match self {
            AttemptError::Status { line_counts, .. } => *line_counts,
            AttemptError::Transport { .. }
            | AttemptError::Token { .. }
            | AttemptError::Response { .. } => None,
        }
    }
}

/// `http 401 Unauthorized: <snippet>`, or without the colon when the body is empty.
fn status_line(
    status: &u16,
    snippet: &str,
    _: &Option<LineCounts>,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    let reason = reqwest::StatusCode::from_u16(*status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    if snippet.is_empty() {
        f.write_str(format!("http {status} {reason}").trim_end())
    } else {
        write!(f, "http {status} {reason}: {snippet}")
    }
}

/// Logz.io's answer to a bulk request with bad lines: how many lines it kept and how many it
/// refused, by cause. It says how many, never which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCounts {
    /// `successfulLines`: lines it kept.
    pub successful: u64,
    /// `malformedLines`: lines that are not a JSON document.
    pub malformed: u64,
    /// `oversizedLines`: lines over its per-line limit.
    pub oversized: u64,
    /// `emptyLogLines`: empty lines.
    pub empty: u64,
}

impl LineCounts {
    /// The counts in an answer body: the JSON object between its first `{` and last `}`,
    /// which must hold `successfulLines`; a count it leaves out reads as 0.
    pub fn parse(body: &str) -> Option<Self> {
        let start = body.find('{')?;
        let end = body.rfind('}')?;
        let counts: serde_json::Value = serde_json::from_str(body.get(start..=end)?).ok()?;
        let count = |name: &str| counts.get(name).and_then(serde_json::Value::as_u64);
        Some(LineCounts {
            successful: count("successfulLines")?,
            malformed: count("malformedLines").unwrap_or(0),
            oversized: count("oversizedLines").unwrap_or(0),
            empty: count("emptyLogLines").unwrap_or(0),
        })
    }
}

/// The error and every source below it, joined with `: `, each text once, without the request
/// URL. The caller still scrubs the result: a source may quote anything.
pub(super) fn chain(err: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut top = err.to_string();
    if let Some(url) = err.url() {
        // reqwest's Display appends " for url (…)": drop it, the query may hold the token.
        top = top.replace(&format!(" for url ({url})"), "");
    }
    parts.push(top);
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> ResponseInfo {
        ResponseInfo {
            status,
            headers: Vec::new(),
            body: body.into(),
            truncated: false,
        }
    }

    #[test]
    fn a_status_error_quotes_the_reason_and_the_folded_body() {
        let redactor = Redactor::new(["hunter22"]);
        let e = AttemptError::status(&response(401, "bad\n  token hunter22\n"), &redactor);
        assert_eq!(e.to_string(), "http 401 Unauthorized: bad token ***");
        assert_eq!(e.class(), FailureClass::Status(401));
        assert_eq!(e.status_code(), Some(401));
        let e = AttemptError::status(&response(503, "  "), &redactor);
        assert_eq!(e.to_string(), "http 503 Service Unavailable");
        let e = AttemptError::status(&response(599, ""), &redactor);
        assert_eq!(e.to_string(), "http 599");
        let e = AttemptError::status(&response(500, &"x".repeat(500)), &redactor);
        assert_eq!(
            e.to_string(),
            format!(
                "http 500 Internal Server Error: {}",
                "x".repeat(SNIPPET_CHARS)
            )
        );
    }

    #[test]
    fn a_logzio_400_carries_its_line_counts() {
        let body =
            r#"{"malformedLines":1,"successfulLines":2,"oversizedLines":0,"emptyLogLines":3}"#;
        let e = AttemptError::status(&response(400, body), &Redactor::default());
        assert_eq!(
            e.line_counts(),
            Some(LineCounts {
                successful: 2,
                malformed: 1,
                oversized: 0,
                empty: 3
            })
        );
        assert_eq!(e.to_string(), format!("http 400 Bad Request: {body}"));
        // Only a 400 is read for counts, and only a body that holds them.
        let e = AttemptError::status(&response(413, body), &Redactor::default());
        assert_eq!(e.line_counts(), None);
        let e = AttemptError::status(&response(400, "bad request"), &Redactor::default());
        assert_eq!(e.line_counts(), None);
    }

    #[test]
    fn line_counts_need_successful_lines_only() {
        assert_eq!(
            LineCounts::parse(r#"{"successfulLines":0}"#),
            Some(LineCounts {
                successful: 0,
                malformed: 0,
                oversized: 0,
                empty: 0
            })
        );
        assert_eq!(LineCounts::parse(r#"{"malformedLines":1}"#), None);
        assert_eq!(LineCounts::parse(r#"{"successfulLines":"0"}"#), None);
        assert_eq!(LineCounts::parse("} {"), None);
        assert_eq!(
            LineCounts::parse(r#"refused: {"successfulLines":5} (see docs)"#).map(|c| c.successful),
            Some(5)
        );
    }

    #[tokio::test]
    async fn a_transport_error_is_scrubbed_and_has_no_url() {
        let err = super::super::refused_connection().await;
        let e = AttemptError::transport(err, &Redactor::new(["127.0.0.1"]));
        assert_eq!(e.class(), FailureClass::Connect);
        assert_eq!(e.status_code(), None);
        assert_eq!(e.line_counts(), None);
        let text = e.to_string();
        assert!(text.starts_with("connect: "), "{text}");
        assert!(
            !text.contains("zzz") && !text.contains("127.0.0.1"),
            "{text}"
        );
    }
}
