//! The backfill as users deploy it: `deploy/compose` with the images of
//! `scripts/build-images.sh` (MinIO swapped for the local S3 image), a coordinator container and
//! worker containers on a control network, everyone on a data network with S3. Each test ends
//! with the table read back by PyIceberg through the S3 port published on 127.0.0.1: exactly the
//! sample's (id, grid_partition) rows, each once, whatever happened to the containers.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use earthcatalog_tests::compose::{Deployment, Plan, docker_available};
use earthcatalog_tests::ingest::Samples;
use earthcatalog_tests::python::{Python, in_ci};

/// Longest wait for any one step (2 busy cores, a serialized S3 server, containers).
const WAIT: Duration = Duration::from_secs(180);

/// One worker with one slot and chunks of 50 items (8 ingest tasks), so that an ingest task
/// outlasts a status poll plus a `docker pause`: the fault tests catch a lease while it is held.
fn one_slow_worker() -> Plan {
    Plan { items: 400, chunk_size: 50, workers: 1, slots: 1, ..Plan::default() }
}

/// PyIceberg, or `None` (skipped) where Docker or Python is missing outside CI.
fn checkers(test: &str) -> Option<Python> {
    if !docker_available() {
        assert!(!in_ci(), "{test}: Docker Engine with compose is required in CI");
        eprintln!("SKIPPED {test}: no Docker Engine with compose");
        return None;
    }
    Python::find(test)
}

/// Waits for the coordinator to finish with exit 0, then checks what a user would: the exact
/// rows, only registered data files in the warehouse, staging gone.
fn assert_run_completes_exactly(d: &Deployment, py: &Python, items: u64) {
    let coordinator = d.container("coordinator").unwrap();
    let code = d.wait_exit(&coordinator, WAIT).unwrap();
    assert_eq!(code, 0, "the coordinator failed:\n{}", d.logs(&coordinator));
    let scratch = tempfile::tempdir().unwrap();
    let view = d.read_table(py, scratch.path()).unwrap();
    let expected = Samples::itslive(0, items).expected_rows(1);
    assert_eq!(view.row_count, view.rows.len(), "no (id, cell) row is duplicated");
    assert_eq!(view.rows.len(), expected.len());
    assert_eq!(view.rows, expected);
    let data_files: std::collections::BTreeSet<String> = d
        .objects("warehouse")
        .unwrap()
        .into_iter()
        .filter(|o| o.ends_with(".parquet") && o.contains("/grid_partition="))
        .collect();
    assert_eq!(data_files, view.files, "warehouse data files vs registered files");
    let staging: Vec<String> =
        d.objects("staging").unwrap().into_iter().filter(|o| !o.contains("/pending/")).collect();
    assert!(staging.is_empty(), "staging left behind: {staging:?}");
}

