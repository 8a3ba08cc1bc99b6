//! A client that holds the shared token but is not an honest worker: it speaks the real gRPC
//! API to a real coordinator process and tries to finish work that is not its own. The
//! coordinator must refuse it, and the run must still end with exactly the expected rows.
#![allow(clippy::unwrap_used)]

#[path = "backfill_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use earthcatalog_common::fanout::fan_out;
use earthcatalog_common::geoparquet::{FileNamer, WriterOptions, write_partition};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::rpc::pb;
use earthcatalog_common::rpc::pb::coordinator_client::CoordinatorClient;
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::stac::parse_item_value;
use earthcatalog_tests::cluster::Cluster;
use support::{Env, TOKEN, WAIT};
use tonic::transport::Channel;

/// A hand-written client of the coordinator, with the shared token.
struct HandClient {
    runtime: tokio::runtime::Runtime,
    client: CoordinatorClient<Channel>,
}

impl HandClient {
    fn connect(url: &str) -> HandClient {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = runtime.block_on(CoordinatorClient::connect(url.to_string())).unwrap();
        HandClient { runtime, client }
    }

    fn request<T>(message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        request
    }

    fn register(&mut self, name: &str) -> String {
        let request = Self::request(pb::RegisterRequest { name: name.into(), slots: 1 });
        self.runtime.block_on(self.client.register(request)).unwrap().into_inner().worker_id
    }

