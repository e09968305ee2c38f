//! Private bpffs mounts for per-test pins.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// Prefix of [`BpfFs`] mount points in the temp dir; the creating PID follows it.
const BPFFS_PREFIX: &str = "floodgate-bpffs-";

/// Unmounts and removes `$TMPDIR/floodgate-bpffs-{pid}-*` of dead processes.
fn sweep_stale_bpffs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(BPFFS_PREFIX)) else {
            continue;
        };
        // "{pid}-{random}", and a directory: anything else is not ours.
        let Some(pid) = rest
            .split_once('-')
            .and_then(|(p, _)| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        let _ = umount2(&dir, MntFlags::MNT_DETACH);
        // remove_dir, not remove_dir_all: never delete through a mount.
        let _ = std::fs::remove_dir(&dir);
    }
}

/// A private bpffs mounted on a fresh temporary directory, for per-test pins.
/// Dropping it unmounts it (MNT_DETACH) and removes the directory.
pub struct BpfFs {
    dir: PathBuf,
}

impl BpfFs {
    pub fn new() -> Result<BpfFs> {
        sweep_stale_bpffs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{BPFFS_PREFIX}{}-", std::process::id()))
            .tempdir()
            .context("creating a directory for a bpffs")?
            .keep();
        if let Err(e) = mount(
            Some("bpf"),
            &dir,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        ) {
            let _ = std::fs::remove_dir(&dir);
            return Err(e).with_context(|| format!("mounting a bpffs on {}", dir.display()));
        }
        Ok(BpfFs { dir })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        match umount2(&self.dir, MntFlags::MNT_DETACH) {
            // Only an empty directory once unmounted; never delete through a mount.
            Ok(()) => {
                if let Err(e) = std::fs::remove_dir(&self.dir) {
                    eprintln!("removing {}: {e}", self.dir.display());
                }
            }
            Err(e) => eprintln!("unmounting {}: {e}", self.dir.display()),
        }
    }
}
