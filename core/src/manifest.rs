//! Multi-document YAML streams, split into their documents, so that the checker of manifest
//! templates (docs/language.md §5.2) and the runtime that applies manifests agree on where each
//! document starts; and manifest templates rendered node by node ([`Skeleton`]), so that an
//! interpolated value is data in a scalar and never YAML syntax.

use serde_json::Value as Json;

/// One document of a stream, as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentText {
    /// Byte offset in the stream where the document's text starts (after its `---` marker).
    pub start: usize,
    /// The line (1-based) it starts on.
    pub line: usize,
    /// Its text; content on the marker line itself (`--- a: 1`) is included.
    pub text: String,
}

/// The documents of a multi-document YAML stream, in order, empty ones included.
///
/// The stream is split at document markers (`---` at the start of a line, which YAML forbids
/// inside any scalar, and `...`), so each document can be parsed on its own and a comment such
/// as Helm's `# Source: …` right after a marker stays with its document.
pub fn documents(stream: &str) -> Vec<DocumentText> {
    let mut out = vec![DocumentText { start: 0, line: 1, text: String::new() }];
    let mut offset = 0;
    for (n, line) in stream.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t") {
            let rest = bare[3..].trim_start();
            let (start, text) = if rest.is_empty() {
                (offset + line.len(), String::new())
            } else {
                (offset + (bare.len() - rest.len()), format!("{rest}\n"))
            };
            out.push(DocumentText { start, line: n + 1, text });
        } else if bare == "..." {
            out.push(DocumentText { start: offset + line.len(), line: n + 2, text: String::new() });
        } else if let Some(last) = out.last_mut() {
            last.text.push_str(line);
        }
        offset += line.len();
    }
    out
}

/// A piece of a manifest template: literal text, or an interpolation (the holes are numbered in
/// order, from 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'t> {
    Text(&'t str),
    Hole,
}

/// Why a manifest template cannot be parsed or filled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the YAML document at line {line} does not parse: {reason}")]
    Yaml { line: usize, reason: String },
    #[error("{found} cannot be interpolated into a string or key of a manifest (use `join(…)` for a list)")]
    NotText { found: String },
    #[error("two keys of one mapping of the manifest are `{0}`")]
    DuplicateKey(String),
}

/// A manifest template parsed as YAML with each interpolation standing as a placeholder scalar,
/// so that filling it puts values *into* nodes: whatever a value holds (quotes, newlines, `---`,
/// `#`, `: `), it cannot add a key, an item or a document, nor change the type YAML gives a
/// node.
///
/// A scalar that is exactly one unquoted interpolation becomes the value itself (a string, an
/// integer, a boolean, a list or a map); an interpolation inside a longer scalar, a quoted
/// scalar or a key makes a string. Interpolations anywhere else (comments, tags, anchors) are
/// not part of any node: [`Skeleton::holes_outside`] lists them, for the checker to refuse.
#[derive(Clone, Debug, PartialEq)]
pub struct Skeleton {
    /// Begins each placeholder: `{marker}{index}z`; occurs nowhere in the template's text.
    marker: String,
    /// Per hole: whether it is the whole content of a quoted scalar (`"${x}"`).
    quoted: Vec<bool>,
    documents: Vec<Json>,
}

impl Skeleton {
    /// Parses a template. Errors are those of its YAML, with the interpolations as plain scalars.
    pub fn parse(pieces: &[Piece]) -> Result<Skeleton, TemplateError> {
        let (marker, text, quoted) = placeholder_text(pieces);
        let mut documents_out = Vec::new();
        for document in documents(&text) {
            let parsed: Option<Json> = serde_saphyr::from_str(&document.text).map_err(|e| TemplateError::Yaml {
                line: document.line,
                reason: e.to_string().lines().next().unwrap_or_default().to_string(),
            })?;
            match parsed {
                None | Some(Json::Null) => {}
                Some(value) => documents_out.push(value),
            }
        }
        Ok(Skeleton { marker, quoted, documents: documents_out })
    }

    /// The holes that are in no key or scalar (in a comment, a tag or an anchor), in order.
    pub fn holes_outside(&self) -> Vec<usize> {
        let mut seen = vec![false; self.quoted.len()];
        self.documents.iter().for_each(|document| self.visit(document, &mut seen));
        seen.iter().enumerate().filter(|(_, seen)| !**seen).map(|(i, _)| i).collect()
    }

    fn visit(&self, node: &Json, seen: &mut [bool]) {
        match node {
            Json::String(text) => self.mark(text, seen),
            Json::Array(items) => items.iter().for_each(|item| self.visit(item, seen)),
            Json::Object(entries) => {
                for (key, value) in entries {
                    self.mark(key, seen);
                    self.visit(value, seen);
                }
            }
            _ => {}
        }
    }

    fn mark(&self, text: &str, seen: &mut [bool]) {
        for segment in self.segments(text) {
            if let Segment::Hole(i) = segment
                && let Some(slot) = seen.get_mut(i)
            {
                *slot = true;
            }
        }
    }

