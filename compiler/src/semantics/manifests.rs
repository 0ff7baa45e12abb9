//! The check of manifest templates (docs/language.md §5.2): the files of a `manifests` component
//! are read with the policy, and each is checked as the component's `values` are, so a template
//! that cannot render is an error of the policy rather than of a deploy.
//!
//! Per file: every `${…}` parses and type-checks in the component's scope (plus `values.KEY`),
//! and, with each interpolation replaced by a plain scalar, every YAML document is a mapping
//! with `apiVersion`, `kind` and `metadata.name`. Diagnostics point into the manifest file; a
//! glob that cannot be used is reported at the glob.

use serde_json::Value;

use crate::db::ManifestFile;
use crate::diagnostics::{Diagnostic, codes};
use crate::syntax::ast::{Span, StrLit, StrPart};
use crate::syntax::parse_template;
use aptc_core::manifest::{Piece, Skeleton, documents};

use super::expr::{Checker, Env};

/// Checks the manifest files of a component (`files`, as loaded for its glob `glob`) in `env`,
/// the scope of its templates.
pub fn check_templates(c: &mut Checker, glob: &StrLit, files: &Result<Vec<ManifestFile>, String>, env: &Env) {
    let declared_in = c.file;
    let unusable = |message: String| {
        Diagnostic::new(codes::INVALID_MANIFESTS, declared_in, glob.span, message)
            .with_primary_message("manifests named here")
            .with_help("the glob is relative to the directory of this .apt file; `*` and `?` stay in one directory, `**` crosses them")
    };
    let files = match files {
        Ok(files) => files,
        Err(reason) => {
            let diagnostic = unusable(format!("the manifests cannot be used: {reason}"));
            c.report(diagnostic);
            return;
        }
    };
    for file in files {
        let text = match &file.text {
            Ok(text) => text,
            Err(reason) => {
                let diagnostic = unusable(format!("cannot read manifest `{}`: {reason}", file.relative));
                c.report(diagnostic);
                continue;
            }
        };
        let own = std::mem::replace(&mut c.file, file.id);
        let template = parse_template(file.id, text);
        let clean = template.diagnostics.is_empty();
        for error in template.diagnostics {
            c.report(error);
        }
        c.interpolations(&template.parts, env);
        if clean {
            check_documents(c, &placeholders(&template.parts, &template.interpolations, text.len()));
            check_holes(c, &template.parts, &template.interpolations);
        }
        c.file = own;
    }
}

/// The text of a template with each interpolation replaced by a plain scalar of the same length
/// (so offsets, and so spans, stay those of the file) and each escape `\${` by three characters.
fn placeholders(parts: &[StrPart], interpolations: &[Span], len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut wholes = interpolations.iter();
    for part in parts {
        match part {
            StrPart::Text(text) => out.push_str(&text.replace("${", "_${")),
            StrPart::Interp(_) => {
                let n = wholes.next().map_or(0, |whole| whole.end.saturating_sub(whole.start));
                out.extend(std::iter::repeat_n('x', n as usize));
            }
        }
    }
    out
}

/// Reports each interpolation that renders into no key or scalar (one in a comment, a tag or an
/// anchor): the template is rendered node by node ([`Skeleton`]), so such text would be dropped
/// or, in a tag, change a node's type.
fn check_holes(c: &mut Checker, parts: &[StrPart], interpolations: &[Span]) {
    let pieces: Vec<Piece> = parts
        .iter()
        .map(|part| match part {
            StrPart::Text(text) => Piece::Text(text),
            StrPart::Interp(_) => Piece::Hole,
        })
        .collect();
    // A template that does not parse is reported by `check_documents`.
    let Ok(skeleton) = Skeleton::parse(&pieces) else { return };
    for hole in skeleton.holes_outside() {
        let Some(&span) = interpolations.get(hole) else { continue };
        c.report(
            Diagnostic::new(codes::INTERPOLATION_OUTSIDE_VALUE, c.file, span, "this interpolation is in no key or value of the manifest")
                .with_primary_message("in a comment, a tag or an anchor")
                .with_help("values are put into the YAML nodes of a manifest, never into its syntax: move the interpolation into a key or a value, or write `\\${` for a literal `${`"),
        );
    }
}

/// Reports every document of a (placeholder) stream that is not a Kubernetes object.
fn check_documents(c: &mut Checker, stream: &str) {
    for document in documents(stream) {
        let first_line = document.text.find('\n').unwrap_or(document.text.len());
        let at = Span::new(document.start, document.start + first_line);
        let problem = match serde_saphyr::from_str::<Option<Value>>(&document.text) {
            Err(error) => {
                let span = error.location().map_or(at, |location| {
                    let offset = offset_of(&document.text, location.line(), location.column());
                    Span::new(document.start + offset, document.start + offset)
                });
                let text = error.to_string();
                let first = text.lines().next().unwrap_or_default().trim();
                let reason = first.strip_prefix("error:").unwrap_or(first).trim().to_string();
                Some((span, format!("this manifest is not valid YAML: {reason}")))
            }
            Ok(None | Some(Value::Null)) => None,
            Ok(Some(Value::Object(object))) => {
                let missing: Vec<&str> = [
                    ("apiVersion", object.get("apiVersion")),
                    ("kind", object.get("kind")),
                    ("metadata.name", object.get("metadata").and_then(|m| m.get("name"))),
                ]
                .into_iter()
                .filter(|(_, value)| value.is_none_or(Value::is_null))
                .map(|(name, _)| name)
                .collect();
                (!missing.is_empty()).then(|| {
                    let listed: Vec<String> = missing.iter().map(|m| format!("`{m}`")).collect();
                    (at, format!("this document has no {}", listed.join(", ")))
                })
            }
            Ok(Some(_)) => Some((at, "this document is not a YAML mapping".to_string())),
        };
        if let Some((span, message)) = problem {
            c.report(
                Diagnostic::new(codes::INVALID_MANIFEST, c.file, span, message)
                    .with_primary_message("not a Kubernetes object")
                    .with_help("every document of a manifest is a Kubernetes object: a mapping with `apiVersion`, `kind` and `metadata.name`"),
            );
        }
    }
}

/// The byte offset of a 1-based line and column (in characters) of `text`, clamped to it.
fn offset_of(text: &str, line: u64, column: u64) -> usize {
    let start: usize = text.split_inclusive('\n').take(line.saturating_sub(1) as usize).map(str::len).sum();
    let rest = &text[start.min(text.len())..];
    let within = rest.char_indices().nth(column.saturating_sub(1) as usize).map_or(rest.len(), |(i, _)| i);
    (start + within).min(text.len())
}
