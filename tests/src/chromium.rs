//! Debian's headless Chromium, for pages the binaries serve: the DOM after the page's scripts
//! ran, and screenshots. `scripts/setup-chromium.sh` installs it; in CI a missing browser is a
//! failure, never a skip.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::python::in_ci;

/// How long (virtual time) a page's scripts may run, fetches included, before the DOM is read.
const SCRIPT_BUDGET_MS: &str = "8000";

/// A headless Chromium.
#[derive(Debug, Clone)]
pub struct Chromium {
    exe: String,
    profile: std::sync::Arc<tempfile::TempDir>,
}

impl Chromium {
    /// The browser on PATH; `None` (after a note) when missing outside CI, a panic in CI.
    pub fn find(test: &str) -> Option<Chromium> {
        let found = Command::new("chromium").arg("--version").output();
        if found.is_ok_and(|o| o.status.success()) {
            let profile = tempfile::tempdir().ok()?;
            return Some(Chromium { exe: "chromium".into(), profile: profile.into() });
        }
        let msg = format!("{test}: chromium not found (run scripts/setup-chromium.sh)");
        if in_ci() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED {msg}");
        None
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.exe);
        // Root in a container has no user namespace sandbox; the pages are our own.
        c.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            .arg("--no-first-run")
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .arg(format!("--virtual-time-budget={SCRIPT_BUDGET_MS}"));
        c
    }

    /// The page at `url` as its scripts left it.
    pub fn dom(&self, url: &str) -> anyhow::Result<String> {
        let out = self.command().arg("--dump-dom").arg(url).output().context("running chromium")?;
        if !out.status.success() {
            bail!("chromium --dump-dom {url}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Saves a PNG of the page at `url`, `width` × `height` pixels, as `to`.
    pub fn screenshot(&self, url: &str, width: u32, height: u32, to: &Path) -> anyhow::Result<()> {
        let out = self
            .command()
            .arg(format!("--screenshot={}", to.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("--hide-scrollbars")
            .arg(url)
            .output()
            .context("running chromium")?;
        if !out.status.success() || !to.is_file() {
            bail!("chromium --screenshot {url}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

/// The text of every element carrying `attribute="value"` in `dom` (a serialized DOM), in order;
/// entities for `&`, `<` and `>` decoded.
pub fn texts_of(dom: &str, attribute: &str, value: &str) -> Vec<String> {
    let needle = format!("{attribute}=\"{value}\"");
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(at) = rest.find(&needle) {
        rest = &rest[at + needle.len()..];
        let Some(open_end) = rest.find('>') else { break };
        let body = &rest[open_end + 1..];
        let text = body.split('<').next().unwrap_or_default();
        out.push(text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"));
    }
    out
}
