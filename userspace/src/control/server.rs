//! The daemon side of the control socket. Connections are served concurrently;
//! every request is handed to the daemon's main loop through a channel, so one
//! owner applies changes in order.

use std::{
    io,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use futures::{SinkExt as _, StreamExt as _};
use tokio::{
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tracing::{debug, warn};

use super::proto::{
    MAX_FRAME, PROTOCOL_VERSION, Request, RequestEnvelope, Response, ResponseEnvelope,
};

/// A request with the way back to its caller.
pub type Call = (Request, oneshot::Sender<Response>);

/// An idle client is dropped after this long.
const IDLE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("no group {0:?} for the control socket; create it or fix --socket-group")]
    NoGroup(String),
    #[error(
        "another floodgate daemon already listens on {0}; stop it first or use another --socket"
    )]
    InUse(PathBuf),
    #[error("creating the control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Binds the socket, replacing a stale file from a daemon that died. The socket
/// is 0600 (root only), or 0660 owned by `group` when one is given.
pub async fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, ServerError> {
    let io_err = |source| ServerError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ServerError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io_err)?;
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    let mode = match group {
        None => 0o600,
        Some(name) => {
            let gid = nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| ServerError::NoGroup(name.to_owned()))?
                .gid;
            nix::unistd::chown(path, None, Some(gid)).map_err(|e| io_err(e.into()))?;
            0o660
        }
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
    Ok(listener)
}

/// Accepts connections until the listener fails; each request goes to `calls`.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<Call>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, calls.clone()));
            }
            Err(e) => {
                warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(stream: UnixStream, calls: mpsc::Sender<Call>) {
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec();
    let mut framed = Framed::new(stream, codec);
    loop {
        let frame = match tokio::time::timeout(IDLE, framed.next()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => {
                // Oversized or broken frame: answer once, then hang up.
                let _ = reply(
                    &mut framed,
                    Response::Error(format!("bad request frame: {e} (limit {MAX_FRAME} bytes)")),
                )
                .await;
                return;
            }
            Ok(None) | Err(_) => return,
        };
        let response = match serde_json::from_slice::<RequestEnvelope>(&frame) {
            Ok(env) if env.version != PROTOCOL_VERSION => Response::Error(format!(
                "protocol version {} is not supported (daemon speaks {PROTOCOL_VERSION}); use the CLI of the same release as the daemon",
                env.version
            )),
            Ok(env) => {
                debug!(request = ?env.request, "control request");
                let (tx, rx) = oneshot::channel();
                if calls.send((env.request, tx)).await.is_err() {
                    Response::Error("the daemon is shutting down".into())
                } else {
                    rx.await.unwrap_or_else(|_| {
                        Response::Error("the daemon dropped the request".into())
                    })
                }
            }
            Err(e) => Response::Error(format!("malformed request: {e}")),
        };
        if reply(&mut framed, response).await.is_err() {
            return;
        }
    }
}

async fn reply(
    framed: &mut Framed<UnixStream, LengthDelimitedCodec>,
    body: Response,
) -> io::Result<()> {
    let bytes = serde_json::to_vec(&ResponseEnvelope {
        version: PROTOCOL_VERSION,
        body,
    })
    .map_err(io::Error::other)?;
    framed.send(bytes::Bytes::from(bytes)).await
}
