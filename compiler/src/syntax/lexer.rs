//! Tokens of the .apt language, produced by a logos lexer.
//!
//! The lexer never fails: text it cannot read becomes an error token, so the parser
//! still sees the rest of the file. Comments are tokens too; [`lex`] splits them off
//! as trivia so the parser never sees them while the formatter can put them back.

use logos::Logos;

use super::ast::Span;
use super::nesting::MAX_DEPTH;

/// One token. Variants that carry text borrow it from the source.
#[derive(Logos, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[logos(skip "[ \t\r\n\x0C\u{FEFF}]+")]
pub enum Token<'src> {
    /// `///` comment: documentation for the next item.
    #[regex(r"///[^\n]*", allow_greedy = true)]
    DocComment(&'src str),
    /// `//` comment (but not `///`, except `////…`, which is a plain comment).
    #[regex(r"//([^/\n][^\n]*)?", allow_greedy = true)]
    #[regex(r"////[^\n]*", allow_greedy = true)]
    LineComment(&'src str),
    /// `/* … */` comment, nesting allowed.
    #[token("/*", lex_block_comment)]
    BlockComment(BlockComment<'src>),

    #[regex(r"[A-Za-z_][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*")]
    Ident(&'src str),
    /// A keyword; which one is in [`Keyword`].
    Keyword(Keyword),
    #[regex(r"[0-9][0-9_]*")]
    Int(&'src str),
    /// A string literal with its quotes; interpolations `${…}` are inside it.
    #[token("\"", lex_string)]
    Str(StrToken<'src>),

    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token(",")]
    Comma,
    #[token(";")]
    Semi,
    #[token(":")]
    Colon,
    #[token(".")]
    Dot,
    #[token("=")]
    Assign,
    #[token("==")]
    EqEq,
    #[token("!=")]
    NotEq,
    #[token("<")]
    Lt,
    #[token("<=")]
    Le,
    #[token(">")]
    Gt,
    #[token(">=")]
    Ge,
    #[token("|")]
    Pipe,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("->")]
    Arrow,

    /// A character that starts no token.
    Error,
}

/// A string literal as lexed: the raw text including quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StrToken<'src> {
    pub raw: &'src str,
    /// False when the line or file ended before the closing quote.
    pub terminated: bool,
}

/// A block comment as lexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockComment<'src> {
    pub raw: &'src str,
    pub terminated: bool,
}

macro_rules! keywords {
    ($($variant:ident => $text:literal,)*) => {
        /// Reserved words. Most may still be used as label names, field names and map
        /// keys, where the grammar leaves no doubt (see `Keyword::is_name_like`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Keyword { $($variant,)* }

        impl Keyword {
            /// Every keyword, in declaration order (for completion and docs).
            pub const ALL: &'static [Keyword] = &[$(Keyword::$variant,)*];

            /// The keyword as written in source.
            pub fn as_str(self) -> &'static str {
                match self { $(Keyword::$variant => $text,)* }
            }

            fn from_str(text: &str) -> Option<Keyword> {
                match text { $($text => Some(Keyword::$variant),)* _ => None }
            }
        }
    };
}

keywords! {
    Namespace => "namespace",
    OwnedBy => "owned_by",
    Import => "import",
    As => "as",
    Label => "label",
    Service => "service",
    Component => "component",
    Uses => "uses",
    Chart => "chart",
    Manifests => "manifests",
    Repo => "repo",
    Version => "version",
    After => "after",
    Values => "values",
    Discovery => "discovery",
    Contract => "contract",
    Context => "context",
    Set => "set",
    Remove => "remove",
    Allocate => "allocate",
    Per => "per",
    Use => "use",
    Rule => "rule",
    Weight => "weight",
    When => "when",
    Reject => "reject",
    Place => "place",
    On => "on",
    Cluster => "cluster",
    Kubeconfig => "kubeconfig",
    Claim => "claim",
    User => "user",
    Users => "users",
    From => "from",
    Team => "team",
    Groups => "groups",
    Labels => "labels",
    Grant => "grant",
    Fn => "fn",
    Test => "test",
    Expect => "expect",
    Assert => "assert",
    True => "true",
    False => "false",
    And => "and",
    Or => "or",
    Not => "not",
    In => "in",
    Matches => "matches",
}

impl Keyword {
    /// Whether the keyword can stand for a name in unambiguous places: after `.`,
    /// as a map key, as a label name, or as the first segment of an expression path
    /// (`labels.env`, `user.name`). Literals and operators never can.
    pub fn is_name_like(self) -> bool {
        !matches!(self, Keyword::True | Keyword::False | Keyword::And | Keyword::Or | Keyword::Not | Keyword::In)
            && self != Keyword::Matches
    }
}

