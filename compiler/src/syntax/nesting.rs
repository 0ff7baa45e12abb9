//! The pass over tokens that runs before the parser: bracket matching and a bound on nesting.
//!
//! Two things recursive descent cannot do cheaply are done here, each in one linear pass:
//! - Matching brackets. Recovery skips bad input a balanced group at a time; finding out
//!   whether a `{` is ever closed by parsing ahead made recovery re-parse the rest of the
//!   file at every unclosed bracket, which was exponential in their number. The parser
//!   now looks the end of a group up in [`Groups`].
//! - Bounding nesting to [`MAX_DEPTH`]. Everything that walks the tree (the parser itself,
//!   the checker, the formatter, lowering, salsa's hashing and dropping the tree) recurses
//!   once per level, so a deep enough input would overflow the stack. Counting depth over
//!   the flat token list cannot overflow; tokens nested deeper than the bound are replaced
//!   by one [`Token::Error`] per run (a token no grammar rule accepts), reported as
//!   [`codes::NESTING_TOO_DEEP`], and the parser's own complaints about them are dropped.
//! - Decoding string literals (their interpolations at the depth the string sits at), once,
//!   for both of the parser's passes.

use chumsky::span::SimpleSpan;

use super::SyntaxError;
use super::ast::{Span, StrLit, StrPart};
use super::lexer::{Keyword, Token};
use super::strings;
use crate::diagnostics::codes;

/// How deeply expressions, types and blocks may nest (docs/language.md §2). Deep enough for
/// any policy a person writes, shallow enough that walking such a tree fits easily in the
/// 2 MiB stack of a test thread even in a debug build.
pub(crate) const MAX_DEPTH: u32 = 256;

/// What the parser looks up about its tokens (it is the parser's state).
#[derive(Debug, Default)]
pub(crate) struct Groups {
    /// For each token, where the token tree that starts there ends: past the matching closer
    /// for a bracket that is closed, the next token for any other token (an unclosed bracket
    /// is skipped alone), and nothing for a closing bracket, which starts no tree.
    tree_ends: Vec<Option<u32>>,
    /// Each string token that survived, in order.
    strings: Vec<StringToken>,
}

/// A string token, decoded here rather than by the parser: a file with errors is parsed
/// twice (see `parser::SyntaxErr`), and decoding the strings inside each interpolation again
/// in each pass took time exponential in how deeply strings nest. Decoding before parsing
/// also keeps the recursion through nested strings out of the parser's deep stack frames.
#[derive(Debug)]
struct StringToken {
    start: u32,
    /// `None` once the parser's first pass took it (see [`Groups::decoded`]).
    decoded: Option<(StrLit, Vec<SyntaxError>)>,
}

impl Groups {
    /// Where the token tree starting at token `index` ends (exclusive).
    pub(crate) fn tree_end(&self, index: usize) -> Option<usize> {
        self.tree_ends.get(index).copied().flatten().map(|end| end as usize)
    }

    /// The string literal `raw` that starts at byte `start`, decoded.
    ///
    /// With `take`, a string without interpolations is moved out rather than copied (the
    /// parser's first pass, which most files end with); asked for again (by the second pass,
    /// or by a parser tried after another that failed), it is decoded anew, which for such a
    /// string is one scan and cannot recurse. A string with interpolations is always copied,
    /// so a file with errors does not decode nested strings again in each pass.
    pub(crate) fn decoded(&mut self, raw: &str, start: usize, take: bool) -> (StrLit, Vec<SyntaxError>) {
        let at = self.strings.partition_point(|s| (s.start as usize) < start);
        let kept = match self.strings.get_mut(at) {
            Some(string) if string.start as usize == start => &mut string.decoded,
            _ => &mut None,
        };
        let plain =
            |(lit, _): &mut (StrLit, Vec<SyntaxError>)| !lit.parts.iter().any(|p| matches!(p, StrPart::Interp(_)));
        if take && let Some(decoded) = kept.take_if(plain) {
            return decoded;
        }
        match kept {
            Some(decoded) => decoded.clone(),
            // Every string the parser sees was decoded, and only strings without interpolations
            // are taken; were one neither, refusing its interpolations as too deep is the
            // answer that cannot recurse.
            None => strings::decode(raw, start, MAX_DEPTH + 1),
        }
    }
}

