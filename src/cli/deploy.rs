//! `aptc deploy` and `aptc rollback`: plan against the last revision, confirm, apply with the
//! driver `--target` chooses (the policy's clusters, or rendering: the embedded default), record
//! the revision.

use aptc_compiler::host::paths_or_cwd;
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use aptc_core::ir::Program;
use aptc_core::resolve::{Status, resolve};
use aptc_runtime::apply::{ActionReport, Outcome, Progress};
use aptc_runtime::cluster::{self, ClusterDriver};
use aptc_runtime::deploy::{Prepared, Refresh, Request, apply, policy_hash, prepare, refusals};
use aptc_runtime::driver::Driver;
use aptc_runtime::helm::Helm;
use aptc_runtime::plan::{Action, Op, Plan, Unit, refresh_digests, units};
use aptc_runtime::release::Releases;
use aptc_runtime::render::RenderDriver;
use aptc_runtime::store::{Cause, Revision, Store};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{EXIT_FINDINGS, policy};

/// Where revisions are kept, unless `--state` or `APTC_STATE` says otherwise.
pub const DEFAULT_STATE: &str = ".aptc/state.db";
/// Where the render driver writes, unless `--out` says otherwise.
pub const DEFAULT_OUT: &str = ".aptc/rendered";

/// What `deploy`, `rollback` and `watch` share: the store, the target, who, and how.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The revision store (created on the first deploy).
    #[arg(long, value_name = "PATH", env = "APTC_STATE", default_value = DEFAULT_STATE)]
    pub state: PathBuf,
    /// Where to apply: `cluster` (the clusters the policy declares, through their kubeconfig),
    /// `render` (into a directory, for GitOps), or `auto`: the clusters when one is configured
    /// and answers, else render (the embedded default). `--out` means `render`.
    #[arg(long, value_enum, env = "APTC_TARGET", default_value_t = Target::Auto)]
    pub target: Target,
    /// Where to render: OUT/CLUSTER/K8S_NAMESPACE/INSTANCE/ (default .aptc/rendered). One state
    /// file keeps the revisions of one target.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The helm binary (default: `helm` on PATH, then ./.tools/bin/helm).
    #[arg(long, value_name = "PATH", env = "APTC_HELM")]
    pub helm: Option<PathBuf>,
    /// Who deploys, as recorded in the history (default: $USER).
    #[arg(long = "as", value_name = "USER", env = "APTC_USER")]
    pub user: Option<String>,
    /// Apply without asking for confirmation (needed when standard input is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// At most this many instances are applied at once (independent ones only).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
}

/// Where a deploy applies (see [`RunArgs::target`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Auto,
    Render,
    Cluster,
}

impl RunArgs {
    /// The driver for `program`'s clusters as `--target` says, and a line saying where it applies
    /// and, for `auto`, why.
    pub fn driver(&self, program: Option<&Program>) -> anyhow::Result<(Box<dyn Driver>, String)> {
        let helm = || Helm::locate(self.helm.as_deref());
        let render = |why: &str| -> (Box<dyn Driver>, String) {
            let driver = RenderDriver::new(self.out.as_deref().unwrap_or(Path::new(DEFAULT_OUT)), helm());
            let line = format!("{}{why}", driver.describe());
            (Box::new(driver), line)
        };
        let target = if self.out.is_some() && self.target == Target::Auto { Target::Render } else { self.target };
        if target == Target::Render {
            return Ok(render(""));
        }
        if self.out.is_some() {
            bail!("--out is where the render target writes: it cannot go with --target cluster");
        }
        let releases = helm().map_err(|e| e.0).and_then(|helm| {
            let me = std::env::current_exe().map_err(|e| format!("finding the aptc executable: {e}"))?;
            Releases::new(helm, me).map_err(|e| e.0)
        });
        let connections = program.map(cluster::connections).unwrap_or_default();
        let driver = ClusterDriver::new(connections, releases);
        if target == Target::Auto {
            if !driver.is_configured() {
                return Ok(render(
                    " (the embedded default: no cluster is configured — no kubeconfig in $KUBECONFIG, ~/.kube/config \
or the policy's clusters; --target cluster requires one)",
                ));
            }
            if let Err(error) = driver.probe() {
                return Ok(render(&format!(
                    " (the embedded default: {error}; --target cluster requires the clusters)"
                )));
            }
        }
        let line = driver.describe();
        Ok((Box::new(driver), line))
    }

