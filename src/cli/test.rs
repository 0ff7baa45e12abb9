//! `aptc test`: run the policy's `test` blocks (docs/language.md §18).
//!
//! Each PATH is one policy: a file, a directory (every `.apt` file under it), or one `.aptir`
//! file. A directory that holds no `.apt` file itself, but subdirectories that each declare
//! `namespace system` (`examples/`: quickstart, guestbook, twitter-analytics), is a collection of
//! policies: each such subdirectory is tested on its own, since their global rules would
//! otherwise govern each other's claims. One summary line counts every test run.
//!
//! `--format json` (docs/formats.md, `docs/schema/test.schema.json`) and `--format junit` (JUnit
//! XML, which CI systems show as tests) report each test with each expectation, its outcome and
//! what resolution produced.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use aptc_compiler::host::{self, PolicyError, paths_or_cwd};
use aptc_core::ir::Program;
use aptc_core::testing::{TestReport, run_tests};
use clap::{Args, ValueEnum};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use serde_json::json;

use super::EXIT_FINDINGS;
use super::words::printable;

/// The version of `--format json`; raised when a field changes meaning or goes away (adding one
/// does not).
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Policies: each a file, a directory, or one `.aptir` file (a directory of complete
    /// policies, each with its own `namespace system`, runs each). Default: the current directory.
    paths: Vec<PathBuf>,
    /// Output format: text for people, `json` (versioned, docs/formats.md) or `junit` (JUnit XML)
    /// for CI.
    #[arg(long, value_enum, default_value_t = TestFormat::Text)]
    format: TestFormat,
}

/// What `aptc test` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TestFormat {
    /// One line per test and a summary, for people.
    Text,
    /// One versioned JSON object, for tools.
    Json,
    /// JUnit XML: one test suite per policy, one test case per test.
    Junit,
}

/// One policy's run: its tests' reports, or why they did not run.
struct PolicyRun {
    path: PathBuf,
    /// `Err` with the error when the policy does not check clean (no test ran).
    reports: Result<Vec<TestReport>, String>,
}

pub fn run(args: TestArgs, color: bool) -> anyhow::Result<ExitCode> {
    // Each policy with its files: given no paths, the policy of the current directory's
    // aptc.toml; otherwise each policy under the paths.
    let mut policies: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    match (args.paths.is_empty(), host::policy_of_cwd()) {
        (true, Some(policy)) => policies.push(policy?),
        _ => {
            for path in paths_or_cwd(&args.paths)? {
                policies.extend(host::policies_under(&path)?.into_iter().map(|p| (p.clone(), vec![p])));
            }
        }
    }
    let text = args.format == TestFormat::Text;
    let color = color && text;
    let mut runs = Vec::new();
    for (i, (policy, files)) in policies.iter().enumerate() {
        if text && i > 0 {
            println!();
        }
        let reports = match load(policy, files, color)? {
            Ok(program) => Ok(run_tests(&program)),
            Err(error) => Err(error),
        };
        if text && let Ok(reports) = &reports {
            let plural = if reports.len() == 1 { "" } else { "s" };
            println!("running {} test{plural} in {}", reports.len(), policy.display());
            for report in reports {
                print!("{}", show(report, color));
            }
        }
        runs.push(PolicyRun { path: policy.clone(), reports });
    }
    let summary = Summary::of(&runs);
    match args.format {
        TestFormat::Text => {
            println!();
            println!("{} passed, {} failed", summary.passed, summary.failed);
        }
        TestFormat::Json => println!("{}", serde_json::to_string_pretty(&json_report(&runs, &summary))?),
        TestFormat::Junit => println!("{}", junit(&runs, &summary)?),
    }
    Ok(if summary.failed > 0 || summary.broken > 0 { ExitCode::from(EXIT_FINDINGS) } else { ExitCode::SUCCESS })
}

/// Tests passed and failed, and policies whose tests did not run.
struct Summary {
    passed: usize,
    failed: usize,
    broken: usize,
}

impl Summary {
    fn of(runs: &[PolicyRun]) -> Summary {
        let mut summary = Summary { passed: 0, failed: 0, broken: 0 };
        for run in runs {
            match &run.reports {
                Ok(reports) => {
                    let passed = reports.iter().filter(|r| r.passed()).count();
                    summary.passed += passed;
                    summary.failed += reports.len() - passed;
                }
                Err(_) => summary.broken += 1,
            }
        }
        summary
    }
}

/// A test's line, and under it, when it failed, each expectation that does not hold.
fn show(report: &TestReport, color: bool) -> String {
    let paint = |text: &str, code: &str| if color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() };
    if report.passed() {
        return format!("test {} ... {}\n", report.test, paint("ok", "32"));
    }
    let mut out = format!("test {} ... {}  ({})\n", report.test, paint("FAILED", "31;1"), report.origin);
    for failure in &report.failures {
        out.push_str(&format!("    {}  ({})\n", printable(&failure.expectation), failure.origin));
        out.push_str(&format!("      {}\n", printable(&failure.message)));
    }
    out
}

fn outcome(passed: bool) -> &'static str {
    if passed { "passed" } else { "failed" }
}

/// `--format json`: every policy, test and expectation (docs/schema/test.schema.json).
fn json_report(runs: &[PolicyRun], summary: &Summary) -> serde_json::Value {
    let policies: Vec<serde_json::Value> = runs
        .iter()
        .map(|run| {
            let (tests, error) = match &run.reports {
                Ok(reports) => (reports.iter().map(json_test).collect(), None),
                Err(error) => (Vec::new(), Some(error)),
            };
            json!({ "path": run.path.display().to_string(), "error": error, "tests": tests })
        })
        .collect();
    json!({
        "format_version": FORMAT_VERSION,
        "policies": policies,
        "passed": summary.passed,
        "failed": summary.failed,
        "broken": summary.broken,
    })
}

