//! The chumsky parser: tokens → [`ast`](super::ast), recovering from errors.
//!
//! Recovery works at three levels, so one mistake costs one diagnostic and the rest of
//! the file still parses:
//! - a bad statement inside a block is skipped up to the next statement keyword or `}`
//!   (balanced brackets are skipped whole) and becomes an `Error` statement;
//! - a block whose `}` is missing ends at the next top-level keyword or end of file, and
//!   the error points at the `{` that was never closed;
//! - a bad item is skipped up to the next top-level keyword and becomes `ItemKind::Error`.

use chumsky::error::{EmptyErr, LabelError};
use chumsky::extra::SimpleState;
use chumsky::input::{Input, InputRef, MapExtra, MappedInput};
use chumsky::prelude::*;

use super::ast::Spanned;
use super::ast::*;
use super::lexer::{Keyword, Token};
use super::nesting::Groups;
use super::strings;

/// Problems the parser names itself, beyond "expected X, found Y".
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Issue {
    /// A `{` whose `}` never came; `what` names the construct.
    Unclosed {
        what: &'static str,
    },
    IntOutOfRange,
    /// An error inside a string literal (escape or interpolation), already described.
    InString(strings::StringError),
    ChainedComparison,
}

/// The detailed error of the second, diagnostic pass.
pub(crate) type ParseError<'tok, 'src> = Rich<'tok, Token<'src>, SimpleSpan, Issue>;
pub(crate) type TokenInput<'tok, 'src> = MappedInput<'tok, Token<'src>, SimpleSpan, &'tok [(Token<'src>, SimpleSpan)]>;

/// The error types the grammar can be run with. Files are parsed first with
/// [`EmptyErr`], which costs nothing to build; only a file that fails is parsed again
/// with [`ParseError`] to describe what went wrong. Most files are fine, and tracking
/// expected tokens for every failed alternative would cost most of the parse time.
pub(crate) trait SyntaxErr<'tok, 'src: 'tok>:
    chumsky::error::Error<'tok, TokenInput<'tok, 'src>> + LabelError<'tok, TokenInput<'tok, 'src>, &'static str> + 'tok
{
    /// Whether this is the first pass's error type. The first pass only decides whether a
    /// file is clean and, if it is, gives its tree, so it takes shortcuts that give the same
    /// tree for a clean file and fail (or report an error) wherever the full grammar would:
    /// it picks an item or a claim's statement by its keyword instead of trying each in turn
    /// ([`by_keyword`]), takes a lone literal without trying every operator after it
    /// ([`lone_literal`]), and moves decoded strings out instead of copying them
    /// ([`Groups::decoded`]). The second pass, which builds the diagnostics, runs the full
    /// grammar, so every message is as it was; `tests::both_passes_give_the_same_tree` holds
    /// the two passes equal.
    const FIRST_PASS: bool;

    /// An error the grammar reports itself.
    fn issue(span: SimpleSpan, issue: Issue) -> Self;
}

impl<'tok, 'src: 'tok> SyntaxErr<'tok, 'src> for ParseError<'tok, 'src> {
    const FIRST_PASS: bool = false;

    fn issue(span: SimpleSpan, issue: Issue) -> Self {
        Rich::custom(span, issue)
    }
}

impl<'tok, 'src: 'tok> SyntaxErr<'tok, 'src> for EmptyErr {
    const FIRST_PASS: bool = true;

    fn issue(_: SimpleSpan, _: Issue) -> Self {
        EmptyErr::default()
    }
}

/// The parser's extras: its error type, and the bracket groups of the input as state, so
/// recovery can skip a group without parsing ahead (see [`token_tree`]).
type Extra<E> = extra::Full<E, SimpleState<Groups>, ()>;

/// Shorthand for a parser over the token slice.
trait P<'tok, 'src: 'tok, O, E: SyntaxErr<'tok, 'src>>: Parser<'tok, TokenInput<'tok, 'src>, O, Extra<E>> + Clone {}
impl<'tok, 'src: 'tok, O, E: SyntaxErr<'tok, 'src>, T> P<'tok, 'src, O, E> for T where
    T: Parser<'tok, TokenInput<'tok, 'src>, O, Extra<E>> + Clone
{
}

/// Keywords that start a top-level item: where item-level recovery resumes.
const ITEM_KEYWORDS: &[Keyword] = &[
    Keyword::Namespace,
    Keyword::Import,
    Keyword::Label,
    Keyword::Service,
    Keyword::Contract,
    Keyword::Rule,
    Keyword::Cluster,
    Keyword::Claim,
    Keyword::User,
    Keyword::Users,
    Keyword::Team,
    Keyword::Grant,
    Keyword::Fn,
    Keyword::Test,
    Keyword::Assert,
];

pub(crate) fn span(s: SimpleSpan) -> Span {
    Span::new(s.start, s.end)
}

/// Parses a whole token stream into items.
pub(crate) fn parse_tokens<'tok, 'src: 'tok>(
    tokens: &'tok [(Token<'src>, SimpleSpan)],
    groups: Groups,
    eoi: usize,
) -> (Vec<Item>, Vec<ParseError<'tok, 'src>>) {
    let input = || tokens.split_token_span(SimpleSpan::from(eoi..eoi));
    let state = &mut SimpleState(groups);
    let fast = file_parser::<EmptyErr>().parse_with_state(input(), state);
    if !fast.has_errors()
        && let Some(items) = fast.into_output()
    {
        return (items, Vec::new());
    }
    let (items, errors) = file_parser::<ParseError>().parse_with_state(input(), state).into_output_errors();
    (items.unwrap_or_default(), errors)
}