/// Lexes a string literal after its opening quote. It ends at the closing quote, or
/// (unterminated) at the end of the line. `${ … }` may hold nested strings and braces.
fn lex_string<'src>(lex: &mut logos::Lexer<'src, Token<'src>>) -> StrToken<'src> {
    let rest = lex.remainder().as_bytes();
    let mut i = 0;
    let mut depth = 0usize; // nesting of `${` … `}`
    let mut deepest = 0usize;
    let mut in_nested = false; // inside a string within an interpolation
    let mut terminated = false;
    while i < rest.len() {
        match rest[i] {
            b'\\' => {
                i += 2;
                continue;
            }
            b'\n' => break,
            b'"' if depth == 0 => {
                i += 1;
                terminated = true;
                break;
            }
            b'"' => in_nested = !in_nested,
            b'$' if !in_nested && rest.get(i + 1) == Some(&b'{') => {
                depth += 1;
                deepest = deepest.max(depth);
                i += 2;
                continue;
            }
            b'{' if depth > 0 && !in_nested => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' if depth > 0 && !in_nested => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    // An unclosed `${` must not swallow the closing quote: end at the first plain `"` on
    // the line, and let the string decoder report the interpolation. Not when the string
    // nests too deeply to be accepted anyway: each string lexed after that first `"` would
    // scan the rest of the line again, and a line of a million `"${` would take quadratic
    // time. Such a line is one unterminated string, refused as too deep by the parser.
    if !terminated
        && depth > 0
        && deepest <= MAX_DEPTH as usize
        && let Some(end) = plain_string_end(rest)
    {
        lex.bump(end);
        return StrToken { raw: lex.slice(), terminated: true };
    }
    let i = i.min(rest.len());
    lex.bump(i);
    StrToken { raw: lex.slice(), terminated }
}

/// Where a string ends if `${` is not treated specially (after the closing quote).
fn plain_string_end(rest: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'\\' => i += 1,
            b'\n' => return None,
            b'"' => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Lexes a block comment after its opening `/*`, allowing nesting.
fn lex_block_comment<'src>(lex: &mut logos::Lexer<'src, Token<'src>>) -> BlockComment<'src> {
    let rest = lex.remainder().as_bytes();
    let mut depth = 1usize;
    let mut i = 0;
    while i < rest.len() && depth > 0 {
        if rest[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
        } else if rest[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    lex.bump(i);
    BlockComment { raw: lex.slice(), terminated: depth == 0 }
}

/// A comment kept beside the token stream (trivia), for the formatter and doc comments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub kind: CommentKind,
    pub span: Span,
    /// Whether only whitespace stands between the previous line break and the comment.
    pub own_line: bool,
}

/// What sort of comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommentKind {
    Line,
    Block,
    Doc,
}

/// A lexing problem, reported as a diagnostic by the parser front.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LexError {
    InvalidChar(Span),
    UnterminatedString(Span),
    UnterminatedBlockComment(Span),
}

/// The result of lexing one file; the tokens' spans are `S`, [`Span`]s unless the parser asked
/// for its own ([`lex_with`]).
#[derive(Debug)]
pub struct Lexed<'src, S = Span> {
    /// Significant tokens with their spans, in order.
    pub tokens: Vec<(Token<'src>, S)>,
    /// Comments (including doc comments), in order.
    pub comments: Vec<Comment>,
    pub errors: Vec<LexError>,
}

/// Splits `src` into tokens and comments. Never fails; see [`LexError`].
pub fn lex(src: &str) -> Lexed<'_> {
    lex_with(src, |range| Span::new(range.start, range.end))
}

/// [`lex`], each token's span made by `span_of` from its byte range: the parser takes its tokens
/// with spans of its own, and lexing them so hands it the lexer's vector instead of a copy
/// (a megabyte per 1,000 claims).
pub(crate) fn lex_with<S>(src: &str, span_of: impl Fn(std::ops::Range<usize>) -> S) -> Lexed<'_, S> {
    let mut out = Lexed { tokens: Vec::with_capacity(src.len() / 5), comments: Vec::new(), errors: Vec::new() };
    let mut lexer = Token::lexer(src);
    while let Some(result) = lexer.next() {
        let range = lexer.span();
        let span = Span::new(range.start, range.end);
        let token_span = || span_of(range.clone());
        let own_line = || src[..range.start].rsplit('\n').next().is_none_or(|line| line.trim().is_empty());
        match result {
            Ok(Token::Ident(text)) => match Keyword::from_str(text) {
                Some(keyword) => out.tokens.push((Token::Keyword(keyword), token_span())),
                None => out.tokens.push((Token::Ident(text), token_span())),
            },
            Ok(Token::LineComment(_)) => {
                out.comments.push(Comment { kind: CommentKind::Line, span, own_line: own_line() })
            }
            Ok(Token::DocComment(_)) => {
                out.comments.push(Comment { kind: CommentKind::Doc, span, own_line: own_line() })
            }
            Ok(Token::BlockComment(comment)) => {
                if !comment.terminated {
                    out.errors.push(LexError::UnterminatedBlockComment(span));
                }
                out.comments.push(Comment { kind: CommentKind::Block, span, own_line: own_line() })
            }
            Ok(token @ Token::Str(string)) => {
                if !string.terminated {
                    out.errors.push(LexError::UnterminatedString(span));
                }
                out.tokens.push((token, token_span()));
            }
            Ok(token) => out.tokens.push((token, token_span())),
            Err(()) => {
                // Merge a run of bad characters into one error.
                match out.errors.last_mut() {
                    Some(LexError::InvalidChar(last)) if last.end == span.start => last.end = span.end,
                    _ => out.errors.push(LexError::InvalidChar(span)),
                }
                out.tokens.push((Token::Error, token_span()));
            }
        }
    }
    out
}

