//! Progress: a bar on a terminal, periodic log lines otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use earthcatalog_common::logging::{StderrOverlay, set_overlay};
use indicatif::{ProgressBar, ProgressStyle};

use super::summary::RunSummary;

/// How often plain log lines report progress when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Reports a run's progress.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Instant,
}

impl Progress {
    /// A bar when `wanted` and stderr is a terminal; log lines otherwise.
    pub fn new(wanted: bool) -> Self {
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            set_overlay(Some(Arc::new(BarOverlay(bar.clone()))));
            bar
        });
        let now = Instant::now();
        Progress { bar, started: now, last_log: now }
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Shows the current totals.
    pub fn update(&mut self, s: &RunSummary) {
        // Items read, not only ingested: a rerun ingests nothing but still makes progress.
        let rate = s.items_listed as f64 / self.elapsed().max(1e-9);
        let msg = format!(
            "{} items read ({} ingested, {} skipped, {} failures), {} rows, {} files, {:.0} items/s",
            s.items_listed,
            s.items_ingested,
            s.items_skipped,
            s.items_failed + s.malformed_rows,
            s.rows,
            s.files,
            rate
        );
        match &self.bar {
            Some(bar) => bar.set_message(msg),
            None if self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                tracing::info!("progress: {msg}");
            }
            None => {}
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            set_overlay(None);
            bar.finish_and_clear();
        }
    }
}

/// Log lines are written with the bar cleared, so they never tear through it.
struct BarOverlay(ProgressBar);

impl StderrOverlay for BarOverlay {
    fn suspend(&self, write: &mut dyn FnMut()) {
        self.0.suspend(write);
    }
}