    /// Who runs it: `--as`/`APTC_USER`, else `$USER`.
    pub fn identity(&self) -> String {
        self.user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "unknown".to_string())
    }
}

/// What `deploy` and `rollback` share: how to run, and whether to stop at the plan.
#[derive(Debug, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Show the plan only: nothing is applied, nothing recorded.
    #[arg(long)]
    dry_run: bool,
    /// Plan against what the target holds now, not only against the last revision: instances
    /// deleted or changed on the cluster by hand are applied again.
    #[arg(long)]
    refresh: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Policy files or directories, or one `.aptir` file. Default: the current directory.
    paths: Vec<PathBuf>,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The revision whose desired state to apply again (see `aptc history`).
    revision: u64,
    #[command(flatten)]
    target: TargetArgs,
}

pub fn run(args: DeployArgs, color: bool) -> anyhow::Result<ExitCode> {
    let paths = paths_or_cwd(&args.paths);
    let program = policy::load(&paths, color)?;
    let state = resolve(&program);
    for outcome in state.claims.values().filter(|o| o.status != Status::Resolved) {
        let status = if outcome.status == Status::Rejected { "rejected" } else { "failed" };
        println!(
            "claim {} is not deployed: {status}: {} (`aptc explain {}`)",
            outcome.claim,
            outcome.reason.clone().unwrap_or_default(),
            outcome.claim
        );
    }
    let desired = units(&state);
    let request = Request {
        user: args.target.run.identity(),
        cause: Cause::Deploy { paths: paths.iter().map(|p| p.display().to_string()).collect() },
        policy: policy_hash(&program),
        program: Some(program),
        desired: desired.clone(),
        desired_state: serde_json::to_value(&state).context("encoding the desired state")?,
        parallel: usize::from(args.target.run.parallel),
    };
    carry_out(&args.target, request)
}

pub fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let state_path = &args.target.run.state;
    let missing = || format!("there are no revisions: {} does not exist", state_path.display());
    let (revision, desired_state, program) = {
        let store = Store::open_read(state_path)?.with_context(missing)?;
        let Some(revision) = store.get(args.revision)? else {
            let last = store.last()?.map_or("none".to_string(), |r| r.number.to_string());
            bail!(
                "there is no revision {} in {} (the last is {last}; see `aptc history`)",
                args.revision,
                state_path.display()
            );
        };
        let desired_state = store.desired_state(args.revision)?.unwrap_or(serde_json::Value::Null);
        let program = store.program(args.revision)?;
        (revision, desired_state, program)
    };
    println!(
        "rolling back to revision {} ({} by {}: {}); its charts and manifests are read from disk as they are now",
        revision.number,
        revision.time,
        revision.user,
        revision.cause_text()
    );
    let mut desired = revision.desired.clone();
    refresh_digests(&mut desired);
    let request = Request {
        user: args.target.run.identity(),
        cause: Cause::Rollback { to: revision.number },
        policy: revision.policy.clone(),
        program,
        desired,
        desired_state,
        parallel: usize::from(args.target.run.parallel),
    };
    carry_out(&args.target, request)
}

