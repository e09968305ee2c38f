// How the eBPF crate is built: one recipe for `userspace/build.rs` (this
// tree's program) and `tests/src/previous.rs` (an earlier commit's), both of
// which `include!` this file (and import `Path` and `Command` for it).
//
// It follows `aya_build::build_ebpf` but adds `-Ctarget-cpu=v3`: the limiter's
// buckets use BPF_ATOMIC fetch-and-add and compare-and-swap, which LLVM only
// emits for v3, and aya-build 0.2 sets the eBPF crate's rustflags itself.

/// The eBPF target triple; built objects land in `TARGET_DIR/EBPF_TARGET/release/`.
const EBPF_TARGET: &str = "bpfel-unknown-none";

/// The nightly `cargo build` of `floodgate-ebpf` in `workspace` for the host
/// architecture `arch` (aya-ebpf picks its definitions by it), building
/// `bins` (`["--bins"]`, or `["--bin", NAME]`) into `target_dir`.
fn ebpf_build_command(
    workspace: &Path,
    target_dir: &Path,
    arch: &str,
    bins: &[&str],
) -> Command {
    let flags = [
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
        "-Ctarget-cpu=v3".to_owned(),
        format!("--cfg=bpf_target_arch=\"{arch}\""),
    ];
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "build", "--package", "floodgate-ebpf"])
        .args(bins)
        .args(["--release", "--target", EBPF_TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(workspace)
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    // The outer build's compiler settings must not leak into the nightly build.
    for key in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER", "RUSTC_WRAPPER", "RUSTFLAGS", "CARGO"] {
        cmd.env_remove(key);
    }
    cmd
}
