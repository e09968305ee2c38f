//! Every default path in one place.

/// Control socket of the daemon.
pub const SOCKET: &str = "/run/floodgate/floodgate.sock";
/// Where maps and XDP links are pinned (must be on a bpffs).
pub const PIN_DIR: &str = "/sys/fs/bpf/floodgate";
/// Runtime changes made from the CLI that survive reboots.
pub const STATE_DIR: &str = "/var/lib/floodgate";
/// The configuration file an installed daemon reads.
pub const CONFIG: &str = "/etc/floodgate/floodgate.toml";
/// Environment variable that overrides the socket path for the CLI.
pub const SOCKET_ENV: &str = "FLOODGATE_SOCKET";