/// Plan, show, confirm, apply, record, report.
fn carry_out(args: &TargetArgs, request: Request) -> anyhow::Result<ExitCode> {
    let existed = args.run.state.exists();
    let store = if args.dry_run { Store::open_read(&args.run.state)? } else { Some(Store::open(&args.run.state)?) };
    let (driver, target) = args.run.driver(request.program.as_ref())?;
    let driver = driver.as_ref();
    let refresh = match (args.refresh, driver.is_local()) {
        (true, _) => Refresh::Drift,
        (false, true) => Refresh::Presence,
        (false, false) => Refresh::No,
    };
    let prepared = prepare(store.as_ref(), driver, &request.desired, refresh)?;
    report_unfinished(&prepared, store.as_ref())?;
    print!("{}", show_plan(&prepared, driver));
    if prepared.plan.is_empty() {
        let after = prepared.previous.map(|n| format!(" since revision {n}")).unwrap_or_default();
        println!("no changes: {} instances up to date{after}", prepared.plan.unchanged.len());
        let Some(store) = store.filter(|_| !args.dry_run) else {
            println!("dry run: nothing recorded");
            return Ok(ExitCode::SUCCESS);
        };
        // Recorded all the same: the history says who deployed what, and when, changes or not.
        let revision = apply(&store, driver, prepared, request, &aptc_runtime::apply::Quiet)?;
        println!("revision {}: no changes", revision.number);
        return Ok(ExitCode::SUCCESS);
    }
    let refused = refusals(&prepared, request.program.as_ref(), &request.user);
    if !refused.is_empty() {
        println!("refused: `{}` may not make every change of this plan (docs/language.md §11.3):", request.user);
        for line in &refused {
            println!("  ✗ {line}");
        }
        println!("nothing applied, nothing recorded");
        if !existed && store.is_some() {
            // The store this run created for a first deploy holds nothing: leave no trace.
            drop(store);
            let _ = std::fs::remove_file(&args.run.state);
        }
        return Ok(ExitCode::from(EXIT_FINDINGS));
    }
    if args.dry_run {
        println!("dry run: nothing applied, nothing recorded");
        return Ok(ExitCode::SUCCESS);
    }
    let store = store.expect("opened for writing above");
    driver.preflight(&prepared.plan)?;
    if !args.run.yes && !confirm(&prepared.plan)? {
        println!("nothing applied");
        return Ok(ExitCode::SUCCESS);
    }
    let progress = Bars::new(&prepared.plan);
    super::signals::install("interrupted: no new instance starts; the running ones finish and are recorded")?;
    let revision = apply(&store, driver, prepared, request, &progress)?;
    progress.done();
    print!("{}", show_results(&revision));
    let counts = revision.counts();
    println!(
        "revision {}: {} in {:.2} s",
        revision.number,
        counts.summary(),
        Duration::from_millis(revision.duration_ms).as_secs_f64()
    );
    println!("{target}");
    if super::signals::stopping() {
        use aptc_runtime::apply::INTERRUPTED;
        let interrupted = |outcome: &Outcome| matches!(outcome, Outcome::Skipped { reason } if reason == INTERRUPTED);
        let skipped = revision.actions.iter().filter(|a| interrupted(&a.report.outcome)).count();
        println!("interrupted: {skipped} not started (recorded as skipped); deploy again to carry on");
        return Ok(ExitCode::from(super::signals::EXIT_INTERRUPTED));
    }
    if counts.failed > 0 || counts.skipped > 0 {
        println!("run the same command again to retry what failed or was skipped");
        return Ok(ExitCode::from(EXIT_FINDINGS));
    }
    Ok(ExitCode::SUCCESS)
}

/// Tells of a deploy that was killed before it recorded its revision: recorded now (`recovered`),
/// or, when the store is only read (a dry run), still unrecorded.
pub(super) fn report_unfinished(prepared: &Prepared, store: Option<&Store>) -> anyhow::Result<()> {
    if let Some(revision) = &prepared.recovered {
        println!(
            "revision {} ({} by {}) stopped before it finished (aptc was killed or crashed); recorded what it did: {}",
            revision.number,
            revision.time,
            revision.user,
            revision.counts().summary()
        );
    } else if let Some(journal) = store.map(Store::pending).transpose()?.flatten() {
        println!(
            "revision {} ({} by {}) has not finished: another aptc is deploying, or one was killed (the next deploy \
records what it did); this plan does not count its actions",
            journal.revision.number, journal.revision.time, journal.revision.user
        );
    }
    Ok(())
}

