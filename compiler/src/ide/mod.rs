//! Queries for editors: what the language server asks the compiler.
//!
//! Every function here reads the salsa database (the same one the checker runs in) and
//! answers in compiler terms: files by [`FileId`], places as byte [`Span`]s, names as
//! [`Target`]s. The language server only translates these to and from the protocol (UTF-16
//! positions, URIs); it holds no policy logic. Every query works on a file with syntax
//! errors: it answers from what parsed.
//!
//! - [`occurrences`]: every name of a file, resolved (the table behind the rest);
//! - navigation here: [`definition_at`], [`references`], [`rename`];
//! - [`hover`], [`completion`], [`symbols`] (outline, workspace symbols, folding),
//!   [`tokens`] (semantic highlighting), [`actions`] (quick fixes and inlay hints).

pub mod actions;
pub mod completion;
pub mod hover;
pub mod occurrences;
pub mod signature;
pub mod symbols;
pub mod tokens;

#[cfg(test)]
mod tests;

pub use actions::{Action, InlayHint, InlayHintKind, code_actions, inlay_hints};
pub use completion::{Completion, CompletionKind, Completions, completions};
pub use hover::{Hover, hover};
pub use occurrences::{Occurrence, Role, Target, file_occurrences};
pub use signature::{SignatureHelp, signature_help};
pub use symbols::{
    Fold, FoldKind, Symbol, SymbolKind, WorkspaceSymbol, document_symbols, folding_ranges, workspace_symbols,
};
pub use tokens::{SemanticToken, TokenKind, TokenModifier, semantic_tokens};

use crate::db::{SourceText, Workspace, parse_file};
use crate::semantics::index::{Kind, workspace_index};
use crate::semantics::{ObjectName, definition_sites};
use crate::source::FileId;
use crate::syntax::ast::Span;
use crate::syntax::format::format_parse;
use crate::syntax::lexer::{Token, lex};
use aptc_core::ir::SYSTEM_NAMESPACE;

use crate::syntax::validate::STD_NAMESPACE;

/// A place in the workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileSpan {
    pub file: FileId,
    pub span: Span,
}

/// A text edit: replace `span` of `file` with `text`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    pub file: FileId,
    pub span: Span,
    pub text: String,
}

/// The file of the workspace with this id.
pub fn source(db: &dyn salsa::Database, ws: Workspace, id: FileId) -> Option<SourceText> {
    ws.files(db).iter().copied().find(|file| file.id(db) == id)
}

/// The occurrence under the cursor: one whose span holds `offset`, or ends right at it.
pub fn occurrence_at(db: &dyn salsa::Database, ws: Workspace, file: SourceText, offset: u32) -> Option<&Occurrence> {
    let all = file_occurrences(db, ws, file);
    let inside = all.iter().filter(|o| o.span.start <= offset && offset < o.span.end).min_by_key(|o| o.span.end);
    inside.or_else(|| all.iter().find(|o| o.span.end == offset && o.span.start < offset))
}

/// Where `target` is declared (more than one place for a duplicate, or for a namespace of
/// several files).
pub fn definitions(db: &dyn salsa::Database, ws: Workspace, target: &Target) -> Vec<FileSpan> {
    if let Target::Object(object) = target {
        let first = crate::semantics::definition(db, ws, ObjectName::new(db, object.clone()));
        let mut sites: Vec<FileSpan> = definition_sites(db, ws)
            .get(object)
            .into_iter()
            .flatten()
            .map(|&(file, span)| FileSpan { file, span })
            .collect();
        // The first declaration (the one the checker calls the definition) leads.
        if let Some((file, span)) = first {
            sites.retain(|s| *s != FileSpan { file, span });
            sites.insert(0, FileSpan { file, span });
        }
        return sites;
    }
    let mut found = Vec::new();
    for &file in ws.files(db) {
        let id = file.id(db);
        for occurrence in file_occurrences(db, ws, file) {
            if occurrence.role == Role::Definition && occurrence.target == *target {
                found.push(FileSpan { file: id, span: occurrence.span });
            }
        }
    }
    found
}

/// Where the name at `offset` is declared.
pub fn definition_at(db: &dyn salsa::Database, ws: Workspace, file: SourceText, offset: u32) -> Vec<FileSpan> {
    match occurrence_at(db, ws, file, offset) {
        Some(occurrence) => definitions(db, ws, &occurrence.target.clone()),
        None => Vec::new(),
    }
}

/// Every occurrence of `target` in the workspace, in file order.
pub fn occurrences_of(
    db: &dyn salsa::Database,
    ws: Workspace,
    target: &Target,
    include_declaration: bool,
) -> Vec<FileSpan> {
    let mut found = Vec::new();
    for &file in ws.files(db) {
        let id = file.id(db);
        for occurrence in file_occurrences(db, ws, file) {
            if occurrence.target == *target && (include_declaration || occurrence.role == Role::Reference) {
                found.push(FileSpan { file: id, span: occurrence.span });
            }
        }
    }
    found
}

/// Every occurrence of the name at `offset`, across the workspace.
pub fn references(
    db: &dyn salsa::Database,
    ws: Workspace,
    file: SourceText,
    offset: u32,
    include_declaration: bool,
) -> Vec<FileSpan> {
    match occurrence_at(db, ws, file, offset) {
        Some(occurrence) => occurrences_of(db, ws, &occurrence.target.clone(), include_declaration),
        None => Vec::new(),
    }
}

/// Whether `name` can name an object: one identifier, not a keyword.
pub fn is_valid_name(name: &str) -> bool {
    let lexed = lex(name);
    matches!(lexed.tokens.as_slice(), [(Token::Ident(text), _)] if *text == name)
        && lexed.comments.is_empty()
        && lexed.errors.is_empty()
}