    /// The documents with each hole filled by `value(index)` (asked once per hole, and only for
    /// holes in a node), written as a YAML stream by a YAML writer.
    pub fn render<E: From<TemplateError>>(&self, mut value: impl FnMut(usize) -> Result<Json, E>) -> Result<String, E> {
        let mut cache: Vec<Option<Json>> = vec![None; self.quoted.len()];
        let mut get = |i: usize| -> Result<Json, E> {
            match cache.get(i) {
                Some(Some(known)) => Ok(known.clone()),
                _ => {
                    let found = value(i)?;
                    if let Some(slot) = cache.get_mut(i) {
                        *slot = Some(found.clone());
                    }
                    Ok(found)
                }
            }
        };
        let mut out = String::new();
        for document in &self.documents {
            let filled = self.fill(document, &mut get)?;
            let text = serde_saphyr::to_string(&filled)
                .map_err(|e| TemplateError::Yaml { line: 0, reason: format!("writing YAML: {e}") })?;
            out.push_str("---\n");
            out.push_str(&text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        Ok(out)
    }

    fn fill<E: From<TemplateError>>(
        &self,
        node: &Json,
        value: &mut impl FnMut(usize) -> Result<Json, E>,
    ) -> Result<Json, E> {
        Ok(match node {
            Json::String(text) => match self.segments(text).as_slice() {
                [Segment::Hole(i)] if !self.quoted.get(*i).copied().unwrap_or(true) => value(*i)?,
                _ => Json::String(self.text(text, value)?),
            },
            Json::Array(items) => {
                Json::Array(items.iter().map(|item| self.fill(item, value)).collect::<Result<_, _>>()?)
            }
            Json::Object(entries) => {
                let mut out = serde_json::Map::new();
                for (key, item) in entries {
                    let key = self.text(key, value)?;
                    let item = self.fill(item, value)?;
                    if out.insert(key.clone(), item).is_some() {
                        return Err(TemplateError::DuplicateKey(key).into());
                    }
                }
                Json::Object(out)
            }
            other => other.clone(),
        })
    }

    /// A scalar or key of the template as text, its holes filled with their values' text.
    fn text<E: From<TemplateError>>(
        &self,
        text: &str,
        value: &mut impl FnMut(usize) -> Result<Json, E>,
    ) -> Result<String, E> {
        let mut out = String::with_capacity(text.len());
        for segment in self.segments(text) {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Hole(i) => match value(i)? {
                    Json::String(s) => out.push_str(&s),
                    scalar @ (Json::Number(_) | Json::Bool(_)) => out.push_str(&scalar.to_string()),
                    other => return Err(TemplateError::NotText { found: other.to_string() }.into()),
                },
            }
        }
        Ok(out)
    }

    /// `text` cut into literal text and holes.
    fn segments<'s>(&self, text: &'s str) -> Vec<Segment<'s>> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find(&self.marker) {
            let after = &rest[at + self.marker.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let index = after[..digits].parse::<usize>().ok().filter(|_| after[digits..].starts_with('z'));
            match index {
                Some(index) => {
                    if at > 0 {
                        out.push(Segment::Text(&rest[..at]));
                    }
                    out.push(Segment::Hole(index));
                    rest = &after[digits + 1..];
                }
                None => {
                    // Not a placeholder after all: keep the text up to past the marker's start.
                    let end = at + self.marker.len();
                    out.push(Segment::Text(&rest[..end]));
                    rest = &rest[end..];
                }
            }
        }
        if !rest.is_empty() {
            out.push(Segment::Text(rest));
        }
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment<'s> {
    Text(&'s str),
    Hole(usize),
}

/// The template's text with each hole as a placeholder, the placeholders' marker (chosen so
/// that it occurs exactly at the holes), and which holes are the whole of a quoted scalar.
fn placeholder_text(pieces: &[Piece]) -> (String, String, Vec<bool>) {
    let mut nonce = 0u64;
    loop {
        let marker = format!("aptc{nonce:x}h");
        let mut text = String::new();
        let mut at = Vec::new();
        let mut quoted = Vec::new();
        for (n, piece) in pieces.iter().enumerate() {
            match piece {
                Piece::Text(t) => text.push_str(t),
                Piece::Hole => {
                    let before = if n > 0 { pieces.get(n - 1) } else { None };
                    let open = match before {
                        Some(Piece::Text(t)) => t.chars().last().filter(|c| *c == '"' || *c == '\''),
                        _ => None,
                    };
                    let close = match pieces.get(n + 1) {
                        Some(Piece::Text(t)) => t.chars().next(),
                        _ => None,
                    };
                    quoted.push(open.is_some() && open == close);
                    at.push(text.len());
                    text.push_str(&format!("{marker}{}z", quoted.len() - 1));
                }
            }
        }
        if text.match_indices(&marker).map(|(i, _)| i).eq(at.iter().copied()) {
            return (marker, text, quoted);
        }
        nonce += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_markers_with_their_offsets() {
        let stream = "a: 1\n---\nb: 2\n--- c: 3\nd: 4\n...\n";
        let docs = documents(stream);
        let shown: Vec<(usize, usize, &str)> = docs.iter().map(|d| (d.start, d.line, d.text.as_str())).collect();
        assert_eq!(shown, [(0, 1, "a: 1\n"), (9, 2, "b: 2\n"), (18, 4, "c: 3\nd: 4\n"), (32, 7, "")]);
        assert_eq!(&stream[18..22], "c: 3");
    }
}
