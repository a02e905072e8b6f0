//! One try: send the request, keep the start of the answer, and classify it into an
//! [`Attempt`].

use super::classify::{FailureClass, Verdict};
use super::error::AttemptError;
use super::request::DeliveryRequest;
use super::validation::{self, Validation};
use crate::config::ResponseValidator;
use crate::redact::{Redactor, Secret};
use std::time::{Duration, SystemTime};

/// How much of a response body is kept for errors and invocation data.
pub const RESPONSE_BODY_LIMIT: usize = 4096;

/// The response of an attempt, as far as it is kept.
#[derive(Debug, Clone)]
pub struct ResponseInfo {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The first [`RESPONSE_BODY_LIMIT`] bytes of the body, lossily decoded.
    pub body: String,
    /// Whether the body was longer than what is kept.
    pub truncated: bool,
}

impl ResponseInfo {
    /// The `Retry-After` header, if the endpoint sent one.
    pub fn retry_after(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
            .map(|(_, v)| v.as_str())
    }
}

/// One try: what was received, how long it took and what it means.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// Time from sending to the end of the kept response.
    pub latency: Duration,
    /// The response, when one came.
    pub response: Option<ResponseInfo>,
    /// Why it failed; `None` when it succeeded.
    pub error: Option<AttemptError>,
    /// What to do next.
    pub verdict: Verdict,
    /// The response validators' verdicts on a 2xx answer (empty without validators or
    /// without a 2xx answer).
    pub validations: Vec<Validation>,
    /// The OAuth2 access token the attempt carried, if any: whatever shows its response
    /// (`test`, the console) masks it, since an endpoint may echo it back.
    pub token: Option<Secret<String>>,
}

impl Attempt {
    /// Attempt `number`, classified from what sending it returned after `latency`. Error texts
    /// pass `redactor`.
    pub(super) fn new(
        number: u32,
        latency: Duration,
        result: Result<ResponseInfo, reqwest::Error>,
        redactor: &Redactor,
    ) -> Self {
        let (response, error, verdict) = match result {
            Ok(response) => {
                let verdict = Verdict::of_response(&response, SystemTime::now());
                let error = (verdict != Verdict::Success)
                    .then(|| AttemptError::status(&response, redactor));
                (Some(response), error, verdict)
            }
            Err(err) => {
                let error = AttemptError::transport(err, redactor);
                let verdict = error.class().verdict();
                (None, Some(error), verdict)
            }
        };
        Attempt {
            number,
            latency,
            response,
            error,
            verdict,
            validations: Vec::new(),
            token: None,
        }
    }

    /// The same attempt, recording the OAuth2 token it carried.
    pub(super) fn carrying(mut self, token: Option<Secret<String>>) -> Self {
        self.token = token;
        self
    }

    /// An attempt that failed before reaching the webhook (no token), after `latency`.
    pub(super) fn failed(number: u32, latency: Duration, error: AttemptError) -> Self {
        let verdict = error.class().verdict();
        Attempt {
            number,
            latency,
            response: None,
            error: Some(error),
            verdict,
            validations: Vec::new(),
            token: None,
        }
    }

    /// The same attempt judged by `validators` too: a 2xx answer whose body fails one becomes
    /// a `response rejected` failure, permanent unless a failing validator says
    /// `retry_on_mismatch`. Other answers are left as they are.
    pub(super) fn validated(self, validators: &[ResponseValidator], redactor: &Redactor) -> Self {
        let Some(response) = self.response.as_ref() else {
            return self;
        };
        if validators.is_empty() || self.verdict != Verdict::Success {
            return self;
        }
        let (validations, mismatches) = validation::check(validators, response, redactor);
        if mismatches.is_empty() {
            return Attempt {
                validations,
                ..self
            };
        }
        let retryable = validations.iter().any(|v| !v.passed && v.retry_on_mismatch);
        let error = AttemptError::Response {
            status: response.status,
            mismatches,
            retryable,
        };
        Attempt {
            verdict: error.class().verdict(),
            error: Some(error),
            validations,
            ..self
        }
    }

    /// What failed, when it failed.
    pub fn failure(&self) -> Option<FailureClass> {
        self.error.as_ref().map(AttemptError::class)
    }

    /// The HTTP status, when a response came.
    pub fn status(&self) -> Option<u16> {
        self.response.as_ref().map(|r| r.status)
    }

    /// The failure as text, redacted; empty on success. What a dead letter's last error says.
    pub fn error_text(&self) -> String {
        self.error
            .as_ref()
            .map_or_else(String::new, ToString::to_string)
    }

    /// Logs the attempt at debug level.
    pub(super) fn log(&self, request: &DeliveryRequest) {
        tracing::debug!(
            event_id = %request.event_id,
            webhook = %request.webhook.name,
            attempt = self.number,
            status = self.status(),
            latency_ms = self.latency.as_millis() as u64,
            error = %self.error_text(),
            "delivery attempt"
        );
    }
}

/// Sends and keeps the first [`RESPONSE_BODY_LIMIT`] bytes of the response.
pub(super) async fn send_and_read(
    builder: reqwest::RequestBuilder,
) -> Result<ResponseInfo, reqwest::Error> {
    send_and_read_up_to(builder, RESPONSE_BODY_LIMIT).await
}

/// Sends and keeps the first `limit` bytes of the response (`truncated` says when more came).
pub(super) async fn send_and_read_up_to(
    builder: reqwest::RequestBuilder,
    limit: usize,
) -> Result<ResponseInfo, reqwest::Error> {
    let mut response = builder.send().await?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let mut truncated = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            // The status has arrived; a body cut short does not change what it means.
            Err(_) => break,
        }
    }
    Ok(ResponseInfo {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> ResponseInfo {
        ResponseInfo {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
            truncated: false,
        }
    }

    #[test]
    fn a_2xx_attempt_has_no_error() {
        let a = Attempt::new(
            1,
            Duration::ZERO,
            Ok(answer(204, &[], "")),
            &Redactor::default(),
        );
        assert_eq!(a.verdict, Verdict::Success);
        assert!(a.error.is_none() && a.failure().is_none());
        assert_eq!(a.error_text(), "");
        assert_eq!(a.status(), Some(204));
    }

    #[test]
    fn a_429_attempt_is_retried_after_what_the_endpoint_asked() {
        let response = answer(429, &[("Retry-After", "7")], "slow down");
        let a = Attempt::new(2, Duration::ZERO, Ok(response), &Redactor::default());
        assert_eq!(
            a.verdict,
            Verdict::Retry {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(a.failure(), Some(FailureClass::Status(429)));
        assert_eq!(a.error_text(), "http 429 Too Many Requests: slow down");
    }

    #[test]
    fn a_400_attempt_is_permanent_and_keeps_logzio_counts() {
        let body =
            r#"{"malformedLines":1,"successfulLines":0,"oversizedLines":0,"emptyLogLines":0}"#;
        let a = Attempt::new(
            1,
            Duration::ZERO,
            Ok(answer(400, &[], body)),
            &Redactor::default(),
        );
        assert_eq!(a.verdict, Verdict::Permanent);
        let counts = a.error.and_then(|e| e.line_counts()).unwrap();
        assert_eq!((counts.successful, counts.malformed), (0, 1));
    }
}
