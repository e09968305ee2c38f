//! `vmprobe`: the UDP witness of the kernel matrix (`cargo xtask
//! kernels`), run inside the booted kernel next to busybox, whose `nc` has no UDP.
//!
//! `vmprobe NETNS_PID DEST COUNT EXPECT` listens on DEST (in its own
//! namespace, where floodgate filters the veth), sends COUNT datagrams to it as
//! fast as it can from a thread that entered the network namespace of
//! NETNS_PID (the client end of the veth), and counts what arrives until a
//! second of silence. EXPECT is `all` (every datagram must arrive) or
//! `limit:BURST:RATE` (a packet bucket of RATE/s with BURST: at least BURST
//! must arrive and at most BURST + RATE × (the sending time + the 1 s grace)).
//! It prints one line and exits 0 when the count is as expected.

use std::{
    fs::File,
    net::{SocketAddr, UdpSocket},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    sched::{CloneFlags, setns},
    sys::socket::{setsockopt, sockopt},
};

/// Silence after the sender is done that ends the count.
const GRACE: Duration = Duration::from_secs(1);
/// The receive buffer: with XDP on a veth each datagram is a page-sized skb,
/// so the default 208 KiB holds about 50 and a receiver that TCG (or a loaded
/// host) leaves unscheduled for a moment would drop part of a 60-packet burst
/// that floodgate passed. 8 MiB holds every datagram of a probe.
const RCVBUF: usize = 8 << 20;

enum Expect {
    All,
    Limit { burst: u64, rate: u64 },
}

fn parse_expect(s: &str) -> Result<Expect> {
    if s == "all" {
        return Ok(Expect::All);
    }
    let mut parts = s
        .strip_prefix("limit:")
        .context("EXPECT: `all` or `limit:BURST:RATE`")?
        .split(':');
    let (Some(burst), Some(rate), None) = (parts.next(), parts.next(), parts.next()) else {
        bail!("EXPECT: `limit:BURST:RATE`, e.g. limit:20:10");
    };
    Ok(Expect::Limit {
        burst: burst.parse().context("BURST")?,
        rate: rate.parse().context("RATE")?,
    })
}

/// Sends `count` datagrams to `dest` from the network namespace of `pid`;
/// returns how long sending took.
fn send_from(pid: u32, dest: SocketAddr, count: u64) -> Result<Duration> {
    let ns = File::open(format!("/proc/{pid}/ns/net")).context("opening the client netns")?;
    // setns changes only this thread's namespace.
    setns(&ns, CloneFlags::CLONE_NEWNET).context("entering the client netns")?;
    let sock = UdpSocket::bind("0.0.0.0:0").context("binding the sender")?;
    let start = Instant::now();
    for seq in 0..count {
        sock.send_to(&seq.to_be_bytes(), dest)
            .with_context(|| format!("sending datagram {seq}"))?;
    }
    Ok(start.elapsed())
}

/// UDP `RcvbufErrors` of this network namespace (/proc/net/snmp).
fn rcvbuf_errors() -> Result<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").context("reading /proc/net/snmp")?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        bail!("/proc/net/snmp has no Udp lines");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .context("/proc/net/snmp: no Udp RcvbufErrors")?
        .1
        .parse()
        .context("/proc/net/snmp: RcvbufErrors")
}

fn run(args: &[String]) -> Result<bool> {
    let [pid, dest, count, expect] = args else {
        bail!("usage: vmprobe NETNS_PID DEST COUNT all|limit:BURST:RATE");
    };
    let pid: u32 = pid.parse().context("NETNS_PID")?;
    let dest: SocketAddr = dest.parse().context("DEST, e.g. 198.18.0.1:9000")?;
    let count: u64 = count.parse().context("COUNT")?;
    let expect = parse_expect(expect)?;

    let recv = UdpSocket::bind(dest).with_context(|| format!("binding {dest}"))?;
    recv.set_read_timeout(Some(GRACE))?;
    // FORCE: root may exceed net.core.rmem_max, which a stock kernel keeps at 208 KiB.
    setsockopt(&recv, sockopt::RcvBufForce, &RCVBUF).context("raising SO_RCVBUF")?;
    let overflows_before = rcvbuf_errors()?;
    let sender = std::thread::spawn(move || send_from(pid, dest, count));
    let mut received = 0u64;
    let mut buf = [0u8; 64];
    loop {
        match recv.recv(&mut buf) {
            Ok(_) => received += 1,
            // A second of silence once the sender is done ends the count.
            Err(_) if sender.is_finished() => break,
            Err(_) => {}
        }
    }
    let took = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the sender thread panicked"))??;
    // A datagram the socket itself dropped would be counted as one floodgate
    // dropped: such a count proves nothing either way.
    let overflowed = rcvbuf_errors()? - overflows_before;
    if overflowed > 0 {
        bail!("{overflowed} datagrams overflowed the receive buffer; the count is void");
    }
    let (ok, rule) = match expect {
        Expect::All => (received == count, format!("expected all {count}")),
        Expect::Limit { burst, rate } => {
            let window = took + GRACE;
            let most = burst + (rate as f64 * window.as_secs_f64()).ceil() as u64;
            (
                received >= burst.min(count) && received <= most,
                format!(
                    "expected {}..={most} (burst {burst} + {rate}/s over {:.2} s)",
                    burst.min(count),
                    window.as_secs_f64()
                ),
            )
        }
    };
    println!(
        "vmprobe: {} sent {count} received {received} in {} ms, {rule}",
        if ok { "ok" } else { "FAIL" },
        took.as_millis()
    );
    Ok(ok)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            println!("vmprobe: FAIL {e:#}");
            ExitCode::from(2)
        }
    }
}
