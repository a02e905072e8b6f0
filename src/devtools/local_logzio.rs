//! A loopback HTTPS listener that answers like Logz.io's HTTP listener, for the built-in demo
//! and the tests.
//!
//! [`LocalLogzio::start`] binds `127.0.0.1:0`, presents a certificate from a fresh
//! [`DevCert`] (clients trust [`LocalLogzio::ca_pem`]) and serves HTTP/1.1 with keep-alive.
//! For any method and path it behaves like the real listener:
//!
//! - the token comes from the `token` query parameter; missing or wrong → `401`;
//! - a body over [`MAX_BODY_BYTES`] → `413`;
//! - otherwise the body is split into NDJSON lines. Every line must be a JSON object of at most
//!   [`MAX_LINE_BYTES`] bytes. If every line is good → `200` with an empty body; if any is bad →
//!   `400` with a JSON body of [`LineCounts`]. The good lines are accepted either way, as the
//!   real listener does.
//!
//! Every request is recorded as a [`Received`], and every accepted line is kept, in arrival
//! order. Tests can script answers ([`LocalLogzio::push_response`]), withhold answers
//! ([`LocalLogzio::set_hang`]) or slow every answer ([`LocalLogzio::set_delay`]).
//!
//! The query string holds the token, so it is never logged.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::config::MAX_LINE_BYTES;
use crate::devtools::devcert::{DevCert, DevCertError};

/// The largest request body the listener takes: 10 MB. A larger body gets `413`.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// How much of an oversized body is read and thrown away before answering `413`. Draining lets
/// the client finish sending and read the answer, instead of getting a connection reset; past
/// this the connection is just closed.
const DRAIN_LIMIT_BYTES: usize = 4 * MAX_BODY_BYTES;

/// How long a client may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may take to send a request's headers (also bounds idle keep-alive).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after a failed `accept` (for example too many open files), so the loop doesn't spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Why a [`LocalLogzio`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalLogzioError {
    /// The throwaway certificate could not be made.
    #[error("local logzio: making the certificate")]
    Cert(#[source] DevCertError),
    /// Binding the listening address failed.
    #[error("local logzio: cannot bind the listening address")]
    Bind(#[source] std::io::Error),
}

/// The line counts of a `400` answer, serialized as the real listener does:
/// `{"malformedLines": n, "successfulLines": n, "oversizedLines": n, "emptyLogLines": n}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineCounts {
    /// Lines that are not a JSON object.
    pub malformed_lines: u64,
    /// Lines that were accepted.
    pub successful_lines: u64,
    /// Lines longer than [`MAX_LINE_BYTES`].
    pub oversized_lines: u64,
    /// Lines that are empty or only whitespace.
    pub empty_log_lines: u64,
}

impl LineCounts {
    /// Counts the NDJSON lines of `body` and returns the accepted ones (JSON objects of at most
    /// [`MAX_LINE_BYTES`]) in order.
    ///
    /// Lines end at `\n` (a `\r` before it is dropped). A final `\n` ends the last line; it does
    /// not start an empty one, so `"{}\n"` is one good line and an empty body has no lines.
    pub fn parse(body: &[u8]) -> (LineCounts, Vec<Value>) {
        let mut counts = LineCounts::default();
        let mut accepted = Vec::new();
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        if body.is_empty() {
            return (counts, accepted);
        }
        for line in body.split(|byte| *byte == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > MAX_LINE_BYTES {
                counts.oversized_lines += 1;
            } else if line.iter().all(u8::is_ascii_whitespace) {
                counts.empty_log_lines += 1;
            } else {
                match serde_json::from_slice::<Value>(line) {
                    Ok(value @ Value::Object(_)) => {
                        counts.successful_lines += 1;
                        accepted.push(value);
                    }
                    _ => counts.malformed_lines += 1,
                }
            }
        }
        (counts, accepted)
    }

