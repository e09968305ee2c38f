//! `--metrics ADDR`: Prometheus exposition (prometheus-client, OpenMetrics
//! text) of the counters, map fill levels, bans and event losses, built at
//! scrape time from the same requests the CLI sends.
//!
//! [`serve`] answers `GET` and `HEAD /metrics` over HTTP/1.1 with keep-alive
//! (hyper, see [`http`]); [`render`] builds the text.

mod fleet;
mod http;
mod render;

use std::net::SocketAddr;

use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
};

pub use self::render::render;
use crate::control::{
    proto::{Reply, Request, Response},
    server::Call,
};

/// Why a scrape could not be answered (the endpoint says 503).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("the engine is gone")]
    EngineGone,
    #[error("the engine refused the {request} request: {message}")]
    Engine {
        request: &'static str,
        message: String,
    },
    #[error("the engine answered the {request} request with another reply")]
    UnexpectedReply { request: &'static str },
    #[error("encoding the exposition: {0}")]
    Encode(#[from] std::fmt::Error),
}

/// Sends one request (`name` in errors) to the engine and waits for its reply.
async fn ask(
    calls: &mpsc::Sender<Call>,
    request: Request,
    name: &'static str,
) -> Result<Reply, MetricsError> {
    let (tx, rx) = oneshot::channel();
    calls
        .send((request, tx))
        .await
        .map_err(|_| MetricsError::EngineGone)?;
    match rx.await.map_err(|_| MetricsError::EngineGone)? {
        Response::Ok(reply) => Ok(reply),
        Response::Error(message) => Err(MetricsError::Engine {
            request: name,
            message,
        }),
    }
}

/// One scrape: the status and the stats, rendered.
async fn scrape(calls: &mpsc::Sender<Call>) -> Result<String, MetricsError> {
    let Reply::Status(status) = ask(calls, Request::Status, "status").await? else {
        return Err(MetricsError::UnexpectedReply { request: "status" });
    };
    let Reply::Stats(stats) = ask(calls, Request::Stats, "stats").await? else {
        return Err(MetricsError::UnexpectedReply { request: "stats" });
    };
    let active_bans = status.active_bans.unwrap_or(0);
    Ok(render(&status, &stats, active_bans)?)
}

/// Binds the metrics listener (errors reach the caller before the daemon starts serving).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves scrapes until the daemon exits.
pub async fn serve(listener: TcpListener, calls: mpsc::Sender<Call>) {
    http::serve(listener, calls, http::Limits::DEFAULT).await;
}
