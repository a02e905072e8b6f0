//! A loopback TCP proxy for integration tests: it forwards bytes both ways to an upstream and
//! can cut every connection at once ([`TcpProxy::sever`]) or turn new ones away
//! ([`TcpProxy::set_refusing`]). Used to break the worker's AMQP connection without disturbing
//! other tests that share the broker.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// State shared by the handle and the proxy's tasks.
struct Shared {
    upstream: SocketAddr,
    /// While `true`, new connections are accepted and closed at once.
    refusing: AtomicBool,
    /// Bumped by `sever`: every connection open at that moment closes.
    sever: watch::Sender<u64>,
    /// Connections forwarded since the start (refused ones not included).
    forwarded: AtomicUsize,
    /// Connections currently open.
    active: AtomicUsize,
    /// Connections turned away while refusing.
    refused: AtomicUsize,
}

/// A TCP proxy on `127.0.0.1` (OS-chosen port) in front of one upstream address.
///
/// Dropping it stops accepting and closes every connection.
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_loop: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts a proxy to `upstream`, listening on `127.0.0.1:0`. Must be called inside a tokio
    /// runtime; panics if the port can't be bound (test support).
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("tcp proxy: binding 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("tcp proxy: making the listener non-blocking");
        let listener = TcpListener::from_std(listener).expect("tcp proxy: registering listener");
        let addr = listener.local_addr().expect("tcp proxy: local address");
        let shared = Arc::new(Shared {
            upstream,
            refusing: AtomicBool::new(false),
            sever: watch::Sender::new(0),
            forwarded: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let accept_loop = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        TcpProxy {
            addr,
            shared,
            accept_loop,
        }
    }

    /// The address clients connect to instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every current connection at once, in both directions, with a reset (as a cut
    /// network would). New connections are still accepted and forwarded.
    pub fn sever(&self) {
        self.shared.sever.send_modify(|generation| *generation += 1);
    }

    /// While `on`, new connections are accepted and closed at once (the upstream looks down).
    /// Connections already open are not touched; call [`sever`](Self::sever) for that.
    pub fn set_refusing(&self, on: bool) {
        self.shared.refusing.store(on, Ordering::SeqCst);
    }

    /// How many connections have been forwarded since the start (refused ones not included).
    /// A client that reconnects after [`sever`](Self::sever) makes this grow.
    pub fn connection_count(&self) -> usize {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// How many forwarded connections are open now.
    pub fn active_count(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// How many connections were turned away while refusing.
    pub fn refused_count(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Waits until [`connection_count`](Self::connection_count) reaches `n` or `timeout`
    /// passes; returns whether it did.
    pub async fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.connection_count() < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // Aborting the loop drops its `JoinSet`, which aborts every connection task.
        self.accept_loop.abort();
    }
}

/// Accepts connections and spawns one forwarding task each.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _peer)) => {
                    if shared.refusing.load(Ordering::SeqCst) {
                        shared.refused.fetch_add(1, Ordering::SeqCst);
                        close_abruptly(client);
                        continue;
                    }
                    // Subscribe now, so a `sever` from here on closes this connection too.
                    let sever = shared.sever.subscribe();
                    shared.forwarded.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(forward(client, Arc::clone(&shared), sever));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            // Reap finished connections so the set doesn't grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Forwards one connection until either side closes or the proxy severs it.
async fn forward(mut client: TcpStream, shared: Arc<Shared>, mut sever: watch::Receiver<u64>) {
    let _active = ActiveGuard::new(&shared.active);
    let upstream = tokio::select! {
        upstream = TcpStream::connect(shared.upstream) => upstream,
        _ = sever.changed() => {
            close_abruptly(client);
            return;
        }
    };
    let Ok(mut upstream) = upstream else {
        close_abruptly(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = sever.changed() => {
            close_abruptly(client);
            close_abruptly(upstream);
        }
    }
}

/// Closes a stream with a reset rather than an orderly shutdown.
fn close_abruptly(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Counts a connection as active for as long as it lives.
struct ActiveGuard<'a>(&'a AtomicUsize);

impl<'a> ActiveGuard<'a> {
    fn new(active: &'a AtomicUsize) -> Self {
        active.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(active)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const WAIT: Duration = Duration::from_secs(5);

    /// An upstream that echoes every connection back.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn echo_once(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
        stream.write_all(bytes).await.expect("write");
        let mut buf = vec![0; bytes.len()];
        tokio::time::timeout(WAIT, stream.read_exact(&mut buf))
            .await
            .expect("echo in time")
            .expect("read");
        buf
    }

    /// Reads until the stream ends or fails; true if it did within `WAIT`.
    async fn closes(stream: &mut TcpStream) -> bool {
        let mut buf = [0; 64];
        matches!(
            tokio::time::timeout(WAIT, stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn proxy_forwards_severs_and_refuses() {
        let proxy = TcpProxy::start(echo_server().await);

        let mut first = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(echo_once(&mut first, b"hello").await, b"hello");
        assert_eq!(proxy.connection_count(), 1);
        assert_eq!(proxy.active_count(), 1);

        proxy.sever();
        assert!(closes(&mut first).await, "severed connection stayed open");

        // Still accepting after a sever.
        let mut second = TcpStream::connect(proxy.addr()).await.expect("reconnect");
        assert_eq!(echo_once(&mut second, b"again").await, b"again");
        assert_eq!(proxy.connection_count(), 2);

        proxy.set_refusing(true);
        let mut refused = TcpStream::connect(proxy.addr()).await.expect("tcp accept");
        assert!(closes(&mut refused).await, "refused connection stayed open");
        assert_eq!(proxy.refused_count(), 1);
        // The open connection is untouched by refusing.
        assert_eq!(echo_once(&mut second, b"still").await, b"still");

        proxy.set_refusing(false);
        let mut third = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(echo_once(&mut third, b"back").await, b"back");
        assert!(proxy.wait_for_connections(3, WAIT).await);
    }
}
