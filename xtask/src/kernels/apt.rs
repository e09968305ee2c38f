//! Debian's kernel packages, through apt and the machine's own sources: the
//! host's lists for its own architecture, and a private apt state below
//! `target/kernels/` for a foreign one (nothing on the host changes: no
//! `dpkg --add-architecture`, no foreign lists in /var/lib/apt).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::util;

/// apt for one Debian architecture.
pub struct Apt {
    arch: &'static str,
    /// `-o` options of the private state; empty for the host's own architecture.
    options: Vec<String>,
}

impl Apt {
    /// apt for `arch`: the host's when it is the host's architecture.
    pub fn new(arch: &'static str, state: &Path) -> Result<Apt> {
        let host = util::output(Command::new("dpkg").arg("--print-architecture"))
            .context("dpkg --print-architecture")?;
        if host.trim() == arch {
            return Ok(Apt {
                arch,
                options: Vec::new(),
            });
        }
        let dir = state.join(format!("apt-{arch}"));
        for sub in ["lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let options = [
            format!("APT::Architecture={arch}"),
            format!("APT::Architectures={arch}"),
            format!("Dir::State::Lists={}", dir.join("lists").display()),
            format!("Dir::Cache={}", dir.join("cache").display()),
            // No installed packages: apt must not reason about the host's.
            "Dir::State::Status=/dev/null".to_owned(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_owned(), o])
        .collect();
        Ok(Apt { arch, options })
    }

    fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(&self.options);
        cmd
    }

    /// Refreshes the package lists (the archive drops superseded kernels).
    pub fn update(&self) -> Result<()> {
        util::run(self.cmd("apt-get").args(["update", "-q"]))
            .with_context(|| format!("apt-get update for {}", self.arch))
    }

    /// Package names starting with `prefix`.
    pub fn names(&self, prefix: &str) -> Result<Vec<String>> {
        let out = util::output(self.cmd("apt-cache").args(["pkgnames", prefix]))
            .with_context(|| format!("apt-cache pkgnames {prefix} ({})", self.arch))?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// The kernel image package `linux-image-ARCH` depends on: the stock kernel.
    pub fn stock_kernel(&self) -> Result<String> {
        let meta = format!("linux-image-{}", self.arch);
        let out = util::output(self.cmd("apt-cache").args(["depends", &meta]))
            .with_context(|| format!("apt-cache depends {meta}"))?;
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|d| d.starts_with("linux-image-"))
            .map(str::to_owned)
            .with_context(|| format!("{meta} depends on no linux-image package"))
    }

    /// Downloads `package` into `dir` unless a .deb of it is there; returns the file.
    pub fn download(&self, package: &str, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let arch = self.arch;
        let find = || -> Result<Option<PathBuf>> {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.starts_with(&format!("{package}_"))
                    && name.ends_with(&format!("_{arch}.deb"))
                {
                    return Ok(Some(path));
                }
            }
            Ok(None)
        };
        if let Some(deb) = find()? {
            return Ok(deb);
        }
        util::run(
            self.cmd("apt-get")
                .args(["download", "-q", &format!("{package}:{arch}")])
                .current_dir(dir),
        )?;
        match find()? {
            Some(deb) => Ok(deb),
            None => bail!(
                "apt-get download {package} left no .deb in {}",
                dir.display()
            ),
        }
    }
}
