//! `aptc verify`: prove the policy's `assert` blocks over every possible claim (docs/language.md
//! §19, docs/verification.md). Each PATH is one policy, as for `aptc test`.
//!
//! `--format json` (docs/formats.md, `docs/schema/verify.schema.json`) reports each assertion
//! with its verdict, and a counterexample's claim, outcome and decision chain.

use std::path::PathBuf;
use std::process::ExitCode;

use aptc_compiler::host::{self, PolicyError, paths_or_cwd};
use aptc_compiler::syntax::format::claim_block;
use aptc_core::verify::{Report, Verdict, verify};
use clap::{Args, ValueEnum};
use serde_json::json;

use super::EXIT_FINDINGS;
use super::words::printable;

/// The version of `--format json`; raised when a field changes meaning or goes away.
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Policies: each a file, a directory, or one `.aptir` file (a directory of complete
    /// policies runs each). Default: the current directory.
    paths: Vec<PathBuf>,
    /// An assertion the engine cannot decide does not fail the run.
    #[arg(long)]
    allow_unknown: bool,
    /// Output format: text for people, `json` (versioned, docs/formats.md) for tools.
    #[arg(long, value_enum, default_value_t = VerifyFormat::Text)]
    format: VerifyFormat,
}

/// What `aptc verify` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VerifyFormat {
    Text,
    Json,
}

pub fn run(args: VerifyArgs, color: bool) -> anyhow::Result<ExitCode> {
    let mut policies: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    match (args.paths.is_empty(), host::policy_of_cwd()) {
        (true, Some(policy)) => policies.push(policy?),
        _ => {
            for path in paths_or_cwd(&args.paths)? {
                policies.extend(host::policies_under(&path)?.into_iter().map(|p| (p.clone(), vec![p])));
            }
        }
    }
    let text = args.format == VerifyFormat::Text;
    let (mut proved, mut violated, mut unknown, mut broken) = (0, 0, 0, 0);
    let mut json_policies = Vec::new();
    for (i, (policy, files)) in policies.iter().enumerate() {
        let program = match host::load_program(files, color && text) {
            Ok(program) => program,
            Err(PolicyError::Invalid { count, rendered }) => {
                eprint!("{rendered}");
                eprintln!(
                    "error: {}: the policy has {}, so its assertions were not verified (`aptc check` shows them)",
                    policy.display(),
                    super::words::count(count, "error")
                );
                broken += 1;
                json_policies.push(json!({ "path": policy, "error": "the policy has errors", "assertions": [] }));
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        let reports = verify(&program);
        if text {
            if i > 0 {
                println!();
            }
            println!("verifying {} in {}", super::words::count(reports.len(), "assertion"), policy.display());
        }
        for report in &reports {
            match &report.verdict {
                Verdict::Proved => proved += 1,
                Verdict::Violated { .. } => violated += 1,
                Verdict::Unknown { .. } => unknown += 1,
            }
            if text {
                print!("{}", show(report));
            }
        }
        json_policies.push(
            json!({ "path": policy, "error": null, "assertions": reports.iter().map(json_report).collect::<Vec<_>>() }),
        );
    }
    if text {
        println!();
        println!("{proved} proved, {violated} violated, {unknown} unknown");
    } else {
        let out = json!({
            "format_version": FORMAT_VERSION,
            "policies": json_policies,
            "proved": proved,
            "violated": violated,
            "unknown": unknown,
            "broken": broken,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    let failing = violated > 0 || broken > 0 || (unknown > 0 && !args.allow_unknown);
    Ok(if failing { ExitCode::from(EXIT_FINDINGS) } else { ExitCode::SUCCESS })
}

/// One assertion for people: its verdict line, and a counterexample's claim and chain.
fn show(report: &Report) -> String {
    let mut out = String::new();
    let name = printable(&report.assertion);
    match &report.verdict {
        Verdict::Proved => out.push_str(&format!(
            "assert {name} ... proved ({})\n",
            super::words::count(report.claims, "possible claim")
        )),
        Verdict::Unknown { reason } => {
            out.push_str(&format!("assert {name} ... unknown  ({})\n    {}\n", report.origin, printable(reason)))
        }
        Verdict::Violated { counterexample: c } => {
            out.push_str(&format!("assert {name} ... VIOLATED  ({})\n", report.origin));
            out.push_str(&format!("    {}  ({})\n", printable(&c.expectation), c.expectation_origin));
            out.push_str(&format!("      does not hold: {}\n", printable(&c.why)));
            out.push_str("    counterexample (paste it into a `test` to reproduce it with `aptc test`):\n");
            for line in claim_block(&c.claim).lines() {
                out.push_str(&format!("      {}\n", printable(line)));
            }
            out.push_str("    how it resolves:\n");
            for line in super::explain::explain_claim(&c.state, &c.outcome).lines() {
                out.push_str(&format!("      {}\n", printable(line)));
            }
        }
    }
    out
}

fn json_report(report: &Report) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    if let Verdict::Violated { counterexample } = &report.verdict {
        value["counterexample"]["claim_block"] = json!(claim_block(&counterexample.claim));
    }
    value
}