/// One line per action, then the counts.
pub(super) fn show_plan(prepared: &Prepared, driver: &dyn Driver) -> String {
    let plan = &prepared.plan;
    let mut out = String::new();
    let after = prepared.previous.map(|n| format!(" (the last is {n})")).unwrap_or_default();
    if !plan.is_empty() {
        out.push_str(&format!("plan for revision {}{after}, {}:\n", prepared.revision, driver.describe()));
    }
    let width = plan.actions.iter().map(|a| a.unit.name.len()).max().unwrap_or(0);
    for action in &plan.actions {
        out.push_str(&format!(
            "  {} {:<6}  {:<width$}  {}  {}  ({})\n",
            sign(action.op),
            action.op.verb(),
            action.unit.name,
            action.unit.key,
            action.unit.source.describe(),
            action.why
        ));
    }
    if !plan.is_empty() {
        out.push_str(&format!(
            "{} to create, {} to update, {} to delete; {} unchanged\n",
            plan.count(Op::Create),
            plan.count(Op::Update),
            plan.count(Op::Delete),
            plan.unchanged.len()
        ));
    }
    out
}

fn sign(op: Op) -> char {
    match op {
        Op::Create => '+',
        Op::Update => '~',
        Op::Delete => '-',
    }
}

/// One line per action of a revision, in plan order, with its outcome.
pub fn show_results(revision: &Revision) -> String {
    let mut out = String::new();
    let width = revision.actions.iter().map(|a| a.name.len()).max().unwrap_or(0);
    for action in &revision.actions {
        let took = Duration::from_millis(action.report.duration_ms).as_secs_f64();
        let (verb, name) = (action.op.verb(), &action.name);
        match &action.report.outcome {
            Outcome::Succeeded { detail } => {
                out.push_str(&format!("  ✓ {:<7} {name:<width$}  {detail}  ({took:.2} s)\n", action.op.past()))
            }
            Outcome::Failed { error } => out.push_str(&format!("  ✗ failed  {verb} {name}: {}\n", indent(error))),
            Outcome::Skipped { reason } => out.push_str(&format!("  - skipped {verb} {name}: {reason}\n")),
        }
    }
    out
}

/// Continuation lines of a multi-line message, indented under the first.
fn indent(text: &str) -> String {
    text.trim_end().replace('\n', "\n      ")
}

/// Asks on the terminal; refuses when standard input is not one.
fn confirm(plan: &Plan) -> anyhow::Result<bool> {
    ask(
        &format!("apply these {} actions?", plan.actions.len()),
        "not applying without confirmation: standard input is not a terminal; pass --yes to apply, or --dry-run to \
see the plan only",
    )
}

/// Asks a yes/no question on the terminal; without one, fails with `refusal`.
pub fn ask(question: &str, refusal: &str) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("{refusal}");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).context("reading the answer")?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Progress on standard error when it is a terminal: a line per running instance and an overall
/// bar. Hidden otherwise (the results are printed after, in plan order, either way).
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    running: Mutex<HashMap<usize, ProgressBar>>,
}

impl Bars {
    fn new(plan: &Plan) -> Bars {
        let target =
            if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(ProgressBar::new(plan.actions.len() as u64));
        overall.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} instances  {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bars { multi, overall, running: Mutex::new(HashMap::new()) }
    }

    fn done(&self) {
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }

    fn line(action: &Action) -> String {
        let unit: &Unit = &action.unit;
        format!("{} {} ({})", action.op.verb(), unit.name, unit.place())
    }
}

impl Progress for Bars {
    fn started(&self, index: usize, action: &Action) {
        let bar = self.multi.insert_before(&self.overall, ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(Self::line(action));
        bar.enable_steady_tick(Duration::from_millis(100));
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(index, bar);
    }

    fn finished(&self, index: usize, action: &Action, report: &ActionReport) {
        if let Some(bar) = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&index) {
            bar.finish_and_clear();
        }
        let mark = match report.outcome {
            Outcome::Succeeded { .. } => "✓",
            Outcome::Failed { .. } => "✗",
            Outcome::Skipped { .. } => "-",
        };
        self.overall.set_message(format!("{mark} {}", Self::line(action)));
        self.overall.inc(1);
    }
}
