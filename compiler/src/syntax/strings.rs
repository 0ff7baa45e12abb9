//! String literals: escapes and `${…}` interpolation.
//!
//! The lexer keeps a string whole (quotes included); here it is split into text and
//! interpolated expressions, each parsed with the ordinary expression parser so that
//! `"${lower(user.name)}-dev"` is as checked as any other expression.

use chumsky::span::SimpleSpan;

use super::SyntaxError;
use super::ast::{Expr, ExprKind, Ident, Path, SmolStr, Span, StrLit, StrPart};
use super::lexer;
use super::lexer::Token;
use super::{nesting, parser};
use crate::diagnostics::codes;

/// An error found inside a string literal.
pub(crate) type StringError = SyntaxError;

/// Decodes the raw literal `raw` (with quotes) that starts at byte `start` of its file; its
/// interpolations are nested `depth` levels deep (see [`nesting`]).
pub(crate) fn decode(raw: &str, start: usize, depth: u32) -> (StrLit, Vec<StringError>) {
    let mut parts = Vec::new();
    let mut errors = Vec::new();
    let mut text = String::new();
    let body_end = if raw.len() >= 2 && raw.ends_with('"') { raw.len() - 1 } else { raw.len() };
    let body = &raw[1.min(raw.len())..body_end];
    let span = Span::new(start, start + raw.len());
    if !body.contains(['\\', '$']) {
        // No escape and no interpolation (most strings): the text as written, copied once.
        return (StrLit { parts: vec![StrPart::Text(SmolStr::new(body))], span }, errors);
    }
    let base = start + 1;
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped @ ('"' | '\\' | '$'))) => text.push(escaped),
                Some((_, 'n')) => text.push('\n'),
                Some((_, 't')) => text.push('\t'),
                Some((_, 'r')) => text.push('\r'),
                Some((j, other)) => {
                    let span = Span::new(base + i, base + j + other.len_utf8());
                    errors.push(
                        SyntaxError::new(codes::INVALID_ESCAPE, span, format!("unknown escape `\\{other}`"))
                            .with_primary("not an escape")
                            .with_help("the escapes are \\\" \\\\ \\n \\t \\r and \\$; write \\\\ for a backslash"),
                    );
                    text.push(other);
                }
                None => {} // an unterminated string; the lexer reported it
            },
            '$' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                chars.next();
                let open = i;
                let inner_start = i + 2;
                let Some(inner_end) = interpolation_end(&body[inner_start..]).map(|n| inner_start + n) else {
                    errors.push(
                        SyntaxError::new(
                            codes::BAD_INTERPOLATION,
                            Span::new(base + open, base + open + 2),
                            "this `${` is never closed",
                        )
                        .with_primary("no `}` before the string ends")
                        .with_help("end the interpolation with `}`, or write `\\${` for a literal `${`"),
                    );
                    text.push_str(&body[open..]);
                    break;
                };
                if !text.is_empty() {
                    parts.push(StrPart::Text(SmolStr::new(std::mem::take(&mut text))));
                }
                parts.push(StrPart::Interp(parse_interpolation(
                    &body[inner_start..inner_end],
                    base + inner_start,
                    Span::new(base + open, base + inner_end + 1),
                    depth,
                    &mut errors,
                )));
                // Skip to after the closing `}`.
                while chars.peek().is_some_and(|&(j, _)| j <= inner_end) {
                    chars.next();
                }
            }
            _ => text.push(c),
        }
    }
    if !text.is_empty() || parts.is_empty() {
        parts.push(StrPart::Text(SmolStr::new(text)));
    }
    (StrLit { parts, span }, errors)
}

/// Splits the text of a manifest template (docs/language.md §5.2) into text and `${…}`
/// interpolations, with spans that are byte offsets of `text`. Only `\${` is an escape (a
/// literal `${`); every other character, backslashes included, is YAML and stays as it is. An
/// interpolation ends on its own line, so one left open does not swallow the rest of the file.
/// Besides the parts, the span of each whole `${…}`, in order.
pub(crate) fn decode_template(text: &str) -> (Vec<StrPart>, Vec<Span>, Vec<StringError>) {
    let mut parts = Vec::new();
    let mut wholes = Vec::new();
    let mut errors = Vec::new();
    let mut literal = String::new();
    let mut rest = 0;
    while let Some(found) = text[rest..].find("${").map(|n| rest + n) {
        if text[..found].ends_with('\\') {
            literal.push_str(&text[rest..found - 1]);
            literal.push_str("${");
            rest = found + 2;
            continue;
        }
        literal.push_str(&text[rest..found]);
        let inner_start = found + 2;
        let line_end = text[inner_start..].find('\n').map_or(text.len(), |n| inner_start + n);
        let Some(inner_end) = interpolation_end(&text[inner_start..line_end]).map(|n| inner_start + n) else {
            errors.push(
                SyntaxError::new(codes::BAD_INTERPOLATION, Span::new(found, inner_start), "this `${` is never closed")
                    .with_primary("no `}` before the line ends")
                    .with_help("end the interpolation with `}` on the same line, or write `\\${` for a literal `${`"),
            );
            literal.push_str("${");
            rest = inner_start;
            continue;
        };
        if !literal.is_empty() {
            parts.push(StrPart::Text(SmolStr::new(std::mem::take(&mut literal))));
        }
        let whole = Span::new(found, inner_end + 1);
        wholes.push(whole);
        parts.push(StrPart::Interp(parse_interpolation(
            &text[inner_start..inner_end],
            inner_start,
            whole,
            1,
            &mut errors,
        )));
        rest = inner_end + 1;
    }
    literal.push_str(&text[rest..]);
    if !literal.is_empty() {
        parts.push(StrPart::Text(SmolStr::new(literal)));
    }
    (parts, wholes, errors)
}

