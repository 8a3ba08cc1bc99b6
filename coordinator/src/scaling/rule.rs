//! The one scaling rule: how many workers the run wants now, from its queue.
//!
//! * While a phase is leased, enough workers for every pending and leased task to have a slot:
//!   `ceil((pending + leased) / slots)`, within `min..=max`. Between phases (starting, Phase 1,
//!   Phase 4, cleanup) no task needs a slot, so the rule asks for `min`.
//! * More workers are asked for at once.
//! * Fewer only when nothing is pending (the surplus workers are idle, so none is taken from a
//!   queue it would have served) and only once the lower number has been wanted for a whole
//!   cooldown: the gap between Phase 2 and Phase 3, or a burst of results, does not send
//!   workers away that the next minute needs again.
//! * Zero, at once, when the run is over.
//!
//! Lost workers (spot reclaims) change nothing here: their leases run out, the tasks are pending
//! again, and the same number is still wanted; the fleet (an Auto Scaling group, KEDA) replaces
//! the instances it lost.

use std::time::{Duration, Instant};

/// Bounds and pace of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalingRule {
    /// Fewest workers while the run is not over (a warm fleet for the next phase).
    pub min: u32,
    /// Most workers ever asked for.
    pub max: u32,
    /// Tasks one worker runs at once.
    pub slots: u32,
    /// How long a lower number must be wanted, with nothing pending, before it is asked for.
    pub cooldown: Duration,
}

impl Default for ScalingRule {
    fn default() -> Self {
        ScalingRule { min: 0, max: 50, slots: 2, cooldown: Duration::from_secs(120) }
    }
}

impl ScalingRule {
    /// Workers that give every task in `queue` a slot, within the bounds (0 once it is done).
    pub fn target(&self, queue: Queue) -> u32 {
        match queue {
            Queue::Done => 0,
            Queue::Between => self.min,
            Queue::Leasing { pending, leased } => {
                let work = pending.saturating_add(leased);
                let needed = work.div_ceil(u64::from(self.slots.max(1)));
                let needed = u32::try_from(needed).unwrap_or(u32::MAX);
                needed.clamp(self.min, self.max.max(self.min))
            }
        }
    }
}

/// What the run's queue looks like now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// No task exists yet or any more: starting, Phase 1, Phase 4, cleanup.
    Between,
    /// A phase is leased.
    Leasing {
        /// Tasks waiting for a worker (new, retried, or back from an expired lease).
        pending: u64,
        /// Tasks a worker holds.
        leased: u64,
    },
    /// The run is over (finished or given up).
    Done,
}

impl Queue {
    /// Whether every worker beyond those holding tasks is idle: nothing waits for a slot.
    fn nothing_pending(self) -> bool {
        match self {
            Queue::Leasing { pending, .. } => pending == 0,
            Queue::Between | Queue::Done => true,
        }
    }
}

/// The fleet size the rule settled on, and since when a lower one has been wanted.
#[derive(Debug, Clone)]
pub struct Fleet {
    rule: ScalingRule,
    wanted: u32,
    lower_since: Option<Instant>,
}

impl Fleet {
    /// A fleet of `rule.min` workers (a new coordinator that knows of no running workers).
    pub fn new(rule: ScalingRule) -> Self {
        Fleet { rule, wanted: rule.min, lower_since: None }
    }

    /// A fleet that already runs `workers` (a restarted coordinator reading its Auto Scaling
    /// group): they are kept, within the bounds, until the queue says otherwise and the
    /// cooldown has passed, instead of being sent away and booted again.
    pub fn resume(rule: ScalingRule, workers: u32, now: Instant) -> Self {
        let wanted = workers.clamp(rule.min, rule.max.max(rule.min));
        Fleet { rule, wanted, lower_since: Some(now) }
    }

    /// The rule.
    pub fn rule(&self) -> ScalingRule {
        self.rule
    }

    /// Applies the rule to `queue` at `now`; returns the workers wanted.
    pub fn decide(&mut self, queue: Queue, now: Instant) -> u32 {
        let target = self.rule.target(queue);
        if queue == Queue::Done || target >= self.wanted {
            self.set(target, queue);
            self.lower_since = None;
        } else if queue.nothing_pending() {
            let since = *self.lower_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= self.rule.cooldown {
                self.set(target, queue);
                self.lower_since = None;
            }
        } else {
            // Tasks wait while workers are missing (booting, or lost and being replaced): none
            // of the fleet is idle.
            self.lower_since = None;
        }
        self.wanted
    }

