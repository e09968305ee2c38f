//! The XDP program, embedded in the binary at build time (see build.rs).

/// The eBPF object built from `ebpf/floodgate-ebpf`, or an empty stub when the
/// binary was built without `FLOODGATE_BUILD_EBPF=1`.
pub static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/floodgate.bpf.o"));

/// Benchmark companions: `xdp_drop`, `parse_drop` and the `xdp_gen` generator.
pub static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench.bpf.o"));

/// True when this binary carries no program (built without `cargo xtask build`).
pub fn is_stub() -> bool {
    OBJECT.is_empty()
}
