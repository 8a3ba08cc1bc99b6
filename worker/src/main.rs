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

/// Blocking threads beyond one per slot: object_store's local file system and `tokio::fs` run
/// each file operation on one.
const IO_BLOCKING_THREADS: usize = 16;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Each compaction holds a blocking thread for its whole run, and the allocator keeps freed
    // memory per thread for a while. Tokio's default (up to 512, spawned as a burst of file
    // operations asks) let a worker run 87 threads and peak at 1.6 GB on 20,000 local items;
    // bounded, 417 MB at the same speed (docs/benchmarks.md, backfill).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(args.slots.max(1) + IO_BLOCKING_THREADS)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: cli::Cli) -> ExitCode {
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