/// Byte length up to (not including) the `}` that closes an interpolation.
fn interpolation_end(rest: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'{' if !in_string => depth += 1,
            b'}' if !in_string && depth == 0 => return Some(i),
            b'}' if !in_string => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_interpolation(text: &str, offset: usize, whole: Span, depth: u32, errors: &mut Vec<StringError>) -> Expr {
    let error_expr = Expr { kind: ExprKind::Error, span: whole };
    if text.trim().is_empty() {
        errors.push(
            SyntaxError::new(codes::BAD_INTERPOLATION, whole, "empty interpolation")
                .with_primary("nothing inside")
                .with_help("put an expression inside, like `${labels.team}`"),
        );
        return error_expr;
    }
    let lexed = lexer::lex_with(text, |range| SimpleSpan::from(range.start + offset..range.end + offset));
    let shift = |span: Span| Span::new(span.start as usize + offset, span.end as usize + offset);
    for error in &lexed.errors {
        errors.push(super::lex_error(error, text, shift));
    }
    if !lexed.errors.is_empty() {
        return error_expr;
    }
    let tokens = lexed.tokens;
    if let Some(path) = simple_path(&tokens) {
        return path;
    }
    let prepared = nesting::prepare(tokens, depth);
    let clean = prepared.errors.is_empty();
    errors.extend(prepared.errors);
    let (expr, parse_errors) = parser::parse_expr_tokens(&prepared.tokens, prepared.groups, offset + text.len());
    let clean = clean && parse_errors.is_empty();
    errors.extend(parse_errors.iter().filter(|error| !prepared.cut.covers(*error.span())).map(|error| {
        let mut described = super::describe(error);
        if error.found().is_none() {
            described.message = "the interpolation ends too early".to_string();
        }
        described
    }));
    match expr {
        Some(expr) if clean => expr,
        _ => error_expr,
    }
}

/// `a.b.c`, by far the most common interpolation, built without running the parser.
fn simple_path(tokens: &[(Token<'_>, SimpleSpan)]) -> Option<Expr> {
    let mut segments = Vec::with_capacity(tokens.len() / 2 + 1);
    for (i, (token, s)) in tokens.iter().enumerate() {
        let text = match (i % 2, token) {
            (0, Token::Ident(text)) => SmolStr::new(text),
            (0, Token::Keyword(k)) if k.is_name_like() => SmolStr::new_static(k.as_str()),
            (1, Token::Dot) => continue,
            _ => return None,
        };
        segments.push(Ident { text, span: Span::new(s.start, s.end) });
    }
    if tokens.len() % 2 == 0 {
        return None; // empty, or ends with a dot
    }
    let span = segments.first()?.span.to(segments.last()?.span);
    Some(Expr { kind: ExprKind::Path(Path { segments, span }), span })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lit: &StrLit) -> Vec<String> {
        lit.parts
            .iter()
            .map(|p| match p {
                StrPart::Text(t) => format!("text:{t}"),
                StrPart::Interp(e) => format!("expr@{}..{}", e.span.start, e.span.end),
            })
            .collect()
    }

    #[test]
    fn plain_and_escapes() {
        let (lit, errors) = decode(r#""a\"b\n\$c""#, 0, 1);
        assert!(errors.is_empty());
        assert_eq!(lit.as_plain().as_deref(), Some("a\"b\n$c"));
    }

    #[test]
    fn interpolation_spans_are_file_offsets() {
        let (lit, errors) = decode(r#""x-${user.name}-y""#, 10, 1);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(texts(&lit), ["text:x-", "expr@15..24", "text:-y"]);
    }

    #[test]
    fn nested_strings_inside_interpolation() {
        let (lit, errors) = decode(r#""${default(labels.x, "}")}""#, 0, 1);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(lit.parts.len(), 1);
    }

    #[test]
    fn templates_keep_yaml_and_escape_only_dollar_brace() {
        let (parts, wholes, errors) = decode_template("a: \"x\\n\"\nb: ${instance.name}\nc: \\${not} $x\n");
        assert_eq!(wholes, [Span::new(12, 28)]);
        assert!(errors.is_empty(), "{errors:?}");
        let shown: Vec<String> = parts
            .iter()
            .map(|p| match p {
                StrPart::Text(t) => format!("text:{t}"),
                StrPart::Interp(e) => format!("expr@{}..{}", e.span.start, e.span.end),
            })
            .collect();
        assert_eq!(shown, ["text:a: \"x\\n\"\nb: ", "expr@14..27", "text:\nc: ${not} $x\n"]);
        let (_, _, errors) = decode_template("a: ${oops\nb: ${}\nc: ${1 +}\n");
        let codes: Vec<_> = errors.iter().map(|e| e.code.as_str()).collect();
        assert_eq!(codes, ["APT0008", "APT0008", "APT0001"]);
    }

    #[test]
    fn errors_inside_strings() {
        let (_, errors) = decode(r#""\q ${} ${a ==}""#, 0, 1);
        let codes: Vec<_> = errors.iter().map(|e| e.code.as_str()).collect();
        assert_eq!(codes, ["APT0007", "APT0008", "APT0004"]);
        let (_, errors) = decode(r#""${oops""#, 0, 1);
        assert_eq!(errors[0].code.as_str(), "APT0008");
    }
}
