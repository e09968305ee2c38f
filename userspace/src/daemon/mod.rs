//! `floodgate run`: loads the program once, attaches it to every interface,
//! applies the policy, serves the control socket and turns kernel events into
//! logs. Filtering stays in place when the daemon exits (pinned links and maps);
//! a restarted daemon adopts that state.

pub mod bpffs;
pub mod budget;
pub mod engine;
pub mod events;
pub mod links;
pub mod loglimit;
pub mod metrics;
pub mod reader;
pub mod remote;
pub mod runtime;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use floodgate_common::maps;
use ipnet::IpNet;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{error, info, warn};

use crate::{
    config::ConfigError,
    control::{
        access::{Access, AccessError},
        server::{self, ServerError},
    },
    loader::{AttachMode, LoadError},
};
use engine::{After, Engine};
use loglimit::{Kind, LogLimiter};

/// Where the program's own log records (aya-log) go: to the global logger, within
/// the event log rate limit (the program logs a line per ban, so a flood of
/// bans is a flood of these).
struct ProgramLog {
    logs: Arc<Mutex<LogLimiter>>,
}

impl log::Log for ProgramLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        log::logger().enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        // Records the filter drops anyway are not "suppressed".
        if !self.enabled(record.metadata()) {
            return;
        }
        let allowed = self
            .logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(Kind::Program, Instant::now());
        if allowed {
            log::logger().log(record);
        }
    }

    fn flush(&self) {
        log::logger().flush();
    }
}

/// Everything `floodgate run` is told.
#[derive(Debug, Clone)]
pub struct Options {
    pub ifaces: Vec<String>,
    pub config: Option<PathBuf>,
    pub socket: PathBuf,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub xdp_mode: AttachMode,
    /// Group whose members may use the control socket's read-only verbs.
    pub socket_group: Option<String>,
    /// Group whose members may use every verb (see `control::access`).
    pub admin_group: Option<String>,
    /// Serve Prometheus metrics on this address.
    pub metrics: Option<std::net::SocketAddr>,
    /// Print the verifier's full log when it rejects the program.
    pub verbose: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] runtime::StateError),
    #[error(transparent)]
    Bpffs(#[from] bpffs::BpffsError),
    #[error(transparent)]
    Budget(#[from] budget::BudgetError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{cidr} is not on the {list} list; see `floodgate {list} list`")]
    NotListed { list: &'static str, cidr: IpNet },
    #[error("floodgate is not attached to {0}; see `floodgate status`")]
    NotAttached(String),
    #[error("--iface {0}: no such network interface (see `ip link`); nothing was loaded")]
    NoInterface(String),
    #[error("reading {what} from the kernel: {source}")]
    Walk {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("`{0}` is not a query")]
    NotAWalk(&'static str),
    #[error("aya-log: {0}")]
    Log(#[from] aya_log::Error),
    #[error("no set named {0:?}; see `floodgate sets list`")]
    NoSuchSet(String),
    #[error(
        "set {set:?} would make the {list} list {entries} entries, more than [capacity] lists ({capacity}) holds; the last good copy stays — raise [capacity] lists or filter the set"
    )]
    SetTooBig {
        set: String,
        list: &'static str,
        entries: usize,
        capacity: usize,
    },
}

impl DaemonError {
    /// The verifier's full log, when it rejected the program.
    pub fn verifier_log(&self) -> Option<String> {
        match self {
            DaemonError::Load(e) => e.verifier_log(),
            _ => None,
        }
    }
}

/// Ban events waiting for the watcher; more at once are dropped (counted).
const ALERT_HANDOFF: usize = 4096;

/// Tells systemd about the daemon's state (a no-op outside systemd).
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        warn!(error = %e, "sd_notify");
    }
}

/// Registers a ring buffer with the runtime to wait for its records.
fn watch<T: std::os::fd::AsRawFd>(inner: T, what: &str) -> Result<AsyncFd<T>, DaemonError> {
    // SAFETY: `inner` owns its file descriptor (a map fd) for as long as the
    // AsyncFd lives, and always reports the same one.
    unsafe { AsyncFd::register(inner) }.map_err(|e| DaemonError::Io {
        path: PathBuf::from(what),
        source: e.into_parts().1,
    })
}

/// Runs the daemon until SIGTERM/SIGINT (filtering stays) or a full detach.
/// An error is logged in one line; the verifier's log, when it rejected the
/// program, follows it with `verbose` only (it runs to thousands of lines).
pub async fn run(opts: Options) -> Result<(), DaemonError> {
    let result = serve(&opts).await;
    if let Err(e) = &result {
        error!(error = %e, "floodgate stopped");
        match e.verifier_log() {
            Some(log) if opts.verbose => error!("the verifier's log:\n{log}"),
            Some(_) => info!("`floodgate run --verbose` prints the verifier's log"),
            None => {}
        }
    }
    result
}