    /// Whether every line was accepted (no malformed, oversized or empty line).
    pub fn all_good(&self) -> bool {
        self.malformed_lines == 0 && self.oversized_lines == 0 && self.empty_log_lines == 0
    }
}

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
    /// The request body; empty when it was over [`MAX_BODY_BYTES`] or could not be read.
    pub body: Vec<u8>,
    /// The status decided for the answer. Under [`LocalLogzio::set_hang`] or
    /// [`LocalLogzio::set_delay`] the client may have given up before it was sent.
    pub status: u16,
    /// The lines this request got accepted (also part of [`LocalLogzio::accepted`]).
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

/// A scripted answer, used for one request instead of the normal behaviour
/// (see [`LocalLogzio::push_response`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scripted {
    /// The status to answer. One that is not a valid HTTP status (outside 100..=999) is sent
    /// as `500`.
    pub status: u16,
    /// Headers to send, for example `("Retry-After", "1")`. Invalid names or values are skipped.
    pub headers: Vec<(String, String)>,
    /// The body to send.
    pub body: String,
    /// How long to wait before answering, on top of [`LocalLogzio::set_delay`].
    pub delay: Duration,
}

impl Scripted {
    /// An answer with `status`, no headers, an empty body and no delay.
    pub fn status(status: u16) -> Scripted {
        Scripted {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Scripted {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<String>) -> Scripted {
        self.body = body.into();
        self
    }

    /// Sets the delay before answering.
    pub fn with_delay(mut self, delay: Duration) -> Scripted {
        self.delay = delay;
        self
    }
}

/// What the listener has recorded, and the answers still scripted.
#[derive(Default)]
struct Record {
    requests: Vec<Received>,
    accepted: Vec<Value>,
    scripted: VecDeque<Scripted>,
}

/// State shared by the handle and every connection.
struct Shared {
    /// The token a request must carry.
    token: String,
    record: Mutex<Record>,
    /// Bumped after every recorded request, so waiters wake without polling.
    recorded: watch::Sender<u64>,
    /// While `true`, answers are withheld.
    hang: watch::Sender<bool>,
    /// Added before every answer.
    delay: Mutex<Duration>,
    /// TCP connections accepted so far.
    connections: AtomicU64,
}

impl Shared {
    fn record(&self) -> MutexGuard<'_, Record> {
        // A panicking test thread must not turn every later call into a panic.
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn delay(&self) -> Duration {
        *self.delay.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A loopback HTTPS server that answers like Logz.io's HTTP listener, and records what it got.
///
/// Dropping it, or [`shutdown`](Self::shutdown), stops the server and closes its connections.
pub struct LocalLogzio {
    addr: SocketAddr,
    ca_pem: String,
    shared: Arc<Shared>,
    /// Tells the accept loop to stop.
    stop: watch::Sender<bool>,
    /// The accept loop; taken by `shutdown`.
    server: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for LocalLogzio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLogzio")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl LocalLogzio {
    /// Starts a listener on `127.0.0.1` (an OS-chosen port) that accepts `token`, with a fresh
    /// certificate. The accept loop runs on the current tokio runtime.
    pub async fn start(token: &str) -> Result<LocalLogzio, LocalLogzioError> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), token, &[]).await
    }

    /// [`LocalLogzio::start`] on `addr`, with a certificate that also names `extra_names`
    /// (for `webhook-relay fake-logzio` in docker compose, where the worker calls it by its
    /// service name).
    pub async fn start_on(
        addr: SocketAddr,
        token: &str,
        extra_names: &[&str],
    ) -> Result<LocalLogzio, LocalLogzioError> {
        let cert = DevCert::generate_for(extra_names).map_err(LocalLogzioError::Cert)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(LocalLogzioError::Bind)?;
        let addr = listener.local_addr().map_err(LocalLogzioError::Bind)?;

        let shared = Arc::new(Shared {
            token: token.to_owned(),
            record: Mutex::new(Record::default()),
            recorded: watch::Sender::new(0),
            hang: watch::Sender::new(false),
            delay: Mutex::new(Duration::ZERO),
            connections: AtomicU64::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let acceptor = TlsAcceptor::from(cert.server_config());
        let server = tokio::spawn(accept_loop(
            listener,
            acceptor,
            Arc::clone(&shared),
            stopped,
        ));
        tracing::debug!(%addr, "local logzio: listening");

        Ok(LocalLogzio {
            addr,
            ca_pem: cert.ca_pem().to_owned(),
            shared,
            stop,
            server: Mutex::new(Some(server)),
        })
    }

    /// The address the listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// PEM of the CA that signed the listener's certificate: what a client must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A Logz.io-style URL for this listener:
    /// `https://127.0.0.1:PORT/?token=TOKEN&type=TYPE`, with both values URL-encoded.
    pub fn url_with_token(&self, token: &str, log_type: &str) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("type", log_type)
            .finish();
        format!("https://127.0.0.1:{}/?{query}", self.port())
    }

    /// [`url_with_token`](Self::url_with_token) with the token the listener accepts.
    pub fn url(&self, log_type: &str) -> String {
        self.url_with_token(&self.shared.token, log_type)
    }

    /// Every request recorded so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.record().requests.clone()
    }

    /// Every accepted line so far, in arrival order.
    pub fn accepted(&self) -> Vec<Value> {
        self.shared.record().accepted.clone()
    }

    /// Waits until at least `n` requests are recorded or `timeout` passes, and returns the
    /// requests recorded by then (possibly fewer than `n`).
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(timeout, |record| record.requests.len() >= n)
            .await;
        self.requests()
    }

