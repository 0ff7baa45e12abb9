//! Machine output: one JSON object per diagnostic, for scripts and editors.

use serde_json::{Value, json};

use super::{Diagnostic, Label};
use crate::source::SourceMap;

/// The diagnostics as a JSON array. Lines and columns are 1-based; columns count
/// Unicode characters; `end` is exclusive.
pub fn to_json(sources: &SourceMap, diagnostics: &[Diagnostic]) -> Value {
    Value::Array(diagnostics.iter().map(|d| diagnostic(sources, d)).collect())
}

fn diagnostic(sources: &SourceMap, d: &Diagnostic) -> Value {
    json!({
        "code": d.code.as_str(),
        "severity": d.severity.as_str(),
        "message": d.message,
        "file": sources.get(d.primary.file).path.display().to_string(),
        "range": range(sources, &d.primary),
        "primary_message": d.primary.message,
        "labels": d.labels.iter().map(|l| json!({
            "file": sources.get(l.file).path.display().to_string(),
            "range": range(sources, l),
            "message": l.message,
        })).collect::<Vec<_>>(),
        "notes": d.notes,
        "help": d.help,
    })
}

fn range(sources: &SourceMap, label: &Label) -> Value {
    let ((start_line, start_column), (end_line, end_column)) = sources.get(label.file).span_lines(label.span);
    json!({
        "start": { "line": start_line, "column": start_column, "offset": label.span.start },
        "end": { "line": end_line, "column": end_column, "offset": label.span.end },
    })
}