    /// Asks until a lease of `phase` is granted; leases of another phase are handed back.
    fn acquire(&mut self, worker: &str, phase: pb::Phase) -> pb::Lease {
        let start = Instant::now();
        loop {
            let message = pb::AcquireRequest { worker_id: worker.into(), max_tasks: 1 };
            let response =
                self.runtime.block_on(self.client.acquire(Self::request(message))).unwrap();
            for lease in response.into_inner().leases {
                let r = lease.r#ref.unwrap();
                if r.phase == phase as i32 {
                    return lease;
                }
                self.release(worker, r);
            }
            assert!(start.elapsed() < WAIT, "no {phase:?} lease granted");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn complete(
        &mut self,
        worker: &str,
        lease: pb::LeaseRef,
        result: pb::task_result::Kind,
    ) -> pb::ReportResponse {
        let message = pb::CompleteRequest {
            worker_id: worker.into(),
            lease: Some(lease),
            result: Some(pb::TaskResult { kind: Some(result) }),
        };
        self.runtime.block_on(self.client.complete(Self::request(message))).unwrap().into_inner()
    }

    fn release(&mut self, worker: &str, lease: pb::LeaseRef) -> u32 {
        let message = pb::ReleaseRequest { worker_id: worker.into(), leases: vec![lease] };
        self.runtime
            .block_on(self.client.release(Self::request(message)))
            .unwrap()
            .into_inner()
            .released
    }
}

/// The refusal's reason; panics when the report was accepted.
fn refused(response: &pb::ReportResponse) -> String {
    match &response.outcome {
        Some(pb::report_response::Outcome::Refused(r)) => r.reason.clone(),
        other => panic!("the report was not refused: {other:?}"),
    }
}

fn empty_ingest() -> pb::task_result::Kind {
    pb::task_result::Kind::Ingest(pb::IngestResult::default())
}

#[test]
fn a_client_cannot_complete_another_workers_lease_by_guessing_its_token_and_every_id_is_registered()
{
    let Some(env) = Env::prepare("backfill_foreign_lease", 50) else { return };
    let mut c = Cluster::new(env.process_env(), env.coordinator_args(&[])).unwrap();
    c.start_coordinator().unwrap();
    c.wait_status(Some(TOKEN), WAIT, "Phase 1", |s| s.phase == "ingest").unwrap();
    let mut hand = HandClient::connect(&c.url());
    let intruder = hand.register("intruder");
    let victim = hand.register("victim");
    // The intruder is granted a lease just before the victim: with sequential tokens, the
    // victim's token was the intruder's plus one.
    let own = hand.acquire(&intruder, pb::Phase::Ingest).r#ref.unwrap();
    let held = hand.acquire(&victim, pb::Phase::Ingest).r#ref.unwrap();
    let guessed = pb::LeaseRef { token: own.token + 1, ..held };
    let reason = refused(&hand.complete(&intruder, guessed, empty_ingest()));
    assert!(reason.contains("not the current lease"), "{reason}");
    // Even with the victim's very token (say, read off an object name), it is not the
    // intruder's lease.
    let reason = refused(&hand.complete(&intruder, held, empty_ingest()));
    assert!(reason.contains("held by another worker"), "{reason}");
    assert_eq!(hand.release(&intruder, held), 0, "nor can it hand the lease back");
    let status = c.status(Some(TOKEN)).unwrap();
    let ingest = status.ingest.unwrap();
    assert_eq!((ingest.done, ingest.leased), (0, 2), "the victim's lease is untouched");
    assert_eq!(hand.release(&victim, held), 1);
    assert_eq!(hand.release(&intruder, own), 1);
    drop(hand);

    c.start_worker(&env.worker_args()).unwrap();
    assert!(c.coordinator().wait(WAIT).unwrap().success(), "{}", c.coordinator().log());
    assert!(c.coordinator().log().contains("50 items (0 failed)"), "{}", c.coordinator().log());
    env.assert_exact_table(1);
    assert!(env.warehouse_files_are_exactly_the_registered_ones());
}

#[test]
fn a_compact_result_naming_a_file_outside_its_partition_is_refused_and_never_registered() {
    let Some(env) = Env::prepare("backfill_foreign_file", 50) else { return };
    let mut c = Cluster::new(env.process_env(), env.coordinator_args(&[])).unwrap();
    c.start_coordinator().unwrap();
    let worker = c.start_worker(&env.worker_args_slots(1)).unwrap();
    // Once compaction starts, the honest worker is paused so that tasks are left to take.
    let status = c.wait_status(Some(TOKEN), WAIT, "Phase 3", |s| s.phase == "compact").unwrap();
    c.workers[worker].signal("STOP").unwrap();
    let mut hand = HandClient::connect(&c.url());
    let me = hand.register("forger");
    let lease = hand.acquire(&me, pb::Phase::Compact);
    let r = lease.r#ref.unwrap();
    let Some(pb::task::Kind::Compact(task)) = lease.task.unwrap().kind else { panic!("compact") };

    // A real data file with this run's and this attempt's name, in another partition's folder
    // of the warehouse, holding an item that is not in the inventory.
    let outsider = parse_item_value(&itslive_item(999)).unwrap().row;
    let rows = fan_out(outsider, &["8000fffffffffff".to_string()]);
    let partition = rows[0].partition();
    assert_ne!(partition.cell, task.cell);
    let namer = FileNamer::new(RunId::from_string(&status.run_id), format!("c{}", r.token));
    let warehouse = env.bucket.join("wh");
    let stores = env.stores();
    let written = hand.runtime.block_on(write_partition(
        &stores,
        &warehouse,
        &partition,
        &rows,
        &namer,
        &WriterOptions::default(),
    ));
    let forged = written.unwrap().location.uri();
    let result = pb::task_result::Kind::Compact(pb::CompactResult {
        files: vec![pb::DataFile { uri: forged.clone(), rows: 1 }],
        input_rows: 1,
        duplicates_dropped: 0,
    });
    let reason = refused(&hand.complete(&me, r, result));
    assert!(reason.contains(&forged) && reason.contains("partition folder"), "{reason}");
    drop(hand);

    // The refused attempt counts as failed: the task is leased again, to the honest worker.
    c.workers[worker].signal("CONT").unwrap();
    assert!(c.coordinator().wait(WAIT).unwrap().success(), "{}", c.coordinator().log());
    assert!(!env.registered_files().contains(&forged), "the forged file is not registered");
    env.assert_exact_table(1);
}