/// Parses one expression (the inside of a `${…}` interpolation).
pub(crate) fn parse_expr_tokens<'tok, 'src: 'tok>(
    tokens: &'tok [(Token<'src>, SimpleSpan)],
    groups: Groups,
    eoi: usize,
) -> (Option<Expr>, Vec<ParseError<'tok, 'src>>) {
    let input = || tokens.split_token_span(SimpleSpan::from(eoi..eoi));
    let state = &mut SimpleState(groups);
    let fast = expr_parser::<EmptyErr>().then_ignore(end()).parse_with_state(input(), state);
    if !fast.has_errors()
        && let Some(expr) = fast.into_output()
    {
        return (Some(expr), Vec::new());
    }
    expr_parser::<ParseError>().then_ignore(end()).parse_with_state(input(), state).into_output_errors()
}

fn kw<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>(keyword: Keyword) -> impl P<'tok, 'src, (), E> {
    just(Token::Keyword(keyword)).ignored()
}

fn punct<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>(token: Token<'src>) -> impl P<'tok, 'src, (), E> {
    just(token).ignored()
}

/// An identifier (object names, namespaces, components).
fn ident<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>() -> impl P<'tok, 'src, Ident, E> {
    select! { Token::Ident(text) = e => Ident { text: SmolStr::new(text), span: span(e.span()) } }
        .labelled("identifier")
}

/// Words with a meaning only where they stand, in `expect` statements and after `kubeconfig`;
/// elsewhere they are ordinary identifiers.
pub(crate) const CONTEXTUAL_WORDS: &[&str] = &[
    "resolved",
    "rejected",
    "instance",
    "instances",
    "no",
    "for",
    "group",
    "others",
    "failed",
    "placed",
    "reaches",
    "shares",
    "never",
    "with",
    "that",
    "secret",
    "key",
    "in_cluster",
];

/// A contextual word (one of [`CONTEXTUAL_WORDS`]); `label` is it in backquotes, for errors.
fn word<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>(
    text: &'static str,
    label: &'static str,
) -> impl P<'tok, 'src, (), E> {
    select! { Token::Ident(t) if t == text => () }.labelled(label)
}

/// An identifier or a keyword that may stand for a name (labels, fields, map keys).
fn name<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>() -> impl P<'tok, 'src, Ident, E> {
    select! {
        Token::Ident(text) = e => Ident { text: SmolStr::new(text), span: span(e.span()) },
        Token::Keyword(k) = e if k.is_name_like() => Ident { text: SmolStr::new_static(k.as_str()), span: span(e.span()) },
    }
    .labelled("name")
}

/// `a.b.c` for object references: an identifier, then names.
fn path<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>() -> impl P<'tok, 'src, Path, E> {
    ident()
        .then(punct(Token::Dot).ignore_then(name()).repeated().collect::<Vec<_>>())
        .map_with(|(first, rest), e| {
            let mut segments = Vec::with_capacity(rest.len() + 1);
            segments.push(first);
            segments.extend(rest);
            Path { segments, span: span(e.span()) }
        })
        .labelled("name")
}

