//! The lease service alone: many simulated workers doing acquire + complete round trips over
//! gRPC on loopback, and the coordinator memory taken by 100,000 tracked tasks.
//!
//! `cargo bench -p earthcatalog-coordinator --bench lease_service` (prints one line per
//! measurement). Results are recorded in docs/benchmarks.md (## Backfill).
#![allow(missing_docs, clippy::unwrap_used, dead_code)]

#[path = "../src/lease/mod.rs"]
mod lease;
#[path = "../src/metrics.rs"]
mod metrics;
#[path = "../src/backfill/results.rs"]
mod results;
#[path = "../src/scaling/mod.rs"]
mod scaling;
#[path = "../src/server.rs"]
mod server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use earthcatalog_common::backfill::StagingLayout;
use earthcatalog_common::ids::{CellYear, RunId};
use earthcatalog_common::location::Location;
use earthcatalog_common::rpc::pb::coordinator_client::CoordinatorClient;
use earthcatalog_common::rpc::{CompactReport, CompactTask, PhaseKind, TaskReport, TaskSpec, pb};
use earthcatalog_common::stores::{S3Settings, Stores};
use lease::scheduler::{LeaseSettings, PhasePlan, Scheduler};
use lease::state::RetryRules;
use tokio_util::sync::CancellationToken;

const TASKS: u64 = 20_000;
const WORKERS: usize = 32;
const TRACKED: u64 = 100_000;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn scheduler(name: &str) -> Arc<Scheduler> {
    let stores = Arc::new(Stores::new(S3Settings::default()));
    let layout = StagingLayout::new(
        &Location::parse(&format!("memory://{name}/staging")).unwrap(),
        RunId::new(),
    );
    let check = lease::check::OutputCheck::new(stores.clone(), layout.clone());
    let results = results::RunResults::new(stores, layout);
    let settings = LeaseSettings {
        lease: Duration::from_secs(60),
        renew_every: Duration::from_secs(15),
        rules: RetryRules {
            max_attempts: 3,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        },
    };
    Arc::new(Scheduler::new("bench".into(), settings, Arc::new(results), Arc::new(check)))
}

fn plan(tasks: u64) -> PhasePlan {
    let warehouse = Location::parse("memory://bench/wh").unwrap();
    PhasePlan {
        kind: PhaseKind::Compact,
        tasks,
        done: Vec::new(),
        subjects: Vec::new(),
        make: Arc::new(move |task, _token| {
            TaskSpec::Compact(CompactTask {
                partition: CellYear::new(format!("cell{task}"), Some(2020)),
                staged: Vec::new(),
                warehouse: warehouse.clone(),
                run: RunId::from_string("bench"),
                compact_rows: 100_000,
                object_times: None,
            })
        }),
    }
}

async fn round_trips() {
    let s = scheduler("rt");
    s.start_phase(plan(TASKS));
    let endpoint = server::Endpoint::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("http://{}", endpoint.address());
    let stop = CancellationToken::new();
    let served =
        tokio::spawn(endpoint.serve(s.clone(), server::ServeOptions::default(), stop.clone()));
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            let mut c = CoordinatorClient::connect(url).await.unwrap();
            let id = format!("sim-{w}");
            let mut done = 0u64;
            loop {
                let r = c
                    .acquire(pb::AcquireRequest { worker_id: id.clone(), max_tasks: 1 })
                    .await
                    .unwrap()
                    .into_inner();
                let Some(lease) = r.leases.into_iter().next() else { break };
                let report = TaskReport::Compact(CompactReport::default());
                let req = pb::CompleteRequest {
                    worker_id: id.clone(),
                    lease: lease.r#ref,
                    result: Some(pb::TaskResult::from(&report)),
                };
                c.complete(req).await.unwrap();
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "lease round trips (acquire + complete, {WORKERS} simulated workers, loopback gRPC): {total} in {secs:.2} s = {:.0}/s",
        total as f64 / secs
    );
    stop.cancel();
    let _ = served.await;
}

fn tracked_memory() {
    let before = rss_bytes();
    let s = scheduler("mem");
    s.start_phase(plan(TRACKED));
    let granted = s.acquire("one-worker", TRACKED as usize).map(|(g, _)| g.len()).unwrap_or(0);
    let after = rss_bytes();
    println!(
        "{TRACKED} tasks tracked ({granted} leased at once): coordinator memory +{:.1} MB",
        (after.saturating_sub(before)) as f64 / 1e6
    );
}

fn main() {
    tracked_memory();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(round_trips());
}