async fn serve(opts: &Options) -> Result<(), DaemonError> {
    // Checked before anything is loaded, like the interfaces.
    let access = Access::resolve(opts.socket_group.as_deref(), opts.admin_group.as_deref())?;
    let mut engine = Engine::start(opts)?;
    let program_log = ProgramLog {
        logs: Arc::clone(&engine.logs),
    };
    let mut logger = match aya_log::EbpfLogger::init_with_logger(engine.fg.ebpf_mut(), program_log)
    {
        Ok(l) => Some(watch(l, "aya-log ring buffer")?),
        Err(e) => {
            warn!(error = %e, "no log records from the XDP program");
            None
        }
    };
    let events = engine
        .fg
        .ebpf_mut()
        .take_map(maps::EVENTS)
        .ok_or(LoadError::Map {
            name: maps::EVENTS,
            source: aya::maps::MapError::InvalidName {
                name: maps::EVENTS.into(),
            },
        })?;
    let events: RingBuf<MapData> = RingBuf::try_from(events).map_err(|source| LoadError::Map {
        name: maps::EVENTS,
        source,
    })?;
    let mut events = watch(events, "event ring buffer")?;

    let listener = server::bind(&opts.socket, &access).await?;
    let (calls_tx, mut calls) = mpsc::channel(64);
    let metrics = match opts.metrics {
        Some(addr) => {
            let l = metrics::bind(addr)
                .await
                .map_err(|source| DaemonError::Io {
                    path: PathBuf::from(format!("metrics listener {addr}")),
                    source,
                })?;
            info!(%addr, "serving Prometheus metrics on /metrics");
            Some(tokio::spawn(metrics::serve(l, calls_tx.clone())))
        }
        None => None,
    };
    // The bouncer and the watcher idle while `[crowdsec]` (or its
    // `machine_id`) is absent; a reload may add it.
    let bouncer = tokio::spawn(crate::fleet::crowdsec::bouncer::run(
        engine.crowdsec_config(),
        calls_tx.clone(),
    ));
    let (alerts, alerts_rx) = mpsc::channel(ALERT_HANDOFF);
    let watcher = tokio::spawn(crate::fleet::crowdsec::watcher::run(
        engine.crowdsec_config(),
        alerts_rx,
        opts.state_dir.clone(),
        calls_tx.clone(),
    ));
    let refresher = engine.set_refresher_inputs().map(|(specs, now)| {
        tokio::spawn(crate::sets::refresher::run(
            specs,
            now,
            opts.state_dir.clone(),
            calls_tx.clone(),
        ))
    });
    let server = tokio::spawn(server::serve(listener, calls_tx, Arc::new(access)));
    let sig = |kind| {
        signal(kind).map_err(|source| DaemonError::Io {
            path: PathBuf::from("signal handler"),
            source,
        })
    };
    let (mut hup, mut term, mut int) = (
        sig(SignalKind::hangup())?,
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    info!(
        socket = %opts.socket.display(),
        interfaces = ?opts.ifaces,
        "floodgate is filtering"
    );
    // systemd (Type=notify): ready once attached with the policy applied; the
    // watchdog is fed from the loop below, so a stuck loop gets restarted.
    notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled();

    loop {
        tokio::select! {
            Some((request, reply)) = calls.recv() => {
                // A walk of whole maps runs off the loop: changes go on meanwhile.
                if engine::queries::walks(&request) {
                    match engine.query(&request) {
                        Ok(query) => engine.reader.spawn(reply, move |reader| {
                            match query(reader) {
                                Ok(answer) => crate::control::proto::Response::Ok(answer),
                                Err(e) => crate::control::proto::Response::Error(e.to_string()),
                            }
                        }),
                        Err(e) => {
                            let _ = reply.send(crate::control::proto::Response::Error(e.to_string()));
                        }
                    }
                    continue;
                }
                let (response, after) = engine.handle(request);
                let _ = reply.send(response);
                if after == After::Exit {
                    // Let the connection task write the reply before the server goes.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            }
            _ = hup.recv() => {
                notify(&[sd_notify::NotifyState::Reloading]);
                if let Err(e) = engine.reload()
                    && engine.log_allowed(Kind::Reload)
                {
                    warn!(
                        event = "reload",
                        error = %e,
                        "reload refused; the running policy is unchanged"
                    );
                }
                notify(&[sd_notify::NotifyState::Ready]);
            }
            _ = term.recv() => {
                info!("SIGTERM: exiting, filtering stays in place (use `floodgate detach` to remove it)");
                break;
            }
            _ = int.recv() => {
                info!("SIGINT: exiting, filtering stays in place (use `floodgate detach` to remove it)");
                break;
            }
            guard = events.readable_mut() => {
                if let Ok(mut guard) = guard {
                    let ring = guard.get_inner_mut();
                    while let Some(record) = ring.next() {
                        let Some(e) = events::decode(&record) else { continue };
                        if let Some(ban) = engine.local_ban(&e)
                            && alerts.try_send(ban).is_err()
                        {
                            engine.alert_dropped();
                        }
                        if engine.log_allowed(Kind::Ban) {
                            info!(
                                event = if e.would { "would_ban" } else { "ban" },
                                target = %e.target,
                                reason = e.reason,
                                duration = %humantime::format_duration(e.duration),
                                offenses = e.offenses,
                                observed_pps = e.observed_pps,
                                "{}",
                                if e.would { "would ban (monitor mode: nothing dropped)" } else { "banned" }
                            );
                        }
                    }
                    guard.clear_ready();
                }
            }
            guard = async {
                match logger.as_mut() {
                    Some(l) => l.readable_mut().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Ok(mut guard) = guard {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            }
            _ = tick.tick() => {
                engine.tick();
                if watchdog.is_some() {
                    notify(&[sd_notify::NotifyState::Watchdog]);
                }
            }
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    server.abort();
    bouncer.abort();
    watcher.abort();
    if let Some(r) = refresher {
        r.abort();
    }
    if let Some(m) = metrics {
        m.abort();
    }
    let _ = std::fs::remove_file(&opts.socket);
    Ok(())
}
