//! The flood and its watch (the CrowdSec and the IP sets benches): UDP from
//! every source of the crawler at a fixed total rate (round robin, one socket
//! per source), and a timeline of what the edge's sinks got — from covered
//! and clean sources, or from each source.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use floodgate_tests::lab::{Ns, traffic::UdpSink};

/// The edge's sinks (`CsLab`'s).
fn sink_of(src: IpAddr) -> SocketAddr {
    if src.is_ipv4() {
        SocketAddr::from(([198, 18, 1, 1], 9000))
    } else {
        SocketAddr::new(
            IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0xf100, 1, 0, 0, 0, 0, 1)),
            9000,
        )
    }
}

/// A paced flood from many sources, until stopped or dropped.
pub struct Flood {
    stop: Arc<AtomicBool>,
    /// Datagrams sent, by source (in the order given).
    sent: Arc<Vec<AtomicU64>>,
    started: Instant,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Flood {
    pub fn start(ns: &Ns, sources: &[IpAddr], pps: u64) -> Result<Flood> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent: Arc<Vec<AtomicU64>> =
            Arc::new(sources.iter().map(|_| AtomicU64::new(0)).collect());
        let (ns, sources) = (ns.clone(), sources.to_vec());
        let (s, c) = (stop.clone(), sent.clone());
        let thread = std::thread::Builder::new()
            .name("cs-flood".into())
            .spawn(move || -> Result<()> {
                ns.enter(move || -> Result<()> {
                    let socks = sources
                        .iter()
                        .map(|&src| {
                            let sock = UdpSocket::bind(SocketAddr::new(src, 0))
                                .with_context(|| format!("binding {src}"))?;
                            Ok((sock, sink_of(src)))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let buf = [0x5au8; 64];
                    let start = Instant::now();
                    let mut n = 0u64;
                    while !s.load(Ordering::Relaxed) {
                        let due = (start.elapsed().as_secs_f64() * pps as f64) as u64;
                        while n < due {
                            let i = usize::try_from(n % socks.len() as u64).unwrap_or(0);
                            let (sock, dst) = &socks[i];
                            if sock.send_to(&buf, dst).is_ok() {
                                c[i].fetch_add(1, Ordering::Relaxed);
                            }
                            n += 1;
                        }
                        std::thread::sleep(Duration::from_micros(500));
                    }
                    Ok(())
                })?
            })
            .context("starting the flood")?;
        Ok(Flood {
            stop,
            sent,
            started: Instant::now(),
            thread: Some(thread),
        })
    }

    /// Datagrams sent so far, by source.
    pub fn sent(&self) -> Vec<u64> {
        self.sent
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect()
    }

    /// Stops it; returns the seconds it ran and the datagrams it sent.
    pub fn stop(mut self) -> Result<(f64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow::anyhow!("the flood panicked"))??;
        }
        Ok((
            self.started.elapsed().as_secs_f64(),
            self.sent().iter().sum(),
        ))
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Datagrams the sinks got from covered and from clean sources so far.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: Instant,
    pub covered: u64,
    pub clean: u64,
}

pub fn sample(sinks: [&UdpSink; 2], covered: &HashSet<IpAddr>) -> Sample {
    let at = Instant::now();
    let (mut cov, mut clean) = (0, 0);
    for sink in sinks {
        for (ip, n) in sink.counts() {
            if covered.contains(&ip) {
                cov += n;
            } else {
                clean += n;
            }
        }
    }
    Sample {
        at,
        covered: cov,
        clean,
    }
}

/// Datagrams the sinks got so far from each source (by its index in
/// `index`, the flood's order), and when.
pub fn by_source(sinks: [&UdpSink; 2], index: &HashMap<IpAddr, usize>) -> (Instant, Vec<u64>) {
    let at = Instant::now();
    let mut out = vec![0; index.len()];
    for sink in sinks {
        for (ip, n) in sink.counts() {
            if let Some(&i) = index.get(&ip) {
                out[i] += n;
            }
        }
    }
    (at, out)
}

/// Takes `sample` every 5 ms until `stop`, and once more.
pub fn every_5ms<T>(stop: &AtomicBool, mut sample: impl FnMut() -> T) -> Vec<T> {
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        out.push(sample());
        std::thread::sleep(Duration::from_millis(5));
    }
    out.push(sample());
    out
}

/// Samples covered and clean every 5 ms until `stop`.
pub fn watch(sinks: [&UdpSink; 2], covered: &HashSet<IpAddr>, stop: &AtomicBool) -> Vec<Sample> {
    every_5ms(stop, || sample(sinks, covered))
}

/// When covered datagrams last arrived (the first sample that saw them).
pub fn last_covered(timeline: &[Sample]) -> Option<Instant> {
    timeline
        .windows(2)
        .rev()
        .find(|w| w[1].covered > w[0].covered)
        .map(|w| w[1].at)
}

/// The longest stretch with no clean datagram arriving, between `from` and
/// `to` (ms): the flood's own health while the filter is judged.
pub fn clean_gap_ms(timeline: &[Sample], from: Instant, to: Instant) -> f64 {
    gap_ms(timeline, |s| (s.at, s.clean), from, to)
}

/// The longest stretch between `from` and `to` (ms) in which a timeline's
/// count (`at_count`: a sample's time and count) did not grow.
pub fn gap_ms<T>(
    timeline: &[T],
    at_count: impl Fn(&T) -> (Instant, u64),
    from: Instant,
    to: Instant,
) -> f64 {
    let mut last = from;
    let mut gap = Duration::ZERO;
    for w in timeline.windows(2) {
        let ((a0, c0), (a1, c1)) = (at_count(&w[0]), at_count(&w[1]));
        if a1 < from || a0 > to {
            continue;
        }
        if c1 > c0 {
            gap = gap.max(a1.saturating_duration_since(last));
            last = a1;
        }
    }
    gap = gap.max(to.saturating_duration_since(last));
    gap.as_secs_f64() * 1e3
}
