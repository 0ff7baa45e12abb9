//! `aptc verify`: prove the policy's `assert` blocks over every possible claim (docs/language.md
//! §19, docs/verification.md). Each PATH is one policy, as for `aptc test`.
//!
//! `--format json` (docs/formats.md, `docs/schema/verify.schema.json`) reports each assertion
//! with its verdict, and a counterexample's claim, outcome and decision chain; `--format sarif`
//! the violated and undecided ones as SARIF results (`compiler::assertions`), through the writer
//! `aptc check --format sarif` uses.

use std::path::PathBuf;
use std::process::ExitCode;

use aptc_compiler::assertions;
use aptc_compiler::db::Settings;
use aptc_compiler::diagnostics::{Diagnostic, Severity, sarif};
use aptc_compiler::host::{self, Analysis, PolicyError, paths_or_cwd};
use aptc_compiler::source::{FileId, SourceMap};
use aptc_compiler::syntax::format::claim_block;
use aptc_core::ir::Program;
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
    /// Output format: text for people, `json` (versioned, docs/formats.md) for tools, `sarif`
    /// (2.1.0, for code scanning: each violated or undecided assertion a result at its name).
    #[arg(long, value_enum, default_value_t = VerifyFormat::Text)]
    format: VerifyFormat,
}

/// What `aptc verify` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VerifyFormat {
    Text,
    Json,
    Sarif,
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
    // For SARIF: every policy's files in one source map, and their diagnostics.
    let mut sarif_sources = SourceMap::new();
    let mut sarif_results = Vec::new();
    for (i, (policy, files)) in policies.iter().enumerate() {
        let (program, sources) = match load(files, color && text, args.format == VerifyFormat::Sarif)? {
            Ok(loaded) => loaded,
            Err(Broken { count, rendered, diagnostics, sources }) => {
                if args.format == VerifyFormat::Sarif {
                    sarif_results.extend(merged(&mut sarif_sources, &sources, diagnostics));
                } else {
                    eprint!("{rendered}");
                }
                eprintln!(
                    "error: {}: the policy has {}, so its assertions were not verified (`aptc check` shows them)",
                    policy.display(),
                    super::words::count(count, "error")
                );
                broken += 1;
                json_policies.push(json!({ "path": policy, "error": "the policy has errors", "assertions": [] }));
                continue;
            }
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
        if let Some(sources) = &sources {
            let severity = if args.allow_unknown { Severity::Warning } else { Severity::Error };
            let found = assertions::diagnostics(&assertions::in_sources(sources), &reports, severity);
            sarif_results.extend(merged(&mut sarif_sources, sources, found));
        }
        json_policies.push(
            json!({ "path": policy, "error": null, "assertions": reports.iter().map(json_report).collect::<Vec<_>>() }),
        );
    }
    match args.format {
        VerifyFormat::Text => {
            println!();
            println!("{proved} proved, {violated} violated, {unknown} unknown");
        }
        VerifyFormat::Json => {
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
        VerifyFormat::Sarif => {
            let out = sarif::to_sarif(&sarif_sources, &sarif_results, env!("CARGO_PKG_VERSION"));
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    let failing = violated > 0 || broken > 0 || (unknown > 0 && !args.allow_unknown);
    Ok(if failing { ExitCode::from(EXIT_FINDINGS) } else { ExitCode::SUCCESS })
}

/// A policy whose sources do not check clean: its errors rendered, and as diagnostics for SARIF.
struct Broken {
    count: usize,
    rendered: String,
    diagnostics: Vec<Diagnostic>,
    sources: SourceMap,
}

/// The program of one policy, and its sources when `sources` is asked (SARIF points into them;
/// a built `.aptir` has none, so SARIF refuses it). A policy with errors is `Broken`; files that
/// cannot be read are an error of the run.
fn load(files: &[PathBuf], color: bool, sources: bool) -> anyhow::Result<Result<(Program, Option<SourceMap>), Broken>> {
    let aptir = matches!(files, [single] if single.extension().is_some_and(|e| e == "aptir"));
    if aptir && sources {
        anyhow::bail!(
            "{}: `--format sarif` points into the policy's sources, which a built `.aptir` does not hold (verify the `.apt` files)",
            files[0].display()
        );
    }
    if !sources {
        return match host::load_program(files, color) {
            Ok(program) => Ok(Ok((program, None))),
            Err(PolicyError::Invalid { count, rendered }) => {
                Ok(Err(Broken { count, rendered, diagnostics: Vec::new(), sources: SourceMap::new() }))
            }
            Err(error) => Err(error.into()),
        };
    }
    let mut analysis = Analysis::open(files, Settings::default())?;
    match analysis.lower() {
        Ok(program) => Ok(Ok((program, Some(analysis.into_sources())))),
        Err(diagnostics) => {
            let rendered = analysis.render(&diagnostics, color);
            let count = diagnostics.len().max(1);
            Ok(Err(Broken { count, rendered, diagnostics, sources: analysis.into_sources() }))
        }
    }
}

/// `diagnostics` of `sources`, renumbered into `all`: one SARIF log names every policy's files.
fn merged(all: &mut SourceMap, sources: &SourceMap, diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let base = all.len() as u32;
    for (_, file) in sources.iter() {
        all.add(file.path.clone(), file.text.clone());
    }
    let moved = |id: FileId| FileId(id.0 + base);
    diagnostics
        .into_iter()
        .map(|mut d| {
            d.primary.file = moved(d.primary.file);
            for label in &mut d.labels {
                label.file = moved(label.file);
            }
            d
        })
        .collect()
}

/// One assertion for people: its verdict line, and a counterexample's claim and chain.
fn show(report: &Report) -> String {
    let mut out = String::new();
    let name = printable(&report.assertion);
    match &report.verdict {
        Verdict::Proved => match &report.solver {
            None => out.push_str(&format!(
                "assert {name} ... proved ({})\n",
                super::words::count(report.claims, "possible claim")
            )),
            // Past the enumeration budget: the classes covered, and the paths that covered them.
            Some(run) => out.push_str(&format!(
                "assert {name} ... proved ({} classes of possible claims, in {} through the resolver)\n",
                run.classes,
                super::words::count(run.paths, "path")
            )),
        },
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
