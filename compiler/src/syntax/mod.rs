//! Syntax: text → tokens → tree, and tree → canonical text.
//!
//! [`parse`] never fails: it returns the tree it could build plus diagnostics. This
//! module knows nothing of names or types; that is `semantics`' job.

pub mod ast;
pub mod format;
pub mod lexer;
mod nesting;
mod parser;
mod strings;
pub mod validate;

use chumsky::error::{RichPattern, RichReason};
use chumsky::span::SimpleSpan;

use ast::{ContractStmt, Docs, Item, ItemKind, ServiceStmt, SourceFile, Span};
use lexer::{Comment, CommentKind, Keyword, LexError, Token};
use parser::{Issue, ParseError};

use crate::diagnostics::{Code, Diagnostic, codes};
use crate::source::FileId;

/// The result of parsing one file.
#[derive(Debug, PartialEq, Eq)]
pub struct Parse {
    pub file: SourceFile,
    /// Every comment, in order; the formatter puts them back.
    pub comments: Vec<Comment>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parse {
    /// Whether the file had syntax errors (the tree then holds `Error` nodes).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Parses `src` (the text of `file`), recovering from errors.
pub fn parse(file: FileId, src: &str) -> Parse {
    if u32::try_from(src.len()).is_err() {
        let diagnostic = Diagnostic::new(codes::FILE_TOO_LARGE, file, Span::default(), "file is larger than 4 GiB")
            .with_help("split the policy into several files");
        return Parse { file: SourceFile { items: Vec::new() }, comments: Vec::new(), diagnostics: vec![diagnostic] };
    }
    // Lexed with the parser's spans: the parser is handed this vector, not a copy.
    let lexed = lexer::lex_with(src, SimpleSpan::from);
    let mut errors: Vec<SyntaxError> = lexed.errors.iter().map(|e| lex_error(e, src, |s| s)).collect();
    // What follows an invalid character up to the end of its expression (the next `,`, `;` or
    // closing bracket, or the end of the line) is usually "unexpected" only because of it.
    let after_invalid = after_invalid(&lexed.tokens, src);
    let mut tokens = lexed.tokens;
    tokens.retain(|(token, _)| *token != Token::Error); // already reported as lex errors
    let prepared = nesting::prepare(tokens, 0);
    errors.extend(prepared.errors);
    let (mut items, parse_errors) = parser::parse_tokens(&prepared.tokens, prepared.groups, src.len());
    for error in &parse_errors {
        let start = error.span().start as u32;
        if after_invalid.iter().any(|(from, to)| (*from..=*to).contains(&start)) || prepared.cut.covers(*error.span()) {
            continue;
        }
        match error.reason() {
            RichReason::Custom(Issue::InString(inner)) => errors.push(inner.clone()),
            _ => errors.push(describe(error)),
        }
    }
    attach_docs(&mut items, &lexed.comments, src);
    let mut diagnostics: Vec<Diagnostic> = errors.into_iter().map(|e| e.into_diagnostic(file)).collect();
    crate::diagnostics::sort(&mut diagnostics);
    diagnostics.dedup();
    Parse { file: SourceFile { items }, comments: lexed.comments, diagnostics }
}

/// The byte ranges after each invalid character where a parse error is only its consequence: from
/// the next token up to the next `,`, `;` or closing bracket on the same line (inclusive), or the
/// end of the line.
fn after_invalid(tokens: &[(Token<'_>, SimpleSpan)], src: &str) -> Vec<(u32, u32)> {
    let mut ranges = Vec::new();
    for (i, (token, _)) in tokens.iter().enumerate() {
        if *token != Token::Error {
            continue;
        }
        let Some((_, next)) = tokens.get(i + 1).filter(|(t, _)| *t != Token::Error) else { continue };
        let mut end = next.start;
        for (token, span) in &tokens[i + 1..] {
            let between = src.get(end..span.start).unwrap_or("");
            if *token == Token::Error || between.contains('\n') {
                break;
            }
            end = span.start;
            if matches!(token, Token::Comma | Token::Semi | Token::RBrace | Token::RParen | Token::RBracket) {
                break;
            }
        }
        // Offsets fit in `u32`: `parse` refuses larger files.
        ranges.push((next.start as u32, end as u32));
    }
    ranges
}

/// A parsed manifest template (docs/language.md §5.2).
#[derive(Debug)]
pub struct TemplateParse {
    /// Its text and `${…}` interpolations, each parsed as an expression.
    pub parts: Vec<ast::StrPart>,
    /// The span of each whole `${…}`, in order.
    pub interpolations: Vec<Span>,
    /// The syntax errors found in the interpolations.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses a manifest template of `file`. Spans are byte offsets of `text`, which must be
/// shorter than 4 GiB (the loader refuses far smaller files).
pub fn parse_template(file: FileId, text: &str) -> TemplateParse {
    let (parts, interpolations, errors) = strings::decode_template(text);
    TemplateParse { parts, interpolations, diagnostics: errors.into_iter().map(|e| e.into_diagnostic(file)).collect() }
}

/// A syntax error before it is tied to a file.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SyntaxError {
    pub code: Code,
    pub span: Span,
    pub message: String,
    pub primary_message: Option<String>,
    pub label: Option<(Span, String)>,
    pub help: Option<String>,
}

impl SyntaxError {
    pub(crate) fn new(code: Code, span: Span, message: impl Into<String>) -> SyntaxError {
        SyntaxError { code, span, message: message.into(), primary_message: None, label: None, help: None }
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> SyntaxError {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn with_primary(mut self, message: impl Into<String>) -> SyntaxError {
        self.primary_message = Some(message.into());
        self
    }

    fn into_diagnostic(self, file: FileId) -> Diagnostic {
        let mut diagnostic = Diagnostic::new(self.code, file, self.span, self.message);
        diagnostic.primary.message = self.primary_message;
        diagnostic.help = self.help;
        if let Some((span, message)) = self.label {
            diagnostic = diagnostic.with_label(file, span, message);
        }
        diagnostic
    }
}

pub(crate) fn lex_error(error: &LexError, src: &str, shift: impl Fn(Span) -> Span) -> SyntaxError {
    let text = match error {
        LexError::InvalidChar(span) => src.get(span.range()).unwrap_or(""),
        _ => "",
    };
    match error {
        LexError::InvalidChar(span) => {
            let help = match text {
                "&&" | "&" => "write `and` to combine conditions",
                "!" => "write `not` to negate a condition (`!=` compares)",
                "'" => "strings use double quotes: \"…\"",
                "#" => "comments start with `//`",
                "+" => {
                    "the language has no arithmetic and no `+`: to join strings, interpolate them \
(`\"${a}${b}\"`) or call `join([a, b], \"\")`; for a number, write its value"
                }
                _ => "remove it; strings go in double quotes and comments start with `//`",
            };
            SyntaxError::new(codes::INVALID_CHARACTER, shift(*span), format!("invalid character `{text}`"))
                .with_primary("not part of any token")
                .with_help(help)
        }
        LexError::UnterminatedString(span) => {
            SyntaxError::new(codes::UNTERMINATED_STRING, shift(*span), "unterminated string")
                .with_primary("this string has no closing `\"` on its line")
                .with_help("add the closing `\"`; strings cannot span lines (write `\\n` for a line break)")
        }
        LexError::UnterminatedBlockComment(span) => {
            let start = shift(*span);
            SyntaxError::new(
                codes::UNTERMINATED_COMMENT,
                Span { end: start.start + 2, ..start },
                "unterminated block comment",
            )
            .with_primary("this `/*` is never closed")
            .with_help("close the comment with `*/` (block comments nest, so each `/*` needs its own `*/`)")
        }
    }
}

/// Turns a chumsky error into a syntax error with a code, message and help.
pub(crate) fn describe(error: &ParseError<'_, '_>) -> SyntaxError {
    let at = parser::span(*error.span());
    match error.reason() {
        RichReason::Custom(Issue::Unclosed { what }) => {
            SyntaxError::new(codes::UNCLOSED_DELIMITER, at, format!("this {what}'s `{{` is never closed"))
                .with_primary("unclosed `{`")
                .with_help("add the missing `}` where the block should end")
        }
        RichReason::Custom(Issue::IntOutOfRange) => {
            SyntaxError::new(codes::INTEGER_OUT_OF_RANGE, at, "integer does not fit in 64 bits")
                .with_primary("too large")
                .with_help(format!("integers range from {} to {}", i64::MIN, i64::MAX))
        }
        RichReason::Custom(Issue::InString(inner)) => inner.clone(),
        RichReason::Custom(Issue::ChainedComparison) => {
            SyntaxError::new(codes::CHAINED_COMPARISON, at, "comparisons cannot be chained")
                .with_primary("a second comparison operator")
                .with_help("join the comparisons with `and`, e.g. `a < b and b < c`")
        }
        RichReason::ExpectedFound { expected, found } => {
            let found_text = found.as_deref().map_or_else(|| "end of file".to_string(), |t| t.to_string());
            let mut expected: Vec<String> = expected.iter().filter_map(pattern_text).collect();
            expected.sort();
            expected.dedup();
            if expected.iter().any(|e| e == "expression") {
                // `-` and `not` begin expressions too; naming them separately is noise.
                expected.retain(|e| e != "`-`" && e != "`not`");
            }
            let message = format!("unexpected {found_text}");
            let primary = match expected.len() {
                0 => "not expected here".to_string(),
                1..=6 => format!("expected {}", join_or(&expected)),
                n => format!("expected {} or one of {} other things", expected[..5].join(", "), n - 5),
            };
            let mut err = SyntaxError::new(codes::UNEXPECTED_TOKEN, at, message).with_primary(primary);
            err.help = help_for(found.as_deref(), &expected);
            err
        }
    }
}

fn pattern_text(pattern: &RichPattern<'_, Token<'_>>) -> Option<String> {
    match pattern {
        RichPattern::Token(token) => Some(token.to_string()),
        RichPattern::Label(label) => Some(label.to_string()),
        RichPattern::Identifier(ident) => Some(format!("`{ident}`")),
        RichPattern::EndOfInput => Some("end of file".to_string()),
        _ => None,
    }
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn help_for(found: Option<&Token<'_>>, expected: &[String]) -> Option<String> {
    let expects = |what: &str| expected.iter().any(|e| e == what);
    match found {
        Some(Token::Keyword(k)) if expects("identifier") || expects("name") => Some(format!(
            "`{}` is a keyword and cannot name an object here; choose another name (e.g. `{}_`)",
            k.as_str(),
            k.as_str()
        )),
        Some(Token::Ident(text)) => closest_keyword(text, expected)
            .map(|kw| format!("did you mean `{kw}`?"))
            .or_else(|| Some("check the statement against docs/language.md".to_string())),
        None if expects("`}`") => Some("a block is missing its closing `}`".to_string()),
        Some(Token::Pipe) if expects("operator") => Some("write `or` to combine conditions".to_string()),
        Some(Token::Assign) if expects("operator") => Some("use `==` to compare; `=` only sets values".to_string()),
        _ if expects("expression") => Some(
            "a value is missing: write a string, a number, `true`/`false`, a list `[..]`, a map `{..}` \
             or a reference such as `labels.env`"
                .to_string(),
        ),
        _ => None,
    }
}

/// The expected keyword (or contextual word) closest to a misspelt identifier (edit distance ≤ 2).
fn closest_keyword(text: &str, expected: &[String]) -> Option<&'static str> {
    Keyword::ALL
        .iter()
        .map(|k| k.as_str())
        .chain(parser::CONTEXTUAL_WORDS.iter().copied())
        .filter(|k| expected.iter().any(|e| e.trim_matches('`') == *k))
        .map(|k| (edit_distance(text, k), k))
        .filter(|&(d, _)| d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Edit distance counting a swap of two neighbours as one edit (optimal string alignment),
/// for "did you mean" suggestions: `evn` is one edit from `env`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: two back (for swaps), one back, current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut current = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            current[j] = (previous[j - 1] + cost).min(previous[j] + 1).min(current[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                current[j] = current[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut previous, current);
    }
    previous[b.len()]
}

/// Gives items, components and contexts the `///` comments written right above them.
fn attach_docs(items: &mut [Item], comments: &[Comment], src: &str) {
    let docs_before = |start: u32| docs_before(comments, src, start);
    for item in items {
        item.docs = docs_before(item.span.start);
        match &mut item.kind {
            ItemKind::Service(service) => {
                for stmt in &mut service.body.stmts {
                    if let ServiceStmt::Component(component) = &mut stmt.node {
                        component.docs = docs_before(stmt.span.start);
                    }
                }
            }
            ItemKind::Contract(contract) => {
                for stmt in &mut contract.body.stmts {
                    if let ContractStmt::Context(context) = &mut stmt.node {
                        context.docs = docs_before(stmt.span.start);
                    }
                }
            }
            _ => {}
        }
    }
}

fn docs_before(comments: &[Comment], src: &str, start: u32) -> Option<Docs> {
    let mut index = comments.partition_point(|c| c.span.end <= start);
    let mut end = start as usize;
    let mut lines = Vec::new();
    let mut span: Option<Span> = None;
    while index > 0 {
        let comment = &comments[index - 1];
        if comment.kind != CommentKind::Doc || !src[comment.span.end as usize..end].trim().is_empty() {
            break;
        }
        let text = &src[comment.span.range()];
        let text = text.strip_prefix("///").unwrap_or(text);
        lines.push(text.strip_prefix(' ').unwrap_or(text).trim_end().to_string());
        span = Some(span.map_or(comment.span, |s| s.to(comment.span)));
        end = comment.span.start as usize;
        index -= 1;
    }
    lines.reverse();
    span.map(|span| Docs { text: lines.join("\n"), span })
}
