//! Translation between the compiler's terms (byte offsets, spans, `ide` results) and the
//! protocol's (UTF-16 line/character positions, LSP types). Nothing here knows policy.

use aptc_compiler::diagnostics::{Diagnostic, Severity};
use aptc_compiler::ide;
use aptc_compiler::syntax::ast::Span;
use tower_lsp_server::ls_types as lsp;

/// Line starts of a text, for converting between byte offsets and LSP positions (whose
/// `character` counts UTF-16 code units).
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<u32>,
    /// Whether the whole text is ASCII: then a character is a byte, and a position is found
    /// without counting UTF-16 units along its line (a generated file can be one long line).
    ascii: bool,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> LineIndex<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i as u32 + 1));
        LineIndex { text, starts, ascii: text.is_ascii() }
    }

    /// The byte offset of a position. A line past the end is the end of the text; a
    /// character past the end of its line is the end of the line; a position inside a
    /// character (half a surrogate pair) is its start.
    pub fn offset(&self, position: lsp::Position) -> u32 {
        let Some(&start) = self.starts.get(position.line as usize) else { return self.text.len() as u32 };
        let end = self.starts.get(position.line as usize + 1).map_or(self.text.len(), |&next| next as usize - 1);
        let line = &self.text[start as usize..end];
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut units = 0u32;
        for (i, c) in line.char_indices() {
            let width = c.len_utf16() as u32;
            if units + width > position.character {
                return start + i as u32;
            }
            units += width;
        }
        start + line.len() as u32
    }

    /// The position of a byte offset (clamped to the text, and to a character boundary).
    pub fn position(&self, offset: u32) -> lsp::Position {
        let mut offset = (offset as usize).min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&start| start as usize <= offset) - 1;
        let start = self.starts[line] as usize;
        let character =
            if self.ascii { (offset - start) as u32 } else { self.text[start..offset].encode_utf16().count() as u32 };
        lsp::Position { line: line as u32, character }
    }

    /// The positions of ascending offsets, each found from the one before: linear in the text
    /// however many offsets share a line.
    fn positions(&self) -> Positions<'_, 'a> {
        Positions { lines: self, offset: 0, position: lsp::Position { line: 0, character: 0 } }
    }

    pub fn range(&self, span: Span) -> lsp::Range {
        lsp::Range { start: self.position(span.start), end: self.position(span.end.max(span.start)) }
    }

    pub fn span(&self, range: lsp::Range) -> Span {
        let (start, end) = (self.offset(range.start), self.offset(range.end));
        Span { start: start.min(end), end: start.max(end) }
    }

    /// The range of the whole text.
    pub fn everything(&self) -> lsp::Range {
        self.range(Span { start: 0, end: self.text.len() as u32 })
    }

    pub fn text(&self) -> &'a str {
        self.text
    }
}

/// Applies one `didChange` event to `text`.
pub fn apply_change(text: &mut String, change: &lsp::TextDocumentContentChangeEvent) {
    match change.range {
        Some(range) => {
            let span = LineIndex::new(text).span(range);
            text.replace_range(span.range(), &change.text);
        }
        None => text.clone_from(&change.text),
    }
}

/// Where a range of the text before `change` is after it, so that diagnostics computed before
/// an edit stay on the text they are about until they are computed again; `None` when the
/// change replaced a part of the range's ends (or the whole document).
pub fn shift_range(range: lsp::Range, change: &lsp::TextDocumentContentChangeEvent) -> Option<lsp::Range> {
    let replaced = change.range?;
    Some(lsp::Range {
        start: shift(range.start, replaced, &change.text)?,
        end: shift(range.end, replaced, &change.text)?,
    })
}

fn shift(position: lsp::Position, replaced: lsp::Range, text: &str) -> Option<lsp::Position> {
    if position <= replaced.start {
        return Some(position);
    }
    if position < replaced.end {
        return None;
    }
    let new_lines = text.matches('\n').count() as u32;
    let last_line = text.rsplit('\n').next().unwrap_or_default();
    let last_width = last_line.encode_utf16().count() as u32;
    if position.line != replaced.end.line {
        return Some(lsp::Position {
            line: position.line + new_lines - (replaced.end.line - replaced.start.line),
            ..position
        });
    }
    let start = if new_lines == 0 { replaced.start.character + last_width } else { last_width };
    Some(lsp::Position {
        line: replaced.start.line + new_lines,
        character: start + (position.character - replaced.end.character),
    })
}

pub fn severity(severity: Severity) -> lsp::DiagnosticSeverity {
    match severity {
        Severity::Error => lsp::DiagnosticSeverity::ERROR,
        Severity::Warning => lsp::DiagnosticSeverity::WARNING,
    }
}