    /// Waits until at least `n` lines are accepted or `timeout` passes, and returns the lines
    /// accepted by then (possibly fewer than `n`).
    pub async fn wait_for_accepted(&self, n: usize, timeout: Duration) -> Vec<Value> {
        self.wait_until(timeout, |record| record.accepted.len() >= n)
            .await;
        self.accepted()
    }

    /// Waits until `done` holds for the record or `timeout` passes.
    async fn wait_until(&self, timeout: Duration, done: impl Fn(&Record) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribing before checking means no recording between the check and the wait is
        // missed.
        let mut recorded = self.shared.recorded.subscribe();
        loop {
            if done(&self.shared.record()) {
                return;
            }
            match tokio::time::timeout_at(deadline, recorded.changed()).await {
                Ok(Ok(())) => continue,
                // Timed out (or the sender is gone, which can't happen while `self` lives).
                _ => return,
            }
        }
    }

    /// How many TCP connections the listener has accepted so far (each serves any number of
    /// requests with keep-alive).
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Forgets the recorded requests and accepted lines. Scripted answers, hang and delay are
    /// kept.
    pub fn clear(&self) {
        let mut record = self.shared.record();
        record.requests.clear();
        record.accepted.clear();
    }

    /// Queues a scripted answer. Queued answers are used one per request, in order, before the
    /// normal behaviour applies again (no token or body checks for them). A scripted `2xx`
    /// records the request's good lines as accepted; any other status records none.
    pub fn push_response(&self, scripted: Scripted) {
        self.shared.record().scripted.push_back(scripted);
    }

    /// While `on`, requests are read and recorded but their answers are withheld until hang is
    /// turned off, the client gives up, or the listener stops.
    pub fn set_hang(&self, on: bool) {
        self.shared.hang.send_replace(on);
    }

    /// Waits `delay` before every answer (a slow endpoint). `Duration::ZERO` turns it off.
    pub fn set_delay(&self, delay: Duration) {
        *self
            .shared
            .delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = delay;
    }

    /// Stops accepting, closes every connection (withheld answers are dropped) and waits until
    /// the port is released. The recorded requests stay readable. Calling it again does
    /// nothing.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let server = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(server) = server {
            // The loop ends on its own once told to stop; an error only means it was aborted.
            let _ = server.await;
        }
    }
}

impl Drop for LocalLogzio {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        // Aborting drops the loop's `JoinSet`, which aborts every connection task, even when
        // nobody awaits this.
        if let Some(server) = self
            .server
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            server.abort();
        }
    }
}

