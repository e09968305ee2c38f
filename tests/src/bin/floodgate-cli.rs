//! The floodgate CLI and daemon, built inside the test crate so integration
//! tests can run the real binary (`CARGO_BIN_EXE_floodgate-cli`).

fn main() -> std::process::ExitCode {
    floodgate::cli::main()
}
