//! Deciding the answer to a request: what the real listener would say, or a scripted answer;
//! and turning it into a response.

use super::received::query_param;
use super::request::Body;
use super::{LineCounts, MAX_BODY_BYTES, Scripted};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// An answer that has been decided but not sent yet.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: String,
    /// The request's lines this answer accepts, to record.
    pub(super) accepted: Vec<Value>,
    /// A scripted delay, on top of the listener's.
    pub(super) extra_delay: Duration,
}

impl Answer {
    /// A plain-text answer that accepts nothing.
    fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: vec![(
                CONTENT_TYPE.to_string(),
                "text/plain; charset=utf-8".to_owned(),
            )],
            body: body.to_owned(),
            accepted: Vec::new(),
            extra_delay: Duration::ZERO,
        }
    }
}

/// The answer to a request with no scripted answer: what the real listener would say.
pub(super) fn normal_answer(token: &str, query: &str, body: &Body) -> Answer {
    if query_param(query, "token").as_deref() != Some(token) {
        return Answer::text(401, "token is missing or invalid");
    }
    let bytes = match body {
        Body::Complete(bytes) => bytes,
        Body::TooLarge => {
            return Answer::text(
                413,
                &format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            );
        }
        Body::Unreadable => return Answer::text(400, "request body could not be read"),
    };
    let (counts, accepted) = LineCounts::parse(bytes);
    if counts.all_good() {
        Answer {
            status: 200,
            headers: Vec::new(),
            body: String::new(),
            accepted,
            extra_delay: Duration::ZERO,
        }
    } else {
        Answer {
            status: 400,
            headers: vec![(CONTENT_TYPE.to_string(), "application/json".to_owned())],
            body: serde_json::to_string(&counts).unwrap_or_default(),
            accepted,
            extra_delay: Duration::ZERO,
        }
    }
}

/// The answer to a request that gets a scripted answer.
pub(super) fn scripted_answer(scripted: Scripted, body: &Body) -> Answer {
    let status = StatusCode::from_u16(scripted.status)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .as_u16();
    let accepted = match body {
        Body::Complete(bytes) if (200..300).contains(&status) => LineCounts::parse(bytes).1,
        _ => Vec::new(),
    };
    Answer {
        status,
        headers: scripted.headers,
        body: scripted.body,
        accepted,
        extra_delay: scripted.delay,
    }
}

/// Turns a decided answer into a response, skipping headers that are not valid HTTP.
pub(super) fn build_response(answer: Answer) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in answer.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(name), Ok(value)) => {
                response.headers_mut().append(name, value);
            }
            _ => tracing::debug!("local logzio: skipping an invalid scripted header"),
        }
    }
    response
}
