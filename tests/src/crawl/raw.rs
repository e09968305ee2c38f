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

fn send_paced(ifname: &str, frame: &[u8], pps: u32, stop: &AtomicBool) -> Result<u64> {
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
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = i32::try_from(ifindex)?;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[..6]);
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
