//! A running `earthcatalog serve` on a free 127.0.0.1 port, and the HTTP calls tests make to it
//! (JSON in and out, following `next` links). The process is killed and reaped on drop.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cluster::free_port;
use crate::site::command;

/// How long the server may take to load the table and listen.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A served table.
pub struct Served {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
    /// The root URL, `http://127.0.0.1:PORT`.
    pub url: String,
    http: reqwest::Client,
}

/// A response: its status and its JSON body (`Null` when it is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// The body as JSON.
    pub body: Value,
}

impl Served {
    /// Starts `earthcatalog serve` with the catalog flags `catalog` (and `extra` flags) and
    /// waits until the landing page answers.
    pub async fn start(
        catalog: &[String],
        extra: &[&str],
        env: &[(String, String)],
    ) -> anyhow::Result<Served> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("serve.log");
        let file = std::fs::File::create(&log)?;
        let port = free_port()?;
        let mut args = vec!["serve".to_string(), "--listen".into(), format!("127.0.0.1:{port}")];
        args.extend(catalog.iter().cloned());
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = command(&args, env)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting earthcatalog serve")?;
        let mut served = Served {
            child,
            log,
            _dir: dir,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let start = Instant::now();
        loop {
            if let Some(status) = served.child.try_wait()? {
                bail!("earthcatalog serve exited ({status}); its log:\n{}", served.log());
            }
            if served.get("/").await.is_ok_and(|r| r.status == 200) {
                return Ok(served);
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!("earthcatalog serve not ready after {READY_TIMEOUT:?}:\n{}", served.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET` of a path (with its query) or of a full URL.
    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        reply(self.http.get(self.absolute(path)).send().await?).await
    }

    /// `POST` of a JSON body (raw bytes, so malformed bodies can be sent too).
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> anyhow::Result<Reply> {
        let request =
            self.http.post(self.absolute(path)).header("content-type", "application/json");
        reply(request.body(body).send().await?).await
    }

    /// The ids of every item of a search, following `next` links (GET or POST) from `first`.
    pub async fn all_pages(&self, first: Reply) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut page = first;
        for _ in 0..10_000 {
            if page.status != 200 {
                bail!("a page failed: {} {}", page.status, page.body);
            }
            ids.extend(item_ids(&page.body));
            let Some(next) = page.body["links"]
                .as_array()
                .and_then(|ls| ls.iter().find(|l| l["rel"] == "next"))
                .cloned()
            else {
                return Ok(ids);
            };
            let href = next["href"].as_str().context("a next link without href")?;
            page = match next["method"].as_str() {
                Some("POST") => self.post(href, next["body"].to_string()).await?,
                _ => self.get(href).await?,
            };
        }
        bail!("more than 10,000 pages")
    }

    fn absolute(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.url) }
    }
}

/// The ids of a FeatureCollection's features, in order.
pub fn item_ids(collection: &Value) -> Vec<String> {
    collection["features"]
        .as_array()
        .map(|fs| fs.iter().filter_map(|f| f["id"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

async fn reply(response: reqwest::Response) -> anyhow::Result<Reply> {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = response.bytes().await?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Reply { status, content_type, body })
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- earthcatalog serve ----\n{}", self.log());
        }
    }
}
