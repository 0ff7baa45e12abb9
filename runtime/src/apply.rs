//! Carrying out a plan with a driver: independent actions in parallel (bounded), every action
//! after those it waits for; an action whose prerequisite failed or was skipped is skipped with the
//! reason. Results come back in plan order whatever the timing.
//!
//! Creates and updates run first; deletes start when they are all finished, so a replacement is in
//! place before what it replaces goes away.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cancel::Cancel;
use crate::driver::Driver;
use crate::plan::{Action, Op, Plan, Unit};

/// How an action ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "WireOutcome", into = "WireOutcome")]
pub enum Outcome {
    Succeeded {
        detail: String,
    },
    Failed {
        error: String,
        /// Whether running it again as it is may succeed (the error was transient: a cluster
        /// that did not answer, throttling); `false` when it would fail the same way until the
        /// policy or the target changes (a refused object, a missing chart, a conflict).
        retryable: bool,
    },
    /// Not run, because of another action (`reason` says which).
    Skipped {
        reason: String,
    },
    /// Not started because the deploy was cancelled ([`Cancel`]); the next deploy does it.
    Interrupted,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        matches!(self, Outcome::Succeeded { .. })
    }

    /// Whether the action failed in a way that running it again as it is cannot fix.
    pub fn failed_for_good(&self) -> bool {
        matches!(self, Outcome::Failed { retryable: false, .. })
    }

    /// Whether the action did not run (skipped or interrupted).
    pub fn not_run(&self) -> bool {
        matches!(self, Outcome::Skipped { .. } | Outcome::Interrupted)
    }
}

/// [`Outcome`] as stores, journals and `--format json` have always written it: an interrupted
/// action is `skipped` with the reason [`INTERRUPTED`].
#[derive(Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum WireOutcome {
    Succeeded {
        detail: String,
    },
    Failed {
        error: String,
        /// Written only when `false` (revisions from before it was recorded read as `true`).
        #[serde(default = "retryable_by_default", skip_serializing_if = "is_true")]
        retryable: bool,
    },
    Skipped {
        reason: String,
    },
}

fn retryable_by_default() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

impl From<WireOutcome> for Outcome {
    fn from(wire: WireOutcome) -> Outcome {
        match wire {
            WireOutcome::Succeeded { detail } => Outcome::Succeeded { detail },
            WireOutcome::Failed { error, retryable } => Outcome::Failed { error, retryable },
            WireOutcome::Skipped { reason } if reason == INTERRUPTED => Outcome::Interrupted,
            WireOutcome::Skipped { reason } => Outcome::Skipped { reason },
        }
    }
}

impl From<Outcome> for WireOutcome {
    fn from(outcome: Outcome) -> WireOutcome {
        match outcome {
            Outcome::Succeeded { detail } => WireOutcome::Succeeded { detail },
            Outcome::Failed { error, retryable } => WireOutcome::Failed { error, retryable },
            Outcome::Skipped { reason } => WireOutcome::Skipped { reason },
            Outcome::Interrupted => WireOutcome::Skipped { reason: INTERRUPTED.to_string() },
        }
    }
}

/// An action's outcome and timing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionReport {
    pub outcome: Outcome,
    /// When it started, from the start of the apply.
    pub started_ms: u64,
    pub duration_ms: u64,
}

/// Told as actions start and finish (from worker threads), for progress displays.
pub trait Progress: Sync {
    fn started(&self, _index: usize, _action: &Action) {}
    fn finished(&self, _index: usize, _action: &Action, _report: &ActionReport) {}
}

/// A [`Progress`] that shows nothing.
pub struct Quiet;

impl Progress for Quiet {}

#[derive(Clone, Debug)]
enum Slot {
    Waiting,
    Running,
    Done(ActionReport),
}

/// How an [`Outcome::Interrupted`] action is written (as a skip reason) and shown.
pub const INTERRUPTED: &str = "interrupted";