    fn set(&mut self, wanted: u32, queue: Queue) {
        if wanted != self.wanted {
            tracing::info!(from = self.wanted, to = wanted, ?queue, "workers wanted");
            self.wanted = wanted;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(120);

    fn rule() -> ScalingRule {
        ScalingRule { min: 1, max: 20, slots: 4, cooldown: COOLDOWN }
    }

    fn leasing(pending: u64, leased: u64) -> Queue {
        Queue::Leasing { pending, leased }
    }

    /// Feeds `steps` of (seconds after the start, queue) and returns the workers wanted after
    /// each.
    fn run(fleet: &mut Fleet, start: Instant, steps: &[(u64, Queue)]) -> Vec<u32> {
        steps.iter().map(|(s, q)| fleet.decide(*q, start + Duration::from_secs(*s))).collect()
    }

    #[test]
    fn a_burst_of_tasks_asks_for_the_workers_it_needs_at_once_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut fleet = Fleet::new(rule());
        let curve = run(
            &mut fleet,
            t0,
            &[
                (0, Queue::Between),
                (1, leasing(10, 0)),
                (2, leasing(2, 8)),
                (3, leasing(400, 8)),
                (4, leasing(300, 80)),
            ],
        );
        assert_eq!(curve, [1, 3, 3, 20, 20], "min, ceil(10/4), same work, capped at max");
    }

    #[test]
    fn a_long_tail_scales_in_only_after_the_cooldown_with_nothing_pending_and_ends_at_zero() {
        let t0 = Instant::now();
        let mut fleet = Fleet::new(rule());
        let curve = run(
            &mut fleet,
            t0,
            &[
                (0, leasing(60, 0)),
                // Nothing pending from here on: the last tasks are held, most workers idle.
                (10, leasing(0, 30)),
                (20, leasing(0, 3)),
                (100, leasing(0, 3)),
                (129, leasing(0, 3)),
                (130, leasing(0, 3)),
                (200, leasing(0, 1)),
                (300, Queue::Between),
                (500, Queue::Between),
                (501, Queue::Done),
            ],
        );
        assert_eq!(curve, [15, 15, 15, 15, 15, 1, 1, 1, 1, 0]);
    }

    #[test]
    fn the_gap_between_phases_keeps_the_fleet_when_the_next_phase_needs_it_within_the_cooldown() {
        let t0 = Instant::now();
        let mut fleet = Fleet::new(rule());
        let curve = run(
            &mut fleet,
            t0,
            &[
                (0, leasing(32, 0)),
                (50, leasing(0, 0)),
                (60, Queue::Between),
                (90, leasing(100, 0)),
                (300, leasing(0, 2)),
                (419, leasing(0, 1)),
                (420, leasing(0, 1)),
            ],
        );
        assert_eq!(curve, [8, 8, 8, 20, 20, 20, 1]);
    }

    #[test]
    fn pending_tasks_hold_the_fleet_even_when_fewer_workers_would_do() {
        // Fewer tasks than slots but some still pending: workers are booting or were lost,
        // none is idle, so nothing is scaled in however long it lasts.
        let t0 = Instant::now();
        let mut fleet = Fleet::new(rule());
        let curve = run(
            &mut fleet,
            t0,
            &[(0, leasing(40, 0)), (10, leasing(2, 1)), (500, leasing(1, 0)), (501, leasing(0, 1))],
        );
        assert_eq!(curve, [10, 10, 10, 10]);
        assert_eq!(fleet.decide(leasing(0, 1), t0 + Duration::from_secs(621)), 1);
    }

    #[test]
    fn workers_lost_to_spot_reclaims_do_not_change_the_number_wanted() {
        // 8 workers hold 32 tasks; 5 are reclaimed: their 20 tasks come back as pending when
        // the leases run out. The same work needs the same fleet (the group replaces the lost
        // instances), and no scale-in starts while tasks wait.
        let t0 = Instant::now();
        let mut fleet = Fleet::new(rule());
        let curve = run(
            &mut fleet,
            t0,
            &[
                (0, leasing(8, 32)),
                (30, leasing(8, 32)),
                (90, leasing(28, 12)),
                (200, leasing(20, 20)),
                (400, leasing(0, 36)),
            ],
        );
        assert_eq!(curve, [10, 10, 10, 10, 10]);
        // 36 tasks need 9 workers of 4 slots: one fewer, after a cooldown with none pending.
        assert_eq!(fleet.decide(leasing(0, 36), t0 + Duration::from_secs(520)), 9);
    }

    #[test]
    fn a_restarted_coordinator_keeps_the_running_fleet_through_the_cooldown() {
        let t0 = Instant::now();
        // The group runs 12 workers; the new coordinator reads them and resumes Phase 2.
        let mut fleet = Fleet::resume(rule(), 12, t0);
        let curve = run(
            &mut fleet,
            t0,
            &[
                (0, Queue::Between),
                (30, Queue::Between),
                (60, leasing(40, 0)),
                (70, leasing(4, 36)),
            ],
        );
        assert_eq!(curve, [12, 12, 12, 12], "the workers it found are kept");
        // A fresh fleet in the same spot would have sent them all away first.
        let mut fresh = Fleet::new(rule());
        assert_eq!(run(&mut fresh, t0, &[(0, Queue::Between), (60, leasing(40, 0))]), [1, 10]);
        // Restarting with nothing left to do for them: gone after one cooldown.
        let mut idle = Fleet::resume(rule(), 12, t0);
        let curve = run(&mut idle, t0, &[(0, Queue::Between), (119, Queue::Between)]);
        assert_eq!(curve, [12, 12]);
        assert_eq!(idle.decide(Queue::Between, t0 + COOLDOWN), 1);
        // A group larger than the maximum is brought within bounds.
        assert_eq!(Fleet::resume(rule(), 99, t0).decide(Queue::Between, t0), 20);
    }

    #[test]
    fn a_finished_run_wants_no_worker_even_with_a_minimum() {
        let t0 = Instant::now();
        let mut fleet = Fleet::new(ScalingRule { min: 5, ..rule() });
        assert_eq!(fleet.decide(leasing(100, 0), t0), 20);
        assert_eq!(fleet.decide(Queue::Done, t0), 0, "no cooldown at the end");
    }

    #[test]
    fn one_slot_workers_and_huge_queues_stay_within_the_bounds() {
        let r = ScalingRule { min: 0, max: 3, slots: 1, cooldown: COOLDOWN };
        assert_eq!(r.target(leasing(0, 0)), 0);
        assert_eq!(r.target(leasing(1, 0)), 1);
        assert_eq!(r.target(leasing(u64::MAX, u64::MAX)), 3);
        let wide = ScalingRule { max: u32::MAX, ..r };
        assert_eq!(wide.target(leasing(u64::MAX, 1)), u32::MAX);
    }
}
