//! Classification: the one place that says what a delivery error means. A transport error
//! becomes a [`FailureClass`]; a status or a class becomes a [`Verdict`] (delivered, worth
//! another try, or permanent); a status or its absence becomes a [`StatusClass`] for metrics.
//! Every class has a unit test below.

use super::attempt::ResponseInfo;
use super::error::chain;
use std::fmt;
use std::time::{Duration, SystemTime};

/// What went wrong with an attempt; decides the verdict and the troubleshooting hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The host name did not resolve.
    Dns,
    /// TCP connect failed (refused, unreachable, reset during connect).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The attempt ran out of time (connect, request or response).
    Timeout,
    /// The endpoint answered with a non-2xx status.
    Status(u16),
    /// The request could not be sent for another reason (connection closed mid-request, …).
    Request,
    /// The request could not even be built (bad header value, …).
    Builder,
    /// The OAuth2 token endpoint refused the client or its grant (`invalid_client`, …), or
    /// answered without a token: the same every time.
    TokenRefused,
    /// The OAuth2 token endpoint could not give a token now (5xx, 408, 429, timeout,
    /// network): worth another try.
    TokenUnavailable,
    /// The endpoint answered 2xx but its body failed the response validators; retried only
    /// when a failing validator says `retry_on_mismatch`.
    ResponseMismatch {
        /// Whether a failing validator asks for a retry.
        retryable: bool,
    },
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureClass::Dns => f.write_str("dns"),
            FailureClass::Connect => f.write_str("connect"),
            FailureClass::Tls => f.write_str("tls"),
            FailureClass::Timeout => f.write_str("timeout"),
            FailureClass::Status(s) => write!(f, "http {s}"),
            FailureClass::Request => f.write_str("request"),
            FailureClass::Builder => f.write_str("builder"),
            FailureClass::TokenRefused => f.write_str("token refused"),
            FailureClass::TokenUnavailable => f.write_str("token unavailable"),
            FailureClass::ResponseMismatch { .. } => f.write_str("response rejected"),
        }
    }
}

impl FailureClass {
    /// The class of a transport error from reqwest (never [`FailureClass::Status`]).
    pub fn of_transport(err: &reqwest::Error) -> Self {
        if err.is_builder() {
            return FailureClass::Builder;
        }
        if err.is_timeout() {
            return FailureClass::Timeout;
        }
        let chain = chain(err).to_ascii_lowercase();
        if chain.contains("dns error") || chain.contains("failed to lookup address") {
            FailureClass::Dns
        } else if chain.contains("certificate")
            || chain.contains("tls")
            || chain.contains("handshake")
            || chain.contains("alert")
        {
            FailureClass::Tls
        } else if err.is_connect() {
            FailureClass::Connect
        } else {
            FailureClass::Request
        }
    }

    /// The class of a token endpoint's non-2xx answer: transient like a delivery's (408, 429,
    /// 5xx) or a refusal.
    pub fn of_token_status(status: u16) -> Self {
        match Verdict::of_status(status, None, SystemTime::now()) {
            Verdict::Retry { .. } => FailureClass::TokenUnavailable,
            Verdict::Success | Verdict::Permanent => FailureClass::TokenRefused,
        }
    }

    /// The verdict for this class. Network, TLS and timeout failures are retried; a request
    /// that cannot be built is permanent; a status is judged by [`Verdict::of_status`] (with no
    /// `Retry-After`). A token endpoint that is down is retried, one that refuses the client
    /// is not; a response the validators refuse is retried only when asked.
    pub fn verdict(self) -> Verdict {
        match self {
            FailureClass::Status(status) => Verdict::of_status(status, None, SystemTime::now()),
            FailureClass::Builder | FailureClass::TokenRefused => Verdict::Permanent,
            FailureClass::ResponseMismatch { retryable: false } => Verdict::Permanent,
            FailureClass::ResponseMismatch { retryable: true } | FailureClass::TokenUnavailable => {
                Verdict::Retry { retry_after: None }
            }
            FailureClass::Dns
            | FailureClass::Connect
            | FailureClass::Tls
            | FailureClass::Timeout
            | FailureClass::Request => Verdict::Retry { retry_after: None },
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered: a 2xx status.
    Success,
    /// Worth another attempt, no sooner than `retry_after` when the server said so.
    Retry {
        /// The server's `Retry-After`, uncapped.
        retry_after: Option<Duration>,
    },
    /// Will fail the same way every time: dead-letter now.
    Permanent,
}

impl Verdict {
    /// The verdict for an HTTP status. 2xx succeed; 408, 429 and 5xx are retried (honouring
    /// `Retry-After`, read at `now`); every other status, redirects included (they are never
    /// followed, so a token in the URL cannot travel to another host), is permanent.
    pub fn of_status(status: u16, retry_after: Option<&str>, now: SystemTime) -> Self {
        match status {
            200..=299 => Verdict::Success,
            408 | 429 | 500..=599 => Verdict::Retry {
                retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
            },
            _ => Verdict::Permanent,
        }
    }

    /// The verdict for a response: [`Verdict::of_status`] with its `Retry-After` header.
    pub fn of_response(response: &ResponseInfo, now: SystemTime) -> Self {
        Verdict::of_status(response.status, response.retry_after(), now)
    }

    /// Whether the attempt failed in a way worth another try: the endpoint is down or
    /// overloaded. This is what the circuit breaker counts.
    pub fn is_retryable(self) -> bool {
        matches!(self, Verdict::Retry { .. })
    }
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the past
/// means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An attempt's answer as the `status_class` metric label counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 1xx.
    Informational,
    /// 2xx.
    Success,
    /// 3xx.
    Redirect,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// No status: a transport error, or a status outside 100–599.
    Error,
}

impl StatusClass {
    /// Every class, in the order of the metric's series.
    pub const ALL: [StatusClass; 6] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirect,
        StatusClass::ClientError,
        StatusClass::ServerError,
        StatusClass::Error,
    ];

    /// The class of an attempt's status, `None` for a transport error.
    pub fn of(status: Option<u16>) -> Self {
        match status {
            Some(100..=199) => StatusClass::Informational,
            Some(200..=299) => StatusClass::Success,
            Some(300..=399) => StatusClass::Redirect,
            Some(400..=499) => StatusClass::ClientError,
            Some(500..=599) => StatusClass::ServerError,
            _ => StatusClass::Error,
        }
    }

    /// The label value: `1xx` … `5xx`, or `error`.
    pub fn label(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirect => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::Error => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_064_800)
    }

