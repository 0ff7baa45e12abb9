//! Multi-document YAML streams, split into their documents, so that the checker of manifest
//! templates (docs/language.md §5.2) and the runtime that applies manifests agree on where each
//! document starts.

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
