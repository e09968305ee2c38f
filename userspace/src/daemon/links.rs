//! Attaching through pinned XDP links, so filtering outlives the daemon and a
//! restarted daemon swaps its program in atomically (BPF_LINK_UPDATE).

use std::path::{Path, PathBuf};

use aya::programs::{
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
};
use tracing::warn;

use crate::loader::{AttachMode, AttachedMode, Floodgate, LoadError, program_mut};

/// Directory of pinned links below the pin dir.
pub fn links_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("links")
}

fn link_path(pin_dir: &Path, iface: &str) -> PathBuf {
    links_dir(pin_dir).join(iface)
}

/// Attaches the program to `iface`. If a link from an earlier run is pinned for
/// it, the new program replaces the old one in that link atomically: there is
/// no moment without filtering. Otherwise a new link is created and pinned.
/// Returns the mode and whether a pinned link was reused (the caller logs it).
pub fn attach_pinned(
    fg: &mut Floodgate,
    iface: &str,
    mode: AttachMode,
    pin_dir: &Path,
    previous: Option<AttachedMode>,
) -> Result<(AttachedMode, bool), LoadError> {
    let path = link_path(pin_dir, iface);
    let io_err = |source| LoadError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(links_dir(pin_dir)).map_err(io_err)?;
    if path.exists() {
        match replace(fg, &path) {
            Ok(()) => return Ok((previous.unwrap_or(AttachedMode::Native), true)),
            Err(e) => {
                // The interface went away or the link is stale: start over.
                warn!(iface, error = %e, "could not reuse the pinned XDP link, attaching anew");
                std::fs::remove_file(&path).map_err(io_err)?;
            }
        }
    }
    let (attached, id) = fg.attach(iface, mode)?;
    let program = program_mut(fg.ebpf_mut())?;
    let link = program.take_link(id).map_err(LoadError::Program)?;
    let fd: FdLink = link.try_into()?;
    fd.pin(&path).map_err(|source| LoadError::Pin {
        path: path.clone(),
        source,
    })?;
    Ok((attached, false))
}

fn replace(fg: &mut Floodgate, path: &Path) -> Result<(), LoadError> {
    let pinned = PinnedLink::from_pin(path)?;
    let fd: FdLink = pinned.into();
    let link = XdpLink::try_from(fd)?;
    let program = program_mut(fg.ebpf_mut())?;
    let id = program.attach_to_link(link).map_err(LoadError::Program)?;
    // Hand the link back to its pin: dropping the program must not detach it.
    let link = program.take_link(id).map_err(LoadError::Program)?;
    let _fd: FdLink = link.try_into()?;
    Ok(())
}

/// Detaches the program from `iface` and removes its pinned link.
///
/// Removing the pin alone is not enough: bpffs drops its reference to the link
/// only after an RCU grace period, so the program would go on filtering for a
/// moment after `detach` answered. BPF_LINK_DETACH takes it off the interface
/// before this returns; the pin is removed after.
pub fn detach(pin_dir: &Path, iface: &str) -> std::io::Result<bool> {
    let path = link_path(pin_dir, iface);
    match crate::kernel::sys::obj_get(&path)
        .and_then(|link| crate::kernel::sys::link_detach(std::os::fd::AsFd::as_fd(&link)))
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        // A link whose interface is gone is already detached (ENOLINK, EINVAL).
        Err(e) => warn!(iface, error = %e, "BPF_LINK_DETACH failed; removing the pin alone"),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Interfaces with a pinned link.
pub fn pinned_interfaces(pin_dir: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(links_dir(pin_dir)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}
