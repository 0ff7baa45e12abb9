//! Diagnostics: what went wrong, where, and how to fix it.
//!
//! A [`Diagnostic`] is plain data with a stable [`Code`]; the renderers turn it into
//! text for people ([`render`], via ariadne) or JSON and SARIF for machines
//! ([`json`], [`sarif`]). Every code is listed in [`codes`] and in docs/diagnostics.md.

pub mod codes;
pub mod json;
pub mod render;
pub mod sarif;

use serde::Serialize;

pub use codes::Code;

use crate::source::FileId;
use crate::source::Span;

/// How bad a diagnostic is. Errors fail `aptc check`; warnings fail it only with
/// `--deny-warnings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    /// The lowercase name used in every output format.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A place in a file with an optional message ("first defined here").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Label {
    pub file: FileId,
    pub span: Span,
    pub message: Option<String>,
}

/// One finding about the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    /// Where the problem is; its message says what is wrong right there.
    pub primary: Label,
    /// Other places that explain it (the other duplicate, the opening brace).
    pub labels: Vec<Label>,
    pub notes: Vec<String>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with the code's default severity.
    pub fn new(code: Code, file: FileId, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            primary: Label { file, span, message: None },
            labels: Vec::new(),
            notes: Vec::new(),
            help: None,
        }
    }

    /// Sets the message shown at the primary span.
    pub fn with_primary_message(mut self, message: impl Into<String>) -> Diagnostic {
        self.primary.message = Some(message.into());
        self
    }

    /// Adds a secondary label.
    pub fn with_label(mut self, file: FileId, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label { file, span, message: Some(message.into()) });
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// Sets the help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Sorts diagnostics by file, position and code, so every output is stable.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (a.primary.file, a.primary.span.start, a.code.as_str(), &a.message).cmp(&(
            b.primary.file,
            b.primary.span.start,
            b.code.as_str(),
            &b.message,
        ))
    });
}
