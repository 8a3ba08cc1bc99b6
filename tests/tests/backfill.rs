//! The distributed backfill end to end: a real coordinator process, real worker processes and
//! a real (moto) S3 server holding the items, the inventory, staging, the warehouse and the
//! catalog. Every run must end with the table holding exactly the expected (id, cell) rows,
//! read back with PyIceberg, whatever happened to the processes on the way.
#![allow(clippy::unwrap_used)]

#[path = "backfill_support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use earthcatalog_tests::binaries;
use earthcatalog_tests::cluster::{Cluster, unresponsive_endpoint};
use earthcatalog_tests::imds::FakeImds;
use earthcatalog_tests::ingest::Samples;
use earthcatalog_tests::tls::TestPki;
use support::{Env, TOKEN, WAIT};

#[test]
fn three_workers_backfill_exactly_the_expected_rows_into_the_s3_catalog() {
    let Some(env) = Env::prepare("backfill_clean", 120) else { return };
    let mut c = Cluster::new(env.process_env(), env.coordinator_args(&[])).unwrap();
    c.start_coordinator().unwrap();
    for _ in 0..3 {
        c.start_worker(&env.worker_args()).unwrap();
    }
    let status = c.coordinator().wait(WAIT).unwrap();
    assert!(status.success(), "coordinator failed:\n{}", c.coordinator().log());
    for w in &mut c.workers {
        assert!(w.wait(WAIT).unwrap().success(), "{} failed:\n{}", w.name, w.log());
    }
    env.assert_exact_table(1);
    assert!(env.warehouse_files_are_exactly_the_registered_ones());
    assert!(env.staging_is_empty(), "staging left behind: {:?}", env.staging_objects());
    let done: usize = c.workers.iter().map(|w| w.log().matches("chunk ingested").count()).sum();
    assert_eq!(done, 6, "each of the 6 chunks ingested once");
}

#[test]
fn workers_killed_mid_ingest_and_mid_compaction_do_not_change_the_result() {
    let Some(env) = Env::prepare("backfill_kill9", 120) else { return };
    let mut c = Cluster::new(env.process_env(), env.coordinator_args(&[])).unwrap();
    c.start_coordinator().unwrap();
    let ingest_victim = c.start_worker(&env.worker_args_slots(1)).unwrap();
    // Paused first so that the kill lands while a lease is held, not between two tasks.
    c.pause_holding_a_lease(ingest_victim, Some(TOKEN), "ingest").unwrap();
    c.workers[ingest_victim].kill9();
    let compact_victim = c.start_worker(&env.worker_args_slots(1)).unwrap();
    c.pause_holding_a_lease(compact_victim, Some(TOKEN), "compact").unwrap();
    c.workers[compact_victim].kill9();
    c.start_worker(&env.worker_args()).unwrap();
    assert!(c.coordinator().wait(WAIT).unwrap().success(), "{}", c.coordinator().log());
    let log = c.coordinator().log();
    assert!(log.matches("lease expired").count() >= 2, "both killed leases expired:\n{log}");
    env.assert_exact_table(1);
    assert!(env.warehouse_files_are_exactly_the_registered_ones());
}

#[test]
fn a_paused_worker_loses_its_compact_task_and_its_late_outputs_are_deleted_not_registered() {
    let Some(env) = Env::prepare("backfill_sigstop", 120) else { return };
    let mut c = Cluster::new(env.process_env(), env.coordinator_args(&[])).unwrap();
    c.start_coordinator().unwrap();
    let paused = c.start_worker(&env.worker_args_slots(2)).unwrap();
    c.pause_holding_a_lease(paused, Some(TOKEN), "compact").unwrap();
    let healthy = c.start_worker(&env.worker_args()).unwrap();
    // The paused worker's lease runs out and its task goes to the healthy worker.
    Cluster::wait_log(c.coordinator.as_mut().unwrap(), "lease expired", WAIT).unwrap();
    c.workers[paused].signal("CONT").unwrap();
    assert!(c.coordinator().wait(WAIT).unwrap().success(), "{}", c.coordinator().log());
    c.workers[healthy].wait(WAIT).unwrap();
    c.workers[paused].wait(WAIT).unwrap();
    let log = c.workers[paused].log();
    assert!(
        log.contains("lease lost") || log.contains("result refused"),
        "the paused worker noticed it lost its lease:\n{log}"
    );
    env.assert_exact_table(1);
    assert!(env.warehouse_files_are_exactly_the_registered_ones());
}

