//! Quick fixes for diagnostics, and inlay hints.
//!
//! Quick fixes: "did you mean" (replace the name with a suggestion the checker made), add a
//! missing import (a label or object another namespace declares), declare a missing label,
//! remove an unused import.

use crate::db::{SourceText, Workspace, parse_file};
use crate::diagnostics::{Diagnostic, codes};
use crate::semantics::index::{Kind, file_summary, workspace_index};
use crate::syntax::ast::{ItemKind, SmolStr, Span};

use super::{Edit, Role, Target, file_occurrences, is_valid_name};

/// A code action: a titled set of edits, and the diagnostic it fixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub title: String,
    pub diagnostic: Option<Diagnostic>,
    pub edits: Vec<Edit>,
    /// The fix an editor may apply without asking (the only or best suggestion).
    pub preferred: bool,
}

/// Quick fixes for the diagnostics of `file` that touch `range`.
pub fn code_actions(db: &dyn salsa::Database, ws: Workspace, file: SourceText, range: Span) -> Vec<Action> {
    let id = file.id(db);
    let text = file.text(db);
    let diagnostics: Vec<Diagnostic> = crate::check::diagnostics(db, ws)
        .into_iter()
        .filter(|d| d.primary.file == id && d.primary.span.start <= range.end && range.start <= d.primary.span.end)
        .collect();
    let mut actions = Vec::new();
    for diagnostic in diagnostics {
        let span = diagnostic.primary.span;
        let written = text.get(span.range()).unwrap_or_default();
        // "did you mean `x`?"
        let suggestions = diagnostic.help.as_deref().map(suggestions_in).unwrap_or_default();
        let replaceable = span.start < span.end && !written.contains('\n');
        if replaceable {
            let only = suggestions.len() == 1;
            for suggestion in suggestions {
                actions.push(Action {
                    title: format!("Replace `{written}` with `{suggestion}`"),
                    diagnostic: Some(diagnostic.clone()),
                    edits: vec![Edit { file: id, span, text: suggestion }],
                    preferred: only,
                });
            }
        }
        if diagnostic.code == codes::UNDECLARED_LABEL && is_valid_name(written) {
            actions.extend(import_fixes(db, ws, file, &diagnostic, &[Kind::Label], written));
            actions.extend(declare_label(db, file, &diagnostic, written));
        }
        if diagnostic.code == codes::UNRESOLVED_NAME && is_valid_name(written) {
            let kinds = [Kind::Contract, Kind::Service, Kind::Cluster];
            actions.extend(import_fixes(db, ws, file, &diagnostic, &kinds, written));
        }
        if diagnostic.code == codes::UNUSED_IMPORT {
            let mut end = span.end as usize;
            if text[end..].starts_with('\n') {
                end += 1;
            }
            actions.push(Action {
                title: "Remove the unused import".to_string(),
                diagnostic: Some(diagnostic.clone()),
                edits: vec![Edit { file: id, span: Span::new(span.start as usize, end), text: String::new() }],
                preferred: true,
            });
        }
    }
    actions
}

/// The names of a help line written by `semantics::scope::did_you_mean` ("did you mean `a`,
/// `b` or `c`?"), or by the parser and validator ("did you mean `component`?"). Only a help
/// that is a suggestion from its start counts.
pub fn suggestions_in(help: &str) -> Vec<String> {
    let Some(rest) = help.strip_prefix("did you mean ") else { return Vec::new() };
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for c in rest.chars() {
        match (c, &mut current) {
            ('`', None) => current = Some(String::new()),
            ('`', Some(_)) => out.extend(current.take()),
            (c, Some(name)) => name.push(c),
            ('?', None) => break,
            _ => {}
        }
    }
    out
}

/// Where a new top-level declaration goes: after the last item of the kind `after`, else
/// after the imports, else after the namespace declaration.
fn insertion(db: &dyn salsa::Database, file: SourceText, after_labels: bool) -> (u32, &'static str) {
    let items = &parse_file(db, file).file.items;
    let last = |pred: &dyn Fn(&ItemKind) -> bool| items.iter().rev().find(|i| pred(&i.kind)).map(|i| i.span.end);
    if after_labels && let Some(end) = last(&|k| matches!(k, ItemKind::Label(_))) {
        return (end, "\n");
    }
    if let Some(end) = last(&|k| matches!(k, ItemKind::Import(_))) {
        return (end, if after_labels { "\n\n" } else { "\n" });
    }
    if let Some(end) = last(&|k| matches!(k, ItemKind::Namespace(_))) {
        return (end, "\n\n");
    }
    (0, "")
}

