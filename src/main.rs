//! The `portwatch` binary: runs a subcommand and maps its outcome to an exit
//! code. Everything else lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    portwatch::cli::main()
}