/// A string literal, decoded into text and interpolations.
fn string<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>() -> impl P<'tok, 'src, StrLit, E> {
    select! { Token::Str(token) = e => (token, e.span()) }
        .validate(
            |(token, s): (super::lexer::StrToken<'src>, SimpleSpan),
             e: &mut MapExtra<'tok, '_, _, Extra<E>>,
             emitter| {
                let (lit, errors) = e.state().decoded(token.raw, s.start, E::FIRST_PASS);
                for error in errors {
                    let at = SimpleSpan::from(error.span.range());
                    emitter.emit(E::issue(at, Issue::InString(error)));
                }
                lit
            },
        )
        .labelled("string")
}

fn int<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>() -> impl P<'tok, 'src, Option<i64>, E> {
    select! { Token::Int(text) = e => (text, e.span()) }
        .validate(|(text, s), _, emitter| match text.replace('_', "").parse::<i64>() {
            Ok(value) => Some(value),
            Err(_) => {
                emitter.emit(E::issue(s, Issue::IntOutOfRange));
                None
            }
        })
        .labelled("integer")
}

/// The expression language, loosest binding first: or, and, not, comparison, unary.
fn expr_parser<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>() -> impl P<'tok, 'src, Expr, E> {
    recursive(|expr| {
        let mk = |kind: ExprKind, s: SimpleSpan| Expr { kind, span: span(s) };
        let int_lit = int().map_with(move |value, e| match value {
            Some(v) => mk(ExprKind::Int(v), e.span()),
            None => mk(ExprKind::Error, e.span()),
        });
        let str_lit = string().map(|lit| Expr { span: lit.span, kind: ExprKind::Str(lit) });
        let bool_lit = kw(Keyword::True)
            .to(true)
            .or(kw(Keyword::False).to(false))
            .map_with(move |b, e| mk(ExprKind::Bool(b), e.span()));
        let list = expr
            .clone()
            .separated_by(punct(Token::Comma))
            .allow_trailing()
            .collect::<Vec<_>>()
            .delimited_by(punct(Token::LBracket), punct(Token::RBracket))
            .map_with(move |items, e| mk(ExprKind::List(items), e.span()));
        let map = map_lit(expr.clone()).map(|map| Expr { span: map.span, kind: ExprKind::Map(map) });
        let call = ident()
            .then(
                expr.clone()
                    .separated_by(punct(Token::Comma))
                    .allow_trailing()
                    .collect::<Vec<_>>()
                    .delimited_by(punct(Token::LParen), punct(Token::RParen)),
            )
            .map_with(move |(func, args), e| mk(ExprKind::Call { func: Box::new(func), args }, e.span()));
        let expr_path = name()
            .separated_by(punct(Token::Dot))
            .at_least(1)
            .collect::<Vec<_>>()
            .map_with(move |segments, e| mk(ExprKind::Path(Path { segments, span: span(e.span()) }), e.span()));
        let paren = expr
            .clone()
            .delimited_by(punct(Token::LParen), punct(Token::RParen))
            .map_with(move |inner, e| mk(ExprKind::Paren(Box::new(inner)), e.span()));
        let atom =
            choice((int_lit, str_lit, bool_lit, list, map, call, expr_path, paren)).labelled("expression").boxed();

        let unary = punct(Token::Minus).map_with(|_, e| e.span()).repeated().foldr(atom, |op: SimpleSpan, rhs| Expr {
            span: span(op).to(rhs.span),
            kind: ExprKind::Unary { op: UnaryOp::Neg, expr: Box::new(rhs) },
        });

        let comparison_op = choice((
            punct(Token::EqEq).to(BinaryOp::Eq),
            punct(Token::NotEq).to(BinaryOp::Ne),
            punct(Token::Le).to(BinaryOp::Le),
            punct(Token::Lt).to(BinaryOp::Lt),
            punct(Token::Ge).to(BinaryOp::Ge),
            punct(Token::Gt).to(BinaryOp::Gt),
            kw(Keyword::In).to(BinaryOp::In),
            kw(Keyword::Not).then(kw(Keyword::In)).to(BinaryOp::NotIn),
            kw(Keyword::Matches).to(BinaryOp::Matches),
        ))
        .labelled("operator");
        let comparison = unary
            .clone()
            .then(comparison_op.clone().then(unary.clone()).or_not())
            .map(|(lhs, rest)| match rest {
                None => lhs,
                Some((op, rhs)) => binary(op, lhs, rhs),
            })
            // A chained comparison is parsed whole, so the error is about chaining
            // rather than whatever token follows the second operator.
            .then(comparison_op.map_with(|_, e| e.span()).then(unary.clone()).or_not())
            .validate(|(comparison, chained), _, emitter| {
                if let Some((at, _)) = chained {
                    emitter.emit(E::issue(at, Issue::ChainedComparison));
                }
                comparison
            })
            .boxed();

        let not = kw(Keyword::Not).map_with(|_, e| e.span()).repeated().foldr(comparison, |op: SimpleSpan, rhs| Expr {
            span: span(op).to(rhs.span),
            kind: ExprKind::Unary { op: UnaryOp::Not, expr: Box::new(rhs) },
        });
        let and =
            not.clone().foldl(kw(Keyword::And).ignore_then(not).repeated(), |lhs, rhs| binary(BinaryOp::And, lhs, rhs));
        let full = and
            .clone()
            .foldl(kw(Keyword::Or).ignore_then(and).repeated(), |lhs, rhs| binary(BinaryOp::Or, lhs, rhs))
            .boxed();
        if E::FIRST_PASS {
            custom(move |inp| match lone_literal(inp) {
                Some(expr) => Ok(expr),
                None => inp.parse(&full),
            })
            .boxed()
        } else {
            full
        }
    })
}

/// The first pass's shortcut for the commonest expression, a lone literal (a label's value
/// in a claim): a string, an integer, `true` or `false` that nothing after it continues.
/// The full grammar gives the same tree for it, but only after trying each operator that
/// could follow, at each level of precedence. `None` (and nothing consumed) for anything
/// else, and for a literal with an error, which the full grammar reports.
fn lone_literal<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>(
    inp: &mut InputRef<'tok, '_, TokenInput<'tok, 'src>, Extra<E>>,
) -> Option<Expr> {
    let before = inp.save();
    let start = inp.cursor();
    let token = inp.next()?;
    let at: SimpleSpan = inp.span_since(&start);
    let continued = inp.peek().is_some_and(|next| continues_operand(&next));
    let literal = |kind| Some(Expr { kind, span: span(at) });
    let expr = match token {
        _ if continued => None,
        Token::Str(string) => match inp.state().decoded(string.raw, at.start, true) {
            (lit, errors) if errors.is_empty() => Some(Expr { span: lit.span, kind: ExprKind::Str(lit) }),
            _ => None,
        },
        Token::Int(text) => text.replace('_', "").parse::<i64>().ok().and_then(|value| literal(ExprKind::Int(value))),
        Token::Keyword(Keyword::True) => literal(ExprKind::Bool(true)),
        Token::Keyword(Keyword::False) => literal(ExprKind::Bool(false)),
        _ => None,
    };
    if expr.is_none() {
        inp.rewind(before);
    }
    expr
}

/// Whether `token`, after an operand, continues its expression: a comparison, or `and`/`or`.
fn continues_operand(token: &Token<'_>) -> bool {
    matches!(token, Token::EqEq | Token::NotEq | Token::Le | Token::Lt | Token::Ge | Token::Gt)
        || matches!(token, Token::Keyword(Keyword::In | Keyword::Not | Keyword::Matches | Keyword::And | Keyword::Or))
}

fn binary(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
    Expr { span: lhs.span.to(rhs.span), kind: ExprKind::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) } }
}

