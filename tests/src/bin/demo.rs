//! `cargo xtask demo`: a private lab where a crawler floods a web edge and a
//! normal user browses it, floodgate attached on the edge with the embedded
//! default policy. Prints what passed and what was dropped, per source and per
//! reason, then tears the lab down (also on Ctrl-C).

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use floodgate::{
    control::proto::{Reply, Request, TopBy},
    daemon::{Options, engine::Engine},
    loader::AttachMode,
};
use floodgate_tests::lab::{BpfFs, EdgeNet, Lab, Ns};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

const FLOOD_FOR: Duration = Duration::from_secs(4);

fn main() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGINT, &action) }.context("installing the Ctrl-C handler")?;
    let result = demo();
    if INTERRUPTED.load(Ordering::SeqCst) {
        println!("\ninterrupted: the lab was torn down");
    }
    result
}

fn demo() -> Result<()> {
    let mut lab = Lab::new("demo")?;
    let net = EdgeNet::build(&mut lab)?;
    let ifaces = net.edge_ifaces().to_vec();
    let EdgeNet {
        edge,
        crawler,
        user,
        ..
    } = net;
    println!(
        "lab {}: namespaces edge, crawler (198.18.1.2), user (198.18.2.2)",
        lab.name()
    );

    let pins = BpfFs::new()?;
    let state = tempfile::tempdir()?;
    let options = Options {
        ifaces,
        config: None,
        socket: state.path().join("floodgate.sock"),
        pin_dir: pins.path().join("floodgate"),
        state_dir: state.path().to_owned(),
        xdp_mode: AttachMode::Auto,
        socket_group: None,
        metrics: None,
    };
    let mut engine = edge.enter(move || Engine::start(&options))??;
    println!(
        "floodgate attached to the edge with the embedded default policy (`floodgate config default`)\n"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let server = web_server(&edge, stop.clone())?;

    println!(
        "crawler: 16 parallel clients hammer http://198.18.1.1/ for {}s",
        FLOOD_FOR.as_secs()
    );
    println!("user:    one request every 250 ms to http://198.18.2.1/\n");
    let crawl = spawn_clients(&crawler, "198.18.1.1:80".parse()?, 16, Duration::ZERO);
    let browse = spawn_clients(
        &user,
        "198.18.2.1:80".parse()?,
        1,
        Duration::from_millis(250),
    );
    let (crawl, browse) = (crawl.join(), browse.join());
    stop.store(true, Ordering::SeqCst);
    let _ = server.join();
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Ok(());
    }

    for (who, (tried, served)) in [("crawler", crawl), ("user", browse)] {
        println!("{who:8} requests tried {tried:>6}, served {served:>6}");
    }
    println!();
    report(&mut engine)?;
    drop(engine);
    drop(pins);
    drop(lab);
    Ok(())
}

/// A tiny HTTP server in the edge namespace.
fn web_server(edge: &Ns, stop: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<()>> {
    let listener = edge.enter(|| TcpListener::bind("0.0.0.0:80"))??;
    listener.set_nonblocking(true)?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) && !INTERRUPTED.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let mut buf = [0u8; 512];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 6\r\n\r\nhello\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }))
}

/// Clients making HTTP requests until FLOOD_FOR passes; returns (tried, served).
fn spawn_clients(ns: &Ns, to: SocketAddr, parallel: usize, pause: Duration) -> Handle {
    let tried = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let threads = (0..parallel)
        .map(|_| {
            let (ns, tried, served) = (ns.clone(), tried.clone(), served.clone());
            std::thread::spawn(move || {
                let _ = ns.enter(move || {
                    let start = Instant::now();
                    while start.elapsed() < FLOOD_FOR && !INTERRUPTED.load(Ordering::SeqCst) {
                        tried.fetch_add(1, Ordering::Relaxed);
                        if request(to).is_ok() {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        std::thread::sleep(pause);
                    }
                });
            })
        })
        .collect();
    Handle {
        threads,
        tried,
        served,
    }
}

struct Handle {
    threads: Vec<std::thread::JoinHandle<()>>,
    tried: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
}

impl Handle {
    fn join(self) -> (u64, u64) {
        for t in self.threads {
            let _ = t.join();
        }
        (
            self.tried.load(Ordering::Relaxed),
            self.served.load(Ordering::Relaxed),
        )
    }
}

fn request(to: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_millis(300))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    if body.starts_with(b"HTTP/1.0 200") {
        Ok(())
    } else {
        Err(std::io::ErrorKind::InvalidData.into())
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

fn report(engine: &mut Engine) -> Result<()> {
    let (Reply::Top { rows }, _) = unwrap(engine.handle(Request::Top {
        n: 10,
        by: TopBy::Packets,
        prefixes: false,
    }))?
    else {
        anyhow::bail!("unexpected reply to top");
    };
    let mut t = table(&["source", "packets", "passed", "dropped", "ban"]);
    for r in rows {
        let ban = r.ban.map_or_else(
            || "-".to_owned(),
            |b| format!("{} for {:.0}s more", b.reason, b.remaining_secs),
        );
        t.add_row(vec![
            r.target,
            r.packets.to_string(),
            (r.packets - r.drops).to_string(),
            r.drops.to_string(),
            ban,
        ]);
    }
    println!("per source:\n{t}");
    let (Reply::Stats(stats), _) = unwrap(engine.handle(Request::Stats))? else {
        anyhow::bail!("unexpected reply to stats");
    };
    let mut t = table(&["reason", "verdict", "packets", "bytes"]);
    for (reason, r) in &stats.by_reason {
        t.add_row(vec![
            reason.clone(),
            r.verdict.clone(),
            r.packets.to_string(),
            r.bytes.to_string(),
        ]);
    }
    println!("per reason:\n{t}");
    println!(
        "total: {} packets passed, {} dropped",
        stats.passed.packets, stats.dropped.packets
    );
    Ok(())
}

fn unwrap(
    (response, after): (
        floodgate::control::proto::Response,
        floodgate::daemon::engine::After,
    ),
) -> Result<(Reply, floodgate::daemon::engine::After)> {
    match response {
        floodgate::control::proto::Response::Ok(r) => Ok((r, after)),
        floodgate::control::proto::Response::Error(e) => anyhow::bail!(e),
    }
}
