//! The fleet scales itself on EC2: a coordinator with `--scale-asg` sets an Auto Scaling group's
//! desired capacity (moto's Auto Scaling API in server mode) during a real multi-process
//! backfill, and the test plays the group: it keeps as many worker processes running as the
//! group wants (at most a few: spot capacity is short), starting and stopping real workers.
#![allow(clippy::unwrap_used)]

#[path = "backfill_support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use earthcatalog_common::rpc::pb;
use earthcatalog_tests::autoscaling::AutoScaling;
use earthcatalog_tests::cluster::{Cluster, Proc};
use earthcatalog_tests::s3::unique_name;
use support::{Env, TOKEN, WAIT, with_lease};

/// Most workers the rule may want.
const SCALE_MAX: i32 = 6;
/// Tasks per worker (the workers' --slots and the rule's --scale-slots).
const SLOTS: u32 = 2;
/// Worker processes the "group" can launch at most: fewer than wanted, as when spot capacity
/// is short, so the Phase 3 tail holds fewer tasks than the peak wants workers for.
const CAPACITY: usize = 3;
/// Compaction tasks still pending when one worker is stalled. Tasks of this test's tiny
/// partitions finish at 20-50 a second, faster than a tick can catch a worker near the very end
/// (CI once saw the last 11 pending go in under 0.6 s), so the stall starts this far ahead.
const STALL_AT: u64 = 150;
/// How often the test reads the group and the status, and launches or stops workers.
const TICK: Duration = Duration::from_millis(200);

/// One reading: the group's desired capacity next to the coordinator's task counts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sample {
    phase: String,
    ingest: (u64, u64, u64),
    compact: (u64, u64, u64),
    wanted: u32,
    desired: i32,
    workers: usize,
}

fn counts(c: Option<&pb::TaskCounts>) -> (u64, u64, u64) {
    c.map(|c| (c.pending, c.leased, c.done)).unwrap_or_default()
}

/// The launched workers still running.
/// Whether the status lists leases held by the worker process `pid` (worker ids are
/// `<host>-<pid>#…` unless named).
fn holds_leases(s: &pb::StatusResponse, pid: u32) -> bool {
    let tag = format!("-{pid}#");
    s.workers.iter().any(|w| w.worker_id.contains(&tag) && !w.leases.is_empty())
}

fn running(workers: &mut [Proc]) -> Vec<usize> {
    (0..workers.len()).filter(|&i| workers[i].exited().is_none()).collect()
}

