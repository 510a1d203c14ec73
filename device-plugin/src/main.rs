use std::process::ExitCode;

use clap::Parser;
use hami_device_plugin::runtime::{self, Args};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    hami_telemetry::init_tracing(args.log_json);
    match runtime::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One readable line (with causes), not a backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
