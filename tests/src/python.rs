//! Third-party checkers (pyarrow, geopandas, DuckDB, PyIceberg) run from the project's venv.
//!
//! `scripts/setup-python.sh` installs them into `.venv`; the test command runs it, and so does the
//! first test of a process that needs a checker (once, and a no-op when `.venv` is current). In CI
//! (`CI=true`) and under the test command (`EARTHCATALOG_REQUIRE_CHECKERS=1`, which installed
//! them) a missing checker is a failure, never a skip; a bare `cargo test` says so and returns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};

/// The root of the workspace (where `.venv` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Whether every checker is required: in CI, and under the test command.
pub fn in_ci() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| v == "true" || v == "1");
    set("CI") || set("EARTHCATALOG_REQUIRE_CHECKERS")
}

/// The venv's Python interpreter.
#[derive(Debug, Clone)]
pub struct Python {
    exe: PathBuf,
}

/// Runs `scripts/setup-python.sh` once per process: it installs or updates `.venv` when
/// `tests/python/requirements.txt` changed and returns at once otherwise.
fn install_once() -> Result<(), String> {
    static SETUP: OnceLock<Result<(), String>> = OnceLock::new();
    SETUP
        .get_or_init(|| {
            let script = workspace_root().join("scripts/setup-python.sh");
            let out = Command::new("bash")
                .arg(&script)
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if out.status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err(format!("{} failed: {}", script.display(), stderr.trim()))
        })
        .clone()
}

impl Python {
    /// The checker interpreter, installing it first if needed; `None` (after a note on stderr)
    /// when it cannot be had and we are not in CI. Panics in CI when it is missing.
    pub fn find(test: &str) -> Option<Python> {
        let (exe, setup) = match std::env::var_os("EARTHCATALOG_PYTHON") {
            Some(exe) => (PathBuf::from(exe), Ok(())),
            None => (workspace_root().join(".venv/bin/python"), install_once()),
        };
        if exe.is_file() && setup.is_ok() {
            return Some(Python { exe });
        }
        let why = setup.err().unwrap_or_else(|| "run scripts/setup-python.sh".into());
        let msg = format!("{test}: python checkers not installed at {} ({why})", exe.display());
        if in_ci() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED {msg}");
        None
    }

    /// Path of the interpreter.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Runs `script` with `args` and returns its stdout; fails with stderr when it exits non-zero.
    pub fn run(&self, script: &str, args: &[&str]) -> anyhow::Result<String> {
        self.run_with_env(script, args, &[])
    }

    /// Like [`Python::run`], with extra environment variables.
    pub fn run_with_env(
        &self,
        script: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let out = Command::new(&self.exe)
            .arg("-c")
            .arg(script)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "python check failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// Runs `script` and parses its last stdout line as JSON.
    pub fn run_json(&self, script: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let out = self.run(script, args)?;
        let last = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        serde_json::from_str(last).with_context(|| format!("python output is not JSON: {out}"))
    }
}

/// Python prelude that opens DuckDB with the extensions shipped in the venv (no download).
pub const DUCKDB_PRELUDE: &str = r#"
import os, sysconfig, duckdb
_ext = os.path.join(sysconfig.get_paths()["purelib"], "duckdb_ext", "extensions")
def duck():
    con = duckdb.connect(config={"extension_directory": _ext, "autoinstall_known_extensions": "false"})
    return con
"#;
