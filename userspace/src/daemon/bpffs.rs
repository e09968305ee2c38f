//! The pin dir must live on a bpffs. `ip netns exec` remounts /sys, hiding the
//! host's /sys/fs/bpf, so the daemon mounts one where it is missing.

use std::path::{Path, PathBuf};

use nix::{
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};
use tracing::info;

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error(
        "{dir} is not on a bpffs and mounting one failed ({source}); mount it yourself with \
         `mount -t bpf bpf {dir}` or pass --pin-dir on a bpffs"
    )]
    Mount {
        dir: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("creating {dir}: {source}")]
    Create {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn on_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == BPF_FS_MAGIC)
}

/// Makes sure `pin_dir` exists on a bpffs: mounts a bpffs on /sys/fs/bpf when the
/// pin dir is below it, or on the pin dir itself otherwise.
pub fn ensure(pin_dir: &Path) -> Result<(), BpffsError> {
    let mut existing = pin_dir;
    while !existing.exists() {
        match existing.parent() {
            Some(p) => existing = p,
            None => break,
        }
    }
    if !on_bpffs(existing) {
        let mount_point = if pin_dir.starts_with("/sys/fs/bpf") {
            PathBuf::from("/sys/fs/bpf")
        } else {
            pin_dir.to_owned()
        };
        std::fs::create_dir_all(&mount_point).map_err(|source| BpffsError::Create {
            dir: mount_point.clone(),
            source,
        })?;
        mount(
            Some("bpf"),
            &mount_point,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|source| BpffsError::Mount {
            dir: mount_point.clone(),
            source,
        })?;
        info!(dir = %mount_point.display(), "mounted a bpffs for the pins");
    }
    std::fs::create_dir_all(pin_dir).map_err(|source| BpffsError::Create {
        dir: pin_dir.to_owned(),
        source,
    })
}