/// Why a rename is refused; the message is what the editor shows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenameError {
    #[error("there is no name to rename here")]
    NoName,
    #[error("users are named by their login: edit the user's declaration and the claims that name it")]
    User,
    #[error("the standard library cannot be renamed")]
    Std,
    #[error("namespace `{0}` is built in and cannot be renamed")]
    BuiltInNamespace(String),
    #[error("`{written}` is an alias of {target}: rename the alias in its import, or the object where it is declared")]
    Alias { written: String, target: String },
    #[error(
        "`{0}` is not a valid name: a name is letters, digits, `_` and inner `-`, starts with a letter or `_`, and is not a keyword"
    )]
    InvalidName(String),
    #[error("there is already a {kind} named `{name}` there")]
    Taken { kind: &'static str, name: String },
}

/// What can be renamed at `offset`: the span of the name and its target.
pub fn prepare_rename(
    db: &dyn salsa::Database,
    ws: Workspace,
    file: SourceText,
    offset: u32,
) -> Result<(Span, Target), RenameError> {
    let occurrence = occurrence_at(db, ws, file, offset).ok_or(RenameError::NoName)?;
    renamable(&occurrence.target)?;
    let written = file.text(db).get(occurrence.span.range()).unwrap_or_default();
    if written != occurrence.target.name() {
        return Err(RenameError::Alias { written: written.to_string(), target: occurrence.target.describe() });
    }
    Ok((occurrence.span, occurrence.target.clone()))
}

fn renamable(target: &Target) -> Result<(), RenameError> {
    match target {
        Target::Object(object) if object.kind == Kind::User => Err(RenameError::User),
        Target::Local { kind: Kind::User, .. } => Err(RenameError::User),
        Target::Object(object) if object.namespace == STD_NAMESPACE => Err(RenameError::Std),
        Target::Function(_) => Err(RenameError::Std),
        Target::Namespace(name) if name == STD_NAMESPACE || name == SYSTEM_NAMESPACE => {
            Err(RenameError::BuiltInNamespace(name.to_string()))
        }
        _ => Ok(()),
    }
}

/// The edits that rename the name at `offset` to `new_name` everywhere it occurs. Refuses
/// names that are not identifiers, and names already taken by an object of the same kind.
pub fn rename(
    db: &dyn salsa::Database,
    ws: Workspace,
    file: SourceText,
    offset: u32,
    new_name: &str,
) -> Result<Vec<Edit>, RenameError> {
    let (_, target) = prepare_rename(db, ws, file, offset)?;
    if !is_valid_name(new_name) {
        return Err(RenameError::InvalidName(new_name.to_string()));
    }
    let old = target.name().clone();
    if new_name == old {
        return Ok(Vec::new());
    }
    let index = workspace_index(db, ws);
    let taken = match &target {
        // A test's claim may not share a name with a claim of its namespace (APT0202).
        Target::Object(object) if object.kind == Kind::Claim => {
            index.has(object.kind, &object.namespace, new_name)
                || local_claim_named(db, ws, &object.namespace, new_name)
        }
        Target::Object(object) => index.has(object.kind, &object.namespace, new_name),
        Target::Local { test, kind, .. } => {
            let other = Target::Local { test: test.clone(), kind: *kind, name: new_name.into() };
            index.has(*kind, &test.namespace, new_name) || !occurrences_of(db, ws, &other, true).is_empty()
        }
        Target::Namespace(_) => index.namespaces.contains_key(new_name),
        Target::Component { service, .. } => {
            let other = Target::Component { service: service.clone(), name: new_name.into() };
            !occurrences_of(db, ws, &other, true).is_empty()
        }
        Target::Context { contract, .. } => {
            let other = Target::Context { contract: contract.clone(), name: new_name.into() };
            !occurrences_of(db, ws, &other, true).is_empty()
        }
        Target::Function(_) => true,
    };
    if taken {
        return Err(RenameError::Taken { kind: kind_word(&target), name: new_name.to_string() });
    }
    let mut edits = Vec::new();
    for place in occurrences_of(db, ws, &target, true) {
        let Some(source) = source(db, ws, place.file) else { continue };
        // Uses through an alias keep the alias.
        if source.text(db).get(place.span.range()) == Some(old.as_str()) {
            edits.push(Edit { file: place.file, span: place.span, text: new_name.to_string() });
        }
    }
    edits.sort_by_key(|e| (e.file, e.span));
    edits.dedup();
    Ok(edits)
}

/// Whether a test of `namespace` declares a claim named `name`.
fn local_claim_named(db: &dyn salsa::Database, ws: Workspace, namespace: &str, name: &str) -> bool {
    ws.files(db).iter().any(|&file| {
        file_occurrences(db, ws, file).iter().any(|o| {
            matches!(&o.target, Target::Local { test, kind: Kind::Claim, name: local }
                if o.role == Role::Definition && test.namespace == namespace && local == name)
        })
    })
}

fn kind_word(target: &Target) -> &'static str {
    match target {
        Target::Object(object) => object.kind.as_str(),
        Target::Namespace(_) => "namespace",
        Target::Component { .. } => "component",
        Target::Context { .. } => "context",
        Target::Function(_) => "function",
        Target::Local { kind, .. } => kind.as_str(),
    }
}

/// The file in canonical format (what `aptc fmt` writes), or `None` when it has syntax
/// errors (formatting a half-understood file could lose text).
pub fn format(db: &dyn salsa::Database, file: SourceText) -> Option<String> {
    let parse = parse_file(db, file);
    if parse.has_errors() {
        return None;
    }
    Some(format_parse(parse, file.text(db)))
}
