//! The `floodgate` binary: a thin shell over the library's CLI.

fn main() -> std::process::ExitCode {
    floodgate::cli::main()
}
