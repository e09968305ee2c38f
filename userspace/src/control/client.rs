//! The CLI side of the control socket.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use futures::{SinkExt as _, StreamExt as _};
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::proto::{
    MAX_FRAME, PROTOCOL_VERSION, Reply, Request, RequestEnvelope, Response, ResponseEnvelope,
};

/// How long the CLI waits for the daemon.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no floodgate daemon listens on {path}: start one with `floodgate run --iface IFACE`, \
         or point the CLI at its socket with --socket / FLOODGATE_SOCKET"
    )]
    NotRunning { path: PathBuf },
    #[error(
        "permission denied on {path}: run the CLI as root (or as a member of the socket's group)"
    )]
    PermissionDenied { path: PathBuf },
    #[error("talking to the daemon on {path} failed: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the daemon did not answer within {}s; check its log", TIMEOUT.as_secs())]
    Timeout,
    #[error(
        "the daemon answered with something this CLI cannot read ({0}); use the CLI of the same version as the daemon"
    )]
    Protocol(String),
    #[error("{0}")]
    Daemon(String),
}

/// Sends one request and waits for its reply.
pub async fn call(socket: &Path, request: Request) -> Result<Reply, ClientError> {
    tokio::time::timeout(TIMEOUT, exchange(socket, request))
        .await
        .map_err(|_| ClientError::Timeout)?
}

async fn exchange(socket: &Path, request: Request) -> Result<Reply, ClientError> {
    let path = socket.to_owned();
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning { path: path.clone() }
            }
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied { path: path.clone() },
            _ => ClientError::Io {
                path: path.clone(),
                source,
            },
        })?;
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec();
    let mut framed = Framed::new(stream, codec);
    let body = serde_json::to_vec(&RequestEnvelope {
        version: PROTOCOL_VERSION,
        request,
    })
    .map_err(|e| ClientError::Protocol(e.to_string()))?;
    framed
        .send(bytes::Bytes::from(body))
        .await
        .map_err(|source| ClientError::Io {
            path: path.clone(),
            source,
        })?;
    let frame = framed
        .next()
        .await
        .ok_or_else(|| ClientError::Protocol("the daemon closed the connection".into()))?
        .map_err(|source| ClientError::Io { path, source })?;
    let envelope: ResponseEnvelope =
        serde_json::from_slice(&frame).map_err(|e| ClientError::Protocol(e.to_string()))?;
    match envelope.body {
        Response::Ok(reply) => Ok(reply),
        Response::Error(message) => Err(ClientError::Daemon(message)),
    }
}
