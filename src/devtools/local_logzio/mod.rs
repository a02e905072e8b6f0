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
//!
//! # Layout
//! - this module: the handle ([`LocalLogzio`]): start, inspect, script, stop.
//! - `server`: the accept loop and one connection (TLS handshake, HTTP/1.1 keep-alive).
//! - `request`: one request: body read with a limit, answer decided, recorded, then sent.
//! - `answer`: what the real listener would answer, or a scripted answer, as a response.
//! - `lines`: the NDJSON line rules and their [`LineCounts`].
//! - `scripted`: the [`Scripted`] answers tests queue.
//! - `received`: the [`Received`] record of each request (its `Debug` hides credentials).
//! - `state`: what the handle shares with every connection.
//!
//! [`MAX_LINE_BYTES`]: crate::config::MAX_LINE_BYTES

mod answer;
mod lines;
mod received;
mod request;
mod scripted;
mod server;
mod state;

pub use lines::LineCounts;
pub use received::Received;
pub use scripted::Scripted;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::devtools::devcert::{DevCert, DevCertError};
use server::accept_loop;
use state::{Record, Shared};

/// The largest request body the listener takes: 10 MB. A larger body gets `413`.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

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

        let shared = Arc::new(Shared::new(token));
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
        self.shared.set_delay(delay);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::net::TcpStream;

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