impl std::fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::DocComment(_) => f.write_str("doc comment"),
            Token::LineComment(_) | Token::BlockComment(_) => f.write_str("comment"),
            Token::Ident(text) => write!(f, "identifier `{text}`"),
            Token::Keyword(keyword) => write!(f, "`{}`", keyword.as_str()),
            Token::Int(text) => write!(f, "number `{text}`"),
            Token::Str(_) => f.write_str("string"),
            Token::Error => f.write_str("invalid character"),
            other => write!(f, "`{}`", other.punct()),
        }
    }
}

impl Token<'_> {
    /// The text of a punctuation token (empty for tokens that carry text).
    pub fn punct(&self) -> &'static str {
        match self {
            Token::LBrace => "{",
            Token::RBrace => "}",
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LBracket => "[",
            Token::RBracket => "]",
            Token::Comma => ",",
            Token::Semi => ";",
            Token::Colon => ":",
            Token::Dot => ".",
            Token::Assign => "=",
            Token::EqEq => "==",
            Token::NotEq => "!=",
            Token::Lt => "<",
            Token::Le => "<=",
            Token::Gt => ">",
            Token::Ge => ">=",
            Token::Pipe => "|",
            Token::Minus => "-",
            Token::Star => "*",
            Token::Arrow => "->",
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<String> {
        lex(src).tokens.iter().map(|(t, _)| t.to_string()).collect()
    }

    #[test]
    fn keywords_identifiers_and_dashes() {
        assert_eq!(
            kinds("service twitter-stats { component"),
            ["`service`", "identifier `twitter-stats`", "`{`", "`component`"]
        );
    }

    #[test]
    fn strings_with_nested_interpolation() {
        let lexed = lex(r#"x = "a ${lower("B}")} c" y"#);
        assert!(lexed.errors.is_empty());
        assert_eq!(lexed.tokens.len(), 4);
        match lexed.tokens[2].0 {
            Token::Str(s) => assert_eq!(s.raw, r#""a ${lower("B}")} c""#),
            other => panic!("expected a string, got {other:?}"),
        }
    }

    #[test]
    fn unterminated_string_stops_at_line_end() {
        let lexed = lex("a = \"oops\nb = 1");
        assert_eq!(lexed.errors, [LexError::UnterminatedString(Span::new(4, 9))]);
        assert_eq!(kinds("a = \"oops\nb = 1").len(), 6);
    }

    #[test]
    fn comments_are_trivia() {
        let lexed = lex("/// doc\n// plain\n/* a /* nested */ b */ x //// four");
        let kinds: Vec<_> = lexed.comments.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [CommentKind::Doc, CommentKind::Line, CommentKind::Block, CommentKind::Line]);
        assert_eq!(lexed.tokens.len(), 1);
        assert!(!lexed.comments[3].own_line);
    }

    #[test]
    fn invalid_characters_are_merged() {
        let lexed = lex("a @@@ b");
        assert_eq!(lexed.errors, [LexError::InvalidChar(Span::new(2, 5))]);
    }
}
