//! Traffic from plain sockets inside a namespace.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::Ns;

/// Sends `count` UDP datagrams of `payload` bytes from `src` (bound, port 0)
/// to `dst` inside `ns`, as fast as possible or paced at `pps`. Returns how
/// many the socket accepted.
pub fn udp_send(
    ns: &Ns,
    src: IpAddr,
    dst: SocketAddr,
    count: u64,
    payload: usize,
    pps: Option<u64>,
) -> Result<u64> {
    if pps == Some(0) {
        bail!("udp_send: pps must be positive");
    }
    ns.enter(move || -> Result<u64> {
        let sock =
            UdpSocket::bind(SocketAddr::new(src, 0)).with_context(|| format!("binding {src}"))?;
        let buf = vec![0x5au8; payload];
        let start = Instant::now();
        let mut sent = 0;
        for i in 0..count {
            if let Some(pps) = pps {
                let due = start + Duration::from_secs_f64(i as f64 / pps as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            if sock.send_to(&buf, dst).is_ok() {
                sent += 1;
            }
        }
        Ok(sent)
    })?
}

/// Counts datagrams per source address in a background thread until dropped.
pub struct UdpSink {
    counts: Arc<Mutex<HashMap<IpAddr, u64>>>,
    last: Arc<Mutex<Instant>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpSink {
    /// Binds `addr` inside `ns` (with an 8 MiB receive buffer, so bursts are
    /// not lost to the socket) and starts counting.
    pub fn bind(ns: &Ns, addr: SocketAddr) -> Result<UdpSink> {
        let sock = ns
            .enter(move || UdpSocket::bind(addr))?
            .with_context(|| format!("binding {addr} in {}", ns.name))?;
        let size: libc::c_int = 8 << 20;
        // SAFETY: a valid socket fd, and a pointer to a c_int with its size.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const size).cast(),
                libc::socklen_t::try_from(size_of::<libc::c_int>()).context("socklen_t")?,
            )
        };
        if rc != 0 {
            eprintln!(
                "UdpSink: SO_RCVBUFFORCE: {}",
                std::io::Error::last_os_error()
            );
        }
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let last = Arc::new(Mutex::new(Instant::now()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, l, s) = (counts.clone(), last.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("sink-{addr}"))
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !s.load(Ordering::Relaxed) {
                    if let Ok((_, from)) = sock.recv_from(&mut buf) {
                        // A dual-stack socket sees IPv4 peers as ::ffff:a.b.c.d.
                        let from = from.ip().to_canonical();
                        if let Ok(mut m) = c.lock() {
                            *m.entry(from).or_insert(0) += 1;
                        }
                        if let Ok(mut t) = l.lock() {
                            *t = Instant::now();
                        }
                    }
                }
            })
            .context("starting the sink thread")?;
        Ok(UdpSink {
            counts,
            last,
            stop,
            thread: Some(thread),
        })
    }

    /// A snapshot of the datagrams received per source address.
    pub fn counts(&self) -> HashMap<IpAddr, u64> {
        self.counts.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Datagrams received from `src`.
    pub fn from(&self, src: IpAddr) -> u64 {
        self.counts
            .lock()
            .map(|m| m.get(&src.to_canonical()).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Datagrams received in all.
    pub fn total(&self) -> u64 {
        self.counts.lock().map(|m| m.values().sum()).unwrap_or(0)
    }

    /// Waits until no datagram arrived for `quiet`, or `max` passed.
    pub fn wait_quiet(&self, quiet: Duration, max: Duration) {
        let start = Instant::now();
        while start.elapsed() < max {
            let last = self
                .last
                .lock()
                .map(|t| *t)
                .unwrap_or_else(|_| Instant::now());
            if last.elapsed() >= quiet {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Pings `dst` `count` times from `ns`; returns the number of replies.
pub fn ping(ns: &Ns, dst: IpAddr, count: u32) -> Result<u32> {
    ping_from(ns, None, dst, count)
}

/// Pings `dst` `count` times from `ns` (`ping -c COUNT -i 0.01 -W 1 [-I SRC]`),
/// optionally from source address `src`; returns the number of replies.
/// Fails when ping printed no summary (e.g. no route to `dst`).
pub fn ping_from(ns: &Ns, src: Option<IpAddr>, dst: IpAddr, count: u32) -> Result<u32> {
    let count_s = count.to_string();
    let dst_s = dst.to_string();
    let family = if dst.is_ipv4() { "-4" } else { "-6" };
    let mut args = vec![family, "-n", "-q", "-c", &count_s, "-i", "0.01", "-W", "1"];
    let src_s = src.map(|s| s.to_string());
    if let Some(src) = &src_s {
        args.extend(["-I", src.as_str()]);
    }
    args.push(&dst_s);
    let out = ns
        .command("ping")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .context("starting ping")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "5 packets transmitted, 5 received, ..."
    text.lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| {
            format!(
                "`ping {}` in {} gave no summary ({}): {}{}",
                args.join(" "),
                ns.name,
                out.status,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
}
