//! The `earthcatalog` command: parses arguments, sets up logging, runs the subcommand.

mod backfill;
mod cli;
mod config;
mod delta;
mod health;
mod incremental;
mod info;
mod lease;
mod lease_host;
mod maintenance;
mod metrics;
mod read_table;
mod sample;
mod scaling;
mod search;
mod serve;
mod server;
mod status;
mod status_page;
mod sync;

use std::process::ExitCode;

use clap::Parser;
use earthcatalog_common::logging::error_report;
use earthcatalog_common::signals::stop_requested;
use earthcatalog_common::stores::Stores;

use cli::{Cli, Command};

/// mimalloc: the process makes and frees many small buffers per written file, where it spends
/// far less time than the system allocator (`docs/benchmarks.md`, cost per written file).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code of a run that finished but could not ingest some items (they are listed).
const EXIT_ITEMS_FAILED: u8 = 3;
/// How long a stopping process waits for its catalog lock to be released (one conditional
/// write; the client's own retries take about a second).
const RELEASE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the process waits, once its work is done, for the runtime's background tasks to stop.
/// sqlx's pool maintenance task (behind the SQLite catalog) was seen spinning without yielding
/// during runtime shutdown, and a plain `#[tokio::main]` then never exits.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run());
    runtime.shutdown_timeout(EXIT_GRACE);
    code
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    earthcatalog_common::logging::init(&cli.log_format);
    let stores = cli.s3.stores();
    let s3_buckets = cli.s3.env_value();
    let outcome = tokio::select! {
        outcome = dispatch(cli.command, &stores, s3_buckets) => Ok(outcome),
        signal = stop_requested() => Err(signal),
    };
    // A run stopped by a signal dropped its catalog lock: let the release finish before the
    // runtime goes, so a rerun is not refused until the lock expires.
    earthcatalog_common::lock::finish_releases(RELEASE_GRACE).await;
    match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            // Said once, on stderr: a log line as well would repeat it there.
            eprintln!("error: {}", error_report(e.as_ref()));
            ExitCode::FAILURE
        }
        Err(signal) => {
            // Everything this process commits is resumable (runs are idempotent, a backfill
            // resumes from staging), so stopping at once is safe, as a kill would be.
            tracing::warn!("{}: stopping; rerun with the same flags to resume", signal.name());
            ExitCode::from(signal.exit_code())
        }
    }
}

async fn dispatch(
    command: Command,
    stores: &Stores,
    s3_buckets: String,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Incremental(args) => {
            let cfg = config::IncrementalConfig::try_from(args)?;
            let json = cfg.json;
            let summary = incremental::run(cfg, stores).await?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            }
            tracing::info!(
                "done: {} items -> {} rows in {} files, {} snapshots, {} failed, {} skipped, {} duplicates dropped, {:.0} items/s",
                summary.items_ingested,
                summary.rows,
                summary.files,
                summary.snapshots,
                summary.items_failed + summary.malformed_rows,
                summary.items_skipped,
                summary.duplicates_dropped,
                summary.items_per_second()
            );
            Ok(if summary.has_failures() {
                ExitCode::from(EXIT_ITEMS_FAILED)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Info(args) => {
            info::run(args, stores).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sample(args) => {
            sample::run(args, stores).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backfill(args) => {
            run_backfill(args, backfill::config::Mode::Backfill, stores, s3_buckets).await
        }
        Command::Coordinator(args) => {
            run_backfill(args, backfill::config::Mode::Coordinator, stores, s3_buckets).await
        }
        Command::Health(args) => {
            health::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => {
            status::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Compact(args) => {
            maintenance::compact::run(args, stores, s3_buckets).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Delta(args) => {
            delta::run(args, stores).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync(args) => {
            sync::run(args, stores).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ExpireSnapshots(args) => {
            maintenance::expire::run(args, stores).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::RemoveOrphans(args) => {
            maintenance::orphans::run(args, stores).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Search(args) => {
            search::run(args, stores).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            serve::run(args, stores).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run_backfill(
    args: cli::BackfillArgs,
    mode: backfill::config::Mode,
    stores: &Stores,
    s3_buckets: String,
) -> anyhow::Result<ExitCode> {
    let mut cfg = backfill::config::BackfillConfig::from_args(args, mode)?;
    cfg.service.s3_buckets = s3_buckets;
    let json = cfg.json;
    let summary = backfill::run(cfg, stores).await?;
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    tracing::info!(
        "done: {} chunks, {} items ({} failed) -> {} rows in {} files, {} partitions, {:.1} s",
        summary.chunks,
        summary.items,
        summary.failed_items,
        summary.rows,
        summary.files,
        summary.partitions,
        summary.seconds
    );
    Ok(if summary.failed_items > 0 { ExitCode::from(EXIT_ITEMS_FAILED) } else { ExitCode::SUCCESS })
}
