//! `aptc watch`: the enforcement loop, for clusters or the embedded default (the render driver).
//!
//! Every second it looks at the policy files (paths, sizes, modification times); on a change it
//! resolves again and shows the plan, and with `--fix` applies it as a new revision. Every
//! `--interval` seconds it compares what the target holds (a cluster's releases and live objects,
//! or the rendered files) with what the last revision applied (see `aptc_runtime::drift`): drift
//! (deleted or changed objects, failed releases) is reported (a line, and a `tracing` event), and with
//! `--fix` repaired by applying the drifted instances again, through the normal plan and apply, as
//! a new revision. SIGINT or SIGTERM stops it cleanly: what runs finishes, the revision records it,
//! and it exits 130 (interrupted, as for every command) saying it stopped. A path that does not
//! exist is an I/O error (2) at once; a policy with errors is reported and watched until fixed.

use aptc_compiler::host::paths_or_cwd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aptc_core::ir::Program;
use aptc_runtime::deployer::{Desired, DriftCheck, Fix, NotPlanned, Reconciled, Reconciler};
use aptc_runtime::watch::Snapshot;
use clap::Args;

use super::deploy::{RunArgs, ask, request, show_plan, show_results, unfinished};
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

pub fn run(args: WatchArgs, color: bool) -> anyhow::Result<ExitCode> {
    let paths = paths_or_cwd(&args.paths)?;
    // A mistyped path would be watched for ever, showing nothing: an I/O error, as for every command.
    if let Some(missing) = paths.iter().find(|path| !path.exists()) {
        anyhow::bail!("{}: no such file or directory", missing.display());
    }
    if args.fix && !args.run.yes && !confirm()? {
        println!("not watching");
        return Ok(ExitCode::SUCCESS);
    }
    // The clusters the policy declares now; a policy change that changes them switches over.
    let first = policy::load(&paths, color);
    let interval = Duration::from_secs(args.interval);
    let (mut reconciler, target) = Reconciler::new(
        args.run.deployer(&super::store::policy_root(&paths)),
        first.as_ref().ok(),
        args.fix,
        interval,
    )?;
    signals::install("stopping: finishing what runs, then recording it")?;
    let cancel = signals::token();
    let mut snapshot = policy_snapshot(&paths);
    println!(
        "watching {} ({} policy files); comparing what is {target} with the last revision every {} s; {}",
        paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" "),
        snapshot.len(),
        args.interval,
        if args.fix { "fixing: changes and drift are applied" } else { "reporting only (--fix applies)" }
    );
    tracing::info!(paths = ?paths, interval = args.interval, fix = args.fix, "watching");
    let mut watch = Watch { args, paths, color, desired: None, recorded: 0 };
    watch.loaded(first);
    let mut due = Instant::now();
    let mut changed = true;
    loop {
        if changed || Instant::now() >= due {
            let step = reconciler.reconcile(watch.desired.as_ref());
            watch.show(&step, &reconciler);
            due = Instant::now() + step.requeue_after;
            changed = false;
        }
        if cancel.sleep(POLL.min(due.saturating_duration_since(Instant::now()))) {
            break;
        }
        // Given no paths, the policy is the files its `aptc.toml` takes now: a file created since
        // the start joins it (and one its globs no longer take leaves it).
        if watch.args.paths.is_empty() {
            match paths_or_cwd(&[]) {
                Ok(paths) => watch.paths = paths,
                Err(error) => tracing::warn!("reading aptc.toml again: {error}"),
            }
        }
        let now = policy_snapshot(&watch.paths);
        let changes = snapshot.changes(&now);
        if !changes.is_empty() {
            for (path, what) in &changes {
                tracing::info!(file = %path.display(), change = what, "policy file changed");
            }
            let shown: Vec<String> = changes.iter().map(|(p, w)| format!("{} {w}", p.display())).collect();
            println!("policy changed: {}", shown.join(", "));
            snapshot = now;
            watch.loaded(policy::load(&watch.paths, watch.color));
            changed = true;
        }
    }
    let noun = if watch.recorded == 1 { "revision" } else { "revisions" };
    println!("aptc watch stopped (signal received): {} {noun} recorded while watching", watch.recorded);
    tracing::info!(revisions = watch.recorded, "stopped");
    Ok(ExitCode::from(super::EXIT_INTERRUPTED))
}

/// Asks once, on a terminal, whether to apply unattended; refuses when standard input is not one.
fn confirm() -> anyhow::Result<bool> {
    ask(
        "watch --fix applies policy changes and repairs drift without asking again; go on?",
        "watch --fix applies policy changes and repairs drift without asking: pass --yes too (standard input is not \
a terminal)",
    )
}

/// The loop's state on the CLI's side: the policy as last loaded, and what was recorded.
struct Watch {
    args: WatchArgs,
    paths: Vec<PathBuf>,
    color: bool,
    /// The last policy that loaded (kept while a broken one does not).
    desired: Option<Desired>,
    /// Revisions recorded while watching.
    recorded: usize,
}

