//! The HTTP side of `/metrics`: hyper's HTTP/1.1 server, one task per
//! connection, keep-alive, a deadline on every request head and a cap on
//! connections.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc},
};
use tracing::{debug, warn};

use crate::control::server::Call;

/// What a scrape is: prometheus-client encodes OpenMetrics text.
const EXPOSITION: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
/// hyper's read (and write) buffer: a scraper's request head is far smaller
/// (8 KiB is hyper's minimum; a larger head gets 431).
const MAX_BUF: usize = 8 * 1024;

/// How much one client may hold.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Time to send a complete request head, counted from the connection (or
    /// the previous response): a slow client, or an idle keep-alive one, is
    /// dropped after it.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        header_read_timeout: Duration::from_secs(5),
        max_connections: 64,
    };
}

/// Accepts connections until the task is aborted.
pub(super) async fn serve(listener: TcpListener, calls: mpsc::Sender<Call>, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // A slot first: over the cap, connections wait unaccepted.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return; // never closed
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let calls = calls.clone();
                tokio::spawn(async move {
                    connection(stream, calls, limits).await;
                    drop(slot);
                });
            }
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one connection, request after request.
async fn connection(stream: TcpStream, calls: mpsc::Sender<Call>, limits: Limits) {
    let service = service_fn(move |request| {
        let calls = calls.clone();
        async move { Ok::<_, Infallible>(respond(&request, &calls).await) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        // A client's problem (timeout, bad request, reset), not the daemon's.
        debug!(error = %e, "metrics connection");
    }
}

/// The answer to one request (hyper sends no body for HEAD, but the length).
async fn respond<B>(request: &Request<B>, calls: &mpsc::Sender<Call>) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, TEXT, "floodgate serves /metrics\n");
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "/metrics answers GET and HEAD\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match super::scrape(calls).await {
        Ok(body) => reply(StatusCode::OK, EXPOSITION, body),
        Err(e) => {
            warn!(error = %e, "metrics scrape");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                "the daemon could not be read\n",
            )
        }
    }
}

fn reply(status: StatusCode, kind: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

#[cfg(test)]
mod tests;
