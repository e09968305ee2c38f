//! The running kernel against what the program needs: probed before the
//! program is loaded, and the verifier's answer turned into one line when it is
//! rejected anyway. Either way the user reads what this kernel lacks, not
//! thousands of lines of verifier log (`floodgate run --verbose` prints those).

pub mod errno;
pub mod probe;
pub mod sys;
pub mod verifier;
pub mod walk;

use aya::sys::BpfHelper;

/// What floodgate is built and tested for, as every "lacks" line ends.
pub const NEEDS: &str = "Linux ≥ 6.1 with BTF";

/// The kernel release (`uname -r`), or "unknown" when /proc cannot tell.
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A BPF helper the program calls.
#[derive(Clone, Copy, Debug)]
pub struct Helper {
    pub id: BpfHelper,
    pub name: &'static str,
    /// The Linux release that added it.
    pub since: &'static str,
}

/// Every helper the program calls beyond the map lookups and updates any BPF
/// kernel has (from the object's `call` instructions). Old kernels name a
/// helper they do not know "unknown" in the verifier log; this table names it.
pub const HELPERS: [Helper; 5] = [
    Helper {
        id: BpfHelper::BPF_FUNC_ktime_get_ns,
        name: "bpf_ktime_get_ns",
        since: "4.1",
    },
    Helper {
        id: BpfHelper::BPF_FUNC_ringbuf_reserve,
        name: "bpf_ringbuf_reserve",
        since: "5.8",
    },
    Helper {
        id: BpfHelper::BPF_FUNC_ringbuf_submit,
        name: "bpf_ringbuf_submit",
        since: "5.8",
    },
    Helper {
        id: BpfHelper::BPF_FUNC_ringbuf_discard,
        name: "bpf_ringbuf_discard",
        since: "5.8",
    },
    Helper {
        id: BpfHelper::BPF_FUNC_ktime_get_coarse_ns,
        name: "bpf_ktime_get_coarse_ns",
        since: "5.11",
    },
];

/// The helper with this number, if the program calls it.
pub fn helper(id: u32) -> Option<&'static Helper> {
    HELPERS.iter().find(|h| h.id as u32 == id)
}

/// "this kernel (5.4.0) lacks X; floodgate needs Linux ≥ 6.1 with BTF".
pub fn lacks(release: &str, what: &str) -> String {
    format!("this kernel ({release}) lacks {what}; floodgate needs {NEEDS}")
}