/// Accepts connections until told to stop, then closes every connection.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    // Owning the connection tasks here means stopping (or aborting) the loop ends them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // Only ever changes to `true`; an error means the handle is gone: stop too.
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    connections.spawn(serve_connection(
                        tcp,
                        acceptor.clone(),
                        Arc::clone(&shared),
                    ));
                }
                Err(error) => {
                    tracing::debug!(%error, "local logzio: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connections so the set doesn't grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
    tracing::debug!("local logzio: stopped");
}

/// Serves one connection: TLS handshake, then HTTP/1.1 with keep-alive.
async fn serve_connection(tcp: TcpStream, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, "local logzio: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("local logzio: TLS handshake timed out");
            return;
        }
    };
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&shared, request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "local logzio: connection ended with an error");
    }
}

/// A request body, read with a limit.
enum Body {
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

/// The first value of the query parameter `name`, URL-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// An answer that has been decided but not sent yet.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    accepted: Vec<Value>,
    extra_delay: Duration,
}

impl Answer {
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

/// Answers one request: decides, records, waits for delay and hang, then sends.
async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let declared_len = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    // Read the body whatever the answer: answering before the client has sent it all would
    // reset the connection under the client and hide the answer.
    let body = read_body(declared_len, body).await;

    let query = parts.uri.query().unwrap_or_default().to_owned();
    let scripted = shared.record().scripted.pop_front();
    let answer = match scripted {
        Some(scripted) => scripted_answer(scripted, &body),
        None => normal_answer(&shared.token, &query, &body),
    };