/// Applies `plan` as revision `revision` with at most `parallel` actions at once; one report per
/// action, in plan order. Once `cancel` is cancelled it stops cleanly: no new action starts,
/// running ones finish, the others are [`Outcome::Interrupted`] (so the next deploy does them).
pub fn execute(
    plan: &Plan,
    driver: &dyn Driver,
    revision: u64,
    parallel: usize,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Vec<ActionReport> {
    let start = Instant::now();
    let slots = Mutex::new(vec![Slot::Waiting; plan.actions.len()]);
    let changed = Condvar::new();
    let (changes, deletes): (Vec<usize>, Vec<usize>) =
        (0..plan.actions.len()).partition(|&i| plan.actions[i].op != Op::Delete);
    for phase in [changes, deletes] {
        if phase.is_empty() {
            continue;
        }
        let workers = parallel.clamp(1, phase.len());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| worker(plan, &phase, driver, revision, progress, &slots, &changed, start, cancel));
            }
        });
    }
    slots
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .map(|slot| match slot {
            Slot::Done(report) => report,
            Slot::Waiting | Slot::Running => ActionReport {
                outcome: Outcome::Skipped { reason: "not run (internal error)".into() },
                started_ms: 0,
                duration_ms: 0,
            },
        })
        .collect()
}

/// Whether an action can run, must be skipped (and why), or must wait.
enum Readiness {
    Ready,
    Skip(String),
    Wait,
}

fn readiness(plan: &Plan, slots: &[Slot], i: usize) -> Readiness {
    let mut ready = true;
    for &before in &plan.actions[i].after {
        match &slots[before] {
            Slot::Done(report) if report.outcome.succeeded() => {}
            Slot::Done(report) => {
                let what = if matches!(report.outcome, Outcome::Failed { .. }) { "failed" } else { "was skipped" };
                let needed = &plan.actions[before];
                return Readiness::Skip(format!(
                    "needs {} ({}) to be {} first, which {what}",
                    needed.unit.name,
                    needed.unit.key,
                    needed.op.past()
                ));
            }
            Slot::Waiting | Slot::Running => ready = false,
        }
    }
    if ready { Readiness::Ready } else { Readiness::Wait }
}

#[allow(clippy::too_many_arguments)]
fn worker(
    plan: &Plan,
    phase: &[usize],
    driver: &dyn Driver,
    revision: u64,
    progress: &dyn Progress,
    slots: &Mutex<Vec<Slot>>,
    changed: &Condvar,
    start: Instant,
    cancel: &Cancel,
) {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let ended = |outcome: Outcome| ActionReport { outcome, started_ms: millis(start.elapsed()), duration_ms: 0 };
    let skipped = |reason: String| ended(Outcome::Skipped { reason });
    let mut guard = slots.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if cancel.is_cancelled() {
            // Interrupted: nothing new starts; what runs finishes in its own worker.
            for &i in phase {
                if matches!(guard[i], Slot::Waiting) {
                    let report = ended(Outcome::Interrupted);
                    progress.finished(i, &plan.actions[i], &report);
                    guard[i] = Slot::Done(report);
                }
            }
            changed.notify_all();
            return;
        }
        // The first waiting action (in plan order) that can run; skip those that never will.
        let mut next = None;
        let (mut waiting, mut running) = (false, false);
        for &i in phase {
            match guard[i] {
                Slot::Running => running = true,
                Slot::Done(_) => {}
                Slot::Waiting => match readiness(plan, &guard, i) {
                    Readiness::Skip(reason) => {
                        let report = skipped(reason);
                        progress.finished(i, &plan.actions[i], &report);
                        guard[i] = Slot::Done(report);
                        changed.notify_all();
                    }
                    Readiness::Ready if next.is_none() => next = Some(i),
                    Readiness::Ready | Readiness::Wait => waiting = true,
                },
            }
        }
        if let Some(i) = next {
            guard[i] = Slot::Running;
            drop(guard);
            let action = &plan.actions[i];
            progress.started(i, action);
            let began = Instant::now();
            // A panicking driver fails its action instead of leaving it running forever.
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| driver.apply(revision, action)));
            let outcome = match applied {
                Ok(Ok(result)) => Outcome::Succeeded { detail: result.detail },
                Ok(Err(error)) => Outcome::Failed { retryable: error.is_transient(), error: error.to_string() },
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown".into());
                    let error = format!("internal error in the driver (a bug): {message}");
                    Outcome::Failed { error, retryable: false }
                }
            };
            let report = ActionReport {
                outcome,
                started_ms: millis(began.duration_since(start)),
                duration_ms: millis(began.elapsed()),
            };
            progress.finished(i, action, &report);
            guard = slots.lock().unwrap_or_else(|p| p.into_inner());
            guard[i] = Slot::Done(report);
            changed.notify_all();
        } else if !waiting {
            return;
        } else if !running {
            // Actions wait for each other and nothing runs: only a malformed plan (a prerequisite
            // that is not earlier in it) gets here. Skip them rather than hang.
            for &i in phase {
                if matches!(guard[i], Slot::Waiting) {
                    let report = skipped("its prerequisites cannot finish (a cycle in the plan)".into());
                    progress.finished(i, &plan.actions[i], &report);
                    guard[i] = Slot::Done(report);
                }
            }
            changed.notify_all();
            return;
        } else {
            guard = changed.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// What the target holds after a plan ran: an applied unit, and the revision that applied it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub revision: u64,
    pub unit: Unit,
    /// What the driver found on the target right after applying it (for the render driver: each
    /// rendered file's SHA-256), to tell drift from it later ([`crate::drift`]). Absent in
    /// revisions recorded before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<BTreeMap<String, String>>,
}

