//! The mini-parser completion reads the cursor's surroundings with: the blocks open before the
//! cursor (`frames`, from the braces and the keywords before them) and the few tokens of the
//! statement being written. It works on tokens, not the tree, so a half-written statement (the
//! usual state of a file being typed) still has a place.

use crate::syntax::ast::Span;
use crate::syntax::lexer::{Keyword, Token};

/// The kinds of block the cursor can be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FrameKind {
    Service,
    Component,
    Contract,
    Context,
    Rule,
    Cluster,
    Claim,
    User,
    Team,
    /// A `test` block.
    Test,
    /// An `assert` block.
    Assert,
    /// The block of `expect instance S.C for CLAIM { … }`.
    Expectation,
    LabelsMap,
    ValuesMap,
    DiscoveryMap,
    ExprMap,
    Other,
}

#[derive(Clone, Debug)]
pub(super) struct Frame<'s> {
    pub(super) kind: FrameKind,
    pub(super) name: Option<&'s str>,
    /// Index of the `{` in the token list.
    pub(super) open: usize,
}

pub(super) type Tokens<'s> = [(Token<'s>, Span)];

/// Splits off the word being typed (an identifier or keyword ending at the cursor).
pub(super) fn split_prefix<'t, 's>(tokens: &'t Tokens<'s>, offset: u32) -> (Span, &'t Tokens<'s>) {
    match tokens.last() {
        Some((Token::Ident(_) | Token::Keyword(_), span)) if span.start < offset && offset <= span.end => {
            (Span { start: span.start, end: offset }, &tokens[..tokens.len() - 1])
        }
        _ => (Span { start: offset, end: offset }, tokens),
    }
}

/// Whether the last token leaves an expression or list unfinished (so a new line continues it).
pub(super) fn continues(before: &Tokens) -> bool {
    matches!(
        before.last(),
        Some((
            Token::Dot
                | Token::Assign
                | Token::Comma
                | Token::LParen
                | Token::LBracket
                | Token::EqEq
                | Token::NotEq
                | Token::Lt
                | Token::Le
                | Token::Gt
                | Token::Ge
                | Token::Minus
                | Token::Colon
                | Token::Pipe
                | Token::Keyword(
                    Keyword::And
                        | Keyword::Or
                        | Keyword::Not
                        | Keyword::In
                        | Keyword::Matches
                        | Keyword::When
                        | Keyword::Per
                        | Keyword::Uses
                        | Keyword::Use
                        | Keyword::After
                        | Keyword::On
                        | Keyword::Import
                        | Keyword::OwnedBy
                ),
            _
        ))
    )
}

/// Where the `${…}` around the cursor begins (after `${`), if the cursor is in one.
pub(super) fn interpolation_start(text: &str, string_start: u32, offset: u32) -> Option<u32> {
    let bytes = text.as_bytes();
    let mut open: Vec<u32> = Vec::new();
    let mut in_nested = false;
    let mut i = string_start as usize + 1;
    while i < offset as usize {
        match bytes[i] {
            b'\\' => i += 1,
            b'"' => in_nested = !in_nested,
            b'$' if !in_nested && bytes.get(i + 1) == Some(&b'{') && (i + 1) < offset as usize => {
                open.push(i as u32 + 2);
                i += 1;
            }
            b'{' if !open.is_empty() && !in_nested => open.push(u32::MAX),
            b'}' if !open.is_empty() && !in_nested => {
                open.pop();
            }
            _ => {}
        }
        i += 1;
    }
    open.into_iter().rev().find(|&start| start != u32::MAX)
}

fn adjacent_dot(tokens: &Tokens, i: usize) -> bool {
    (i > 0 && tokens[i - 1].0 == Token::Dot) || tokens.get(i + 1).is_some_and(|(t, _)| *t == Token::Dot)
}

/// The blocks open at the end of `tokens`, outermost first.
pub(super) fn frames<'s>(tokens: &Tokens<'s>) -> Vec<Frame<'s>> {
    let mut stack: Vec<Frame<'s>> = Vec::new();
    for (i, (token, _)) in tokens.iter().enumerate() {
        match token {
            Token::LBrace => stack.push(frame_at(tokens, i)),
            Token::RBrace => {
                stack.pop();
            }
            // A test declares claims as the top level does.
            Token::Keyword(Keyword::Claim) if stack.last().is_some_and(|f| f.kind == FrameKind::Test) => {}
            Token::Keyword(_) if !stack.is_empty() && starts_item(tokens, i) => stack.clear(),
            _ => {}
        }
    }
    stack
}

