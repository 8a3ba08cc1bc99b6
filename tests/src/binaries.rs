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
        // `cargo test` gives its tests variables (CARGO_PKG_*, CARGO_MANIFEST_DIR, ...) that some
        // build scripts watch; passed on, they make this build redo those crates every time.
        // With only the user's environment it is the same build `scripts/test.sh` already did.
        let keep = [
            "PATH",
            "HOME",
            "CARGO_HOME",
            "RUSTUP_HOME",
            "RUSTUP_TOOLCHAIN",
            "CARGO_TARGET_DIR",
            "CI",
            "TMPDIR",
        ];
        let status = Command::new(cargo)
            .env_clear()
            .envs(keep.iter().filter_map(|k| std::env::var_os(k).map(|v| (*k, v))))
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