#[test]
fn the_worker_group_rises_with_the_queue_falls_in_the_compaction_tail_and_ends_at_zero() {
    let Some(env) = Env::prepare("autoscaling", 300) else { return };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let asg = AutoScaling::on(env.s3);
    let group = unique_name("ec-workers");
    let args = env.coordinator_args(&[
        "--scale-asg",
        &group,
        "--scale-max",
        &SCALE_MAX.to_string(),
        "--scale-slots",
        &SLOTS.to_string(),
        "--scale-cooldown-seconds",
        "1",
    ]);
    // Leases long enough to outlast the stalled tail below: the stall starts with up to
    // `STALL_AT` tasks pending, which the other workers take in a few seconds.
    let args = with_lease(args, "30");
    let mut c = Cluster::new(env.process_env(), args).unwrap();
    c.start_coordinator().unwrap();

    // The group does not exist yet: the calls fail, are logged and retried, and the run waits.
    Cluster::wait_log(c.coordinator(), "tried again later, the run goes on", WAIT).unwrap();
    assert!(c.coordinator().exited().is_none(), "a failing Auto Scaling call is not fatal");
    runtime.block_on(asg.create_group(&group, 10)).unwrap();

    let start = Instant::now();
    let mut curve: Vec<(f64, Sample)> = Vec::new();
    let mut stalled = false;
    let mut resumed = false;
    let mut stalled_worker: Option<usize> = None;
    let mut terminated: BTreeSet<usize> = BTreeSet::new();
    let worker_args = env.worker_args_slots(SLOTS as usize);
    loop {
        let desired = runtime.block_on(asg.desired_capacity(&group)).unwrap().unwrap_or(0);
        let status = c.status(Some(TOKEN)).ok();
        let live = running(&mut c.workers);
        if let Some(s) = &status {
            let sample = Sample {
                phase: s.phase.clone(),
                ingest: counts(s.ingest.as_ref()),
                compact: counts(s.compact.as_ref()),
                wanted: s.fleet.map(|f| f.workers_wanted).unwrap_or_default(),
                desired,
                workers: live.len(),
            };
            if curve.last().is_none_or(|(_, last)| *last != sample) {
                curve.push((start.elapsed().as_secs_f64(), sample));
            }
            // A straggling tail: in the last part of Phase 3 one worker stalls (SIGSTOP) with its
            // leases while the others take what is left, so nothing is pending and a few tasks
            // stay held for longer than the cooldown (a tail of finishing tasks alone lasts a
            // fraction of a second, shorter than this loop's tick).
            // The stalled worker must hold leases when it stops: one is picked from the status
            // (which lists each worker's leases; its id carries the process id), and kept only
            // if the status still shows its leases after the signal (else it finished them in
            // between, and another is tried on a later tick).
            let (pending, leased, _) = counts(s.compact.as_ref());
            if s.phase == "compact" && pending <= STALL_AT && leased > 0 && !stalled {
                let holder = live
                    .iter()
                    .copied()
                    .filter(|i| !terminated.contains(i))
                    .find(|&i| holds_leases(s, c.workers[i].pid()));
                if let Some(i) = holder {
                    let _ = c.workers[i].signal("STOP");
                    std::thread::sleep(Duration::from_millis(300));
                    if c.status(Some(TOKEN)).is_ok_and(|now| holds_leases(&now, c.workers[i].pid()))
                    {
                        stalled_worker = Some(i);
                        stalled = true;
                    } else {
                        let _ = c.workers[i].signal("CONT");
                    }
                }
            }
        }
        if stalled && !resumed {
            let peak = curve
                .iter()
                .filter(|(_, s)| s.phase == "compact")
                .map(|(_, s)| s.desired)
                .max()
                .unwrap_or(0);
            if desired < peak {
                if let Some(i) = stalled_worker {
                    let _ = c.workers[i].signal("CONT");
                }
                resumed = true;
            }
        }
        if let Some(exit) = c.coordinator().exited() {
            assert!(exit.success(), "coordinator failed: {}", c.coordinator().log());
            break;
        }
        assert!(start.elapsed() < WAIT * 3, "the run did not finish; curve:\n{}", table(&curve));
        // The group's instances: as many workers as it wants, up to the capacity. Extra ones
        // are told to stop (SIGTERM: they hand their leases back); stalled ones are left be.
        let finished = status.as_ref().is_some_and(|s| s.finished);
        let wanted = usize::try_from(desired).unwrap_or(0).min(CAPACITY);
        if !finished && (!stalled || resumed) {
            let serving: Vec<usize> =
                live.iter().copied().filter(|i| !terminated.contains(i)).collect();
            for _ in serving.len()..wanted {
                c.start_worker(&worker_args).unwrap();
            }
            for &i in serving.iter().skip(wanted) {
                let _ = c.workers[i].signal("TERM");
                terminated.insert(i);
            }
        }
        std::thread::sleep(TICK);
    }
    let last = runtime.block_on(asg.desired_capacity(&group)).unwrap();
    curve.push((
        start.elapsed().as_secs_f64(),
        Sample {
            phase: "exited".into(),
            desired: last.unwrap_or(-1),
            workers: running(&mut c.workers).len(),
            ..curve.last().map(|(_, s)| s.clone()).unwrap()
        },
    ));
    let shown = table(&curve);
    eprintln!("desired capacity next to the task counts:\n{shown}");
    if let Ok(out) = std::env::var("EARTHCATALOG_SCALING_CURVE") {
        std::fs::write(out, &shown).unwrap();
    }

    // Rises with the queue: Phase 2's 15 chunks want the maximum.
    let desired_in = |phase: &str| -> Vec<i32> {
        curve.iter().filter(|(_, s)| s.phase == phase).map(|(_, s)| s.desired).collect()
    };
    assert_eq!(desired_in("ingest").iter().max(), Some(&SCALE_MAX), "{shown}");
    // Falls in Phase 3's tail: nothing pending, a few tasks held, fewer workers wanted.
    let compact = desired_in("compact");
    let peak = compact.iter().max().copied().unwrap_or(0);
    assert_eq!(peak, SCALE_MAX, "{shown}");
    let fell = curve.iter().any(|(_, s)| {
        s.phase == "compact" && s.compact.0 == 0 && s.compact.1 > 0 && s.desired < peak
    });
    assert!(fell, "no fall in the compaction tail:\n{shown}");
    // Never above the maximum, and 0 at the end.
    assert!(curve.iter().all(|(_, s)| s.desired <= SCALE_MAX), "{shown}");
    assert_eq!(last, Some(0), "the group ends at 0:\n{shown}");
    let log = c.coordinator().log();
    assert!(log.contains("Auto Scaling group set"), "{log}");
    env.assert_exact_table(1);
}

/// The curve as a table: seconds, phase, tasks (pending/leased/done), wanted, desired, workers.
fn table(curve: &[(f64, Sample)]) -> String {
    let mut out = String::from(
        "   t(s)  phase      ingest p/l/d   compact p/l/d   wanted  desired  workers\n",
    );
    for (t, s) in curve {
        let _ = writeln!(
            out,
            "{t:7.1}  {:<9} {:>4}/{:>2}/{:>3}    {:>4}/{:>2}/{:>3}    {:>6}  {:>7}  {:>7}",
            s.phase,
            s.ingest.0,
            s.ingest.1,
            s.ingest.2,
            s.compact.0,
            s.compact.1,
            s.compact.2,
            s.wanted,
            s.desired,
            s.workers
        );
    }
    out
}
