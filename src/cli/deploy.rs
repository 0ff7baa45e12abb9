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
use aptc_core::resolve::{ClaimOutcome, Status, resolve_keeping};
use aptc_runtime::apply::{ActionReport, INTERRUPTED, Outcome, Progress};
use aptc_runtime::credentials::Home;
use aptc_runtime::deploy::{Prepared, Request, policy_hash};
use aptc_runtime::deployer::{Deployer, Deployment, Ended, Options, Supervisor, TargetChoice, Targets};
use aptc_runtime::driver::Driver;
use aptc_runtime::helm::HelmError;
use aptc_runtime::plan::{Action, ClaimEnds, Kind, Op, Plan, Unit, units};
use aptc_runtime::report::Report;
use aptc_runtime::store::{Cause, Journal, Location, Revision};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{EXIT_FINDINGS, Format, policy};

/// Where revisions are kept under the policy root, unless `--state` or `APTC_STATE` says otherwise.
pub const DEFAULT_STATE: &str = ".aptc/state.db";
/// Where the render driver writes under the policy root, unless `--out` says otherwise.
pub const DEFAULT_OUT: &str = ".aptc/rendered";

/// What `deploy`, `rollback` and `watch` share: the store, the target, who, and how.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The revision store (created on the first deploy). Default: .aptc/state.db under the policy
    /// root (the nearest directory holding aptc.toml, else the directory deployed), which refuses
    /// another policy's deploys; one given here is used as it is.
    /// PATH is a file; kube://CONTEXT/NAMESPACE keeps the revisions as ConfigMaps in NAMESPACE of
    /// the kubeconfig's CONTEXT (empty: its current context), shared by everyone deploying there.
    #[arg(long, value_name = "PATH|kube://CONTEXT/NAMESPACE", env = "APTC_STATE", value_parser = super::store::parse_state())]
    pub state: Option<Location>,
    /// Where to apply: `cluster` (the clusters the policy declares, through their kubeconfig),
    /// `render` (into a directory, for GitOps), or `auto`: the clusters when one is configured
    /// and answers, else render (the embedded default). `--out` means `render`.
    #[arg(long, value_enum, env = "APTC_TARGET", default_value_t = Target::Auto)]
    pub target: Target,
    /// Where to render: OUT/CLUSTER/K8S_NAMESPACE/INSTANCE/ (default .aptc/rendered under the
    /// policy root). One state file keeps the revisions of one target.
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
    /// Where deploys of the policy at `root` apply, as `--target`, `--out` and `--helm` say.
    pub fn targets(&self, root: &Path) -> Targets {
        Targets {
            choice: match self.target {
                Target::Auto => TargetChoice::Auto,
                Target::Render => TargetChoice::Render,
                Target::Cluster => TargetChoice::Cluster,
            },
            out: self.out.clone(),
            default_out: root.join(DEFAULT_OUT),
            helm: self.helm.clone(),
            post_renderer: std::env::current_exe().map_err(|e| HelmError::io("finding the aptc executable", e)),
            // A laptop's home: the ambient kubeconfig's current context and its namespace.
            home: Home::default(),
        }
    }

    /// Deploys of the policy at `root` (see [`super::store::policy_root`]) to `--state` (else the
    /// root's store) on [`RunArgs::targets`], stopped by this process's signals.
    pub fn deployer(&self, root: &Path) -> Deployer {
        let state = super::store::state_location(self.state.as_ref(), root);
        Deployer::new(&state, self.targets(root), super::signals::token())
            .with_policy_root(root.to_path_buf(), self.state.is_some())
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
    /// Apply a plan that deletes more than half of the deployed instances (or all of them);
    /// without it such a plan is refused, listing what would go.
    #[arg(long)]
    allow_mass_delete: bool,
    /// Output format: `text` for people, or `json`: the plan's actions with their reasons and,
    /// once applied, each one's result and timing (docs/formats.md); the lines for people then go
    /// to standard error.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
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
    let paths = paths_or_cwd(&args.paths)?;
    let program = policy::load(&paths, color)?;
    let (request, unresolved) = request(program, &paths, &args.target.run)?;
    let mut terminal = Terminal::new("deploy", &args.target);
    for outcome in &unresolved {
        let status = if outcome.status == Status::Rejected { "rejected" } else { "failed" };
        terminal.say(&format!(
            "claim {} is not deployed: {status}: {} (`aptc explain {}`)",
            outcome.claim,
            outcome.reason.clone().unwrap_or_default(),
            outcome.claim
        ));
    }
    let root = super::store::policy_root(&paths);
    let deployment = args.target.run.deployer(&root).deploy(request, args.target.options(), &mut terminal)?;
    let failed = unresolved.iter().filter(|o| o.status == Status::Failed).count();
    terminal.report = terminal.report.take().map(|report| report.not_deployed(&unresolved));
    terminal.finish(deployment, failed)
}

