//! The `earthcatalog` command: parses arguments, sets up logging, runs the subcommand.

mod backfill;
mod cli;
mod config;
mod incremental;
mod info;
mod lease;
mod sample;
mod server;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// Exit code of a run that finished but could not ingest some items (they are listed).
const EXIT_ITEMS_FAILED: u8 = 3;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    earthcatalog_common::logging::init(&cli.log_format);
    match dispatch(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Incremental(args) => {
            let cfg = config::IncrementalConfig::try_from(args)?;
            let json = cfg.json;
            let summary = incremental::run(cfg).await?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            }
            tracing::info!(
                "done: {} items -> {} rows in {} files, {} snapshots, {} failed, {} skipped, {:.0} items/s",
                summary.items_ingested,
                summary.rows,
                summary.files,
                summary.snapshots,
                summary.items_failed + summary.malformed_rows,
                summary.items_skipped,
                summary.items_per_second()
            );
            Ok(if summary.has_failures() {
                ExitCode::from(EXIT_ITEMS_FAILED)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Info(args) => {
            info::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sample(args) => {
            sample::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backfill(args) => run_backfill(args, backfill::config::Mode::Backfill).await,
        Command::Coordinator(args) => run_backfill(args, backfill::config::Mode::Coordinator).await,
    }
}

async fn run_backfill(
    args: cli::BackfillArgs,
    mode: backfill::config::Mode,
) -> anyhow::Result<ExitCode> {
    let cfg = backfill::config::BackfillConfig::from_args(args, mode)?;
    let json = cfg.json;
    let summary = backfill::run(cfg).await?;
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