fn import_fixes(
    db: &dyn salsa::Database,
    ws: Workspace,
    file: SourceText,
    diagnostic: &Diagnostic,
    kinds: &[Kind],
    name: &str,
) -> Vec<Action> {
    let index = workspace_index(db, ws);
    let own = file_summary(db, file).namespace.clone().unwrap_or_default();
    // The kind the diagnostic names ("unknown contract"), if it names one.
    let named: Vec<Kind> = kinds
        .iter()
        .copied()
        .filter(|k| diagnostic.primary.message.as_deref() == Some(&format!("unknown {}", k.as_str())))
        .collect();
    let kinds = if named.is_empty() { kinds } else { &named };
    let mut namespaces: Vec<(SmolStr, Kind)> = index
        .objects
        .keys()
        .filter(|o| kinds.contains(&o.kind) && o.name == name && o.namespace != own && !o.kind.is_global())
        .map(|o| (o.namespace.clone(), o.kind))
        .collect();
    namespaces.sort_by_key(|(namespace, kind)| (namespace.clone(), kinds.iter().position(|k| k == kind)));
    namespaces.dedup_by(|a, b| a.0 == b.0);
    let (at, separator) = insertion(db, file, false);
    let only = namespaces.len() == 1;
    namespaces
        .into_iter()
        .map(|(namespace, kind)| {
            let line = format!("import {namespace}.{name}");
            let text = if at == 0 { format!("{line}\n\n") } else { format!("{separator}{line}") };
            Action {
                title: format!("Import {} `{name}` from namespace `{namespace}`", kind.as_str()),
                diagnostic: Some(diagnostic.clone()),
                edits: vec![Edit { file: file.id(db), span: Span { start: at, end: at }, text }],
                preferred: only,
            }
        })
        .collect()
}

fn declare_label(db: &dyn salsa::Database, file: SourceText, diagnostic: &Diagnostic, name: &str) -> Option<Action> {
    let text = file.text(db);
    let namespace = file_summary(db, file).namespace.clone()?;
    let ty = value_type_after(text, diagnostic.primary.span.end as usize);
    let (at, separator) = insertion(db, file, true);
    let line = format!("label {name}: {ty}");
    let inserted = if at == 0 { format!("{line}\n\n") } else { format!("{separator}{line}") };
    Some(Action {
        title: format!("Declare `label {name}: {ty}` in namespace `{namespace}`"),
        diagnostic: Some(diagnostic.clone()),
        edits: vec![Edit { file: file.id(db), span: Span { start: at, end: at }, text: inserted }],
        preferred: false,
    })
}

/// The type of the value written after a label key (`env = "dev"`, `labels.n == 3`), by its
/// first character; `string` when there is none.
fn value_type_after(text: &str, end: usize) -> &'static str {
    let rest = text.get(end..).unwrap_or_default();
    let rest = rest.trim_start_matches('"').trim_start();
    let rest = rest.trim_start_matches(['=', '!', '<', '>']).trim_start();
    match rest.chars().next() {
        Some(c) if c.is_ascii_digit() || c == '-' => "int",
        _ if rest.starts_with("true") || rest.starts_with("false") => "bool",
        Some('[') => "[string]",
        _ => "string",
    }
}

/// What an inlay hint shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InlayHintKind {
    Type,
    Parameter,
}

/// A hint shown after `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlayHint {
    pub offset: u32,
    pub label: String,
    pub kind: InlayHintKind,
}

/// The types of labels where a value is written for them (`labels { env = … }`,
/// `set labels.env = …`), within `range`.
pub fn inlay_hints(db: &dyn salsa::Database, ws: Workspace, file: SourceText, range: Span) -> Vec<InlayHint> {
    let text = file.text(db);
    let index = workspace_index(db, ws);
    let mut hints = Vec::new();
    for occurrence in file_occurrences(db, ws, file) {
        if occurrence.span.end < range.start || occurrence.span.start > range.end {
            continue;
        }
        let (Role::Reference, Target::Object(label)) = (occurrence.role, &occurrence.target) else { continue };
        if label.kind != Kind::Label {
            continue;
        }
        let mut end = occurrence.span.end as usize;
        if text[end..].starts_with('"') {
            end += 1;
        }
        let after = text[end..].trim_start();
        if !after.starts_with('=') || after.starts_with("==") {
            continue;
        }
        if let Some(schema) = index.labels.get(&(label.namespace.clone(), label.name.clone())) {
            hints.push(InlayHint { offset: end as u32, label: format!(": {}", schema.ty), kind: InlayHintKind::Type });
        }
    }
    hints
}
