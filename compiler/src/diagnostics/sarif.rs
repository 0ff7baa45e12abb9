//! SARIF 2.1.0 output, for GitHub code scanning and other CI dashboards.

use serde_json::{Value, json};

use super::{Diagnostic, Label, Severity, codes};
use crate::source::SourceMap;

/// The diagnostics as one SARIF log with a single run. Every known code is listed as a
/// rule so dashboards can show its title even when it did not fire.
pub fn to_sarif(sources: &SourceMap, diagnostics: &[Diagnostic], tool_version: &str) -> Value {
    let rules: Vec<Value> = codes::ALL
        .iter()
        .map(|code| {
            json!({
                "id": code.as_str(),
                "name": pascal_case(code.title()),
                "shortDescription": { "text": code.title() },
                "help": { "text": format!("See {} in docs/diagnostics.md.", code.as_str()) },
                "defaultConfiguration": { "level": level(code.severity()) },
            })
        })
        .collect();
    let results: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            let mut message = d.message.clone();
            for note in &d.notes {
                message.push_str("\nnote: ");
                message.push_str(note);
            }
            if let Some(help) = &d.help {
                message.push_str("\nhelp: ");
                message.push_str(help);
            }
            let mut result = json!({
                "ruleId": d.code.as_str(),
                "ruleIndex": codes::ALL.iter().position(|c| *c == d.code),
                "level": level(d.severity),
                "message": { "text": message },
                "locations": [location(sources, &d.primary, None)],
            });
            if !d.labels.is_empty() {
                result["relatedLocations"] =
                    d.labels.iter().enumerate().map(|(i, label)| location(sources, label, Some(i))).collect();
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "aptc",
                "version": tool_version,
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn location(sources: &SourceMap, label: &Label, id: Option<usize>) -> Value {
    let file = sources.get(label.file);
    let ((start_line, start_column), (end_line, end_column)) = file.span_lines(label.span);
    let uri = file.path.to_string_lossy().replace('\\', "/");
    let mut location = json!({
        "physicalLocation": {
            "artifactLocation": { "uri": uri.strip_prefix("./").unwrap_or(&uri) },
            "region": {
                "startLine": start_line,
                "startColumn": start_column,
                "endLine": end_line,
                "endColumn": end_column,
            },
        },
    });
    if let Some(id) = id {
        location["id"] = json!(id);
    }
    if let Some(message) = &label.message {
        location["message"] = json!({ "text": message });
    }
    location
}

fn pascal_case(title: &str) -> String {
    title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}
