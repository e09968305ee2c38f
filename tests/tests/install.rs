//! `cargo xtask install --root` and `cargo xtask deb`, staged from the test
//! crate's build of the CLI (the same `floodgate::cli::main`), so no release
//! build is needed: the exact tree, modes, the unit (`systemd-analyze verify`),
//! config preservation, uninstall, and the package's control data.

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use xtask::{deb, install};

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");

/// Every file below `root`: relative path → permission bits.
fn tree(root: &Path) -> BTreeMap<String, u32> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u32>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let path = e.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("below root");
                out.insert(
                    rel.display().to_string(),
                    meta.permissions().mode() & 0o7777,
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn expected(entries: &[(&str, u32)]) -> BTreeMap<String, u32> {
    entries.iter().map(|(p, m)| ((*p).to_owned(), *m)).collect()
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

const LOCAL_TREE: &[(&str, u32)] = &[
    ("etc/default/floodgate", 0o644),
    ("etc/floodgate/floodgate.toml", 0o644),
    ("etc/systemd/system/floodgate.service", 0o644),
    ("usr/local/bin/floodgate", 0o755),
    (
        "usr/local/share/bash-completion/completions/floodgate",
        0o644,
    ),
    (
        "usr/local/share/fish/vendor_completions.d/floodgate.fish",
        0o644,
    ),
    ("usr/local/share/man/man1/floodgate.1", 0o644),
    ("usr/local/share/zsh/site-functions/_floodgate", 0o644),
];

#[test]
fn install_stages_the_tree_keeps_edited_config_and_uninstall_removes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let prefix = Path::new("/usr/local");
    let layout = install::Layout::new(prefix, root);
    install::stage(&layout, Path::new(BIN), Path::new(BIN), false).expect("install");

    assert_eq!(tree(root), expected(LOCAL_TREE));
    assert_eq!(
        std::fs::read(root.join("usr/local/bin/floodgate")).expect("binary"),
        std::fs::read(BIN).expect("built binary"),
        "the installed binary is the built one"
    );
    let unit = read(root.join("etc/systemd/system/floodgate.service"));
    assert!(!unit.contains("@BINDIR@"), "unsubstituted unit:\n{unit}");
    assert!(
        unit.lines().any(|l| l
            == "ExecStart=/usr/local/bin/floodgate run --config /etc/floodgate/floodgate.toml $FLOODGATE_ARGS"),
        "ExecStart is not the installed binary:\n{unit}"
    );
    assert!(unit.contains("ExecReload=/usr/local/bin/floodgate reload"));
    assert_eq!(
        read(root.join("etc/floodgate/floodgate.toml")),
        stdout(Command::new(BIN).args(["config", "default"])),
    );
    assert_eq!(read(root.join("etc/default/floodgate")), install::DEFAULTS);
    assert!(read(root.join("usr/local/share/man/man1/floodgate.1")).starts_with(".ie"));
    assert!(
        read(root.join("usr/local/share/bash-completion/completions/floodgate"))
            .contains("_floodgate()")
    );
    assert!(
        read(root.join("usr/local/share/zsh/site-functions/_floodgate"))
            .starts_with("#compdef floodgate")
    );
    assert!(
        read(root.join("usr/local/share/fish/vendor_completions.d/floodgate.fish"))
            .contains("complete -c floodgate")
    );

    verify_unit(root, &unit);

    // A second install replaces the program files, never the administrator's.
    let config = root.join("etc/floodgate/floodgate.toml");
    let defaults = root.join("etc/default/floodgate");
    std::fs::write(&config, "# edited policy\n").expect("edit");
    std::fs::write(&defaults, "FLOODGATE_ARGS=\"--iface eth7\"\n").expect("edit");
    std::fs::write(root.join("usr/local/bin/floodgate"), "stale").expect("edit");
    install::stage(&layout, Path::new(BIN), Path::new(BIN), false).expect("second install");
    assert_eq!(tree(root), expected(LOCAL_TREE));
    assert_eq!(read(&config), "# edited policy\n");
    assert_eq!(read(&defaults), "FLOODGATE_ARGS=\"--iface eth7\"\n");
    assert_eq!(
        std::fs::read(root.join("usr/local/bin/floodgate")).expect("binary"),
        std::fs::read(BIN).expect("built binary"),
    );

    // Uninstall takes everything but the two edited files.
    install::uninstall(prefix, root, false).expect("uninstall");
    assert_eq!(
        tree(root),
        expected(&[
            ("etc/default/floodgate", 0o644),
            ("etc/floodgate/floodgate.toml", 0o644)
        ])
    );
    assert_eq!(read(&config), "# edited policy\n");
}

/// `systemd-analyze verify` on the installed unit with its binary paths moved
/// below the staging root (verify checks that ExecStart exists), and `man`
/// pointed at the staged page (verify runs `man floodgate(1)` for Documentation=).
fn verify_unit(root: &Path, unit: &str) {
    let analyze = which("systemd-analyze");
    let staged_bin = root.join("usr/local/bin");
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("floodgate.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/", &format!("{}/", staged_bin.display())),
    )
    .expect("unit copy");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .env("MANPATH", root.join("usr/local/share/man"))
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn which(tool: &str) -> PathBuf {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{tool} is missing; `cargo xtask setup` installs it"))
}

const PACKAGE_FILES: &[(&str, &str)] = &[
    ("./etc/default/floodgate", "-rw-r--r--"),
    ("./etc/floodgate/floodgate.toml", "-rw-r--r--"),
    ("./lib/systemd/system/floodgate.service", "-rw-r--r--"),
    ("./usr/bin/floodgate", "-rwxr-xr-x"),
    (
        "./usr/share/bash-completion/completions/floodgate",
        "-rw-r--r--",
    ),
    (
        "./usr/share/fish/vendor_completions.d/floodgate.fish",
        "-rw-r--r--",
    ),
    ("./usr/share/man/man1/floodgate.1.gz", "-rw-r--r--"),
    (
        "./usr/share/zsh/vendor-completions/_floodgate",
        "-rw-r--r--",
    ),
];

#[test]
fn deb_package_has_the_tree_control_data_and_scripts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deb = deb::package(Path::new(BIN), Path::new(BIN), "amd64", dir.path()).expect("package");
    assert_eq!(
        deb,
        dir.path()
            .join(format!("floodgate_{}_amd64.deb", deb::VERSION))
    );
    let dpkg_deb = which("dpkg-deb");

    // Files: exactly these, owned by root, with these modes.
    let contents = stdout(Command::new(&dpkg_deb).arg("--contents").arg(&deb));
    let mut files = BTreeMap::new();
    for line in contents.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.get(1), Some(&"root/root"), "owner in: {line}");
        let (perms, path) = (f[0], *f.last().expect("path"));
        if !perms.starts_with('d') {
            files.insert(path.to_owned(), perms.to_owned());
        }
    }
    let want: BTreeMap<String, String> = PACKAGE_FILES
        .iter()
        .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
        .collect();
    assert_eq!(files, want, "dpkg-deb --contents:\n{contents}");

    // Control fields; a static binary depends on nothing.
    let info = stdout(Command::new(&dpkg_deb).arg("--info").arg(&deb));
    for field in [
        "Package: floodgate".to_owned(),
        format!("Version: {}", deb::VERSION),
        "Architecture: amd64".to_owned(),
        "Section: net".to_owned(),
        "Priority: optional".to_owned(),
        "Maintainer: ".to_owned(),
        "Installed-Size: ".to_owned(),
        "Description: XDP rate limiter for edge hosts".to_owned(),
    ] {
        assert!(
            info.contains(&format!(" {field}")),
            "no `{field}` in:\n{info}"
        );
    }
    assert!(!info.contains("Depends:"), "{info}");
    for script in ["postinst", "prerm", "postrm", "conffiles", "md5sums"] {
        assert!(
            info.contains(&format!(" {script}")),
            "no {script} in:\n{info}"
        );
    }

    // Unpack: conffiles, md5sums, the unit, the man page, the scripts.
    let x = dir.path().join("x");
    let ctrl = dir.path().join("control");
    stdout(Command::new(&dpkg_deb).arg("-x").arg(&deb).arg(&x));
    stdout(Command::new(&dpkg_deb).arg("-e").arg(&deb).arg(&ctrl));
    assert_eq!(
        read(ctrl.join("conffiles")),
        "/etc/floodgate/floodgate.toml\n/etc/default/floodgate\n"
    );
    let md5sums = read(ctrl.join("md5sums"));
    let listed: Vec<&str> = md5sums
        .lines()
        .map(|l| l.split_once("  ").expect("md5sums line").1)
        .collect();
    let not_conffiles: Vec<&str> = PACKAGE_FILES
        .iter()
        .map(|(p, _)| p.trim_start_matches("./"))
        .filter(|p| !p.starts_with("etc/"))
        .collect();
    assert_eq!(listed, not_conffiles);
    stdout(
        Command::new("md5sum")
            .args(["--check", "--strict", "--quiet"])
            .arg(ctrl.join("md5sums"))
            .current_dir(&x),
    );

    let unit = read(x.join("lib/systemd/system/floodgate.service"));
    assert!(unit.lines().any(|l| l
        == "ExecStart=/usr/bin/floodgate run --config /etc/floodgate/floodgate.toml $FLOODGATE_ARGS"));
    let man = stdout(
        Command::new("gzip")
            .arg("-dc")
            .arg(x.join("usr/share/man/man1/floodgate.1.gz")),
    );
    assert!(man.contains(".TH floodgate 1"), "{man}");

    for (name, text) in deb::SCRIPTS {
        let path = ctrl.join(name);
        assert_eq!(read(&path), text);
        let mode = std::fs::metadata(&path)
            .expect("script")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "{name} mode");
        assert!(text.starts_with("#!/bin/sh\n"), "{name}: not POSIX sh");
        assert!(text.contains("\nset -e\n"), "{name}: no set -e");
        // dash is Debian's /bin/sh: the scripts must parse as POSIX sh.
        stdout(Command::new("sh").arg("-n").arg(&path));
    }
}