#[test]
fn a_coordinator_killed_mid_ingest_resumes_the_run_without_redoing_accepted_tasks() {
    let Some(env) = Env::prepare("backfill_restart", 120) else { return };
    let mut c = Cluster::new(env.process_env(), env.coordinator_args(&[])).unwrap();
    c.start_coordinator().unwrap();
    c.start_worker(&env.worker_args_slots(1)).unwrap();
    let seen = c
        .wait_status(Some(TOKEN), WAIT, "two accepted ingest tasks", |s| {
            s.ingest.as_ref().is_some_and(|i| i.done >= 2 && i.done < 6)
        })
        .unwrap();
    c.coordinator().kill9();
    let recorded = env.recorded_ingest_results();
    assert!(recorded >= seen.ingest.unwrap().done as usize, "accepted results are on record");
    c.start_coordinator().unwrap();
    assert!(c.coordinator().wait(WAIT).unwrap().success(), "{}", c.coordinator().log());
    let log = c.coordinator().log();
    assert!(log.contains("resuming an unfinished run"), "{log}");
    assert!(
        log.contains(&format!("already_done={recorded}")),
        "the restarted coordinator kept the {recorded} recorded tasks:\n{log}"
    );
    c.workers[0].wait(WAIT).unwrap();
    env.assert_exact_table(1);
}

#[test]
fn a_worker_with_a_wrong_token_is_refused_without_the_secret_in_the_logs() {
    let Some(env) = Env::prepare("backfill_token", 40) else { return };
    let mut c = Cluster::new(env.process_env(), env.coordinator_args(&[])).unwrap();
    c.start_coordinator().unwrap();
    let bad = c.start_worker(&["--token", "not-the-token", "--connect-seconds", "5"]).unwrap();
    let status = c.workers[bad].wait(Duration::from_secs(30)).unwrap();
    assert!(!status.success());
    assert!(c.workers[bad].log().contains("refused this worker"), "{}", c.workers[bad].log());
    let coordinator_log = c.coordinator().log();
    assert!(coordinator_log.contains("refused a call with a wrong token"), "{coordinator_log}");
    assert!(!coordinator_log.contains(TOKEN) && !coordinator_log.contains("not-the-token"));
    c.start_worker(&env.worker_args()).unwrap();
    assert!(c.coordinator().wait(WAIT).unwrap().success(), "{}", c.coordinator().log());
    env.assert_exact_table(1);
}

#[test]
fn workers_reach_a_tls_coordinator_only_when_they_trust_its_certificate() {
    let Some(env) = Env::prepare("backfill_tls", 40) else { return };
    let pki = TestPki::write(env.dir.path()).unwrap();
    let (cert, key) = (pki.cert.to_string_lossy(), pki.key.to_string_lossy());
    let mut c = Cluster::new(
        env.process_env(),
        env.coordinator_args(&["--tls-cert", &cert, "--tls-key", &key]),
    )
    .unwrap();
    c.start_coordinator().unwrap();
    let https = format!("https://localhost:{}", c.port());
    let token = env.dir.path().join("token").to_string_lossy().into_owned();
    let quick = ["--token-file", &token, "--connect-seconds", "3"];
    let plaintext = c.start_worker(&quick).unwrap();
    let other_ca = pki.other_ca.to_string_lossy();
    let mistrusting =
        c.start_worker_at(&https, &[&quick[..], &["--tls-ca", &other_ca]].concat()).unwrap();
    for (w, why) in [(plaintext, "could not be reached"), (mistrusting, "invalid peer certificate")]
    {
        let status = c.workers[w].wait(WAIT).unwrap();
        let log = c.workers[w].log();
        assert!(
            !status.success(),
            "{} reached a TLS coordinator it must not:\n{log}",
            c.workers[w].name
        );
        assert!(log.contains(why) && !log.contains("chunk ingested"), "{log}");
    }
    let ca = pki.ca.to_string_lossy();
    let trusting = c
        .start_worker_at(
            &https,
            &[&env.worker_args()[..], &["--tls-ca".into(), ca.into_owned()]].concat(),
        )
        .unwrap();
    assert!(c.coordinator().wait(WAIT).unwrap().success(), "{}", c.coordinator().log());
    assert!(c.workers[trusting].wait(WAIT).unwrap().success(), "{}", c.workers[trusting].log());
    assert!(c.coordinator().log().contains("tls=true"));
    env.assert_exact_table(1);
}

