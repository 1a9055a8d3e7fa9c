//! The `portwatch` binary: runs a subcommand and maps its outcome to an exit
//! code. Everything else lives in the library.

use std::process::ExitCode;

/// jemalloc, set (in `.cargo/config.toml`) to give freed memory back to
/// the system after a second: with a million sensors, glibc's allocator
/// kept about 400 MB that start-up had freed (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    portwatch::cli::main()
}
