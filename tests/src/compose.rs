//! A backfill deployed with `deploy/compose` under test: the images of `scripts/build-images.sh`
//! (built once per test process, from the debug binaries), the compose file with the local-S3
//! override, one compose project per test with its own loopback ports, and the faults a fleet
//! meets (`docker kill`, `pause`, a network cut, a coordinator restart, scaling). Every
//! container, network and volume of the project is removed on drop, also when the test failed
//! (after printing the containers' logs).
//!
//! Deployments run one at a time in a test process: each is a coordinator, several workers and
//! an S3 server on two cores, and the fault tests use short leases.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use earthcatalog_common::location::Location;
use earthcatalog_common::rpc::pb;
use earthcatalog_common::rpc::pb::coordinator_client::CoordinatorClient;
use earthcatalog_common::stores::{S3Settings, Stores};
use futures::TryStreamExt;
use object_store::ObjectStore;

use crate::binaries;
use crate::cluster::free_port;
use crate::ingest::get;
use crate::python::{Python, workspace_root};
use crate::readers::{TableView, read_table_with_env};

/// The token the test deployments share.
pub const TOKEN: &str = "compose-test-token";
/// The bucket of the compose file (its default `BUCKET`).
pub const BUCKET: &str = "earthcatalog";
/// S3 keys of the test server (it accepts any pair).
const S3_KEY: &str = "test";

/// The `docker compose` command of this machine: the plugin, else the standalone v1 tool.
fn compose_program() -> &'static [&'static str] {
    static PROGRAM: OnceLock<&'static [&'static str]> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let plugin = Command::new("docker").args(["compose", "version"]).output();
        if plugin.is_ok_and(|o| o.status.success()) {
            &["docker", "compose"]
        } else {
            &["docker-compose"]
        }
    })
}

/// Whether this machine has a Docker engine and a compose tool.
pub fn docker_available() -> bool {
    let engine = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    let compose =
        Command::new(compose_program()[0]).args(&compose_program()[1..]).arg("version").output();
    engine.is_ok_and(|o| o.status.success()) && compose.is_ok_and(|o| o.status.success())
}