#[test]
fn a_worker_told_to_stop_hands_its_leases_back_and_exits_75_while_another_finishes_the_run() {
    let Some(env) = Env::prepare("backfill_sigterm", 120) else { return };
    let mut c = Cluster::new(env.process_env(), env.coordinator_args(&[])).unwrap();
    c.start_coordinator().unwrap();
    // Its S3 calls go to a server that never answers, so both of its tasks are still running
    // when it is told to stop; a drain window of 0 s hands them back at once.
    let nowhere = vec![("AWS_ENDPOINT_URL".to_string(), unresponsive_endpoint().unwrap())];
    let mut args = env.worker_args_slots(2);
    args.extend(["--drain-seconds".into(), "0".into()]);
    let stopped = c.start_worker_with(&c.url(), &args, &nowhere).unwrap();
    c.wait_status(Some(TOKEN), WAIT, "two ingest leases", |s| {
        s.ingest.as_ref().is_some_and(|i| i.leased == 2)
    })
    .unwrap();
    c.workers[stopped].signal("TERM").unwrap();
    let status = c.workers[stopped].wait(WAIT).unwrap();
    let log = c.workers[stopped].log();
    assert_eq!(status.code(), Some(75), "a drained worker exits 75:\n{log}");
    assert!(log.contains("SIGTERM: draining"), "{log}");
    let coordinator = c.coordinator().log();
    assert!(
        coordinator.contains("worker handed leases back") && coordinator.contains("released=2")
    );
    assert!(!coordinator.contains("lease expired"), "handed back, not left to expire");
    let finisher = c.start_worker(&env.worker_args()).unwrap();
    assert!(c.coordinator().wait(WAIT).unwrap().success(), "{}", c.coordinator().log());
    assert_eq!(c.workers[finisher].wait(WAIT).unwrap().code(), Some(0));
    env.assert_exact_table(1);
    assert!(env.warehouse_files_are_exactly_the_registered_ones());
}

#[test]
fn a_spot_interruption_notice_drains_the_worker_and_the_run_still_completes() {
    let Some(env) = Env::prepare("backfill_spot", 120) else { return };
    let imds = FakeImds::start().unwrap();
    let mut c = Cluster::new(env.process_env(), env.coordinator_args(&[])).unwrap();
    c.start_coordinator().unwrap();
    // Posted before the worker starts: it polls every 5 s, and a worker that finished the whole
    // (small) run between two polls would never see it. Less time is left than the worker keeps
    // for handing back, so it stops at once, handing back anything it leased meanwhile.
    imds.post_termination_notice(5);
    let mut args = env.worker_args_slots(1);
    args.extend(["--spot".into(), "--imds-endpoint".into(), imds.endpoint().into()]);
    let spot = c.start_worker(&args).unwrap();
    let status = c.workers[spot].wait(WAIT).unwrap();
    let log = c.workers[spot].log();
    assert_eq!(status.code(), Some(75), "{log}");
    assert!(log.contains("spot terminate notice"), "{log}");
    c.start_worker(&env.worker_args()).unwrap();
    assert!(c.coordinator().wait(WAIT).unwrap().success(), "{}", c.coordinator().log());
    env.assert_exact_table(1);
    assert!(env.warehouse_files_are_exactly_the_registered_ones());
}

#[test]
fn a_coordinator_stopped_by_sigterm_exits_143_and_resumes_its_run_when_restarted() {
    let Some(env) = Env::prepare("backfill_coordinator_term", 60) else { return };
    let mut c = Cluster::new(env.process_env(), env.coordinator_args(&[])).unwrap();
    c.start_coordinator().unwrap();
    let url = c.url();
    let health = |c: &Cluster| {
        Command::new(binaries::earthcatalog())
            .args(["health", "--coordinator", &url, "--timeout-seconds", "5"])
            .current_dir(c.dir())
            .output()
            .unwrap()
    };
    assert!(health(&c).status.success(), "a listening coordinator is healthy");
    let token = env.dir.path().join("token").to_string_lossy().into_owned();
    let status = |token_flags: &[&str]| {
        let mut args = vec!["status", "--coordinator", &url, "--json"];
        args.extend(token_flags);
        Command::new(binaries::earthcatalog()).args(&args).output().unwrap()
    };
    c.wait_status(Some(TOKEN), WAIT, "Phase 1", |s| s.phase == "ingest").unwrap();
    let out = status(&["--token-file", &token]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["phase"], "ingest");
    assert_eq!(s["workers_alive"], 0);
    assert_eq!(s["ingest"], serde_json::json!({"pending": 3, "leased": 0, "done": 0, "failed": 0}));
    let refused = status(&["--token", "not-the-token"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("asking"), "names what failed");
    c.coordinator().signal("TERM").unwrap();
    let status = c.coordinator().wait(WAIT).unwrap();
    assert_eq!(status.code(), Some(143), "{}", c.coordinator().log());
    assert!(c.coordinator().log().contains("SIGTERM: stopping"));
    let down = health(&c);
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains(&url), "the error names the address");
    c.start_coordinator().unwrap();
    c.start_worker(&env.worker_args()).unwrap();
    assert!(c.coordinator().wait(WAIT).unwrap().success(), "{}", c.coordinator().log());
    assert!(c.coordinator().log().contains("resuming an unfinished run"));
    env.assert_exact_table(1);
}

