//! The HTTP/1.1 server loop: hyper with Title-Case header names (some NGSI-LD clients compare
//! header names case-sensitively), keep-alive, and graceful shutdown that drains in-flight
//! requests.
//!
//! No client can hold more than its share: a connection must deliver a request's complete header
//! within the header timeout of becoming ready for one (right after connecting, or after the
//! previous response), so slow senders and idle keep-alive connections are closed alike; and at
//! most `max_connections` are open at once: beyond that a new connection is answered 503 with
//! `Retry-After` and closed, so the listener keeps accepting and `/health` keeps answering.
//!
//! A new connection costs next to nothing until its first request's header is complete: the
//! server reads the header itself into a buffer the size of what arrived, and only then hands
//! the connection (with those bytes put back in front) to hyper, whose buffers take some 18 KB a
//! connection. Thousands of idle or slowloris connections thus hold a few MB, not hundreds.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// What one server lets its clients hold.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time a connection has to send a request's complete header once it is ready for one.
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits { max_connections: 10_000, header_timeout: Duration::from_secs(20) }
    }
}

/// What a connection over the limit is told before it is closed.
fn overloaded() -> Vec<u8> {
    let body = serde_json::json!({
        "type": "https://uri.etsi.org/ngsi-ld/errors/InternalError",
        "title": "Service unavailable",
        "status": 503,
        "detail": "too many open connections; try again",
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let overloaded: Arc<[u8]> = overloaded().into();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            conn = listener.accept() => match conn {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to be closed.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let answer = overloaded.clone();
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&answer)).await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let watcher = graceful.watcher();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let mut stream = stream;
            let Some(head) = read_head(&mut stream, header_timeout).await else { return };
            let service = TowerToHyperService::new(router);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .title_case_headers(true)
                .keep_alive(true)
                .serve_connection(TokioIo::new(Prefixed { head, at: 0, stream }), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    tracing::info!("draining open connections");
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {} s (streams); stopping anyway", DRAIN.as_secs());
    }
    Ok(())
}

/// How long a shutdown waits for open requests (a stream never ends by itself).
const DRAIN: Duration = Duration::from_secs(10);

/// Largest request header read before hyper takes over (hyper then refuses a larger one).
const MAX_HEAD: usize = 64 << 10;

/// Reads from `stream` until a request header is complete (a blank line), or `MAX_HEAD` bytes
/// arrived; `None` when the client closes, fails or is too slow (`timeout`), and the connection
/// is then dropped. The buffer grows only with what arrives.
async fn read_head(stream: &mut TcpStream, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut head = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        tokio::time::timeout_at(deadline, stream.readable()).await.ok()?.ok()?;
        match stream.try_read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => {
                let from = head.len().saturating_sub(3);
                head.extend_from_slice(&chunk[..n]);
                if head_complete(&head[from..]) || head.len() >= MAX_HEAD {
                    return Some(head);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    }
}

/// Whether `bytes` hold the blank line that ends a request header (`\r\n\r\n`, or the bare
/// `\n\n` HTTP parsers also take).
fn head_complete(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == b"\r\n\r\n") || bytes.windows(2).any(|w| w == b"\n\n")
}

/// A connection whose first bytes were already read: they are read again first.
struct Prefixed {
    head: Vec<u8>,
    at: usize,
    stream: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.at);
            buf.put_slice(&this.head[this.at..this.at + n]);
            this.at += n;
            if this.at == this.head.len() {
                this.head = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_overload_answer_is_well_formed() {
        let answer = super::overloaded();
        let text = std::str::from_utf8(&answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
        assert_eq!(length, body.len());
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 503);
    }

    #[test]
    fn a_head_ends_at_a_blank_line() {
        assert!(super::head_complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(super::head_complete(b"GET / HTTP/1.1\nHost: x\n\n"));
        assert!(!super::head_complete(b"GET / HTTP/1.1\r\nHost: x\r\n"));
    }

    /// What was read ahead is read again, then the rest of the connection.
    #[tokio::test]
    async fn prefixed_connections_replay_their_head() {
        use std::time::Duration;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            c.write_all(b"Host: x\r\n\r\nbody").await.unwrap();
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        let head = super::read_head(&mut stream, Duration::from_secs(5)).await.unwrap();
        client.await.unwrap();
        let mut all = Vec::new();
        let mut io = super::Prefixed { head, at: 0, stream };
        io.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody");
    }
}