/// What the target holds after `plan` ran with `reports` as revision `revision`, starting from
/// `before`: successful creates and updates replace, successful deletes remove; failed and skipped
/// actions leave things as they were (so the next deploy tries them again).
pub fn applied_after(
    before: &BTreeMap<String, Applied>,
    plan: &Plan,
    reports: &[ActionReport],
    revision: u64,
) -> BTreeMap<String, Applied> {
    let mut after = before.clone();
    for (action, report) in plan.actions.iter().zip(reports) {
        if !report.outcome.succeeded() {
            continue;
        }
        match action.op {
            Op::Create | Op::Update => {
                after.insert(
                    action.unit.key.clone(),
                    Applied { revision, unit: action.unit.clone(), fingerprint: None },
                );
            }
            Op::Delete => {
                after.remove(&action.unit.key);
            }
        }
    }
    after
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::driver::{ActionResult, DriverError};
    use crate::plan::{plan, tests::unit};

    /// Fails the units named in `fail`; records the order of applies and the peak concurrency.
    struct Fake {
        fail: BTreeSet<String>,
        log: Mutex<Vec<String>>,
        running: AtomicUsize,
        peak: AtomicUsize,
    }

    impl Fake {
        fn new(fail: &[&str]) -> Fake {
            Fake {
                fail: fail.iter().map(|s| s.to_string()).collect(),
                log: Mutex::new(Vec::new()),
                running: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            }
        }
    }

    impl Driver for Fake {
        fn target(&self) -> String {
            "fake".into()
        }
        fn describe(&self) -> String {
            "fake".into()
        }
        fn preflight(&self, _: &Plan) -> Result<(), DriverError> {
            Ok(())
        }
        fn is_present(&self, _: &Unit) -> bool {
            true
        }
        fn apply(&self, _: u64, action: &Action) -> Result<ActionResult, DriverError> {
            if action.unit.key == "panics" {
                panic!("driver bug");
            }
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            self.log.lock().unwrap().push(format!("{} {}", action.op.verb(), action.unit.key));
            self.running.fetch_sub(1, Ordering::SeqCst);
            if self.fail.contains(&action.unit.key) {
                Err(DriverError::Scrubbed { message: "boom".into(), transient: false })
            } else {
                Ok(ActionResult { detail: "ok".into() })
            }
        }
    }

    fn map(units: Vec<Unit>) -> BTreeMap<String, Unit> {
        units.into_iter().map(|u| (u.key.clone(), u)).collect()
    }

    #[test]
    fn dependencies_run_first_and_independent_actions_in_parallel() {
        let desired = map(vec![unit("db", &[]), unit("app", &["db"]), unit("a", &[]), unit("b", &[]), unit("c", &[])]);
        let plan = plan(&BTreeMap::new(), &desired, None, &|_| true);
        let driver = Fake::new(&[]);
        let reports = execute(&plan, &driver, 1, 3, &Quiet, &Cancel::new());
        assert!(reports.iter().all(|r| r.outcome.succeeded()));
        let log = driver.log.lock().unwrap().clone();
        let at = |s: &str| log.iter().position(|l| l == s).unwrap();
        assert!(at("create db") < at("create app"), "{log:?}");
        assert!(driver.peak.load(Ordering::SeqCst) > 1, "independent actions ran one at a time");
        assert!(driver.peak.load(Ordering::SeqCst) <= 3);
    }

    #[test]
    fn a_failure_skips_its_dependents_only_and_the_applied_state_says_so() {
        let desired = map(vec![unit("db", &[]), unit("app", &["db"]), unit("web", &["app"]), unit("other", &[])]);
        let plan = plan(&BTreeMap::new(), &desired, None, &|_| true);
        let reports = execute(&plan, &Fake::new(&["db"]), 1, 2, &Quiet, &Cancel::new());
        let by_key: BTreeMap<&str, &Outcome> =
            plan.actions.iter().zip(&reports).map(|(a, r)| (a.unit.key.as_str(), &r.outcome)).collect();
        assert!(matches!(by_key["db"], Outcome::Failed { error, .. } if error == "boom"));
        assert!(
            matches!(by_key["app"], Outcome::Skipped { reason } if reason.contains("db-name (db)") && reason.contains("failed"))
        );
        assert!(matches!(by_key["web"], Outcome::Skipped { reason } if reason.contains("was skipped")));
        assert!(by_key["other"].succeeded());
        let applied = applied_after(&BTreeMap::new(), &plan, &reports, 1);
        assert_eq!(applied.keys().collect::<Vec<_>>(), ["other"]);
        // The next plan, against what actually succeeded, retries the rest.
        let current: BTreeMap<String, Unit> = applied.into_iter().map(|(k, a)| (k, a.unit)).collect();
        let retry = crate::plan::plan(&current, &desired, None, &|_| true);
        assert_eq!(retry.actions.iter().map(|a| a.unit.key.as_str()).collect::<Vec<_>>(), ["db", "app", "web"]);
    }

    #[test]
    fn a_panicking_driver_fails_the_action_and_the_rest_goes_on() {
        let desired = map(vec![unit("panics", &[]), unit("after", &["panics"]), unit("other", &[])]);
        let plan = plan(&BTreeMap::new(), &desired, None, &|_| true);
        let reports = execute(&plan, &Fake::new(&[]), 1, 2, &Quiet, &Cancel::new());
        let outcomes: Vec<String> = reports.iter().map(|r| format!("{:?}", r.outcome)).collect();
        assert!(outcomes[1].contains("internal error in the driver (a bug): driver bug"), "{outcomes:?}");
        assert!(outcomes[2].starts_with("Skipped"), "{outcomes:?}");
        assert!(reports[0].outcome.succeeded(), "{outcomes:?}");
    }

    /// Cancels while applying `db`, as a signal arriving mid-deploy would.
    struct Interrupting {
        stop: Cancel,
        log: Mutex<Vec<String>>,
    }

    impl Driver for Interrupting {
        fn target(&self) -> String {
            "fake".into()
        }
        fn describe(&self) -> String {
            "fake".into()
        }
        fn preflight(&self, _: &Plan) -> Result<(), DriverError> {
            Ok(())
        }
        fn is_present(&self, _: &Unit) -> bool {
            true
        }
        fn apply(&self, _: u64, action: &Action) -> Result<ActionResult, DriverError> {
            if action.unit.key == "db" {
                self.stop.cancel();
                std::thread::sleep(Duration::from_millis(30));
            }
            self.log.lock().unwrap().push(action.unit.key.clone());
            Ok(ActionResult { detail: "ok".into() })
        }
    }

    #[test]
    fn an_interrupt_lets_running_actions_finish_and_skips_the_rest_as_interrupted() {
        let applied = map(vec![unit("old", &[])]);
        let desired = map(vec![unit("db", &[]), unit("app", &["db"]), unit("web", &["app"])]);
        let plan = plan(&applied, &desired, None, &|_| true);
        let stop = Cancel::new();
        let driver = Interrupting { stop: stop.clone(), log: Mutex::new(Vec::new()) };
        let reports = execute(&plan, &driver, 2, 1, &Quiet, &stop);
        assert_eq!(*driver.log.lock().unwrap(), ["db"], "nothing new starts after the interrupt");
        let outcomes: Vec<(&str, &Outcome)> =
            plan.actions.iter().zip(&reports).map(|(a, r)| (a.unit.key.as_str(), &r.outcome)).collect();
        assert!(outcomes[0].1.succeeded(), "the running action finished: {outcomes:?}");
        for (key, outcome) in &outcomes[1..] {
            assert_eq!(**outcome, Outcome::Interrupted, "{key}");
        }
        assert_eq!(outcomes.last().unwrap().0, "old", "the delete phase does not start either");
        // What was done is what the next deploy plans against: it carries on from there.
        let before: BTreeMap<String, Applied> = applied
            .iter()
            .map(|(k, u)| (k.clone(), Applied { revision: 1, unit: u.clone(), fingerprint: None }))
            .collect();
        let after = applied_after(&before, &plan, &reports, 2);
        let current: BTreeMap<String, Unit> = after.into_iter().map(|(k, a)| (k, a.unit)).collect();
        let next = crate::plan::plan(&current, &desired, None, &|_| true);
        let keys: Vec<_> = next.actions.iter().map(|a| format!("{} {}", a.op.verb(), a.unit.key)).collect();
        assert_eq!(keys, ["create app", "create web", "delete old"]);
        // Stored as it always was: skipped, for the reason `interrupted`.
        let wire = serde_json::to_value(&reports[1]).unwrap();
        assert_eq!(wire["outcome"], serde_json::json!({ "status": "skipped", "reason": INTERRUPTED }));
        assert_eq!(serde_json::from_value::<ActionReport>(wire).unwrap().outcome, Outcome::Interrupted);
    }

    #[test]
    fn deletes_run_after_changes_and_dependents_first() {
        let applied = map(vec![unit("old_app", &["old_db"]), unit("old_db", &[])]);
        let desired = map(vec![unit("new", &[])]);
        let plan = plan(&applied, &desired, None, &|_| true);
        let driver = Fake::new(&[]);
        let reports = execute(&plan, &driver, 2, 4, &Quiet, &Cancel::new());
        assert!(reports.iter().all(|r| r.outcome.succeeded()));
        assert_eq!(*driver.log.lock().unwrap(), ["create new", "delete old_app", "delete old_db"]);
    }

    #[test]
    fn a_failure_says_whether_running_it_again_can_help() {
        use serde_json::json;
        let for_good = Outcome::Failed { error: "refused".into(), retryable: false };
        assert!(for_good.failed_for_good());
        let written = serde_json::to_value(&for_good).unwrap();
        assert_eq!(written, json!({ "status": "failed", "error": "refused", "retryable": false }));
        assert_eq!(serde_json::from_value::<Outcome>(written).unwrap(), for_good);
        let transient = Outcome::Failed { error: "x".into(), retryable: true };
        assert_eq!(serde_json::to_value(&transient).unwrap(), json!({ "status": "failed", "error": "x" }), "as before");
        let older = serde_json::from_value::<Outcome>(json!({ "status": "failed", "error": "x" })).unwrap();
        assert_eq!(older, transient, "revisions written before the flag read as retryable");
        let lost = DriverError::ClusterLost { cluster: "system.a".into(), reason: "no answer".into() };
        assert!(lost.is_transient() && !DriverError::BadName("x".into()).is_transient());
        assert!(DriverError::Scrubbed { message: "***".into(), transient: true }.is_transient());
    }
}