/// `{ key = value … }`, entries separated by optional commas.
fn map_lit<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>(
    expr: impl P<'tok, 'src, Expr, E> + 'tok,
) -> impl P<'tok, 'src, MapLit, E> {
    let key = name().map(MapKey::Name).or(string().map(MapKey::Str)).labelled("map key");
    key.then_ignore(punct(Token::Assign))
        .then(expr)
        .map(|(key, value)| MapEntry { span: key.span().to(value.span), key, value })
        .then_ignore(punct(Token::Comma).or_not())
        .repeated()
        .collect::<Vec<_>>()
        .delimited_by(punct(Token::LBrace), punct(Token::RBrace))
        .map_with(|entries, e| MapLit { entries, span: span(e.span()) })
        .boxed()
}

fn is_keyword_in(token: &Token<'_>, set: &[Keyword]) -> bool {
    matches!(token, Token::Keyword(k) if set.contains(k))
}

/// One token, or a balanced bracket group taken whole; used to skip bad input. Never a
/// closing bracket, so skipping stops at the end of the enclosing group.
///
/// Where a group ends is looked up, not parsed: trying to parse a group and falling back to
/// a single token when it never closes re-parsed the rest of the input at every unclosed
/// bracket, which took time exponential in their number.
fn token_tree<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>() -> impl P<'tok, 'src, (), E> {
    any()
        .filter(|t: &Token| !matches!(t, Token::RBrace | Token::RParen | Token::RBracket))
        .ignore_then(custom(|inp: &mut InputRef<'tok, '_, TokenInput<'tok, 'src>, Extra<E>>| {
            let next = <TokenInput<'tok, 'src> as Input>::cursor_location(inp.cursor().inner());
            let end = inp.state().tree_end(next - 1).unwrap_or(next);
            for _ in next..end {
                inp.skip();
            }
            Ok(())
        }))
        .boxed()
}

/// A `{ stmt* }` block whose statements recover individually.
///
/// `starters` are the keywords that begin a statement of this block. `what` names the
/// construct for the unclosed-brace error ("service `x`" is built by the caller's span).
fn block<'tok, 'src: 'tok, S: Clone + 'tok, E: SyntaxErr<'tok, 'src>>(
    stmt: impl P<'tok, 'src, S, E> + 'tok,
    error: S,
    starters: &'static [Keyword],
    what: &'static str,
) -> impl P<'tok, 'src, Block<S>, E> {
    nested_block(stmt, error, starters, &[], what)
}

/// A block inside a block whose statements begin with `enclosing` keywords (besides the
/// top-level ones): those end it too when its `}` is missing.
fn nested_block<'tok, 'src: 'tok, S: Clone + 'tok, E: SyntaxErr<'tok, 'src>>(
    stmt: impl P<'tok, 'src, S, E> + 'tok,
    error: S,
    starters: &'static [Keyword],
    enclosing: &'static [Keyword],
    what: &'static str,
) -> impl P<'tok, 'src, Block<S>, E> {
    // Top-level keywords (and the enclosing block's) that cannot begin a statement here end
    // a block missing its `}`.
    let ends_block = move |t: &Token| {
        (is_keyword_in(t, ITEM_KEYWORDS) || is_keyword_in(t, enclosing)) && !is_keyword_in(t, starters)
    };
    // `expect claim …` is one statement even though `claim` also begins one.
    let expect_claim = kw(Keyword::Expect).then(kw(Keyword::Claim)).ignored();
    let skip_first = expect_claim.or(token_tree()).and_is(any().filter(move |t: &Token| !ends_block(t)).rewind());
    let skip_rest =
        token_tree().and_is(any().filter(move |t: &Token| !ends_block(t) && !is_keyword_in(t, starters)).rewind());
    let recovery = skip_first
        .then(skip_rest.repeated())
        .map_with(move |_, e| Spanned { node: error.clone(), span: span(e.span()) });
    let stmt = stmt
        .map_with(|node, e| Spanned { node, span: span(e.span()) })
        .then_ignore(punct(Token::Semi).repeated())
        .recover_with(via_parser(recovery));
    let close = punct(Token::RBrace)
        .to(true)
        .or(any().filter(move |t: &Token| ends_block(t)).rewind().to(false))
        .or(end().to(false));
    punct(Token::LBrace)
        .map_with(|_, e| e.span())
        .then(stmt.repeated().collect::<Vec<_>>())
        .then(close)
        .validate(move |((open, stmts), closed), e, emitter| {
            if !closed {
                emitter.emit(E::issue(open, Issue::Unclosed { what }));
            }
            Block { stmts, span: span(e.span()) }
        })
        .boxed()
}

fn label_op<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>() -> impl P<'tok, 'src, LabelOp, E> {
    let label = kw(Keyword::Labels).ignore_then(punct(Token::Dot)).ignore_then(name());
    let set = kw(Keyword::Set)
        .ignore_then(label.clone())
        .then_ignore(punct(Token::Assign))
        .then(expr_parser())
        .map(|(label, value)| LabelOp::Set { label, value });
    let remove = kw(Keyword::Remove).ignore_then(label).map(|label| LabelOp::Remove { label });
    set.or(remove)
}

fn criteria<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>() -> impl P<'tok, 'src, Option<Expr>, E> {
    kw(Keyword::When).ignore_then(expr_parser()).or_not()
}

