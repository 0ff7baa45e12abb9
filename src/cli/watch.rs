//! `aptc watch`: the enforcement loop, for clusters or the embedded default (the render driver).
//!
//! Every second it looks at the policy files (paths, sizes, modification times); on a change it
//! resolves again and shows the plan, and with `--fix` applies it as a new revision. Every
//! `--interval` seconds it compares what the target holds (a cluster's releases and live objects,
//! or the rendered files) with what the last revision applied (see `aptc_runtime::drift`): drift
//! (deleted or changed objects, failed releases) is reported (a line, and a `tracing` event), and with
//! `--fix` repaired by applying the drifted instances again, through the normal plan and apply, as
//! a new revision. SIGINT or SIGTERM stops it cleanly: what runs finishes, the revision records it,
//! and it exits 0 saying it stopped.

use aptc_compiler::host::paths_or_cwd;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aptc_core::ir::Program;
use aptc_core::resolve::{Status, resolve};
use aptc_runtime::apply::Quiet;
use aptc_runtime::deploy::{Refresh, Request, apply, policy_hash, prepare, refusals};
use aptc_runtime::drift::{Drift, Drifted, detect, explain};
use aptc_runtime::driver::Driver;
use aptc_runtime::plan::{Unit, units};
use aptc_runtime::store::{Cause, Store};
use aptc_runtime::watch::Snapshot;
use clap::Args;

use super::deploy::{RunArgs, ask, show_plan, show_results};
use super::{policy, signals};

/// How often the policy files are looked at.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Policy files or directories. Default: the current directory.
    paths: Vec<PathBuf>,
    /// Seconds between two comparisons of the output with the last revision.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    interval: u64,
    /// Apply policy changes and repair drift (as new revisions); without it, only report them.
    #[arg(long)]
    fix: bool,
    #[command(flatten)]
    run: RunArgs,
}

/// The policy as last loaded.
struct Loaded {
    program: Program,
    desired: BTreeMap<String, Unit>,
    desired_state: serde_json::Value,
}

struct Watcher {
    args: WatchArgs,
    paths: Vec<PathBuf>,
    driver: Box<dyn Driver>,
    user: String,
    color: bool,
    loaded: Option<Loaded>,
    /// Revisions recorded while watching.
    recorded: usize,
    /// The drift last reported (keys and kinds), so that unchanged drift is not repeated.
    reported: BTreeSet<(String, String)>,
}

pub fn run(args: WatchArgs, color: bool) -> anyhow::Result<ExitCode> {
    let paths = paths_or_cwd(&args.paths);
    if args.fix && !args.run.yes && !confirm()? {
        println!("not watching");
        return Ok(ExitCode::SUCCESS);
    }
    // The clusters the policy declares now; a policy change that changes them switches over.
    let first = policy::load(&paths, color).ok();
    let (driver, target) = args.run.driver(first.as_ref())?;
    signals::install("stopping: finishing what runs, then recording it")?;
    let user = args.run.identity();
    let interval = Duration::from_secs(args.interval);
    let mut snapshot = policy_snapshot(&paths);
    println!(
        "watching {} ({} policy files); comparing what is {target} with the last revision every {} s; {}",
        paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" "),
        snapshot.len(),
        args.interval,
        if args.fix { "fixing: changes and drift are applied" } else { "reporting only (--fix applies)" }
    );
    tracing::info!(paths = ?paths, interval = args.interval, fix = args.fix, "watching");
    let mut watcher =
        Watcher { args, paths, driver, user, color, loaded: None, recorded: 0, reported: BTreeSet::new() };
    watcher.policy_changed();
    let mut next_check = Instant::now();
    while !signals::stopping() {
        if Instant::now() >= next_check {
            watcher.check_drift();
            next_check = Instant::now() + interval;
        }
        let until = Instant::now() + POLL;
        while !signals::stopping() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        if signals::stopping() {
            break;
        }
        let now = policy_snapshot(&watcher.paths);
        let changes = snapshot.changes(&now);
        if !changes.is_empty() {
            for (path, what) in &changes {
                tracing::info!(file = %path.display(), change = what, "policy file changed");
            }
            let shown: Vec<String> = changes.iter().map(|(p, w)| format!("{} {w}", p.display())).collect();
            println!("policy changed: {}", shown.join(", "));
            snapshot = now;
            watcher.policy_changed();
        }
    }
    let noun = if watcher.recorded == 1 { "revision" } else { "revisions" };
    println!("aptc watch stopped (signal received): {} {noun} recorded while watching", watcher.recorded);
    tracing::info!(revisions = watcher.recorded, "stopped");
    Ok(ExitCode::SUCCESS)
}

/// Asks once, on a terminal, whether to apply unattended; refuses when standard input is not one.
fn confirm() -> anyhow::Result<bool> {
    ask(
        "watch --fix applies policy changes and repairs drift without asking again; go on?",
        "watch --fix applies policy changes and repairs drift without asking: pass --yes too (standard input is not \
a terminal)",
    )
}

