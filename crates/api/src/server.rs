//! The HTTP/1.1 server loop: hyper with Title-Case header names (some NGSI-LD clients compare
//! header names case-sensitively), keep-alive, and graceful shutdown that drains in-flight
//! requests.
//!
//! No client can hold more than its share: a connection must deliver a request's complete header
//! within the header timeout of becoming ready for one (right after connecting, or after the
//! previous response), so slow senders and idle keep-alive connections are closed alike; and at
//! most `max_connections` are open at once: beyond that a new connection is answered 503 with
//! `Retry-After` and closed, so the listener keeps accepting and `/health` keeps answering.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
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
        let service = TowerToHyperService::new(router.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .title_case_headers(true)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    tracing::info!("draining open connections");
    graceful.shutdown().await;
    Ok(())
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
}
