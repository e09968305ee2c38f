//! The lab's clients: wrk (flood crawler), hping3 (SYN flood), curl (people
//! browsing) and a paced HTTP scraper that can spread itself over many source
//! addresses (low-and-slow and distributed crawlers).

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use nix::sys::signal::Signal;
use socket2::{Domain, Socket, Type};

use super::nginx::PRODUCTS;
use crate::lab::{Lab, Ns};

/// `http://ADDR/` with IPv6 addresses bracketed.
pub fn url(addr: IpAddr, path: &str) -> String {
    match addr {
        IpAddr::V4(a) => format!("http://{a}{path}"),
        IpAddr::V6(a) => format!("http://[{a}]{path}"),
    }
}

/// wrk: one thread, many keep-alive connections, as fast as it can.
pub struct Wrk {
    pid: u32,
    log: PathBuf,
    max: Duration,
}

/// What wrk reported.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub output: String,
}

impl Wrk {
    pub fn start(
        lab: &mut Lab,
        ns: &Ns,
        target: IpAddr,
        connections: u32,
        duration: Duration,
        log: &Path,
    ) -> Result<Wrk> {
        let c = connections.to_string();
        let d = format!("{}s", duration.as_secs().max(1));
        let u = url(target, "/index.html");
        let args = ["-t1", "-c", &c, "-d", &d, "--timeout", "2s", &u];
        let pid = lab
            .spawn_logged(ns, "wrk", &args, log)
            .context("starting wrk (installed by `cargo xtask setup`)")?;
        Ok(Wrk {
            pid,
            log: log.to_owned(),
            max: duration + Duration::from_secs(15),
        })
    }