fn item_parser<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>() -> impl P<'tok, 'src, ItemKind, E> {
    let expr = expr_parser();
    let ty = recursive(|ty| {
        let named = ident().map(TypeExprKind::Named);
        let enumeration =
            string().separated_by(punct(Token::Pipe)).at_least(1).collect::<Vec<_>>().map(TypeExprKind::Enum);
        let list =
            ty.delimited_by(punct(Token::LBracket), punct(Token::RBracket)).map(|t| TypeExprKind::List(Box::new(t)));
        choice((named, enumeration, list)).map_with(|kind, e| TypeExpr { kind, span: span(e.span()) }).labelled("type")
    })
    .boxed();

    let namespace = kw(Keyword::Namespace)
        .ignore_then(ident())
        .then(kw(Keyword::OwnedBy).ignore_then(ident()).or_not())
        .map(|(name, owner)| ItemKind::Namespace(NamespaceDecl { name, owner }));

    let import = kw(Keyword::Import)
        .ignore_then(path())
        .then(
            punct(Token::Dot)
                .ignore_then(
                    ident()
                        .separated_by(punct(Token::Comma))
                        .allow_trailing()
                        .at_least(1)
                        .collect::<Vec<_>>()
                        .delimited_by(punct(Token::LBrace), punct(Token::RBrace)),
                )
                .or_not(),
        )
        .then(kw(Keyword::As).ignore_then(ident()).or_not())
        .map(|((path, members), alias)| ItemKind::Import(Box::new(Import { path, members, alias })));

    let label = kw(Keyword::Label)
        .ignore_then(name())
        .then_ignore(punct(Token::Colon))
        .then(ty.clone())
        .then(punct(Token::Assign).ignore_then(expr.clone()).or_not())
        .map(|((name, ty), default)| ItemKind::Label(Box::new(LabelDecl { name, ty, default })));

    let component_source = choice((
        kw(Keyword::Uses).ignore_then(path()).map(ComponentSource::Uses),
        kw(Keyword::Chart).ignore_then(string()).map(ComponentSource::Chart),
        kw(Keyword::Manifests).ignore_then(string()).map(ComponentSource::Manifests),
    ))
    .map_with(|node, e| Spanned { node, span: span(e.span()) })
    .labelled("`uses`, `chart` or `manifests`");
    const COMPONENT_STMTS: &[Keyword] =
        &[Keyword::Repo, Keyword::Version, Keyword::When, Keyword::After, Keyword::Values, Keyword::Discovery];
    let component_stmt = choice((
        kw(Keyword::Repo).ignore_then(string()).map(ComponentStmt::Repo),
        kw(Keyword::Version).ignore_then(string()).map(ComponentStmt::Version),
        kw(Keyword::When).ignore_then(expr.clone()).map(ComponentStmt::When),
        kw(Keyword::After)
            .ignore_then(ident().separated_by(punct(Token::Comma)).at_least(1).collect::<Vec<_>>())
            .map(ComponentStmt::After),
        kw(Keyword::Values).ignore_then(map_lit(expr.clone())).map(ComponentStmt::Values),
        kw(Keyword::Discovery).ignore_then(map_lit(expr.clone())).map(ComponentStmt::Discovery),
    ));
    let component = kw(Keyword::Component)
        .ignore_then(ident())
        .then(component_source)
        .then(block(component_stmt, ComponentStmt::Error, COMPONENT_STMTS, "component").or_not())
        .map(|((name, source), body)| ServiceStmt::Component(Component { docs: None, name, source, body }));
    let service = kw(Keyword::Service)
        .ignore_then(ident())
        .then(block(component, ServiceStmt::Error, &[Keyword::Component], "service"))
        .map(|(name, body)| ItemKind::Service(Service { name, body }));

    const CONTEXT_STMTS: &[Keyword] = &[Keyword::Set, Keyword::Remove, Keyword::Allocate, Keyword::Use];
    let context_stmt = choice((
        label_op().map(ContextStmt::LabelOp),
        kw(Keyword::Allocate)
            .ignore_then(kw(Keyword::Per))
            .ignore_then(expr.clone().separated_by(punct(Token::Comma)).at_least(1).collect::<Vec<_>>())
            .map(ContextStmt::Allocate),
        kw(Keyword::Use).ignore_then(path()).map(ContextStmt::Use),
    ));
    let context = kw(Keyword::Context)
        .ignore_then(ident())
        .then(criteria())
        .then(block(context_stmt, ContextStmt::Error, CONTEXT_STMTS, "context"))
        .map(|((name, criteria), body)| ContractStmt::Context(Context { docs: None, name, criteria, body }));
    let contract_stmt = label_op().map(ContractStmt::LabelOp).or(context);
    let contract = kw(Keyword::Contract)
        .ignore_then(ident())
        .then(block(contract_stmt, ContractStmt::Error, &[Keyword::Set, Keyword::Remove, Keyword::Context], "contract"))
        .map(|(name, body)| ItemKind::Contract(Contract { name, body }));

    let rule_stmt = choice((
        label_op().map(RuleStmt::LabelOp),
        kw(Keyword::Reject).ignore_then(string()).map(RuleStmt::Reject),
        kw(Keyword::Place)
            .ignore_then(kw(Keyword::On))
            .ignore_then(path())
            .then(kw(Keyword::Namespace).ignore_then(expr.clone()).or_not())
            .map(|(cluster, namespace)| RuleStmt::Place { cluster, namespace }),
    ));
    let weight = kw(Keyword::Weight)
        .ignore_then(int())
        .map_with(|value, e| Spanned { node: value.unwrap_or(0), span: span(e.span()) });
    let rule = kw(Keyword::Rule)
        .ignore_then(ident())
        .then(weight.or_not())
        .then(criteria())
        .then(block(
            rule_stmt,
            RuleStmt::Error,
            &[Keyword::Set, Keyword::Remove, Keyword::Reject, Keyword::Place],
            "rule",
        ))
        .map(|(((name, weight), criteria), body)| ItemKind::Rule(Box::new(Rule { name, weight, criteria, body })));

    let cluster_stmt = choice((
        kw(Keyword::Context).ignore_then(string()).map(ClusterStmt::Context),
        kw(Keyword::Kubeconfig).ignore_then(choice((
            string().map(ClusterStmt::Kubeconfig),
            word("secret", "`secret`")
                .ignore_then(string())
                .then(word("key", "`key`").ignore_then(string()).or_not())
                .map(|(name, key)| ClusterStmt::KubeconfigSecret { name, key }),
            word("in_cluster", "`in_cluster`").map_with(|(), e| ClusterStmt::InCluster(span(e.span()))),
        ))),
        kw(Keyword::Namespace).ignore_then(string()).map(ClusterStmt::Namespace),
        kw(Keyword::Labels).ignore_then(map_lit(expr.clone())).map(ClusterStmt::Labels),
    ));
    let cluster = kw(Keyword::Cluster)
        .ignore_then(ident())
        .then(block(
            cluster_stmt,
            ClusterStmt::Error,
            &[Keyword::Context, Keyword::Kubeconfig, Keyword::Namespace, Keyword::Labels],
            "cluster",
        ))
        .map(|(name, body)| ItemKind::Cluster(Cluster { name, body }));

    let claim_stmt = by_keyword(
        [
            (Keyword::User, kw(Keyword::User).ignore_then(string()).map(ClaimStmt::User).boxed()),
            (Keyword::Team, kw(Keyword::Team).ignore_then(ident()).map(ClaimStmt::Team).boxed()),
            (Keyword::Contract, kw(Keyword::Contract).ignore_then(path()).map(ClaimStmt::Contract).boxed()),
            (Keyword::Labels, kw(Keyword::Labels).ignore_then(map_lit(expr.clone())).map(ClaimStmt::Labels).boxed()),
        ],
        None,
    );
    // Claims and users are items, and statements of tests: `enclosing` says which.
    let claim_decl = move |enclosing: &'static [Keyword]| {
        kw(Keyword::Claim)
            .ignore_then(ident())
            .then(nested_block(
                claim_stmt.clone(),
                ClaimStmt::Error,
                &[Keyword::User, Keyword::Team, Keyword::Contract, Keyword::Labels],
                enclosing,
                "claim",
            ))
            .map(|(name, body)| Claim { name, body })
    };
    let claim = claim_decl(&[]).map(ItemKind::Claim);

    let list = expr
        .clone()
        .separated_by(punct(Token::Comma))
        .allow_trailing()
        .collect::<Vec<_>>()
        .delimited_by(punct(Token::LBracket), punct(Token::RBracket));
    let user_stmt = choice((
        kw(Keyword::Team).ignore_then(ident()).map(UserStmt::Team),
        kw(Keyword::Groups).ignore_then(list).map(UserStmt::Groups),
        kw(Keyword::Labels).ignore_then(map_lit(expr.clone())).map(UserStmt::Labels),
    ));
    let user_decl = move |enclosing: &'static [Keyword]| {
        kw(Keyword::User)
            .ignore_then(string())
            .then(
                nested_block(
                    user_stmt.clone(),
                    UserStmt::Error,
                    &[Keyword::Team, Keyword::Groups, Keyword::Labels],
                    enclosing,
                    "user",
                )
                .or_not(),
            )
            .map(|(name, body)| User { name, body })
    };
    let user = user_decl(&[]).map(ItemKind::User);

    let team_stmt = kw(Keyword::Labels).ignore_then(map_lit(expr.clone())).map(TeamStmt::Labels);
    let team = kw(Keyword::Team)
        .ignore_then(ident())
        .then(block(team_stmt, TeamStmt::Error, &[Keyword::Labels], "team").or_not())
        .map(|(name, body)| ItemKind::Team(Team { name, body }));

    let users_from = kw(Keyword::Users)
        .ignore_then(kw(Keyword::From))
        .ignore_then(string())
        .map(|path| ItemKind::UsersFrom(UsersFrom { path }));

    let scope =
        kw(Keyword::On)
            .ignore_then(punct(Token::Star).to(GrantScope::All).or(
                ident().separated_by(punct(Token::Comma)).at_least(1).collect::<Vec<_>>().map(GrantScope::Namespaces),
            ))
            .map_with(|node, e| Spanned { node, span: span(e.span()) });
    let grant = kw(Keyword::Grant)
        .ignore_then(ident())
        .then(scope.or_not())
        .then(criteria())
        .map(|((role, scope), criteria)| ItemKind::Grant(Box::new(Grant { role, scope, criteria })));

    let param = name().then_ignore(punct(Token::Colon)).then(ty.clone()).map(|(name, ty)| Param { name, ty });
    let function = kw(Keyword::Fn)
        .ignore_then(ident())
        .then(
            param
                .separated_by(punct(Token::Comma))
                .allow_trailing()
                .collect::<Vec<_>>()
                .delimited_by(punct(Token::LParen), punct(Token::RParen)),
        )
        .then_ignore(punct(Token::Arrow))
        .then(ty)
        .map(|((name, params), ret)| ItemKind::Function(Box::new(FunctionDecl { name, params, ret })));

    // Tests. Inside a test, `expect` also ends a nested block whose `}` is missing.
    const TEST_STMTS: &[Keyword] = &[Keyword::Claim, Keyword::User, Keyword::Expect];
    const IN_TEST: &[Keyword] = &[Keyword::Expect];
    let outcome = choice((
        word("resolved", "`resolved`").to(ClaimOutcome::Resolved),
        word("rejected", "`rejected`")
            .ignore_then(kw(Keyword::Matches).ignore_then(string()).or_not())
            .map(|pattern| ClaimOutcome::Rejected { pattern }),
    ))
    .map_with(|node, e| Spanned { node, span: span(e.span()) });
    let expect_claim = kw(Keyword::Claim)
        .ignore_then(path())
        .then(outcome)
        .map(|(claim, outcome)| Expect::Claim(ExpectClaim { claim, outcome }));
    let instance_stmt = choice((
        kw(Keyword::Context).ignore_then(ident()).map(InstanceStmt::Context),
        kw(Keyword::Cluster).ignore_then(path()).map(InstanceStmt::Cluster),
        kw(Keyword::Namespace).ignore_then(string()).map(InstanceStmt::Namespace),
        kw(Keyword::Values).ignore_then(map_lit(expr.clone())).map(InstanceStmt::Values),
    ));
    let component_for_claim = path().then_ignore(word("for", "`for`")).then(path());
    let expect_instance = word("instance", "`instance`")
        .ignore_then(component_for_claim.clone())
        .then(
            nested_block(
                instance_stmt,
                InstanceStmt::Error,
                &[Keyword::Context, Keyword::Cluster, Keyword::Namespace, Keyword::Values],
                IN_TEST,
                "expectation",
            )
            .or_not(),
        )
        .map(|((component, claim), body)| Expect::Instance(ExpectInstance { component, claim, body }));
    let expect_no_instance = word("no", "`no`")
        .ignore_then(word("instance", "`instance`"))
        .ignore_then(component_for_claim)
        .map(|(component, claim)| Expect::NoInstance(ExpectNoInstance { component, claim }));
    let expect_count = word("instances", "`instances`")
        .ignore_then(int().map_with(|value, e| Spanned { node: value.unwrap_or(0), span: span(e.span()) }))
        .map(Expect::Instances);
    let expect =
        kw(Keyword::Expect).ignore_then(choice((expect_claim, expect_instance, expect_no_instance, expect_count)));
    let test_stmt = choice((
        claim_decl(IN_TEST).map(TestStmt::Claim),
        user_decl(IN_TEST).map(TestStmt::User),
        expect.map(TestStmt::Expect),
    ));
    let test = kw(Keyword::Test)
        .ignore_then(ident())
        .then(block(test_stmt, TestStmt::Error, TEST_STMTS, "test"))
        .map(|(name, body)| ItemKind::Test(TestBlock { name, body }));

    // Assertions (docs/language.md §19).
    let for_clause = word("for", "`for`").ignore_then(choice((
        kw(Keyword::User).ignore_then(string()).map(ForClause::User),
        kw(Keyword::Users).ignore_then(kw(Keyword::In)).ignore_then(choice((
            kw(Keyword::Team).ignore_then(ident()).map(ForClause::TeamUsers),
            word("group", "`group`").ignore_then(string()).map(ForClause::Group),
        ))),
        kw(Keyword::Team).ignore_then(ident()).map(ForClause::Team),
        kw(Keyword::Contract).ignore_then(path()).map(ForClause::Contract),
    )));
    let party = choice((
        kw(Keyword::User).ignore_then(string()).map(Party::User),
        kw(Keyword::Team).ignore_then(ident()).map(Party::Team),
        word("others", "`others`").to(Party::Others),
    ));
    let never = word("never", "`never`").or_not().map(|n| n.is_some());
    let assertion = choice((
        word("resolved", "`resolved`").to(Assertion::Resolved),
        word("rejected", "`rejected`").to(Assertion::Rejected),
        word("failed", "`failed`").to(Assertion::Failed),
        word("placed", "`placed`")
            .ignore_then(kw(Keyword::On))
            .ignore_then(path().separated_by(punct(Token::Comma)).at_least(1).collect::<Vec<_>>())
            .map(Assertion::PlacedOn),
        word("that", "`that`").ignore_then(expr.clone()).map(Assertion::That),
        never
            .clone()
            .then_ignore(word("reaches", "`reaches`"))
            .then(path())
            .map(|(never, target)| Assertion::Reaches { never, target }),
        never
            .then_ignore(word("shares", "`shares`"))
            .then_ignore(word("with", "`with`"))
            .then(party)
            .map(|(never, with)| Assertion::Shares { never, with }),
    ))
    .map_with(|node, e| Spanned { node, span: span(e.span()) });
    let assert_stmt = choice((
        for_clause.map(AssertStmt::For),
        kw(Keyword::When).ignore_then(expr.clone()).map(AssertStmt::When),
        kw(Keyword::Expect).ignore_then(assertion).map(AssertStmt::Expect),
    ));
    let assert = kw(Keyword::Assert)
        .ignore_then(ident())
        .then(block(assert_stmt, AssertStmt::Error, &[Keyword::When, Keyword::Expect], "assertion"))
        .map(|(name, body)| ItemKind::Assert(AssertBlock { name, body }));

    by_keyword(
        [
            (Keyword::Namespace, namespace.boxed()),
            (Keyword::Import, import.boxed()),
            (Keyword::Label, label.boxed()),
            (Keyword::Service, service.boxed()),
            (Keyword::Contract, contract.boxed()),
            (Keyword::Rule, rule.boxed()),
            (Keyword::Cluster, cluster.boxed()),
            (Keyword::Claim, claim.boxed()),
            (Keyword::User, user.boxed()),
            (Keyword::Team, team.boxed()),
            (Keyword::Users, users_from.boxed()),
            (Keyword::Grant, grant.boxed()),
            (Keyword::Fn, function.boxed()),
            (Keyword::Test, test.boxed()),
            (Keyword::Assert, assert.boxed()),
        ],
        Some("declaration"),
    )
}

