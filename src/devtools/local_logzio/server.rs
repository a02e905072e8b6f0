//! The accept loop and one connection: TLS handshake, then HTTP/1.1 with keep-alive.

use super::request::handle;
use super::state::Shared;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// How long a client may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may take to send a request's headers (also bounds idle keep-alive).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after a failed `accept` (for example too many open files), so the loop doesn't spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections until told to stop, then closes every connection.
pub(super) async fn accept_loop(
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
