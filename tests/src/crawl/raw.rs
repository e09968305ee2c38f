//! A paced raw-frame sender (AF_PACKET) for floods the kernel's own stack
//! cannot originate here: VLAN-tagged traffic (this kernel has no 802.1Q
//! module, so there is no VLAN interface to send through).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::lab::Ns;

/// Frames sent on one interface at a fixed pace until stopped.
pub struct RawFlood {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<u64>>,
}

impl RawFlood {
    /// Sends `frame` on `ifname` (in `ns`) `pps` times per second.
    pub fn start(ns: &Ns, ifname: &str, frame: Vec<u8>, pps: u32) -> RawFlood {
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, ifname, flag) = (ns.clone(), ifname.to_owned(), stop.clone());
        let handle = std::thread::spawn(move || {
            ns.enter(move || send_paced(&ifname, &frame, pps, &flag))?
        });
        RawFlood { stop, handle }
    }

    /// Stops and returns how many frames were sent.
    pub fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| anyhow!("the raw sender panicked"))?
    }
}

/// Sends each of `frames` once on `ifname` in `ns`, with the MAC addresses
/// rewritten for the link (`dst_mac` the peer's, the source `ifname`'s own).
pub fn send_frames(ns: &Ns, ifname: &str, dst_mac: [u8; 6], frames: Vec<Vec<u8>>) -> Result<u64> {
    let src_mac = mac_bytes(&ns.mac(ifname)?)?;
    let ifname = ifname.to_owned();
    ns.enter(move || -> Result<u64> {
        let (fd, addr) = packet_socket(&ifname, dst_mac)?;
        let mut sent = 0;
        for mut frame in frames {
            frame[..6].copy_from_slice(&dst_mac);
            frame[6..12].copy_from_slice(&src_mac);
            // SAFETY: `frame` and `addr` outlive the call; lengths are theirs.
            let n = unsafe {
                libc::sendto(
                    std::os::fd::AsRawFd::as_raw_fd(&fd),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const addr).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error()).context("sending a raw frame");
            }
            sent += 1;
        }
        Ok(sent)
    })?
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub fn mac_bytes(s: &str) -> Result<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts
            .next()
            .with_context(|| format!("{s:?} is not a MAC address"))?;
        *b = u8::from_str_radix(p, 16).with_context(|| format!("{s:?} is not a MAC address"))?;
    }
    anyhow::ensure!(parts.next().is_none(), "{s:?} is not a MAC address");
    Ok(out)
}

/// An AF_PACKET socket and the address that sends on `ifname` to `dst_mac`.
fn packet_socket(
    ifname: &str,
    dst_mac: [u8; 6],
) -> Result<(std::os::fd::OwnedFd, libc::sockaddr_ll)> {
    let name = std::ffi::CString::new(ifname)?;
    // SAFETY: a NUL-terminated name; the call only reads it.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {ifname}");
    }
    // SAFETY: plain socket creation; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("opening an AF_PACKET socket");
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = i32::try_from(ifindex)?;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&dst_mac);
    Ok((fd, addr))
}

fn send_paced(ifname: &str, frame: &[u8], pps: u32, stop: &AtomicBool) -> Result<u64> {
    let mut dst_mac = [0u8; 6];
    dst_mac.copy_from_slice(&frame[..6]);
    let (fd, addr) = packet_socket(ifname, dst_mac)?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let period = Duration::from_secs_f64(1.0 / f64::from(pps.max(1)));
    let mut next = Instant::now();
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `frame` and `addr` outlive the call; lengths are theirs.
        let n = unsafe {
            libc::sendto(
                raw,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::WouldBlock && e.raw_os_error() != Some(libc::ENOBUFS)
            {
                return Err(e).context("sending a raw frame");
            }
        } else {
            sent += 1;
        }
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > Duration::from_millis(100) {
            next = now; // descheduled for long: no burst to catch up
        }
    }
    Ok(sent)
}
