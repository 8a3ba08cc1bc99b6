//! Paths of the workspace's binaries, built once per test process.
//!
//! `scripts/test.sh` builds them before the tests, so the build here is a quick no-op there; a
//! developer running `cargo test` alone still gets binaries built from the current sources.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::python::workspace_root;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--workspace", "--bins"])
            .current_dir(workspace_root())
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build the binaries: {e}"));
        assert!(status.success(), "building the workspace binaries failed");
    });
}

/// The `earthcatalog` CLI.
pub fn earthcatalog() -> PathBuf {
    ensure_built();
    target_dir().join("debug").join("earthcatalog")
}

/// The `earthcatalog-worker` binary.
pub fn worker() -> PathBuf {
    ensure_built();
    target_dir().join("debug").join("earthcatalog-worker")
}