#[test]
fn a_task_that_always_fails_is_reported_nothing_is_registered_and_a_rerun_after_the_fix_completes()
{
    let Some(env) = Env::prepare("backfill_failing_task", 120) else { return };
    let mut c =
        Cluster::new(env.process_env(), env.coordinator_args(&["--max-attempts", "2"])).unwrap();
    c.start_coordinator().unwrap();
    // Phase 1 is done once ingest tasks are offered; no worker has started yet.
    let s = c.wait_status(Some(TOKEN), WAIT, "Phase 1", |s| s.phase == "ingest").unwrap();
    let chunk = format!("staging/{}/chunks/chunk_000002.parquet", s.run_id);
    let good = env.read(&chunk);
    env.write(&chunk, b"not a parquet file: every attempt at this chunk fails".to_vec());
    for _ in 0..2 {
        c.start_worker(&env.worker_args()).unwrap();
    }
    let status = c.coordinator().wait(WAIT).unwrap();
    let log = c.coordinator().log();
    assert!(!status.success(), "{log}");
    assert!(log.contains("1 task(s) failed; nothing was registered"), "{log}");
    assert!(log.contains("ingest task 2") && log.contains("chunk_000002.parquet"), "{log}");
    assert!(!env.catalog_published(), "no catalog is published by a failed run");
    for w in &mut c.workers {
        w.wait(WAIT).unwrap();
    }

    // The operator puts the chunk right and reruns: the run resumes and keeps what was done.
    env.write(&chunk, good);
    c.start_coordinator().unwrap();
    c.start_worker(&env.worker_args()).unwrap();
    assert!(c.coordinator().wait(WAIT).unwrap().success(), "{}", c.coordinator().log());
    let log = c.coordinator().log();
    assert!(log.contains("resuming an unfinished run") && log.contains("already_done=5"), "{log}");
    env.assert_exact_table(1);
    assert!(env.warehouse_files_are_exactly_the_registered_ones());
}

#[test]
fn a_delta_run_after_a_full_run_appends_exactly_the_new_items_and_extends_the_hash_index() {
    let Some(env) = Env::prepare("backfill_delta_s3", 40) else { return };
    let mut full =
        Cluster::new(env.process_env(), env.coordinator_args(&["--update-hash-index"])).unwrap();
    full.start_coordinator().unwrap();
    full.start_worker(&env.worker_args()).unwrap();
    assert!(full.coordinator().wait(WAIT).unwrap().success(), "{}", full.coordinator().log());
    assert_eq!(env.hash_index("wh_id_hashes.parquet").len(), 40);

    let more = Samples::itslive(40, 30);
    env.upload(&more, "delta.csv");
    let args = env.coordinator_args_for("delta.csv", &["--delta", "--update-hash-index"]);
    let mut delta = Cluster::new(env.process_env(), args).unwrap();
    delta.start_coordinator().unwrap();
    for _ in 0..2 {
        delta.start_worker(&env.worker_args()).unwrap();
    }
    assert!(delta.coordinator().wait(WAIT).unwrap().success(), "{}", delta.coordinator().log());
    let everything = Samples::itslive(0, 70);
    env.assert_table_holds(&everything, 1);
    assert!(env.warehouse_files_are_exactly_the_registered_ones());
    let index = env.hash_index("wh_id_hashes.parquet");
    assert_eq!(index.len(), 70);
    assert!(everything.ids().iter().all(|id| index.contains_id(id)));
}