impl Watch {
    /// Takes the policy just loaded (keeping the last good one when it did not load).
    fn loaded(&mut self, program: anyhow::Result<Program>) {
        match program.and_then(|program| request(program, &self.paths, &self.args.run)) {
            Ok((desired, unresolved)) => {
                if !unresolved.is_empty() {
                    println!("{} claim(s) are not deployed (`aptc plan` says why)", unresolved.len());
                }
                self.desired = Some(desired);
            }
            Err(error) => {
                tracing::warn!(error = %super::error_message(&error), "the policy does not load");
                let keeping = if self.desired.is_some() { "; keeping the last policy that loaded" } else { "" };
                println!(
                    "the policy does not load: {}{keeping}; waiting for the next change",
                    super::error_message(&error)
                );
            }
        }
    }

    /// Prints what a reconcile step did (and logs it).
    fn show(&mut self, step: &Reconciled, reconciler: &Reconciler) {
        match &step.switched {
            Some(Ok(target)) => println!("clusters changed: now {target}"),
            Some(Err(error)) => println!("clusters changed, and cannot be used: {error}; keeping the old ones"),
            None => {}
        }
        match &step.drift {
            None => {}
            Some(DriftCheck::Unreadable(error)) => {
                tracing::warn!(error = %error, "cannot read the revisions; trying again at the next interval");
                println!("cannot check for drift now: {error}");
            }
            Some(DriftCheck::NoRevision) => tracing::debug!("no revision yet: nothing to compare"),
            Some(DriftCheck::OtherTarget { target }) => {
                tracing::warn!(target = %target, "the last revision went to another target; not comparing");
            }
            Some(DriftCheck::Compared { revision, instances, drift, news }) => {
                for found in drift {
                    tracing::warn!(
                        instance = %found.key,
                        name = %found.name,
                        place = %found.place,
                        drift = found.kind.name(),
                        detail = %found.kind.describe(),
                        revision,
                        "drift"
                    );
                }
                if *news {
                    if drift.is_empty() {
                        println!("no drift: {instances} instances as revision {revision} left them");
                    }
                    for found in drift {
                        println!("drift: {} ({}) in {}: {}", found.name, found.key, found.place, found.kind.describe());
                    }
                }
                tracing::debug!(instances, drifted = drift.len(), revision, "compared");
                if !drift.is_empty() && !self.args.fix {
                    tracing::debug!("not repaired: watching without --fix");
                }
            }
        }
        let planned = match &step.planned {
            None => return,
            Some(Err(NotPlanned::NoPolicy)) => return println!("not repaired: no policy has loaded yet"),
            Some(Err(NotPlanned::Store(error))) => {
                tracing::warn!(error = %error, "cannot open the revisions");
                return println!("not applied now: {error}");
            }
            Some(Err(NotPlanned::Plan(error))) => return println!("cannot plan: {error}"),
            Some(Ok(planned)) => planned,
        };
        let prepared = &planned.prepared;
        print!("{}", unfinished(prepared, planned.pending.as_ref()));
        if let Fix::UpToDate = planned.fix {
            let since = prepared.previous.map(|n| format!(" (revision {n})")).unwrap_or_default();
            return println!("up to date: {} instances{since}", prepared.plan.unchanged.len());
        }
        print!("{}", show_plan(prepared, reconciler.driver()));
        tracing::info!(
            actions = prepared.plan.actions.len(),
            revision = prepared.revision,
            fix = self.args.fix,
            "plan"
        );
        match &planned.fix {
            Fix::UpToDate => {}
            Fix::Reported => println!("not applied: watching without --fix (`aptc deploy` applies it)"),
            Fix::Refused(refused) => {
                for line in refused {
                    println!("refused: {line}");
                }
                println!("not applied: `{}` may not make these changes", self.args.run.identity());
            }
            Fix::NotReady(error) => println!("not applied: {error}"),
            Fix::Recorded(revision) => {
                self.recorded += 1;
                print!("{}", show_results(revision));
                let counts = revision.counts();
                println!("revision {}: {}", revision.number, counts.summary());
                tracing::info!(revision = revision.number, summary = %counts.summary(), "recorded");
                for unit in &step.backing_off {
                    let why = if unit.for_good {
                        ", in a way that trying again as it is does not fix (change the policy or the cluster)"
                    } else {
                        ""
                    };
                    println!(
                        "{} ({}) failed {} time(s) in a row{why}; backing off: its repair is tried again in {} s \
(2 to 64 intervals, doubling)",
                        unit.name,
                        unit.key,
                        unit.failures,
                        unit.retry_in.as_secs()
                    );
                }
            }
            Fix::NotRecorded(error) => println!("not recorded: {error}"),
        }
    }
}

/// The policy's `.apt` files under `paths`, as they are now.
fn policy_snapshot(paths: &[PathBuf]) -> Snapshot {
    Snapshot::of(aptc_compiler::workspace::find_apt_files(paths))
}