/// Tokens ready for the parser.
pub(crate) struct Prepared<'src> {
    pub tokens: Vec<(Token<'src>, SimpleSpan)>,
    pub groups: Groups,
    /// One error per run of tokens nested too deeply.
    pub errors: Vec<SyntaxError>,
    pub cut: Cut,
}

/// The spans of the runs of tokens that were nested too deeply and replaced, in order.
#[derive(Debug, Default)]
pub(crate) struct Cut(Vec<Span>);

impl Cut {
    /// Whether a parser error at `span` is only a consequence of a replaced run: it starts
    /// inside one or right at its end.
    pub(crate) fn covers(&self, span: SimpleSpan) -> bool {
        let at = self.0.partition_point(|c| (c.end as usize) < span.start);
        self.0.get(at).is_some_and(|c| c.start as usize <= span.start)
    }
}

/// Matches brackets, bounds the nesting of `tokens`, which sit `depth` levels deep (0 for a
/// file, more for the inside of an interpolation), and decodes their strings.
pub(crate) fn prepare<'src>(tokens: Vec<(Token<'src>, SimpleSpan)>, depth: u32) -> Prepared<'src> {
    let matching = match_brackets(&tokens);
    let depths = depths(&tokens, &matching, depth);
    if depths.iter().all(|d| d.too_deep.is_none()) {
        // Nothing to cut (every file a person writes): the tokens go to the parser as they are.
        let mut strings = Vec::with_capacity(tokens.iter().filter(|(t, _)| matches!(t, Token::Str(_))).count());
        strings.extend(tokens.iter().zip(&depths).filter_map(|(token, d)| decode(token, d.depth)));
        let tree_ends = tree_ends(&tokens, &matching);
        return Prepared { tokens, groups: Groups { tree_ends, strings }, errors: Vec::new(), cut: Cut::default() };
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut errors = Vec::new();
    let mut cut = Cut::default();
    let mut strings = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let Some(at) = depths[i].too_deep else {
            strings.extend(decode(&tokens[i], depths[i].depth));
            out.push(tokens[i]);
            i += 1;
            continue;
        };
        let run_end = (i..tokens.len()).find(|&j| depths[j].too_deep.is_none()).unwrap_or(tokens.len());
        let span = Span::new(tokens[i].1.start, tokens[run_end - 1].1.end);
        errors.push(too_deep(at));
        cut.0.push(span);
        out.push((Token::Error, SimpleSpan::from(span.range())));
        i = run_end;
    }
    // A run was cut: the brackets left match anew.
    let tree_ends = tree_ends(&out, &match_brackets(&out));
    Prepared { tokens: out, groups: Groups { tree_ends, strings }, errors, cut }
}

