//! The `ocync` command: builds the async runtime and hands the arguments to the library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    ocync::cli::run(std::env::args_os()).await
}
