//! Semantic tokens: what each piece of a file is, for highlighting. Names are classified by
//! what they resolve to (a contract, a label, a component…), the rest by its token.

use crate::db::{SourceText, Workspace};
use crate::semantics::index::Kind;
use crate::syntax::ast::Span;
use crate::syntax::lexer::{CommentKind, Keyword, Token, lex};

use super::{Role, Target, file_occurrences};

/// The classes of token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenKind {
    Keyword,
    Comment,
    String,
    Number,
    Operator,
    Namespace,
    Label,
    Service,
    Contract,
    Cluster,
    Rule,
    Claim,
    Team,
    User,
    Component,
    Context,
    Function,
    /// A root name of expressions: `labels`, `user`, `claim`, `cluster`, `instance`.
    Variable,
    /// A field after a dot.
    Property,
}

/// Modifiers, as bits.
pub struct TokenModifier;

impl TokenModifier {
    pub const DECLARATION: u32 = 1;
    pub const DOCUMENTATION: u32 = 2;
    pub const DEFAULT_LIBRARY: u32 = 4;
}

/// One classified piece of source. Tokens are sorted and never overlap; a token may span
/// lines (block comments).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SemanticToken {
    pub span: Span,
    pub kind: TokenKind,
    pub modifiers: u32,
}

/// The semantic tokens of `file`.
pub fn semantic_tokens(db: &dyn salsa::Database, ws: Workspace, file: SourceText) -> Vec<SemanticToken> {
    let text = file.text(db);
    let lexed = lex(text);
    let occurrences = file_occurrences(db, ws, file);
    let classify = |target: &Target, role: Role| {
        let kind = match target {
            Target::Object(object) => match object.kind {
                Kind::Label => TokenKind::Label,
                Kind::Service => TokenKind::Service,
                Kind::Contract => TokenKind::Contract,
                Kind::Cluster => TokenKind::Cluster,
                Kind::Rule => TokenKind::Rule,
                Kind::Claim => TokenKind::Claim,
                Kind::Team => TokenKind::Team,
                Kind::User => TokenKind::User,
                _ => TokenKind::Variable,
            },
            Target::Namespace(_) => TokenKind::Namespace,
            Target::Component { .. } => TokenKind::Component,
            Target::Context { .. } => TokenKind::Context,
            Target::Function(_) => TokenKind::Function,
            Target::Local { kind: Kind::Claim, .. } => TokenKind::Claim,
            Target::Local { .. } => TokenKind::User,
        };
        let mut modifiers = if role == Role::Definition { TokenModifier::DECLARATION } else { 0 };
        if matches!(target, Target::Function(_)) || matches!(target, Target::Object(o) if o.namespace == "std") {
            modifiers |= TokenModifier::DEFAULT_LIBRARY;
        }
        (kind, modifiers)
    };
    let mut base: Vec<SemanticToken> = Vec::new();
    let tokens = &lexed.tokens;
    for (i, &(token, span)) in tokens.iter().enumerate() {
        let after_dot = i > 0 && tokens[i - 1].0 == Token::Dot;
        let before_dot = tokens.get(i + 1).is_some_and(|(t, _)| *t == Token::Dot);
        let kind = match token {
            Token::Keyword(_) | Token::Ident(_) if after_dot => Some(TokenKind::Property),
            Token::Keyword(k) if before_dot && k.is_name_like() => Some(TokenKind::Variable),
            Token::Keyword(Keyword::True | Keyword::False) => Some(TokenKind::Keyword),
            Token::Keyword(_) => Some(TokenKind::Keyword),
            Token::Ident(_) if kubeconfig_word(tokens, i).is_some() => Some(TokenKind::Keyword),
            Token::Int(_) => Some(TokenKind::Number),
            Token::Str(_) => Some(TokenKind::String),
            Token::EqEq
            | Token::NotEq
            | Token::Lt
            | Token::Le
            | Token::Gt
            | Token::Ge
            | Token::Pipe
            | Token::Minus
            | Token::Arrow
            | Token::Assign => Some(TokenKind::Operator),
            _ => None,
        };
        if let Some(kind) = kind {
            base.push(SemanticToken { span, kind, modifiers: 0 });
        }
    }
    for comment in &lexed.comments {
        let modifiers = if comment.kind == CommentKind::Doc { TokenModifier::DOCUMENTATION } else { 0 };
        base.push(SemanticToken { span: comment.span, kind: TokenKind::Comment, modifiers });
    }
    base.sort_by_key(|t| t.span.start);
    // Names: replace the token of the same span, or cut the string they are inside.
    let mut names: Vec<SemanticToken> = occurrences
        .iter()
        .map(|o| {
            let (kind, modifiers) = classify(&o.target, o.role);
            SemanticToken { span: o.span, kind, modifiers }
        })
        .collect();
    names.sort_by_key(|t| (t.span.start, t.span.end));
    names.dedup_by_key(|t| t.span.start);
    let mut out: Vec<SemanticToken> = Vec::with_capacity(base.len() + names.len());
    let mut next_name = 0;
    for token in base {
        // Names before this token that are in no token (identifiers have no base token).
        while next_name < names.len() && names[next_name].span.start < token.span.start {
            push(&mut out, names[next_name]);
            next_name += 1;
        }
        let mut start = token.span.start;
        let mut replaced = false;
        while next_name < names.len() && names[next_name].span.end <= token.span.end {
            let name = names[next_name];
            next_name += 1;
            if name.span == token.span {
                push(&mut out, name);
                replaced = true;
                start = token.span.end;
                continue;
            }
            if name.span.start > start {
                push(&mut out, SemanticToken { span: Span { start, end: name.span.start }, ..token });
            }
            push(&mut out, name);
            start = name.span.end;
        }
        if !replaced && start < token.span.end {
            push(&mut out, SemanticToken { span: Span { start, end: token.span.end }, ..token });
        }
    }
    for &name in &names[next_name..] {
        push(&mut out, name);
    }
    out
}

fn push(out: &mut Vec<SemanticToken>, token: SemanticToken) {
    let overlaps = out.last().is_some_and(|last| last.span.end > token.span.start);
    if token.span.start < token.span.end && !overlaps {
        out.push(token);
    }
}

/// What the contextual word at `tokens[i]` means when it is one of a cluster's `kubeconfig`
/// statement (`secret`, `key`, `in_cluster`; docs/language.md §8.1); `None` for any other token.
pub(crate) fn kubeconfig_word(tokens: &[(Token<'_>, Span)], i: usize) -> Option<&'static str> {
    let at = |back: usize| i.checked_sub(back).and_then(|j| tokens.get(j)).map(|(t, _)| *t);
    let kubeconfig = Some(Token::Keyword(Keyword::Kubeconfig));
    match tokens.get(i)?.0 {
        Token::Ident("secret") if at(1) == kubeconfig => Some(
            "The kubeconfig is the key `kubeconfig` (or `key \"KEY\"`) of this Secret in the home namespace (§8.1).",
        ),
        Token::Ident("in_cluster") if at(1) == kubeconfig => {
            Some("The home cluster itself: the controller's own cluster, with its service account (§8.1).")
        }
        Token::Ident("key") if at(2) == Some(Token::Ident("secret")) && at(3) == kubeconfig => {
            Some("The key of the Secret that holds the kubeconfig (default `kubeconfig`).")
        }
        _ => None,
    }
}
