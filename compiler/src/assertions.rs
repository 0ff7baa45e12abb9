//! What `aptc verify` found (`aptc_core::verify`), as diagnostics at each assertion's name, so
//! SARIF (`aptc verify --format sarif`) and the language server show verdicts as they show every
//! other finding. A proved assertion gives none.

use std::path::Path;
use std::sync::Arc;

use aptc_core::ir::Origin;
use aptc_core::resolve::Status;
use aptc_core::verify::{Report, Verdict, verify};

use crate::db::Workspace;
use crate::diagnostics::{Diagnostic, Severity, codes};
use crate::source::{FileId, SourceMap, Span, offset_in};
use crate::syntax::format::claim_block;

/// Where an IR origin points: its file, the byte offset there, and the file's text.
pub type Locate<'a> = Box<dyn Fn(&Origin) -> Option<(FileId, u32, Arc<str>)> + 'a>;

/// Origins located in a source map (the CLI's).
pub fn in_sources(sources: &SourceMap) -> Locate<'_> {
    Box::new(move |origin| {
        let file = sources.find(Path::new(&*origin.file))?;
        let source = sources.get(file);
        Some((file, source.offset(origin.line, origin.column)?, source.text.clone()))
    })
}

/// Origins located in a workspace's files (the language server's, and the lints').
pub fn in_workspace(db: &dyn salsa::Database, ws: Workspace) -> Locate<'_> {
    Box::new(move |origin| {
        let file = ws.files(db).iter().find(|f| Path::new(&*origin.file) == f.path(db).as_path())?;
        let text = file.text(db).clone();
        Some((file.id(db), offset_in(&text, origin.line, origin.column)?, text))
    })
}

/// The assertions of a workspace verified, for the language server.
pub struct Verified {
    /// Violated and undecided ones, as [`diagnostics`] gives them (undecided as warnings).
    pub diagnostics: Vec<Diagnostic>,
    /// Each proved one: where its name is, and what to say there.
    pub proved: Vec<(FileId, Span, String)>,
}

/// Verifies the assertions of a workspace that checks without errors (`None` when it has some).
pub fn verify_workspace(db: &dyn salsa::Database, ws: Workspace) -> Option<Verified> {
    let program = crate::check::lower(db, ws).ok()?;
    let reports = verify(&program);
    let locate = in_workspace(db, ws);
    let proved = reports
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Proved))
        .filter_map(|r| {
            let span = name_span(&locate, r)?;
            let claims = match &r.solver {
                None if r.claims == 1 => "1 possible claim".to_string(),
                None => format!("{} possible claims", r.claims),
                Some(run) => format!("{} classes of possible claims ({} paths)", run.classes, run.paths),
            };
            Some((span.0, span.1, format!("assertion `{}` is proved over {claims}", r.assertion)))
        })
        .collect();
    Some(Verified { diagnostics: diagnostics(&locate, &reports, Severity::Warning), proved })
}

/// The file and span of a report's assertion name.
fn name_span(locate: &Locate<'_>, report: &Report) -> Option<(FileId, Span)> {
    let name = report.assertion.rsplit('.').next().unwrap_or(&report.assertion);
    let (file, start, _) = locate(&report.origin)?;
    Some((file, Span::new(start as usize, start as usize + name.len())))
}

/// One diagnostic per violated (`APT0601`) or undecided (`APT0602`, with `unknown` as its
/// severity: `aptc verify` fails on it unless `--allow-unknown`) assertion of `reports`, at the
/// assertion's name in `sources`; a violation carries its counterexample as a pasteable `claim`
/// block, and a label at the expectation it breaks. Reports whose file is not in `sources` (a
/// built `.aptir` whose sources moved) are left out.
pub fn diagnostics(locate: &Locate<'_>, reports: &[Report], unknown: Severity) -> Vec<Diagnostic> {
    reports.iter().filter_map(|report| diagnostic(locate, report, unknown)).collect()
}

fn diagnostic(locate: &Locate<'_>, report: &Report, unknown: Severity) -> Option<Diagnostic> {
    let (file, span) = name_span(locate, report)?;
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
            if let Some((file, start, text)) = locate(&c.expectation_origin) {
                // The expectation's line from where it starts (an `expect` is one statement a line).
                let rest = &text[start as usize..];
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
