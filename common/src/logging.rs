//! Log set-up shared by the binaries: levels from `RUST_LOG` (default `info`), to stderr, as text
//! (colours only on a terminal) or as JSON lines.
//!
//! A progress bar drawn on stderr registers itself as the [`StderrOverlay`]; every log line is
//! then written with the bar cleared and redrawn after it, instead of tearing through it.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, RwLock};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Something drawn on stderr (a progress bar) that must be cleared while a log line is written.
pub trait StderrOverlay: Send + Sync {
    /// Runs `write` with the overlay cleared, then draws it again.
    fn suspend(&self, write: &mut dyn FnMut());
}

static OVERLAY: RwLock<Option<Arc<dyn StderrOverlay>>> = RwLock::new(None);

/// Sets (or with `None` removes) the overlay log lines are written around.
pub fn set_overlay(overlay: Option<Arc<dyn StderrOverlay>>) {
    // A poisoned lock only means a panic while swapping an Option: the value is still whole.
    let mut slot = OVERLAY.write().unwrap_or_else(|e| e.into_inner());
    *slot = overlay;
}

/// Installs the global subscriber; `format` is `text` or `json`.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(OverlaidStderr)
        .with_ansi(std::io::stderr().is_terminal());
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Stderr, written around the overlay when there is one.
#[derive(Debug, Clone, Copy)]
struct OverlaidStderr;

impl<'a> MakeWriter<'a> for OverlaidStderr {
    type Writer = OverlaidStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl Write for OverlaidStderr {
    // The fmt layer formats a whole event and hands it over in one write_all, so one event is
    // one suspend of the overlay.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let overlay = OVERLAY.read().unwrap_or_else(|e| e.into_inner()).clone();
        match overlay {
            None => std::io::stderr().write(buf),
            Some(overlay) => {
                let mut result = Ok(buf.len());
                overlay
                    .suspend(&mut || result = std::io::stderr().write_all(buf).map(|()| buf.len()));
                result
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl StderrOverlay for Counting {
        fn suspend(&self, write: &mut dyn FnMut()) {
            self.0.fetch_add(1, Ordering::SeqCst);
            write();
        }
    }

    #[test]
    fn log_lines_are_written_with_the_overlay_suspended_once_each() {
        let overlay = Arc::new(Counting::default());
        set_overlay(Some(overlay.clone()));
        let mut w = OverlaidStderr;
        assert_eq!(w.write(b"").unwrap(), 0);
        assert_eq!(w.write(b"one line\n").unwrap(), 9);
        set_overlay(None);
        assert_eq!(w.write(b"").unwrap(), 0);
        assert_eq!(overlay.0.load(Ordering::SeqCst), 2);
    }
}

/// `error` with its causes, each said once: error types here name their source in their own
/// message, so a cause whose text the message already holds is not repeated.
pub fn error_report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod report_tests {
    use super::error_report;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the inventory")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read s3://b/inv.csv: {0}")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let e = Outer(Middle(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
        assert_eq!(
            error_report(&e),
            "reading the inventory: cannot read s3://b/inv.csv: no such file"
        );
    }
}
