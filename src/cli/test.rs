//! `aptc test`: run the policy's `test` blocks (docs/language.md §18).
//!
//! Each PATH is one policy: a file, a directory (every `.apt` file under it), or one `.aptir`
//! file. A directory that holds no `.apt` file itself, but subdirectories that each declare
//! `namespace system` (`examples/`: quickstart, guestbook, twitter-analytics), is a collection of
//! policies: each such subdirectory is tested on its own, since their global rules would
//! otherwise govern each other's claims. One summary line counts every test run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aptc_compiler::host::{self, PolicyError, paths_or_cwd};
use aptc_core::ir::Program;
use aptc_core::testing::{TestReport, run_tests};
use clap::Args;

use super::EXIT_FINDINGS;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Policies: each a file, a directory, or one `.aptir` file (a directory of complete
    /// policies, each with its own `namespace system`, runs each). Default: the current directory.
    paths: Vec<PathBuf>,
}

pub fn run(args: TestArgs, color: bool) -> anyhow::Result<ExitCode> {
    let mut policies = Vec::new();
    for path in paths_or_cwd(&args.paths) {
        policies.extend(host::policies_under(&path)?);
    }
    let (mut passed, mut failed, mut broken) = (0, 0, 0);
    for (i, policy) in policies.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let Some(program) = load(policy, color)? else {
            broken += 1;
            continue;
        };
        let reports = run_tests(&program);
        let plural = if reports.len() == 1 { "" } else { "s" };
        println!("running {} test{plural} in {}", reports.len(), policy.display());
        for report in &reports {
            print!("{}", show(report, color));
            if report.passed() {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    println!();
    println!("{passed} passed, {failed} failed");
    Ok(if failed > 0 || broken > 0 { ExitCode::from(EXIT_FINDINGS) } else { ExitCode::SUCCESS })
}

/// A test's line, and under it, when it failed, each expectation that does not hold.
fn show(report: &TestReport, color: bool) -> String {
    let paint = |text: &str, code: &str| if color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() };
    if report.passed() {
        return format!("test {} ... {}\n", report.test, paint("ok", "32"));
    }
    let mut out = format!("test {} ... {}  ({})\n", report.test, paint("FAILED", "31;1"), report.origin);
    for failure in &report.failures {
        out.push_str(&format!("    {}  ({})\n", failure.expectation, failure.origin));
        out.push_str(&format!("      {}\n", failure.message));
    }
    out
}

/// The policy at `path`, lowered; `None` (its errors printed) when it does not check clean.
fn load(path: &Path, color: bool) -> anyhow::Result<Option<Program>> {
    match host::load_program(&[path.to_path_buf()], color) {
        Ok(program) => Ok(Some(program)),
        Err(PolicyError::Invalid { count, rendered }) => {
            eprint!("{rendered}");
            eprintln!(
                "error: {}: the policy has {count} error(s), so its tests did not run (`aptc check` shows them)",
                path.display()
            );
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}
