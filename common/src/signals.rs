//! Waiting for the process to be asked to stop (SIGTERM from a supervisor, Ctrl-C).
//!
//! Handled explicitly rather than left to the default action: as PID 1 in a container, a
//! process without a handler never receives SIGTERM and is only killed when the grace period
//! ends.

/// What asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM.
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
}

impl StopSignal {
    /// The conventional exit code of a process ended by this signal (128 + its number).
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::Terminate => 143,
            StopSignal::Interrupt => 130,
        }
    }

    /// Its name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Interrupt => "SIGINT",
        }
    }
}

/// Resolves when the process gets SIGTERM or SIGINT (never, if neither can be watched).
pub async fn stop_requested() -> StopSignal {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot watch SIGINT");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = terminate => StopSignal::Terminate,
        _ = interrupt => StopSignal::Interrupt,
    }
}
