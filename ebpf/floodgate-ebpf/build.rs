//! Link settings for the XDP program.
use which::which;

fn main() {
    // Rebuild the program when bpf-linker changes (a new LLVM changes the object).
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