/// Runs a maintainer script in a private mount namespace: tmpfs over /run
/// (with /run/systemd/system when `systemd_running`), /etc, /var/lib and
/// /sys/fs/bpf, and a `systemctl` that only logs, first in PATH. Returns the
/// logged systemctl calls, the script's stderr, and which of /etc/floodgate and
/// /var/lib/floodgate are left.
fn run_script(
    name: &str,
    args: &[&str],
    systemd_running: bool,
    defaults: &str,
) -> (Vec<String>, String, String) {
    let text = deb::SCRIPTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .expect("script");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir(d.join("bin")).expect("bin");
    let log = d.join("systemctl.log");
    let fake = d.join("bin/systemctl");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$*\" >> {}\n", log.display()),
    )
    .expect("fake");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(d.join("script"), text).expect("script");
    std::fs::write(d.join("defaults"), defaults).expect("defaults");
    let driver = format!(
        r#"set -e
mount -t tmpfs fg-run /run
{running}
mount -t tmpfs fg-etc /etc
mkdir -p /etc/default /etc/floodgate
cp {d}/defaults /etc/default/floodgate
touch /etc/floodgate/floodgate.toml.dpkg-old
mount -t tmpfs fg-varlib /var/lib
mkdir -p /var/lib/floodgate
touch /var/lib/floodgate/lists.json
mount -t tmpfs fg-bpf /sys/fs/bpf
PATH={d}/bin:$PATH sh {d}/script "$@"
for p in /etc/floodgate /var/lib/floodgate; do [ -e "$p" ] && echo "$p"; done
exit 0
"#,
        d = d.display(),
        running = if systemd_running {
            "mkdir -p /run/systemd/system"
        } else {
            ""
        },
    );
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &driver,
            "driver",
        ])
        .args(args)
        .output()
        .expect("unshare runs (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{name} {args:?} failed: {stderr}");
    let calls = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    (
        calls,
        stderr,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const NO_IFACE: &str = "FLOODGATE_ARGS=\"\"\n";
const IFACE: &str = "FLOODGATE_ARGS=\"--iface eth1\"\n";

#[test]
fn maintainer_scripts_drive_systemd_as_documented() {
    let kept = "/etc/floodgate\n/var/lib/floodgate\n";
    // Fresh install: enabled, started only once an interface is set.
    let (calls, err, _) = run_script("postinst", &["configure", ""], true, NO_IFACE);
    assert_eq!(calls, ["enable floodgate.service", "daemon-reload"]);
    assert!(
        err.contains("set the interfaces in /etc/default/floodgate"),
        "{err}"
    );
    let (calls, _, _) = run_script("postinst", &["configure", ""], true, IFACE);
    assert_eq!(
        calls,
        [
            "enable floodgate.service",
            "daemon-reload",
            "start floodgate.service"
        ]
    );
    // Upgrade: the old daemon kept running through prerm; restart it if running.
    let (calls, _, _) = run_script("prerm", &["upgrade", "0.2.0"], true, IFACE);
    assert!(calls.is_empty(), "{calls:?}");
    let (calls, _, _) = run_script("postinst", &["configure", "0.0.9"], true, IFACE);
    assert_eq!(
        calls,
        [
            "enable floodgate.service",
            "daemon-reload",
            "try-restart floodgate.service"
        ]
    );
    // Removal stops and disables; purge deletes state and leftovers.
    let (calls, _, left) = run_script("prerm", &["remove"], true, IFACE);
    assert_eq!(
        calls,
        ["stop floodgate.service", "disable floodgate.service"]
    );
    assert_eq!(left, kept);
    let (calls, _, left) = run_script("postrm", &["remove"], true, IFACE);
    assert_eq!(calls, ["daemon-reload"]);
    assert_eq!(left, kept);
    let (calls, _, left) = run_script("postrm", &["purge"], true, IFACE);
    assert_eq!(calls, ["daemon-reload"]);
    assert_eq!(left, "");

    // Without a running systemd nothing talks to the manager; enabling (only
    // symlinks) still happens, as with debhelper.
    let (calls, _, _) = run_script("postinst", &["configure", ""], false, IFACE);
    assert_eq!(calls, ["enable floodgate.service"]);
    let (calls, _, _) = run_script("postinst", &["configure", "0.0.9"], false, IFACE);
    assert_eq!(calls, ["enable floodgate.service"]);
    let (calls, _, _) = run_script("prerm", &["remove"], false, IFACE);
    assert_eq!(calls, ["disable floodgate.service"]);
    let (calls, _, left) = run_script("postrm", &["purge"], false, IFACE);
    assert!(calls.is_empty(), "{calls:?}");
    assert_eq!(left, "");
}
