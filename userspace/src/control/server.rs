//! The daemon side of the control socket. Connections are served concurrently;
//! every request is handed to the daemon's main loop through a channel, so one
//! owner applies changes in order.

use std::{
    io,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures::{SinkExt as _, StreamExt as _};
use tokio::{
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tracing::{debug, warn};

use nix::sys::stat::{Mode, umask};

use super::access::{Access, peer_of};
use super::proto::{
    MAX_FRAME, PROTOCOL_VERSION, Request, RequestEnvelope, Response, ResponseEnvelope,
};

/// A request with the way back to its caller.
pub type Call = (Request, oneshot::Sender<Response>);

/// An idle client is dropped after this long.
const IDLE: Duration = Duration::from_secs(60);
/// How long a refused peer may take to send the request its refusal answers.
const REFUSED_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
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

/// Binds the socket, replacing a stale file from a daemon that died. It is
/// created under umask 077 (never wider than 0600, whatever the caller's
/// umask), then given the group and mode `access` asks for: 0600 for root
/// alone, 0660 for one group, 0666 for two (the peer check decides then).
pub async fn bind(path: &Path, access: &Access) -> Result<UnixListener, ServerError> {
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
    let listener = {
        // The umask is the process's: nothing else of the daemon creates
        // files while it starts, and the old one is back right after.
        let old = umask(Mode::from_bits_truncate(0o077));
        let bound = UnixListener::bind(path);
        umask(old);
        bound.map_err(io_err)?
    };
    let (group, mode) = access.file_mode();
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(gid)).map_err(|e| io_err(e.into()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
    Ok(listener)
}

/// Accepts connections until the listener fails; each request goes to `calls`.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<Call>, access: Arc<Access>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, calls.clone(), Arc::clone(&access)));
            }
            Err(e) => {
                warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(stream: UnixStream, calls: mpsc::Sender<Call>, access: Arc<Access>) {
    let peer = peer_of(&stream);
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec();
    let mut framed = Framed::new(stream, codec);
    let role = match peer.as_ref().map(|p| (p, access.role(p))) {
        Ok((_, Some(role))) => role,
        Ok((peer, None)) => {
            warn!(uid = peer.uid, "control socket: refused a connection");
            // The refusal answers its first request, so the caller reads why
            // instead of finding the socket closed under its write.
            let _ = tokio::time::timeout(REFUSED_WAIT, framed.next()).await;
            let _ = reply(&mut framed, Response::Error(access.refusal(peer))).await;
            return;
        }
        Err(e) => {
            warn!(error = %e, "control socket: no peer credentials; refused");
            return;
        }
    };
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
            Ok(env) if env.request.internal() => Response::Error(format!(
                "`{}` is the daemon's own request, not a control verb",
                env.request.verb()
            )),
            Ok(env) => match access.permit(role, &env.request) {
                Err(refusal) => {
                    warn!(
                        verb = env.request.verb(),
                        "control socket: a reader asked for a change; refused"
                    );
                    Response::Error(refusal)
                }
                Ok(()) => forward(&calls, env.request).await,
            },
            Err(e) => Response::Error(format!("malformed request: {e}")),
        };
        if reply(&mut framed, response).await.is_err() {
            return;
        }
    }
}

/// Hands `request` to the daemon's loop and waits for its answer.
pub async fn forward(calls: &mpsc::Sender<Call>, request: Request) -> Response {
    debug!(?request, "control request");
    let (tx, rx) = oneshot::channel();
    if calls.send((request, tx)).await.is_err() {
        return Response::Error("the daemon is shutting down".into());
    }
    rx.await
        .unwrap_or_else(|_| Response::Error("the daemon dropped the request".into()))
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