/// Whether the keyword at `i` certainly begins a top-level item (the parser ends a block
/// whose `}` is missing there).
pub(super) fn starts_item(tokens: &Tokens, i: usize) -> bool {
    let Token::Keyword(keyword) = tokens[i].0 else { return false };
    if adjacent_dot(tokens, i) {
        return false;
    }
    let next = tokens.get(i + 1).map(|(t, _)| *t);
    let next_is_ident = matches!(next, Some(Token::Ident(_)));
    match keyword {
        Keyword::Namespace | Keyword::Import | Keyword::Label | Keyword::Service | Keyword::Rule | Keyword::Grant => {
            next_is_ident
        }
        Keyword::Users => matches!(next, Some(Token::Keyword(Keyword::From))),
        Keyword::Contract | Keyword::Cluster | Keyword::Claim | Keyword::Test | Keyword::Assert => {
            next_is_ident && matches!(tokens.get(i + 2), Some((Token::LBrace, _)))
        }
        _ => false,
    }
}

fn frame_at<'s>(tokens: &Tokens<'s>, open: usize) -> Frame<'s> {
    let frame = |kind, name| Frame { kind, name, open };
    let Some(j) = open.checked_sub(1) else { return frame(FrameKind::Other, None) };
    match tokens[j].0 {
        Token::Keyword(Keyword::Labels) if !adjacent_dot(tokens, j) => return frame(FrameKind::LabelsMap, None),
        Token::Keyword(Keyword::Values) => return frame(FrameKind::ValuesMap, None),
        Token::Keyword(Keyword::Discovery) if !adjacent_dot(tokens, j) => {
            return frame(FrameKind::DiscoveryMap, None);
        }
        Token::Assign | Token::LParen | Token::LBracket | Token::Comma | Token::Colon => {
            return frame(FrameKind::ExprMap, None);
        }
        _ => {}
    }
    for k in (0..open).rev() {
        match tokens[k].0 {
            Token::LBrace | Token::RBrace => break,
            Token::Keyword(keyword) if !adjacent_dot(tokens, k) => {
                let kind = match keyword {
                    Keyword::Service => FrameKind::Service,
                    Keyword::Component => FrameKind::Component,
                    Keyword::Contract => FrameKind::Contract,
                    Keyword::Context => FrameKind::Context,
                    Keyword::Rule => FrameKind::Rule,
                    Keyword::Cluster => FrameKind::Cluster,
                    Keyword::Claim => FrameKind::Claim,
                    Keyword::User => FrameKind::User,
                    Keyword::Team => FrameKind::Team,
                    Keyword::Test => FrameKind::Test,
                    Keyword::Assert => FrameKind::Assert,
                    Keyword::Expect => FrameKind::Expectation,
                    _ => continue,
                };
                let name = match tokens.get(k + 1) {
                    Some((Token::Ident(name), _)) => Some(*name),
                    _ => None,
                };
                return frame(kind, name);
            }
            _ => {}
        }
    }
    frame(FrameKind::Other, None)
}

/// The innermost frame that is not a map.
pub(super) fn block<'f, 's>(frames: &'f [Frame<'s>]) -> Option<&'f Frame<'s>> {
    frames.iter().rev().find(|f| {
        !matches!(f.kind, FrameKind::LabelsMap | FrameKind::ValuesMap | FrameKind::DiscoveryMap | FrameKind::ExprMap)
    })
}

pub(super) fn frame_of<'f, 's>(frames: &'f [Frame<'s>], kind: FrameKind) -> Option<&'f Frame<'s>> {
    frames.iter().rev().find(|f| f.kind == kind)
}

/// A dotted path ending just before `end` (exclusive), as texts, with the index of its first token.
pub(super) fn path_before<'s>(tokens: &Tokens<'s>, end: usize) -> Option<(Vec<&'s str>, usize)> {
    let mut segments = Vec::new();
    let mut i = end;
    loop {
        let j = i.checked_sub(1)?;
        let name = match tokens[j].0 {
            Token::Ident(name) => name,
            Token::Keyword(keyword) if keyword.is_name_like() => keyword.as_str(),
            _ => return None,
        };
        segments.push(name);
        if j > 0 && tokens[j - 1].0 == Token::Dot {
            i = j - 1;
        } else {
            segments.reverse();
            return Some((segments, j));
        }
    }
}