/// What deploying `program` (read from `paths`) asks for, as `run` says who and how; and the claims
/// that are not deployed because they did not resolve.
pub(super) fn request(
    program: Program,
    paths: &[PathBuf],
    run: &RunArgs,
) -> anyhow::Result<(Request, Vec<ClaimOutcome>)> {
    let state = resolve_keeping(&program, &run.deployer(&super::store::policy_root(paths)).deployed_names()?);
    let unresolved =
        state.claims.values().filter(|o| o.status != Status::Resolved).map(|o| ClaimOutcome::clone(o)).collect();
    let request = Request {
        user: run.identity(),
        cause: Cause::Deploy { paths: paths.iter().map(|p| p.display().to_string()).collect() },
        policy: policy_hash(&program),
        desired: units(&state, &run.targets(&super::store::policy_root(paths)).secrets()),
        claims: Some(ClaimEnds::of(&program, &state)),
        desired_state: serde_json::to_value(&state).context("encoding the desired state")?.into(),
        program: Some(program),
        parallel: usize::from(run.parallel),
    };
    Ok((request, unresolved))
}

pub fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let run = &args.target.run;
    let mut terminal = Terminal::new("rollback", &args.target);
    let deployment = run.deployer(&super::store::policy_root(&[])).rollback(
        args.revision,
        run.identity(),
        usize::from(run.parallel),
        args.target.options(),
        &mut terminal,
    )?;
    terminal.finish(deployment, 0)
}

impl TargetArgs {
    fn options(&self) -> Options {
        Options { dry_run: self.dry_run, refresh: self.refresh, allow_mass_delete: self.allow_mass_delete }
    }
}

/// An attended deploy on the terminal: prints each step, asks before applying (unless `--yes`),
/// shows progress bars, and reports how it ended with the exit code. With `--format json` the
/// report ([`Report`]) goes to standard output and the lines for people to standard error.
struct Terminal {
    yes: bool,
    /// Why confirming was impossible (standard input is not a terminal), reported as the error.
    unconfirmed: Option<anyhow::Error>,
    bars: Option<Bars>,
    /// `deploy` or `rollback`, for the report.
    command: &'static str,
    dry_run: bool,
    /// The report to print at the end (`--format json`), once the plan is made.
    json: bool,
    report: Option<Report>,
}

impl Terminal {
    fn new(command: &'static str, args: &TargetArgs) -> Terminal {
        Terminal {
            yes: args.run.yes,
            unconfirmed: None,
            bars: None,
            command,
            dry_run: args.dry_run,
            json: args.format == Format::Json,
            report: None,
        }
    }