    let method = parts.method.to_string();
    let path = parts.uri.path().to_owned();
    tracing::debug!(
        %method,
        %path,
        status = answer.status,
        accepted_lines = answer.accepted.len(),
        "local logzio: answering"
    );
    let received = Received {
        method,
        path,
        query,
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
        body: match body {
            Body::Complete(bytes) => bytes,
            Body::TooLarge | Body::Unreadable => Vec::new(),
        },
        status: answer.status,
        accepted_lines: answer.accepted.clone(),
        at,
    };
    {
        let mut record = shared.record();
        record.accepted.extend(answer.accepted.iter().cloned());
        record.requests.push(received);
    }
    shared.recorded.send_modify(|count| *count += 1);

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

/// The answer to a request with no scripted answer: what the real listener would say.
fn normal_answer(token: &str, query: &str, body: &Body) -> Answer {
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
fn scripted_answer(scripted: Scripted, body: &Body) -> Answer {
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
fn build_response(answer: Answer) -> Response<Full<Bytes>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "test-token";
    const WAIT: Duration = Duration::from_secs(5);

    fn client(logzio: &LocalLogzio) -> reqwest::Client {
        crate::tls::install_crypto_provider();
        let ca = reqwest::Certificate::from_pem(logzio.ca_pem().as_bytes()).expect("CA PEM");
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    }

    async fn post(
        client: &reqwest::Client,
        url: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, String) {
        let response = client.post(url).body(body).send().await.expect("send");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    #[test]
    fn parse_counts_lines_like_the_real_listener() {
        let (counts, accepted) = LineCounts::parse(b"{\"a\":1}\nnot json\n\n[1]\r\n{\"b\":2}\r\n");
        assert_eq!(
            counts,
            LineCounts {
                malformed_lines: 2,
                successful_lines: 2,
                oversized_lines: 0,
                empty_log_lines: 1,
            }
        );
        assert_eq!(
            accepted,
            vec![serde_json::json!({"a": 1}), serde_json::json!({"b": 2})]
        );
        assert_eq!(LineCounts::parse(b"").0, LineCounts::default());
        assert_eq!(LineCounts::parse(b"{}").0.successful_lines, 1);
    }

    #[test]
    fn parse_counts_oversized_lines() {
        let long = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_LINE_BYTES));
        let body = format!("{long}\n{{}}\n");
        let (counts, accepted) = LineCounts::parse(body.as_bytes());
        assert_eq!(counts.oversized_lines, 1);
        assert_eq!(counts.successful_lines, 1);
        assert_eq!(accepted.len(), 1);
    }

    #[test]
    fn counts_serialize_with_the_real_field_names() {
        let json = serde_json::to_value(LineCounts {
            malformed_lines: 1,
            successful_lines: 2,
            oversized_lines: 3,
            empty_log_lines: 4,
        })
        .expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"malformedLines": 1, "successfulLines": 2, "oversizedLines": 3, "emptyLogLines": 4})
        );
    }

    #[tokio::test]
    async fn good_ndjson_gets_200_with_an_empty_body() {
        let logzio = LocalLogzio::start(TOKEN).await.expect("start");
        let client = client(&logzio);
        let (status, body) = post(&client, &logzio.url("access"), "{\"a\":1}\n{\"b\":2}\n").await;
        assert_eq!((status, body.as_str()), (200, ""));
        assert_eq!(
            logzio.accepted(),
            vec![serde_json::json!({"a": 1}), serde_json::json!({"b": 2})]
        );
        let requests = logzio.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].path, "/");
        assert_eq!(requests[0].query_param("type").as_deref(), Some("access"));
        assert_eq!(requests[0].status, 200);
        assert_eq!(requests[0].accepted_lines.len(), 2);
        assert!(!format!("{:?}", requests[0]).contains(TOKEN));
    }

    #[tokio::test]
    async fn a_wrong_or_missing_token_gets_401() {
        let logzio = LocalLogzio::start(TOKEN).await.expect("start");
        let client = client(&logzio);
        let (status, _) = post(&client, &logzio.url_with_token("wrong", "access"), "{}").await;
        assert_eq!(status, 401);
        let url = format!("https://127.0.0.1:{}/?type=access", logzio.port());
        let (status, _) = post(&client, &url, "{}").await;
        assert_eq!(status, 401);
        assert!(logzio.accepted().is_empty());
        assert_eq!(logzio.requests().len(), 2);
    }

    #[tokio::test]
    async fn bad_lines_get_400_with_counts_and_good_lines_are_accepted() {
        let logzio = LocalLogzio::start(TOKEN).await.expect("start");
        let client = client(&logzio);
        let (status, body) =
            post(&client, &logzio.url("access"), "{\"ok\":true}\n{broken\n\n").await;
        assert_eq!(status, 400);
        let counts: LineCounts = serde_json::from_str(&body).expect("counts JSON");
        assert_eq!(
            counts,
            LineCounts {
                malformed_lines: 1,
                successful_lines: 1,
                oversized_lines: 0,
                empty_log_lines: 1,
            }
        );
        assert_eq!(logzio.accepted(), vec![serde_json::json!({"ok": true})]);
    }

    #[tokio::test]
    async fn a_body_over_10_mb_gets_413() {
        let logzio = LocalLogzio::start(TOKEN).await.expect("start");
        let client = client(&logzio);
        let body = vec![b'x'; MAX_BODY_BYTES + 1];
        let (status, _) = post(&client, &logzio.url("access"), body).await;
        assert_eq!(status, 413);
        let requests = logzio.requests();
        assert_eq!(requests[0].status, 413);
        assert!(requests[0].body.is_empty());
        assert!(logzio.accepted().is_empty());
    }

    #[tokio::test]
    async fn scripted_answers_come_first_then_normal_behaviour() {
        let logzio = LocalLogzio::start(TOKEN).await.expect("start");
        let client = client(&logzio);
        logzio.push_response(Scripted::status(503));
        logzio.push_response(
            Scripted::status(429)
                .with_header("Retry-After", "1")
                .with_body("slow down"),
        );
        let url = logzio.url("access");
        let (status, _) = post(&client, &url, "{\"n\":1}").await;
        assert_eq!(status, 503);
        let response = client
            .post(&url)
            .body("{\"n\":2}")
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        assert_eq!(response.text().await.expect("body"), "slow down");
        let (status, _) = post(&client, &url, "{\"n\":3}").await;
        assert_eq!(status, 200);
        assert_eq!(logzio.accepted(), vec![serde_json::json!({"n": 3})]);
        let statuses: Vec<u16> = logzio.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![503, 429, 200]);
    }

    #[tokio::test]
    async fn hang_withholds_the_answer_until_released() {
        let logzio = LocalLogzio::start(TOKEN).await.expect("start");
        let client = client(&logzio);
        logzio.set_hang(true);
        let url = logzio.url("access");
        let pending = tokio::spawn({
            let client = client.clone();
            async move { post(&client, &url, "{}").await }
        });
        assert_eq!(logzio.wait_for_requests(1, WAIT).await.len(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!pending.is_finished(), "answered while hanging");
        logzio.set_hang(false);
        let (status, _) = tokio::time::timeout(WAIT, pending)
            .await
            .expect("released in time")
            .expect("task");
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn a_client_timeout_during_hang_is_a_timeout() {
        let logzio = LocalLogzio::start(TOKEN).await.expect("start");
        let client = client(&logzio);
        logzio.set_hang(true);
        let error = client
            .post(logzio.url("access"))
            .body("{}")
            .timeout(Duration::from_millis(300))
            .send()
            .await
            .expect_err("must time out");
        assert!(error.is_timeout(), "{error}");
        logzio.shutdown().await;
    }

    #[tokio::test]
    async fn delay_slows_every_answer() {
        let logzio = LocalLogzio::start(TOKEN).await.expect("start");
        let client = client(&logzio);
        logzio.set_delay(Duration::from_millis(300));
        let started = Instant::now();
        let (status, _) = post(&client, &logzio.url("access"), "{}").await;
        assert_eq!(status, 200);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn keep_alive_reuses_one_connection() {
        let logzio = LocalLogzio::start(TOKEN).await.expect("start");
        let client = client(&logzio);
        let url = logzio.url("access");
        for n in 0..3 {
            let (status, _) = post(&client, &url, format!("{{\"n\":{n}}}")).await;
            assert_eq!(status, 200);
        }
        assert_eq!(logzio.accepted().len(), 3);
        // One TLS connection carried all three: every request was answered by the same
        // connection task, so the listener saw exactly one accept.
        assert_eq!(logzio.connections_accepted(), 1);
    }

    #[tokio::test]
    async fn wait_for_returns_what_there_is_at_the_timeout() {
        let logzio = LocalLogzio::start(TOKEN).await.expect("start");
        let started = Instant::now();
        let requests = logzio
            .wait_for_requests(1, Duration::from_millis(100))
            .await;
        assert!(requests.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(logzio.wait_for_accepted(1, Duration::ZERO).await.is_empty());
    }

    #[tokio::test]
    async fn wait_for_accepted_wakes_on_arrival_and_clear_forgets() {
        let logzio = LocalLogzio::start(TOKEN).await.expect("start");
        let client = client(&logzio);
        let url = logzio.url("access");
        let sender = tokio::spawn({
            let client = client.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                post(&client, &url, "{\"a\":1}\n{\"a\":2}").await
            }
        });
        assert_eq!(logzio.wait_for_accepted(2, WAIT).await.len(), 2);
        sender.await.expect("task");
        logzio.clear();
        assert!(logzio.requests().is_empty());
        assert!(logzio.accepted().is_empty());
    }

    #[tokio::test]
    async fn shutdown_releases_the_port_and_keeps_the_record() {
        let logzio = LocalLogzio::start(TOKEN).await.expect("start");
        let client = client(&logzio);
        let (status, _) = post(&client, &logzio.url("access"), "{}").await;
        assert_eq!(status, 200);
        logzio.shutdown().await;
        logzio.shutdown().await;
        assert!(TcpStream::connect(logzio.addr()).await.is_err());
        assert_eq!(logzio.requests().len(), 1);
    }

    #[tokio::test]
    async fn url_with_token_encodes_the_values() {
        let logzio = LocalLogzio::start(TOKEN).await.expect("start");
        assert_eq!(
            logzio.url_with_token("a b&c", "access"),
            format!(
                "https://127.0.0.1:{}/?token=a+b%26c&type=access",
                logzio.port()
            )
        );
        assert_eq!(
            logzio.url("access"),
            format!(
                "https://127.0.0.1:{}/?token={TOKEN}&type=access",
                logzio.port()
            )
        );
    }
}