impl Watcher {
    /// Loads the policy again (keeping the last good one when it does not load) and plans.
    fn policy_changed(&mut self) {
        match policy::load(&self.paths, self.color) {
            Ok(program) => {
                let state = resolve(&program);
                let unresolved = state.claims.values().filter(|o| o.status != Status::Resolved).count();
                if unresolved > 0 {
                    println!("{unresolved} claim(s) are not deployed (`aptc plan` says why)");
                }
                let desired_state = match serde_json::to_value(&state) {
                    Ok(value) => value,
                    Err(error) => {
                        println!("error: encoding the desired state: {error}");
                        return;
                    }
                };
                // A changed cluster declaration (context, kubeconfig) changes where to apply.
                if self.loaded.as_ref().is_some_and(|loaded| loaded.program.clusters != program.clusters) {
                    match self.args.run.driver(Some(&program)) {
                        Ok((driver, target)) => {
                            println!("clusters changed: now {target}");
                            self.driver = driver;
                        }
                        Err(error) => println!("clusters changed, and cannot be used: {error:#}; keeping the old ones"),
                    }
                }
                self.loaded = Some(Loaded { desired: units(&state), program, desired_state });
                self.reconcile(&[]);
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "the policy does not load");
                let keeping = if self.loaded.is_some() { "; keeping the last policy that loaded" } else { "" };
                println!("the policy does not load: {error:#}{keeping}; waiting for the next change");
            }
        }
    }

    /// Compares the output with the last revision; reports drift, and repairs it under `--fix`.
    fn check_drift(&mut self) {
        let last = match Store::open_read(&self.args.run.state).and_then(|s| s.map(|s| s.last()).transpose()) {
            Ok(last) => last.flatten(),
            Err(error) => {
                tracing::warn!(error = %error, "cannot read the revisions; trying again at the next interval");
                println!("cannot check for drift now: {error}");
                return;
            }
        };
        let Some(last) = last else {
            tracing::debug!("no revision yet: nothing to compare");
            return;
        };
        if last.target != self.driver.target() {
            tracing::warn!(target = %last.target, "the last revision went to another target; not comparing");
            return;
        }
        let drift = detect(&last.applied, self.driver.as_ref());
        for found in &drift {
            tracing::warn!(
                instance = %found.key,
                name = %found.name,
                place = %found.place,
                drift = found.kind.name(),
                detail = %found.kind.describe(),
                revision = last.number,
                "drift"
            );
        }
        let now: BTreeSet<(String, String)> = drift.iter().map(|d| (d.key.clone(), d.kind.describe())).collect();
        if now != self.reported || (self.args.fix && !drift.is_empty()) {
            if drift.is_empty() {
                println!("no drift: {} instances as revision {} left them", last.applied.len(), last.number);
            }
            for found in &drift {
                println!("drift: {} ({}) in {}: {}", found.name, found.key, found.place, found.kind.describe());
            }
            self.reported = now;
        }
        tracing::debug!(instances = last.applied.len(), drifted = drift.len(), revision = last.number, "compared");
        if !drift.is_empty() {
            if self.args.fix {
                self.reconcile(&drift);
            } else {
                tracing::debug!("not repaired: watching without --fix");
            }
        }
    }

    /// Plans the loaded policy against the last revision (drifted instances counting as absent),
    /// shows the plan, and under `--fix` applies it and records a revision.
    fn reconcile(&mut self, drift: &[Drift]) {
        let Some(loaded) = &self.loaded else {
            println!("not repaired: no policy has loaded yet");
            return;
        };
        let driver = Drifted { driver: self.driver.as_ref(), keys: drift.iter().map(|d| d.key.clone()).collect() };
        let store = if self.args.fix {
            Store::open(&self.args.run.state).map(Some)
        } else {
            Store::open_read(&self.args.run.state)
        };
        let store = match store {
            Ok(store) => store,
            Err(error) => {
                tracing::warn!(error = %error, "cannot open the revisions");
                println!("not applied now: {error}");
                return;
            }
        };
        let mut prepared = match prepare(store.as_ref(), &driver, &loaded.desired, Refresh::Presence) {
            Ok(prepared) => prepared,
            Err(error) => {
                println!("cannot plan: {error}");
                return;
            }
        };
        if let Err(error) = super::deploy::report_unfinished(&prepared, store.as_ref()) {
            tracing::error!(%error, "reading the journal");
        }
        explain(&mut prepared.plan, drift);
        if prepared.plan.is_empty() {
            let since = prepared.previous.map(|n| format!(" (revision {n})")).unwrap_or_default();
            println!("up to date: {} instances{since}", prepared.plan.unchanged.len());
            return;
        }
        print!("{}", show_plan(&prepared, self.driver.as_ref()));
        tracing::info!(
            actions = prepared.plan.actions.len(),
            revision = prepared.revision,
            fix = self.args.fix,
            "plan"
        );
        let Some(store) = store.filter(|_| self.args.fix) else {
            println!("not applied: watching without --fix (`aptc deploy` applies it)");
            return;
        };
        let refused = refusals(&prepared, Some(&loaded.program), &self.user);
        if !refused.is_empty() {
            for line in &refused {
                println!("refused: {line}");
            }
            println!("not applied: `{}` may not make these changes", self.user);
            return;
        }
        if let Err(error) = driver.preflight(&prepared.plan) {
            println!("not applied: {error}");
            return;
        }
        let cause = Cause::Deploy { paths: self.paths.iter().map(|p| p.display().to_string()).collect() };
        let request = Request {
            user: self.user.clone(),
            cause,
            policy: policy_hash(&loaded.program),
            program: Some(loaded.program.clone()),
            desired: loaded.desired.clone(),
            desired_state: loaded.desired_state.clone(),
            parallel: usize::from(self.args.run.parallel),
        };
        match apply(&store, &driver, prepared, request, &Quiet) {
            Ok(revision) => {
                self.recorded += 1;
                print!("{}", show_results(&revision));
                let counts = revision.counts();
                println!("revision {}: {}", revision.number, counts.summary());
                tracing::info!(revision = revision.number, summary = %counts.summary(), "recorded");
                self.reported.clear();
            }
            Err(error) => println!("not recorded: {error}"),
        }
    }
}

/// The policy's `.apt` files under `paths`, as they are now.
fn policy_snapshot(paths: &[std::path::PathBuf]) -> Snapshot {
    Snapshot::of(aptc_compiler::workspace::find_apt_files(paths).map_err(|e| e.to_string()))
}
