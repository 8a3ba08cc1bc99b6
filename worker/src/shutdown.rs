//! When to stop taking work and how long running tasks may still take.
//!
//! Order on a stop request (SIGTERM, a spot notice, or the embedding process): stop taking
//! work → let running tasks finish within the window → hand the rest back → exit.

use std::time::Duration;

use earthcatalog_common::signals::stop_requested;
use tokio_util::sync::CancellationToken;

/// A stop request shared by the worker's parts.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Cancelled when the worker must stop taking work.
    pub stop_taking: CancellationToken,
    window: std::sync::Arc<std::sync::Mutex<Option<Duration>>>,
}

impl Shutdown {
    /// A shutdown that `parent` also triggers (with `default_window`).
    pub fn new(parent: &CancellationToken) -> Self {
        Shutdown { stop_taking: parent.child_token(), window: Default::default() }
    }

    /// Stops taking work; running tasks get `window` to finish (the shortest request wins).
    pub fn request(&self, why: &str, window: Duration) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        *w = Some(w.map_or(window, |old| old.min(window)));
        tracing::warn!(window_s = window.as_secs_f64(), "{why}: draining");
        self.stop_taking.cancel();
    }

    /// The window running tasks have, once stopping (`default` if none was given).
    pub fn window(&self, default: Duration) -> Duration {
        self.window.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or(default)
    }
}

/// Requests a drain on SIGTERM or Ctrl-C, giving running tasks `window`.
pub fn on_signals(shutdown: Shutdown, window: Duration) {
    tokio::spawn(async move {
        tokio::select! {
            signal = stop_requested() => shutdown.request(signal.name(), window),
            _ = shutdown.stop_taking.cancelled() => {}
        }
    });
}