/// A compiler diagnostic as LSP: the code, the message with its help and notes, and the
/// labels (and the primary message) as related information. `locate` gives the URI and the
/// range of a span of a file, when the file has a URI.
pub fn diagnostic(
    d: &Diagnostic,
    range: lsp::Range,
    locate: &dyn Fn(aptc_compiler::source::FileId, Span) -> Option<lsp::Location>,
) -> lsp::Diagnostic {
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    for note in &d.notes {
        message.push_str("\nnote: ");
        message.push_str(note);
    }
    let mut related = Vec::new();
    if let Some(primary) = &d.primary.message
        && let Some(location) = locate(d.primary.file, d.primary.span)
    {
        related.push(lsp::DiagnosticRelatedInformation { location, message: primary.clone() });
    }
    for label in &d.labels {
        if let Some(location) = locate(label.file, label.span) {
            let message = label.message.clone().unwrap_or_else(|| "see here".to_string());
            related.push(lsp::DiagnosticRelatedInformation { location, message });
        }
    }
    lsp::Diagnostic {
        range,
        severity: Some(severity(d.severity)),
        code: Some(lsp::NumberOrString::String(d.code.as_str().to_string())),
        source: Some("aptc".to_string()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        ..lsp::Diagnostic::default()
    }
}

pub fn completion_kind(kind: ide::CompletionKind) -> lsp::CompletionItemKind {
    use ide::CompletionKind as K;
    match kind {
        K::Keyword => lsp::CompletionItemKind::KEYWORD,
        K::Namespace => lsp::CompletionItemKind::MODULE,
        K::Label => lsp::CompletionItemKind::PROPERTY,
        K::Service => lsp::CompletionItemKind::CLASS,
        K::Contract => lsp::CompletionItemKind::INTERFACE,
        K::Cluster => lsp::CompletionItemKind::STRUCT,
        K::Team | K::User => lsp::CompletionItemKind::CONSTANT,
        K::Component => lsp::CompletionItemKind::FIELD,
        K::Field | K::DiscoveryKey => lsp::CompletionItemKind::FIELD,
        K::Variable => lsp::CompletionItemKind::VARIABLE,
        K::Function => lsp::CompletionItemKind::FUNCTION,
        K::EnumValue => lsp::CompletionItemKind::ENUM_MEMBER,
        K::Role => lsp::CompletionItemKind::VALUE,
        K::Claim => lsp::CompletionItemKind::REFERENCE,
        K::Context => lsp::CompletionItemKind::ENUM_MEMBER,
    }
}

pub fn completion(item: ide::Completion, range: lsp::Range) -> lsp::CompletionItem {
    let new_text = item.insert.clone().unwrap_or_else(|| item.label.clone());
    lsp::CompletionItem {
        kind: Some(completion_kind(item.kind)),
        detail: item.detail,
        documentation: item.documentation.map(|value| {
            lsp::Documentation::MarkupContent(lsp::MarkupContent { kind: lsp::MarkupKind::Markdown, value })
        }),
        text_edit: Some(lsp::CompletionTextEdit::Edit(lsp::TextEdit { range, new_text })),
        label: item.label,
        ..lsp::CompletionItem::default()
    }
}

pub fn symbol_kind(kind: ide::SymbolKind) -> lsp::SymbolKind {
    use ide::SymbolKind as K;
    match kind {
        K::Namespace => lsp::SymbolKind::NAMESPACE,
        K::Label => lsp::SymbolKind::PROPERTY,
        K::Service => lsp::SymbolKind::CLASS,
        K::Component => lsp::SymbolKind::FIELD,
        K::Contract => lsp::SymbolKind::INTERFACE,
        K::Context => lsp::SymbolKind::ENUM_MEMBER,
        K::Rule => lsp::SymbolKind::EVENT,
        K::Cluster => lsp::SymbolKind::STRUCT,
        K::Claim => lsp::SymbolKind::OBJECT,
        K::User => lsp::SymbolKind::VARIABLE,
        K::Team => lsp::SymbolKind::CONSTANT,
        K::Grant => lsp::SymbolKind::KEY,
        K::Function => lsp::SymbolKind::FUNCTION,
        K::Test => lsp::SymbolKind::METHOD,
        K::Assert => lsp::SymbolKind::METHOD,
    }
}

#[allow(deprecated)] // `DocumentSymbol::deprecated` must be set, to `None`
pub fn document_symbol(symbol: ide::Symbol, lines: &LineIndex) -> lsp::DocumentSymbol {
    let children: Vec<lsp::DocumentSymbol> =
        symbol.children.into_iter().map(|child| document_symbol(child, lines)).collect();
    let range = lines.range(symbol.span);
    let mut selection_range = lines.range(symbol.selection);
    // The selection must lie inside the range.
    if selection_range.start < range.start || selection_range.end > range.end {
        selection_range = range;
    }
    lsp::DocumentSymbol {
        name: if symbol.name.is_empty() { "?".to_string() } else { symbol.name },
        detail: symbol.detail,
        kind: symbol_kind(symbol.kind),
        tags: None,
        deprecated: None,
        range,
        selection_range,
        children: (!children.is_empty()).then_some(children),
    }
}

/// The semantic token types, in legend order ([`token_type`] indexes it).
pub fn legend() -> lsp::SemanticTokensLegend {
    use lsp::SemanticTokenType as T;
    lsp::SemanticTokensLegend {
        token_types: vec![
            T::KEYWORD,
            T::COMMENT,
            T::STRING,
            T::NUMBER,
            T::OPERATOR,
            T::NAMESPACE,
            T::PROPERTY,
            T::CLASS,
            T::INTERFACE,
            T::STRUCT,
            T::EVENT,
            T::ENUM,
            T::TYPE,
            T::PARAMETER,
            T::TYPE_PARAMETER,
            T::ENUM_MEMBER,
            T::FUNCTION,
            T::VARIABLE,
        ],
        token_modifiers: vec![
            lsp::SemanticTokenModifier::DECLARATION,
            lsp::SemanticTokenModifier::DOCUMENTATION,
            lsp::SemanticTokenModifier::DEFAULT_LIBRARY,
        ],
    }
}

/// The index of a token kind in [`legend`].
pub fn token_type(kind: ide::TokenKind) -> u32 {
    use ide::TokenKind as K;
    match kind {
        K::Keyword => 0,
        K::Comment => 1,
        K::String => 2,
        K::Number => 3,
        K::Operator => 4,
        K::Namespace => 5,
        K::Label | K::Property => 6,
        K::Service => 7,
        K::Contract => 8,
        K::Cluster => 9,
        K::Rule => 10,
        K::Claim => 11,
        K::Team => 12,
        K::User => 13,
        K::Component => 14,
        K::Context => 15,
        K::Function => 16,
        K::Variable => 17,
    }
}

/// A walk over ascending offsets of one text ([`LineIndex::positions`]).
struct Positions<'i, 'a> {
    lines: &'i LineIndex<'a>,
    offset: usize,
    position: lsp::Position,
}

impl Positions<'_, '_> {
    fn at(&mut self, offset: u32) -> lsp::Position {
        let (lines, text) = (self.lines, self.lines.text);
        let mut offset = (offset as usize).min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = lines.starts.partition_point(|&start| start as usize <= offset) - 1;
        if lines.ascii || offset < self.offset || line as u32 != self.position.line {
            // On a new line (or going back), counting from the line's start is the same work.
            self.position = lines.position(offset as u32);
        } else {
            self.position.character += text[self.offset..offset].encode_utf16().count() as u32;
        }
        self.offset = offset;
        self.position
    }
}

/// Semantic tokens, split at line ends and delta-encoded as the protocol wants.
pub fn semantic_tokens(tokens: &[ide::SemanticToken], lines: &LineIndex) -> Vec<lsp::SemanticToken> {
    let text = lines.text();
    let mut positions = lines.positions();
    let mut out = Vec::with_capacity(tokens.len());
    let (mut last_line, mut last_start) = (0u32, 0u32);
    for token in tokens {
        let mut start = token.span.start as usize;
        let end = (token.span.end as usize).min(text.len());
        while start < end {
            let line_end = text[start..end].find('\n').map_or(end, |i| start + i);
            let piece = &text[start..line_end];
            let piece = piece.strip_suffix('\r').unwrap_or(piece);
            if !piece.is_empty() {
                let position = positions.at(start as u32);
                let length = piece.encode_utf16().count() as u32;
                let delta_line = position.line - last_line;
                let delta_start = if delta_line == 0 { position.character - last_start } else { position.character };
                out.push(lsp::SemanticToken {
                    delta_line,
                    delta_start,
                    length,
                    token_type: token_type(token.kind),
                    token_modifiers_bitset: token.modifiers,
                });
                (last_line, last_start) = (position.line, position.character);
            }
            start = line_end + 1;
        }
    }
    out
}

pub fn folding_range(fold: ide::Fold, lines: &LineIndex) -> Option<lsp::FoldingRange> {
    let range = lines.range(fold.span);
    (range.end.line > range.start.line).then_some(lsp::FoldingRange {
        start_line: range.start.line,
        start_character: None,
        end_line: range.end.line,
        end_character: None,
        kind: Some(match fold.kind {
            ide::FoldKind::Region => lsp::FoldingRangeKind::Region,
            ide::FoldKind::Comment => lsp::FoldingRangeKind::Comment,
            ide::FoldKind::Imports => lsp::FoldingRangeKind::Imports,
        }),
        collapsed_text: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_utf16_units() {
        let text = "ab\n\u{e9}\u{1F600}x\r\nend";
        let lines = LineIndex::new(text);
        let at = |line, character| lines.offset(lsp::Position { line, character });
        assert_eq!(at(0, 1), 1);
        assert_eq!(at(1, 1), 5, "after the two-byte é");
        assert_eq!(at(1, 2), 5, "inside the surrogate pair: its start");
        assert_eq!(at(1, 3), 9, "after the emoji (two UTF-16 units, four bytes)");
        assert_eq!(at(1, 99), 10, "past the end of the line: before \\r\\n");
        assert_eq!(at(9, 0), text.len() as u32);
        assert_eq!(lines.position(9), lsp::Position { line: 1, character: 3 });
        assert_eq!(lines.position(7), lsp::Position { line: 1, character: 1 }, "inside a character: its start");
        assert_eq!(lines.position(12), lsp::Position { line: 2, character: 0 });
    }

    #[test]
    fn incremental_changes_apply_in_order() {
        let mut text = "namespace a\nlabel x: int\n".to_string();
        let change = |sl, sc, el, ec, new: &str| lsp::TextDocumentContentChangeEvent {
            range: Some(lsp::Range {
                start: lsp::Position { line: sl, character: sc },
                end: lsp::Position { line: el, character: ec },
            }),
            range_length: None,
            text: new.to_string(),
        };
        apply_change(&mut text, &change(1, 6, 1, 7, "yy"));
        apply_change(&mut text, &change(0, 11, 0, 11, " owned_by t"));
        assert_eq!(text, "namespace a owned_by t\nlabel yy: int\n");
        apply_change(
            &mut text,
            &lsp::TextDocumentContentChangeEvent { range: None, range_length: None, text: "x".into() },
        );
        assert_eq!(text, "x");
    }

    #[test]
    fn ranges_move_with_the_text_around_them() {
        let position = |line, character| lsp::Position { line, character };
        let range = |sl, sc, el, ec| lsp::Range { start: position(sl, sc), end: position(el, ec) };
        let change = |replaced, new: &str| lsp::TextDocumentContentChangeEvent {
            range: Some(replaced),
            range_length: None,
            text: new.to_string(),
        };
        let unused = range(2, 8, 2, 11);
        // Typed before it on its line, on a line above, after it; a line break inserted before it.
        assert_eq!(shift_range(unused, &change(range(2, 0, 2, 0), "x")), Some(range(2, 9, 2, 12)));
        assert_eq!(shift_range(unused, &change(range(0, 3, 1, 0), "")), Some(range(1, 8, 1, 11)));
        assert_eq!(shift_range(unused, &change(range(2, 11, 2, 11), "é")), Some(unused));
        assert_eq!(shift_range(unused, &change(range(2, 4, 2, 4), "a\nbc")), Some(range(3, 6, 3, 9)));
        // Typed inside it: it grows; part of it replaced, or the whole document: gone.
        assert_eq!(shift_range(unused, &change(range(2, 9, 2, 9), "\u{1F600}")), Some(range(2, 8, 2, 13)));
        assert_eq!(shift_range(unused, &change(range(2, 5, 2, 9), "")), None);
        let everything = lsp::TextDocumentContentChangeEvent { range: None, range_length: None, text: String::new() };
        assert_eq!(shift_range(unused, &everything), None);
    }

    #[test]
    fn walking_positions_agree_with_positions() {
        for text in ["ab\n\u{e9}\u{1F600}x\r\nend \u{e9}\u{e9} z", "plain ascii\nonly", "\u{1F600}\u{1F600}\n\n\u{e9}"]
        {
            let lines = LineIndex::new(text);
            let mut walk = lines.positions();
            for offset in 0..=text.len() as u32 + 2 {
                assert_eq!(walk.at(offset), lines.position(offset), "{text:?} at {offset}");
            }
        }
    }

    #[test]
    fn multi_line_tokens_are_split() {
        let text = "a /* b\nc */ d";
        let lines = LineIndex::new(text);
        let token =
            ide::SemanticToken { span: Span { start: 2, end: 11 }, kind: ide::TokenKind::Comment, modifiers: 0 };
        let encoded = semantic_tokens(&[token], &lines);
        assert_eq!(encoded.len(), 2);
        assert_eq!((encoded[0].delta_line, encoded[0].delta_start, encoded[0].length), (0, 2, 4));
        assert_eq!((encoded[1].delta_line, encoded[1].delta_start, encoded[1].length), (1, 0, 4));
    }
}