/// The string literal `token` is, decoded (its interpolations one level deeper than `depth`).
fn decode(&(token, s): &(Token<'_>, SimpleSpan), depth: u32) -> Option<StringToken> {
    let Token::Str(string) = token else { return None };
    Some(StringToken { start: s.start as u32, decoded: Some(strings::decode(string.raw, s.start, depth + 1)) })
}

fn too_deep(at: Span) -> SyntaxError {
    SyntaxError::new(codes::NESTING_TOO_DEEP, at, format!("nested more than {MAX_DEPTH} levels deep"))
        .with_primary("too deep")
        .with_help(
            "brackets, `not`, `-`, `and`/`or` chains and interpolations each add a level; \
             split the expression with labels or functions",
        )
}

fn closer_of(token: &Token<'_>) -> Option<Token<'static>> {
    match token {
        Token::LBrace => Some(Token::RBrace),
        Token::LParen => Some(Token::RParen),
        Token::LBracket => Some(Token::RBracket),
        _ => None,
    }
}

fn is_closer(token: &Token<'_>) -> bool {
    matches!(token, Token::RBrace | Token::RParen | Token::RBracket)
}

/// For each opening bracket, its closer, matched as recovery reads groups: inside a group,
/// an opener with no closer of its own is an ordinary token, and the first closer at the
/// group's level must be the right one. Computed right to left, so each token is visited
/// once: `stop[p]` is where a run of token trees starting at `p` stops (a closer or the end).
fn match_brackets(tokens: &[(Token<'_>, SimpleSpan)]) -> Vec<Option<u32>> {
    let n = tokens.len();
    let mut matching = vec![None; n];
    let mut stop = vec![n; n + 1];
    for p in (0..n).rev() {
        let token = &tokens[p].0;
        stop[p] = if is_closer(token) {
            p
        } else if let Some(close) = closer_of(token) {
            let q = stop[p + 1];
            if q < n && tokens[q].0 == close {
                matching[p] = Some(q as u32);
                stop[q + 1]
            } else {
                stop[p + 1]
            }
        } else {
            stop[p + 1]
        };
    }
    matching
}

fn tree_ends(tokens: &[(Token<'_>, SimpleSpan)], matching: &[Option<u32>]) -> Vec<Option<u32>> {
    (0..tokens.len())
        .map(|i| match matching[i] {
            Some(close) => Some(close + 1),
            None if is_closer(&tokens[i].0) => None,
            None => Some(i as u32 + 1),
        })
        .collect()
}

#[derive(Clone, Copy)]
struct Depth {
    depth: u32,
    /// Where the token first goes past the bound, when it does.
    too_deep: Option<Span>,
}

/// What the depth of the next token depends on, within one bracket level.
#[derive(Clone, Copy)]
struct Level {
    /// The depth of the bracket's contents.
    base: u32,
    /// `and`/`or` so far in this expression: a chain nests one level per operator.
    chain: u32,
    /// `not`/`-` directly before: each wraps what follows.
    prefix: u32,
}

/// The depth of the node each token starts: an upper bound of the depth of the tree the
/// parser builds. A bracket's contents are one level deeper than it, the operand of `not` or
/// `-` one deeper than the operator, each `and`/`or` of a chain adds one (the tree of a chain
/// leans to one side), and a string's interpolations are one deeper than the string. A
/// bracket that is never closed counts until its enclosing group closes. An expression ends
/// where an operand follows an operand (`… x  rule r …`) and at `,`, `;`, `=` and `:`.
fn depths(tokens: &[(Token<'_>, SimpleSpan)], matching: &[Option<u32>], start: u32) -> Vec<Depth> {
    let mut out = Vec::with_capacity(tokens.len());
    // Open groups: the index of the closer, and the level to go on with after it.
    let mut open: Vec<(usize, Level)> = Vec::new();
    let mut level = Level { base: start, chain: 0, prefix: 0 };
    let mut after_operand = false;
    for (i, (token, s)) in tokens.iter().enumerate() {
        let operand_word = matches!(token, Token::Ident(_) | Token::Int(_) | Token::Str(_))
            || matches!(token, Token::Keyword(k) if !is_operator(*k));
        if after_operand && operand_word {
            level.chain = 0;
            level.prefix = 0;
        }
        let mut depth = level.base + level.chain + level.prefix;
        let mut too_deep = None;
        if closer_of(token).is_some() {
            if let Some(close) = matching[i] {
                open.push((close as usize, level));
            }
            level = Level { base: depth + 1, chain: 0, prefix: 0 };
        } else if let Some(&(close, outer)) = open.last()
            && close == i
        {
            open.pop();
            // The closer belongs to the group: at the depth of its opener.
            depth = outer.base + outer.chain + outer.prefix;
            level = Level { prefix: 0, ..outer };
        } else {
            match token {
                Token::Keyword(Keyword::Not) | Token::Minus => level.prefix += 1,
                Token::Keyword(Keyword::And | Keyword::Or) => {
                    level.chain += 1;
                    level.prefix = 0;
                }
                Token::Comma | Token::Semi | Token::Assign | Token::Colon => {
                    level.chain = 0;
                    level.prefix = 0;
                }
                Token::Str(string) => {
                    level.prefix = 0;
                    if let Err(offset) = interpolation_depth(string.raw, MAX_DEPTH.saturating_sub(depth)) {
                        let at = s.start + offset;
                        too_deep = Some(Span::new(at, at + 1));
                    }
                }
                _ => level.prefix = 0,
            }
        }
        if depth > MAX_DEPTH {
            too_deep = Some(Span::new(s.start, s.end));
        }
        out.push(Depth { depth, too_deep });
        after_operand = operand_word || is_closer(token);
    }
    out
}

/// Keywords that join or negate operands rather than being one.
fn is_operator(keyword: Keyword) -> bool {
    matches!(keyword, Keyword::And | Keyword::Or | Keyword::Not | Keyword::In | Keyword::Matches)
}

/// Whether the interpolations of the raw string literal `raw` (quotes included) nest at most
/// `budget` levels (each `${` and each bracket inside one counts; a string inside one only
/// holds more), else the byte offset where they go deeper. One scan of the text, so a string
/// nested a million levels deep is refused without lexing each level again.
fn interpolation_depth(raw: &str, budget: u32) -> Result<(), usize> {
    #[derive(PartialEq)]
    enum Frame {
        Text,
        Code,
    }
    if !raw.contains("${") {
        // Nothing nests without an interpolation (most strings).
        return Ok(());
    }
    let bytes = raw.as_bytes();
    let mut stack = vec![Frame::Text];
    let mut depth = 0u32;
    let mut i = 1;
    while i < bytes.len() && !stack.is_empty() {
        let in_text = stack.last() == Some(&Frame::Text);
        match bytes[i] {
            b'\\' if in_text => i += 1,
            b'"' if in_text => {
                stack.pop();
            }
            b'$' if in_text && bytes.get(i + 1) == Some(&b'{') => {
                stack.push(Frame::Code);
                depth += 1;
                i += 1;
            }
            b'"' => stack.push(Frame::Text),
            b'{' | b'(' | b'[' if !in_text => {
                stack.push(Frame::Code);
                depth += 1;
            }
            b'}' | b')' | b']' if !in_text => {
                stack.pop();
                depth -= 1;
            }
            _ => {}
        }
        if depth > budget {
            return Err(i);
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::lexer::lex_with;

    fn tokens(src: &str) -> Vec<(Token<'_>, SimpleSpan)> {
        lex_with(src, SimpleSpan::from).tokens
    }

    /// Groups as recovery always read them: an unclosed opener inside a group is a plain
    /// token, and a group ends at the first closer of its level.
    #[test]
    fn brackets_match_as_recovery_reads_them() {
        let matched = |src: &str| match_brackets(&tokens(src));
        assert_eq!(matched("{ ( }"), [Some(2), None, None]);
        assert_eq!(matched("{ [ ] ( }"), [Some(4), Some(2), None, None, None]);
        assert_eq!(matched("( { ] )"), [None, None, None, None]);
        assert_eq!(matched("{ { {"), [None, None, None]);
        assert_eq!(matched("} ( )"), [None, Some(2), None]);
    }

    #[test]
    fn depth_counts_brackets_operators_and_chains() {
        let deepest = |src: &str| depths(&tokens(src), &match_brackets(&tokens(src)), 0).iter().map(|d| d.depth).max();
        assert_eq!(deepest("[[x]]"), Some(2));
        assert_eq!(deepest("not not x"), Some(2));
        assert_eq!(deepest("a and b and c"), Some(2));
        // A new statement starts where an operand follows an operand.
        assert_eq!(deepest("a and b  rule r  c and d"), Some(1));
        // `not in` joins, and `f(` calls: neither ends the chain.
        assert_eq!(deepest("a and b not in c and f(x)"), Some(3));
    }

    #[test]
    fn deep_strings_are_refused_in_one_scan() {
        assert_eq!(interpolation_depth(r#""${"${x}"}""#, 2), Ok(()));
        assert_eq!(interpolation_depth(r#""${"${x}"}""#, 1), Err(5));
        assert_eq!(interpolation_depth(r#""${[(x)]}""#, 2), Err(4));
        assert_eq!(interpolation_depth(r#""\${[[[""#, 0), Ok(()));
    }

    #[test]
    fn deeper_runs_become_one_error_token() {
        let src = format!("x = {}1{}", "[".repeat(300), "]".repeat(300));
        let prepared = prepare(tokens(&src), 0);
        assert_eq!(prepared.errors.len(), 1);
        assert_eq!(prepared.tokens.len(), 2 + 2 * (MAX_DEPTH as usize + 1) + 1);
        assert!(prepared.tokens.iter().any(|(t, _)| *t == Token::Error));
    }
}
