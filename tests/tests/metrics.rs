//! Prometheus metrics as an operator scrapes them: a real coordinator and worker with
//! `--metrics-listen`, a run in which a lease expires and an item is missing, and the numbers
//! the scrapes show against what happened. The names the shipped Grafana dashboard and the
//! KEDA autoscaler query must be ones the binaries really export.
#![allow(clippy::unwrap_used)]

#[path = "backfill_support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use earthcatalog_tests::cluster::{Cluster, free_port};
use earthcatalog_tests::ingest::BUCKET;
use earthcatalog_tests::python::workspace_root;
use support::{Env, TOKEN, WAIT};

/// One scrape: sample name with labels → value, and the `# TYPE` of each metric family.
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn get(port: u16) -> Scrape {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "{head}");
        let mut samples = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in body.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (name, kind) = t.split_once(' ').unwrap();
                types.insert(name.to_string(), kind.to_string());
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let (series, value) = line.rsplit_once(' ').unwrap();
                samples.insert(series.to_string(), value.parse().unwrap());
            }
        }
        Scrape { samples, types }
    }

    /// The value of `series` (name with labels exactly as exported), 0 when absent.
    fn value(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// The sum over every series of metric `name`.
    fn sum(&self, name: &str) -> f64 {
        self.samples.iter().filter(|(s, _)| s.split('{').next() == Some(name)).map(|(_, v)| v).sum()
    }

    /// Metric family names (histogram and summary parts folded into their family).
    fn families(&self) -> BTreeSet<String> {
        self.types.keys().cloned().collect()
    }

    /// Every label name used.
    fn label_names(&self) -> BTreeSet<String> {
        self.samples
            .keys()
            .filter_map(|s| s.split_once('{'))
            .flat_map(|(_, labels)| {
                labels
                    .trim_end_matches('}')
                    .split(',')
                    .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Names follow Prometheus conventions: the project prefix, counters end in `_total`, and
    /// labels come from small fixed sets (no item, cell or worker ids).
    fn assert_conventions(&self, who: &str) {
        for (name, kind) in &self.types {
            assert!(name.starts_with("earthcatalog_"), "{who}: {name} lacks the prefix");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{who}: counter {name} must end in _total");
            }
        }
        let allowed: BTreeSet<&str> =
            ["phase", "state", "outcome", "kind", "binary", "version", "quantile", "le"].into();
        for label in self.label_names() {
            assert!(allowed.contains(label.as_str()), "{who}: unexpected label {label}");
        }
    }
}

/// `earthcatalog_…` names referenced in `text`, with series suffixes folded into the family.
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("earthcatalog_") {
        let tail = &rest[at..];
        let end =
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let family =
            ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        out.insert(family.to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn coordinator_and_worker_metrics_count_what_happened_in_the_run() {
    let Some(env) = Env::prepare("metrics", 120) else { return };
    // One item the inventory names but the bucket lacks: a fetch failure of kind not_found.
    let mut inventory = env.samples.csv();
    inventory.push_str(&format!("{BUCKET},missing/never-written.stac.json,2024-01-01T00:00:00Z\n"));
    env.write("with-missing.csv", inventory.into_bytes());
    let (coordinator_port, worker_port) = (free_port().unwrap(), free_port().unwrap());
    let coordinator_listen = format!("127.0.0.1:{coordinator_port}");
    let args =
        env.coordinator_args_for("with-missing.csv", &["--metrics-listen", &coordinator_listen]);
    let mut c = Cluster::new(env.process_env(), args).unwrap();
    c.start_coordinator().unwrap();
    let mut worker_args = env.worker_args_slots(1);
    worker_args.extend(["--metrics-listen".into(), format!("127.0.0.1:{worker_port}")]);
    let w = c.start_worker(&worker_args).unwrap();

    // A lease runs out while the worker is paused.
    c.pause_holding_a_lease(w, Some(TOKEN), "ingest").unwrap();
    Cluster::wait_log(c.coordinator.as_mut().unwrap(), "lease expired", WAIT).unwrap();
    std::thread::sleep(Duration::from_millis(1500)); // one refresh of the status gauges
    let during = Scrape::get(coordinator_port);
    during.assert_conventions("coordinator");
    assert!(during.value(r#"earthcatalog_leases_granted_total{phase="ingest"}"#) >= 1.0);
    assert!(during.value("earthcatalog_leases_expired_total") >= 1.0);
    assert!(during.value(r#"earthcatalog_tasks{phase="ingest",state="pending"}"#) >= 1.0);
    assert_eq!(during.value(r#"earthcatalog_tasks{phase="ingest",state="leased"}"#), 0.0);
    assert_eq!(
        during.value(r#"earthcatalog_build_info{binary="earthcatalog",version="0.1.0"}"#),
        1.0
    );
    c.workers[w].signal("CONT").unwrap();

    // Mid Phase 3, the worker has ingested every chunk and written data files.
    let s = c
        .wait_status(Some(TOKEN), WAIT, "a compaction done", |s| {
            s.phase == "compact" && s.compact.as_ref().is_some_and(|c| c.done >= 1)
        })
        .unwrap();
    let worker = Scrape::get(worker_port);
    worker.assert_conventions("worker");
    // The coordinator's status gauges are refreshed every second: wait for one refresh after
    // the status read above (Phase 3 outlasts it).
    std::thread::sleep(Duration::from_millis(1500));
    let coordinator = Scrape::get(coordinator_port);
    coordinator.assert_conventions("coordinator");
    // 121 inventory rows in chunks of 20: 7 ingest tasks, each accepted once, though one lease
    // expired on the way (that attempt was given up and the task leased again).
    let chunks = s.ingest.unwrap().done as f64;
    assert_eq!(chunks, 7.0);
    assert_eq!(worker.value(r#"earthcatalog_fetch_failures_total{kind="not_found"}"#), 1.0);
    assert_eq!(
        worker.value(r#"earthcatalog_worker_tasks_total{phase="ingest",outcome="completed"}"#),
        chunks
    );
    let given_up = worker
        .value(r#"earthcatalog_worker_tasks_total{phase="ingest",outcome="abandoned"}"#)
        + worker.value(r#"earthcatalog_worker_tasks_total{phase="ingest",outcome="refused"}"#);
    assert!(given_up >= 1.0, "the paused attempt was given up or fenced off");
    assert!(worker.value("earthcatalog_files_written_total") >= 1.0);
    assert!(worker.value("earthcatalog_bytes_written_total") > 0.0);
    assert!(worker.value("earthcatalog_file_upload_duration_seconds_count") >= 1.0);
    assert_eq!(
        coordinator.value(r#"earthcatalog_results_total{phase="ingest",outcome="accepted"}"#),
        chunks,
        "each chunk accepted once"
    );
    assert!(coordinator.value("earthcatalog_leases_renewed_total") >= 1.0);
    assert_eq!(coordinator.value("earthcatalog_workers_alive"), 1.0);
    assert_eq!(coordinator.value("earthcatalog_items_ingested_total"), s.items as f64);
    assert_eq!(coordinator.sum("earthcatalog_tasks") as u64, {
        let (i, k) = (s.ingest.unwrap(), s.compact.unwrap());
        i.pending + i.leased + i.done + i.failed + k.pending + k.leased + k.done + k.failed
    });

    // The dashboard and the autoscaler only query what is exported.
    let exported: BTreeSet<String> =
        worker.families().union(&coordinator.families()).cloned().collect();
    for file in
        ["deploy/grafana/earthcatalog.json", "deploy/k8s/overlays/keda/worker-scaledjob.yaml"]
    {
        let text = std::fs::read_to_string(workspace_root().join(file)).unwrap();
        let used = referenced_metrics(&text);
        assert!(!used.is_empty(), "{file} queries no metric");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(unknown.is_empty(), "{file} queries metrics nobody exports: {unknown:?}");
    }

    let status = c.coordinator().wait(WAIT).unwrap();
    assert_eq!(status.code(), Some(3), "one item failed: {}", c.coordinator().log());
    env.assert_exact_table(1);
}