/// A boxed parser over the token slice.
type BoxedP<'tok, 'src, O, E> = Boxed<'tok, 'tok, TokenInput<'tok, 'src>, O, Extra<E>>;

/// Alternatives that each begin with their own keyword: the second pass tries them in turn,
/// as `choice` does (the first that parses wins, and `label` names them in errors); the first
/// pass goes straight to the one the next token begins, which is the only one that could
/// parse (a claim was the eighth item tried).
fn by_keyword<'tok, 'src: 'tok, O: 'tok, E: SyntaxErr<'tok, 'src>, const N: usize>(
    alternatives: [(Keyword, BoxedP<'tok, 'src, O, E>); N],
    label: Option<&'static str>,
) -> BoxedP<'tok, 'src, O, E> {
    if E::FIRST_PASS {
        return custom(move |inp| {
            let before = inp.cursor();
            let first = inp.peek();
            match alternatives.iter().find(|(keyword, _)| first == Some(Token::Keyword(*keyword))) {
                Some((_, alternative)) => inp.parse(alternative),
                None => Err(LabelError::expected_found(label, None, inp.span_since(&before))),
            }
        })
        .boxed();
    }
    let alternatives = choice(alternatives.map(|(_, alternative)| alternative));
    match label {
        Some(label) => alternatives.labelled(label).boxed(),
        None => alternatives.boxed(),
    }
}

