//! `earthcatalog-worker`: parses arguments, sets up logging, runs the worker.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    earthcatalog_common::logging::init(&args.log_format);
    let config = match earthcatalog_worker::WorkerConfig::try_from(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match earthcatalog_worker::run(config, CancellationToken::new()).await {
        Ok(summary) => {
            tracing::info!(completed = summary.completed, finished = summary.finished, "done");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