    /// Waits for wrk to finish its run and parses its summary.
    pub fn finish(self, lab: &mut Lab) -> Result<WrkResult> {
        lab.wait(self.pid, self.max)?;
        let output = std::fs::read_to_string(&self.log)?;
        // "  1234 requests in 8.00s, 1.23MB read"
        let requests = output
            .lines()
            .find(|l| l.contains(" requests in "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no request count in wrk's output:\n{output}"))?;
        Ok(WrkResult { requests, output })
    }
}

/// hping3 sending TCP SYNs to port 80 at a fixed pace until stopped.
pub struct Hping {
    pid: u32,
}

impl Hping {
    /// `interval_us` between packets (500 µs = 2000 packets/s nominal).
    pub fn start(
        lab: &mut Lab,
        ns: &Ns,
        dst: IpAddr,
        interval_us: u32,
        log: &Path,
    ) -> Result<Hping> {
        let interval = format!("u{interval_us}");
        let dst = dst.to_string();
        let args = ["-q", "-S", "-p", "80", "-i", &interval, &dst];
        let pid = lab
            .spawn_logged(ns, "hping3", &args, log)
            .context("starting hping3 (installed by `cargo xtask setup`)")?;
        Ok(Hping { pid })
    }

    pub fn stop(self, lab: &mut Lab) -> Result<()> {
        lab.stop(self.pid, Signal::SIGINT).map(drop)
    }
}

/// One page view: HTTP status (0 when the request failed) and its latency.
#[derive(Debug, Clone, Copy)]
pub struct Visit {
    pub status: u16,
    pub latency: Duration,
}

/// People browsing: one thread per session running curl at a human pace.
pub struct Browsing {
    stop: Arc<AtomicBool>,
    sessions: Vec<JoinHandle<Vec<Visit>>>,
}

impl Browsing {
    /// Starts a session per `(source address, server address)`, each fetching a
    /// product page, then waiting `think`.
    pub fn start(ns: &Ns, sessions: &[(IpAddr, IpAddr)], think: Duration) -> Browsing {
        let stop = Arc::new(AtomicBool::new(false));
        let sessions = sessions
            .iter()
            .enumerate()
            .map(|(i, &(src, server))| {
                let (ns, stop) = (ns.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut visits = Vec::new();
                    let mut page = i as u32;
                    while !stop.load(Ordering::Relaxed) {
                        page = page % PRODUCTS + 1;
                        visits.push(curl(
                            &ns,
                            src,
                            &url(server, &format!("/product/{page}.html")),
                        ));
                        std::thread::sleep(think);
                    }
                    visits
                })
            })
            .collect();
        Browsing { stop, sessions }
    }

    /// Stops every session and returns all their visits.
    pub fn stop(self) -> Vec<Visit> {
        self.stop.store(true, Ordering::Relaxed);
        self.sessions
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    }
}

/// One curl request from `src`; failures (timeouts, resets) are status 0.
fn curl(ns: &Ns, src: IpAddr, url: &str) -> Visit {
    let started = Instant::now();
    let out = ns
        .command("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "5", "--interface"])
        .arg(src.to_string())
        .args(["-w", "%{http_code} %{time_total}", url])
        .output();
    let failed = Visit {
        status: 0,
        latency: started.elapsed(),
    };
    let Ok(out) = out else { return failed };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.split_whitespace();
    match (
        f.next().and_then(|s| s.parse::<u16>().ok()),
        f.next().and_then(|s| s.parse::<f64>().ok()),
    ) {
        (Some(status), Some(secs)) if out.status.success() => Visit {
            status,
            latency: Duration::from_secs_f64(secs),
        },
        _ => failed,
    }
}

/// Requests from one source address of a [`Scraper`].
#[derive(Debug, Clone)]
pub struct SourceLog {
    pub src: IpAddr,
    pub ok: u64,
    pub failed: u64,
    /// When the first request failed, counted from the scraper's start.
    pub first_failure: Option<Duration>,
    /// Successful requests after the first failure.
    pub ok_after_failure: u64,
}

/// A crawler that fetches product pages at a steady pace from each of its
/// source addresses, one connection per page (like a polite-looking bot).
pub struct Scraper {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<Vec<SourceLog>>>,
}

impl Scraper {
    /// `per_source` pages per second from every address in `sources`, to `server`.
    pub fn start(ns: &Ns, sources: Vec<IpAddr>, server: IpAddr, per_source: f64) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let ns = ns.clone();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            ns.enter(move || -> Result<Vec<SourceLog>> {
                let started = Instant::now();
                // Threads spawned here inherit this thread's network namespace.
                let workers: Vec<_> = sources
                    .into_iter()
                    .map(|src| {
                        let stop = flag.clone();
                        std::thread::spawn(move || scrape(src, server, per_source, &stop, started))
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().map_err(|_| anyhow!("a scraper thread panicked")))
                    .collect()
            })?
        });
        Scraper { stop, handle }
    }

    pub fn stop(self) -> Result<Vec<SourceLog>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| anyhow!("the scraper panicked"))?
    }
}

fn scrape(
    src: IpAddr,
    server: IpAddr,
    rate: f64,
    stop: &AtomicBool,
    started: Instant,
) -> SourceLog {
    let mut log = SourceLog {
        src,
        ok: 0,
        failed: 0,
        first_failure: None,
        ok_after_failure: 0,
    };
    let period = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let mut next = Instant::now();
    let mut page = 0;
    while !stop.load(Ordering::Relaxed) {
        page = page % PRODUCTS + 1;
        if get(src, server, &format!("/product/{page}.html")).is_ok_and(|s| s == 200) {
            log.ok += 1;
            if log.first_failure.is_some() {
                log.ok_after_failure += 1;
            }
        } else {
            log.failed += 1;
            log.first_failure.get_or_insert_with(|| started.elapsed());
        }
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now; // fell behind (timeouts): no catching up in a burst
        }
    }
    log
}

/// One HTTP/1.1 GET from `src` on a fresh connection; returns the status code.
fn get(src: IpAddr, server: IpAddr, path: &str) -> std::io::Result<u16> {
    let domain = if src.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(src, 0).into())?;
    socket.connect_timeout(&SocketAddr::new(server, 80).into(), Duration::from_secs(1))?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    socket.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut stream = std::net::TcpStream::from(socket);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: shop.lab\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let head = String::from_utf8_lossy(&response[..response.len().min(64)]).into_owned();
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))
}
