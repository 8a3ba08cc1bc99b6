//! `earthcatalog-worker`: parses arguments, sets up logging, runs the worker.

mod cli;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use earthcatalog_common::logging::error_report;
use tokio_util::sync::CancellationToken;

/// mimalloc: the process makes and frees many small buffers per written file, where it spends
/// far less time than the system allocator (`docs/benchmarks.md`, cost per written file).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code of a worker that stopped before the run finished (EX_TEMPFAIL): a supervisor
/// should count it as neither success nor a crash and let another worker take over.
const EXIT_DRAINED: u8 = 75;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    earthcatalog_common::logging::init(&args.log_format);
    if let Some(addr) = args.metrics_listen
        && let Err(e) = earthcatalog_common::prometheus::serve(addr, "earthcatalog-worker")
    {
        eprintln!("error: {}", error_report(&e));
        return ExitCode::FAILURE;
    }
    let stores = Arc::new(args.s3.stores());
    let config = match earthcatalog_worker::WorkerConfig::try_from(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", error_report(e.as_ref()));
            return ExitCode::FAILURE;
        }
    };
    match earthcatalog_worker::run(config, stores, CancellationToken::new()).await {
        Ok(summary) if summary.finished => {
            tracing::info!(completed = summary.completed, "done: the run is finished");
            ExitCode::SUCCESS
        }
        Ok(summary) => {
            tracing::info!(
                completed = summary.completed,
                released = summary.released,
                "stopped before the run finished; unfinished tasks were handed back"
            );
            ExitCode::from(EXIT_DRAINED)
        }
        Err(e) => {
            eprintln!("error: {}", error_report(&e));
            ExitCode::FAILURE
        }
    }
}
