//! The `portwatch` binary: runs a subcommand and maps its outcome to an exit
//! code. Everything else lives in the library.

use std::process::ExitCode;

/// mimalloc gives freed memory back to the system; glibc's allocator kept
/// about 400 MB of start-up memory with a million sensors.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    portwatch::cli::main()
}