    #[test]
    fn success_is_any_2xx() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(Verdict::of_status(s, None, now()), Verdict::Success, "{s}");
        }
    }

    #[test]
    fn server_errors_are_retried() {
        for s in [500, 502, 503, 504, 599] {
            assert_eq!(
                Verdict::of_status(s, None, now()),
                Verdict::Retry { retry_after: None },
                "{s}"
            );
        }
    }

    #[test]
    fn request_timeout_408_is_retried() {
        assert!(matches!(
            Verdict::of_status(408, None, now()),
            Verdict::Retry { .. }
        ));
    }

    #[test]
    fn too_many_requests_429_honours_retry_after_seconds() {
        assert_eq!(
            Verdict::of_status(429, Some("7"), now()),
            Verdict::Retry {
                retry_after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn retry_after_http_date() {
        let later = httpdate::fmt_http_date(now() + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now()),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now() - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now()), None);
    }

    #[test]
    fn client_errors_are_permanent() {
        for s in [400, 401, 403, 404, 405, 409, 410, 413, 422] {
            assert_eq!(
                Verdict::of_status(s, None, now()),
                Verdict::Permanent,
                "{s}"
            );
        }
    }

    #[test]
    fn redirects_are_permanent_and_never_followed() {
        for s in [301, 302, 307, 308] {
            assert_eq!(
                Verdict::of_status(s, None, now()),
                Verdict::Permanent,
                "{s}"
            );
        }
    }

    #[test]
    fn transport_failures_are_retried() {
        for class in [
            FailureClass::Dns,
            FailureClass::Connect,
            FailureClass::Tls,
            FailureClass::Timeout,
            FailureClass::Request,
        ] {
            assert!(matches!(class.verdict(), Verdict::Retry { .. }), "{class}");
        }
    }

    #[test]
    fn unbuildable_request_is_permanent() {
        assert_eq!(FailureClass::Builder.verdict(), Verdict::Permanent);
    }

    #[test]
    fn a_token_endpoint_that_is_down_is_retried_one_that_refuses_is_not() {
        assert!(FailureClass::TokenUnavailable.verdict().is_retryable());
        assert_eq!(FailureClass::TokenRefused.verdict(), Verdict::Permanent);
    }

    #[test]
    fn a_response_mismatch_is_permanent_unless_asked() {
        let class = |retryable| FailureClass::ResponseMismatch { retryable };
        assert_eq!(class(false).verdict(), Verdict::Permanent);
        assert!(class(true).verdict().is_retryable());
    }

    #[test]
    fn token_endpoint_statuses_are_classified_like_delivery_statuses() {
        for (status, class) in [
            (500, FailureClass::TokenUnavailable),
            (503, FailureClass::TokenUnavailable),
            (429, FailureClass::TokenUnavailable),
            (408, FailureClass::TokenUnavailable),
            (400, FailureClass::TokenRefused),
            (401, FailureClass::TokenRefused),
            (403, FailureClass::TokenRefused),
            (302, FailureClass::TokenRefused),
        ] {
            assert_eq!(FailureClass::of_token_status(status), class, "{status}");
        }
    }

    #[test]
    fn a_status_class_is_judged_like_its_status() {
        assert_eq!(
            FailureClass::Status(503).verdict(),
            Verdict::Retry { retry_after: None }
        );
        assert_eq!(
            FailureClass::Status(429).verdict(),
            Verdict::Retry { retry_after: None }
        );
        assert_eq!(FailureClass::Status(401).verdict(), Verdict::Permanent);
        assert_eq!(FailureClass::Status(302).verdict(), Verdict::Permanent);
    }

    #[test]
    fn only_a_retry_verdict_is_retryable() {
        assert!(Verdict::Retry { retry_after: None }.is_retryable());
        assert!(
            Verdict::Retry {
                retry_after: Some(Duration::from_secs(1))
            }
            .is_retryable()
        );
        assert!(!Verdict::Success.is_retryable());
        assert!(!Verdict::Permanent.is_retryable(), "the endpoint is up");
    }

    #[test]
    fn status_classes_follow_the_first_digit() {
        let cases = [
            (Some(100), "1xx"),
            (Some(204), "2xx"),
            (Some(308), "3xx"),
            (Some(429), "4xx"),
            (Some(599), "5xx"),
            (Some(600), "error"),
            (Some(99), "error"),
            (None, "error"),
        ];
        for (status, label) in cases {
            assert_eq!(StatusClass::of(status).label(), label, "{status:?}");
        }
        let labels: Vec<_> = StatusClass::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(labels, ["1xx", "2xx", "3xx", "4xx", "5xx", "error"]);
    }

    #[tokio::test]
    async fn connection_refused_is_a_connect_failure() {
        let err = super::super::refused_connection().await;
        assert_eq!(FailureClass::of_transport(&err), FailureClass::Connect);
        assert!(!chain(&err).contains("zzz"), "{}", chain(&err));
    }
}