fn file_parser<'tok, 'src: 'tok, E: SyntaxErr<'tok, 'src>>() -> impl P<'tok, 'src, Vec<Item>, E> {
    let at_item_start = any().filter(|t: &Token| is_keyword_in(t, ITEM_KEYWORDS)).rewind();
    // Skip at least one token (closing brackets too), then up to the next item keyword.
    let recovery = any()
        .ignored()
        .then(token_tree().or(any().ignored()).and_is(at_item_start.not()).repeated())
        .to(ItemKind::Error);
    item_parser()
        .recover_with(via_parser(recovery))
        .map_with(|kind, e| Item { docs: None, kind, span: span(e.span()) })
        .then_ignore(punct(Token::Semi).repeated())
        .repeated()
        .collect::<Vec<_>>()
        .then_ignore(end())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::syntax::{lexer, nesting};

    /// Both passes over `src`: the first pass's items (if it found none of its errors) and the
    /// second's (if it found none of its errors).
    fn both_passes(src: &str) -> (Option<Vec<Item>>, Option<Vec<Item>>) {
        let tokens: Vec<(Token<'_>, SimpleSpan)> = lexer::lex_with(src, SimpleSpan::from).tokens;
        let run = |first: bool| {
            let prepared = nesting::prepare(tokens.clone(), 0);
            let input = prepared.tokens.split_token_span(SimpleSpan::from(src.len()..src.len()));
            let state = &mut SimpleState(prepared.groups);
            let (items, clean) = if first {
                let parsed = file_parser::<EmptyErr>().parse_with_state(input, state);
                (parsed.output().cloned(), !parsed.has_errors())
            } else {
                let parsed = file_parser::<ParseError>().parse_with_state(input, state);
                (parsed.output().cloned(), !parsed.has_errors())
            };
            items.filter(|_| clean && prepared.errors.is_empty())
        };
        (run(true), run(false))
    }

    /// The first pass's shortcuts give exactly the full grammar's tree for every clean file,
    /// and a file that the full grammar finds errors in is not clean to the first pass either.
    #[test]
    fn both_passes_give_the_same_tree() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut sources = Vec::new();
        for dir in ["tests/cases/parse", "tests/cases/diagnostics", "tests/cases/format", "examples"] {
            let mut stack = vec![root.join(dir)];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if path.extension().is_some_and(|e| e == "apt") {
                        sources.push(std::fs::read_to_string(&path).unwrap_or_default());
                    }
                }
            }
        }
        assert!(sources.len() > 50, "the cases were not found");
        // Literals with and without what continues them, and literals with errors.
        for value in [
            r#""a""#,
            r#""a" == "b""#,
            r#""a" != "b" and true"#,
            r#""a" in ["a"] or false"#,
            r#""a" not in ["b"]"#,
            r#""a" matches "b.*""#,
            "1 < 2",
            "1_000 >= 2",
            "-1",
            "not true",
            "true or false and true",
            "[1, \"x\", false]",
            "{ a = 1, b = \"x\" }",
            "f(1, \"x\")",
            "labels.env",
            r#""${labels.env}-x""#,
            r#""bad \q""#,
            "99999999999999999999",
            r#""a" "b""#,
            r#""a" == "b" == "c""#,
        ] {
            sources.push(format!("claim c {{ user \"u\" contract x.y labels {{ a = {value}, b = {value} }} }}"));
            sources.push(format!("label l: string = {value}\nrule r when {value} {{ set labels.x = {value} }}"));
        }
        let mut clean = 0;
        for src in &sources {
            let (first, second) = both_passes(src);
            assert_eq!(first, second, "{src}");
            clean += usize::from(first.is_some());
        }
        assert!(clean > 20, "too few clean files: {clean}");
    }
}