    /// A line for people: on standard output, or on standard error when standard output carries
    /// the JSON report.
    fn say(&self, line: &str) {
        let line = super::words::printable(line);
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    /// Text for people (whole lines), where [`Terminal::say`] puts it.
    fn show(&self, text: &str) {
        let text = super::words::printable(text);
        if self.json {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    }

    /// Prints how `deployment` ended (and, with `--format json`, the report); the exit code.
    /// `failed_claims` claims failed to resolve: a deploy that applied fine still exits 1.
    fn finish(mut self, deployment: Deployment, failed_claims: usize) -> anyhow::Result<ExitCode> {
        let code = self.conclude(&deployment)?;
        let code = if failed_claims > 0 && code == ExitCode::SUCCESS {
            self.say(&format!(
                "{} failed: fix them (what they had is kept meanwhile)",
                super::words::count(failed_claims, "claim")
            ));
            ExitCode::from(EXIT_FINDINGS)
        } else {
            code
        };
        if self.json {
            let report = match self.report.take() {
                Some(report) => report.ended(&deployment.target, &deployment.ended),
                None => bail!("no plan was made, so there is no report"),
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Ok(code)
    }

    /// Prints how `deployment` ended, for people; the exit code.
    fn conclude(&mut self, deployment: &Deployment) -> anyhow::Result<ExitCode> {
        let (revision, not_started) = match &deployment.ended {
            Ended::NoChanges { unchanged, previous, revision } => {
                let after = previous.map(|n| format!(" since revision {n}")).unwrap_or_default();
                self.say(&format!("no changes: {unchanged} instances up to date{after}"));
                match revision {
                    Some(revision) => self.say(&format!("revision {}: no changes", revision.number)),
                    None => self.say("dry run: nothing recorded"),
                }
                return Ok(ExitCode::SUCCESS);
            }
            Ended::Refused { user, refusals } => {
                self.say(&format!(
                    "refused: `{user}` may not make every change of this plan (docs/language.md §11.3):"
                ));
                for line in refusals {
                    self.say(&format!("  ✗ {line}"));
                }
                self.say("nothing applied, nothing recorded");
                return Ok(ExitCode::from(EXIT_FINDINGS));
            }
            Ended::MassDelete { deletes, deployed } => {
                self.say(&format!(
                    "refused: this plan deletes {} of the {deployed} deployed instances (more than half); if that is \
meant, deploy again with --allow-mass-delete. It would delete:",
                    deletes.len()
                ));
                for line in deletes {
                    self.say(&format!("  - {line}"));
                }
                self.say("nothing applied, nothing recorded");
                return Ok(ExitCode::from(EXIT_FINDINGS));
            }
            Ended::DryRun => {
                self.say("dry run: nothing applied, nothing recorded");
                return Ok(ExitCode::SUCCESS);
            }
            Ended::Declined => {
                if let Some(error) = self.unconfirmed.take() {
                    return Err(error);
                }
                self.say("nothing applied");
                return Ok(ExitCode::SUCCESS);
            }
            Ended::Applied(revision) => (revision, None),
            Ended::Interrupted { revision, not_started } => (revision, Some(*not_started)),
        };
        let mut live = false;
        if let Some(bars) = &self.bars {
            bars.done();
            live = bars.lines.is_some();
        }
        // With JSON on stdout, the people's lines share stderr with the live ones: not twice.
        if !(self.json && live) {
            self.show(&show_results(revision));
        }
        let counts = revision.counts();
        self.say(&format!(
            "revision {}: {} in {:.2} s",
            revision.number,
            counts.summary(),
            Duration::from_millis(revision.duration_ms).as_secs_f64()
        ));
        self.say(&deployment.target);
        if let Some(skipped) = not_started {
            self.say(&format!("interrupted: {skipped} not started (recorded as skipped); deploy again to carry on"));
            return Ok(ExitCode::from(super::EXIT_INTERRUPTED));
        }
        let for_good = revision.actions.iter().filter(|a| a.report.outcome.failed_for_good()).count();
        if for_good > 0 {
            self.say(&format!(
                "{for_good} failed in a way that running again does not fix: change the policy or the cluster first"
            ));
        }
        if counts.failed > for_good || counts.skipped > 0 {
            self.say("run the same command again to retry what failed or was skipped");
        }
        // Any failure is a finding (README "Exit codes"), also one that running again does not fix.
        if counts.failed > 0 || counts.skipped > 0 {
            return Ok(ExitCode::from(EXIT_FINDINGS));
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl Supervisor for Terminal {
    fn rolling_back(&mut self, to: &Revision) {
        self.say(&format!(
            "rolling back to revision {} ({} by {}: {}); its charts and manifests are read from disk as they are now",
            to.number,
            to.time,
            to.user,
            to.cause_text()
        ));
    }

    fn planned(&mut self, prepared: &Prepared, pending: Option<&Journal>, driver: &dyn Driver) {
        self.show(&unfinished(prepared, pending));
        self.show(&show_plan(prepared, driver));
        if self.json {
            self.report = Some(Report::planned(self.command, self.dry_run, &driver.describe(), prepared));
        }
    }

    fn confirm(&mut self, prepared: &Prepared) -> bool {
        if self.yes {
            return true;
        }
        confirm(&prepared.plan).unwrap_or_else(|error| {
            self.unconfirmed = Some(error);
            false
        })
    }

    fn applying(&mut self, prepared: &Prepared) -> &dyn Progress {
        let stopping = "interrupted: no new instance starts; the running ones finish and are recorded";
        if let Err(error) = super::signals::install(stopping) {
            tracing::warn!(error = %super::error_message(&error), "a signal will stop aptc at once");
        }
        self.bars.insert(Bars::new(&prepared.plan))
    }
}

/// Tells of a deploy that was killed before it recorded its revision: recorded now (`recovered`),
/// or, when the store is only read (a dry run), still unrecorded (`pending`); empty when there is
/// none.
pub(super) fn unfinished(prepared: &Prepared, pending: Option<&Journal>) -> String {
    if let Some(revision) = &prepared.recovered {
        format!(
            "revision {} ({} by {}) stopped before it finished (aptc was killed or crashed); recorded what it did: {}\n",
            revision.number,
            revision.time,
            revision.user,
            revision.counts().summary()
        )
    } else if let Some(journal) = pending {
        format!(
            "revision {} ({} by {}) has not finished: another aptc is deploying, or one was killed (the next deploy \
records what it did); this plan does not count its actions\n",
            journal.revision.number, journal.revision.time, journal.revision.user
        )
    } else {
        String::new()
    }
}

/// One line per action, then one per instance kept for a failed claim, then the counts.
pub(super) fn show_plan(prepared: &Prepared, driver: &dyn Driver) -> String {
    let plan = &prepared.plan;
    let mut out = String::new();
    let after = prepared.previous.map(|n| format!(" (the last is {n})")).unwrap_or_default();
    let shown = !plan.is_empty() || !plan.kept.is_empty();
    if shown {
        out.push_str(&format!("plan for revision {}{after}, {}:\n", prepared.revision, driver.describe()));
    }
    let lines = plan
        .actions
        .iter()
        .map(|a| (a.op.kind(), &a.unit, &a.why))
        .chain(plan.kept.iter().map(|k| (Kind::Kept, &k.unit, &k.why)));
    let width = plan.actions.iter().map(|a| a.unit.name.len()).chain(plan.kept.iter().map(|k| k.unit.name.len()));
    let width = width.max().unwrap_or(0);
    for (kind, unit, why) in lines {
        out.push_str(&format!(
            "  {} {:<6}  {:<width$}  {}  {}  ({why})\n",
            kind.sign(),
            kind.verb(),
            unit.name,
            unit.key,
            unit.source.describe(),
        ));
    }
    if shown {
        out.push_str(&format!(
            "{} to create, {} to update, {} to delete; {} unchanged, {} kept\n",
            plan.count(Op::Create),
            plan.count(Op::Update),
            plan.count(Op::Delete),
            plan.unchanged.len(),
            plan.kept.len()
        ));
    }
    out
}

/// One line per action of a revision, in plan order, with its outcome.
pub fn show_results(revision: &Revision) -> String {
    let width = revision.actions.iter().map(|a| a.name.len()).max().unwrap_or(0);
    revision.actions.iter().map(|action| result_line(action.op, &action.name, &action.report, width)).collect()
}

/// An action's line once it ended (`  ✓ created NAME  DETAIL  (0.05 s)`), names padded to
/// `width`.
fn result_line(op: Op, name: &str, report: &ActionReport, width: usize) -> String {
    let took = Duration::from_millis(report.duration_ms).as_secs_f64();
    let verb = op.verb();
    match &report.outcome {
        Outcome::Succeeded { detail } => format!("  ✓ {:<7} {name:<width$}  {detail}  ({took:.2} s)\n", op.past()),
        Outcome::Failed { error, .. } => format!("  ✗ failed  {verb} {name}: {}\n", indent(error)),
        Outcome::Skipped { reason } => format!("  - skipped {verb} {name}: {reason}\n"),
        Outcome::Interrupted => format!("  - skipped {verb} {name}: {INTERRUPTED}\n"),
    }
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

/// Progress on standard error. On a terminal: a line per running instance and an overall bar.
/// Off a terminal (CI logs, a file): each action's result line as soon as it ends, so a log shows
/// progress and a killed deploy keeps the lines of what it did. The results are printed after, in
/// plan order, either way.
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    running: Mutex<HashMap<usize, ProgressBar>>,
    /// Off a terminal, the width of the names in the result lines printed as actions end.
    lines: Option<usize>,
}

impl Bars {
    fn new(plan: &Plan) -> Bars {
        let terminal = std::io::stderr().is_terminal();
        let target = if terminal { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(ProgressBar::new(plan.actions.len() as u64));
        overall.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} instances  {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let width = plan.actions.iter().map(|a| a.unit.name.len()).max().unwrap_or(0);
        Bars { multi, overall, running: Mutex::new(HashMap::new()), lines: (!terminal).then_some(width) }
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
            Outcome::Skipped { .. } | Outcome::Interrupted => "-",
        };
        self.overall.set_message(format!("{mark} {}", Self::line(action)));
        self.overall.inc(1);
        if let Some(width) = self.lines {
            // One write per line: lines of actions ending at once do not interleave.
            let line = result_line(action.op, &action.unit.name, report, width);
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}
