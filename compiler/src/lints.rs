//! The verification engine's lints in `aptc check` and the editor (`aptc_core::verify::lints`):
//! a context no claim can reach (`APT0403`), a rule that can never fire (`APT0405`), a contract no
//! one may consume (`APT0409`), a rule shadowed by an earlier rejection (`APT0410`), a placement in
//! no valid Kubernetes namespace (`APT0411`), each with its proof as a note. They need the lowered program, so
//! they run only on a policy without errors, once per change of the workspace (a salsa query);
//! what the file checks already report at the same place is not reported again.

use aptc_core::verify::{LintKind, lints};

use crate::assertions::in_workspace;
use crate::db::{Workspace, report};
use crate::diagnostics::{Diagnostic, codes};
use crate::source::Span;

/// Reports the engine's lints of a policy that checks without errors.
#[salsa::tracked]
pub fn engine_lints(db: &dyn salsa::Database, ws: Workspace) {
    let checked = crate::check::checked(db, ws);
    if checked.iter().any(Diagnostic::is_error) {
        return;
    }
    let program = crate::lower::lints_program(db, ws);
    let locate = in_workspace(db, ws);
    for lint in lints(&program) {
        let Some((id, start, _)) = locate(&lint.origin) else { continue };
        let span = Span::new(start as usize, start as usize + lint.name.len());
        let (code, primary, help) = match lint.kind {
            LintKind::UnreachableContext => (
                codes::UNREACHABLE_CONTEXT,
                "unreachable",
                "contexts are tried in order and the first match wins: widen its criteria, narrow the earlier ones, or remove it",
            ),
            LintKind::RuleNeverFires => (
                codes::RULE_NEVER_MATCHES,
                "never fires",
                "its criteria hold for no claim: fix them or remove the rule",
            ),
            LintKind::NoConsumer => (
                codes::NO_CONSUMER,
                "no one may consume it",
                "grant the consumer role in its namespace (`grant consumer on NS when …` in `system`), or remove it",
            ),
            LintKind::ShadowedRule => (
                codes::SHADOWED_RULE,
                "shadowed",
                "rules run in order (weight, then name) and a rejection stops the claim: narrow the earlier rule, give this one a lower weight, or remove it",
            ),
            LintKind::InvalidPlacement => (
                codes::INVALID_PLACEMENT,
                "no valid namespace",
                "give `place … namespace` (or the cluster's `namespace`) lowercase letters, digits and `-` only",
            ),
        };
        let here = |file, at| file == id && at == span;
        if checked.iter().any(|d| {
            d.code == code && (here(d.primary.file, d.primary.span) || d.labels.iter().any(|l| here(l.file, l.span)))
        }) {
            continue;
        }
        let mut diagnostic = Diagnostic::new(code, id, span, lint.message)
            .with_primary_message(primary)
            .with_note(format!("proof: {}", lint.proof))
            .with_help(help);
        if let Some((name, origin)) = &lint.related
            && let Some((file, start, _)) = locate(origin)
        {
            let at = Span::new(start as usize, start as usize + name.len());
            diagnostic = diagnostic.with_label(file, at, "rejects first");
        }
        report(db, diagnostic);
    }
}