/// Pauses the only worker container at a moment it holds a `phase` lease (re-reading the status
/// after the pause: a task may have finished in between) and returns its id, paused.
fn pause_holding_a_lease(d: &Deployment, phase: &str) -> String {
    let worker = d.container("worker").unwrap();
    let start = std::time::Instant::now();
    loop {
        d.wait_status(WAIT, &format!("a {phase} lease"), |s| Deployment::holds_a_lease(s, phase))
            .unwrap();
        d.docker(&["pause", &worker]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let after = d.status().unwrap();
        if Deployment::holds_a_lease(&after, phase) {
            return worker;
        }
        eprintln!("paused between two tasks ({:?}); trying again", after.ingest);
        d.docker(&["unpause", &worker]).unwrap();
        assert!(start.elapsed() < WAIT, "the worker never held a {phase} lease when paused");
    }
}

#[test]
fn three_worker_containers_backfill_the_sample_exactly() {
    let Some(py) = checkers("compose_clean") else { return };
    let plan = Plan::default();
    let d = Deployment::up("clean", &plan).unwrap();
    assert_eq!(d.containers("worker").unwrap().len(), 3);
    assert_run_completes_exactly(&d, &py, plan.items);
    for w in d.containers("worker").unwrap() {
        assert_eq!(d.wait_exit(&w, WAIT).unwrap(), 0, "worker {w}:\n{}", d.logs(&w));
    }
    let coordinator = d.container("coordinator").unwrap();
    assert!(d.logs(&coordinator).contains("done: 10 chunks, 200 items (0 failed)"));
}

#[test]
fn a_worker_container_killed_mid_ingest_does_not_change_the_result() {
    let Some(py) = checkers("compose_kill") else { return };
    let plan = one_slow_worker();
    let d = Deployment::up("kill", &plan).unwrap();
    // Paused first so that the kill lands while a lease is held, not between two tasks.
    let victim = pause_holding_a_lease(&d, "ingest");
    d.docker(&["kill", &victim]).unwrap();
    d.compose_ok(&["up", "-d", "--no-deps", "--scale", "worker=2", "worker"]).unwrap();
    assert_run_completes_exactly(&d, &py, plan.items);
    let coordinator = d.container("coordinator").unwrap();
    assert!(d.logs(&coordinator).contains("lease expired"), "{}", d.logs(&coordinator));
}

#[test]
fn a_worker_container_paused_past_its_lease_loses_its_task_and_its_late_result() {
    let Some(py) = checkers("compose_pause") else { return };
    let plan = one_slow_worker();
    let d = Deployment::up("pause", &plan).unwrap();
    let paused = pause_holding_a_lease(&d, "ingest");
    d.compose_ok(&["up", "-d", "--no-deps", "--scale", "worker=2", "worker"]).unwrap();
    let coordinator = d.container("coordinator").unwrap();
    d.wait_log(&coordinator, "lease expired", 1, WAIT).unwrap();
    d.docker(&["unpause", &paused]).unwrap();
    assert_run_completes_exactly(&d, &py, plan.items);
    let log = d.logs(&paused);
    assert!(
        log.contains("lease lost") || log.contains("result refused"),
        "the paused worker noticed it lost its lease:\n{log}"
    );
}

#[test]
fn a_worker_cut_off_from_the_coordinator_but_not_from_s3_has_its_late_outputs_dropped() {
    let Some(py) = checkers("compose_partition") else { return };
    let plan = one_slow_worker();
    let d = Deployment::up("partition", &plan).unwrap();
    let control = format!("{}_control", d.project());
    let coordinator = d.container("coordinator").unwrap();
    // Caught holding an ingest lease (paused: a chunk takes less time than a status poll), cut
    // off from the control network only, and let go on: it goes on with its chunk, writing to
    // S3 from behind the cut, but cannot renew its lease or report.
    let cut = pause_holding_a_lease(&d, "ingest");
    d.docker(&["network", "disconnect", &control, &cut]).unwrap();
    d.docker(&["unpause", &cut]).unwrap();
    d.wait_log(&coordinator, "lease expired", 1, WAIT).unwrap();
    d.wait_log(&cut, "lease lost", 1, WAIT).unwrap();
    d.compose_ok(&["up", "-d", "--no-deps", "--scale", "worker=2", "worker"]).unwrap();
    d.docker(&["network", "connect", &control, &cut]).unwrap();
    assert_run_completes_exactly(&d, &py, plan.items);
    let log = d.logs(&cut);
    // Its late result never counted: refused, or undeliverable (then its outputs are left to the
    // coordinator, whose cleanup removed them: staging was checked empty above), or its attempt
    // was cancelled before it finished and what it had written (maybe nothing yet: a chunk read
    // from a loaded S3 server can outlast the lease left after the pause) deleted.
    assert!(
        [
            "result refused",
            "result not delivered; its outputs are kept for the coordinator",
            "deleting an abandoned attempt's outputs",
        ]
        .iter()
        .any(|m| log.contains(m)),
        "the cut-off worker's late result was neither refused nor left undelivered:\n{log}"
    );
    // Reconnected, it rejoined the run and heard that it finished.
    assert_eq!(d.wait_exit(&cut, WAIT).unwrap(), 0, "{log}");
}

#[test]
fn a_coordinator_container_killed_mid_ingest_is_started_again_and_resumes_the_run() {
    let Some(py) = checkers("compose_coordinator") else { return };
    let plan = one_slow_worker();
    let d = Deployment::up("coordinator", &plan).unwrap();
    let coordinator = d.container("coordinator").unwrap();
    d.wait_status(WAIT, "two accepted ingest tasks", |s| {
        s.ingest.as_ref().is_some_and(|i| i.done >= 2 && i.done < 8)
    })
    .unwrap();
    d.docker(&["kill", &coordinator]).unwrap();
    // Docker's restart policy may already have brought it back; start it if not.
    if !d.state(&coordinator).unwrap().0 {
        d.docker(&["start", &coordinator]).unwrap();
    }
    assert_run_completes_exactly(&d, &py, plan.items);
    let log = d.logs(&coordinator);
    assert!(log.contains("resuming an unfinished run"), "{log}");
}

#[test]
fn workers_scaled_from_one_to_four_mid_run_all_join_and_the_result_is_exact() {
    let Some(py) = checkers("compose_scale") else { return };
    let plan = Plan { items: 400, workers: 1, slots: 1, ..Plan::default() };
    let d = Deployment::up("scale", &plan).unwrap();
    d.wait_status(WAIT, "an accepted ingest task", |s| {
        s.ingest.as_ref().is_some_and(|i| i.done >= 1)
    })
    .unwrap();
    d.compose_ok(&["up", "-d", "--no-deps", "--scale", "worker=4", "worker"]).unwrap();
    assert_eq!(d.containers("worker").unwrap().len(), 4);
    d.wait_status(WAIT, "four workers alive", |s| s.workers_alive == 4).unwrap();
    assert_run_completes_exactly(&d, &py, plan.items);
    for w in d.containers("worker").unwrap() {
        assert_eq!(d.wait_exit(&w, WAIT).unwrap(), 0, "worker {w}:\n{}", d.logs(&w));
        assert!(d.logs(&w).contains("registered"), "worker {w} joined the run");
    }
}