/// The images every deployment runs: `(earthcatalog, earthcatalog-s3)`, built once per process.
pub fn images() -> anyhow::Result<&'static (String, String)> {
    static IMAGES: OnceLock<Result<(String, String), String>> = OnceLock::new();
    IMAGES
        .get_or_init(|| {
            // The script packs the debug binaries the tests run, built here as every test builds
            // them (a build from inside `cargo test` would see its variables and redo crates).
            binaries::earthcatalog();
            let script = workspace_root().join("scripts/build-images.sh");
            let out = Command::new("bash")
                .arg(&script)
                .args(["--debug", "--no-build", "--tag", "test"])
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "{} failed:\n{}",
                    script.display(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let mut last = stdout.lines().rev().take(2);
            let s3 = last.next().unwrap_or_default().to_string();
            let app = last.next().unwrap_or_default().to_string();
            Ok((app, s3))
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// What a deployment runs: sample size, chunk size, workers and their slots, lease length.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Items the `sample` service writes.
    pub items: u64,
    /// Items per ingest task.
    pub chunk_size: u64,
    /// Worker containers started with the deployment.
    pub workers: usize,
    /// Task slots per worker.
    pub slots: usize,
    /// Lease length in seconds.
    pub lease_seconds: u64,
}

impl Default for Plan {
    fn default() -> Self {
        Plan { items: 200, chunk_size: 20, workers: 3, slots: 2, lease_seconds: 4 }
    }
}

/// One compose project under test, removed on drop.
pub struct Deployment {
    project: String,
    vars: Vec<(String, String)>,
    s3_port: u16,
    coordinator_port: u16,
    runtime: tokio::runtime::Runtime,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Deployment {
    /// Builds the images (once) and brings up `deploy/compose` as project `ec-<name>-<pid>`.
    pub fn up(name: &str, plan: &Plan) -> anyhow::Result<Deployment> {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let (app, s3) = images()?.clone();
        let (s3_port, console_port, coordinator_port) = (free_port()?, free_port()?, free_port()?);
        let (metrics_port, status_port) = (free_port()?, free_port()?);
        let vars = [
            ("EARTHCATALOG_IMAGE", app),
            ("EARTHCATALOG_S3_IMAGE", s3),
            ("EARTHCATALOG_TOKEN", TOKEN.to_string()),
            ("MINIO_ROOT_USER", S3_KEY.to_string()),
            ("MINIO_ROOT_PASSWORD", S3_KEY.to_string()),
            ("SAMPLE_ITEMS", plan.items.to_string()),
            ("CHUNK_SIZE", plan.chunk_size.to_string()),
            ("WORKER_SLOTS", plan.slots.to_string()),
            ("LEASE_SECONDS", plan.lease_seconds.to_string()),
            ("S3_PORT", s3_port.to_string()),
            ("S3_CONSOLE_PORT", console_port.to_string()),
            ("COORDINATOR_PORT", coordinator_port.to_string()),
            ("COORDINATOR_METRICS_PORT", metrics_port.to_string()),
            ("COORDINATOR_STATUS_PORT", status_port.to_string()),
            ("RUST_LOG", "info".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let project = format!("ec-{name}-{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let d =
            Deployment { project, vars, s3_port, coordinator_port, runtime, _one_at_a_time: guard };
        // Leftovers of an earlier run of this test process id would clash; there are none
        // normally, and `down` of an absent project is a no-op.
        d.down();
        d.compose_ok(&["up", "-d", "--scale", &format!("worker={}", plan.workers)])?;
        Ok(d)
    }

    /// The compose project name (prefix of its containers and networks).
    pub fn project(&self) -> &str {
        &self.project
    }

    fn compose_dir() -> PathBuf {
        workspace_root().join("deploy/compose")
    }

    /// Runs the compose tool with this project's files, name and variables.
    pub fn compose(&self, args: &[&str]) -> anyhow::Result<Output> {
        let program = compose_program();
        Command::new(program[0])
            .args(&program[1..])
            .args(["-f", "docker-compose.yml", "-f", "docker-compose.local-s3.yml"])
            .args(["-p", &self.project])
            .args(args)
            .current_dir(Self::compose_dir())
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .with_context(|| format!("running {} {args:?}", program.join(" ")))
    }

    /// Runs the compose tool and fails unless it succeeds.
    pub fn compose_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.compose(args)?;
        if !out.status.success() {
            bail!("compose {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `docker ARGS` and fails unless it succeeds.
    pub fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("docker").args(args).output().context("running docker")?;
        if !out.status.success() {
            bail!("docker {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The ids of `service`'s containers (running or not), found by the labels compose puts
    /// on them: `docker ps` answers in milliseconds where the v1 compose tool takes a second,
    /// and a fault test must act within a task's duration.
    pub fn containers(&self, service: &str) -> anyhow::Result<Vec<String>> {
        let out = self.docker(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])?;
        Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
    }

    /// The one container of `service`.
    pub fn container(&self, service: &str) -> anyhow::Result<String> {
        let all = self.containers(service)?;
        match all.as_slice() {
            [one] => Ok(one.clone()),
            _ => bail!("service {service} has {} containers, not one", all.len()),
        }
    }

    /// Everything `container` logged (all its restarts).
    pub fn logs(&self, container: &str) -> String {
        Command::new("docker")
            .args(["logs", container])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    }

    /// `(running, exit code)` of `container`; a container being restarted counts as running.
    pub fn state(&self, container: &str) -> anyhow::Result<(bool, i64)> {
        let out = self.docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.Restarting}} {{.State.ExitCode}}",
            container,
        ])?;
        let parts: Vec<&str> = out.split_whitespace().collect();
        let [running, restarting, code] = parts.as_slice() else {
            bail!("unexpected docker inspect output {out:?}");
        };
        Ok((*running == "true" || *restarting == "true", code.parse()?))
    }

    /// Waits until `container` has exited for good and returns its exit code.
    pub fn wait_exit(&self, container: &str, timeout: Duration) -> anyhow::Result<i64> {
        let start = Instant::now();
        loop {
            let (running, code) = self.state(container)?;
            if !running {
                return Ok(code);
            }
            if start.elapsed() > timeout {
                bail!(
                    "{container} still running after {timeout:?}; log:\n{}",
                    self.logs(container)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until a log line of `container` contains `needle` `times` times.
    pub fn wait_log(
        &self,
        container: &str,
        needle: &str,
        times: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        while self.logs(container).matches(needle).count() < times {
            if start.elapsed() > timeout {
                bail!(
                    "{container} never logged '{needle}' {times}x; log:\n{}",
                    self.logs(container)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The coordinator's status, through its port published on 127.0.0.1.
    pub fn status(&self) -> anyhow::Result<pb::StatusResponse> {
        let url = format!("http://127.0.0.1:{}", self.coordinator_port);
        self.runtime.block_on(async move {
            let mut client = CoordinatorClient::connect(url).await?;
            let mut request = tonic::Request::new(pb::StatusRequest {});
            request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse()?);
            Ok(client.status(request).await?.into_inner())
        })
    }

    /// Polls the status until `ready` holds; fails after `timeout`, or once the coordinator
    /// container stopped answering because it exited.
    pub fn wait_status(
        &self,
        timeout: Duration,
        what: &str,
        ready: impl Fn(&pb::StatusResponse) -> bool,
    ) -> anyhow::Result<pb::StatusResponse> {
        let start = Instant::now();
        let coordinator = self.container("coordinator")?;
        loop {
            match self.status() {
                Ok(s) if ready(&s) => return Ok(s),
                Ok(_) => {}
                // Only an unanswered poll costs a `docker inspect`: polls must stay fast enough
                // to catch a task that lasts half a second.
                Err(_) if !self.state(&coordinator)?.0 => {
                    bail!(
                        "the coordinator exited while waiting for {what}:\n{}",
                        self.logs(&coordinator)
                    )
                }
                Err(_) => {}
            }
            if start.elapsed() > timeout {
                bail!("no {what} after {timeout:?}; coordinator log:\n{}", self.logs(&coordinator));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the run holds a lease in `phase` (`ingest` or `compact`).
    pub fn holds_a_lease(s: &pb::StatusResponse, phase: &str) -> bool {
        let counts = if phase == "ingest" { &s.ingest } else { &s.compact };
        s.phase == phase && counts.as_ref().is_some_and(|c| c.leased >= 1)
    }

    /// The `AWS_*` variables that reach the S3 server through its published port.
    pub fn s3_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.s3_port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", S3_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", S3_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn stores(&self) -> Stores {
        Stores::new(S3Settings {
            endpoint: Some(format!("http://127.0.0.1:{}", self.s3_port)),
            region: Some("us-east-1".into()),
            allow_http: Some(true),
            access_key_id: Some(S3_KEY.into()),
            secret_access_key: Some(S3_KEY.into()),
            ..Default::default()
        })
    }

    fn location(rel: &str) -> Location {
        Location::S3 { bucket: BUCKET.into(), prefix: rel.into() }
    }

    /// Every object key under `rel` in the bucket, as `s3://` URIs.
    pub fn objects(&self, rel: &str) -> anyhow::Result<BTreeSet<String>> {
        let stores = self.stores();
        let folder = Self::location(rel);
        self.runtime.block_on(async {
            let o = stores.resolve(&folder)?;
            let store: &dyn ObjectStore = o.store.as_ref();
            let metas: Vec<_> = store.list(Some(&o.path)).try_collect().await?;
            Ok(metas.into_iter().map(|m| format!("s3://{BUCKET}/{}", m.location)).collect())
        })
    }

    /// The published table as PyIceberg reads it: the catalog object downloaded through the S3
    /// port, the data files read through it too.
    pub fn read_table(&self, py: &Python, scratch: &std::path::Path) -> anyhow::Result<TableView> {
        let bytes =
            self.runtime.block_on(get(&self.stores(), &Self::location("catalog/catalog.db")))?;
        let db = scratch.join("published.db");
        std::fs::write(&db, bytes)?;
        read_table_with_env(py, &db, &format!("s3://{BUCKET}/warehouse"), &self.s3_env())
    }

    /// Removes every container, network and volume of the project.
    pub fn down(&self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans", "--timeout", "0"]);
    }

    fn print_logs(&self) {
        let out = self.compose(&["logs", "--no-color", "--tail", "200"]);
        if let Ok(out) = out {
            eprintln!(
                "---- compose logs of {} ----\n{}",
                self.project,
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        // A paused container cannot be removed; unpause them all first.
        if let Ok(ids) = self.containers("worker") {
            for id in ids {
                let _ = Command::new("docker").args(["unpause", &id]).output();
            }
        }
        self.down();
    }
}
