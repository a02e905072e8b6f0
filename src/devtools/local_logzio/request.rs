//! One request: its body read with a limit, the answer decided, the request recorded, then
//! the answer sent after any delay or hang.

use super::answer::{build_response, normal_answer, scripted_answer};
use super::state::Shared;
use super::{MAX_BODY_BYTES, Received};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, HeaderMap};
use hyper::{Request, Response};
use std::time::Instant;

/// How much of an oversized body is read and thrown away before answering `413`. Draining lets
/// the client finish sending and read the answer, instead of getting a connection reset; past
/// this the connection is just closed.
const DRAIN_LIMIT_BYTES: usize = 4 * MAX_BODY_BYTES;

/// A request body, read with a limit.
pub(super) enum Body {
    /// The whole body, at most [`MAX_BODY_BYTES`].
    Complete(Vec<u8>),
    /// Over [`MAX_BODY_BYTES`].
    TooLarge,
    /// The body could not be read (the client went away or sent bad framing).
    Unreadable,
}

/// Reads a body, keeping at most [`MAX_BODY_BYTES`] and draining (not keeping) up to
/// [`DRAIN_LIMIT_BYTES`] of a larger one.
async fn read_body(declared_len: Option<u64>, mut body: Incoming) -> Body {
    if declared_len.is_some_and(|len| len > DRAIN_LIMIT_BYTES as u64) {
        return Body::TooLarge;
    }
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Body::Unreadable;
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > DRAIN_LIMIT_BYTES {
            return Body::TooLarge;
        } else if total > MAX_BODY_BYTES {
            kept = Vec::new();
        } else {
            kept.extend_from_slice(&data);
        }
    }
    if total > MAX_BODY_BYTES {
        Body::TooLarge
    } else {
        Body::Complete(kept)
    }
}

/// Answers one request: decides, records, waits for delay and hang, then sends.
pub(super) async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    // Read the body whatever the answer: answering before the client has sent it all would
    // reset the connection under the client and hide the answer.
    let body = read_body(declared_len(&parts.headers), body).await;

    let query = parts.uri.query().unwrap_or_default().to_owned();
    let scripted = shared.record().scripted.pop_front();
    let answer = match scripted {
        Some(scripted) => scripted_answer(scripted, &body),
        None => normal_answer(&shared.token, &query, &body),
    };
    tracing::debug!(
        method = %parts.method,
        path = %parts.uri.path(),
        status = answer.status,
        accepted_lines = answer.accepted.len(),
        "local logzio: answering"
    );
    let received = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query,
        headers: header_pairs(&parts.headers),
        body: match body {
            Body::Complete(bytes) => bytes,
            Body::TooLarge | Body::Unreadable => Vec::new(),
        },
        status: answer.status,
        accepted_lines: answer.accepted.clone(),
        at,
    };
    shared.keep(received);

    let delay = shared.delay() + answer.extra_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // Withheld until hang is off; the connection task is dropped (and this with it) when the
    // client goes away or the listener stops.
    let mut hang = shared.hang.subscribe();
    let _ = hang.wait_for(|hang| !*hang).await;

    build_response(answer)
}

/// The `Content-Length` the client declared, if it is a number.
fn declared_len(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
}

/// The headers in order, values decoded lossily as UTF-8.
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect()
}
