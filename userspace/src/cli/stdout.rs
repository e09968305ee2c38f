//! The CLI's standard output. A reader that goes away (`floodgate stats | head
//! -1`) ends the command as SIGPIPE ends any Unix filter, quietly; Rust's
//! `println!` would panic instead ("failed printing to stdout"). SIGPIPE stays
//! ignored otherwise, so a daemon that hangs up is reported, not a silent death.

use std::io::{self, Write as _};

/// Writes `args` to stdout; on a closed pipe the process ends by SIGPIPE.
pub(crate) fn write(args: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    written(out.write_fmt(args).and_then(|()| out.flush()));
}

/// Writes `bytes` (man pages, completions) to stdout like [`write`].
pub(crate) fn write_bytes(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    written(out.write_all(bytes).and_then(|()| out.flush()));
}

fn written(result: io::Result<()>) {
    if let Err(e) = result {
        if e.kind() == io::ErrorKind::BrokenPipe {
            die_of_sigpipe();
        }
        // Anything else (a full disk under `> file`) is as fatal as for cat.
        eprintln!("floodgate: writing to stdout: {e}");
        std::process::exit(1);
    }
}

fn die_of_sigpipe() -> ! {
    // SAFETY: SIG_DFL is a valid disposition; raising it ends the process, as
    // the write would have without Rust's SIG_IGN.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE);
}

/// `println!` for the CLI.
macro_rules! outln {
    () => { $crate::cli::stdout::write(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::cli::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the CLI.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::stdout::write(format_args!($($arg)*)) };
}

pub(crate) use {out, outln};
