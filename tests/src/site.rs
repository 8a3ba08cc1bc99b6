//! Where an end-to-end case runs: a [`Backend`] (local files, or the moto S3 server with the
//! catalog kept in a `--catalog-store`), a [`Site`] holding one catalog and warehouse over
//! uploaded items, and the CLI run without the developer's settings.

use std::future::Future;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use earthcatalog_common::location::Location;
use earthcatalog_common::stores::{S3Settings, Stores};

use crate::binaries::earthcatalog;
use crate::ingest::{BUCKET, Samples, get, manifest, put};
use crate::python::Python;
use crate::readers::{TableView, read_table};
use crate::s3::S3Server;

/// Runs the CLI with `args` and extra environment; no AWS or EARTHCATALOG setting of the
/// developer's shell leaks in.
pub fn run(args: &[String], env: &[(String, String)]) -> Output {
    let out = command(args, env).output().expect("running earthcatalog");
    eprintln!("$ earthcatalog {}\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    out
}

/// The CLI with `args` and extra environment, and none of the developer's AWS or EARTHCATALOG
/// settings.
pub fn command(args: &[String], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(earthcatalog());
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with("AWS_") || name.starts_with("EARTHCATALOG_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("RUST_LOG", "info").args(args).envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// The `--json` summary (the last JSON line of stdout).
pub fn summary(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or("{}");
    serde_json::from_str(line).expect("the --json summary is JSON")
}

/// The process's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A path as a string argument.
pub fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Owned arguments.
pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Where a case runs.
#[derive(Clone, Copy)]
pub enum Backend {
    /// Local files only.
    Local,
    /// Everything in a bucket of the moto server, the catalog kept in a `--catalog-store`.
    S3(&'static S3Server),
}

/// One place to run cases: the items mirrored under `<base>/mirror`, and one catalog (with its
/// warehouse) under `<base>/<name>`.
pub struct Site {
    /// The S3 server, when the site is in a bucket.
    pub server: Option<&'static S3Server>,
    /// Stores reaching the site.
    pub stores: Stores,
    /// The site's root: items under `mirror/`, catalogs under their names.
    pub base: Location,
    /// This catalog's folder name under the base.
    pub name: String,
    /// Holds a local base alive.
    pub _base_dir: Option<Arc<tempfile::TempDir>>,
    /// The working copy of an S3 catalog, and files the test reads back.
    pub work: tempfile::TempDir,
}

impl Backend {
    /// A site with `samples` uploaded.
    pub async fn site(self, samples: &Samples) -> Site {
        let (server, stores, base, base_dir) = match self {
            Backend::Local => {
                let dir = tempfile::tempdir().expect("a temporary folder");
                let base = Location::local(dir.path()).expect("test site");
                (None, Stores::new(S3Settings::default()), base, Some(Arc::new(dir)))
            }
            Backend::S3(server) => {
                (Some(server), server.stores(), server.new_bucket().expect("test site"), None)
            }
        };
        let site = Site {
            server,
            stores,
            base,
            name: "main".into(),
            _base_dir: base_dir,
            work: tempfile::tempdir().expect("a temporary folder"),
        };
        samples.upload(&site.stores, &site.items()).await.expect("uploading the sample items");
        site
    }
}

impl Site {
    /// Another catalog and warehouse over the same items.
    pub fn fresh(&self, name: &str) -> Site {
        Site {
            server: self.server,
            stores: self.server.map_or_else(|| Stores::new(S3Settings::default()), |s| s.stores()),
            base: self.base.clone(),
            name: name.into(),
            _base_dir: self._base_dir.clone(),
            work: tempfile::tempdir().expect("a temporary folder"),
        }
    }

    /// Where the items are.
    pub fn items(&self) -> Location {
        self.base.join("mirror")
    }

    /// This catalog's folder.
    pub fn root(&self) -> Location {
        self.base.join(&self.name)
    }

    /// This catalog's warehouse.
    pub fn warehouse(&self) -> Location {
        self.root().join("warehouse")
    }

    /// The catalog the user names: the local file, or the object in the catalog store.
    pub fn catalog(&self) -> Location {
        match self.server {
            None => self.root().join("catalog.db"),
            Some(_) => self.root().join("store/catalog.db"),
        }
    }

    /// This catalog's lock object.
    pub fn lock(&self) -> Location {
        match self.server {
            None => self.root().join("catalog.db.lock"),
            Some(_) => self.root().join("store/.lock"),
        }
    }

    /// Where the failures must be listed by default: next to the catalog.
    pub fn failures(&self) -> Location {
        self.root().join(match self.server {
            None => "catalog.failures.jsonl",
            Some(_) => "store/catalog.failures.jsonl",
        })
    }

    /// Environment for the CLI (the S3 server's endpoint and keys).
    pub fn env(&self) -> Vec<(String, String)> {
        self.server.map(S3Server::env).unwrap_or_default()
    }

    /// Writes `bytes` at `<base>/<rel>`.
    pub async fn put(&self, rel: &str, bytes: Vec<u8>) -> Location {
        let at = self.base.join(rel);
        put(&self.stores, &at, bytes).await.expect("test site");
        at
    }

    /// A manifest's destination bucket for data files written under `<base>/`, and the
    /// `--source` that maps it there (none on S3, where the bucket is real).
    pub fn destination(&self) -> (String, Vec<String>) {
        match &self.base {
            Location::S3 { bucket, .. } => (bucket.clone(), Vec::new()),
            _ => (
                "inventory-destination".into(),
                strings(&["--source", &format!("inventory-destination={}", self.base)]),
            ),
        }
    }

    /// Writes a manifest at `<base>/<dir>/manifest.json` listing `files` (written under
    /// `<base>/data/`, except those given no bytes: listed, never written).
    pub async fn manifest(
        &self,
        dir: &str,
        format: &str,
        schema: &str,
        files: &[(&str, Option<&[u8]>)],
    ) -> Location {
        let (dest, _) = self.destination();
        let mut listed: Vec<(String, &[u8])> = Vec::new();
        for (name, bytes) in files {
            let key = format!("data/{name}");
            match bytes {
                Some(b) => {
                    self.put(&key, b.to_vec()).await;
                    listed.push((key, b));
                }
                None => listed.push((key, b"never written")),
            }
        }
        let m = manifest(format, schema, &dest, &listed);
        self.put(&format!("{dir}/manifest.json"), m.into_bytes()).await
    }

    /// `incremental` of `inventory` into this site's catalog, with `--json` and `extra` flags.
    pub fn args(&self, inventory: &Location, extra: &[&str]) -> Vec<String> {
        let mut v = strings(&["incremental", "--inventory", &inventory.to_string()]);
        v.extend(strings(&["--source", &format!("{BUCKET}={}", self.items())]));
        v.extend(self.catalog_args());
        v.push("--json".into());
        v.extend(self.destination().1);
        v.extend(strings(extra));
        v
    }

    /// The flags naming this site's catalog (its store on S3) and warehouse.
    pub fn catalog_args(&self) -> Vec<String> {
        let mut v = match self.server {
            None => strings(&["--catalog", &s(self.catalog().as_local_path().expect("test site"))]),
            Some(_) => strings(&[
                "--catalog",
                &s(&self.work.path().join("work.db")),
                "--catalog-store",
                &self.root().join("store").to_string(),
            ]),
        };
        v.extend(strings(&["--warehouse", &self.warehouse().to_string()]));
        v
    }

    /// Runs the maintenance `command` on this site's catalog with `extra` flags and `--json`.
    pub fn maintain(&self, command: &str, extra: &[&str]) -> Output {
        let mut v = strings(&[command]);
        v.extend(self.catalog_args());
        v.push("--json".into());
        v.extend(strings(extra));
        run(&v, &self.env())
    }

    /// Runs `incremental` of `inventory` with `extra` flags.
    pub fn run(&self, inventory: &Location, extra: &[&str]) -> Output {
        run(&self.args(inventory, extra), &self.env())
    }

    /// The stored catalog's bytes (`None` when there is none).
    pub async fn catalog_bytes(&self) -> Option<Vec<u8>> {
        get(&self.stores, &self.catalog()).await.ok()
    }

    /// A copy of the stored catalog (never the working copy) in the work folder.
    pub async fn catalog_copy(&self) -> std::path::PathBuf {
        let db = self.work.path().join("read.db");
        std::fs::write(&db, self.catalog_bytes().await.expect("no stored catalog"))
            .expect("test site");
        db
    }

    /// What PyIceberg sees in the stored catalog.
    pub async fn table(&self, py: &Python) -> TableView {
        let db = self.catalog_copy().await;
        read_table(py, &db, &self.warehouse().to_string(), self.server).expect("test site")
    }
}

/// Runs `case` on local files.
pub async fn on_local<F, Fut>(test: &str, case: F)
where
    F: FnOnce(Backend, Python) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(py) = Python::find(test) else { return };
    case(Backend::Local, py).await;
}

/// Runs `case` against the shared S3 server.
pub async fn on_s3<F, Fut>(test: &str, case: F)
where
    F: FnOnce(Backend, Python) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(py) = Python::find(test) else { return };
    let Some(server) = S3Server::shared(test) else { return };
    case(Backend::S3(server), py).await;
}

/// One test module per case, with an `on_local_files` and an `on_s3` test.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn on_local_files() {
                $crate::site::on_local(stringify!($case), super::$case).await;
            }
            #[tokio::test]
            async fn on_s3() {
                $crate::site::on_s3(stringify!($case), super::$case).await;
            }
        }
    )*};
}
