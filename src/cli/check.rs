//! `aptc check`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use aptc_compiler::check::Summary;
use aptc_compiler::db::Settings;
use aptc_compiler::diagnostics::{json, render, sarif};
use aptc_compiler::host::check_with;
use aptc_compiler::workspace;
use clap::{Args, ValueEnum};

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
    let files = workspace::find_policy_files(&paths_or_cwd(&args.paths))?;
    let mut sources = workspace::load(&files)?;
    tracing::info!(files = sources.len(), "checking");
    let result = check_with(&mut sources, Settings { acting_user: args.acting_user });
    let summary = result.summary;
    match args.format {
        Format::Human => {
            print!("{}", render::render(&sources, &result.diagnostics, color));
            println!("{}", summary_line(&summary));
        }
        Format::Json => {
            let out = json::to_json(&sources, &result.diagnostics);
            println!("{}", serde_json::to_string_pretty(&out).context("encoding JSON")?);
        }
        Format::Sarif => {
            let out = sarif::to_sarif(&sources, &result.diagnostics, env!("CARGO_PKG_VERSION"));
            println!("{}", serde_json::to_string_pretty(&out).context("encoding SARIF")?);
        }
    }
    let failed = summary.errors > 0 || (args.deny_warnings && summary.warnings > 0);
    Ok(if failed { ExitCode::from(EXIT_FINDINGS) } else { ExitCode::SUCCESS })
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
