//! What `aptc verify` found (`aptc_core::verify`), as diagnostics at each assertion's name, so
//! SARIF (`aptc verify --format sarif`) and the language server show verdicts as they show every
//! other finding. A proved assertion gives none.

use std::path::Path;

use aptc_core::ir::Origin;
use aptc_core::resolve::Status;
use aptc_core::verify::{Report, Verdict};

use crate::diagnostics::{Diagnostic, Severity, codes};
use crate::source::{FileId, SourceMap, Span};
use crate::syntax::format::claim_block;

/// One diagnostic per violated (`APT0601`) or undecided (`APT0602`, with `unknown` as its
/// severity: `aptc verify` fails on it unless `--allow-unknown`) assertion of `reports`, at the
/// assertion's name in `sources`; a violation carries its counterexample as a pasteable `claim`
/// block, and a label at the expectation it breaks. Reports whose file is not in `sources` (a
/// built `.aptir` whose sources moved) are left out.
pub fn diagnostics(sources: &SourceMap, reports: &[Report], unknown: Severity) -> Vec<Diagnostic> {
    reports.iter().filter_map(|report| diagnostic(sources, report, unknown)).collect()
}

fn diagnostic(sources: &SourceMap, report: &Report, unknown: Severity) -> Option<Diagnostic> {
    let name = report.assertion.rsplit('.').next().unwrap_or(&report.assertion);
    let (file, start) = locate(sources, &report.origin)?;
    let span = Span::new(start as usize, start as usize + name.len());
    match &report.verdict {
        Verdict::Proved => None,
        Verdict::Unknown { reason } => {
            let mut d = Diagnostic::new(
                codes::ASSERTION_UNKNOWN,
                file,
                span,
                format!("assertion `{}` could not be decided: {reason}", report.assertion),
            )
            .with_primary_message("neither proved nor violated")
            .with_help("docs/verification.md says what the engine can decide");
            d.severity = unknown;
            Some(d)
        }
        Verdict::Violated { counterexample: c } => {
            let mut d = Diagnostic::new(
                codes::ASSERTION_VIOLATED,
                file,
                span,
                format!("assertion `{}` is violated: `{}` does not hold: {}", report.assertion, c.expectation, c.why),
            )
            .with_primary_message("a possible claim violates it")
            .with_note(format!(
                "counterexample (paste it into a `test` to reproduce it with `aptc test`):\n{}",
                claim_block(&c.claim)
            ));
            if let Some(reason) = &c.outcome.reason {
                let status = match c.outcome.status {
                    Status::Resolved => "resolved",
                    Status::Rejected => "rejected",
                    Status::Failed => "failed",
                };
                d = d.with_note(format!("the counterexample is {status}: {reason}"));
            }
            if let Some((file, start)) = locate(sources, &c.expectation_origin) {
                // The expectation's line from where it starts (an `expect` is one statement a line).
                let rest = &sources.get(file).text[start as usize..];
                let len = rest.split('\n').next().unwrap_or_default().trim_end().len();
                d = d.with_label(
                    file,
                    Span::new(start as usize, start as usize + len),
                    "does not hold for the counterexample",
                );
            }
            Some(d)
        }
    }
}

/// The file and byte offset an IR origin names.
fn locate(sources: &SourceMap, origin: &Origin) -> Option<(FileId, u32)> {
    let file = sources.find(Path::new(&origin.file))?;
    Some((file, sources.get(file).offset(origin.line, origin.column)?))
}
