//! `aptc check`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use aptc_compiler::check::Summary;
use aptc_compiler::db::Settings;
use aptc_compiler::diagnostics::{json, render, sarif};
use aptc_compiler::host::{Analysis, load_program};
use aptc_compiler::workspace;
use aptc_core::ir::Program;
use aptc_runtime::store::{self, Location};
use clap::{Args, ValueEnum};

use super::checkout::Checkout;
use super::{EXIT_FINDINGS, paths_or_cwd};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Files or directories (searched recursively for *.apt). Default: the current directory.
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Treat warnings as errors (exit 1 if there are any).
    #[arg(long)]
    deny_warnings: bool,
    /// Check as this user would change the policy: report every object they may not define or
    /// change (a user of the policy). CI can set it once in the environment.
    #[arg(long = "as", value_name = "USER", env = "APTC_USER")]
    acting_user: Option<String>,
    /// With --as: check only what changed since BASE, as a deploy does (docs/language.md §11.3):
    /// each object added, changed or removed must be one the user may manage under BASE's roles.
    /// BASE is a policy directory, or the number of a revision in the store (--state).
    #[arg(long, value_name = "BASE", requires = "acting_user", conflicts_with = "git")]
    against: Option<String>,
    /// With --as: the change check of --against, with BASE the policy at git revision REV
    /// (a branch, tag or commit of the repository holding the paths; e.g. the pull request's base).
    #[arg(long, value_name = "REV", requires = "acting_user")]
    git: Option<String>,
    /// The revision store, for --against REVISION. Default: `.aptc/state.db` in the policy root
    /// (the directory with `aptc.toml`, else the common directory of the paths).
    /// PATH is a file; kube://CONTEXT/NAMESPACE keeps the revisions as ConfigMaps in NAMESPACE of
    /// the kubeconfig's CONTEXT (empty: its current context), shared by everyone deploying there.
    #[arg(long, value_name = "PATH|kube://CONTEXT/NAMESPACE", env = "APTC_STATE", value_parser = super::store::parse_state())]
    state: Option<Location>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Annotated source for people.
    Human,
    /// A JSON array, one object per diagnostic.
    Json,
    /// SARIF 2.1.0, for GitHub code scanning.
    Sarif,
}

pub fn run(args: CheckArgs, color: bool) -> anyhow::Result<ExitCode> {
    // Checking builds trees and tables touched once (`policy::huge_pages`); not allowed again
    // after, since `check` resolves nothing.
    super::policy::huge_pages(false);
    let paths = paths_or_cwd(&args.paths)?;
    let files = workspace::find_policy_files(&paths)?;
    let sources = workspace::load(&files)?;
    tracing::info!(files = sources.len(), "checking");
    let base = base_policy(&args, &paths)?;
    // Against a base, only changes count: every object's own right is not asked (APT0502 for all).
    let acting_user = if base.is_some() { None } else { args.acting_user.clone() };
    let mut analysis = Analysis::of_sources(sources, Settings { acting_user });
    let mut result = analysis.check();
    if let (Some(base), Some(user)) = (&base, &args.acting_user)
        && result.summary.errors == 0
    {
        let refused = analysis.change_check(base, user);
        result.summary.errors += refused.len();
        result.diagnostics.extend(refused);
    }
    let sources = analysis.sources();
    let summary = result.summary;
    match args.format {
        Format::Human => {
            print!("{}", render::render(sources, &result.diagnostics, color));
            println!("{}", summary_line(&summary));
        }
        Format::Json => {
            let out = json::to_json(sources, &result.diagnostics);
            println!("{}", serde_json::to_string_pretty(&out).context("encoding JSON")?);
        }
        Format::Sarif => {
            let out = sarif::to_sarif(sources, &result.diagnostics, env!("CARGO_PKG_VERSION"));
            println!("{}", serde_json::to_string_pretty(&out).context("encoding SARIF")?);
        }
    }
    let failed = summary.errors > 0 || (args.deny_warnings && summary.warnings > 0);
    // The process ends here: freeing the database (every file's tree and every query's result)
    // one allocation at a time only costs time (3.5% of the CPU of checking 100,000 claims);
    // the operating system takes the memory back whole.
    std::mem::forget(analysis);
    Ok(if failed { ExitCode::from(EXIT_FINDINGS) } else { ExitCode::SUCCESS })
}

/// The policy `--against` or `--git` names, lowered.
fn base_policy(args: &CheckArgs, paths: &[PathBuf]) -> anyhow::Result<Option<Program>> {
    if let Some(rev) = &args.git {
        let checkout = Checkout::of(rev, paths)?;
        let at_rev = paths.iter().map(|p| checkout.path_of(p)).collect::<anyhow::Result<Vec<_>>>()?;
        let program = load_program(&at_rev, false).with_context(|| format!("the policy at git revision {rev}"))?;
        return Ok(Some(program));
    }
    let Some(against) = &args.against else { return Ok(None) };
    if let (Ok(number), false) = (against.parse::<u64>(), Path::new(against).exists()) {
        let state = super::store::state_location(args.state.as_ref(), &super::store::policy_root(paths));
        let store = store::open_read(&state)?
            .with_context(|| format!("there is no revision {number}: {state} does not exist"))?;
        let program = store
            .program(number)?
            .with_context(|| format!("revision {number} of {state} has no policy recorded to check against"))?;
        return Ok(Some(program));
    }
    let program =
        load_program(&[PathBuf::from(against)], false).with_context(|| format!("the base policy {against}"))?;
    Ok(Some(program))
}

fn summary_line(s: &Summary) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let verdict = match (s.errors, s.warnings) {
        (0, 0) => "no problems".to_string(),
        (e, 0) => plural(e, "error"),
        (0, w) => plural(w, "warning"),
        (e, w) => format!("{}, {}", plural(e, "error"), plural(w, "warning")),
    };
    // Tests are counted only when there are some, so policies without any read as before.
    let tests = if s.tests > 0 { format!(", {}", plural(s.tests, "test")) } else { String::new() };
    format!(
        "checked {}: {verdict} ({}, {}, {}, {}, {}{tests})",
        plural(s.files, "file"),
        plural(s.services, "service"),
        plural(s.contracts, "contract"),
        plural(s.rules, "rule"),
        plural(s.clusters, "cluster"),
        plural(s.claims, "claim"),
    )
}