fn json_test(report: &TestReport) -> serde_json::Value {
    let expectations: Vec<serde_json::Value> = report
        .results
        .iter()
        .map(|result| {
            json!({
                "expectation": result.expectation,
                "origin": result.origin,
                "outcome": outcome(result.passed()),
                "actual": result.actual,
                "message": result.failure,
            })
        })
        .collect();
    json!({
        "test": report.test,
        "origin": report.origin,
        "outcome": outcome(report.passed()),
        "expectations": expectations,
    })
}

/// `--format junit`: a `testsuite` per policy (a policy with errors is one `error` test case), a
/// `testcase` per test with a `failure` per expectation that does not hold, and every
/// expectation with what it got in `system-out`.
fn junit(runs: &[PolicyRun], summary: &Summary) -> anyhow::Result<String> {
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let total = (summary.passed + summary.failed + summary.broken).to_string();
    let (failures, errors) = (summary.failed.to_string(), summary.broken.to_string());
    writer
        .create_element("testsuites")
        .with_attributes([
            ("name", "aptc test"),
            ("tests", total.as_str()),
            ("failures", failures.as_str()),
            ("errors", errors.as_str()),
        ])
        .write_inner_content(|writer| {
            for run in runs {
                suite(writer, run)?;
            }
            Ok::<(), std::io::Error>(())
        })?;
    String::from_utf8(writer.into_inner()).context("the JUnit report is not UTF-8")
}

fn suite(writer: &mut Writer<Vec<u8>>, run: &PolicyRun) -> std::io::Result<()> {
    let name = xml_text(&run.path.display().to_string());
    match &run.reports {
        Err(error) => {
            writer
                .create_element("testsuite")
                .with_attributes([("name", name.as_str()), ("tests", "1"), ("failures", "0"), ("errors", "1")])
                .write_inner_content(|writer| {
                    writer
                        .create_element("testcase")
                        .with_attributes([("name", "aptc check"), ("classname", name.as_str())])
                        .write_inner_content(|writer| {
                            let message = xml_text(error);
                            writer
                                .create_element("error")
                                .with_attributes([("message", message.as_str()), ("type", "policy")])
                                .write_text_content(BytesText::new(&message))?;
                            Ok::<(), std::io::Error>(())
                        })?;
                    Ok::<(), std::io::Error>(())
                })?;
        }
        Ok(reports) => {
            let tests = reports.len().to_string();
            let failures = reports.iter().filter(|r| !r.passed()).count().to_string();
            writer
                .create_element("testsuite")
                .with_attributes([
                    ("name", name.as_str()),
                    ("tests", tests.as_str()),
                    ("failures", failures.as_str()),
                    ("errors", "0"),
                ])
                .write_inner_content(|writer| {
                    for report in reports {
                        case(writer, &name, report)?;
                    }
                    Ok::<(), std::io::Error>(())
                })?;
        }
    }
    Ok(())
}

fn case(writer: &mut Writer<Vec<u8>>, suite: &str, report: &TestReport) -> std::io::Result<()> {
    let name = xml_text(&report.test);
    let file = xml_text(&report.origin.file);
    let line = report.origin.line.to_string();
    let mut out = String::new();
    for result in &report.results {
        let mark = if result.passed() { "ok" } else { "FAILED" };
        out.push_str(&format!("{mark}: {} ({})\n  got: {}\n", result.expectation, result.origin, result.actual));
    }
    writer
        .create_element("testcase")
        .with_attributes([
            ("name", name.as_str()),
            ("classname", suite),
            ("file", file.as_str()),
            ("line", line.as_str()),
        ])
        .write_inner_content(|writer| {
            for failure in &report.failures {
                let message = xml_text(&failure.message);
                let body = xml_text(&format!(
                    "{} ({})\n{}\ngot: {}",
                    failure.expectation, failure.origin, failure.message, failure.actual
                ));
                writer
                    .create_element("failure")
                    .with_attributes([("message", message.as_str()), ("type", "expectation")])
                    .write_text_content(BytesText::new(&body))?;
            }
            writer.create_element("system-out").write_text_content(BytesText::new(&xml_text(&out)))?;
            Ok::<(), std::io::Error>(())
        })?;
    Ok(())
}

/// `text` with the characters XML 1.0 cannot hold at all (control characters other than tab and
/// newlines, U+FFFE, U+FFFF) shown as `\u{…}`; the writer escapes the rest (`<`, `&`, quotes).
fn xml_text(text: &str) -> String {
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}');
    text.chars().map(|c| if allowed(c) { c.to_string() } else { format!("\\u{{{:x}}}", u32::from(c)) }).collect()
}

/// The policy at `path`, lowered; `Err` (its errors printed) when it does not check clean.
fn load(path: &Path, files: &[PathBuf], color: bool) -> anyhow::Result<Result<Program, String>> {
    match host::load_program(files, color) {
        Ok(program) => Ok(Ok(program)),
        Err(PolicyError::Invalid { count, rendered }) => {
            eprint!("{rendered}");
            let error = format!(
                "{}: the policy has {}, so its tests did not run (`aptc check` shows them)",
                path.display(),
                super::words::count(count, "error")
            );
            eprintln!("error: {error}");
            Ok(Err(error))
        }
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::xml_text;

    #[test]
    fn characters_xml_cannot_hold_are_spelt_out() {
        assert_eq!(xml_text("a\u{1b}[31mb\tc\n"), "a\\u{1b}[31mb\tc\n");
        assert_eq!(xml_text("<&>\u{FFFF}"), "<&>\\u{ffff}");
    }
}
