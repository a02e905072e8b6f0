//! Retry classification: the one place that decides whether a failed attempt is worth
//! another try. Every class has a unit test below.

use std::error::Error as _;
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

/// The verdict for an HTTP status. 2xx succeed; 408, 429 and 5xx are retried (honouring
/// `Retry-After`); every other status, redirects included (they are never followed, so a
/// token in the URL cannot travel to another host), is permanent.
pub fn classify_status(status: u16, retry_after: Option<&str>, now: SystemTime) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        408 | 429 | 500..=599 => Verdict::Retry {
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        _ => Verdict::Permanent,
    }
}

/// The verdict for a failure class. Network, TLS and timeout failures are retried; a request
/// that cannot be built is permanent.
pub fn classify_failure(class: FailureClass) -> Verdict {
    match class {
        FailureClass::Status(status) => classify_status(status, None, SystemTime::now()),
        FailureClass::Builder => Verdict::Permanent,
        FailureClass::Dns
        | FailureClass::Connect
        | FailureClass::Tls
        | FailureClass::Timeout
        | FailureClass::Request => Verdict::Retry { retry_after: None },
    }
}

/// Which class a transport error from reqwest belongs to.
pub fn class_of(err: &reqwest::Error) -> FailureClass {
    if err.is_builder() {
        return FailureClass::Builder;
    }
    if err.is_timeout() {
        return FailureClass::Timeout;
    }
    let chain = error_chain(err).to_ascii_lowercase();
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

/// The error and every source below it, joined with `: `, without the request URL.
/// The caller still scrubs the result: a source may quote anything.
pub fn error_chain(err: &reqwest::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_064_800)
    }

    #[test]
    fn success_is_any_2xx() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(classify_status(s, None, now()), Verdict::Success, "{s}");
        }
    }

    #[test]
    fn server_errors_are_retried() {
        for s in [500, 502, 503, 504, 599] {
            assert_eq!(
                classify_status(s, None, now()),
                Verdict::Retry { retry_after: None },
                "{s}"
            );
        }
    }

    #[test]
    fn request_timeout_408_is_retried() {
        assert!(matches!(
            classify_status(408, None, now()),
            Verdict::Retry { .. }
        ));
    }

    #[test]
    fn too_many_requests_429_honours_retry_after_seconds() {
        assert_eq!(
            classify_status(429, Some("7"), now()),
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
            assert_eq!(classify_status(s, None, now()), Verdict::Permanent, "{s}");
        }
    }

    #[test]
    fn redirects_are_permanent_and_never_followed() {
        for s in [301, 302, 307, 308] {
            assert_eq!(classify_status(s, None, now()), Verdict::Permanent, "{s}");
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
            assert!(
                matches!(classify_failure(class), Verdict::Retry { .. }),
                "{class}"
            );
        }
    }

    #[test]
    fn unbuildable_request_is_permanent() {
        assert_eq!(classify_failure(FailureClass::Builder), Verdict::Permanent);
    }

    #[tokio::test]
    async fn connection_refused_is_a_connect_failure() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/?token=zzz"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(class_of(&err), FailureClass::Connect);
        assert!(!error_chain(&err).contains("zzz"), "{}", error_chain(&err));
    }
}
